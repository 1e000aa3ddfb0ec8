//! Picking and opening the bridge a command works on: a real one by its `usb:BUS-ADDR` name,
//! or the emulated one.

use clap::Args;
use egpu_emu::{BridgeConfig, EmulatedBridge, GpuKind};
use egpu_link::pcie::fabric::{self, FabricOptions, Topology};
use egpu_link::{Asm2464, Asm2464Config};
use egpu_usb::discover;
use egpu_usb::lock::BridgeLock;
use egpu_usb::UsbTransport;

use crate::error::CliError;

#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// Device from `egpu list`: a bridge (usb:BUS-ADDR), emu, emu:navi31, emu:ga102, or a GPU
    /// behind a kernel driver (nv:N).
    pub device: Option<String>,
    /// Use the emulated eGPU (same as DEVICE `emu`).
    #[arg(long)]
    pub emulated: bool,
}

/// What a device name points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Usb(String),
    Emulated(GpuKind),
}

impl DeviceArgs {
    pub fn target(&self) -> Result<Target, CliError> {
        match (self.device.as_deref(), self.emulated) {
            (None, true) => Ok(Target::Emulated(GpuKind::Navi31)),
            (Some(name), emulated) => {
                let target = parse_target(name)?;
                if emulated && !matches!(target, Target::Emulated(_)) {
                    return Err(CliError::Usage(format!(
                        "--emulated conflicts with the real device `{name}`"
                    )));
                }
                Ok(target)
            }
            (None, false) => {
                let usable: Vec<_> = discover::list_bridges()?
                    .into_iter()
                    .filter(|bridge| bridge.firmware.is_usable())
                    .collect();
                match usable.as_slice() {
                    [one] => Ok(Target::Usb(one.name.clone())),
                    [] => Err(CliError::Usage(
                        "no bridge with the custom firmware is attached; run `egpu list`, or try the emulated eGPU with `--emulated`".into(),
                    )),
                    many => Err(CliError::Usage(format!(
                        "several bridges are attached ({}); name one",
                        many.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        }
    }
}

pub fn parse_target(name: &str) -> Result<Target, CliError> {
    match name {
        "emu" | "emu:navi31" => Ok(Target::Emulated(GpuKind::Navi31)),
        "emu:ga102" => Ok(Target::Emulated(GpuKind::Ga102)),
        "emu:none" => Ok(Target::Emulated(GpuKind::None)),
        other if other.starts_with("emu:") => Err(CliError::Usage(format!(
            "unknown emulated GPU `{other}`; use emu:navi31, emu:ga102 or emu:none"
        ))),
        other if other.starts_with("usb:") => Ok(Target::Usb(other.to_string())),
        other => Err(CliError::Usage(format!(
            "`{other}` is not a device name; use usb:BUS-ADDR from `egpu list`, or emu"
        ))),
    }
}

/// The emulated GPU a demo name picks.
pub fn gpu_kind(name: &str) -> Result<GpuKind, CliError> {
    match parse_target(&format!("emu:{name}"))? {
        Target::Emulated(kind) => Ok(kind),
        Target::Usb(_) => unreachable!("emu: prefix"),
    }
}

/// An opened bridge, with the emulator behind it when there is one (for device-side
/// inspection) and the lock that keeps other processes off a real one.
pub struct OpenBridge {
    pub link: Asm2464<Box<dyn UsbTransport>>,
    pub emulator: Option<EmulatedBridge>,
    _lock: Option<BridgeLock>,
}

pub fn open(target: &Target) -> Result<OpenBridge, CliError> {
    match target {
        Target::Emulated(gpu) => {
            let emulator = EmulatedBridge::new(BridgeConfig::default().with_gpu(*gpu));
            let transport: Box<dyn UsbTransport> = Box::new(emulator.transport());
            let link = Asm2464::open(transport, Asm2464Config::default())?;
            Ok(OpenBridge { link, emulator: Some(emulator), _lock: None })
        }
        Target::Usb(name) => {
            let (transport, lock) = discover::open_bridge(name)?;
            let transport: Box<dyn UsbTransport> = Box::new(transport);
            let link = Asm2464::open(transport, Asm2464Config::default())?;
            Ok(OpenBridge { link, emulator: None, _lock: Some(lock) })
        }
    }
}

impl OpenBridge {
    /// Walk and set up the PCIe fabric behind the bridge.
    pub fn bring_up(&mut self) -> Result<Topology, CliError> {
        Ok(fabric::bring_up(&mut self.link, &FabricOptions::default())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(parse_target("emu").unwrap(), Target::Emulated(GpuKind::Navi31));
        assert_eq!(parse_target("emu:ga102").unwrap(), Target::Emulated(GpuKind::Ga102));
        assert_eq!(parse_target("usb:3-2").unwrap(), Target::Usb("usb:3-2".into()));
        assert!(parse_target("emu:rtx").is_err());
        assert!(parse_target("nv:0").is_err());
    }
}
