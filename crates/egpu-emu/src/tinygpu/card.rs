//! The card behind the emulated TinyGPU server: a fabric with one GPU, enumerated the way
//! macOS leaves it before the dext starts, the dext's view of that GPU (config space, BAR
//! mappings, reset) and the DMA memory handed out by MAP_SYSMEM_FD, which is what the
//! fabric's host side serves to the GPU's upstream requests. No socket I/O here: each
//! command turns into an [`Outcome`] the session sends.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use super::shm::{self, SharedMapping};
use super::wire::{self, cmd, Request, STATUS_OK};
use crate::config::GpuKind;
use crate::devices::cards;
use crate::error::DmaError;
use crate::pcie::config_space::{CAP_ID_PCIE, DEVCTL_BCR_FLR, PCIE_DEVCTL};
use crate::pcie::header::BarSlot;
use crate::pcie::{ConfigRead, Fabric, FnId, HostSide, Segment};

/// Largest MMIO_READ / MMIO_WRITE: `server.c` copies through a 64 MiB buffer (§A.3).
pub(super) const MAX_MMIO_TRANSFER: u64 = 64 << 20;
/// MAP_SYSMEM_FD rounds sizes up to this (§A.4 step 1).
pub(super) const SYSMEM_GRANULE: u64 = 4 << 10;
/// ... with this minimum ("min 16KB for IOMemoryDescriptor").
pub(super) const SYSMEM_MIN: u64 = 16 << 10;
/// Allocations per session (§A.3: 128, never freed before disconnect).
pub(super) const MAX_SYSMEM_ALLOCATIONS: usize = 128;
/// DMA memory mapped at once: the DART limit of about 1.5 GB (§A.2) `[U]` (enforced here as
/// 1.5 GiB; the real limit is the IOMMU's, not the server's).
pub(super) const MAX_SYSMEM_LIVE: u64 = 3 << 29;
/// Segments one PrepareDMA can return (§A.2: "at most 32 segments").
pub(super) const MAX_SEGMENTS: usize = 32;

/// MAP_BAR's `resp0` for BAR n is `BAR_VIRTUAL_BASE + n * BAR_VIRTUAL_STRIDE`. `server.c`
/// answers with its own virtual address of the mapping (§A.4); the emulator has none, so it
/// answers with a stable made-up user-space address per BAR `[U]`, 64 GiB apart (more than
/// any BAR here can be resized to). A client must treat it as opaque.
pub const BAR_VIRTUAL_BASE: u64 = 0x7E00_0000_0000;
/// See [`BAR_VIRTUAL_BASE`].
pub const BAR_VIRTUAL_STRIDE: u64 = 0x10_0000_0000;
/// First DMA address (IOVA) MAP_SYSMEM_FD hands out in a session `[U]`: above 4 GiB, below
/// the 40-bit limit of §A.2 and below every BAR window of the enumerated fabric.
pub const SYSMEM_IOVA_BASE: u64 = 0x1_0000_0000;
/// Gap left between consecutive DMA segments `[U]`, so segments are never contiguous and a
/// client that assumes one segment per buffer (or contiguity) is caught.
pub const SYSMEM_SEGMENT_GAP: u64 = 64 << 10;

/// Non-prefetchable 32-bit BARs are assigned from here `[U]`.
const MEM32_POOL: u64 = 0x8000_0000;
/// Prefetchable 64-bit BARs from here `[U]` (256 GiB: above any IOVA, below 40 bits).
const PREF64_POOL: u64 = 0x40_0000_0000;
const WINDOW_GRANULE: u64 = 1 << 20;
/// A config read answered with CRS this many times in a row reads all-ones `[U]` (the Mac's
/// root complex retries for a while, then gives up).
const CRS_ATTEMPTS: u32 = 64;

const COMMAND_IO_MEM_MASTER: u32 = 0x7;
const COMMAND_MEM_MASTER: u32 = 0x6;
const COMMAND_MEM: u32 = 0x2;

/// What one request produced.
pub(super) enum Outcome {
    /// A response (header, then data or an error message).
    Reply(Vec<u8>),
    /// A response that carries a descriptor (MAP_SYSMEM_FD).
    ReplyWithFd(Vec<u8>, OwnedFd),
    /// Nothing goes back (MMIO_WRITE is posted).
    Posted,
}

fn ok(resp0: u64, resp1: u64) -> Outcome {
    Outcome::Reply(wire::response(STATUS_OK, resp0, resp1).to_vec())
}

fn err(message: &str) -> Outcome {
    Outcome::Reply(wire::error_response(message))
}

/// Counters the server keeps about the card, for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardStats {
    /// MMIO_WRITEs dropped by validation (unmapped BAR, out of range), as `server.c` drops them.
    pub mmio_writes_dropped: u64,
    /// Dwords of MMIO reads nothing decoded (they read all-ones, as a master abort does).
    pub mmio_reads_unanswered: u64,
    /// Dwords of MMIO writes nothing decoded (dropped, as PCIe drops posted writes).
    pub mmio_writes_undecoded: u64,
    /// MAP_SYSMEM_FD allocations made (all sessions).
    pub sysmem_allocations: u64,
    /// Upstream DMA requests of the GPU that reached DMA memory.
    pub gpu_dma_requests: u64,
    /// Bytes they moved.
    pub gpu_dma_bytes: u64,
    /// Upstream DMA requests refused (bus mastering off, no DMA memory at that address, ...).
    pub gpu_dma_rejected: u64,
}

/// One DMA segment: `len` bytes at an IOVA, backed by `allocation` from `offset`.
struct DmaSegment {
    len: u64,
    allocation: usize,
    offset: usize,
}

/// The DMA memory of the current session: what the GPU's upstream requests reach.
#[derive(Default)]
struct SysmemHost {
    allocations: Vec<SharedMapping>,
    /// By IOVA.
    segments: BTreeMap<u64, DmaSegment>,
    next_iova: u64,
    live_bytes: u64,
    stats: CardStats,
}

impl SysmemHost {
    fn clear(&mut self) {
        self.segments.clear();
        self.allocations.clear();
        self.next_iova = SYSMEM_IOVA_BASE;
        self.live_bytes = 0;
    }
}

impl HostSide for SysmemHost {
    fn link_check(&self, _addr: u64, _len: usize) -> Result<(), DmaError> {
        Ok(())
    }

    fn memory(&mut self, addr: u64, len: usize) -> Result<&mut [u8], DmaError> {
        let missing = DmaError::NoSysmem { addr, len };
        let (&iova, seg) = self.segments.range(..=addr).next_back().ok_or(missing.clone())?;
        let end = addr.checked_add(len as u64).ok_or(missing.clone())?;
        if end > iova + seg.len {
            return Err(missing);
        }
        let at = seg.offset + (addr - iova) as usize;
        let mapping = self.allocations.get_mut(seg.allocation).ok_or(missing)?;
        Ok(&mut mapping.bytes_mut()[at..at + len])
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

/// A BAR the client mapped: where the OS put it on the bus, and its size then.
#[derive(Clone, Copy, Debug)]
struct MappedBar {
    bus_base: u64,
    size: u64,
}

/// The card and the dext's state for it.
pub(super) struct Card {
    fabric: Fabric,
    gpu: FnId,
    host: SysmemHost,
    /// BAR mappings of the current session `[U]`: a new client maps its BARs again.
    mapped: [Option<MappedBar>; 6],
    max_segments: usize,
    crs_after_reset: u32,
}

impl Card {
    /// A fabric with `gpu` in a root port, enumerated; `None` without a GPU.
    pub fn new(
        gpu: GpuKind,
        vram_size: u64,
        max_segments: usize,
        crs_after_reset: u32,
    ) -> Option<Self> {
        let mut fabric = Fabric::new();
        let slot = cards::root_port(&mut fabric);
        let gpu = cards::install(&mut fabric, slot, gpu, vram_size)?;
        let mut next_bus = 1;
        let mut pools = Pools { mem32: MEM32_POOL, pref64: PREF64_POOL };
        enumerate_bus(&mut fabric, 0, &mut next_bus, &mut pools);
        // The dext's Start(): IO Space, Memory Space and Bus Master on the GPU (§A.2).
        set_command(&mut fabric, gpu, COMMAND_IO_MEM_MASTER);
        let mut host = SysmemHost::default();
        host.clear();
        Some(Self {
            fabric,
            gpu,
            host,
            mapped: [None; 6],
            max_segments: max_segments.clamp(1, MAX_SEGMENTS),
            crs_after_reset,
        })
    }

    pub fn stats(&self) -> CardStats {
        self.host.stats.clone()
    }

    pub fn vram(&self, offset: u64, out: &mut [u8]) {
        if let Some(vram) = self.fabric.gpu_memory() {
            vram.read(offset, out);
        }
    }

    pub fn set_vram(&mut self, offset: u64, data: &[u8]) {
        if let Some(vram) = self.fabric.gpu_memory_mut() {
            vram.write(offset, data);
        }
    }

    pub fn gpu_dma_write(&mut self, bus_address: u64, data: &[u8]) -> Result<(), DmaError> {
        self.fabric.gpu_dma_write(&mut self.host, bus_address, data)
    }

    pub fn gpu_dma_read(&mut self, bus_address: u64, len: usize) -> Result<Vec<u8>, DmaError> {
        self.fabric.gpu_dma_read(&mut self.host, bus_address, len)
    }

    /// The client went away (or the server died): its DMA memory and BAR mappings go, as
    /// the dext's user client releases everything on close (§A.2 "Lifetime").
    pub fn end_session(&mut self) {
        self.mapped = [None; 6];
        self.host.clear();
    }

    /// Run one request; `payload` is MMIO_WRITE's data.
    pub fn handle(&mut self, req: &Request, payload: &[u8]) -> Outcome {
        match req.cmd {
            cmd::MAP_BAR => self.map_bar(req.bar),
            cmd::MAP_SYSMEM_FD => self.map_sysmem_fd(req.arg0),
            cmd::CFG_READ => ok(self.cfg_read(req.arg0, req.arg1), 0),
            cmd::CFG_WRITE => {
                self.cfg_write(req.arg0, req.arg1, req.arg2);
                ok(0, 0)
            }
            cmd::RESET => {
                self.reset();
                ok(0, 0)
            }
            cmd::MMIO_READ => match self.mmio_read(req.bar, req.arg0, req.arg1) {
                Ok(data) => {
                    let mut out = wire::response(STATUS_OK, data.len() as u64, 0).to_vec();
                    out.extend_from_slice(&data);
                    Outcome::Reply(out)
                }
                Err(message) => err(&message),
            },
            cmd::MMIO_WRITE => {
                self.mmio_write(req.bar, req.arg0, payload);
                Outcome::Posted
            }
            // §A.4: a no-op in server.c.
            cmd::RESIZE_BAR => ok(0, 0),
            // §A.4: serve.py's commands that server.c lacks answer status 1. Any payload they
            // would carry in serve.py (SYSMEM_WRITE's data, PROBE's table) is not consumed,
            // as a server that does not know the command cannot know its length `[U]`.
            cmd::PROBE | cmd::MAP_SYSMEM | cmd::SYSMEM_READ | cmd::SYSMEM_WRITE | cmd::PING => {
                err(&format!(
                    "{} ({}) is not implemented by the TinyGPU server",
                    wire::command_name(req.cmd),
                    req.cmd
                ))
            }
            other => err(&format!("unknown command {other}")),
        }
    }

    // ------------------------------------------------------------ config space

    /// Dext ReadCfg: sizes other than 1, 2, 4 read 0 without error (§A.2). An access past
    /// the 4 KiB space or across a dword reads all-ones `[U]`.
    fn cfg_read(&mut self, offset: u64, size: u64) -> u64 {
        if !matches!(size, 1 | 2 | 4) {
            return 0;
        }
        let ones = (1u64 << (8 * size)) - 1;
        if offset >= 4096 || (offset & 3) + size > 4 {
            return ones;
        }
        for _ in 0..CRS_ATTEMPTS {
            if let ConfigRead::Data(dword) = self.fabric.config_read(self.gpu, offset as u16) {
                return u64::from(dword >> (8 * (offset & 3))) & ones;
            }
        }
        ones
    }

    /// Dext WriteCfg: byte, word or dword writes; anything else is ignored `[U]`.
    fn cfg_write(&mut self, offset: u64, size: u64, value: u64) {
        if !matches!(size, 1 | 2 | 4) || offset >= 4096 || (offset & 3) + size > 4 {
            return;
        }
        let shift = offset & 3;
        let byte_enables = (((1u16 << size) - 1) << shift) as u8;
        let word = (value as u32) << (8 * shift);
        let crs = self.crs_after_reset;
        self.fabric.config_write(self.gpu, offset as u16 & 0xFFC, word, byte_enables, crs);
    }

    /// Dext Reset: a Function Level Reset (§A.2). macOS saves and restores the function's
    /// BARs and COMMAND around it, so mappings stay valid `[U]` (other registers come back
    /// at their reset values). Both GPU models support FLR, so the hot-reset fallback is
    /// never needed here.
    fn reset(&mut self) {
        let Some(model) = self.fabric.model(self.gpu) else { return };
        let header = model.header();
        let rebar_ctl = header.rebar.map(|r| r.cap + 8);
        let mut saved: Vec<u16> = rebar_ctl.into_iter().collect();
        saved.extend((0..6).map(|i| 0x10 + 4 * i));
        saved.push(0x04);
        let saved: Vec<(u16, u32)> = saved.into_iter().map(|r| (r, header.cfg.read32(r))).collect();
        let Some(pcie) = header.cfg.find_cap(CAP_ID_PCIE) else { return };
        let devctl = pcie + PCIE_DEVCTL;
        let crs = self.crs_after_reset;
        self.fabric.config_write(self.gpu, devctl & 0xFFC, u32::from(DEVCTL_BCR_FLR), 0b0011, crs);
        for (reg, value) in saved {
            self.fabric.config_write(self.gpu, reg, value, 0xF, 0);
        }
    }

    // ------------------------------------------------------------ BARs

    fn map_bar(&mut self, bar: u32) -> Outcome {
        let Some(header) = self.fabric.model(self.gpu).map(|m| m.header()) else {
            return err("MAP_BAR: the GPU is gone");
        };
        let index = bar as usize;
        let slot = if index < 6 { header.bars[index] } else { BarSlot::Unused };
        match slot {
            _ if index >= 6 => err(&format!("MAP_BAR: BAR {bar} does not exist (BARs are 0-5)")),
            BarSlot::Mem { .. } => {
                let mapped =
                    MappedBar { bus_base: header.bar_base(index), size: header.bar_size(index) };
                self.mapped[index] = Some(mapped);
                ok(BAR_VIRTUAL_BASE + u64::from(bar) * BAR_VIRTUAL_STRIDE, mapped.size)
            }
            BarSlot::Upper => err(&format!(
                "MAP_BAR: BAR {bar} is the upper half of 64-bit BAR {}; map that one",
                index - 1
            )),
            BarSlot::Io { .. } => {
                err(&format!("MAP_BAR: BAR {bar} is an I/O BAR; only memory BARs can be mapped"))
            }
            BarSlot::Unused => err(&format!("MAP_BAR: BAR {bar} is not implemented by the GPU")),
        }
    }

    /// server.c's validation (§A.4): the BAR mapped, the range inside it, at most 64 MiB.
    fn check_mmio(&self, op: &str, bar: u32, offset: u64, size: u64) -> Result<MappedBar, String> {
        let mapped = usize::try_from(bar).ok().and_then(|b| self.mapped.get(b).copied().flatten());
        let Some(mapped) = mapped else {
            return Err(format!("{op}: BAR {bar} is not mapped; send MAP_BAR for it first"));
        };
        if size > MAX_MMIO_TRANSFER {
            return Err(format!(
                "{op}: {size} bytes is more than the {} MiB one request may move",
                MAX_MMIO_TRANSFER >> 20
            ));
        }
        if offset.checked_add(size).is_none_or(|end| end > mapped.size) {
            return Err(format!(
                "{op}: {size} bytes at offset 0x{offset:X} run past the end of BAR {bar} (0x{:X} bytes)",
                mapped.size
            ));
        }
        Ok(mapped)
    }

    /// Reads go out as dword accesses covering the range (server.c uses 32-bit volatile
    /// accesses) and the asked-for bytes come back, at any alignment `[U]`; dwords nothing
    /// decodes read all-ones (a master abort) `[U]`.
    fn mmio_read(&mut self, bar: u32, offset: u64, size: u64) -> Result<Vec<u8>, String> {
        let mapped = self.check_mmio("MMIO_READ", bar, offset, size)?;
        let start = offset & !3;
        let end = (offset + size).next_multiple_of(4);
        let mut buf = vec![0u8; (end - start) as usize];
        let mut done = 0usize;
        while done < buf.len() {
            let at = mapped.bus_base + start + done as u64;
            match self.fabric.read_segment(at, &mut buf[done..]) {
                Segment::Decoded(n) => done += n,
                Segment::Undecoded(n) => {
                    buf[done..done + n].fill(0xFF);
                    self.host.stats.mmio_reads_unanswered += (n / 4) as u64;
                    done += n;
                }
            }
        }
        let from = (offset - start) as usize;
        Ok(buf[from..from + size as usize].to_vec())
    }

    /// Posted: a validation failure drops the data silently (§A.4). Whole dwords go out as
    /// dword writes, a ragged head or tail as one dword write with only its bytes enabled
    /// `[U]` (server.c's handling of unaligned writes is not described).
    fn mmio_write(&mut self, bar: u32, offset: u64, data: &[u8]) {
        let Ok(mapped) = self.check_mmio("MMIO_WRITE", bar, offset, data.len() as u64) else {
            self.host.stats.mmio_writes_dropped += 1;
            return;
        };
        let mut at = mapped.bus_base + offset;
        let mut rest = data;
        while !rest.is_empty() {
            let shift = (at & 3) as usize;
            if shift != 0 || rest.len() < 4 {
                let n = (4 - shift).min(rest.len());
                let mut word = [0u8; 4];
                word[shift..shift + n].copy_from_slice(&rest[..n]);
                let byte_enables = (((1u16 << n) - 1) << shift) as u8;
                let dword = at - shift as u64;
                let value = u32::from_le_bytes(word);
                if !self.fabric.write_dword(dword, value, byte_enables, &mut self.host) {
                    self.host.stats.mmio_writes_undecoded += 1;
                }
                at += n as u64;
                rest = &rest[n..];
                continue;
            }
            let whole = rest.len() & !3;
            match self.fabric.write_segment(at, &rest[..whole], &mut self.host) {
                Segment::Decoded(n) => {
                    at += n as u64;
                    rest = &rest[n..];
                }
                Segment::Undecoded(n) => {
                    self.host.stats.mmio_writes_undecoded += (n / 4) as u64;
                    at += n as u64;
                    rest = &rest[n..];
                }
            }
        }
    }

    // ------------------------------------------------------------ DMA memory

    /// §A.4 MAP_SYSMEM_FD: round up (4 KiB, at least 16 KiB), create shared memory, lay it
    /// out as DMA segments, write `[addr,len,…,0,0]` at its start, answer (size, index) with
    /// the descriptor. `contiguous` (arg1) is ignored, as in server.c. The index counts the
    /// session's allocations from 0 (server.c's `<idx>` of `/tinygpu_<idx>`) `[U]`.
    fn map_sysmem_fd(&mut self, requested: u64) -> Outcome {
        let host = &mut self.host;
        if host.allocations.len() >= MAX_SYSMEM_ALLOCATIONS {
            return err(&format!(
                "MAP_SYSMEM_FD: this session already holds {MAX_SYSMEM_ALLOCATIONS} allocations, the most there can be; they are freed when the client disconnects"
            ));
        }
        // Checked before rounding, which could overflow.
        let size = requested.clamp(SYSMEM_MIN, MAX_SYSMEM_LIVE).next_multiple_of(SYSMEM_GRANULE);
        if requested > MAX_SYSMEM_LIVE || host.live_bytes + size > MAX_SYSMEM_LIVE {
            return err(&format!(
                "MAP_SYSMEM_FD: {requested} bytes would bring this session's DMA memory past {} MiB (now {} MiB mapped); the DMA address space is exhausted",
                MAX_SYSMEM_LIVE >> 20,
                host.live_bytes >> 20
            ));
        }
        let index = host.allocations.len();
        let (fd, mut mapping) = match shm::create(&format!("tinygpu_{index}"), size as usize) {
            Ok(made) => made,
            Err(e) => return err(&format!("MAP_SYSMEM_FD: shared memory of {size} bytes: {e}")),
        };
        let pages = size / SYSMEM_GRANULE;
        let count = (self.max_segments as u64).min(size / SYSMEM_MIN).max(1);
        let mut list = Vec::with_capacity(count as usize * 16 + 16);
        let mut offset = 0u64;
        for i in 0..count {
            let seg_pages = pages / count + u64::from(i < pages % count);
            let len = seg_pages * SYSMEM_GRANULE;
            let iova = host.next_iova;
            host.segments
                .insert(iova, DmaSegment { len, allocation: index, offset: offset as usize });
            host.next_iova = (iova + len + SYSMEM_SEGMENT_GAP).next_multiple_of(SYSMEM_MIN);
            list.extend_from_slice(&iova.to_le_bytes());
            list.extend_from_slice(&len.to_le_bytes());
            offset += len;
        }
        list.extend_from_slice(&[0u8; 16]);
        mapping.bytes_mut()[..list.len()].copy_from_slice(&list);
        host.allocations.push(mapping);
        host.live_bytes += size;
        host.stats.sysmem_allocations += 1;
        Outcome::ReplyWithFd(wire::response(STATUS_OK, size, index as u64).to_vec(), fd)
    }
}

// ---------------------------------------------------------------- enumeration

/// Where the next BAR of each kind goes.
struct Pools {
    mem32: u64,
    pref64: u64,
}

fn read32(fabric: &mut Fabric, fid: FnId, reg: u16) -> u32 {
    for _ in 0..CRS_ATTEMPTS {
        if let ConfigRead::Data(dword) = fabric.config_read(fid, reg) {
            return dword;
        }
    }
    !0
}

fn write32(fabric: &mut Fabric, fid: FnId, reg: u16, value: u32) {
    fabric.config_write(fid, reg, value, 0xF, 0);
}

fn set_command(fabric: &mut Fabric, fid: FnId, bits: u32) {
    let old = read32(fabric, fid, 0x04);
    write32(fabric, fid, 0x04, (old & 0xFFFF_0000) | bits);
}

/// What the Mac's PCI enumeration leaves behind `[U]` (the document does not describe it):
/// bus numbers depth first, BARs sized and assigned (non-prefetchable from [`MEM32_POOL`],
/// 64-bit prefetchable from [`PREF64_POOL`], each aligned to its size), bridge windows around
/// what lies below them, Memory Space and Bus Master on bridges, Memory Space on endpoints.
fn enumerate_bus(fabric: &mut Fabric, bus: u8, next_bus: &mut u8, pools: &mut Pools) {
    for dev in 0..32u8 {
        for func in 0..8u8 {
            let Some(fid) = fabric.route_config(bus, dev, func, bus != 0) else {
                if func == 0 {
                    break;
                }
                continue;
            };
            let id = read32(fabric, fid, 0x00);
            if id & 0xFFFF == 0xFFFF {
                continue;
            }
            let header_type = (read32(fabric, fid, 0x0C) >> 16) as u8;
            if header_type & 0x7F == 1 {
                enumerate_bridge(fabric, fid, bus, next_bus, pools);
            } else {
                assign_bars(fabric, fid, pools);
                set_command(fabric, fid, COMMAND_MEM);
            }
            if func == 0 && header_type & 0x80 == 0 {
                break;
            }
        }
    }
}

fn enumerate_bridge(fabric: &mut Fabric, fid: FnId, bus: u8, next_bus: &mut u8, pools: &mut Pools) {
    let secondary = *next_bus;
    *next_bus = next_bus.saturating_add(1);
    let buses = |sub: u8| u32::from(bus) | (u32::from(secondary) << 8) | (u32::from(sub) << 16);
    write32(fabric, fid, 0x18, buses(0xFF));
    pools.mem32 = pools.mem32.next_multiple_of(WINDOW_GRANULE);
    pools.pref64 = pools.pref64.next_multiple_of(WINDOW_GRANULE);
    let (mem0, pref0) = (pools.mem32, pools.pref64);
    enumerate_bus(fabric, secondary, next_bus, pools);
    write32(fabric, fid, 0x18, buses(*next_bus - 1));
    pools.mem32 = pools.mem32.next_multiple_of(WINDOW_GRANULE);
    pools.pref64 = pools.pref64.next_multiple_of(WINDOW_GRANULE);
    let (mem1, pref1) = (pools.mem32, pools.pref64);
    // Windows in 1 MiB units: base bits 31:20 in 15:4, limit bits 31:20 in 31:20; an empty
    // window has base above limit.
    let window = |lo: u64, hi: u64| -> u32 {
        if hi > lo {
            (((lo >> 16) & 0xFFF0) | (((hi - 1) >> 16) & 0xFFF0) << 16) as u32
        } else {
            0x0000_FFF0
        }
    };
    write32(fabric, fid, 0x20, window(mem0, mem1));
    write32(fabric, fid, 0x24, window(pref0, pref1));
    let (upper_base, upper_limit) =
        if pref1 > pref0 { ((pref0 >> 32) as u32, ((pref1 - 1) >> 32) as u32) } else { (0, 0) };
    write32(fabric, fid, 0x28, upper_base);
    write32(fabric, fid, 0x2C, upper_limit);
    set_command(fabric, fid, COMMAND_MEM_MASTER);
}

fn assign_bars(fabric: &mut Fabric, fid: FnId, pools: &mut Pools) {
    let mut i = 0u16;
    while i < 6 {
        let reg = 0x10 + 4 * i;
        write32(fabric, fid, reg, !0);
        let low = read32(fabric, fid, reg);
        if low == 0 || low & 1 == 1 {
            // Unimplemented, or I/O (the fabric routes no I/O; left unassigned).
            write32(fabric, fid, reg, 0);
            i += 1;
            continue;
        }
        let is64 = (low >> 1) & 3 == 2;
        let prefetchable = low & 0x8 != 0;
        let high = if is64 {
            write32(fabric, fid, reg + 4, !0);
            read32(fabric, fid, reg + 4)
        } else {
            !0
        };
        let mask = (u64::from(high) << 32) | u64::from(low & !0xF);
        let size = (!mask).wrapping_add(1);
        let pool = if is64 && prefetchable { &mut pools.pref64 } else { &mut pools.mem32 };
        let base = pool.next_multiple_of(size);
        *pool = base + size;
        write32(fabric, fid, reg, base as u32);
        if is64 {
            write32(fabric, fid, reg + 4, (base >> 32) as u32);
        }
        i += if is64 { 2 } else { 1 };
    }
}
