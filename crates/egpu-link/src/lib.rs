//! How PCIe transactions reach the GPU.
//!
//! - [`asm2464`]: the ASM2464PD custom-firmware protocol over a USB transport
//!   (docs/reference/usb-bridge.md §2–§4).
//! - [`pcie`]: the [`pcie::PcieLink`] trait every link implements, the fabric bring-up (bus
//!   walk, BAR sizing, Resizable BAR, windows) and BAR access with write coalescing.
//! - [`pci`]: the Linux PCIe link through sysfs (`pci:DOMAIN:BUS:DEV.FN`).
//! - [`tinygpu`]: the TinyGPU link (`tinygpu:N`), macOS Thunderbolt GPUs through the TinyGPU
//!   app's socket server (the client builds on every Unix).

pub mod asm2464;
#[cfg(unix)]
mod host_memory;
pub mod hostile;
#[cfg(target_os = "linux")]
pub mod pci;
pub mod pcie;
pub mod tinygpu;

pub use asm2464::{Asm2464, Asm2464Config, LinkStats};
pub use egpu_hal::{Bdf, LinkError, PcieLink};
