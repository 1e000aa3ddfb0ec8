//! The standard part of one function's configuration: its 4 KiB space, its BAR layout and its
//! Resizable BAR capability, with the write side effects every PCI function shares (BAR size
//! masks, REBAR size changes, the FLR trigger) and the decode rules the fabric routes by.
//! Device models own one each (see [`crate::devices::DeviceModel`]).

use super::config_space::{
    ConfigBuilder, ConfigSpace, CAP_ID_PCIE, COMMAND_MEMORY, DEVCAP_FLR, DEVCTL_BCR_FLR,
    PCIE_DEVCAP, PCIE_DEVCTL,
};

/// One of the six BAR registers of a type-0 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BarSlot {
    Unused,
    /// I/O BAR: the fabric routes no I/O TLPs, so drivers must skip it (§5 "skip I/O BARs").
    Io {
        size: u32,
    },
    Mem {
        size: u64,
        is64: bool,
        prefetchable: bool,
    },
    /// High dword of the 64-bit BAR in the slot below.
    Upper,
}

impl BarSlot {
    /// A memory BAR of `size` bytes (the size before any Resizable BAR change).
    pub fn mem(size: u64, is64: bool, prefetchable: bool) -> Self {
        BarSlot::Mem { size, is64, prefetchable }
    }
}

/// A Resizable BAR capability entry (PCIe Base spec §7.8.6) at `cap` controlling `bar`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rebar {
    pub cap: u16,
    pub bar: usize,
}

/// Configuration space plus the BAR layout it encodes.
#[derive(Debug)]
pub(crate) struct ConfigHeader {
    pub cfg: ConfigSpace,
    pub bars: [BarSlot; 6],
    pub rebar: Option<Rebar>,
}

impl ConfigHeader {
    /// A type-1 (bridge) header: no BARs.
    pub fn bridge(builder: ConfigBuilder) -> Self {
        Self { cfg: builder.finish(), bars: [BarSlot::Unused; 6], rebar: None }
    }

    /// A type-0 header with these BARs; the BAR type bits become part of the reset image.
    pub fn endpoint(builder: ConfigBuilder, bars: [BarSlot; 6], rebar: Option<Rebar>) -> Self {
        let mut header = Self { cfg: builder.finish(), bars, rebar };
        header.remask_bars();
        header.cfg.capture_reset_image();
        header
    }

    /// Header type 1 (PCI-to-PCI bridge).
    pub fn is_bridge(&self) -> bool {
        self.cfg.read8(0x0E) & 0x7F == 1
    }

    pub fn command_has(&self, bit: u16) -> bool {
        self.cfg.command() & bit != 0
    }

    /// Current size of BAR `i` (Resizable BAR control wins over the static size).
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
    /// initiated a Function Level Reset, which the fabric carries out.
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

    /// Memory BAR decode, only with COMMAND.MEM set: (BAR, offset, end of the BAR).
    pub fn decode(&self, addr: u64) -> Option<(usize, u64, u64)> {
        if self.is_bridge() || !self.command_has(COMMAND_MEMORY) {
            return None;
        }
        self.bars.iter().enumerate().find_map(|(i, slot)| {
            let BarSlot::Mem { .. } = slot else { return None };
            let base = self.bar_base(i);
            let end = base.saturating_add(self.bar_size(i));
            (base..end).contains(&addr).then(|| (i, addr - base, end))
        })
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
    pub fn window_end(&self, addr: u64) -> Option<u64> {
        [self.mem_window(), self.pref_window()]
            .into_iter()
            .flatten()
            .find(|(b, l)| (*b..=*l).contains(&addr))
            .map(|(_, l)| l.saturating_add(1))
    }

    /// Calls `edge` with every address where this function's decode changes: window ends for
    /// a bridge, BAR ends for an endpoint (whether or not COMMAND.MEM is set; a superset is
    /// harmless).
    pub fn for_each_decode_edge(&self, mut edge: impl FnMut(u64)) {
        if self.is_bridge() {
            for (b, l) in [self.mem_window(), self.pref_window()].into_iter().flatten() {
                edge(b);
                edge(l.saturating_add(1));
            }
        } else {
            for (i, slot) in self.bars.iter().enumerate() {
                if matches!(slot, BarSlot::Mem { .. }) {
                    let base = self.bar_base(i);
                    edge(base);
                    edge(base.saturating_add(self.bar_size(i)));
                }
            }
        }
    }
}
