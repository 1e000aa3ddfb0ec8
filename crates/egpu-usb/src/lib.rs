//! USB transport seam for egpu.
//!
//! The ASM2464PD bridge is reached with vendor control transfers on EP0 and bulk transfers on
//! EP 0x02 (OUT) and 0x81 (IN). This crate defines the [`UsbTransport`] trait that the protocol
//! layer (`egpu-link`) speaks, the shared tag/sticky-error bookkeeping ([`InFlight`]), and the
//! real backend on `nusb` ([`nusb_backend`]). The emulated bridge in `egpu-emu` implements the
//! same trait, so every layer above tests at the USB-transfer level without hardware.

pub mod discover;
mod error;
mod inflight;
pub mod lock;
pub mod nusb_backend;
pub mod setup;
mod transport;

pub use discover::{list_bridges, open_bridge, BridgeCandidate, FirmwareKind};
pub use error::UsbError;
pub use inflight::InFlight;
pub use lock::BridgeLock;
pub use nusb_backend::NusbTransport;
pub use setup::{install_udev_rule, udev_rule, SetupError, UDEV_RULE_PATH};
pub use transport::{
    Completion, ControlSetup, DeviceInfo, Tag, Transfer, UsbSpeed, UsbTransport,
    REQUEST_TYPE_VENDOR_IN, REQUEST_TYPE_VENDOR_OUT,
};
