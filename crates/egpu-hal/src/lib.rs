//! The two seams of egpu, in one small crate that everything else implements or uses:
//!
//! - the **link** ([`PcieLink`]): how PCIe transactions and GPU-visible host memory reach a
//!   card. The ASM2464 USB bridge implements it (egpu-link), so does the emulator's in-process
//!   link (egpu-emu); Linux PCIe, TinyGPU and remote links are next. Vendor drivers that own
//!   the hardware (AMD) are written against this trait only, never against a particular link.
//! - the runtime **backend** ([`Backend`]): what a vendor driver offers the runtime. The
//!   runtime (`egpu`) adds ownership, bounds checks, argument layout, staging and graphs.
//!
//! [`BarMmio`] (bounds-checked, coalescing BAR access) lives here too because every driver
//! needs it over every link.

pub mod backend;
pub mod bar;
mod error;
pub mod link;
mod link_error;

pub use backend::{
    Backend, BufferId, Command, CommandList, DeviceProperties, KernelInfo, LaunchCommand,
    MemoryKind, ParamSlot, ProgramId, SignalId, Vendor,
};
pub use bar::{BarMmio, BarRegion, WriteBatch};
pub use error::Error;
pub use link::{
    Bdf, DmaInfo, DmaRegion, DmaRelease, LinkCounters, MappedRange, PcieLink, PendingDmaRead,
};
pub use link_error::LinkError;
