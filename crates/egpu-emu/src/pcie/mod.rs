//! The emulated PCIe fabric (§1.3, §5, §12.6), shared by every front-end: device models
//! ([`crate::devices`]) attached at (device, function) on buses, bus-number routing of config
//! TLPs through type-1 headers, window and BAR routing of memory TLPs with COMMAND.MEM gating,
//! and the upstream rules for requests a device initiates (bus mastering on it and on every
//! bridge above it, no peer-to-peer) before they reach the front-end's host side
//! ([`HostSide`]).
//!
//! The fabric knows nothing about USB: the ASM2464 front-end turns F0 requests into the calls
//! below, the in-process link calls them directly.

pub(crate) mod config_space;
pub(crate) mod header;

use crate::devices::{DeviceModel, ResetKind};
use crate::error::DmaError;
use crate::sparse::SparseMem;
use config_space::{COMMAND_BUS_MASTER, COMMAND_MEMORY};
use header::ConfigHeader;

/// Index of a function in the fabric.
pub(crate) type FnId = usize;

/// A function attached at (device, function) on some bus.
#[derive(Clone, Copy, Debug)]
struct Attach {
    dev: u8,
    func: u8,
    id: FnId,
}

/// One function: its model plus what the fabric keeps about where it sits.
struct Node {
    /// `None` only while the model runs a request it may answer with upstream DMA.
    model: Option<Box<dyn DeviceModel>>,
    /// For messages: the model's label, kept here so a running model can be named.
    label: String,
    /// Functions on the secondary bus (type-1 headers only).
    children: Vec<Attach>,
    /// The bridge above, `None` on the root bus.
    parent: Option<FnId>,
    /// Config reads still to be answered with CRS (after reset / FLR).
    crs_remaining: u32,
}

/// Result of decoding a memory address downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemHit {
    pub fid: FnId,
    pub bar: usize,
    pub offset: u64,
    /// Bytes from `offset` that stay inside the same BAR and every window on the path.
    pub span: u64,
}

/// How one piece of a memory range went: `Decoded(n)` bytes reached a BAR, `Undecoded(n)`
/// bytes (a whole number of dwords) met no decoder up to the next routing edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment {
    Decoded(usize),
    Undecoded(usize),
}

/// Answer to a configuration read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfigRead {
    Data(u32),
    /// Configuration Request Retry Status: the function is still initialising.
    Retry,
}

/// Where upstream requests end: the front-end's host-side memory (the bridge's SRAM and
/// queue pages; emulated host RAM for the in-process link).
pub(crate) trait HostSide {
    /// Err if the link cannot carry an upstream request now (e.g. LTSSM not L0).
    fn link_check(&self, addr: u64, len: usize) -> Result<(), DmaError>;
    /// The memory backing `addr..addr+len`, which must lie in one decoded range.
    fn memory(&mut self, addr: u64, len: usize) -> Result<&mut [u8], DmaError>;
    /// A device write has landed at `addr` (the bridge's CQ page releases an F2 read there).
    fn landed(&mut self, addr: u64, len: usize) {
        let _ = (addr, len);
    }
    /// Count one upstream request: `Some(bytes)` moved, `None` rejected.
    fn count(&mut self, moved: Option<usize>);
}

/// All functions and how they hang together.
pub(crate) struct Fabric {
    nodes: Vec<Node>,
    /// Functions on the root bus (what Type 0 config reaches).
    root: Vec<Attach>,
    /// The GPU (function 0 of the card), if a card with one is plugged.
    gpu: Option<FnId>,
}

impl std::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.nodes.iter().map(|n| &n.label)).finish()
    }
}

fn find(list: &[Attach], dev: u8, func: u8) -> Option<FnId> {
    list.iter().find(|a| a.dev == dev && a.func == func).map(|a| a.id)
}

impl Fabric {
    /// An empty fabric; add functions with [`Fabric::attach`].
    pub fn new() -> Self {
        Self { nodes: Vec::new(), root: Vec::new(), gpu: None }
    }

    /// Attach `model` at `dev.func` on the secondary bus of `parent` (`None`: the root bus).
    pub fn attach(
        &mut self,
        parent: Option<FnId>,
        dev: u8,
        func: u8,
        model: Box<dyn DeviceModel>,
    ) -> FnId {
        let id = self.nodes.len();
        let label = model.label().to_string();
        self.nodes.push(Node {
            model: Some(model),
            label,
            children: Vec::new(),
            parent,
            crs_remaining: 0,
        });
        let list = match parent {
            Some(p) => &mut self.nodes[p].children,
            None => &mut self.root,
        };
        list.push(Attach { dev, func, id });
        id
    }

    /// Mark `id` as the GPU (what device-side stimulus like `gpu_dma_write` acts as).
    pub fn set_gpu(&mut self, id: FnId) {
        self.gpu = Some(id);
    }

    fn header(&self, id: FnId) -> Option<&ConfigHeader> {
        self.nodes.get(id)?.model.as_ref().map(|m| m.header())
    }

    pub fn model(&self, id: FnId) -> Option<&dyn DeviceModel> {
        self.nodes.get(id)?.model.as_deref()
    }

    pub fn model_mut(&mut self, id: FnId) -> Option<&mut (dyn DeviceModel + 'static)> {
        self.nodes.get_mut(id)?.model.as_deref_mut()
    }

    /// The GPU's device-local memory (VRAM), if there is a GPU.
    pub fn gpu_memory(&self) -> Option<&SparseMem> {
        self.model(self.gpu?)?.local_memory()
    }

    pub fn gpu_memory_mut(&mut self) -> Option<&mut SparseMem> {
        let gpu = self.gpu?;
        self.model_mut(gpu)?.local_memory_mut()
    }

    // ------------------------------------------------------------ configuration requests

    /// Config request routing. Type 0 is consumed by a function on the root bus whatever the
    /// bus field says (PCIe Base spec §2.2.7); Type 1 is claimed by the bridge whose
    /// secondary..subordinate range holds the bus, converted to Type 0 at the secondary bus.
    /// `None` = nobody claimed it → Unsupported Request.
    pub fn route_config(&self, bus: u8, dev: u8, func: u8, type1: bool) -> Option<FnId> {
        if !type1 {
            return find(&self.root, dev, func);
        }
        self.route_type1(&self.root, bus, dev, func)
    }

    fn route_type1(&self, list: &[Attach], bus: u8, dev: u8, func: u8) -> Option<FnId> {
        for a in list {
            let Some(h) = self.header(a.id) else { continue };
            if !h.is_bridge() {
                continue;
            }
            let secondary = h.cfg.read8(0x19);
            let subordinate = h.cfg.read8(0x1A);
            // Secondary 0 means unprogrammed (reset value): the bridge claims nothing.
            if secondary == 0 || bus < secondary || bus > subordinate {
                continue;
            }
            let children = &self.nodes[a.id].children;
            if bus == secondary {
                return find(children, dev, func);
            }
            return self.route_type1(children, bus, dev, func);
        }
        None
    }

    /// Config read of the dword at `reg` of function `id`.
    pub fn config_read(&mut self, id: FnId, reg: u16) -> ConfigRead {
        let Some(node) = self.nodes.get_mut(id) else { return ConfigRead::Data(!0) };
        if node.crs_remaining > 0 {
            node.crs_remaining -= 1;
            return ConfigRead::Retry;
        }
        match node.model.as_mut() {
            Some(m) => ConfigRead::Data(m.config_read(reg & 0xFFC)),
            None => ConfigRead::Data(!0),
        }
    }

    /// Config write of one dword with byte enables; an FLR it initiates is carried out here
    /// and answers the next `crs_after_flr` reads with CRS.
    pub fn config_write(&mut self, id: FnId, reg: u16, value: u32, be: u8, crs_after_flr: u32) {
        let flr = match self.model_mut(id) {
            Some(m) => m.config_write(reg & 0xFFC, value, be),
            None => false,
        };
        if flr {
            self.reset_one(id, ResetKind::FunctionLevel, crs_after_flr);
        }
    }

    // ------------------------------------------------------------ memory requests

    /// Downstream memory routing: through bridges whose window holds the address and whose
    /// COMMAND.MEM is set, then BAR decode on an endpoint with COMMAND.MEM set.
    pub fn route_mem(&self, addr: u64) -> Option<MemHit> {
        self.claim(&self.root, addr, u64::MAX)
    }

    fn claim(&self, list: &[Attach], addr: u64, limit: u64) -> Option<MemHit> {
        for a in list {
            let Some(h) = self.header(a.id) else { continue };
            if !h.command_has(COMMAND_MEMORY) {
                continue;
            }
            if h.is_bridge() {
                if let Some(end) = h.window_end(addr) {
                    // The bridge owns the address; if nothing below decodes it, it is UR.
                    return self.claim(&self.nodes[a.id].children, addr, limit.min(end));
                }
            } else if let Some((bar, offset, end)) = h.decode(addr) {
                let span = limit.min(end) - addr;
                return Some(MemHit { fid: a.id, bar, offset, span });
            }
        }
        None
    }

    /// The smallest address above `addr` where routing could change (a window or BAR edge):
    /// lets an undecoded range be skipped instead of routed dword by dword.
    pub fn next_boundary(&self, addr: u64) -> u64 {
        let mut best = u64::MAX;
        for h in self.nodes.iter().filter_map(|n| n.model.as_ref().map(|m| m.header())) {
            h.for_each_decode_edge(|edge| {
                if edge > addr && edge < best {
                    best = edge;
                }
            });
        }
        best
    }

    /// Bytes from `addr` (dword aligned) that one decode covers, at most `len`.
    fn segment(&self, addr: u64, len: usize) -> (Option<MemHit>, usize) {
        match self.route_mem(addr) {
            Some(hit) => {
                let n = (len as u64).min(hit.span) as usize & !3;
                (Some(hit), n.max(4).min(len))
            }
            None => {
                let skip = (self.next_boundary(addr) - addr).max(4);
                (None, (skip.div_ceil(4) * 4).min(len as u64) as usize)
            }
        }
    }

    /// Write the front of `data` (a whole number of dwords at a dword-aligned `addr`) as far
    /// as one decode reaches. A device may answer the write with upstream DMA into `host`.
    pub fn write_segment(&mut self, addr: u64, data: &[u8], host: &mut dyn HostSide) -> Segment {
        match self.segment(addr, data.len()) {
            (Some(hit), n) => {
                self.write_hit(hit, &data[..n], host);
                Segment::Decoded(n)
            }
            (None, n) => Segment::Undecoded(n),
        }
    }

    /// Fill the front of `out` (a whole number of dwords at a dword-aligned `addr`) as far as
    /// one decode reaches; undecoded bytes are left as they are.
    pub fn read_segment(&mut self, addr: u64, out: &mut [u8]) -> Segment {
        match self.segment(addr, out.len()) {
            (Some(hit), n) => {
                let valid = (hit.span as usize).min(n);
                if let Some(m) = self.model_mut(hit.fid) {
                    m.bar_read(hit.bar, hit.offset, &mut out[..valid]);
                }
                out[valid..n].fill(0);
                Segment::Decoded(n)
            }
            (None, n) => Segment::Undecoded(n),
        }
    }

    /// One memory-write dword with byte enables (§4.1): only enabled bytes change, each run
    /// of enabled bytes in one piece. Returns false when nothing decoded it.
    pub fn write_dword(&mut self, addr: u64, word: u32, be: u8, host: &mut dyn HostSide) -> bool {
        let bytes = word.to_le_bytes();
        let mut decoded = false;
        let mut k = 0usize;
        while k < 4 {
            if be & (1 << k) == 0 {
                k += 1;
                continue;
            }
            let mut end = k;
            while end < 4 && be & (1 << end) != 0 {
                end += 1;
            }
            if let Some(hit) = self.route_mem(addr + k as u64) {
                let n = (end - k).min(hit.span as usize);
                self.write_hit(hit, &bytes[k..k + n], host);
                decoded = true;
            }
            k = end;
        }
        decoded
    }

    /// Hand a decoded write to its model, which may DMA upstream while handling it: the model
    /// is taken out of its node for the call so the port can read the rest of the fabric.
    fn write_hit(&mut self, hit: MemHit, data: &[u8], host: &mut dyn HostSide) {
        let Some(mut model) = self.nodes.get_mut(hit.fid).and_then(|n| n.model.take()) else {
            return;
        };
        let bus_master = model.header().command_has(COMMAND_BUS_MASTER);
        let mut port = Upstream { fabric: self, requester: hit.fid, bus_master, host };
        model.bar_write(hit.bar, hit.offset, data, &mut port);
        self.nodes[hit.fid].model = Some(model);
    }

    // ------------------------------------------------------------ upstream requests

    /// A port for requests function `id` initiates on its own (device-side stimulus).
    pub fn upstream<'a>(&'a self, id: FnId, host: &'a mut dyn HostSide) -> Upstream<'a> {
        let bus_master = self.header(id).is_some_and(|h| h.command_has(COMMAND_BUS_MASTER));
        Upstream { fabric: self, requester: id, bus_master, host }
    }

    /// The GPU writes `data` at bus address `addr` on its own (device-side stimulus).
    pub fn gpu_dma_write(
        &self,
        host: &mut dyn HostSide,
        addr: u64,
        data: &[u8],
    ) -> Result<(), DmaError> {
        let Some(gpu) = self.gpu else {
            host.count(None);
            return Err(DmaError::NoGpu { addr, len: data.len() });
        };
        self.upstream(gpu, host).write(addr, data)
    }

    /// The GPU reads `len` bytes at bus address `addr` on its own (device-side stimulus).
    pub fn gpu_dma_read(
        &self,
        host: &mut dyn HostSide,
        addr: u64,
        len: usize,
    ) -> Result<Vec<u8>, DmaError> {
        let Some(gpu) = self.gpu else {
            host.count(None);
            return Err(DmaError::NoGpu { addr, len });
        };
        let mut out = vec![0; len];
        self.upstream(gpu, host).read(addr, &mut out)?;
        Ok(out)
    }

    // ------------------------------------------------------------ resets

    /// Fundamental reset (PERST#) of every function; `power_lost` also forgets device memory.
    pub fn reset_all(&mut self, crs_reads: u32, power_lost: bool) {
        let kind = if power_lost { ResetKind::PowerLoss } else { ResetKind::Fundamental };
        for id in 0..self.nodes.len() {
            self.reset_one(id, kind, crs_reads);
        }
    }

    fn reset_one(&mut self, id: FnId, kind: ResetKind, crs_reads: u32) {
        let Some(node) = self.nodes.get_mut(id) else { return };
        node.crs_remaining = crs_reads;
        if let Some(m) = node.model.as_mut() {
            m.header_mut().cfg.reset();
            m.reset(kind);
        }
    }
}

/// The path of requests a device initiates (memory reads and writes to bus addresses), as
/// handed to [`DeviceModel::bar_write`]. Each request is checked like the fabric would: bus
/// mastering on the requester and on every bridge above it, an address outside each bridge's
/// windows (else the bridge would route it back down, peer to peer, which is not modelled),
/// the link up, and a host-side range that decodes the whole request.
pub(crate) struct Upstream<'a> {
    fabric: &'a Fabric,
    requester: FnId,
    bus_master: bool,
    host: &'a mut dyn HostSide,
}

impl Upstream<'_> {
    /// Whether a request of `len` bytes at `addr` would be accepted (rejections are counted).
    pub fn check(&mut self, addr: u64, len: usize) -> Result<(), DmaError> {
        let result = self.route(addr, len).and_then(|()| self.host.memory(addr, len).map(|_| ()));
        if result.is_err() {
            self.host.count(None);
        }
        result
    }

    fn route(&self, addr: u64, len: usize) -> Result<(), DmaError> {
        self.host.link_check(addr, len)?;
        let nodes = &self.fabric.nodes;
        if !self.bus_master {
            let device = nodes[self.requester].label.clone();
            return Err(DmaError::BusMasterDisabled { addr, len, device });
        }
        let mut at = nodes[self.requester].parent;
        while let Some(b) = at {
            let Some(h) = self.fabric.header(b) else { break };
            let device = || nodes[b].label.clone();
            if h.window_end(addr).is_some() {
                return Err(DmaError::PeerToPeer { addr, len, device: device() });
            }
            if !h.command_has(COMMAND_BUS_MASTER) {
                return Err(DmaError::BusMasterDisabled { addr, len, device: device() });
            }
            at = nodes[b].parent;
        }
        Ok(())
    }

    /// Host memory for a request; a rejection is counted by `check`, a success by the
    /// caller once the bytes moved.
    fn memory(&mut self, addr: u64, len: usize) -> Result<&mut [u8], DmaError> {
        self.check(addr, len)?;
        self.host.memory(addr, len)
    }

    /// Memory write of `data` at bus address `addr`.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.write_with(addr, data.len(), |dst| dst.copy_from_slice(data))
    }

    /// Memory write of `len` bytes at `addr`, produced by `fill` straight into host memory.
    pub fn write_with(
        &mut self,
        addr: u64,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DmaError> {
        fill(self.memory(addr, len)?);
        self.host.count(Some(len));
        self.host.landed(addr, len);
        Ok(())
    }

    /// Memory read of `out.len()` bytes at `addr`.
    pub fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), DmaError> {
        self.read_with(addr, out.len(), |src| out.copy_from_slice(src))
    }

    /// Memory read of `len` bytes at `addr`, consumed by `take` straight from host memory.
    pub fn read_with(
        &mut self,
        addr: u64,
        len: usize,
        take: impl FnOnce(&[u8]),
    ) -> Result<(), DmaError> {
        take(self.memory(addr, len)?);
        self.host.count(Some(len));
        Ok(())
    }
}
