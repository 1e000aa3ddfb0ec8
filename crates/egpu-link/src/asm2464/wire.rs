//! Wire encoding of the custom firmware's vendor requests, as data.
//!
//! Everything here is a pure function of its inputs so that the encodings can be checked byte
//! for byte against docs/reference/usb-bridge.md (§3 request table, §4 transaction encodings).

use egpu_usb::ControlSetup;

/// E4: read XDATA (§3).
pub const REQ_XDATA_READ: u8 = 0xE4;
/// E5: write one XDATA byte (§3).
pub const REQ_XDATA_WRITE: u8 = 0xE5;
/// F0: one PCIe TLP or a streaming TLP sequence (§3, §4.2–4.5).
pub const REQ_PCIE: u8 = 0xF0;
/// F2: arm the SRAM DMA engine (§3, §4.6–4.7).
pub const REQ_SRAM_DMA: u8 = 0xF2;
/// F3: PCIe slot power and link (§3).
pub const REQ_PCIE_POWER: u8 = 0xF3;
/// C0: INA231 bus voltage and current, newer firmware only (§3).
pub const REQ_POWER_MONITOR: u8 = 0xC0;

/// Bulk OUT endpoint of interface 0, alt 0 (§1.1).
pub const EP_BULK_OUT: u8 = 0x02;
/// Bulk IN endpoint of interface 0, alt 0 (§1.1).
pub const EP_BULK_IN: u8 = 0x81;

/// XDATA address of the LTSSM state register (§1.2).
pub const XDATA_LTSSM: u16 = 0xB450;
/// LTSSM value meaning the link is up, in L0 (§1.2).
pub const LTSSM_L0: u8 = 0x78;
/// XDATA window onto the first 4 KiB of SRAM (§1.2).
pub const XDATA_SRAM_WINDOW: u16 = 0xF000;
/// XDATA window onto the PCIe page at 0x820000 (§1.2).
pub const XDATA_SYS_PAGE_WINDOW: u16 = 0xA000;
/// XDATA window onto the NVMe completion-queue page (§1.2).
pub const XDATA_CQ_WINDOW: u16 = 0xB800;

/// PCIe bus address of the bridge SRAM (§1.3).
pub const PCIE_SRAM_BASE: u64 = 0x20_0000;
/// Size of the bridge SRAM (§1).
pub const SRAM_SIZE: usize = 512 * 1024;
/// The F2 engine addresses SRAM in 16 KiB slots (§3).
pub const SRAM_SLOT_SIZE: usize = 16 * 1024;
/// Number of SRAM slots.
pub const SRAM_SLOTS: usize = SRAM_SIZE / SRAM_SLOT_SIZE;
/// The F2 engine moves whole 512-byte sectors (§3).
pub const SRAM_SECTOR: usize = 512;
/// PCIe page behind XDATA 0xA000 (§1.3).
pub const PCIE_SYS_PAGE: u64 = 0x82_0000;
/// PCIe page of the NVMe completion queue; a write here releases an armed F2 read (§4.7).
pub const PCIE_CQ_PAGE: u64 = 0x82_2000;

/// PCIe TLP Fmt/Type byte (§4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FmtType {
    /// Memory read, 3DW header (32-bit address).
    MRd32 = 0x00,
    /// Memory read, 4DW header (64-bit address).
    MRd64 = 0x20,
    /// Memory write, 3DW header.
    MWr32 = 0x40,
    /// Memory write, 4DW header.
    MWr64 = 0x60,
    /// Configuration read, Type 0 (bus 0).
    CfgRd0 = 0x04,
    /// Configuration read, Type 1 (forwarded by bridges).
    CfgRd1 = 0x05,
    /// Configuration write, Type 0.
    CfgWr0 = 0x44,
    /// Configuration write, Type 1.
    CfgWr1 = 0x45,
}

impl FmtType {
    /// Memory read with the header the address needs: PCIe forbids 4DW headers for addresses
    /// below 4 GiB (§4.1), so only addresses above use `MRd64`.
    pub fn memory_read(address: u64) -> Self {
        if address >> 32 == 0 {
            FmtType::MRd32
        } else {
            FmtType::MRd64
        }
    }

    /// Memory write with the header the address needs (§4.1).
    pub fn memory_write(address: u64) -> Self {
        if address >> 32 == 0 {
            FmtType::MWr32
        } else {
            FmtType::MWr64
        }
    }

    /// Configuration read: Type 0 on bus 0, Type 1 beyond (§4.2).
    pub fn config_read(bus: u8) -> Self {
        if bus == 0 {
            FmtType::CfgRd0
        } else {
            FmtType::CfgRd1
        }
    }

    /// Configuration write: Type 0 on bus 0, Type 1 beyond (§4.2).
    pub fn config_write(bus: u8) -> Self {
        if bus == 0 {
            FmtType::CfgWr0
        } else {
            FmtType::CfgWr1
        }
    }

    /// Posted requests (memory writes) get no completion, so no F0 IN follows them (§4.1).
    pub fn is_posted(self) -> bool {
        (self as u8) & 0xDF == 0x40
    }
}

/// F0 `wIndex` bits 1:0 (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum F0Mode {
    /// Fire one TLP.
    Single = 0,
    /// Arm a streaming write: bulk OUT dwords become 1-DW MWr TLPs (§4.4).
    StreamWrite = 1,
    /// Arm a streaming read: 1-DW MRd TLPs come back on bulk IN (§4.5).
    StreamRead = 2,
}

/// Byte enables of a 1–4 byte access inside one dword: `((1 << size) - 1) << (address & 3)`
/// (§4.1). `None` when the access would cross the dword or has no bytes.
pub fn byte_enable(address: u64, size: u8) -> Option<u8> {
    let offset = (address & 3) as u8;
    if size == 0 || size > 4 || offset + size > 4 {
        return None;
    }
    Some(((1u8 << size) - 1) << offset)
}

/// One F0 OUT request: SETUP fields plus the 12-byte data stage (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F0Request {
    /// TLP format and type: memory/config, read/write, 32/64-bit address (§4.1).
    pub fmt: FmtType,
    /// First-dword byte enables (0x0F for streaming).
    pub byte_enable: u8,
    /// Single TLP or one of the streaming modes (§4.4, §4.5).
    pub mode: F0Mode,
    /// Dword-aligned address (config: bus<<24 | dev<<19 | fn<<16 | register).
    pub address: u64,
    /// Write data for a single TLP, or the dword count in the streaming modes.
    pub value: u32,
}

impl F0Request {
    /// SETUP: wValue = fmt | byte_enable << 8, wIndex = mode (§3).
    pub fn setup(&self) -> ControlSetup {
        ControlSetup::vendor_out(
            REQ_PCIE,
            u16::from(self.fmt as u8) | u16::from(self.byte_enable) << 8,
            self.mode as u16,
        )
    }

    /// Data stage: addr_lo u32, addr_hi u32, value u32, all little-endian (§3).
    pub fn payload(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[0..4].copy_from_slice(&(self.address as u32).to_le_bytes());
        out[4..8].copy_from_slice(&((self.address >> 32) as u32).to_le_bytes());
        out[8..12].copy_from_slice(&self.value.to_le_bytes());
        out
    }
}

/// SETUP of the F0 IN that fetches the completion of a non-posted single TLP (§3).
pub fn f0_reply_setup() -> ControlSetup {
    ControlSetup::vendor_in(REQ_PCIE, 0, 0)
}

/// Length of the F0 IN reply (§3).
pub const F0_REPLY_LEN: u16 = 8;

/// `ret_status` byte of the F0 IN reply (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetStatus {
    /// The engine saw a completion.
    Completed,
    /// The engine's error bit was set (firmware cleared it); retry.
    EngineError,
    /// The firmware's poll loop gave up; bytes 0–6 are zero; retry.
    Timeout,
    /// A value the document does not define.
    Unknown(u8),
}

impl From<u8> for RetStatus {
    fn from(value: u8) -> Self {
        match value {
            0 => RetStatus::Completed,
            1 => RetStatus::EngineError,
            0xFF => RetStatus::Timeout,
            other => RetStatus::Unknown(other),
        }
    }
}

/// PCIe completion status, completion-header bits 15:13 (§4.9, PCIe base spec Table 2-34).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionStatus {
    /// SC (0b000): the request completed.
    SuccessfulCompletion,
    /// UR (0b001): nothing claims the address, e.g. an absent function.
    UnsupportedRequest,
    /// CRS (0b010): the function is not ready yet; retry the config request.
    ConfigRequestRetryStatus,
    /// CA (0b100): the completer failed the request.
    CompleterAbort,
    /// Any other value (reserved by the spec), kept as read.
    Reserved(u8),
}

impl From<u8> for CompletionStatus {
    fn from(bits: u8) -> Self {
        match bits & 0b111 {
            0b000 => CompletionStatus::SuccessfulCompletion,
            0b001 => CompletionStatus::UnsupportedRequest,
            0b010 => CompletionStatus::ConfigRequestRetryStatus,
            0b100 => CompletionStatus::CompleterAbort,
            other => CompletionStatus::Reserved(other),
        }
    }
}

/// The decoded 8-byte F0 IN reply (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F0Reply {
    /// Completion data (bytes 0–3, little-endian).
    pub data: u32,
    /// Completion status, bits 7:5 of byte 4.
    pub status: CompletionStatus,
    /// Completion header, high byte (byte 4) and low byte (byte 5).
    pub header: u16,
    /// Engine completion-type register 0xB284 (byte 6).
    pub completion_type: u8,
    /// Byte 7.
    pub ret_status: RetStatus,
}

impl F0Reply {
    /// Decode a reply; `None` unless exactly eight bytes came back.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 8] = bytes.try_into().ok()?;
        Some(Self {
            data: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            status: CompletionStatus::from(bytes[4] >> 5),
            header: u16::from_be_bytes([bytes[4], bytes[5]]),
            completion_type: bytes[6],
            ret_status: RetStatus::from(bytes[7]),
        })
    }
}

/// Direction of an F2 SRAM transfer (§3: wValue bit 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SramDirection {
    /// Host → SRAM over bulk OUT (bit 15 clear).
    Write,
    /// SRAM → host over bulk IN (bit 15 set), released by a PCIe write to the CQ page.
    Read,
}

/// One F2 request (§3, §4.6, §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F2Request {
    /// Host → SRAM (bulk OUT) or SRAM → host (bulk IN).
    pub direction: SramDirection,
    /// 512-byte sectors to move (15 bits).
    pub sectors: u16,
    /// First 16 KiB slot (0–31).
    pub start_slot: u8,
    /// Slots covered (the firmware treats 0 as 1).
    pub slots: u8,
}

impl F2Request {
    /// The request for `len` bytes starting at `start_slot`: sectors = ceil(len / 512),
    /// slots = ceil(len / 16 KiB). `None` if it does not fit in SRAM from that slot.
    pub fn for_len(direction: SramDirection, start_slot: u8, len: usize) -> Option<Self> {
        let slots = len.div_ceil(SRAM_SLOT_SIZE).max(1);
        if len == 0 || usize::from(start_slot) + slots > SRAM_SLOTS {
            return None;
        }
        Some(Self {
            direction,
            sectors: u16::try_from(len.div_ceil(SRAM_SECTOR)).ok()?,
            start_slot,
            slots: u8::try_from(slots).ok()?,
        })
    }

    /// Bytes that move on the bulk endpoint: whole sectors.
    pub fn wire_len(&self) -> usize {
        usize::from(self.sectors) * SRAM_SECTOR
    }

    /// SETUP: wValue = direction << 15 | sectors, wIndex = slots << 8 | start_slot (§3).
    pub fn setup(&self) -> ControlSetup {
        let direction = match self.direction {
            SramDirection::Write => 0,
            SramDirection::Read => 0x8000,
        };
        ControlSetup::vendor_out(
            REQ_SRAM_DMA,
            direction | (self.sectors & 0x7FFF),
            u16::from(self.slots) << 8 | u16::from(self.start_slot),
        )
    }
}

/// E4 SETUP: wValue = XDATA address, wIndex high byte = bank (§3).
pub fn xdata_read_setup(address: u16, bank: u8) -> ControlSetup {
    ControlSetup::vendor_in(REQ_XDATA_READ, address, u16::from(bank) << 8)
}

/// E5 SETUP: wValue = XDATA address, wIndex = bank << 8 | value (§3).
pub fn xdata_write_setup(address: u16, value: u8, bank: u8) -> ControlSetup {
    ControlSetup::vendor_out(REQ_XDATA_WRITE, address, u16::from(bank) << 8 | u16::from(value))
}

/// F3 SETUP: wValue bit 0 = power on (§3).
pub fn power_setup(on: bool) -> ControlSetup {
    ControlSetup::vendor_out(REQ_PCIE_POWER, u16::from(on), 0)
}

/// Largest E4 read the firmware answers in full: 512 bytes on SuperSpeed, 64 on high speed (§3).
pub fn xdata_read_limit(superspeed: bool) -> usize {
    if superspeed {
        512
    } else {
        64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_type_values_match_section_4_1() {
        assert_eq!(FmtType::MRd32 as u8, 0x00);
        assert_eq!(FmtType::MRd64 as u8, 0x20);
        assert_eq!(FmtType::MWr32 as u8, 0x40);
        assert_eq!(FmtType::MWr64 as u8, 0x60);
        assert_eq!(FmtType::CfgRd0 as u8, 0x04);
        assert_eq!(FmtType::CfgRd1 as u8, 0x05);
        assert_eq!(FmtType::CfgWr0 as u8, 0x44);
        assert_eq!(FmtType::CfgWr1 as u8, 0x45);
        // §4.1: `fmt & 0xDF == 0x40` marks memory writes as posted; config writes are not.
        assert!(FmtType::MWr32.is_posted() && FmtType::MWr64.is_posted());
        assert!(!FmtType::CfgWr0.is_posted() && !FmtType::CfgWr1.is_posted());
        assert!(!FmtType::MRd64.is_posted());
    }

    #[test]
    fn header_size_follows_the_address_per_section_4_1() {
        assert_eq!(FmtType::memory_read(0x1000_0000), FmtType::MRd32);
        assert_eq!(FmtType::memory_read(0x8_0000_0000), FmtType::MRd64);
        assert_eq!(FmtType::memory_write(0xFFFF_FFFC), FmtType::MWr32);
        assert_eq!(FmtType::memory_write(0x1_0000_0000), FmtType::MWr64);
        assert_eq!(FmtType::config_read(0), FmtType::CfgRd0);
        assert_eq!(FmtType::config_read(4), FmtType::CfgRd1);
        assert_eq!(FmtType::config_write(2), FmtType::CfgWr1);
    }

    #[test]
    fn byte_enables_per_section_4_1() {
        // be = ((1 << size) - 1) << (address & 3)
        assert_eq!(byte_enable(0x100, 4), Some(0x0F));
        assert_eq!(byte_enable(0x101, 1), Some(0x02));
        assert_eq!(byte_enable(0x102, 2), Some(0x0C));
        assert_eq!(byte_enable(0x103, 1), Some(0x08));
        assert_eq!(byte_enable(0x101, 2), Some(0x06));
        assert_eq!(byte_enable(0x102, 4), None);
        assert_eq!(byte_enable(0x100, 0), None);
    }

    #[test]
    fn f0_config_write_wire_image() {
        // §3 + §4.2: CfgWr1 to bus 4 dev 0 fn 0 register 0x04, byte enables 0x1 (one byte).
        let request = F0Request {
            fmt: FmtType::CfgWr1,
            byte_enable: 0x01,
            mode: F0Mode::Single,
            address: 4 << 24 | 0x04,
            value: 0x07,
        };
        assert_eq!(request.setup().to_bytes(12), [0x40, 0xF0, 0x45, 0x01, 0x00, 0x00, 12, 0]);
        assert_eq!(request.payload(), [0x04, 0x00, 0x00, 0x04, 0, 0, 0, 0, 0x07, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn f0_streaming_write_wire_image() {
        // §4.4: wValue = MWr fmt | 0x0F << 8, wIndex = 1, value = dword count.
        let request = F0Request {
            fmt: FmtType::MWr64,
            byte_enable: 0x0F,
            mode: F0Mode::StreamWrite,
            address: 0x8_0000_1000,
            value: 256,
        };
        assert_eq!(request.setup().to_bytes(12), [0x40, 0xF0, 0x60, 0x0F, 0x01, 0x00, 12, 0]);
        assert_eq!(request.payload(), [0x00, 0x10, 0, 0, 0x08, 0, 0, 0, 0x00, 0x01, 0, 0]);
        // §4.5: streaming read arms with mode 2 in wIndex.
        let read = F0Request { fmt: FmtType::MRd32, mode: F0Mode::StreamRead, ..request };
        assert_eq!(read.setup().to_bytes(12)[2..6], [0x00, 0x0F, 0x02, 0x00]);
    }

    #[test]
    fn f0_reply_decoding_per_section_3() {
        // Data 0x744C1002 (LE), completion status 0b001 (UR) in bits 7:5 of byte 4.
        let reply = F0Reply::parse(&[0x02, 0x10, 0x4C, 0x74, 0x20, 0x04, 0x01, 0x00]).unwrap();
        assert_eq!(reply.data, 0x744C_1002);
        assert_eq!(reply.status, CompletionStatus::UnsupportedRequest);
        assert_eq!(reply.header, 0x2004);
        assert_eq!(reply.completion_type, 0x01);
        assert_eq!(reply.ret_status, RetStatus::Completed);
        let timeout = F0Reply::parse(&[0, 0, 0, 0, 0, 0, 0, 0xFF]).unwrap();
        assert_eq!(timeout.ret_status, RetStatus::Timeout);
        assert_eq!(
            F0Reply::parse(&[0, 0, 0, 0, 0, 0, 0, 1]).unwrap().ret_status,
            RetStatus::EngineError
        );
        assert_eq!(CompletionStatus::from(0b100), CompletionStatus::CompleterAbort);
        assert_eq!(CompletionStatus::from(0b010), CompletionStatus::ConfigRequestRetryStatus);
        assert_eq!(CompletionStatus::from(0b011), CompletionStatus::Reserved(0b011));
        assert!(F0Reply::parse(&[0; 7]).is_none());
        assert!(F0Reply::parse(&[0; 9]).is_none());
    }

    #[test]
    fn f2_wire_images_per_sections_4_6_and_4_7() {
        // §4.6: write of 100 KiB into slot 16: sectors = 200, slots = ceil(100K / 16K) = 7.
        let write = F2Request::for_len(SramDirection::Write, 16, 100 * 1024).unwrap();
        assert_eq!(write.setup().to_bytes(0), [0x40, 0xF2, 200, 0x00, 16, 7, 0, 0]);
        assert_eq!(write.wire_len(), 100 * 1024);
        // §4.7: read arm of 1000 bytes: wValue = ceil(1000/512) | 0x8000, wIndex = 1 << 8.
        let read = F2Request::for_len(SramDirection::Read, 0, 1000).unwrap();
        assert_eq!(read.setup().to_bytes(0), [0x40, 0xF2, 0x02, 0x80, 0x00, 0x01, 0, 0]);
        assert_eq!(read.wire_len(), 1024);
        // A full 512 KiB read: 1024 sectors, 32 slots.
        let full = F2Request::for_len(SramDirection::Read, 0, SRAM_SIZE).unwrap();
        assert_eq!(full.setup().value, 0x8000 | 1024);
        assert_eq!(full.setup().index, 32 << 8);
        assert!(F2Request::for_len(SramDirection::Write, 16, 256 * 1024 + 1).is_none());
        assert!(F2Request::for_len(SramDirection::Write, 0, 0).is_none());
    }

    #[test]
    fn xdata_and_power_wire_images_per_section_3() {
        assert_eq!(xdata_read_setup(0xB450, 0).to_bytes(1), [0xC0, 0xE4, 0x50, 0xB4, 0, 0, 1, 0]);
        assert_eq!(xdata_read_setup(0x1234, 1).to_bytes(8)[4..6], [0x00, 0x01]);
        assert_eq!(
            xdata_write_setup(0xA800, 0x5A, 0).to_bytes(0),
            [0x40, 0xE5, 0x00, 0xA8, 0x5A, 0x00, 0, 0]
        );
        assert_eq!(power_setup(true).to_bytes(0), [0x40, 0xF3, 1, 0, 0, 0, 0, 0]);
        assert_eq!(power_setup(false).to_bytes(0), [0x40, 0xF3, 0, 0, 0, 0, 0, 0]);
        assert_eq!(xdata_read_limit(true), 512);
        assert_eq!(xdata_read_limit(false), 64);
    }
}
