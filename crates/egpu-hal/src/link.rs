//! The link: how PCIe transactions and GPU-visible host memory reach a card.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

use crate::LinkError;

/// Bus/device/function of a PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number (0–31).
    pub device: u8,
    /// Function number (0–7).
    pub function: u8,
}

impl Bdf {
    /// The function at `bus:device.function`.
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

/// What GPU-visible host memory a link offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaInfo {
    /// Bytes that can be allocated in all (0: the link has none).
    pub total_bytes: u64,
    /// Allocation granule: region sizes are rounded up to it and regions start on it.
    pub granule: u64,
    /// `offset` of [`PcieLink::dma_write`] must be a multiple of this.
    pub write_alignment: u64,
    /// Whether the host can read the memory without the device releasing the read
    /// (false on the USB bridge, where an SRAM read waits for [`DmaRelease`]).
    pub host_reads_directly: bool,
}

impl DmaInfo {
    /// A link without GPU-visible host memory.
    pub const NONE: DmaInfo =
        DmaInfo { total_bytes: 0, granule: 1, write_alignment: 1, host_reads_directly: true };
}

/// A region of host-side memory the device reaches by DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaRegion {
    /// The link's own handle.
    pub id: u64,
    /// Where the device reaches the region: the PCIe bus address a GPU page-table entry or a
    /// copy-engine packet points at.
    pub bus_address: u64,
    /// Size in bytes.
    pub size: u64,
}

impl DmaRegion {
    /// Check that `offset..offset+len` lies inside the region.
    pub fn check(&self, op: &str, offset: u64, len: usize) -> Result<(), LinkError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(LinkError::OutOfRange { op: op.into(), offset, len, size: self.size }),
        }
    }
}

/// A write the device must make once the data of a [`PendingDmaRead`] is in place, so that
/// the link can hand it to the host (the USB bridge: a dword written into the completion-queue
/// page releases the armed F2 bulk IN, usb-bridge.md §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRelease {
    /// Bus address to write.
    pub bus_address: u64,
    /// Dword value to write there.
    pub value: u32,
}

/// A read of GPU-visible memory that has been started and is finished by
/// [`PcieLink::dma_read_finish`].
#[derive(Debug, PartialEq, Eq)]
pub struct PendingDmaRead {
    /// The region read.
    pub region: DmaRegion,
    /// Start of the read in the region.
    pub offset: u64,
    /// Bytes to read.
    pub len: usize,
    /// What the device must write after it has put the data in place; `None` where the host
    /// reads the memory directly.
    pub release: Option<DmaRelease>,
    /// The link's own bookkeeping (e.g. the bytes to drop before `offset`).
    pub token: u64,
}

/// A device range mapped into this process (Linux sysfs BARs, VFIO regions): dword access
/// without a round trip through the link. The mapping stays valid while the value lives.
#[derive(Clone)]
pub struct MappedRange {
    base: NonNull<u8>,
    len: usize,
    _keep_mapped: Arc<dyn Send + Sync>,
}

// SAFETY: the range is device memory accessed only with volatile dword operations; the owner
// object (`_keep_mapped`) is Send + Sync and keeps the mapping alive for every clone.
unsafe impl Send for MappedRange {}
// SAFETY: as above; concurrent volatile accesses to device registers are what hardware sees
// from any multi-threaded driver, and no Rust reference into the range is ever created.
unsafe impl Sync for MappedRange {}

impl MappedRange {
    /// Wrap a mapping.
    ///
    /// # Safety
    /// `base..base+len` must be mapped readable and writable for as long as `keep_mapped`
    /// lives (typically `keep_mapped` owns the `mmap` and unmaps on drop), and nothing may
    /// create Rust references into it.
    pub unsafe fn new(base: NonNull<u8>, len: usize, keep_mapped: Arc<dyn Send + Sync>) -> Self {
        Self { base, len, _keep_mapped: keep_mapped }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn dword(&self, op: &str, offset: usize) -> Result<*mut u32, LinkError> {
        if !offset.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: op.into(), address: offset as u64, len: 4 });
        }
        if offset.checked_add(4).is_none_or(|end| end > self.len) {
            return Err(LinkError::OutOfRange {
                op: op.into(),
                offset: offset as u64,
                len: 4,
                size: self.len as u64,
            });
        }
        // SAFETY: offset + 4 <= len, so the pointer stays inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(offset) }.cast())
    }

    /// Volatile dword read at `offset`.
    pub fn read32(&self, offset: usize) -> Result<u32, LinkError> {
        let ptr = self.dword("mapped read", offset)?;
        // SAFETY: in bounds and aligned (checked above), mapped while `self` lives (contract of
        // `new`); device memory must be read with a volatile access.
        Ok(unsafe { ptr.read_volatile() })
    }

    /// Volatile dword write at `offset`.
    pub fn write32(&self, offset: usize, value: u32) -> Result<(), LinkError> {
        let ptr = self.dword("mapped write", offset)?;
        // SAFETY: as in `read32`.
        unsafe { ptr.write_volatile(value) };
        Ok(())
    }
}

impl fmt::Debug for MappedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedRange").field("base", &self.base).field("len", &self.len).finish()
    }
}

/// What a link has sent and awaited so far, counted the same way on every link that counts,
/// so `egpu bench link` can compare links: a request is one message to the far side (a USB
/// transfer, a socket request, a TLP), a round trip one the host waits on for an answer.
/// Posted writes are requests without a round trip until something waits for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Messages sent to the far side.
    pub requests: u64,
    /// Requests the host waited on for an answer (reads, replies, completions).
    pub round_trips: u64,
    /// Bytes sent, headers included where the link has them.
    pub bytes_out: u64,
    /// Bytes received, headers included where the link has them.
    pub bytes_in: u64,
}

impl std::ops::Sub for LinkCounters {
    type Output = LinkCounters;
    fn sub(self, earlier: LinkCounters) -> LinkCounters {
        LinkCounters {
            requests: self.requests.saturating_sub(earlier.requests),
            round_trips: self.round_trips.saturating_sub(earlier.round_trips),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
        }
    }
}

/// How PCIe transactions and GPU-visible host memory reach a card. Implemented by the USB
/// bridge (egpu-link) and the emulator's in-process link (egpu-emu); Linux PCIe, TinyGPU and
/// remote links follow.
///
/// Memory writes are posted: an implementation may hold them in flight until the next read,
/// a [`PcieLink::flush`], or a bounded queue fills, so callers batch writes freely. Reads are
/// ordered after every earlier write.
pub trait PcieLink: Send {
    /// A short name of the kind of link, for messages ("usb-asm2464", "emulated").
    fn kind(&self) -> &'static str;

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

    /// Bring the link back to a known state after an error: drop queued work and reset the
    /// transport. The device behind the link is not reset (that is the vendor driver's job).
    fn reset(&mut self) -> Result<(), LinkError>;

    /// Requests and round trips so far; `None` on a link that has no messages to count
    /// (BARs mapped into this process: accesses are CPU loads and stores).
    fn counters(&self) -> Option<LinkCounters> {
        None
    }

    /// What GPU-visible host memory this link offers.
    fn dma_info(&self) -> DmaInfo {
        DmaInfo::NONE
    }

    /// Allocate GPU-visible host memory (at least `size` bytes, rounded up to the granule).
    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        let _ = size;
        Err(LinkError::Unsupported { op: "GPU-visible memory".into(), link: self.kind() })
    }

    /// Free a region from [`PcieLink::dma_alloc`].
    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        let _ = region;
        Err(LinkError::Unsupported { op: "GPU-visible memory".into(), link: self.kind() })
    }

    /// Write host data into a region. Returning does not prove the device can already see
    /// the bytes (the USB bridge gives no such signal, usb-bridge.md §4.6): a device reader
    /// that must know puts a sentinel in the data.
    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        let _ = (region, offset, data);
        Err(LinkError::Unsupported { op: "GPU-visible memory".into(), link: self.kind() })
    }

    /// Start reading `len` bytes of a region. If the pending read names a [`DmaRelease`],
    /// the device must make that write after putting the data in place; then
    /// [`PcieLink::dma_read_finish`] returns the data.
    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        let _ = (region, offset, len);
        Err(LinkError::Unsupported { op: "GPU-visible memory".into(), link: self.kind() })
    }

    /// Finish a read started by [`PcieLink::dma_read_begin`]; waits (with a deadline) for the
    /// device's release where there is one.
    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        let _ = pending;
        Err(LinkError::Unsupported { op: "GPU-visible memory".into(), link: self.kind() })
    }

    /// Map `len` bytes of device memory at bus address `address` into this process, on links
    /// that can (Linux sysfs/VFIO). `Ok(None)`: this link has no direct mapping; use the
    /// transaction methods.
    fn map_range(&mut self, address: u64, len: u64) -> Result<Option<MappedRange>, LinkError> {
        let _ = (address, len);
        Ok(None)
    }

    /// Convenience: 16-bit configuration read.
    fn config_read16(&mut self, bdf: Bdf, offset: u16) -> Result<u16, LinkError> {
        Ok(self.config_read(bdf, offset, 2)? as u16)
    }

    /// Convenience: 32-bit configuration read.
    fn config_read32(&mut self, bdf: Bdf, offset: u16) -> Result<u32, LinkError> {
        self.config_read(bdf, offset, 4)
    }
}

impl<L: PcieLink + ?Sized> PcieLink for Box<L> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn counters(&self) -> Option<LinkCounters> {
        (**self).counters()
    }
    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        (**self).config_read(bdf, offset, size)
    }
    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        (**self).config_write(bdf, offset, size, value)
    }
    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        (**self).mem_read32(address)
    }
    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        (**self).mem_write(address, size, value)
    }
    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        (**self).mem_read(address, len)
    }
    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        (**self).mem_write_bytes(address, data)
    }
    fn flush(&mut self) -> Result<(), LinkError> {
        (**self).flush()
    }
    fn reset(&mut self) -> Result<(), LinkError> {
        (**self).reset()
    }
    fn dma_info(&self) -> DmaInfo {
        (**self).dma_info()
    }
    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        (**self).dma_alloc(size)
    }
    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        (**self).dma_free(region)
    }
    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        (**self).dma_write(region, offset, data)
    }
    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        (**self).dma_read_begin(region, offset, len)
    }
    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        (**self).dma_read_finish(pending)
    }
    fn map_range(&mut self, address: u64, len: u64) -> Result<Option<MappedRange>, LinkError> {
        (**self).map_range(address, len)
    }
}
