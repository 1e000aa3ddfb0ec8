//! Finding ASM2464PD bridges on the USB bus and telling which firmware they run
//! (docs/reference/usb-bridge.md §1, §9.3).

use std::fmt;

use nusb::MaybeFuture;

use crate::nusb_backend::map_speed;
use crate::{BridgeLock, NusbTransport, UsbError, UsbSpeed};

/// (vendor, product) IDs of the open "handmade" custom firmware: tinygrad's 0xADD1 and comma's
/// 0x3801 (§1).
pub const CUSTOM_FIRMWARE_IDS: [(u16, u16); 2] = [(0xADD1, 0x0001), (0x3801, 0x0001)];
/// (vendor, product) IDs of ASMedia's stock firmware on ASM2464PD enclosures (§1).
pub const STOCK_FIRMWARE_IDS: [(u16, u16); 2] = [(0x174C, 0x2464), (0x174C, 0x2463)];
/// (vendor, product) ID of the custom firmware's DFU bootstub (§3, request 0xEC).
pub const BOOTLOADER_ID: (u16, u16) = (0xADD1, 0xB007);
/// Where the custom firmware and its flashing instructions live.
pub const CUSTOM_FIRMWARE_SOURCE: &str =
    "https://github.com/tinygrad/asm2464pd-firmware (folder handmade/)";

/// Product string prefix of the custom firmware (`custom v0.1`).
const CUSTOM_PRODUCT_PREFIX: &str = "custom";
/// Product string of tinygrad's legacy patched stock firmware, which reused 0xADD1:0x0001 but
/// still speaks the stock SCSI protocol (§1).
const LEGACY_PATCHED_PRODUCT: &str = "USB 3.2 PCIe TinyEnclosure";

/// Which firmware a bridge runs, judged from its IDs and product string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareKind {
    /// The open custom firmware: ready to use.
    Custom,
    /// ASMedia's stock firmware (or tinygrad's legacy patched build of it): must be flashed
    /// with the custom firmware first.
    Stock,
    /// Custom-firmware IDs with a product string that is not `custom…`: an unknown revision.
    /// Usable, but the protocol layer must check the bridge's behaviour before trusting it.
    UnknownRevision,
    /// The custom firmware's DFU bootstub: the bridge is waiting to be flashed.
    Bootloader,
}

impl FirmwareKind {
    /// Whether `egpu` can drive a bridge with this firmware.
    pub fn is_usable(self) -> bool {
        matches!(self, FirmwareKind::Custom | FirmwareKind::UnknownRevision)
    }

    /// What the user should do about it, when anything.
    pub fn advice(self) -> Option<String> {
        match self {
            FirmwareKind::Custom => None,
            FirmwareKind::Stock => Some(format!(
                "flash the open custom firmware from {CUSTOM_FIRMWARE_SOURCE}, then replug"
            )),
            FirmwareKind::UnknownRevision => Some(format!(
                "unknown firmware revision; if it misbehaves, flash the current custom firmware \
                 from {CUSTOM_FIRMWARE_SOURCE}"
            )),
            FirmwareKind::Bootloader => Some(format!(
                "the bridge is in its DFU bootloader; finish flashing the firmware from \
                 {CUSTOM_FIRMWARE_SOURCE}, or power-cycle it to start the installed firmware"
            )),
        }
    }
}

impl fmt::Display for FirmwareKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FirmwareKind::Custom => "custom firmware",
            FirmwareKind::Stock => "stock ASMedia firmware",
            FirmwareKind::UnknownRevision => "unknown firmware revision",
            FirmwareKind::Bootloader => "in bootloader (DFU)",
        })
    }
}

/// Classify a USB device by its IDs and product string; `None` when it is not an ASM2464PD
/// bridge this crate knows.
pub fn classify(vendor_id: u16, product_id: u16, product: Option<&str>) -> Option<FirmwareKind> {
    let ids = (vendor_id, product_id);
    if ids == BOOTLOADER_ID {
        return Some(FirmwareKind::Bootloader);
    }
    if STOCK_FIRMWARE_IDS.contains(&ids) {
        return Some(FirmwareKind::Stock);
    }
    if CUSTOM_FIRMWARE_IDS.contains(&ids) {
        let product = product.map(str::trim);
        return Some(match product {
            Some(p) if p.starts_with(CUSTOM_PRODUCT_PREFIX) => FirmwareKind::Custom,
            Some(p) if p == LEGACY_PATCHED_PRODUCT => FirmwareKind::Stock,
            _ => FirmwareKind::UnknownRevision,
        });
    }
    None
}

/// A bridge found on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeCandidate {
    /// `usb:<bus>-<port>[.<port>…]`: where the bridge is plugged in (stable across replugs
    /// into the same port, unlike the address), what `open_bridge` takes.
    pub name: String,
    /// Bus number as the platform counts it (decimal), or a sanitized bus id where the
    /// platform has no number.
    pub bus: String,
    /// Hub ports from the root hub down to the bridge.
    pub ports: Vec<u8>,
    /// The device address on its bus (changes at every replug).
    pub address: u8,
    pub vendor_id: u16,
    pub product_id: u16,
    pub product: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub speed: Option<UsbSpeed>,
    pub firmware: FirmwareKind,
}

/// What enumeration tells about one device, before classification.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawDevice {
    pub(crate) bus: String,
    pub(crate) ports: Vec<u8>,
    pub(crate) address: u8,
    pub(crate) vendor_id: u16,
    pub(crate) product_id: u16,
    pub(crate) product: Option<String>,
    pub(crate) manufacturer: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) speed: Option<UsbSpeed>,
}

/// A bridge candidate from enumeration data, or `None` for any other USB device.
pub(crate) fn candidate(raw: RawDevice) -> Option<BridgeCandidate> {
    let firmware = classify(raw.vendor_id, raw.product_id, raw.product.as_deref())?;
    Some(BridgeCandidate {
        name: bridge_name(&raw.bus, &raw.ports),
        bus: raw.bus,
        ports: raw.ports,
        address: raw.address,
        vendor_id: raw.vendor_id,
        product_id: raw.product_id,
        product: raw.product,
        manufacturer: raw.manufacturer,
        serial: raw.serial,
        speed: raw.speed,
        firmware,
    })
}

/// Turn a platform bus id into the bus part of a name: Linux gives `"001"` (decimal), macOS
/// `"02"` (hex, the top byte of the location id; libusb counts it in decimal); anything else
/// (Windows location paths) keeps only letters, digits and `_` so it is safe in a file name.
pub fn normalize_bus_id(raw: &str) -> String {
    let radix = if cfg!(target_os = "macos") { 16 } else { 10 };
    normalize_bus_id_radix(raw, radix)
}

fn normalize_bus_id_radix(raw: &str, radix: u32) -> String {
    if let Ok(number) = u32::from_str_radix(raw, radix) {
        return number.to_string();
    }
    let cleaned: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

/// `usb:<bus>-<port>[.<port>…]`. A root hub has no ports; bridges never are one, but a
/// platform that reports no chain still gets a parseable name (`-0`).
pub fn bridge_name(bus: &str, ports: &[u8]) -> String {
    let path: Vec<String> = ports.iter().map(u8::to_string).collect();
    let path = if path.is_empty() { "0".to_string() } else { path.join(".") };
    format!("usb:{bus}-{path}")
}

/// Split `usb:<bus>-<port>[.<port>…]` into its bus and port path; `None` for anything else.
pub fn parse_bridge_name(name: &str) -> Option<(&str, Vec<u8>)> {
    let (bus, path) = name.strip_prefix("usb:")?.rsplit_once('-')?;
    let bus_ok = !bus.is_empty() && bus.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let ports = path.split('.').map(|port| port.parse::<u8>().ok()).collect::<Option<Vec<u8>>>()?;
    bus_ok.then_some((bus, ports))
}

/// Pick the bridge `name` means: `usb:<bus>-<port path>`, or a serial number.
pub(crate) fn select(candidates: &[BridgeCandidate], name: &str) -> Result<usize, UsbError> {
    if let Some((bus, ports)) = parse_bridge_name(name) {
        let ports = if ports == [0] { Vec::new() } else { ports };
        return candidates
            .iter()
            .position(|c| c.bus == bus && c.ports == ports)
            .ok_or_else(|| UsbError::NotFound { name: name.into() });
    }
    let matches: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.serial.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(name)))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [] => Err(UsbError::NotFound { name: name.into() }),
        [one] => Ok(*one),
        several => Err(UsbError::Open {
            name: name.into(),
            reason: format!(
                "serial number {name} belongs to {} bridges ({}); name one as usb:<bus>-<port>",
                several.len(),
                several.iter().map(|&i| candidates[i].name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// Refuse bridges whose firmware `egpu` cannot drive, saying what to do instead.
pub(crate) fn check_openable(candidate: &BridgeCandidate) -> Result<(), UsbError> {
    if candidate.firmware.is_usable() {
        return Ok(());
    }
    Err(UsbError::Open {
        name: candidate.name.clone(),
        reason: format!(
            "it runs {} ({:04x}:{:04x}{}); {}",
            candidate.firmware,
            candidate.vendor_id,
            candidate.product_id,
            candidate.product.as_deref().map(|p| format!(", \"{p}\"")).unwrap_or_default(),
            candidate.firmware.advice().unwrap_or_default()
        ),
    })
}

/// Whether a nusb enumeration error only means this machine has no USB bus at all (Linux:
/// /sys/bus/usb/devices does not exist, as in containers and CI machines).
fn is_missing_usb_bus(error: &nusb::Error) -> bool {
    cfg!(target_os = "linux")
        && error.os_error().is_some_and(|code| {
            i32::try_from(code).is_ok_and(|code| {
                std::io::Error::from_raw_os_error(code).kind() == std::io::ErrorKind::NotFound
            })
        })
}

/// Every known bridge on the bus, with the nusb handle to open it by.
fn scan() -> Result<Vec<(BridgeCandidate, nusb::DeviceInfo)>, UsbError> {
    let devices = match nusb::list_devices().wait() {
        Ok(devices) => devices,
        Err(error) if is_missing_usb_bus(&error) => return Ok(Vec::new()),
        Err(error) => return Err(UsbError::Enumerate(error.to_string())),
    };
    let mut found = Vec::new();
    for device in devices {
        let (vendor_id, product_id) = (device.vendor_id(), device.product_id());
        // Skip the string reads for devices that cannot be bridges.
        if classify(vendor_id, product_id, None).is_none() {
            continue;
        }
        // Linux and macOS cache the strings at enumeration; Windows may need a read.
        let product = cached_or_fetched(device.product_string(), || device.get_product_string());
        let manufacturer =
            cached_or_fetched(device.manufacturer_string(), || device.get_manufacturer_string());
        let serial =
            cached_or_fetched(device.serial_number(), || device.get_serial_number_string());
        let raw = RawDevice {
            bus: normalize_bus_id(device.bus_id()),
            ports: device.port_chain().to_vec(),
            address: device.device_address(),
            vendor_id,
            product_id,
            product,
            manufacturer,
            serial,
            speed: map_speed(device.speed()),
        };
        if let Some(candidate) = candidate(raw) {
            found.push((candidate, device));
        }
    }
    found.sort_by(|a, b| (&a.0.bus, &a.0.ports).cmp(&(&b.0.bus, &b.0.ports)));
    Ok(found)
}

fn cached_or_fetched<F>(cached: Option<&str>, fetch: impl FnOnce() -> F) -> Option<String>
where
    F: MaybeFuture<Output = Result<Option<String>, nusb::Error>>,
{
    match cached {
        Some(text) => Some(text.to_owned()),
        None => fetch().wait().ok().flatten(),
    }
}

/// List the ASM2464PD bridges attached, with their firmware. A machine without any USB bus
/// (no /sys/bus/usb on Linux) has no bridges: the list is empty, not an error, and callers
/// should say "no USB devices found".
pub fn list_bridges() -> Result<Vec<BridgeCandidate>, UsbError> {
    Ok(scan()?.into_iter().map(|(candidate, _)| candidate).collect())
}

/// Open the bridge `name` (`usb:<bus>-<port path>` as `list_bridges` shows it, or its serial
/// number): refuse firmware `egpu` cannot drive, take the per-bridge lock so no other egpu
/// process shares it, then open it. Keep the lock as long as the transport.
pub fn open_bridge(name: &str) -> Result<(NusbTransport, BridgeLock), UsbError> {
    let mut found = scan()?;
    let candidates: Vec<BridgeCandidate> = found.iter().map(|(c, _)| c.clone()).collect();
    let index = select(&candidates, name)?;
    let (candidate, device) = found.swap_remove(index);
    check_openable(&candidate)?;
    let lock = BridgeLock::acquire(&candidate.bus, candidate.address, &candidate.name)?;
    let transport = NusbTransport::open(&device)?;
    Ok((transport, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(bus: &str, address: u8, ids: (u16, u16), product: Option<&str>) -> RawDevice {
        // A bridge plugged straight into root-hub port `address`.
        RawDevice {
            bus: bus.into(),
            ports: vec![address],
            address,
            vendor_id: ids.0,
            product_id: ids.1,
            product: product.map(String::from),
            ..RawDevice::default()
        }
    }

    #[test]
    fn firmware_is_classified_by_ids_and_product_string() {
        assert_eq!(classify(0xADD1, 0x0001, Some("custom v0.1")), Some(FirmwareKind::Custom));
        assert_eq!(classify(0x3801, 0x0001, Some("custom v0.2")), Some(FirmwareKind::Custom));
        assert_eq!(classify(0x174C, 0x2464, Some("ASM2464PD")), Some(FirmwareKind::Stock));
        assert_eq!(classify(0x174C, 0x2463, None), Some(FirmwareKind::Stock));
        assert_eq!(
            classify(0xADD1, 0x0001, Some("USB 3.2 PCIe TinyEnclosure")),
            Some(FirmwareKind::Stock)
        );
        assert_eq!(classify(0xADD1, 0x0001, Some("AS2462")), Some(FirmwareKind::UnknownRevision));
        assert_eq!(classify(0x3801, 0x0001, None), Some(FirmwareKind::UnknownRevision));
        assert_eq!(classify(0xADD1, 0xB007, Some("dfu")), Some(FirmwareKind::Bootloader));
        // Other products of the same vendors, and unrelated devices, are not bridges.
        assert_eq!(classify(0x174C, 0x55AA, Some("ASMedia SATA")), None);
        assert_eq!(classify(0x3801, 0x0002, Some("custom")), None);
        assert_eq!(classify(0x046D, 0xC077, Some("custom mouse")), None);
    }

    #[test]
    fn stock_and_bootloader_are_refused_with_the_way_forward() {
        let stock = candidate(raw("1", 4, (0x174C, 0x2464), Some("ASM2464PD"))).unwrap();
        let err = check_openable(&stock).unwrap_err().to_string();
        assert!(err.contains("stock ASMedia firmware"), "{err}");
        assert!(err.contains("github.com/tinygrad/asm2464pd-firmware"), "{err}");
        assert!(err.contains("handmade/"), "{err}");
        assert!(err.contains("174c:2464"), "{err}");

        let dfu = candidate(raw("1", 5, BOOTLOADER_ID, None)).unwrap();
        assert!(check_openable(&dfu).unwrap_err().to_string().contains("bootloader"));

        let custom = candidate(raw("1", 6, (0xADD1, 1), Some("custom v0.1"))).unwrap();
        assert!(check_openable(&custom).is_ok());
        let unknown = candidate(raw("1", 7, (0x3801, 1), Some("other"))).unwrap();
        assert!(check_openable(&unknown).is_ok());
        assert!(unknown.firmware.advice().unwrap().contains("unknown firmware revision"));
    }

    #[test]
    fn candidates_carry_their_name_and_other_devices_are_dropped() {
        let bridge = candidate(raw("3", 12, (0xADD1, 1), Some("custom v0.1"))).unwrap();
        assert_eq!(bridge.name, "usb:3-12");
        assert_eq!(bridge.firmware, FirmwareKind::Custom);
        assert!(candidate(raw("3", 13, (0x1D6B, 0x0003), Some("xHCI Host Controller"))).is_none());
    }

    #[test]
    fn bus_ids_normalize_per_platform_numbering() {
        assert_eq!(normalize_bus_id_radix("001", 10), "1");
        assert_eq!(normalize_bus_id_radix("012", 10), "12");
        assert_eq!(normalize_bus_id_radix("0a", 16), "10");
        assert_eq!(normalize_bus_id_radix("PCIROOT(0)#PCI(1400)", 10), "PCIROOT_0__PCI_1400_");
        assert_eq!(normalize_bus_id_radix("", 10), "unknown");
    }

    #[test]
    fn names_parse_and_reject_garbage() {
        assert_eq!(parse_bridge_name("usb:1-4"), Some(("1", vec![4])));
        assert_eq!(parse_bridge_name("usb:12-127"), Some(("12", vec![127])));
        assert_eq!(parse_bridge_name("usb:3-2.1.4"), Some(("3", vec![2, 1, 4])));
        assert_eq!(parse_bridge_name("usb:PCIROOT_0_-3"), Some(("PCIROOT_0_", vec![3])));
        assert_eq!(parse_bridge_name("usb:3-2."), None);
        assert_eq!(parse_bridge_name("usb:3-2..1"), None);
        assert_eq!(parse_bridge_name("usb:1-256"), None);
        assert_eq!(parse_bridge_name("usb:1-"), None);
        assert_eq!(parse_bridge_name("usb:-4"), None);
        assert_eq!(parse_bridge_name("usb:1/2-4"), None);
        assert_eq!(parse_bridge_name("1-4"), None);
        assert_eq!(parse_bridge_name("emu"), None);
    }

    #[test]
    fn selection_by_name_or_serial() {
        let with_serial = |bus: &str, address, serial: &str| {
            let mut device = raw(bus, address, (0xADD1, 1), Some("custom v0.1"));
            device.serial = Some(serial.into());
            candidate(device).unwrap()
        };
        let bridges = [
            with_serial("1", 4, "1a2b3c4d"),
            with_serial("2", 4, "ffffffff"),
            with_serial("2", 9, "FFFFFFFF"),
        ];
        assert_eq!(select(&bridges, "usb:2-4").unwrap(), 1);
        let mut behind_a_hub = raw("5", 17, (0xADD1, 1), Some("custom v0.1"));
        behind_a_hub.ports = vec![2, 1];
        let behind_a_hub = candidate(behind_a_hub).unwrap();
        assert_eq!(behind_a_hub.name, "usb:5-2.1");
        assert_eq!(select(&[behind_a_hub], "usb:5-2.1").unwrap(), 0);
        assert_eq!(select(&bridges, "1A2B3C4D").unwrap(), 0);
        assert!(matches!(select(&bridges, "usb:1-9"), Err(UsbError::NotFound { .. })));
        assert!(matches!(select(&bridges, "deadbeef"), Err(UsbError::NotFound { .. })));
        // Blank OTP gives every unprogrammed bridge the same serial.
        let err = select(&bridges, "ffffffff").unwrap_err().to_string();
        assert!(err.contains("usb:2-4, usb:2-9"), "{err}");
    }

    #[test]
    fn listing_succeeds_without_a_usb_bus() {
        // On machines without /sys/bus/usb (containers, CI) this is an empty list, and with a
        // bus it is whatever is attached; either way not an error.
        let bridges = list_bridges().expect("listing bridges");
        assert!(bridges.iter().all(|b| b.name.starts_with("usb:")));
    }
}
