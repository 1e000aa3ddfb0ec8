//! Picking the device a command works on: a name by the runtime's grammar, `--emulated`, or
//! the one attached bridge.

use clap::Args;
use egpu::link::{self, OpenLink};
use egpu::{DeviceKind, DeviceName, DeviceQuery, EmulatedCard};

use crate::error::CliError;

#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// Device from `egpu list`: a bridge (usb:BUS-PORT), emu, emu:navi31, emu:ga102, emu:none,
    /// or a GPU behind a kernel driver (nv:N).
    pub device: Option<String>,
    /// Use the emulated eGPU (same as DEVICE `emu`).
    #[arg(long)]
    pub emulated: bool,
}

impl DeviceArgs {
    /// The device named, or the only bridge attached.
    pub fn target(&self) -> Result<DeviceName, CliError> {
        match (self.device.as_deref(), self.emulated) {
            (None, true) => Ok(DeviceName::Emu(EmulatedCard::Navi31)),
            (Some(name), emulated) => {
                let target: DeviceName = name.parse()?;
                if emulated && !matches!(target, DeviceName::Emu(_)) {
                    return Err(CliError::Usage(format!(
                        "--emulated conflicts with the real device `{name}`"
                    )));
                }
                Ok(target)
            }
            (None, false) => {
                let usable: Vec<DeviceName> = egpu::devices(&DeviceQuery::default())
                    .devices
                    .into_iter()
                    .filter(|entry| {
                        entry.kind == DeviceKind::UsbBridge
                            && !matches!(entry.availability, egpu::Availability::Unusable(_))
                    })
                    .map(|entry| entry.name)
                    .collect();
                match usable.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err(CliError::Usage(
                        "no bridge with the custom firmware is attached; run `egpu list`, or try the emulated eGPU with `--emulated`".into(),
                    )),
                    many => Err(CliError::Usage(format!(
                        "several bridges are attached ({}); name one",
                        many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        }
    }
}

/// The emulated card a demo name picks (`navi31`, `ga102`, `none`).
pub fn emulated_card(name: &str) -> Result<EmulatedCard, CliError> {
    EmulatedCard::from_name(name).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown emulated GPU `{name}`; use one of: {}",
            EmulatedCard::ALL.map(EmulatedCard::as_str).join(", ")
        ))
    })
}

/// Open the link behind a device name.
pub fn open(target: &DeviceName) -> Result<OpenLink, CliError> {
    Ok(link::open(target)?)
}
