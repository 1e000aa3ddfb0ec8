//! Device models: what sits in the emulated PCIe fabric ([`crate::pcie`]).
//!
//! Each PCI function is one [`DeviceModel`]. It owns its configuration space and BAR layout
//! (a [`ConfigHeader`]: BAR sizing and Resizable BAR come with it) and whatever backs its
//! BARs; the fabric routes config and memory requests to it and hands it an [`Upstream`] port
//! for the requests it initiates itself (DMA into host-side memory).
//!
//! Cards are installers that attach models below a slot ([`cards`]): the AMD Navi 31 card
//! (its own switch, the GPU, HDMI audio), the NVIDIA GA102 card (GPU and audio), or nothing.
//!
//! ## Adding a card (e.g. an AMD GPU with register blocks and an ISA interpreter)
//!
//! 1. Write a model for each new function: a struct holding a [`ConfigHeader`] built with
//!    [`ConfigBuilder`] (identity, capabilities, BAR slots, REBAR) and its backing state;
//!    implement [`DeviceModel`]: `bar_read`/`bar_write` dispatch on the BAR index (registers,
//!    doorbells, VRAM), `bar_write` may start work that reads/writes bus addresses through the
//!    [`Upstream`] port (which enforces bus mastering and the bridges' windows), `reset`
//!    says what survives a fundamental reset, a power loss and an FLR, and
//!    `local_memory` exposes VRAM to device-side inspection. Override `config_read`/
//!    `config_write` only for config registers with side effects beyond the standard ones.
//! 2. Add an installer to [`cards`] that attaches the card's functions (and its own switch
//!    ports, if it has them) below the slot and returns the GPU function, and a
//!    [`crate::GpuKind`] variant that selects it.
//!
//! Both front-ends (the ASM2464 bridge and the in-process link) then reach the card with no
//! further change.

pub(crate) mod audio;
pub(crate) mod cards;
pub(crate) mod gpu;
pub(crate) mod switch;

pub(crate) use crate::pcie::config_space::ConfigBuilder;
pub(crate) use crate::pcie::header::ConfigHeader;
pub(crate) use crate::pcie::Upstream;
use crate::sparse::SparseMem;

/// What kind of reset a function goes through. Its configuration space always returns to
/// the reset image (the fabric does that); the model decides what else is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetKind {
    /// PERST# with power kept.
    Fundamental,
    /// Power was removed: everything volatile is gone (VRAM included).
    PowerLoss,
    /// Function Level Reset: config and engine state; memory is kept (an FLR does not clear
    /// VRAM) `[U]`.
    FunctionLevel,
}

/// One PCI function in the emulated fabric. See the module documentation for how a new card
/// plugs in.
pub(crate) trait DeviceModel: Send {
    /// Human name for messages (bus numbers are programmable, so not part of it).
    fn label(&self) -> &str;

    /// The standard configuration header (identity, capabilities, BARs, REBAR).
    fn header(&self) -> &ConfigHeader;

    fn header_mut(&mut self) -> &mut ConfigHeader;

    /// Config read of the dword at dword-aligned `reg`.
    fn config_read(&mut self, reg: u16) -> u32 {
        self.header().cfg.read32(reg)
    }

    /// Config write of one dword with byte enables; returns true when it initiated a
    /// Function Level Reset (the fabric carries it out).
    fn config_write(&mut self, reg: u16, value: u32, byte_enables: u8) -> bool {
        self.header_mut().config_write(reg, value, byte_enables)
    }

    /// Memory read of `out.len()` bytes at `offset` in BAR `bar` (the range lies inside it).
    fn bar_read(&mut self, bar: usize, offset: u64, out: &mut [u8]) {
        let _ = (bar, offset);
        out.fill(0);
    }

    /// Memory write at `offset` in BAR `bar`; `upstream` carries the DMA the write may start.
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8], upstream: &mut Upstream<'_>) {
        let _ = (bar, offset, data, upstream);
    }

    /// Device state after a reset (the config space has already been reset).
    fn reset(&mut self, kind: ResetKind) {
        let _ = kind;
    }

    /// Device-local memory (VRAM), for device-side inspection and stimulus.
    fn local_memory(&self) -> Option<&SparseMem> {
        None
    }

    fn local_memory_mut(&mut self) -> Option<&mut SparseMem> {
        None
    }
}
