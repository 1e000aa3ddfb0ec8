//! PCI configuration-space registers and bits, spelled as in Linux `include/uapi/linux/pci_regs.h`
//! and the PCI Express Base Specification.

// Names and values are pci_regs.h's and the spec's, documented there (PCIe Base Spec §7.5 for the
// header and capability registers); a doc line on each would only restate the name.
#![allow(missing_docs)]

pub const PCI_VENDOR_ID: u16 = 0x00;
pub const PCI_DEVICE_ID: u16 = 0x02;
pub const PCI_COMMAND: u16 = 0x04;
pub const PCI_STATUS: u16 = 0x06;
/// Revision (7:0) and class code (31:8).
pub const PCI_CLASS_REVISION: u16 = 0x08;
pub const PCI_HEADER_TYPE: u16 = 0x0E;
pub const PCI_BASE_ADDRESS_0: u16 = 0x10;
pub const PCI_CAPABILITY_LIST: u16 = 0x34;

/// Type 1 (bridge) header: primary (7:0), secondary (15:8), subordinate (23:16) bus numbers.
pub const PCI_PRIMARY_BUS: u16 = 0x18;
pub const PCI_MEMORY_BASE: u16 = 0x20;
pub const PCI_MEMORY_LIMIT: u16 = 0x22;
pub const PCI_PREF_MEMORY_BASE: u16 = 0x24;
pub const PCI_PREF_MEMORY_LIMIT: u16 = 0x26;
pub const PCI_PREF_BASE_UPPER32: u16 = 0x28;
pub const PCI_PREF_LIMIT_UPPER32: u16 = 0x2C;

pub const PCI_COMMAND_IO: u16 = 0x1;
pub const PCI_COMMAND_MEMORY: u16 = 0x2;
pub const PCI_COMMAND_MASTER: u16 = 0x4;

pub const PCI_STATUS_CAP_LIST: u16 = 0x10;

pub const PCI_HEADER_TYPE_MASK: u8 = 0x7F;
pub const PCI_HEADER_TYPE_NORMAL: u8 = 0;
pub const PCI_HEADER_TYPE_BRIDGE: u8 = 1;
/// Header type bit 7: the device has more than one function.
pub const PCI_HEADER_TYPE_MFD: u8 = 0x80;

pub const PCI_BASE_ADDRESS_SPACE_IO: u32 = 0x1;
pub const PCI_BASE_ADDRESS_MEM_TYPE_MASK: u32 = 0x6;
pub const PCI_BASE_ADDRESS_MEM_TYPE_64: u32 = 0x4;
pub const PCI_BASE_ADDRESS_MEM_PREFETCH: u32 = 0x8;
pub const PCI_BASE_ADDRESS_MEM_MASK: u32 = !0xF;
pub const PCI_BASE_ADDRESS_IO_MASK: u32 = !0x3;

/// Standard capability IDs.
pub const PCI_CAP_ID_PM: u8 = 0x01;
pub const PCI_CAP_ID_MSI: u8 = 0x05;
pub const PCI_CAP_ID_EXP: u8 = 0x10;
pub const PCI_CAP_ID_MSIX: u8 = 0x11;

/// Extended capabilities start here (PCIe Base Spec §7.6).
pub const PCI_CFG_SPACE_SIZE: u16 = 0x100;
pub const PCI_CFG_SPACE_EXP_SIZE: u16 = 0x1000;
pub const PCI_EXT_CAP_ID_REBAR: u16 = 0x15;

/// Resizable BAR capability: per entry, capability at +4 and control at +8, entries 8 apart.
pub const PCI_REBAR_CAP: u16 = 4;
pub const PCI_REBAR_CTRL: u16 = 8;
/// Supported sizes, bit n (n ≥ 4) = 2^(n + 16) bytes: bit 4 is 1 MiB.
pub const PCI_REBAR_CAP_SIZES: u32 = 0xFFFF_FFF0;
pub const PCI_REBAR_CTRL_BAR_IDX: u32 = 0x7;
pub const PCI_REBAR_CTRL_NBAR_MASK: u32 = 0xE0;
pub const PCI_REBAR_CTRL_NBAR_SHIFT: u32 = 5;
pub const PCI_REBAR_CTRL_BAR_SIZE: u32 = 0x1F00;
pub const PCI_REBAR_CTRL_BAR_SHIFT: u32 = 8;

/// Class code of display controllers (base class 0x03).
pub const PCI_BASE_CLASS_DISPLAY: u8 = 0x03;
/// Class code of bridges (base class 0x06).
pub const PCI_BASE_CLASS_BRIDGE: u8 = 0x06;
