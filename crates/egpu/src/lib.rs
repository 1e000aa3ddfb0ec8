//! egpu runtime: one vendor-blind API over every GPU egpu can drive.
//!
//! Open a device by name ([`Device::open`], names per [`DeviceName`]; [`devices`] lists them
//! on every link and vendor), allocate
//! [`Buffer`]s (device memory or host-visible staging), load a [`Program`] from bytes
//! (cubin now, HSACO later), record work on a [`Queue`] (copies, [`Kernel`] launches,
//! timeline [`Signal`] operations), submit it, or turn it into a [`Graph`] that replays
//! the whole sequence with one call.
//!
//! Vendor drivers plug in below through the small [`backend::Backend`] trait, so the
//! runtime's own logic (argument layout, staging, graph replay) tests without hardware.

mod device;
#[cfg(feature = "emu")]
mod emulated_copy;
#[cfg(feature = "usb")]
pub mod link;
mod name;
mod registry;

/// Host setup for USB bridges (Linux udev rule: user access, no autosuspend).
#[cfg(feature = "usb")]
pub mod setup {
    pub use egpu_usb::setup::{install_udev_rule, udev_rule, SetupError, UDEV_RULE_PATH};
}

pub use backend::{DeviceProperties, KernelInfo, MemoryKind, ParamSlot, Vendor};
pub use device::{Arg, Buffer, Device, Graph, Kernel, Program, Queue, Signal};
/// The seam between the runtime and a vendor driver (defined in `egpu-hal`).
pub use egpu_hal::backend;
pub use egpu_hal::Error;
pub use name::{DeviceName, EmulatedCard};
pub use registry::{devices, Availability, DeviceEntry, DeviceKind, DeviceQuery, Discovery};
