//! Enumeration and opening: which devices exist on every link and vendor, and which runtime
//! backend a device name opens. The only place that knows every kind of device.

use crate::backend::Backend;
use crate::{DeviceName, EmulatedCard, Error};

/// Whether the runtime can run work on a device today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// [`crate::Device::open`] works.
    Ready,
    /// Reachable (listed, `egpu info` works) but no runtime backend drives it; says why.
    LinkOnly(String),
    /// Not usable at all; says why and what to do.
    Unusable(String),
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A GPU behind a vendor kernel driver (`nv:N`).
    KernelDriverGpu,
    /// A USB bridge with whatever sits behind it (`usb:…`).
    UsbBridge,
    /// An emulated bridge and card (`emu:…`).
    Emulated,
}

/// One device found by [`devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Its name, what `Device::open` and every `egpu` command take.
    pub name: DeviceName,
    /// What it is.
    pub kind: DeviceKind,
    /// One line: identity, firmware or GPU, memory.
    pub summary: String,
    /// Further lines worth showing (firmware advice, link state).
    pub details: Vec<String>,
    /// Whether work can run on it, and if not why.
    pub availability: Availability,
}

/// What [`devices`] looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceQuery {
    /// Also list the emulated devices.
    pub emulated: bool,
}

/// Everything found, and what was looked at without finding anything (so a user learns where
/// egpu looked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The devices.
    pub devices: Vec<DeviceEntry>,
    /// One line per place that was searched and gave nothing, or could not be searched.
    pub notes: Vec<String>,
}

/// Why an AMD card cannot run work yet.
const NO_AMD_DRIVER: &str = "the AMD driver is not written yet: egpu reaches the card over the \
                             link (`egpu info`, `egpu bench link`), but cannot boot it";

/// List every device on every link and vendor this build supports.
pub fn devices(query: &DeviceQuery) -> Discovery {
    let mut found = Discovery::default();
    #[cfg(feature = "usb")]
    usb_bridges(&mut found);
    #[cfg(feature = "nv")]
    nvidia_gpus(&mut found);
    if query.emulated {
        emulated(&mut found);
    }
    found
}

#[cfg(feature = "usb")]
fn usb_bridges(found: &mut Discovery) {
    let bridges = match egpu_usb::discover::list_bridges() {
        Ok(bridges) => bridges,
        Err(error) => {
            found.notes.push(format!("USB: cannot list devices: {error}"));
            return;
        }
    };
    if bridges.is_empty() {
        found.notes.push(
            "USB: No USB bridges found (looked for ASM2464PD bridges: custom firmware \
             add1:0001 / 3801:0001, stock 174c:2464 / 174c:2463)"
                .into(),
        );
    }
    for bridge in bridges {
        let Some((bus, ports)) = egpu_usb::discover::parse_bridge_name(&bridge.name) else {
            found.notes.push(format!("USB: skipped {} (unexpected name)", bridge.name));
            continue;
        };
        let name = DeviceName::Usb { bus: bus.to_string(), ports };
        let mut details = vec![format!("firmware: {}", bridge.firmware)];
        if let Some(advice) = bridge.firmware.advice() {
            details.push(advice);
        }
        let availability = if bridge.firmware.is_usable() {
            details.push(usb_link_state(&bridge.name));
            Availability::LinkOnly(NO_AMD_DRIVER.into())
        } else {
            Availability::Unusable(format!("the bridge runs {}", bridge.firmware))
        };
        found.devices.push(DeviceEntry {
            name,
            kind: DeviceKind::UsbBridge,
            summary: format!(
                "{:04x}:{:04x}  {:<22} serial {:<10} {}",
                bridge.vendor_id,
                bridge.product_id,
                bridge.product.as_deref().unwrap_or("?"),
                bridge.serial.as_deref().unwrap_or("?"),
                bridge.speed.map(|s| s.to_string()).unwrap_or_else(|| "speed unknown".into()),
            ),
            details,
            availability,
        });
    }
}

/// The PCIe link state of a bridge, read without powering anything: one E4 read of the LTSSM
/// register (usb-bridge.md §1.2).
#[cfg(feature = "usb")]
fn usb_link_state(name: &str) -> String {
    use egpu_link::asm2464::wire::{xdata_read_setup, LTSSM_L0, XDATA_LTSSM};
    use egpu_usb::{Transfer, UsbTransport};
    let (mut transport, _lock) = match egpu_usb::discover::open_bridge(name) {
        Ok(opened) => opened,
        Err(error) => return format!("link: unknown ({error})"),
    };
    let read = Transfer::ControlIn { setup: xdata_read_setup(XDATA_LTSSM, 0), length: 1 };
    match transport.transfer(read, std::time::Duration::from_secs(1)).map(|c| c.into_data()) {
        Ok(data) if data.first() == Some(&LTSSM_L0) => "link: PCIe up (LTSSM 0x78, L0)".into(),
        Ok(data) if !data.is_empty() => format!(
            "link: PCIe down (LTSSM 0x{:02x}); `egpu info {name}` powers the slot and trains it",
            data[0]
        ),
        Ok(_) => "link: unknown (empty reply to the LTSSM read)".into(),
        Err(error) => format!("link: unknown ({error})"),
    }
}

#[cfg(feature = "nv")]
fn nvidia_gpus(found: &mut Discovery) {
    match egpu_nv::list_gpus() {
        Ok(gpus) if gpus.is_empty() => {
            found.notes.push("NVIDIA: the kernel driver is loaded but reports no GPU".into())
        }
        Ok(gpus) => {
            for gpu in gpus {
                let details = vec![
                    format!("PCI {}", gpu.pci_address),
                    format!("driver {} (RM ioctls, no libcuda)", gpu.driver_version),
                ];
                found.devices.push(DeviceEntry {
                    name: DeviceName::Nv(gpu.index),
                    kind: DeviceKind::KernelDriverGpu,
                    summary: gpu.to_string(),
                    details,
                    availability: Availability::Ready,
                });
            }
        }
        Err(egpu_nv::NvError::NoKernelDriver) => found
            .notes
            .push("NVIDIA: no NVIDIA kernel driver (nvidia.ko) on this machine, so no nv:N".into()),
        Err(error) => found.notes.push(format!("NVIDIA: cannot list GPUs: {error}")),
    }
}

fn emulated(found: &mut Discovery) {
    for card in EmulatedCard::ALL {
        let (summary, availability) = match card {
            EmulatedCard::Navi31 => (
                "emulated ASM2464PD bridge + AMD Radeon RX 7900 XTX (Navi31, gfx1100)",
                Availability::LinkOnly(NO_AMD_DRIVER.into()),
            ),
            EmulatedCard::Navi48 => (
                "emulated ASM2464PD bridge + AMD Radeon RX 9070 XT (Navi48, gfx1201)",
                Availability::Unusable("the Navi48 card model is not written yet".into()),
            ),
            EmulatedCard::Ga102 => (
                "emulated ASM2464PD bridge + NVIDIA GA102 (PCIe-level model)",
                Availability::LinkOnly(
                    "a PCIe-level model without GSP firmware or RM: nothing to submit to".into(),
                ),
            ),
            EmulatedCard::None => (
                "emulated ASM2464PD bridge with an empty slot",
                Availability::LinkOnly("no card".into()),
            ),
        };
        found.devices.push(DeviceEntry {
            name: DeviceName::Emu(card),
            kind: DeviceKind::Emulated,
            summary: summary.into(),
            details: Vec::new(),
            availability,
        });
    }
}

/// The runtime backend for `name`, or why there is none.
pub(crate) fn open_backend(name: &DeviceName) -> Result<Box<dyn Backend>, Error> {
    let unavailable = |why: &str| Error::Unavailable { name: name.to_string(), why: why.into() };
    match name {
        #[cfg(feature = "nv")]
        DeviceName::Nv(index) => egpu_nv::runtime::open(*index, &name.to_string()),
        #[cfg(not(feature = "nv"))]
        DeviceName::Nv(_) => Err(unavailable("this build has no NVIDIA driver (feature `nv`)")),
        DeviceName::Amd(_) | DeviceName::Usb { .. } => Err(unavailable(NO_AMD_DRIVER)),
        DeviceName::Emu(EmulatedCard::Navi31 | EmulatedCard::Navi48) => {
            Err(unavailable(NO_AMD_DRIVER))
        }
        DeviceName::Emu(EmulatedCard::Ga102) => Err(unavailable(
            "the emulated GA102 is a PCIe-level model without GSP firmware or RM: nothing to \
             submit to (use `egpu info emu:ga102`)",
        )),
        DeviceName::Emu(EmulatedCard::None) => Err(unavailable("the slot is empty")),
        DeviceName::Remote { .. } => {
            Err(unavailable("remote links are not implemented yet (`egpu share` comes with them)"))
        }
        DeviceName::TinyGpu(_) => {
            Err(unavailable("the TinyGPU link (macOS Thunderbolt) is not implemented yet"))
        }
        DeviceName::Pci { .. } => {
            Err(unavailable("the Linux PCIe link (sysfs/VFIO) is not implemented yet"))
        }
    }
}
