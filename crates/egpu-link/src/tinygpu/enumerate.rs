//! Which GPUs TinyGPU can reach: AMD and NVIDIA display functions in the IOKit registry
//! (`IOPCIDevice` objects and their `vendor-id`, `device-id`, `class-code` properties, as
//! tinygrad reads them; §A.4 "Client bootstrap"). No entitlement is needed to read them.
//!
//! egpu reads the registry through `/usr/sbin/ioreg -r -c IOPCIDevice -d 1 -l` rather than
//! linking IOKit, so the parser is plain text handling that is tested on every platform.
//! Other platforms have no TinyGPU and no enumeration: [`list`] says so.

use super::TinyGpuError;

/// An `IOPCIDevice` from the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryPciDevice {
    /// The registry entry's name (`display@0`, `pci1002,744c@0`).
    pub entry: String,
    /// The `vendor-id` property, if the entry has one.
    pub vendor_id: Option<u16>,
    /// The `device-id` property, if the entry has one.
    pub device_id: Option<u16>,
    /// 24-bit class code.
    pub class: Option<u32>,
    /// `bus:device:function` from the `pcidebug` property.
    pub location: Option<String>,
    /// `IOPCITunnelled = Yes`: behind Thunderbolt/USB4.
    pub tunnelled: bool,
}

/// A GPU TinyGPU may drive: `tinygpu:index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TinyGpuDevice {
    /// N in `tinygpu:N`: the GPU's place among the AMD/NVIDIA display functions found, in
    /// registry order.
    pub index: u32,
    /// PCI vendor ID (0x1002 AMD, 0x10DE NVIDIA).
    pub vendor_id: u16,
    /// PCI device ID.
    pub device_id: u16,
    /// 24-bit class code (0x03xxxx: display controller).
    pub class: u32,
    /// `bus:device:function` from the `pcidebug` property, where the registry has it.
    pub location: Option<String>,
    /// Behind Thunderbolt/USB4 (`IOPCITunnelled`), as an eGPU is.
    pub tunnelled: bool,
}

/// A little-endian integer from an ioreg data value (`<02100000>`).
fn data_value(value: &str) -> Option<u32> {
    let hex = value.strip_prefix('<')?.strip_suffix('>')?;
    if hex.len() % 2 != 0 || hex.is_empty() || hex.len() > 8 {
        return None;
    }
    let mut out = 0u32;
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        out |= u32::from(byte) << (8 * i);
    }
    Some(out)
}

/// Parse `ioreg -l` text into its `IOPCIDevice` entries (other classes are skipped).
pub fn parse_ioreg(text: &str) -> Vec<RegistryPciDevice> {
    let mut devices = Vec::new();
    let mut current: Option<RegistryPciDevice> = None;
    for line in text.lines() {
        let line = line.trim_start_matches(|c: char| c == '|' || c.is_whitespace());
        if let Some(rest) = line.strip_prefix("+-o ") {
            devices.extend(current.take());
            let (entry, class) = match rest.split_once("<class ") {
                Some((entry, tail)) => (entry.trim(), tail.split([',', '>']).next().unwrap_or("")),
                None => (rest.trim(), ""),
            };
            if class == "IOPCIDevice" {
                current = Some(RegistryPciDevice { entry: entry.into(), ..Default::default() });
            }
            continue;
        }
        let Some(device) = current.as_mut() else { continue };
        let Some((key, value)) = line.split_once(" = ") else { continue };
        let value = value.trim();
        match key.trim().trim_matches('"') {
            "vendor-id" => device.vendor_id = data_value(value).map(|v| v as u16),
            "device-id" => device.device_id = data_value(value).map(|v| v as u16),
            "class-code" => device.class = data_value(value).map(|v| v & 0xFF_FFFF),
            "pcidebug" => device.location = Some(value.trim_matches('"').to_owned()),
            "IOPCITunnelled" => device.tunnelled = value == "Yes",
            _ => {}
        }
    }
    devices.extend(current);
    devices
}

/// The AMD and NVIDIA display functions, numbered in registry order. TinyGPU's driver
/// extension matches display-class AMD/NVIDIA functions (§A.1); its server drives the first
/// it matched (`tinygpu:0`).
pub fn gpus(devices: &[RegistryPciDevice]) -> Vec<TinyGpuDevice> {
    devices
        .iter()
        .filter_map(|d| {
            let (vendor_id, device_id, class) = (d.vendor_id?, d.device_id?, d.class?);
            (class >> 16 == 0x03 && matches!(vendor_id, 0x1002 | 0x10DE)).then(|| TinyGpuDevice {
                index: 0,
                vendor_id,
                device_id,
                class,
                location: d.location.clone(),
                tunnelled: d.tunnelled,
            })
        })
        .enumerate()
        .map(|(i, gpu)| TinyGpuDevice { index: i as u32, ..gpu })
        .collect()
}

/// The GPUs in this Mac's IOKit registry.
#[cfg(target_os = "macos")]
pub fn list() -> Result<Vec<TinyGpuDevice>, TinyGpuError> {
    let output = std::process::Command::new("/usr/sbin/ioreg")
        .args(["-r", "-c", "IOPCIDevice", "-d", "1", "-l"])
        .output()
        .map_err(|e| TinyGpuError::Unsupported(format!("running /usr/sbin/ioreg: {e}")))?;
    if !output.status.success() {
        return Err(TinyGpuError::Unsupported(format!(
            "/usr/sbin/ioreg exited with {}",
            output.status
        )));
    }
    Ok(gpus(&parse_ioreg(&String::from_utf8_lossy(&output.stdout))))
}

/// TinyGPU exists only on macOS: nothing to enumerate elsewhere.
#[cfg(not(target_os = "macos"))]
pub fn list() -> Result<Vec<TinyGpuDevice>, TinyGpuError> {
    Err(TinyGpuError::Unsupported(
        "macOS-only (its driver extension and app), so no tinygpu: devices and no enumeration \
         on this system"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `ioreg -r -c IOPCIDevice -d 1 -l` output (written here from the format's
    /// description; no Mac was at hand to capture one).
    const SAMPLE: &str = r#"+-o pci-bridge@0  <class IOPCIDevice, id 0x100000300, registered, matched, active, busy 0 (12 ms), retain 14>
    {
      "vendor-id" = <86800000>
      "device-id" = <c6150000>
      "class-code" = <00040600>
      "pcidebug" = "0:1:0"
    }
    
+-o display@0  <class IOPCIDevice, id 0x100000a2b, registered, matched, active, busy 0 (50 ms), retain 12>
    {
      "assigned-addresses" = <1000058200000000000000000000000000000010>
      "IOName" = "display"
      "IOPCITunnelled" = Yes
      "class-code" = <00000300>
      "vendor-id" = <02100000>
      "device-id" = <4c740000>
      "pcidebug" = "5:0:0"
    }
    
+-o pci10de,2204@0  <class IOPCIDevice, id 0x100000b00, registered, matched, active, busy 0 (3 ms), retain 9>
    {
      "class-code" = <00000300>
      "vendor-id" = <de100000>
      "device-id" = <04220000>
    }
+-o HDEF@0  <class IOPCIDevice, id 0x100000b01>
    {
      "class-code" = <00030400>
      "vendor-id" = <02100000>
      "device-id" = <30ab0000>
    }
"#;

    #[test]
    fn registry_entries_parse_into_ids_and_class_codes() {
        let devices = parse_ioreg(SAMPLE);
        assert_eq!(devices.len(), 4);
        assert_eq!(devices[1].entry, "display@0");
        assert_eq!(
            (devices[1].vendor_id, devices[1].device_id, devices[1].class),
            (Some(0x1002), Some(0x744C), Some(0x03_0000))
        );
        assert_eq!(devices[1].location.as_deref(), Some("5:0:0"));
        assert!(devices[1].tunnelled && !devices[2].tunnelled);
        assert_eq!(data_value("<00040600>"), Some(0x0006_0400));
        assert_eq!(data_value("<0210000>"), None, "odd digit count");
        assert_eq!(data_value("\"text\""), None);
    }

    #[test]
    fn only_amd_and_nvidia_display_functions_become_tinygpu_devices() {
        let found = gpus(&parse_ioreg(SAMPLE));
        let ids: Vec<_> = found.iter().map(|g| (g.index, g.vendor_id, g.device_id)).collect();
        assert_eq!(ids, [(0, 0x1002, 0x744C), (1, 0x10DE, 0x2204)]);
        assert!(gpus(&parse_ioreg("+-o Root  <class IORegistryEntry>\n")).is_empty());
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn other_platforms_say_tinygpu_is_macos_only() {
        let error = list().unwrap_err().to_string();
        assert!(error.contains("macOS-only"), "{error}");
    }
}
