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
    /// A card in a PCIe slot of this Linux machine (`pci:…`).
    PciFunction,
    /// A GPU on a Mac's Thunderbolt/USB4 port, through the TinyGPU app (`tinygpu:N`).
    TinyGpu,
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
    #[cfg(all(feature = "usb", target_os = "linux"))]
    pci_gpus(std::path::Path::new(egpu_link::pci::SYSFS_PCI_DEVICES), &mut found);
    #[cfg(feature = "usb")]
    tinygpu_gpus(egpu_link::tinygpu::enumerate::list(), &mut found);
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
            found.notes.push("NVIDIA: the kernel driver is loaded but reports no GPU".into());
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

/// AMD and NVIDIA display functions in a PCIe slot of this Linux machine.
#[cfg(all(feature = "usb", target_os = "linux"))]
fn pci_gpus(root: &std::path::Path, found: &mut Discovery) {
    let Ok(entries) = std::fs::read_dir(root) else {
        found.notes.push(format!("PCIe: {} cannot be read, so no pci: devices", root.display()));
        return;
    };
    let read = |dir: &std::path::Path, file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok())
    };
    let mut names: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
    names.sort();
    let before = found.devices.len();
    for dir in names {
        let Some(file_name) = dir.file_name().and_then(|n| n.to_str()) else { continue };
        let Ok(name) = format!("pci:{file_name}").parse::<DeviceName>() else { continue };
        let (Some(vendor), Some(device), Some(class)) =
            (read(&dir, "vendor"), read(&dir, "device"), read(&dir, "class"))
        else {
            continue;
        };
        if class >> 16 != 0x03 || !matches!(vendor, 0x1002 | 0x10DE) {
            continue;
        }
        let driver = std::fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()));
        let availability = match (vendor, driver.as_deref()) {
            (0x10DE, Some("nvidia")) => {
                Availability::LinkOnly("driven through nvidia.ko: use its nv:N name".into())
            }
            (_, Some(driver)) => Availability::Unusable(format!(
                "the kernel driver {driver} owns it; `egpu setup` explains unbinding (egpu never \
                 does it itself)"
            )),
            (0x10DE, None) => Availability::LinkOnly(
                "NVIDIA cards are driven through nvidia.ko (nv:N); load it".into(),
            ),
            _ => Availability::LinkOnly(NO_AMD_DRIVER.into()),
        };
        found.devices.push(DeviceEntry {
            name,
            kind: DeviceKind::PciFunction,
            summary: format!(
                "[{vendor:04x}:{device:04x}] {}",
                egpu_link::pcie::fabric::device_name(vendor as u16, device as u16, class)
            ),
            details: vec![format!("kernel driver: {}", driver.as_deref().unwrap_or("none"))],
            availability,
        });
    }
    if found.devices.len() == before {
        found
            .notes
            .push("PCIe: no AMD or NVIDIA display function in a slot of this machine".into());
    }
}

/// GPUs the TinyGPU app can reach (macOS: the IOKit registry); elsewhere the note that
/// TinyGPU is macOS-only.
#[cfg(feature = "usb")]
fn tinygpu_gpus(
    listed: Result<
        Vec<egpu_link::tinygpu::enumerate::TinyGpuDevice>,
        egpu_link::tinygpu::TinyGpuError,
    >,
    found: &mut Discovery,
) {
    let gpus = match listed {
        Ok(gpus) => gpus,
        Err(error) => return found.notes.push(format!("TinyGPU: {error}")),
    };
    if gpus.is_empty() {
        found.notes.push(
            "TinyGPU: no AMD or NVIDIA GPU in the IOKit registry (plugged into a Thunderbolt or \
             USB4 port and powered?)"
                .into(),
        );
    }
    for gpu in gpus {
        let mut details = Vec::new();
        if let Some(location) = &gpu.location {
            details.push(format!("PCI {location}"));
        }
        if gpu.tunnelled {
            details.push("Thunderbolt/USB4 tunnelled".into());
        }
        details.push("reached through TinyGPU.app's server (started on first use)".into());
        let availability = match (gpu.index, gpu.vendor_id) {
            (0, 0x1002) => Availability::LinkOnly(NO_AMD_DRIVER.into()),
            (0, _) => Availability::LinkOnly(
                "egpu drives NVIDIA GPUs only through nvidia.ko, which macOS does not have".into(),
            ),
            _ => Availability::Unusable(
                "TinyGPU's server drives only the first GPU its driver matched (tinygpu:0)".into(),
            ),
        };
        found.devices.push(DeviceEntry {
            name: DeviceName::TinyGpu(gpu.index),
            kind: DeviceKind::TinyGpu,
            summary: format!(
                "[{:04x}:{:04x}] {}",
                gpu.vendor_id,
                gpu.device_id,
                egpu_link::pcie::fabric::device_name(gpu.vendor_id, gpu.device_id, gpu.class)
            ),
            details,
            availability,
        });
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
        DeviceName::TinyGpu(_) => Err(unavailable(
            "egpu reaches the card through TinyGPU (`egpu info`), but no runtime backend drives \
             a card over it yet",
        )),
        DeviceName::Pci { .. } => Err(unavailable(NO_AMD_DRIVER)),
    }
}

#[cfg(all(test, feature = "usb", target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs;

    fn function(
        root: &std::path::Path,
        address: &str,
        ids: (&str, &str, &str),
    ) -> std::path::PathBuf {
        let dir = root.join(address);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), ids.0).unwrap();
        fs::write(dir.join("device"), ids.1).unwrap();
        fs::write(dir.join("class"), ids.2).unwrap();
        dir
    }

    #[test]
    fn pci_gpus_are_listed_with_who_owns_them() {
        let root = tempfile::tempdir().unwrap();
        function(root.path(), "0000:03:00.0", ("0x1002\n", "0x744c\n", "0x030000\n"));
        let owned = function(root.path(), "0000:04:00.0", ("0x1002\n", "0x7550\n", "0x038000\n"));
        let drivers = root.path().join("drivers/amdgpu");
        fs::create_dir_all(&drivers).unwrap();
        std::os::unix::fs::symlink(&drivers, owned.join("driver")).unwrap();
        function(root.path(), "0000:03:00.1", ("0x1002\n", "0xab30\n", "0x040300\n")); // audio
        function(root.path(), "0000:00:02.0", ("0x8086\n", "0x46a6\n", "0x030000\n")); // iGPU

        let mut found = Discovery::default();
        pci_gpus(root.path(), &mut found);
        let names: Vec<String> = found.devices.iter().map(|d| d.name.to_string()).collect();
        assert_eq!(names, ["pci:0000:03:00.0", "pci:0000:04:00.0"]);
        assert!(matches!(found.devices[0].availability, Availability::LinkOnly(_)));
        match &found.devices[1].availability {
            Availability::Unusable(why) => assert!(why.contains("amdgpu"), "{why}"),
            other => panic!("a card owned by amdgpu is unusable, got {other:?}"),
        }
        assert!(found.notes.is_empty());

        let mut none = Discovery::default();
        pci_gpus(&root.path().join("missing"), &mut none);
        assert!(none.devices.is_empty() && none.notes[0].contains("cannot be read"));
    }
}

#[cfg(all(test, feature = "usb"))]
mod tinygpu_tests {
    use super::*;
    use egpu_link::tinygpu::enumerate::{gpus, parse_ioreg};

    #[test]
    fn tinygpu_gpus_are_listed_and_only_the_first_is_reachable() {
        let registry = "\
+-o display@0  <class IOPCIDevice, id 0x100000a2b, registered>
    {
      \"vendor-id\" = <02100000>
      \"device-id\" = <4c740000>
      \"class-code\" = <00000300>
      \"IOPCITunnelled\" = Yes
    }
+-o display@0  <class IOPCIDevice, id 0x100000b00, registered>
    {
      \"vendor-id\" = <02100000>
      \"device-id\" = <50750000>
      \"class-code\" = <00000300>
    }
";
        let mut found = Discovery::default();
        tinygpu_gpus(Ok(gpus(&parse_ioreg(registry))), &mut found);
        let names: Vec<String> = found.devices.iter().map(|d| d.name.to_string()).collect();
        assert_eq!(names, ["tinygpu:0", "tinygpu:1"]);
        assert!(found.devices[0].details.iter().any(|line| line.contains("Thunderbolt")));
        assert!(matches!(found.devices[0].availability, Availability::LinkOnly(_)));
        match &found.devices[1].availability {
            Availability::Unusable(why) => assert!(why.contains("tinygpu:0"), "{why}"),
            other => panic!("only the first GPU is reachable, got {other:?}"),
        }

        let mut elsewhere = Discovery::default();
        tinygpu_gpus(egpu_link::tinygpu::enumerate::list(), &mut elsewhere);
        if !cfg!(target_os = "macos") {
            assert!(elsewhere.devices.is_empty());
            assert!(elsewhere.notes[0].starts_with("TinyGPU: macOS-only"), "{:?}", elsewhere.notes);
        }
    }
}
