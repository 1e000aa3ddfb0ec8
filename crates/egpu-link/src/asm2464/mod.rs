//! The ASM2464PD custom-firmware protocol over a [`UsbTransport`]
//! (docs/reference/usb-bridge.md §2–§4).
//!
//! Round trips are the cost that matters, so:
//! - posted writes (single-TLP memory writes, streaming-write data) are submitted and not
//!   waited for; they are reaped lazily and their errors surface through the transport's
//!   sticky error at the next wait;
//! - a non-posted TLP submits its F0 OUT and the F0 IN together (one round trip, not two);
//! - E4 chunks and E5 bytes are pipelined.
//!
//! Bulk OUT data of a streaming write or an F2 write must be consumed by the firmware before
//! the next vendor request, because any F0 OUT cancels streaming (§3). Those transfers are
//! therefore drained before anything else goes on EP0.

pub mod wire;

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use egpu_usb::discover::{classify, FirmwareKind};
use egpu_usb::{Tag, Transfer, UsbError, UsbTransport};

use egpu_hal::{DmaInfo, DmaRegion, DmaRelease, PendingDmaRead};

use crate::pcie::{Bdf, PcieLink};
use crate::LinkError;
use wire::*;

/// Tunables of the protocol layer. The defaults follow the reference firmware and tinygrad
/// (§2, §4.9, §4.10).
#[derive(Clone, Debug)]
pub struct Asm2464Config {
    /// Re-issues of a TLP whose F0 reply says ret_status 1 or 0xFF (§4.9: 10).
    pub tlp_retries: u32,
    /// Pause before each re-issue (§4.9: 1 ms, "this sleep is very picky").
    pub retry_backoff: Duration,
    /// How long a config request answered with Configuration Request Retry Status is
    /// re-issued (Linux waits up to 60 s for a device to leave CRS after reset).
    pub config_retry_timeout: Duration,
    /// Pause between CRS retries.
    pub config_retry_backoff: Duration,
    /// How long to wait for LTSSM to reach L0 after power-on (§2 step 6: bounded poll).
    pub link_up_timeout: Duration,
    /// Pause between LTSSM polls.
    pub link_poll_interval: Duration,
    /// Bytes per bulk transfer of a streaming read or write.
    pub stream_chunk: usize,
    /// Most bytes one streaming F0 arms; longer ranges are armed again.
    pub max_stream_len: usize,
    /// Bulk transfers of one stream in flight at once.
    pub stream_depth: usize,
    /// Posted control transfers in flight before the oldest is reaped.
    pub posted_depth: usize,
    /// Power the slot on and wait for the link when it is down at open.
    pub power_on_at_open: bool,
    /// Wait for an F0 streaming or F2 arm to be accepted before sending its bulk data (one
    /// round trip more). tinygrad always waits; whether the firmware holds EP 0x02 not-ready
    /// until armed is not established, so this stays on until real hardware says otherwise.
    pub wait_for_arm: bool,
    /// XDATA byte writes (E5) in flight at once.
    pub xdata_write_depth: usize,
}

impl Asm2464Config {
    /// Reject settings that would make transfers fail or loops not end.
    pub fn validate(&self) -> Result<(), LinkError> {
        let problem = if self.stream_chunk == 0 || !self.stream_chunk.is_multiple_of(1024) {
            Some("stream_chunk must be a non-zero multiple of 1024 (the SuperSpeed bulk packet)")
        } else if self.stream_depth == 0 || self.posted_depth == 0 || self.xdata_write_depth == 0 {
            Some("stream_depth, posted_depth and xdata_write_depth must be at least 1")
        } else if self.max_stream_len < 4 {
            Some("max_stream_len must hold at least one dword")
        } else {
            None
        };
        match problem {
            Some(reason) => Err(LinkError::InvalidConfig(reason.into())),
            None => Ok(()),
        }
    }
}

impl Default for Asm2464Config {
    fn default() -> Self {
        Self {
            tlp_retries: 10,
            retry_backoff: Duration::from_millis(1),
            config_retry_timeout: Duration::from_secs(60),
            config_retry_backoff: Duration::from_millis(10),
            link_up_timeout: Duration::from_secs(5),
            link_poll_interval: Duration::from_millis(20),
            stream_chunk: 1 << 20,
            max_stream_len: 64 << 20,
            stream_depth: 4,
            posted_depth: 64,
            power_on_at_open: true,
            wait_for_arm: true,
            xdata_write_depth: 64,
        }
    }
}

// Timeouts (§4.10; bulk ones grow with size so a slow USB2 link is not mistaken for a hang).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);
const F0_TIMEOUT: Duration = Duration::from_secs(5);
const F3_TIMEOUT: Duration = Duration::from_secs(10);
const SRAM_READ_TIMEOUT: Duration = Duration::from_secs(10);
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Deadline of an F2 bulk transfer: the DMA engine moves hundreds of MB/s on USB3, USB2 high
/// speed 35–45 MB/s (§10.1, §10.2); allow 10 MB/s.
fn bulk_timeout(len: usize) -> Duration {
    Duration::from_secs(1) + Duration::from_millis((len / 10_000) as u64)
}

/// Deadline of a streaming-write bulk OUT. The firmware turns every dword into its own TLP,
/// about 3.6 MB/s (§10.1), and a deadline runs from submission, so it must cover everything
/// queued ahead of the transfer too. Allow 1 MB/s.
fn stream_write_timeout(queued: usize) -> Duration {
    Duration::from_secs(1) + Duration::from_micros(queued as u64)
}

/// USB traffic the protocol layer generated, for `egpu bench link`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Control OUT transfers submitted (F0 TLP, F2 SRAM, F3 power, E5 XDATA writes: §3).
    pub control_out: u64,
    /// Control IN transfers submitted (F0 completion replies, E4 XDATA reads: §3).
    pub control_in: u64,
    /// Bulk OUT transfers submitted (streaming writes §4.4, SRAM writes §4.6).
    pub bulk_out: u64,
    /// Bulk IN transfers submitted (streaming reads §4.5, SRAM reads §4.7).
    pub bulk_in: u64,
    /// Bytes host → device, SETUP packets included.
    pub bytes_out: u64,
    /// Bytes device → host.
    pub bytes_in: u64,
}

impl LinkStats {
    /// All USB transfers submitted, control and bulk.
    pub fn transfers(&self) -> u64 {
        self.control_out + self.control_in + self.bulk_out + self.bulk_in
    }
}

impl From<LinkStats> for egpu_hal::LinkCounters {
    /// Every USB transfer is a request; the IN transfers (control IN for completions, bulk
    /// IN for streamed data) are what the host waits on, so they are the round trips.
    fn from(stats: LinkStats) -> Self {
        egpu_hal::LinkCounters {
            requests: stats.transfers(),
            round_trips: stats.control_in + stats.bulk_in,
            bytes_out: stats.bytes_out,
            bytes_in: stats.bytes_in,
        }
    }
}

impl std::ops::Sub for LinkStats {
    type Output = LinkStats;
    fn sub(self, earlier: LinkStats) -> LinkStats {
        LinkStats {
            control_out: self.control_out - earlier.control_out,
            control_in: self.control_in - earlier.control_in,
            bulk_out: self.bulk_out - earlier.bulk_out,
            bulk_in: self.bulk_in - earlier.bulk_in,
            bytes_out: self.bytes_out - earlier.bytes_out,
            bytes_in: self.bytes_in - earlier.bytes_in,
        }
    }
}

/// Which firmware a device's descriptors say it runs (§1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeIdentity {
    /// 0xADD1:0x0001 or 0x3801:0x0001 and not tinygrad's legacy patched stock firmware.
    CustomFirmware,
    /// 0x174C:0x2464 / 0x174C:0x2463 (or tinygrad's legacy patched build on the custom IDs):
    /// ASMedia's stock firmware, to be reflashed.
    StockFirmware,
    /// Anything else.
    Other,
}

/// What the protocol layer accepts, from the USB layer's classification (§1 "USB IDs tinygrad
/// accepts"): whatever [`FirmwareKind::is_usable`] calls usable (the custom firmware, also an
/// unknown revision of it) is driven; stock IDs get flashing advice.
pub fn identify(vendor_id: u16, product_id: u16, product: Option<&str>) -> BridgeIdentity {
    match classify(vendor_id, product_id, product) {
        Some(kind) if kind.is_usable() => BridgeIdentity::CustomFirmware,
        // Also tinygrad's legacy patched stock firmware on the custom IDs: flash it too.
        Some(FirmwareKind::Stock) => BridgeIdentity::StockFirmware,
        _ => BridgeIdentity::Other,
    }
}

/// A bulk IN armed by F2 that completes once the GPU writes the completion-queue page.
#[must_use = "an armed SRAM read must be finished with Asm2464::finish_sram_read"]
pub struct PendingSramRead {
    tag: Tag,
    len: usize,
}

/// A bridge running the custom firmware, reached through `T`.
pub struct Asm2464<T: UsbTransport> {
    usb: T,
    config: Asm2464Config,
    superspeed: bool,
    /// Posted control transfers not yet reaped, oldest first.
    posted: VecDeque<Tag>,
    /// Bulk OUT transfers the firmware must consume before the next vendor request.
    bulk_out: VecDeque<Tag>,
    /// Set after a failed transfer: the next operation resets the interface first.
    needs_reset: bool,
    /// The bulk IN of an armed F2 read. While it waits for the GPU's release, EP 0x81 and the
    /// F2 engine belong to it: a streaming read's data would complete it instead (§4.7).
    armed_sram_read: Option<Tag>,
    /// The F2 read behind a [`PcieLink::dma_read_begin`], until its finish.
    dma_read: Option<PendingSramRead>,
    /// SRAM slots handed out as GPU-visible memory (bit n = slot n).
    sram_slots_used: u32,
    stats: LinkStats,
}

impl<T: UsbTransport> Asm2464<T> {
    /// Check the device is a custom-firmware bridge, reset its transfer state, bring the PCIe
    /// link up (powering the slot if needed) and check that config reads work.
    pub fn open(usb: T, config: Asm2464Config) -> Result<Self, LinkError> {
        let info = usb.info().clone();
        match identify(info.vendor_id, info.product_id, info.product.as_deref()) {
            BridgeIdentity::CustomFirmware => {}
            BridgeIdentity::StockFirmware => {
                return Err(LinkError::StockFirmware {
                    device: info.name,
                    vendor_id: info.vendor_id,
                    product_id: info.product_id,
                })
            }
            BridgeIdentity::Other => {
                return Err(LinkError::NotABridge {
                    device: info.name,
                    vendor_id: info.vendor_id,
                    product_id: info.product_id,
                    product: info.product,
                })
            }
        }
        config.validate()?;
        // Unknown speed: assume the smaller USB2 limits, which work on either.
        let superspeed = info.speed.is_some_and(|speed| speed.is_superspeed());
        let mut bridge = Self {
            usb,
            config,
            superspeed,
            posted: VecDeque::new(),
            bulk_out: VecDeque::new(),
            needs_reset: true,
            armed_sram_read: None,
            dma_read: None,
            sram_slots_used: 0,
            stats: LinkStats::default(),
        };
        bridge.recover()?;
        if !bridge.link_settles_in_l0(3)? {
            if !bridge.config.power_on_at_open {
                let ltssm = bridge.ltssm()?;
                return Err(LinkError::LinkDown { ltssm, waited: Duration::ZERO });
            }
            bridge.power_on()?;
        }
        // §3 "protocol drift": trust behaviour, not the product string. The bridge's own
        // function at 00:00.0 must answer a config read with a real vendor ID.
        let id = bridge.config_read(Bdf::new(0, 0, 0), 0, 4)?;
        if id & 0xFFFF == 0xFFFF || id & 0xFFFF == 0 {
            return Err(LinkError::Config {
                op: "checking the bridge answers config reads".into(),
                bdf: Bdf::new(0, 0, 0),
                reason: format!("vendor/device read back as {id:#010x}; the firmware revision may speak an older protocol, update it"),
            });
        }
        Ok(bridge)
    }

    /// The bridge's USB identity, as read when it was opened.
    pub fn info(&self) -> &egpu_usb::DeviceInfo {
        self.usb.info()
    }

    /// USB traffic generated since the bridge was opened.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The timing and size limits this bridge runs with.
    pub fn config(&self) -> &Asm2464Config {
        &self.config
    }

    /// The transport, e.g. to reach an emulator's inspection API in tests.
    pub fn transport(&self) -> &T {
        &self.usb
    }

    /// A few LTSSM samples, so that a transient state (e.g. a trip through recovery) does not
    /// make `open` power-cycle a running GPU with F3 (which asserts PERST#).
    fn link_settles_in_l0(&mut self, samples: u32) -> Result<bool, LinkError> {
        for sample in 0..samples {
            if self.ltssm()? == LTSSM_L0 {
                return Ok(true);
            }
            if sample + 1 < samples {
                thread::sleep(self.config.link_poll_interval);
            }
        }
        Ok(false)
    }

    /// Reset the bridge's transfer state (SET_INTERFACE alt 0) and forget anything in flight.
    ///
    /// Posted transfers are waited for first (each has its own deadline, errors ignored): a
    /// control transfer already handed to the host controller cannot be recalled, and
    /// SET_INTERFACE would queue behind it anyway.
    pub fn recover(&mut self) -> Result<(), LinkError> {
        for tag in self.posted.drain(..).chain(self.bulk_out.drain(..)) {
            let _ = self.usb.wait(tag);
        }
        self.armed_sram_read = None;
        self.usb
            .reset_interface()
            .map_err(LinkError::transport("resetting the bridge interface"))?;
        self.needs_reset = false;
        Ok(())
    }

    // ---- transfers -------------------------------------------------------------------

    fn submit(&mut self, transfer: Transfer, timeout: Duration) -> Result<Tag, UsbError> {
        match &transfer {
            Transfer::ControlIn { length, .. } => {
                self.stats.control_in += 1;
                self.stats.bytes_out += 8;
                self.stats.bytes_in += u64::from(*length);
            }
            Transfer::ControlOut { data, .. } => {
                self.stats.control_out += 1;
                self.stats.bytes_out += 8 + data.len() as u64;
            }
            Transfer::BulkIn { length, .. } => {
                self.stats.bulk_in += 1;
                self.stats.bytes_in += *length as u64;
            }
            Transfer::BulkOut { data, .. } => {
                self.stats.bulk_out += 1;
                self.stats.bytes_out += data.len() as u64;
            }
        }
        self.usb.submit(transfer, timeout)
    }

    /// Run `body` with the reset-on-error discipline: a failure leaves the interface to be
    /// reset before the next operation, so one error never poisons the session.
    fn guarded<R>(
        &mut self,
        op: &str,
        body: impl FnOnce(&mut Self) -> Result<R, LinkError>,
    ) -> Result<R, LinkError> {
        if self.needs_reset {
            self.recover()?;
        }
        let result = body(self);
        if let Err(error) = &result {
            if matches!(error, LinkError::Transport { .. } | LinkError::ShortReply { .. }) {
                self.needs_reset = true;
            }
        }
        result.map_err(|error| match error {
            LinkError::Transport { op: inner, source } if inner.is_empty() => {
                LinkError::Transport { op: op.to_string(), source }
            }
            other => other,
        })
    }

    /// Wait for every bulk OUT the firmware still has to consume.
    fn drain_bulk_out(&mut self) -> Result<(), LinkError> {
        while let Some(tag) = self.bulk_out.pop_front() {
            self.usb.wait(tag).map_err(LinkError::transport(""))?;
        }
        Ok(())
    }

    fn reap_posted(&mut self, keep: usize) -> Result<(), LinkError> {
        while self.posted.len() > keep {
            let tag = self.posted.pop_front().expect("length checked");
            self.usb.wait(tag).map_err(LinkError::transport(""))?;
        }
        Ok(())
    }

    fn control_in(&mut self, setup: egpu_usb::ControlSetup, length: u16) -> Result<Tag, LinkError> {
        self.submit(Transfer::ControlIn { setup, length }, CONTROL_TIMEOUT)
            .map_err(LinkError::transport(""))
    }

    // ---- XDATA (E4/E5) ---------------------------------------------------------------

    /// Read `len` bytes of bridge XDATA, in chunks of the firmware's limit, pipelined.
    pub fn xdata_read(&mut self, address: u16, len: usize) -> Result<Vec<u8>, LinkError> {
        check_xdata(address, len)?;
        self.guarded("reading bridge XDATA (E4)", |this| {
            this.drain_bulk_out()?;
            let limit = xdata_read_limit(this.superspeed);
            let mut tags = Vec::new();
            let mut offset = 0;
            while offset < len {
                let chunk = limit.min(len - offset);
                let setup = xdata_read_setup(address + offset as u16, 0);
                tags.push((this.control_in(setup, chunk as u16)?, chunk));
                offset += chunk;
            }
            let mut out = Vec::with_capacity(len);
            for (tag, chunk) in tags {
                let data = this.usb.wait(tag).map_err(LinkError::transport(""))?.into_data();
                if data.len() != chunk {
                    return Err(LinkError::ShortReply {
                        op: format!("E4 read of {chunk} bytes of XDATA"),
                        expected: chunk,
                        actual: data.len(),
                    });
                }
                out.extend_from_slice(&data);
            }
            Ok(out)
        })
    }

    /// Write bytes of bridge XDATA, one E5 request each, pipelined.
    pub fn xdata_write(&mut self, address: u16, data: &[u8]) -> Result<(), LinkError> {
        check_xdata(address, data.len())?;
        self.guarded("writing bridge XDATA (E5)", |this| {
            this.drain_bulk_out()?;
            // Bounded pipeline: each E5 has its own deadline from submission.
            let mut tags = VecDeque::new();
            for (i, &byte) in data.iter().enumerate() {
                let setup = xdata_write_setup(address + i as u16, byte, 0);
                let transfer = Transfer::ControlOut { setup, data: Bytes::new() };
                tags.push_back(
                    this.submit(transfer, CONTROL_TIMEOUT).map_err(LinkError::transport(""))?,
                );
                if tags.len() >= this.config.xdata_write_depth {
                    let oldest = tags.pop_front().expect("length checked");
                    this.usb.wait(oldest).map_err(LinkError::transport(""))?;
                }
            }
            for tag in tags {
                this.usb.wait(tag).map_err(LinkError::transport(""))?;
            }
            Ok(())
        })
    }

    // ---- link power (F3) ---------------------------------------------------------------

    /// Current LTSSM state (0x78 = L0, link up).
    pub fn ltssm(&mut self) -> Result<u8, LinkError> {
        Ok(self.xdata_read(XDATA_LTSSM, 1)?[0])
    }

    /// Power the slot on and wait, bounded, for the link to reach L0 (§3 F3, §2 step 6).
    pub fn power_on(&mut self) -> Result<(), LinkError> {
        self.set_power(true)?;
        let start = Instant::now();
        loop {
            let ltssm = self.ltssm()?;
            if ltssm == LTSSM_L0 {
                return Ok(());
            }
            if start.elapsed() >= self.config.link_up_timeout {
                return Err(LinkError::LinkDown { ltssm, waited: start.elapsed() });
            }
            thread::sleep(self.config.link_poll_interval);
        }
    }

    /// Send F3: power the PCIe slot on (training starts) or off (PERST#, rails off).
    pub fn set_power(&mut self, on: bool) -> Result<(), LinkError> {
        let op =
            if on { "powering the PCIe slot on (F3)" } else { "powering the PCIe slot off (F3)" };
        self.guarded(op, |this| {
            this.drain_bulk_out()?;
            this.reap_posted(0)?;
            let transfer = Transfer::ControlOut { setup: power_setup(on), data: Bytes::new() };
            let tag = this.submit(transfer, F3_TIMEOUT).map_err(LinkError::transport(""))?;
            this.usb.wait(tag).map_err(LinkError::transport(""))?;
            Ok(())
        })
    }

    /// Bus voltage (mV) and current (mA) from the INA231 monitor; newer firmware only (§3 C0).
    pub fn power_monitor(&mut self) -> Result<(u16, i16), LinkError> {
        self.guarded("reading the power monitor (C0)", |this| {
            this.drain_bulk_out()?;
            let setup = egpu_usb::ControlSetup::vendor_in(REQ_POWER_MONITOR, 0, 0);
            let tag = this.control_in(setup, 4)?;
            let data = this.usb.wait(tag).map_err(LinkError::transport(""))?.into_data();
            match data[..] {
                [v0, v1, c0, c1] => {
                    Ok((u16::from_le_bytes([v0, v1]), i16::from_le_bytes([c0, c1])))
                }
                _ => Err(LinkError::ShortReply {
                    op: "C0 power monitor read".into(),
                    expected: 4,
                    actual: data.len(),
                }),
            }
        })
    }

    // ---- single TLPs (F0 mode 0) -------------------------------------------------------

    /// One TLP. Posted requests return `None` without waiting; non-posted ones return the
    /// completion data after the §4.9 retry and status rules.
    fn single_tlp(
        &mut self,
        op: &str,
        fmt: FmtType,
        address: u64,
        byte_enable: u8,
        value: u32,
    ) -> Result<Option<u32>, LinkError> {
        self.guarded(op, |this| {
            this.drain_bulk_out()?;
            let request = F0Request { fmt, byte_enable, mode: F0Mode::Single, address, value };
            let payload = Bytes::copy_from_slice(&request.payload());
            if fmt.is_posted() {
                let transfer = Transfer::ControlOut { setup: request.setup(), data: payload };
                let tag = this.submit(transfer, F0_TIMEOUT).map_err(LinkError::transport(""))?;
                this.posted.push_back(tag);
                let depth = this.config.posted_depth;
                this.reap_posted(depth)?;
                return Ok(None);
            }
            let is_config = matches!(
                fmt,
                FmtType::CfgRd0 | FmtType::CfgRd1 | FmtType::CfgWr0 | FmtType::CfgWr1
            );
            let mut engine_attempts = 0;
            let mut crs_attempts = 0;
            let crs_deadline = Instant::now() + this.config.config_retry_timeout;
            loop {
                let out = Transfer::ControlOut { setup: request.setup(), data: payload.clone() };
                let out = this.submit(out, F0_TIMEOUT).map_err(LinkError::transport(""))?;
                let reply = this
                    .submit(
                        Transfer::ControlIn { setup: f0_reply_setup(), length: F0_REPLY_LEN },
                        F0_TIMEOUT,
                    )
                    .map_err(LinkError::transport(""))?;
                this.usb.wait(out).map_err(LinkError::transport(""))?;
                let bytes = this.usb.wait(reply).map_err(LinkError::transport(""))?.into_data();
                let reply = F0Reply::parse(&bytes).ok_or(LinkError::ShortReply {
                    op: format!("F0 reply to {op}"),
                    expected: usize::from(F0_REPLY_LEN),
                    actual: bytes.len(),
                })?;
                match reply.ret_status {
                    RetStatus::Completed => {}
                    RetStatus::EngineError | RetStatus::Timeout | RetStatus::Unknown(_) => {
                        engine_attempts += 1;
                        if engine_attempts > this.config.tlp_retries {
                            let ret_status = match reply.ret_status {
                                RetStatus::EngineError => 1,
                                RetStatus::Timeout => 0xFF,
                                RetStatus::Unknown(value) => value,
                                RetStatus::Completed => 0,
                            };
                            return Err(LinkError::TlpFailed {
                                op: op.to_string(),
                                attempts: engine_attempts,
                                ret_status,
                            });
                        }
                        thread::sleep(this.config.retry_backoff);
                        continue;
                    }
                }
                return match reply.status {
                    CompletionStatus::SuccessfulCompletion => Ok(Some(reply.data)),
                    CompletionStatus::UnsupportedRequest => {
                        Err(LinkError::UnsupportedRequest { op: op.to_string() })
                    }
                    CompletionStatus::CompleterAbort => {
                        Err(LinkError::CompleterAbort { op: op.to_string() })
                    }
                    CompletionStatus::ConfigRequestRetryStatus if is_config => {
                        crs_attempts += 1;
                        if Instant::now() >= crs_deadline {
                            return Err(LinkError::ConfigRetry {
                                op: op.to_string(),
                                attempts: crs_attempts,
                            });
                        }
                        thread::sleep(this.config.config_retry_backoff);
                        continue;
                    }
                    CompletionStatus::ConfigRequestRetryStatus => {
                        Err(LinkError::ReservedCompletion {
                            op: format!("{op} (Configuration Retry Status on a memory request)"),
                            status: 0b010,
                        })
                    }
                    CompletionStatus::Reserved(status) => {
                        Err(LinkError::ReservedCompletion { op: op.to_string(), status })
                    }
                };
            }
        })
    }

    // ---- streaming (F0 modes 1 and 2) ----------------------------------------------------

    /// Streaming write (§4.4): one F0 arm per `max_stream_len`, bulk OUT chunks pipelined and
    /// left in flight (drained before the next request on EP0).
    fn stream_write(&mut self, address: u64, data: &Bytes) -> Result<(), LinkError> {
        check_dwords("streaming BAR write", address, data.len())?;
        self.guarded("streaming memory write (F0 mode 1)", |this| {
            for (start, piece) in split_stream(address, data.len(), this.config.max_stream_len) {
                let arm = this.arm_stream(F0Mode::StreamWrite, start, piece.len())?;
                this.after_arm(arm)?;
                let mut offset = piece.start;
                while offset < piece.end {
                    let end = (offset + this.config.stream_chunk).min(piece.end);
                    let chunk = data.slice(offset..end);
                    let queued = (this.bulk_out.len() + 1) * this.config.stream_chunk;
                    let timeout = stream_write_timeout(queued);
                    let tag = this
                        .submit(Transfer::BulkOut { endpoint: EP_BULK_OUT, data: chunk }, timeout)
                        .map_err(LinkError::transport(""))?;
                    this.bulk_out.push_back(tag);
                    while this.bulk_out.len() > this.config.stream_depth {
                        let oldest = this.bulk_out.pop_front().expect("length checked");
                        this.usb.wait(oldest).map_err(LinkError::transport(""))?;
                    }
                    offset = end;
                }
            }
            let depth = this.config.posted_depth;
            this.reap_posted(depth)
        })
    }

    /// Submit the F0 arm of a streaming write or read of `len` bytes at `start` (§4.4, §4.5):
    /// all byte enables, the header format the address needs, the dword count as value.
    fn arm_stream(&mut self, mode: F0Mode, start: u64, len: usize) -> Result<Tag, LinkError> {
        self.drain_bulk_out()?;
        let fmt = match mode {
            F0Mode::StreamRead => FmtType::memory_read(start),
            _ => FmtType::memory_write(start),
        };
        let request =
            F0Request { fmt, byte_enable: 0x0F, mode, address: start, value: (len / 4) as u32 };
        let arm = Transfer::ControlOut {
            setup: request.setup(),
            data: Bytes::copy_from_slice(&request.payload()),
        };
        self.submit(arm, F0_TIMEOUT).map_err(LinkError::transport(""))
    }

    /// Streaming read (§4.5). Errors on the PCIe side are silent in this mode (garbage data);
    /// use [`PcieLink::mem_read32`] where a read must be checked.
    fn stream_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        check_dwords("streaming BAR read", address, len)?;
        self.refuse_while_sram_read_armed("streaming memory read")?;
        self.guarded("streaming memory read (F0 mode 2)", |this| {
            // One chunk is handed over uncopied; several are gathered into one allocation.
            let mut out: Vec<u8> =
                if len > this.config.stream_chunk { Vec::with_capacity(len) } else { Vec::new() };
            for (start, piece) in split_stream(address, len, this.config.max_stream_len) {
                let arm = this.arm_stream(F0Mode::StreamRead, start, piece.len())?;
                let mut tags = VecDeque::new();
                let mut offset = piece.start;
                let mut first = true;
                while offset < piece.end || !tags.is_empty() {
                    while offset < piece.end && tags.len() < this.config.stream_depth {
                        let chunk = this.config.stream_chunk.min(piece.end - offset);
                        let tag = this
                            .submit(
                                Transfer::BulkIn { endpoint: EP_BULK_IN, length: chunk },
                                STREAM_READ_TIMEOUT,
                            )
                            .map_err(LinkError::transport(""))?;
                        tags.push_back((tag, chunk));
                        offset += chunk;
                    }
                    if first {
                        this.usb.wait(arm).map_err(LinkError::transport(""))?;
                        first = false;
                    }
                    let (tag, chunk) = tags.pop_front().expect("loop condition");
                    let data = this.usb.wait(tag).map_err(LinkError::transport(""))?.into_data();
                    if data.len() != chunk {
                        return Err(LinkError::ShortReply {
                            op: format!("streaming read chunk at {:#x}", start),
                            expected: chunk,
                            actual: data.len(),
                        });
                    }
                    // The common single-chunk read hands the transfer buffer over uncopied.
                    if out.is_empty() && data.len() == len {
                        out = data;
                    } else {
                        out.extend_from_slice(&data);
                    }
                }
            }
            Ok(out)
        })
    }

    // ---- SRAM DMA (F2) -----------------------------------------------------------------

    /// Write `data` into SRAM from `start_slot` (§4.6): one F2 arm and one bulk OUT of whole
    /// sectors. The bulk OUT is left in flight. Completion on USB does not mean the bytes are
    /// visible to the GPU yet (§4.6): put a sentinel in the data if the GPU must know.
    pub fn sram_write(&mut self, start_slot: u8, data: Bytes) -> Result<(), LinkError> {
        let request = F2Request::for_len(SramDirection::Write, start_slot, data.len())
            .ok_or(LinkError::SramRange { op: "SRAM write".into(), start_slot, len: data.len() })?;
        let wire = if data.len() == request.wire_len() {
            data
        } else {
            let mut padded = Vec::with_capacity(request.wire_len());
            padded.extend_from_slice(&data);
            padded.resize(request.wire_len(), 0);
            Bytes::from(padded)
        };
        self.refuse_while_sram_read_armed("SRAM write")?;
        self.guarded("SRAM write (F2)", |this| {
            this.drain_bulk_out()?;
            let arm = Transfer::ControlOut { setup: request.setup(), data: Bytes::new() };
            let arm = this.submit(arm, CONTROL_TIMEOUT).map_err(LinkError::transport(""))?;
            this.after_arm(arm)?;
            let timeout = bulk_timeout(wire.len());
            let tag = this
                .submit(Transfer::BulkOut { endpoint: EP_BULK_OUT, data: wire }, timeout)
                .map_err(LinkError::transport(""))?;
            this.bulk_out.push_back(tag);
            let depth = this.config.posted_depth;
            this.reap_posted(depth)
        })
    }

    /// Arm an SRAM read of `len` bytes from slot 0 (§4.7: reads always start at slot 0) and
    /// queue its bulk IN. The data arrives once something on the PCIe side writes the
    /// completion-queue page ([`PCIE_CQ_PAGE`]); finish with [`Self::finish_sram_read`].
    pub fn arm_sram_read(&mut self, len: usize) -> Result<PendingSramRead, LinkError> {
        let request = F2Request::for_len(SramDirection::Read, 0, len)
            .ok_or(LinkError::SramRange { op: "SRAM read".into(), start_slot: 0, len })?;
        self.refuse_while_sram_read_armed("arming another SRAM read")?;
        self.guarded("arming an SRAM read (F2)", |this| {
            this.drain_bulk_out()?;
            let arm = Transfer::ControlOut { setup: request.setup(), data: Bytes::new() };
            let arm = this.submit(arm, CONTROL_TIMEOUT).map_err(LinkError::transport(""))?;
            let transfer = Transfer::BulkIn { endpoint: EP_BULK_IN, length: request.wire_len() };
            let tag = this.submit(transfer, SRAM_READ_TIMEOUT).map_err(LinkError::transport(""))?;
            this.usb.wait(arm).map_err(LinkError::transport(""))?;
            this.armed_sram_read = Some(tag);
            Ok(PendingSramRead { tag, len })
        })
    }

    /// Wait for an armed SRAM read; its deadline covers a GPU that never releases it.
    ///
    /// Unlike other operations this never resets the interface first: that would cancel the
    /// very transfer it waits for and could leave the F2 engine wedged (§11, firmware #72/#75).
    // By value on purpose: finishing consumes the token, so one armed read is finished once.
    #[allow(clippy::needless_pass_by_value)]
    pub fn finish_sram_read(&mut self, pending: PendingSramRead) -> Result<Vec<u8>, LinkError> {
        if self.armed_sram_read != Some(pending.tag) {
            return Err(LinkError::Busy {
                op: "finishing an SRAM read".into(),
                reason: "the read is no longer armed (the interface was reset since it was armed)"
                    .into(),
            });
        }
        self.armed_sram_read = None;
        let op = "SRAM read (F2 bulk IN, released by a GPU write to the CQ page)";
        let result =
            self.usb.wait(pending.tag).map_err(LinkError::transport(op)).and_then(|completion| {
                let mut data = completion.into_data();
                let wire = pending.len.div_ceil(SRAM_SECTOR) * SRAM_SECTOR;
                if data.len() != wire {
                    return Err(LinkError::ShortReply {
                        op: op.into(),
                        expected: wire,
                        actual: data.len(),
                    });
                }
                data.truncate(pending.len);
                Ok(data)
            });
        if result.is_err() {
            self.needs_reset = true;
        }
        result
    }

    /// While an F2 read waits for its release, EP 0x81 and the F2 engine are taken.
    fn refuse_while_sram_read_armed(&self, op: &str) -> Result<(), LinkError> {
        match self.armed_sram_read {
            Some(_) => Err(LinkError::Busy {
                op: op.into(),
                reason: "an SRAM read is armed and waits for the GPU's release; finish it first (single-dword reads still work)".into(),
            }),
            None => Ok(()),
        }
    }

    /// A streaming or F2 arm was submitted: either wait for the firmware to accept it before
    /// the bulk data goes out, or leave it with the posted transfers.
    fn after_arm(&mut self, arm: Tag) -> Result<(), LinkError> {
        if self.config.wait_for_arm {
            self.usb.wait(arm).map_err(LinkError::transport(""))?;
        } else {
            self.posted.push_back(arm);
        }
        Ok(())
    }
}

/// The bits of `count` slots from `start`.
fn slot_mask(start: usize, count: usize) -> u32 {
    let ones = if count >= 32 { u32::MAX } else { (1u32 << count) - 1 };
    ones << start
}

impl<T: UsbTransport> Asm2464<T> {
    /// The SRAM slots a region covers, checked against what was handed out.
    fn region_slots(&self, op: &str, region: &DmaRegion) -> Result<(usize, usize), LinkError> {
        let start = usize::try_from(region.id).unwrap_or(usize::MAX);
        let count = (region.size as usize) / SRAM_SLOT_SIZE;
        let valid = start < SRAM_SLOTS
            && count >= 1
            && start + count <= SRAM_SLOTS
            && region.bus_address == PCIE_SRAM_BASE + (start * SRAM_SLOT_SIZE) as u64
            && self.sram_slots_used & slot_mask(start, count) == slot_mask(start, count);
        if !valid {
            return Err(LinkError::Busy {
                op: op.into(),
                reason: format!("{region:?} is not a live SRAM region of this bridge"),
            });
        }
        Ok((start, count))
    }
}

impl<T: UsbTransport> PcieLink for Asm2464<T> {
    fn kind(&self) -> &'static str {
        "usb-asm2464"
    }

    fn counters(&self) -> Option<egpu_hal::LinkCounters> {
        Some(self.stats().into())
    }

    fn reset(&mut self) -> Result<(), LinkError> {
        self.dma_read = None;
        self.recover()
    }

    /// The bridge SRAM (usb-bridge.md §1.3, §6): 512 KiB at PCIe 0x200000 in 16 KiB slots,
    /// written by F2 bulk OUT and read by an F2 bulk IN that the GPU releases (§4.6, §4.7).
    fn dma_info(&self) -> DmaInfo {
        DmaInfo {
            total_bytes: SRAM_SIZE as u64,
            granule: SRAM_SLOT_SIZE as u64,
            write_alignment: SRAM_SLOT_SIZE as u64,
            host_reads_directly: false,
        }
    }

    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        let count = usize::try_from(size.div_ceil(SRAM_SLOT_SIZE as u64)).unwrap_or(usize::MAX);
        let too_big = || LinkError::SramRange {
            op: "allocating GPU-visible SRAM".into(),
            start_slot: 0,
            len: usize::try_from(size).unwrap_or(usize::MAX),
        };
        if count == 0 || count > SRAM_SLOTS {
            return Err(too_big());
        }
        let start = (0..=SRAM_SLOTS - count)
            .find(|&start| self.sram_slots_used & slot_mask(start, count) == 0)
            .ok_or_else(|| LinkError::Busy {
                op: "allocating GPU-visible SRAM".into(),
                reason: format!(
                    "no {count} free consecutive 16 KiB slots (in use: {:#010x})",
                    self.sram_slots_used
                ),
            })?;
        self.sram_slots_used |= slot_mask(start, count);
        Ok(DmaRegion {
            id: start as u64,
            bus_address: PCIE_SRAM_BASE + (start * SRAM_SLOT_SIZE) as u64,
            size: (count * SRAM_SLOT_SIZE) as u64,
        })
    }

    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        let (start, count) = self.region_slots("freeing GPU-visible SRAM", &region)?;
        self.sram_slots_used &= !slot_mask(start, count);
        Ok(())
    }

    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        let op = "writing GPU-visible SRAM";
        let (start, _) = self.region_slots(op, region)?;
        region.check(op, offset, data.len())?;
        if !offset.is_multiple_of(SRAM_SLOT_SIZE as u64) {
            return Err(LinkError::Unaligned { op: op.into(), address: offset, len: data.len() });
        }
        if data.is_empty() {
            return Ok(());
        }
        let slot = start + (offset as usize) / SRAM_SLOT_SIZE;
        self.sram_write(slot as u8, data)
    }

    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        let op = "reading GPU-visible SRAM";
        let (start, _) = self.region_slots(op, region)?;
        region.check(op, offset, len)?;
        if self.dma_read.is_some() {
            return Err(LinkError::Busy {
                op: op.into(),
                reason: "another read of GPU-visible SRAM is waiting for its release".into(),
            });
        }
        // F2 reads always start at slot 0 (§4.7): read the prefix too and drop it.
        let prefix = (start * SRAM_SLOT_SIZE) as u64 + offset;
        let pending = self.arm_sram_read(prefix as usize + len)?;
        self.dma_read = Some(pending);
        Ok(PendingDmaRead {
            region: *region,
            offset,
            len,
            // Any dword written into the completion-queue entry releases the bulk IN (§4.7).
            release: Some(DmaRelease { bus_address: PCIE_CQ_PAGE + 12, value: 0 }),
            token: prefix,
        })
    }

    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        let armed = self.dma_read.take().ok_or_else(|| LinkError::Busy {
            op: "finishing a read of GPU-visible SRAM".into(),
            reason: "no read is armed (it was finished already, or the link was reset)".into(),
        })?;
        let mut data = self.finish_sram_read(armed)?;
        let prefix = pending.token as usize;
        data.drain(..prefix.min(data.len()));
        data.truncate(pending.len);
        Ok(data)
    }

    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        let byte_enable = config_byte_enable("config read", bdf, offset, size)?;
        let op = format!("config read of {bdf} register {offset:#05x}");
        let data = self
            .single_tlp(
                &op,
                FmtType::config_read(bdf.bus),
                u64::from(bdf.config_address(offset & !3)),
                byte_enable,
                0,
            )?
            .unwrap_or(0);
        Ok(extract(data, offset.into(), size))
    }

    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        let byte_enable = config_byte_enable("config write", bdf, offset, size)?;
        let op = format!("config write of {bdf} register {offset:#05x}");
        let shifted = value << (8 * (offset & 3));
        self.single_tlp(
            &op,
            FmtType::config_write(bdf.bus),
            u64::from(bdf.config_address(offset & !3)),
            byte_enable,
            shifted,
        )?;
        Ok(())
    }

    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        check_dwords("memory read", address, 4)?;
        let op = format!("memory read at {address:#x}");
        Ok(self.single_tlp(&op, FmtType::memory_read(address), address, 0x0F, 0)?.unwrap_or(0))
    }

    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        let byte_enable = byte_enable(address, size).ok_or(LinkError::Unaligned {
            op: "memory write".into(),
            address,
            len: usize::from(size),
        })?;
        let op = format!("memory write at {address:#x}");
        let aligned = address & !3;
        let shifted = value << (8 * (address & 3));
        self.single_tlp(&op, FmtType::memory_write(aligned), aligned, byte_enable, shifted)?;
        Ok(())
    }

    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.stream_read(address, len)
    }

    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        check_dwords("memory write", address, data.len())?;
        // Up to two dwords, single posted TLPs cost one control transfer each: no more than the
        // F0 arm plus bulk OUT of a stream, and nothing to drain afterwards.
        if data.len() <= 8 {
            for (i, dword) in data.chunks_exact(4).enumerate() {
                let value = u32::from_le_bytes([dword[0], dword[1], dword[2], dword[3]]);
                self.mem_write(address + 4 * i as u64, 4, value)?;
            }
            return Ok(());
        }
        self.stream_write(address, &data)
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        self.guarded("flushing posted writes", |this| {
            this.drain_bulk_out()?;
            this.reap_posted(0)
        })
    }
}

fn check_xdata(address: u16, len: usize) -> Result<(), LinkError> {
    if usize::from(address) + len > 0x1_0000 {
        return Err(LinkError::OutOfRange {
            op: "XDATA access".into(),
            offset: u64::from(address),
            len,
            size: 0x1_0000,
        });
    }
    Ok(())
}

fn check_dwords(op: &str, address: u64, len: usize) -> Result<(), LinkError> {
    if !address.is_multiple_of(4) || !len.is_multiple_of(4) {
        return Err(LinkError::Unaligned { op: op.into(), address, len });
    }
    Ok(())
}

fn config_byte_enable(op: &str, bdf: Bdf, offset: u16, size: u8) -> Result<u8, LinkError> {
    if offset >= 0x1000 {
        return Err(LinkError::Config {
            op: op.into(),
            bdf,
            reason: format!("register {offset:#x} is beyond the 4 KiB configuration space"),
        });
    }
    byte_enable(offset.into(), size).ok_or(LinkError::Unaligned {
        op: format!("{op} of {bdf}"),
        address: offset.into(),
        len: usize::from(size),
    })
}

/// Shift completion data right by the byte offset and mask to the access size (§4.1).
fn extract(data: u32, offset: u64, size: u8) -> u32 {
    let shifted = data >> (8 * (offset & 3));
    if size >= 4 {
        shifted
    } else {
        shifted & ((1u32 << (8 * size)) - 1)
    }
}

/// Split `[address, address + len)` into pieces that each fit one streaming arm: at most
/// `max` bytes, and never crossing 4 GiB (the header format is chosen once per arm, and a
/// 3DW header cannot carry the upper half, §4.1). Yields (bus address, byte range).
fn split_stream(address: u64, len: usize, max: usize) -> Vec<(u64, std::ops::Range<usize>)> {
    let max = max.max(4) & !3;
    let mut pieces = Vec::new();
    let mut offset = 0usize;
    while offset < len {
        let start = address + offset as u64;
        let mut piece = max.min(len - offset);
        if start < 1 << 32 {
            piece = piece.min(((1u64 << 32) - start) as usize);
        }
        pieces.push((start, offset..offset + piece));
        offset += piece;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_per_section_1() {
        assert_eq!(identify(0xADD1, 0x0001, Some("custom v0.1")), BridgeIdentity::CustomFirmware);
        assert_eq!(identify(0x3801, 0x0001, Some("custom")), BridgeIdentity::CustomFirmware);
        assert_eq!(
            identify(0xADD1, 0x0001, Some("USB 3.2 PCIe TinyEnclosure")),
            BridgeIdentity::StockFirmware
        );
        assert_eq!(identify(0x174C, 0x2464, None), BridgeIdentity::StockFirmware);
        assert_eq!(identify(0x174C, 0x2463, Some("AS2462")), BridgeIdentity::StockFirmware);
        assert_eq!(identify(0x1234, 0x0001, Some("custom")), BridgeIdentity::Other);
        // The USB layer calls an unknown revision of the custom firmware usable; so does this.
        assert!(FirmwareKind::UnknownRevision.is_usable());
        assert_eq!(identify(0xADD1, 0x0001, Some("v0.2")), BridgeIdentity::CustomFirmware);
        assert_eq!(identify(0xADD1, 0x0001, None), BridgeIdentity::CustomFirmware);
    }

    #[test]
    fn extract_shifts_and_masks() {
        assert_eq!(extract(0x744C_1002, 0, 4), 0x744C_1002);
        assert_eq!(extract(0x744C_1002, 2, 2), 0x744C);
        assert_eq!(extract(0x0080_0000, 2, 1), 0x80);
        assert_eq!(extract(0x1234_5678, 1, 1), 0x56);
    }

    #[test]
    fn streams_split_at_the_limit_and_at_4_gib() {
        assert_eq!(split_stream(0x1000, 16, 64), vec![(0x1000, 0..16)]);
        assert_eq!(
            split_stream(0x1000, 20, 8),
            vec![(0x1000, 0..8), (0x1008, 8..16), (0x1010, 16..20)]
        );
        let around = split_stream(0xFFFF_FFF8, 16, 1 << 20);
        assert_eq!(around, vec![(0xFFFF_FFF8, 0..8), (0x1_0000_0000, 8..16)]);
    }
}
