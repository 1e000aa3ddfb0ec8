//! The exact transfers the protocol layer puts on the wire for each operation, checked byte
//! for byte against docs/reference/usb-bridge.md (§3 request table, §4 encodings) with a
//! scripted transport that records what it is sent and answers from a script.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use egpu_link::asm2464::wire::LTSSM_L0;
use egpu_link::{Asm2464, Asm2464Config, Bdf, LinkError, PcieLink};
use egpu_usb::{Completion, DeviceInfo, InFlight, Tag, Transfer, UsbError, UsbSpeed, UsbTransport};

/// Answers every control IN from a queue of canned replies; OUT transfers just succeed.
struct Scripted {
    info: DeviceInfo,
    sent: Vec<Transfer>,
    replies: VecDeque<Vec<u8>>,
    inflight: InFlight,
}

impl Scripted {
    fn new(replies: Vec<Vec<u8>>) -> Self {
        Self {
            info: DeviceInfo {
                name: "scripted".into(),
                vendor_id: 0xADD1,
                product_id: 0x0001,
                manufacturer: Some("tiny".into()),
                product: Some("custom v0.1".into()),
                serial: Some("0123abcd".into()),
                speed: Some(UsbSpeed::SuperPlus),
            },
            sent: Vec::new(),
            replies: replies.into(),
            inflight: InFlight::new(),
        }
    }
}

impl UsbTransport for Scripted {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn submit(&mut self, transfer: Transfer, _timeout: Duration) -> Result<Tag, UsbError> {
        let tag = self.inflight.begin();
        let result = match &transfer {
            Transfer::ControlIn { .. } | Transfer::BulkIn { .. } => {
                match self.replies.pop_front() {
                    Some(reply) => Ok(Completion::In(reply)),
                    None => Err(UsbError::Timeout {
                        transfer: transfer.to_string(),
                        after: Duration::from_secs(1),
                    }),
                }
            }
            other => Ok(Completion::Out { length: other.requested_len() }),
        };
        self.sent.push(transfer);
        self.inflight.finish(tag, result);
        Ok(tag)
    }
    fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError> {
        self.inflight.collect(tag).expect("scripted transfers finish at submit")
    }
    fn reset_interface(&mut self) -> Result<(), UsbError> {
        self.inflight.clear();
        Ok(())
    }
    fn clear_halt(&mut self, _endpoint: u8) -> Result<(), UsbError> {
        Ok(())
    }
}

/// F0 IN reply carrying `data` with successful completion (§3 layout).
fn ok_reply(data: u32) -> Vec<u8> {
    let mut reply = data.to_le_bytes().to_vec();
    reply.extend_from_slice(&[0x00, 0x04, 0x01, 0x00]);
    reply
}

fn config() -> Asm2464Config {
    Asm2464Config {
        retry_backoff: Duration::ZERO,
        config_retry_backoff: Duration::ZERO,
        link_poll_interval: Duration::ZERO,
        ..Default::default()
    }
}

/// A bridge opened with the link up and the bridge answering its vendor ID, plus how many
/// transfers the open sequence took (so tests look only at what came after).
struct Opened {
    bridge: Asm2464<Scripted>,
    baseline: usize,
}

impl Opened {
    fn new(mut replies: Vec<Vec<u8>>) -> Self {
        let mut script = vec![vec![LTSSM_L0], ok_reply(0x2461_1B21)];
        script.append(&mut replies);
        let bridge = Asm2464::open(Scripted::new(script), config()).expect("open");
        let baseline = bridge.transport().sent.len();
        Self { bridge, baseline }
    }

    fn sent(&self) -> Vec<Transfer> {
        self.bridge.transport().sent[self.baseline..].to_vec()
    }
}

fn setup_bytes(transfer: &Transfer) -> [u8; 8] {
    match transfer {
        Transfer::ControlIn { setup, length } => setup.to_bytes(*length),
        Transfer::ControlOut { setup, data } => setup.to_bytes(data.len() as u16),
        other => panic!("not a control transfer: {other}"),
    }
}

fn out_data(transfer: &Transfer) -> Bytes {
    match transfer {
        Transfer::ControlOut { data, .. } | Transfer::BulkOut { data, .. } => data.clone(),
        other => panic!("not an OUT transfer: {other}"),
    }
}

#[test]
fn open_checks_ltssm_then_reads_the_bridge_vendor_id() {
    let bridge =
        Asm2464::open(Scripted::new(vec![vec![LTSSM_L0], ok_reply(0x2461_1B21)]), config())
            .unwrap();
    let sent = &bridge.transport().sent;
    // §2 step 6: E4 read of 0xB450, one byte.
    assert_eq!(setup_bytes(&sent[0]), [0xC0, 0xE4, 0x50, 0xB4, 0x00, 0x00, 0x01, 0x00]);
    // §4.2: CfgRd0 of 00:00.0 register 0 with all byte enables, then the 8-byte F0 IN.
    assert_eq!(setup_bytes(&sent[1]), [0x40, 0xF0, 0x04, 0x0F, 0x00, 0x00, 12, 0]);
    assert_eq!(&out_data(&sent[1])[..], &[0u8; 12]);
    assert_eq!(setup_bytes(&sent[2]), [0xC0, 0xF0, 0x00, 0x00, 0x00, 0x00, 8, 0]);
}

#[test]
fn open_powers_the_slot_when_the_link_is_down() {
    // Three LTSSM samples show the link down (one transient sample must not power-cycle a
    // running GPU), then F3 powers the slot and the link reaches L0.
    let script = vec![vec![0x11], vec![0x11], vec![0x11], vec![LTSSM_L0], ok_reply(0x2461_1B21)];
    let bridge = Asm2464::open(Scripted::new(script), config()).unwrap();
    let sent = &bridge.transport().sent;
    // §3 F3: wValue bit 0 = on.
    assert_eq!(setup_bytes(&sent[3]), [0x40, 0xF3, 0x01, 0x00, 0x00, 0x00, 0, 0]);
}

#[test]
fn config_read_of_a_byte_uses_type1_and_shifts_per_section_4_1() {
    // Header type byte at 0x0E of 04:00.1: dword 0x0C, byte enable 0b0100.
    let mut t = Opened::new(vec![ok_reply(0x0080_0000)]);
    let value = t.bridge.config_read(Bdf::new(4, 0, 1), 0x0E, 1).unwrap();
    assert_eq!(value, 0x80);
    let sent = t.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(setup_bytes(&sent[0]), [0x40, 0xF0, 0x05, 0x04, 0x00, 0x00, 12, 0]);
    assert_eq!(&out_data(&sent[0])[..], &[0x0C, 0x00, 0x01, 0x04, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn posted_memory_write_sends_one_transfer_and_no_reply_read() {
    let mut t = Opened::new(vec![]);
    // §4.1: address below 4 GiB takes the 3DW MWr (0x40); a 2-byte write at +2 has BE 0b1100.
    t.bridge.mem_write(0x1000_0002, 2, 0xBEEF).unwrap();
    t.bridge.flush().unwrap();
    let sent = t.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(setup_bytes(&sent[0]), [0x40, 0xF0, 0x40, 0x0C, 0x00, 0x00, 12, 0]);
    assert_eq!(
        &out_data(&sent[0])[..],
        &[0x00, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0x00, 0x00, 0xEF, 0xBE]
    );
}

#[test]
fn streaming_write_arms_mode_1_then_sends_the_dwords_on_bulk_out() {
    let mut t = Opened::new(vec![]);
    let data: Vec<u8> = (0..64u8).collect();
    t.bridge.mem_write_bytes(0x8_0000_0100, Bytes::from(data.clone())).unwrap();
    t.bridge.flush().unwrap();
    let sent = t.sent();
    assert_eq!(sent.len(), 2);
    // §4.4: MWr 4DW (0x60), BE 0x0F, wIndex 1, value = 16 dwords.
    assert_eq!(setup_bytes(&sent[0]), [0x40, 0xF0, 0x60, 0x0F, 0x01, 0x00, 12, 0]);
    assert_eq!(&out_data(&sent[0])[..], &[0x00, 0x01, 0, 0, 0x08, 0, 0, 0, 16, 0, 0, 0]);
    assert!(matches!(&sent[1], Transfer::BulkOut { endpoint: 0x02, .. }));
    assert_eq!(&out_data(&sent[1])[..], &data[..]);
}

#[test]
fn engine_errors_are_retried_then_reported() {
    // §4.9: ret_status 1 → re-issue the whole request; success on the third try.
    let mut fail = ok_reply(0);
    fail[7] = 1;
    let mut t = Opened::new(vec![fail.clone(), fail, ok_reply(0x744C_1002)]);
    assert_eq!(t.bridge.config_read(Bdf::new(4, 0, 0), 0, 4).unwrap(), 0x744C_1002);
    assert_eq!(t.sent().len(), 6);

    // Eleven timeouts (ret_status 0xFF) exhaust the ten retries.
    let mut timeout = vec![0u8; 8];
    timeout[7] = 0xFF;
    let mut t = Opened::new(vec![timeout; 11]);
    let error = t.bridge.config_read(Bdf::new(4, 0, 0), 0, 4).unwrap_err();
    assert!(
        matches!(error, LinkError::TlpFailed { attempts: 11, ret_status: 0xFF, .. }),
        "{error}"
    );
}

#[test]
fn completion_status_maps_to_typed_errors_per_section_4_9() {
    let with_status = |status: u8| {
        let mut reply = ok_reply(0);
        reply[4] = status << 5;
        reply
    };
    let mut t = Opened::new(vec![with_status(0b001)]);
    assert!(matches!(
        t.bridge.config_read(Bdf::new(9, 0, 0), 0, 4),
        Err(LinkError::UnsupportedRequest { .. })
    ));
    let mut t = Opened::new(vec![with_status(0b100)]);
    assert!(matches!(t.bridge.mem_read32(0x1000_0000), Err(LinkError::CompleterAbort { .. })));
    // CRS on a config read is retried; then the real answer comes.
    let mut t = Opened::new(vec![with_status(0b010), with_status(0b010), ok_reply(0x1234_5678)]);
    assert_eq!(t.bridge.config_read(Bdf::new(4, 0, 0), 0, 4).unwrap(), 0x1234_5678);
}

#[test]
fn short_replies_are_errors_not_data() {
    let mut t = Opened::new(vec![vec![1, 2, 3]]);
    let error = t.bridge.config_read(Bdf::new(4, 0, 0), 0, 4).unwrap_err();
    assert!(matches!(error, LinkError::ShortReply { expected: 8, actual: 3, .. }), "{error}");
}

#[test]
fn xdata_reads_are_chunked_at_512_bytes_on_superspeed() {
    let mut t = Opened::new(vec![vec![0xAA; 512], vec![0xBB; 512], vec![0xCC; 100]]);
    let data = t.bridge.xdata_read(0x1000, 1124).unwrap();
    assert_eq!(data.len(), 1124);
    let sent = t.sent();
    assert_eq!(setup_bytes(&sent[0]), [0xC0, 0xE4, 0x00, 0x10, 0, 0, 0x00, 0x02]);
    assert_eq!(setup_bytes(&sent[1]), [0xC0, 0xE4, 0x00, 0x12, 0, 0, 0x00, 0x02]);
    assert_eq!(setup_bytes(&sent[2]), [0xC0, 0xE4, 0x00, 0x14, 0, 0, 100, 0]);
    assert_eq!(&data[1024..], &[0xCC; 100]);
}
