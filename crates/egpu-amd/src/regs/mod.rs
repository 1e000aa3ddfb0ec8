//! Register, packet and firmware-interface tables generated from the Linux amdgpu headers.
//!
//! Every file here except this one is written by `cargo xtask regen` from Debian's
//! `linux-source-6.12` (each file names its headers at the top) and checked by
//! `cargo xtask regen --check`. Registers keep the vendor's names (`regCP_HQD_ACTIVE`), so a
//! reader can grep the kernel headers. Only the registers the driver uses are generated; each
//! register file lists its selection patterns at the top.

/// A register bitfield: the header's `REG__FIELD__SHIFT` and `REG__FIELD_MASK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name as the header spells it.
    pub name: &'static str,
    /// Bit position of the least significant bit.
    pub shift: u32,
    /// Mask of the field in place (already shifted).
    pub mask: u32,
}

impl Field {
    /// A field descriptor.
    pub const fn new(name: &'static str, shift: u32, mask: u32) -> Self {
        Field { name, shift, mask }
    }
    /// The field's value within a register value.
    pub const fn get(&self, reg_value: u32) -> u32 {
        (reg_value & self.mask) >> self.shift
    }
    /// `value` placed in the field (excess bits dropped).
    pub const fn encode(&self, value: u32) -> u32 {
        (value << self.shift) & self.mask
    }
    /// `reg_value` with the field replaced by `value`.
    pub const fn set(&self, reg_value: u32, value: u32) -> u32 {
        (reg_value & !self.mask) | self.encode(value)
    }
}

/// A register: dword offset within its IP segment, the segment (`BASE_IDX`) and its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    /// Register name without the `reg`/`mm` prefix.
    pub name: &'static str,
    /// Dword offset relative to the segment base.
    pub offset: u32,
    /// Index of the IP base address (from discovery) this offset is relative to.
    pub base_idx: u8,
    /// Fields, in header order.
    pub fields: &'static [Field],
}

impl Reg {
    /// A register descriptor.
    pub const fn new(
        name: &'static str,
        offset: u32,
        base_idx: u8,
        fields: &'static [Field],
    ) -> Self {
        Reg { name, offset, base_idx, fields }
    }
    /// The field called `name`, if the register has one.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }
    /// Absolute dword address given the IP instance's segment bases from discovery
    /// (`None` if the segment is missing or the sum overflows).
    pub fn absolute(&self, segment_bases: &[u32]) -> Option<u32> {
        segment_bases.get(usize::from(self.base_idx))?.checked_add(self.offset)
    }
}

/// A PM4 type-3 opcode (`PACKET3_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pm4Opcode(pub u8);

impl Pm4Opcode {
    /// The type-3 header for a packet with `body_dwords` dwords after the header (1..=0x4000).
    pub const fn header(self, body_dwords: u32) -> u32 {
        (3 << 30) | ((body_dwords.wrapping_sub(1) & 0x3fff) << 16) | ((self.0 as u32) << 8)
    }
}

/// A packet field given by the header as `((x) << N)` (no width is stated there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BitShift(pub u32);

impl BitShift {
    /// `value << N`.
    pub const fn val(self, value: u32) -> u32 {
        value << self.0
    }
}

/// An SDMA packet field: dword index within the packet, mask (unshifted) and shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SdmaField {
    /// Dword index within the packet.
    pub dword: usize,
    /// Mask before shifting.
    pub mask: u32,
    /// Bit position.
    pub shift: u32,
}

impl SdmaField {
    /// A field descriptor.
    pub const fn new(dword: usize, mask: u32, shift: u32) -> Self {
        SdmaField { dword, mask, shift }
    }
    /// `value` placed in the field (excess bits dropped), to be OR-ed into dword `self.dword`.
    pub const fn encode(&self, value: u32) -> u32 {
        (value & self.mask) << self.shift
    }
    /// The field's value within dword `dw`.
    pub const fn get(&self, dw: u32) -> u32 {
        (dw >> self.shift) & self.mask
    }
}

/// An SMU mailbox message id (`PPSMC_MSG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SmuMsg(pub u32);

macro_rules! generated {
    ($($(#[$doc:meta])* $m:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[rustfmt::skip]
        pub mod $m;
    )*};
}

generated! {
    /// GC 11.0.0 registers (also used for GC 11.0.2).
    gc_11_0_0,
    /// GC 11.0.3 registers (Navi32).
    gc_11_0_3,
    /// GC 12.0.0 registers (also used for GC 12.0.1).
    gc_12_0_0,
    /// MMHUB 3.0.0 registers.
    mmhub_3_0_0,
    /// MMHUB 3.0.1 registers.
    mmhub_3_0_1,
    /// MMHUB 3.0.2 registers.
    mmhub_3_0_2,
    /// MMHUB 4.1.0 registers.
    mmhub_4_1_0,
    /// NBIO 4.3.0 registers (RDNA3).
    nbio_4_3_0,
    /// NBIF 6.3.1 registers (RDNA4).
    nbif_6_3_1,
    /// MP 11.0 registers (the SMU mailbox definitions used for MP1 on all targets).
    mp_11_0,
    /// MP 13.0.0 registers (RDNA3 PSP mailbox).
    mp_13_0_0,
    /// MP 14.0.2 registers (RDNA4 PSP mailbox).
    mp_14_0_2,
    /// OSSSYS 6.0.0 registers (IH, RDNA3).
    osssys_6_0_0,
    /// OSSSYS 7.0.0 registers (IH, RDNA4).
    osssys_7_0_0,
    /// HDP 6.0.0 registers.
    hdp_6_0_0,
    /// HDP 7.0.0 registers.
    hdp_7_0_0,
    /// PM4 opcodes, field encodings and event enums.
    pm4,
    /// SDMA packet layouts.
    sdma_pkt,
    /// MQD layouts (v11/v12 compute and SDMA).
    mqd,
    /// PSP command buffer, ring frame and ids.
    psp,
    /// Firmware file headers.
    ucode,
    /// IP discovery structures and hardware ids.
    discovery,
    /// SMU message ids.
    smu,
    /// Doorbell index assignment.
    doorbell,
}
