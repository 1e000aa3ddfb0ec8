//! The in-process front-end: an [`egpu_hal::PcieLink`] whose TLPs go straight into the
//! emulated fabric, for driver tests that are not about USB.
//!
//! The fabric is a root port on bus 0 with the card in its slot, as on a PCIe host. There is
//! no link training, no transport and no queue: config and memory requests complete at once,
//! posted writes nothing decodes are dropped as PCIe drops them, and non-posted requests
//! nothing decodes end in Unsupported Request.
//!
//! GPU-visible host memory is emulated host RAM: regions allocated in a host aperture at bus
//! [`HOST_APERTURE_BASE`] (4 GiB, [`HOST_APERTURE_SIZE`] long; above every 32-bit BAR window
//! and below the 32 GiB prefetchable pool of usb-bridge.md §5, so no bridge window claims it
//! and the fabric routes device requests there upstream). The host reads it directly: no
//! release write is needed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use egpu_hal::{Bdf, DmaInfo, DmaRegion, LinkCounters, LinkError, PcieLink, PendingDmaRead};

use crate::config::GpuKind;
use crate::devices::cards;
use crate::error::DmaError;
use crate::lock;
use crate::pcie::{ConfigRead, Fabric, HostSide, Segment};
use crate::stats::EmuStats;

/// Bus address of the emulated host RAM aperture.
pub const HOST_APERTURE_BASE: u64 = 0x1_0000_0000;
/// Bytes of the aperture (all of it can be allocated).
pub const HOST_APERTURE_SIZE: u64 = 4 << 30;
/// Allocation granule of GPU-visible host memory (one host page).
pub const HOST_GRANULE: u64 = 4096;

/// A config read answered with CRS this many times in a row is reported as
/// [`LinkError::ConfigRetry`] (time is virtual here, so the bound is a count).
const CONFIG_RETRY_ATTEMPTS: u32 = 64;

/// How the in-process fabric is built. `Default`: a Navi 31 with 24 GiB of VRAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FabricConfig {
    /// The card in the slot.
    pub gpu: GpuKind,
    /// Bytes of GPU VRAM (sparse; untouched bytes read 0).
    pub vram_size: u64,
    /// Config reads every function answers with Configuration Request Retry Status after an
    /// FLR (§12.6 "CRS after reset").
    pub crs_reads_after_reset: u32,
}

impl Default for FabricConfig {
    fn default() -> Self {
        Self { gpu: GpuKind::Navi31, vram_size: 24 << 30, crs_reads_after_reset: 0 }
    }
}

impl FabricConfig {
    /// Put `gpu` in the slot.
    pub fn with_gpu(mut self, gpu: GpuKind) -> Self {
        self.gpu = gpu;
        self
    }

    /// Bytes of VRAM on the GPU.
    pub fn with_vram_size(mut self, bytes: u64) -> Self {
        self.vram_size = bytes;
        self
    }
}

/// One allocated region of emulated host RAM.
struct HostRegion {
    id: u64,
    bytes: Vec<u8>,
}

/// Emulated host RAM: the fabric's host side for the in-process link.
#[derive(Default)]
struct HostRam {
    /// By bus address.
    regions: BTreeMap<u64, HostRegion>,
    next_id: u64,
    stats: EmuStats,
}

impl HostRam {
    /// The region holding `addr..addr+len` whole, by bus address.
    fn find(&mut self, addr: u64, len: usize) -> Option<(u64, &mut HostRegion)> {
        let (&base, region) = self.regions.range_mut(..=addr).next_back()?;
        let end = addr.checked_add(len as u64)?;
        (end <= base + region.bytes.len() as u64).then_some((base, region))
    }

    /// First fit in the aperture.
    fn alloc(&mut self, size: u64) -> Option<DmaRegion> {
        if size > HOST_APERTURE_SIZE {
            return None;
        }
        let size = size.max(1).next_multiple_of(HOST_GRANULE);
        let mut at = HOST_APERTURE_BASE;
        for (&base, region) in &self.regions {
            if base - at >= size {
                break;
            }
            at = base + region.bytes.len() as u64;
        }
        if at + size > HOST_APERTURE_BASE + HOST_APERTURE_SIZE {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.regions.insert(at, HostRegion { id, bytes: vec![0; usize::try_from(size).ok()?] });
        Some(DmaRegion { id, bus_address: at, size })
    }

    /// The bytes of a region this link handed out, or an error naming what is wrong.
    fn region(&mut self, op: &str, region: &DmaRegion) -> Result<&mut Vec<u8>, LinkError> {
        match self.regions.get_mut(&region.bus_address) {
            Some(r) if r.id == region.id && r.bytes.len() as u64 == region.size => {
                Ok(&mut r.bytes)
            }
            _ => Err(LinkError::Fabric(format!(
                "{op}: region {} at bus 0x{:X} is not allocated on this in-process link (freed already, or from another link)",
                region.id, region.bus_address
            ))),
        }
    }
}

impl HostSide for HostRam {
    fn link_check(&self, _addr: u64, _len: usize) -> Result<(), DmaError> {
        Ok(())
    }

    fn memory(&mut self, addr: u64, len: usize) -> Result<&mut [u8], DmaError> {
        let (base, region) = self.find(addr, len).ok_or(DmaError::NoHostMemory { addr, len })?;
        let at = (addr - base) as usize;
        Ok(&mut region.bytes[at..at + len])
    }

    fn count(&mut self, moved: Option<usize>) {
        match moved {
            Some(bytes) => {
                self.stats.gpu_dma_requests += 1;
                self.stats.gpu_dma_bytes += bytes as u64;
            }
            None => self.stats.gpu_dma_rejected += 1,
        }
    }
}

struct InProc {
    config: FabricConfig,
    fabric: Fabric,
    host: HostRam,
}

impl InProc {
    fn new(config: FabricConfig) -> Self {
        let mut fabric = Fabric::new();
        let slot = cards::root_port(&mut fabric);
        cards::install(&mut fabric, slot, config.gpu, config.vram_size);
        Self { config, fabric, host: HostRam::default() }
    }

    fn unsupported(&mut self, op: String) -> LinkError {
        self.host.stats.unsupported_requests += 1;
        LinkError::UnsupportedRequest { op }
    }
}

/// The emulated fabric behind an in-process link: device-side handle for inspection and
/// stimulus. Cheap to clone; all clones and all links share one state.
#[derive(Clone)]
pub struct EmulatedFabric {
    shared: Arc<Mutex<InProc>>,
}

impl EmulatedFabric {
    /// A powered fabric with the configured card, nothing enumerated yet.
    pub fn new(config: FabricConfig) -> Self {
        Self { shared: Arc::new(Mutex::new(InProc::new(config))) }
    }

    /// A fabric with `gpu` in the slot and the default VRAM size.
    pub fn with_gpu(gpu: GpuKind) -> Self {
        Self::new(FabricConfig::default().with_gpu(gpu))
    }

    /// A link onto this fabric (host side).
    pub fn link(&self) -> InProcessLink {
        InProcessLink { shared: Arc::clone(&self.shared), counters: LinkCounters::default() }
    }

    /// The configuration the fabric was built with.
    pub fn config(&self) -> FabricConfig {
        lock(&self.shared).config.clone()
    }

    /// GPU VRAM at `offset` (zeros past `vram_size` or without a GPU).
    pub fn vram(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        if let Some(vram) = lock(&self.shared).fabric.gpu_memory() {
            vram.read(offset, &mut out);
        }
        out
    }

    /// Store into GPU VRAM directly (dropped past `vram_size` or without a GPU).
    pub fn set_vram(&self, offset: u64, data: &[u8]) {
        if let Some(vram) = lock(&self.shared).fabric.gpu_memory_mut() {
            vram.write(offset, data);
        }
    }

    /// Emulated host RAM at a bus address (`None` unless one allocated region holds it all).
    pub fn host_memory(&self, bus_address: u64, len: usize) -> Option<Vec<u8>> {
        let mut inproc = lock(&self.shared);
        inproc.host.find(bus_address, len).map(|(base, region)| {
            let at = (bus_address - base) as usize;
            region.bytes[at..at + len].to_vec()
        })
    }

    /// The GPU writes `data` at a bus address, obeying bus mastering and the bridges' windows.
    pub fn gpu_dma_write(&self, bus_address: u64, data: &[u8]) -> Result<(), DmaError> {
        let mut inproc = lock(&self.shared);
        let InProc { fabric, host, .. } = &mut *inproc;
        fabric.gpu_dma_write(host, bus_address, data)
    }

    /// The GPU reads `len` bytes at a bus address.
    pub fn gpu_dma_read(&self, bus_address: u64, len: usize) -> Result<Vec<u8>, DmaError> {
        let mut inproc = lock(&self.shared);
        let InProc { fabric, host, .. } = &mut *inproc;
        fabric.gpu_dma_read(host, bus_address, len)
    }

    /// Counters since creation: upstream DMA, unsupported requests, dropped posted writes
    /// (the USB counters stay 0).
    pub fn stats(&self) -> EmuStats {
        lock(&self.shared).host.stats.clone()
    }
}

/// The host side of an [`EmulatedFabric`]: a [`PcieLink`] without a transport.
pub struct InProcessLink {
    shared: Arc<Mutex<InProc>>,
    /// One request per call that reaches the fabric, as if each were one message; the
    /// non-posted ones (config accesses, memory reads) are the round trips.
    counters: LinkCounters,
}

/// `size` bytes at `offset` must stay inside one dword.
fn check_sub_dword(op: &str, offset: u64, size: u8) -> Result<(), LinkError> {
    if matches!(size, 1 | 2 | 4) && (offset & 3) + u64::from(size) <= 4 {
        Ok(())
    } else {
        Err(LinkError::Unaligned { op: op.into(), address: offset, len: usize::from(size) })
    }
}

fn check_dwords(op: &str, address: u64, len: usize) -> Result<(), LinkError> {
    if address.is_multiple_of(4) && len.is_multiple_of(4) {
        Ok(())
    } else {
        Err(LinkError::Unaligned { op: op.into(), address, len })
    }
}

impl InProcessLink {
    /// Count one call that reaches the fabric.
    fn count(&mut self, round_trip: bool, bytes_out: usize, bytes_in: usize) {
        self.counters.requests += 1;
        self.counters.round_trips += u64::from(round_trip);
        self.counters.bytes_out += bytes_out as u64;
        self.counters.bytes_in += bytes_in as u64;
    }

    /// The function a config request to `bdf` reaches: Type 0 on bus 0, Type 1 beyond.
    fn route(inproc: &mut InProc, op: &str, bdf: Bdf) -> Result<usize, LinkError> {
        match inproc.fabric.route_config(bdf.bus, bdf.device, bdf.function, bdf.bus != 0) {
            Some(fid) => Ok(fid),
            None => Err(inproc.unsupported(op.to_string())),
        }
    }
}

impl PcieLink for InProcessLink {
    fn kind(&self) -> &'static str {
        "emulated"
    }

    fn counters(&self) -> Option<LinkCounters> {
        Some(self.counters)
    }

    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        let op = format!("config read of {bdf} at 0x{offset:03X}");
        check_sub_dword(&op, u64::from(offset), size)?;
        self.count(true, 0, size.into());
        let mut inproc = lock(&self.shared);
        let fid = Self::route(&mut inproc, &op, bdf)?;
        for _ in 0..CONFIG_RETRY_ATTEMPTS {
            if let ConfigRead::Data(dword) = inproc.fabric.config_read(fid, offset & 0xFFC) {
                let shifted = dword >> (8 * (offset & 3));
                return Ok(if size == 4 { shifted } else { shifted & ((1 << (8 * size)) - 1) });
            }
        }
        Err(LinkError::ConfigRetry { op, attempts: CONFIG_RETRY_ATTEMPTS })
    }

    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        let op = format!("config write of {bdf} at 0x{offset:03X}");
        check_sub_dword(&op, u64::from(offset), size)?;
        self.count(true, size.into(), 0);
        let mut inproc = lock(&self.shared);
        let fid = Self::route(&mut inproc, &op, bdf)?;
        let shift = offset & 3;
        let byte_enables = (((1u16 << size) - 1) << shift) as u8;
        let crs = inproc.config.crs_reads_after_reset;
        let word = value << (8 * shift);
        inproc.fabric.config_write(fid, offset & 0xFFC, word, byte_enables, crs);
        Ok(())
    }

    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        let mut word = [0u8; 4];
        let op = || format!("memory read of 0x{address:X}");
        check_dwords(&op(), address, 4)?;
        self.count(true, 0, 4);
        let mut inproc = lock(&self.shared);
        match inproc.fabric.read_segment(address, &mut word) {
            Segment::Decoded(_) => Ok(u32::from_le_bytes(word)),
            Segment::Undecoded(_) => Err(inproc.unsupported(op())),
        }
    }

    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        check_sub_dword("memory write", address, size)?;
        self.count(false, size.into(), 0);
        let shift = address & 3;
        let byte_enables = (((1u16 << size) - 1) << shift) as u8;
        let mut inproc = lock(&self.shared);
        let InProc { fabric, host, .. } = &mut *inproc;
        if !fabric.write_dword(address - shift, value << (8 * shift), byte_enables, host) {
            host.stats.posted_writes_dropped += 1;
        }
        Ok(())
    }

    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        check_dwords("streaming memory read", address, len)?;
        self.count(true, 0, len);
        let mut out = vec![0u8; len];
        let mut inproc = lock(&self.shared);
        let mut off = 0usize;
        while off < len {
            let at = address.wrapping_add(off as u64);
            match inproc.fabric.read_segment(at, &mut out[off..]) {
                Segment::Decoded(n) => off += n,
                Segment::Undecoded(_) => {
                    return Err(inproc.unsupported(format!(
                        "streaming read of {len} bytes at 0x{address:X} (nothing decodes 0x{at:X})"
                    )))
                }
            }
        }
        Ok(out)
    }

    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        check_dwords("streaming memory write", address, data.len())?;
        self.count(false, data.len(), 0);
        let mut inproc = lock(&self.shared);
        let InProc { fabric, host, .. } = &mut *inproc;
        let mut off = 0usize;
        while off < data.len() {
            let at = address.wrapping_add(off as u64);
            match fabric.write_segment(at, &data[off..], host) {
                Segment::Decoded(n) => off += n,
                Segment::Undecoded(n) => {
                    host.stats.posted_writes_dropped += (n / 4) as u64;
                    off += n;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        // Writes complete as they are made: nothing is in flight.
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LinkError> {
        // No transport and no queue: there is nothing to bring back.
        Ok(())
    }

    fn dma_info(&self) -> DmaInfo {
        DmaInfo {
            total_bytes: HOST_APERTURE_SIZE,
            granule: HOST_GRANULE,
            write_alignment: 1,
            host_reads_directly: true,
        }
    }

    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        lock(&self.shared).host.alloc(size).ok_or_else(|| LinkError::Busy {
            op: format!("allocate {size} bytes of GPU-visible memory"),
            reason: format!(
                "no free range that large in the {} GiB host aperture; free regions first",
                HOST_APERTURE_SIZE >> 30
            ),
        })
    }

    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        let mut inproc = lock(&self.shared);
        inproc.host.region("free GPU-visible memory", &region)?;
        inproc.host.regions.remove(&region.bus_address);
        Ok(())
    }

    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        let op = "write GPU-visible memory";
        region.check(op, offset, data.len())?;
        let mut inproc = lock(&self.shared);
        let bytes = inproc.host.region(op, region)?;
        bytes[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        Ok(())
    }

    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        let op = "read GPU-visible memory";
        region.check(op, offset, len)?;
        lock(&self.shared).host.region(op, region)?;
        Ok(PendingDmaRead { region: *region, offset, len, release: None, token: 0 })
    }

    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        let op = "read GPU-visible memory";
        pending.region.check(op, pending.offset, pending.len)?;
        let mut inproc = lock(&self.shared);
        let bytes = inproc.host.region(op, &pending.region)?;
        let at = pending.offset as usize;
        Ok(bytes[at..at + pending.len].to_vec())
    }
}
