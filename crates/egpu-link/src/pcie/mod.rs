//! PCIe as seen from the host end of a link: the [`PcieLink`] trait, the fabric walk and BAR
//! access built on it.

pub mod bar;
pub mod caps;
pub mod fabric;
pub mod regs;

use std::fmt;

use bytes::Bytes;

use crate::LinkError;

/// Bus/device/function of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    pub const fn new(bus: u8, device: u8, function: u8) -> Self {
        Self { bus, device, function }
    }

    /// Address field of a configuration TLP: bus << 24 | dev << 19 | fn << 16 | register
    /// (docs/reference/usb-bridge.md §4.2; extended register numbers included).
    pub fn config_address(self, register: u16) -> u32 {
        u32::from(self.bus) << 24
            | u32::from(self.device & 0x1F) << 19
            | u32::from(self.function & 0x7) << 16
            | u32::from(register & 0xFFF)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// How PCIe transactions reach the card. Implemented by the USB bridge today; Linux sysfs,
/// the TinyGPU/remote socket and others later.
///
/// Memory writes are posted: an implementation may hold them in flight until the next read,
/// a [`PcieLink::flush`], or a bounded queue fills, so callers batch writes freely. Reads are
/// ordered after every earlier write.
pub trait PcieLink {
    /// Configuration read of `size` bytes (1, 2 or 4, not crossing a dword) at `offset`.
    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError>;

    /// Configuration write of `size` bytes (1, 2 or 4, not crossing a dword) at `offset`.
    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError>;

    /// One dword memory read with completion checking.
    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError>;

    /// One 1–4 byte posted memory write, within one dword.
    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError>;

    /// Streaming read of `len` bytes; address and length are multiples of 4.
    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError>;

    /// Streaming posted write; address and length are multiples of 4.
    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError>;

    /// Wait until every posted write has left the host and report any that failed.
    fn flush(&mut self) -> Result<(), LinkError>;

    /// Convenience: 16-bit configuration read.
    fn config_read16(&mut self, bdf: Bdf, offset: u16) -> Result<u16, LinkError> {
        Ok(self.config_read(bdf, offset, 2)? as u16)
    }

    /// Convenience: 32-bit configuration read.
    fn config_read32(&mut self, bdf: Bdf, offset: u16) -> Result<u32, LinkError> {
        self.config_read(bdf, offset, 4)
    }
}
