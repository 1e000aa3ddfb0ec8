//! Device names: the one grammar by which users, the CLI and the model runner point at a GPU.
//!
//! ```text
//! nv:N                      N-th NVIDIA GPU of NVIDIA's kernel module (0-based)
//! amd:N                     N-th AMD GPU egpu drives itself, on any link (0-based)
//! usb:BUS-PORT[.PORT…]      the GPU behind the USB bridge plugged in at that port path
//! emu  emu:navi31  emu:navi48  emu:ga102  emu:none
//!                           an emulated card behind an emulated bridge (`emu` = `emu:navi31`;
//!                           `emu:none` is an empty slot)
//! remote:HOST:PORT          a GPU another machine shares (`egpu share`); IPv6 as [ADDR]
//! tinygpu:N                 N-th GPU of macOS's TinyGPU driver extension
//! pci:DOMAIN:BUS:DEV.FN     a PCIe card on Linux, in hex (`pci:0000:03:00.0`)
//! ```
//!
//! USB bus ids are decimal on Linux; on platforms without bus numbers they are the
//! platform's bus id with anything but letters, digits and `_` replaced by `_`.

use crate::Error;
use std::fmt;
use std::str::FromStr;

/// Which card an emulated device carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmulatedCard {
    /// AMD Radeon RX 7900 XTX (gfx1100) behind its own PCIe switch.
    Navi31,
    /// AMD Radeon RX 9070 XT (gfx1201).
    Navi48,
    /// NVIDIA GA102 (RTX 3090 class), PCIe-level model only.
    Ga102,
    /// No card: an empty slot behind the bridge.
    None,
}

impl EmulatedCard {
    /// Every emulated card, in the order `egpu list` shows them.
    pub const ALL: [EmulatedCard; 4] =
        [EmulatedCard::Navi31, EmulatedCard::Navi48, EmulatedCard::Ga102, EmulatedCard::None];

    /// The name after `emu:`.
    pub fn as_str(self) -> &'static str {
        match self {
            EmulatedCard::Navi31 => "navi31",
            EmulatedCard::Navi48 => "navi48",
            EmulatedCard::Ga102 => "ga102",
            EmulatedCard::None => "none",
        }
    }

    /// The card named `text` (`navi31`, …).
    pub fn from_name(text: &str) -> Option<EmulatedCard> {
        EmulatedCard::ALL.into_iter().find(|card| card.as_str() == text)
    }
}

/// A parsed device name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceName {
    /// `nv:N`.
    Nv(u32),
    /// `amd:N`.
    Amd(u32),
    /// `usb:BUS-PORT[.PORT…]`.
    Usb {
        /// Bus id.
        bus: String,
        /// Hub ports from the root hub down (at least one).
        ports: Vec<u8>,
    },
    /// `emu`, `emu:CARD`.
    Emu(EmulatedCard),
    /// `remote:HOST:PORT`.
    Remote {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `tinygpu:N`.
    TinyGpu(u32),
    /// `pci:DOMAIN:BUS:DEV.FN`.
    Pci {
        /// PCI domain (segment).
        domain: u32,
        /// Bus number.
        bus: u8,
        /// Device number, 0–31.
        device: u8,
        /// Function number, 0–7.
        function: u8,
    },
}

/// What each scheme looks like, for error messages.
const GRAMMAR: &str = "nv:N, amd:N, usb:BUS-PORT[.PORT…], emu, emu:navi31, emu:navi48, \
                       emu:ga102, emu:none, remote:HOST:PORT, tinygpu:N or pci:DOMAIN:BUS:DEV.FN";

impl FromStr for DeviceName {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::BadDeviceName { name: text.to_string(), why };
        if text == "emu" {
            return Ok(DeviceName::Emu(EmulatedCard::Navi31));
        }
        let (scheme, rest) =
            text.split_once(':').ok_or_else(|| bad(format!("expected one of {GRAMMAR}")))?;
        let index = |what: &str| {
            rest.parse::<u32>().map_err(|_| {
                bad(format!("after `{scheme}:` comes a {what} index, a whole number such as 0"))
            })
        };
        match scheme {
            "nv" => index("GPU").map(DeviceName::Nv),
            "amd" => index("GPU").map(DeviceName::Amd),
            "tinygpu" => index("TinyGPU device").map(DeviceName::TinyGpu),
            "emu" => EmulatedCard::from_name(rest).map(DeviceName::Emu).ok_or_else(|| {
                bad(format!(
                    "unknown emulated GPU `{rest}`; the emulated cards are emu:navi31, \
                     emu:navi48, emu:ga102 and emu:none"
                ))
            }),
            "usb" => parse_usb(rest).ok_or_else(|| {
                bad("a USB port path looks like usb:3-2 or usb:3-2.1 (bus, then hub ports)".into())
            }),
            "remote" => parse_remote(rest).ok_or_else(|| {
                bad("a remote device looks like remote:HOST:PORT, e.g. remote:gpu-box:7390 or \
                     remote:[::1]:7390, with PORT 1–65535"
                    .into())
            }),
            "pci" => parse_pci(rest).ok_or_else(|| {
                bad("a PCI address looks like pci:0000:03:00.0 (hex domain, bus, device 00–1f, \
                     function 0–7)"
                    .into())
            }),
            _ => Err(bad(format!("unknown scheme `{scheme}`; expected one of {GRAMMAR}"))),
        }
    }
}

fn parse_usb(rest: &str) -> Option<DeviceName> {
    let (bus, path) = rest.rsplit_once('-')?;
    if bus.is_empty() || !bus.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let ports = path
        .split('.')
        .map(|port| {
            // Digits only: `parse` would also take a leading `+`.
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            port.parse::<u8>().ok()
        })
        .collect::<Option<Vec<u8>>>()?;
    Some(DeviceName::Usb { bus: bus.to_string(), ports })
}

fn parse_remote(rest: &str) -> Option<DeviceName> {
    let (host, port) = rest.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => {
            let inner = v6.strip_suffix(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            inner
        }
        None => host,
    };
    let host_ok = !host.is_empty()
        && (host.parse::<std::net::Ipv6Addr>().is_ok() && rest.starts_with('[')
            || host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    host_ok.then(|| DeviceName::Remote { host: host.to_string(), port })
}

fn parse_pci(rest: &str) -> Option<DeviceName> {
    let hex = |text: &str, max_digits: usize| {
        if text.is_empty() || text.len() > max_digits {
            return None;
        }
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok()
    };
    let (domain, rest) = rest.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let domain = hex(domain, 8)?;
    let bus = u8::try_from(hex(bus, 2)?).ok()?;
    let device = u8::try_from(hex(device, 2)?).ok().filter(|&d| d < 32)?;
    let function = u8::try_from(hex(function, 1)?).ok().filter(|&f| f < 8)?;
    Some(DeviceName::Pci { domain, bus, device, function })
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Nv(index) => write!(f, "nv:{index}"),
            DeviceName::Amd(index) => write!(f, "amd:{index}"),
            DeviceName::TinyGpu(index) => write!(f, "tinygpu:{index}"),
            DeviceName::Usb { bus, ports } => {
                write!(f, "usb:{bus}-")?;
                for (i, port) in ports.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{port}")?;
                }
                Ok(())
            }
            DeviceName::Emu(card) => write!(f, "emu:{}", card.as_str()),
            DeviceName::Remote { host, port } if host.contains(':') => {
                write!(f, "remote:[{host}]:{port}")
            }
            DeviceName::Remote { host, port } => write!(f, "remote:{host}:{port}"),
            DeviceName::Pci { domain, bus, device, function } => {
                write!(f, "pci:{domain:04x}:{bus:02x}:{device:02x}.{function:x}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_and_prints_back() {
        for (text, want) in [
            ("nv:0", DeviceName::Nv(0)),
            ("nv:12", DeviceName::Nv(12)),
            ("amd:1", DeviceName::Amd(1)),
            ("tinygpu:0", DeviceName::TinyGpu(0)),
            ("usb:3-2", DeviceName::Usb { bus: "3".into(), ports: vec![2] }),
            ("usb:1-4.2", DeviceName::Usb { bus: "1".into(), ports: vec![4, 2] }),
            (
                "usb:PCIROOT_0_-3.1.1",
                DeviceName::Usb { bus: "PCIROOT_0_".into(), ports: vec![3, 1, 1] },
            ),
            ("emu:navi31", DeviceName::Emu(EmulatedCard::Navi31)),
            ("emu:navi48", DeviceName::Emu(EmulatedCard::Navi48)),
            ("emu:ga102", DeviceName::Emu(EmulatedCard::Ga102)),
            ("emu:none", DeviceName::Emu(EmulatedCard::None)),
            (
                "remote:gpu-box.lan:7390",
                DeviceName::Remote { host: "gpu-box.lan".into(), port: 7390 },
            ),
            ("remote:127.0.0.1:1", DeviceName::Remote { host: "127.0.0.1".into(), port: 1 }),
            ("remote:[::1]:65535", DeviceName::Remote { host: "::1".into(), port: 65535 }),
            ("pci:0000:03:00.0", DeviceName::Pci { domain: 0, bus: 3, device: 0, function: 0 }),
            (
                "pci:10000:ff:1f.7",
                DeviceName::Pci { domain: 0x10000, bus: 0xff, device: 0x1f, function: 7 },
            ),
        ] {
            let got: DeviceName = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
            assert_eq!(got.to_string().parse::<DeviceName>().unwrap(), got);
        }
        // `emu` is short for the default card and prints as its full name.
        assert_eq!("emu".parse::<DeviceName>().unwrap().to_string(), "emu:navi31");
    }

    #[test]
    fn malformed_names_say_what_was_expected() {
        for (text, expected) in [
            ("", "expected one of nv:N"),
            ("nv", "expected one of nv:N"),
            ("nv:", "GPU index"),
            ("nv:x", "GPU index"),
            ("nv:-1", "GPU index"),
            ("amd:1.5", "GPU index"),
            ("tinygpu:a", "TinyGPU device index"),
            ("usb:3", "usb:3-2"),
            ("usb:3-", "usb:3-2"),
            ("usb:a-b", "usb:3-2"),
            ("usb:3-2.", "usb:3-2"),
            ("usb:3-256", "usb:3-2"),
            ("usb:3-+2", "usb:3-2"),
            ("usb:-2", "usb:3-2"),
            ("emu:1", "emu:navi31, emu:navi48"),
            ("emu:rtx", "emu:navi31, emu:navi48"),
            ("remote:host", "remote:HOST:PORT"),
            ("remote:host:0", "PORT 1–65535"),
            ("remote:host:70000", "PORT 1–65535"),
            ("remote::80", "remote:HOST:PORT"),
            ("remote:[::1:80", "remote:HOST:PORT"),
            ("remote:a b:80", "remote:HOST:PORT"),
            ("pci:0000:03:00", "pci:0000:03:00.0"),
            ("pci:0000:03:20.0", "device 00–1f"),
            ("pci:0000:03:00.8", "function 0–7"),
            ("pci:0000:123:00.0", "pci:0000:03:00.0"),
            ("gpu:0", "unknown scheme `gpu`"),
        ] {
            match text.parse::<DeviceName>() {
                Err(Error::BadDeviceName { name, why }) => {
                    assert_eq!(name, text);
                    assert!(why.contains(expected), "{text:?}: {why:?} lacks {expected:?}");
                }
                other => panic!("{text:?} parsed as {other:?}"),
            }
        }
    }
}
