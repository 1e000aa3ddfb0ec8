//! USB descriptors of the custom firmware (§1.1), built from the configuration.

use crate::config::BridgeConfig;

pub const DESC_DEVICE: u8 = 1;
pub const DESC_CONFIGURATION: u8 = 2;
pub const DESC_STRING: u8 = 3;
pub const DESC_INTERFACE: u8 = 4;
pub const DESC_ENDPOINT: u8 = 5;
pub const DESC_BOS: u8 = 0x0F;
pub const DESC_DEVICE_CAPABILITY: u8 = 0x10;
pub const DESC_SS_ENDPOINT_COMPANION: u8 = 0x30;
/// UAS pipe usage (class-specific, alt 1 only).
const DESC_PIPE_USAGE: u8 = 0x24;

/// Device descriptor (USB 3.2 §9.6.1): bcdUSB 3.20 on SuperSpeed with EP0 512 B (encoded 9),
/// 2.00 on high speed with EP0 64 B; class 0/0/0; one configuration.
pub fn device(cfg: &BridgeConfig) -> Vec<u8> {
    let ss = cfg.speed.is_superspeed();
    let (bcd_usb, ep0): (u16, u8) = if ss { (0x0320, 9) } else { (0x0200, 64) };
    let mut d = vec![18, DESC_DEVICE];
    d.extend(bcd_usb.to_le_bytes());
    d.extend([0, 0, 0, ep0]);
    d.extend(cfg.vendor_id.to_le_bytes());
    d.extend(cfg.product_id.to_le_bytes());
    // bcdDevice is not documented `[U]`.
    d.extend(0x0001u16.to_le_bytes());
    d.extend([1, 2, 3, 1]);
    d
}

fn interface(alt: u8, endpoints: u8) -> [u8; 9] {
    [9, DESC_INTERFACE, 0, alt, endpoints, 0xFF, 0xFF, 0xFF, 0]
}

fn endpoint(address: u8, max_packet: u16) -> [u8; 7] {
    let [lo, hi] = max_packet.to_le_bytes();
    [7, DESC_ENDPOINT, address, 0x02, lo, hi, 0]
}

fn companion(max_burst: u8, streams_exp: u8) -> [u8; 6] {
    [6, DESC_SS_ENDPOINT_COMPANION, max_burst, streams_exp, 0, 0]
}

/// Configuration descriptor with everything below it (§1.1).
pub fn configuration(cfg: &BridgeConfig) -> Vec<u8> {
    let mut body = Vec::new();
    if cfg.speed.is_superspeed() {
        // alt 0: bulk 0x81 IN / 0x02 OUT, 1024 B, bMaxBurst 15, no streams.
        body.extend(interface(0, 2));
        for ep in [0x81, 0x02] {
            body.extend(endpoint(ep, 1024));
            body.extend(companion(15, 0));
        }
        // alt 1: legacy UAS layout with streams (unused now).
        body.extend(interface(1, 4));
        for (ep, pipe, streams) in [(0x81u8, 3u8, 5u8), (0x02, 4, 5), (0x83, 2, 5), (0x04, 1, 0)] {
            body.extend(endpoint(ep, 1024));
            body.extend(companion(15, streams));
            body.extend([4, DESC_PIPE_USAGE, pipe, 0]);
        }
    } else {
        // USB2: one alt setting, four bulk endpoints at 512 B.
        body.extend(interface(0, 4));
        for ep in [0x81, 0x02, 0x83, 0x04] {
            body.extend(endpoint(ep, 512));
        }
    }
    let total = (9 + body.len()) as u16;
    let mut d = vec![9, DESC_CONFIGURATION];
    d.extend(total.to_le_bytes());
    // One interface, configuration value 1, no string, self-powered (0xC0), 0 mA.
    d.extend([1, 1, 0, 0xC0, 0]);
    d.extend(body);
    d
}

/// BOS (§1.1): USB 2.0 Extension and SuperSpeed USB Device Capability only.
pub fn bos() -> Vec<u8> {
    let usb2_ext = [7, DESC_DEVICE_CAPABILITY, 0x02, 0x02, 0, 0, 0];
    // bmAttributes 0, speeds FS|HS|SS (0x000E), functionality from FS, U1 10 µs, U2 2047 µs.
    let ss_cap = [10, DESC_DEVICE_CAPABILITY, 0x03, 0x00, 0x0E, 0x00, 0x01, 0x0A, 0xFF, 0x07];
    let total = (5 + usb2_ext.len() + ss_cap.len()) as u16;
    let mut d = vec![5, DESC_BOS];
    d.extend(total.to_le_bytes());
    d.push(2);
    d.extend(usb2_ext);
    d.extend(ss_cap);
    d
}

/// String descriptor `index` (0 = language list: en-US), UTF-16LE.
pub fn string(cfg: &BridgeConfig, index: u8) -> Option<Vec<u8>> {
    let text = match index {
        0 => return Some(vec![4, DESC_STRING, 0x09, 0x04]),
        1 => &cfg.manufacturer,
        2 => &cfg.product,
        3 => &cfg.serial,
        _ => return None,
    };
    let units: Vec<u16> = text.encode_utf16().take(126).collect();
    let mut d = vec![(2 + 2 * units.len()) as u8, DESC_STRING];
    for u in units {
        d.extend(u.to_le_bytes());
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use egpu_usb::UsbSpeed;

    #[test]
    fn superspeed_configuration_is_self_consistent() {
        let c = configuration(&BridgeConfig::default());
        assert_eq!(usize::from(u16::from_le_bytes([c[2], c[3]])), c.len());
        // alt 0's first endpoint: 0x81, bulk, 1024 bytes.
        assert_eq!(&c[18..25], &[7, DESC_ENDPOINT, 0x81, 0x02, 0x00, 0x04, 0]);
    }

    #[test]
    fn high_speed_device_uses_usb2_values() {
        let d = device(&BridgeConfig::default().with_speed(UsbSpeed::High));
        assert_eq!(&d[2..4], &[0x00, 0x02]);
        assert_eq!(d[7], 64);
    }

    #[test]
    fn product_string_is_utf16() {
        let s = string(&BridgeConfig::default(), 2).unwrap();
        let text: Vec<u16> =
            s[2..].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(String::from_utf16(&text).unwrap(), "custom v0.1");
    }
}
