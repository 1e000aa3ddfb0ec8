//! Host side of the emulated GPU's stand-in copy engine (`egpu_emu::copy_engine`: a small
//! register block in the GPU's MMIO BAR that is *not* a real vendor block). It lets the demo
//! and the link benchmark make the GPU DMA into GPU-visible memory and release armed reads
//! until the real AMD/NVIDIA engines exist.

use egpu_emu::copy_engine::{
    BASE, DST, FENCE_ADDR, FENCE_GO, FENCE_VALUE, FLAGS, FLAG_DST_PCIE, FLAG_SRC_PCIE, GO, LENGTH,
    SRC, STATUS,
};
use egpu_hal::{BarMmio, BarRegion, LinkError, PcieLink};

/// One end of a GPU copy.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    /// Offset into the GPU's VRAM.
    Vram(u64),
    /// PCIe bus address (bridge SRAM, queue pages).
    Bus(u64),
}

/// The copy engine of an emulated card, reached through its MMIO BAR.
pub struct EmulatedCopyEngine {
    /// The card's MMIO BAR.
    pub mmio: BarRegion,
}

impl EmulatedCopyEngine {
    /// Copy `len` bytes from `src` to `dst` on the GPU. Every register write leaves in one
    /// coalesced streaming transfer (SRC, DST, LENGTH, FLAGS, GO are adjacent).
    pub fn copy(
        &self,
        link: &mut dyn PcieLink,
        src: Place,
        dst: Place,
        len: u32,
    ) -> Result<(), LinkError> {
        let (src, src_flag) = split(src, FLAG_SRC_PCIE);
        let (dst, dst_flag) = split(dst, FLAG_DST_PCIE);
        let mut bar = BarMmio::new(link, self.mmio);
        let mut batch = bar.batch();
        batch
            .write32(BASE + SRC, src as u32)?
            .write32(BASE + SRC + 4, (src >> 32) as u32)?
            .write32(BASE + DST, dst as u32)?
            .write32(BASE + DST + 4, (dst >> 32) as u32)?
            .write32(BASE + LENGTH, len)?
            .write32(BASE + FLAGS, src_flag | dst_flag)?
            .write32(BASE + GO, 1)?;
        batch.submit()
    }

    /// Make the GPU write one dword to a bus address (e.g. the CQ page, releasing an F2 read).
    pub fn fence(
        &self,
        link: &mut dyn PcieLink,
        address: u64,
        value: u32,
    ) -> Result<(), LinkError> {
        let mut bar = BarMmio::new(link, self.mmio);
        let mut batch = bar.batch();
        batch
            .write32(BASE + FENCE_ADDR, address as u32)?
            .write32(BASE + FENCE_ADDR + 4, (address >> 32) as u32)?
            .write32(BASE + FENCE_VALUE, value)?
            .write32(BASE + FENCE_GO, 1)?;
        batch.submit()
    }

    /// STATUS: 0 when the last copy or fence succeeded.
    pub fn status(&self, link: &mut dyn PcieLink) -> Result<u32, LinkError> {
        BarMmio::new(link, self.mmio).read32(BASE + STATUS)
    }
}

fn split(place: Place, bus_flag: u32) -> (u64, u32) {
    match place {
        Place::Vram(offset) => (offset, 0),
        Place::Bus(address) => (address, bus_flag),
    }
}
