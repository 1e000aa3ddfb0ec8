//! The GPU behind the bridge, as far as this crate models it: memory behind its BARs and an
//! emulator-only copy engine. Real vendor register models (AMD SDMA, NVIDIA CE) come later.

use crate::config::GpuKind;
use crate::sparse::SparseMem;

/// An emulator-only DMA engine in the GPU's MMIO BAR (Navi 31 BAR5, GA102 BAR0) at
/// [`copy_engine::BASE`].
///
/// **This is not a real AMD or NVIDIA register block.** It is a stand-in for SDMA / the copy
/// engine so tests can make "the GPU" move data between VRAM and the bridge's memories and
/// write the CQ release (§4.7, §7.2) through the same PCIe rules a real engine obeys
/// (bus-master gating, upstream decode of SRAM and the queue pages). All registers are
/// little-endian and reached with ordinary memory TLPs.
pub mod copy_engine {
    /// Offset of the block inside the MMIO BAR.
    pub const BASE: u64 = 0xF_0000;
    /// u64: source (VRAM offset, or PCIe bus address with [`FLAG_SRC_PCIE`]).
    pub const SRC: u64 = 0x00;
    /// u64: destination (VRAM offset, or PCIe bus address with [`FLAG_DST_PCIE`]).
    pub const DST: u64 = 0x08;
    /// u32: bytes to copy.
    pub const LENGTH: u64 = 0x10;
    /// u32: [`FLAG_SRC_PCIE`] | [`FLAG_DST_PCIE`].
    pub const FLAGS: u64 = 0x14;
    /// u32: write 1 to run the copy synchronously; reads 0 afterwards.
    pub const GO: u64 = 0x18;
    /// u32: [`STATUS_OK`] or [`STATUS_ERROR`] after the last copy or fence.
    pub const STATUS: u64 = 0x1C;
    /// u64: PCIe bus address the fence dword goes to.
    pub const FENCE_ADDR: u64 = 0x20;
    /// u32: value of the fence dword.
    pub const FENCE_VALUE: u64 = 0x28;
    /// u32: write 1 to write FENCE_VALUE to FENCE_ADDR (one dword, upstream DMA).
    pub const FENCE_GO: u64 = 0x2C;
    /// Size of the register block.
    pub const SIZE: u64 = 0x30;
    /// FLAGS bit 0: SRC is a PCIe bus address (else a VRAM offset).
    pub const FLAG_SRC_PCIE: u32 = 1 << 0;
    /// FLAGS bit 1: DST is a PCIe bus address (else a VRAM offset).
    pub const FLAG_DST_PCIE: u32 = 1 << 1;
    /// STATUS: idle / last operation succeeded.
    pub const STATUS_OK: u32 = 0;
    /// STATUS: last operation failed (e.g. DMA rejected, VRAM range out of bounds).
    pub const STATUS_ERROR: u32 = 1;
}

/// Memory behind the GPU's BARs.
#[derive(Debug)]
pub(crate) struct GpuModel {
    pub vram: SparseMem,
    pub doorbell: SparseMem,
    pub mmio: SparseMem,
}

impl GpuModel {
    pub fn new(kind: GpuKind, vram_size: u64) -> Option<Self> {
        let (doorbell, mmio) = match kind {
            GpuKind::None => return None,
            // §5: BAR2 doorbells 2 MiB, BAR5 MMIO 1 MiB.
            GpuKind::Navi31 => (2 << 20, 1 << 20),
            // BAR0 MMIO 16 MiB; GA102 has no doorbell BAR in this model.
            GpuKind::Ga102 => (0, 16 << 20),
        };
        Some(Self {
            vram: SparseMem::new(vram_size),
            doorbell: SparseMem::new(doorbell),
            mmio: SparseMem::new(mmio),
        })
    }

    /// Power loss forgets everything.
    pub fn clear(&mut self) {
        self.vram.clear();
        self.doorbell.clear();
        self.mmio.clear();
    }

    pub fn ce_read32(&self, reg: u64) -> u32 {
        self.mmio.read_u32(copy_engine::BASE + reg)
    }

    pub fn ce_read64(&self, reg: u64) -> u64 {
        u64::from(self.ce_read32(reg)) | (u64::from(self.ce_read32(reg + 4)) << 32)
    }

    pub fn ce_write32(&mut self, reg: u64, value: u32) {
        self.mmio.write_u32(copy_engine::BASE + reg, value);
    }
}
