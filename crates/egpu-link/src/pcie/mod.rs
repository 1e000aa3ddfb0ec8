//! PCIe as seen from the host end of a link: the fabric walk and BAR access built on the
//! [`PcieLink`] trait of `egpu-hal`.

pub mod caps;
pub mod fabric;
pub mod regs;

/// BAR access through any link (re-exported from `egpu-hal`).
pub mod bar {
    pub use egpu_hal::bar::{BarMmio, BarRegion, WriteBatch};
}

pub use egpu_hal::{Bdf, PcieLink};
