//! The PCIe fabric behind the bridge (§1.3, §5, §12.6): functions with real type-0/type-1
//! configuration headers, bus-number routing of config TLPs, window/BAR routing of memory
//! TLPs, and the upstream rules for GPU-initiated DMA. The topology is data (see
//! [`topology`]).

pub(crate) mod config_space;
pub(crate) mod topology;

use crate::sparse::SparseMem;
use config_space::{
    ConfigSpace, CAP_ID_PCIE, COMMAND_BUS_MASTER, COMMAND_MEMORY, DEVCAP_FLR, DEVCTL_BCR_FLR,
    PCIE_DEVCAP, PCIE_DEVCTL,
};

/// Index of a function in [`Fabric::funcs`].
pub(crate) type FnId = usize;

/// What backs a memory BAR of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BarRole {
    /// GPU-local VRAM (sparse).
    Vram,
    /// Doorbell page(s), plain memory.
    Doorbell,
    /// Register aperture: plain memory plus the emulator's copy engine at 0xF_0000.
    Mmio,
    /// Plain memory owned by the function (e.g. HDMI audio registers).
    Plain,
}

/// One of the six BAR registers of a type-0 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BarSlot {
    Unused,
    /// I/O BAR: this model routes no I/O TLPs, so drivers must skip it (§5 "skip I/O BARs").
    Io {
        size: u32,
    },
    Mem {
        size: u64,
        is64: bool,
        prefetchable: bool,
        role: BarRole,
    },
    /// High dword of the 64-bit BAR in the slot below.
    Upper,
}

/// A Resizable BAR capability entry (PCIe Base spec §7.8.6) controlling `bar`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rebar {
    pub cap: u16,
    pub bar: usize,
}

/// A function attached at (device, function) on some bus.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attach {
    pub dev: u8,
    pub func: u8,
    pub id: FnId,
}

/// One PCI function.
#[derive(Debug)]
pub(crate) struct Function {
    /// Human name for error messages (bus numbers are programmable, so not in the name).
    pub label: String,
    pub cfg: ConfigSpace,
    /// Functions on the secondary bus, for type-1 (bridge) headers.
    pub children: Option<Vec<Attach>>,
    pub bars: [BarSlot; 6],
    pub rebar: Option<Rebar>,
    /// Config reads still to be answered with CRS (after reset / FLR).
    pub crs_remaining: u32,
    /// Backing of `BarRole::Plain` BARs, by BAR index.
    pub plain: Vec<Option<SparseMem>>,
}

/// Result of decoding a memory address downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemHit {
    pub fid: FnId,
    pub bar: usize,
    pub offset: u64,
    /// Bytes from `offset` that stay inside the same BAR and every window on the path.
    pub span: u64,
    pub role: BarRole,
}

impl Function {
    pub fn is_bridge(&self) -> bool {
        self.children.is_some()
    }

    fn command_has(&self, bit: u16) -> bool {
        self.cfg.command() & bit != 0
    }

    /// Current size of memory BAR `i` (Resizable BAR control wins over the static size).
    pub fn bar_size(&self, i: usize) -> u64 {
        match self.bars.get(i) {
            Some(BarSlot::Mem { size, .. }) => match self.rebar {
                Some(r) if r.bar == i => {
                    let index = (self.cfg.read32(r.cap + 8) >> 8) & 0x1F;
                    1u64 << (20 + index)
                }
                _ => *size,
            },
            Some(BarSlot::Io { size }) => u64::from(*size),
            _ => 0,
        }
    }

    /// Bus address programmed into memory BAR `i`.
    pub fn bar_base(&self, i: usize) -> u64 {
        let reg = 0x10 + 4 * i as u16;
        match self.bars.get(i) {
            Some(BarSlot::Mem { is64, .. }) => {
                let low = u64::from(self.cfg.read32(reg) & !0xF);
                let high = if *is64 { u64::from(self.cfg.read32(reg + 4)) } else { 0 };
                (high << 32) | low
            }
            _ => 0,
        }
    }

    /// Re-apply the size masks to every BAR register: writing all-ones reads back the size
    /// mask with the type bits (PCI Local Bus spec §6.2.5.1).
    fn remask_bars(&mut self) {
        for i in 0..6 {
            let reg = 0x10 + 4 * i as u16;
            match self.bars[i] {
                BarSlot::Unused => self.cfg.set32(reg, 0),
                BarSlot::Upper => {}
                BarSlot::Io { size } => {
                    let mask = !(size.max(4) - 1) & !0x3;
                    let v = self.cfg.read32(reg);
                    self.cfg.set32(reg, (v & mask) | 0x1);
                }
                BarSlot::Mem { is64, prefetchable, .. } => {
                    let size = self.bar_size(i).max(16);
                    let mask = !(size - 1);
                    let ty =
                        (if is64 { 0b100 } else { 0 }) | (if prefetchable { 0b1000 } else { 0 });
                    let low = self.cfg.read32(reg);
                    self.cfg.set32(reg, (low & (mask as u32) & !0xF) | ty);
                    if is64 {
                        let high = self.cfg.read32(reg + 4);
                        self.cfg.set32(reg + 4, high & ((mask >> 32) as u32));
                    }
                }
            }
        }
    }

    /// Software config write of one dword with byte enables. Returns true when the write
    /// initiated a Function Level Reset, which the caller carries out.
    pub fn config_write(&mut self, reg: u16, value: u32, byte_enables: u8) -> bool {
        let reg = reg & 0xFFC;
        let rebar_ctl = self.rebar.map(|r| r.cap + 8);
        let old_rebar = rebar_ctl.map(|ctl| self.cfg.read32(ctl));
        self.cfg.write_masked(reg, value, byte_enables);
        if !self.is_bridge() && (0x10..=0x24).contains(&reg) {
            self.remask_bars();
        }
        if let (Some(ctl), Some(old), Some(r)) = (rebar_ctl, old_rebar, self.rebar) {
            if reg == ctl {
                // Unsupported size encodings are ignored (the spec leaves them undefined) `[U]`.
                let index = (self.cfg.read32(ctl) >> 8) & 0x1F;
                let supported = self.cfg.read32(r.cap + 4);
                if index + 4 >= 32 || supported & (1 << (index + 4)) == 0 {
                    self.cfg.set32(ctl, old);
                }
                self.remask_bars();
            }
        }
        if let Some(pcie) = self.cfg.find_cap(CAP_ID_PCIE) {
            let flr_capable = self.cfg.read32(pcie + PCIE_DEVCAP) & DEVCAP_FLR != 0;
            let hit = reg == pcie + PCIE_DEVCTL
                && byte_enables & 0b10 != 0
                && (value as u16) & DEVCTL_BCR_FLR != 0;
            return hit && flr_capable;
        }
        false
    }

    /// Memory BAR decode: only with COMMAND.MEM set.
    fn decode(&self, addr: u64) -> Option<(usize, u64, u64, BarRole)> {
        if self.is_bridge() || !self.command_has(COMMAND_MEMORY) {
            return None;
        }
        for (i, slot) in self.bars.iter().enumerate() {
            if let BarSlot::Mem { role, .. } = slot {
                let base = self.bar_base(i);
                let end = base.saturating_add(self.bar_size(i));
                if (base..end).contains(&addr) {
                    return Some((i, addr - base, end, *role));
                }
            }
        }
        None
    }

    /// Memory window (non-prefetchable 0x20/0x22) as (base, limit inclusive).
    pub fn mem_window(&self) -> Option<(u64, u64)> {
        let base = u64::from(self.cfg.read16(0x20) & 0xFFF0) << 16;
        let limit = (u64::from(self.cfg.read16(0x22) & 0xFFF0) << 16) | 0xF_FFFF;
        (base <= limit).then_some((base, limit))
    }

    /// Prefetchable window (0x24/0x26 with upper 32 bits at 0x28/0x2C).
    pub fn pref_window(&self) -> Option<(u64, u64)> {
        let base = (u64::from(self.cfg.read16(0x24) & 0xFFF0) << 16)
            | (u64::from(self.cfg.read32(0x28)) << 32);
        let limit = (u64::from(self.cfg.read16(0x26) & 0xFFF0) << 16)
            | 0xF_FFFF
            | (u64::from(self.cfg.read32(0x2C)) << 32);
        (base <= limit).then_some((base, limit))
    }

    /// End (exclusive, saturating) of the bridge window containing `addr`.
    fn window_end(&self, addr: u64) -> Option<u64> {
        [self.mem_window(), self.pref_window()]
            .into_iter()
            .flatten()
            .find(|(b, l)| (*b..=*l).contains(&addr))
            .map(|(_, l)| l.saturating_add(1))
    }

    /// Back to power-on state; `power_lost` also forgets plain BAR memory.
    fn reset(&mut self, crs_reads: u32, power_lost: bool) {
        self.cfg.reset();
        self.crs_remaining = crs_reads;
        if power_lost {
            for m in self.plain.iter_mut().flatten() {
                m.clear();
            }
        }
    }
}

/// Why upstream DMA from the GPU cannot leave the fabric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamBlock {
    BusMasterOff(String),
    PeerToPeer(String),
}

/// All functions and how they hang together.
#[derive(Debug)]
pub(crate) struct Fabric {
    pub funcs: Vec<Function>,
    /// Functions on the link below the bridge's TLP engine (what Type 0 config reaches).
    pub root: Vec<Attach>,
    /// GPU function 0, if any.
    pub gpu: Option<FnId>,
    /// Bridges from the root down to the GPU.
    pub gpu_path: Vec<FnId>,
}

fn find(list: &[Attach], dev: u8, func: u8) -> Option<FnId> {
    list.iter().find(|a| a.dev == dev && a.func == func).map(|a| a.id)
}

impl Fabric {
    /// Config request routing. Type 0 is consumed by the function on the bridge's own link
    /// whatever the bus field says (PCIe Base spec §2.2.7); Type 1 is claimed by the bridge
    /// whose secondary..subordinate range holds the bus, converted to Type 0 at the secondary
    /// bus. `None` = nobody claimed it → Unsupported Request.
    pub fn route_config(&self, bus: u8, dev: u8, func: u8, type1: bool) -> Option<FnId> {
        if !type1 {
            return find(&self.root, dev, func);
        }
        self.route_type1(&self.root, bus, dev, func)
    }

    fn route_type1(&self, list: &[Attach], bus: u8, dev: u8, func: u8) -> Option<FnId> {
        for a in list {
            let f = &self.funcs[a.id];
            let Some(children) = &f.children else { continue };
            let secondary = f.cfg.read8(0x19);
            let subordinate = f.cfg.read8(0x1A);
            // Secondary 0 means unprogrammed (reset value): the bridge claims nothing.
            if secondary == 0 || bus < secondary || bus > subordinate {
                continue;
            }
            if bus == secondary {
                return find(children, dev, func);
            }
            return self.route_type1(children, bus, dev, func);
        }
        None
    }

    /// Downstream memory routing: through bridges whose window holds the address and whose
    /// COMMAND.MEM is set, then BAR decode on an endpoint with COMMAND.MEM set.
    pub fn route_mem(&self, addr: u64) -> Option<MemHit> {
        self.claim(&self.root, addr, u64::MAX)
    }

    fn claim(&self, list: &[Attach], addr: u64, limit: u64) -> Option<MemHit> {
        for a in list {
            let f = &self.funcs[a.id];
            if !f.command_has(COMMAND_MEMORY) {
                continue;
            }
            match &f.children {
                Some(children) => {
                    if let Some(end) = f.window_end(addr) {
                        // The bridge owns the address; if nothing below decodes it, it is UR.
                        return self.claim(children, addr, limit.min(end));
                    }
                }
                None => {
                    if let Some((bar, offset, end, role)) = f.decode(addr) {
                        let span = limit.min(end) - addr;
                        return Some(MemHit { fid: a.id, bar, offset, span, role });
                    }
                }
            }
        }
        None
    }

    /// The smallest address above `addr` where routing could change (a window or BAR edge):
    /// lets an undecoded stream skip ahead instead of routing every dword.
    pub fn next_boundary(&self, addr: u64) -> u64 {
        let mut best = u64::MAX;
        let mut consider = |edge: u64| {
            if edge > addr && edge < best {
                best = edge;
            }
        };
        for f in &self.funcs {
            if f.is_bridge() {
                for (b, l) in [f.mem_window(), f.pref_window()].into_iter().flatten() {
                    consider(b);
                    consider(l.saturating_add(1));
                }
            } else {
                for (i, slot) in f.bars.iter().enumerate() {
                    if matches!(slot, BarSlot::Mem { .. }) {
                        let base = f.bar_base(i);
                        consider(base);
                        consider(base.saturating_add(f.bar_size(i)));
                    }
                }
            }
        }
        best
    }

    /// Upstream forwarding rules for a GPU-initiated request: bus mastering on the GPU and on
    /// every bridge above it, and an address outside each bridge's windows (else the bridge
    /// would route it back down, peer to peer).
    pub fn upstream_check(&self, addr: u64) -> Result<(), UpstreamBlock> {
        let Some(gpu) = self.gpu else { return Ok(()) };
        let g = &self.funcs[gpu];
        if !g.command_has(COMMAND_BUS_MASTER) {
            return Err(UpstreamBlock::BusMasterOff(g.label.clone()));
        }
        for &b in self.gpu_path.iter().rev() {
            let f = &self.funcs[b];
            if f.window_end(addr).is_some() {
                return Err(UpstreamBlock::PeerToPeer(f.label.clone()));
            }
            if !f.command_has(COMMAND_BUS_MASTER) {
                return Err(UpstreamBlock::BusMasterOff(f.label.clone()));
            }
        }
        Ok(())
    }

    /// Fundamental reset (PERST#) of every function.
    pub fn reset_all(&mut self, crs_reads: u32, power_lost: bool) {
        for f in &mut self.funcs {
            f.reset(crs_reads, power_lost);
        }
    }

    /// Function Level Reset of one function: config back to defaults, CRS for a while; memory
    /// behind the BARs is kept (an FLR does not clear VRAM) `[U]`.
    pub fn flr(&mut self, fid: FnId, crs_reads: u32) {
        if let Some(f) = self.funcs.get_mut(fid) {
            f.reset(crs_reads, false);
        }
    }
}
