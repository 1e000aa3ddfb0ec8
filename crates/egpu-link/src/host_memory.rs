//! GPU-visible host memory that this process has mapped (Linux PCIe's locked pages, TinyGPU's
//! shared buffers): the bookkeeping and the host side of `dma_*` shared by those links.

use bytes::Bytes;
use egpu_hal::{DmaRegion, PendingDmaRead};
use memmap2::MmapMut;

use crate::LinkError;

/// Live regions and their mappings.
#[derive(Default)]
pub(crate) struct MappedRegions {
    regions: Vec<(DmaRegion, MmapMut)>,
    next_id: u64,
}

impl MappedRegions {
    /// Record a mapping the device reaches at `bus_address`; the region covers all of it.
    pub(crate) fn insert(&mut self, bus_address: u64, memory: MmapMut) -> DmaRegion {
        self.next_id += 1;
        let region = DmaRegion { id: self.next_id, bus_address, size: memory.len() as u64 };
        self.regions.push((region, memory));
        region
    }

    fn index(&self, op: &str, region: &DmaRegion) -> Result<usize, LinkError> {
        self.regions.iter().position(|(live, _)| live == region).ok_or_else(|| LinkError::Busy {
            op: op.into(),
            reason: format!("{region:?} is not a live GPU-visible region of this link"),
        })
    }

    /// Forget a region and unmap it.
    pub(crate) fn remove(&mut self, region: &DmaRegion) -> Result<(), LinkError> {
        let index = self.index("freeing GPU-visible memory", region)?;
        self.regions.swap_remove(index);
        Ok(())
    }

    /// Copy `data` into a region, then order it before later device-visible writes.
    pub(crate) fn write(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        data: &Bytes,
    ) -> Result<(), LinkError> {
        let op = "writing GPU-visible memory";
        region.check(op, offset, data.len())?;
        let index = self.index(op, region)?;
        let start = offset as usize;
        self.regions[index].1[start..start + data.len()].copy_from_slice(data);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// A read the host makes itself: no release write needed.
    pub(crate) fn read_begin(
        &self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        let op = "reading GPU-visible memory";
        region.check(op, offset, len)?;
        self.index(op, region)?;
        Ok(PendingDmaRead { region: *region, offset, len, release: None, token: 0 })
    }

    /// The bytes of a read begun with [`MappedRegions::read_begin`].
    pub(crate) fn read_finish(&self, pending: &PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        let index = self.index("reading GPU-visible memory", &pending.region)?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let start = pending.offset as usize;
        Ok(self.regions[index].1[start..start + pending.len].to_vec())
    }
}
