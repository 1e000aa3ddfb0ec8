//! Device names: how users point at a GPU.

use crate::Error;
use std::fmt;
use std::str::FromStr;

/// A parsed device name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceName {
    /// `nv:N`: the N-th NVIDIA GPU found through NVIDIA's kernel module (0-based).
    Nv(u32),
    /// `usb:BUS-PORT[.PORT…]`: a GPU behind a USB bridge at that USB topology path.
    Usb(String),
    /// `emu`: the emulated GPU.
    Emu,
}

impl FromStr for DeviceName {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadDeviceName { name: text.to_string(), why: why.to_string() };
        if text == "emu" {
            return Ok(DeviceName::Emu);
        }
        let (scheme, rest) =
            text.split_once(':').ok_or_else(|| bad("expected `nv:N`, `usb:BUS-PORT` or `emu`"))?;
        match scheme {
            "nv" => rest
                .parse::<u32>()
                .map(DeviceName::Nv)
                .map_err(|_| bad("after `nv:` comes a GPU index such as 0")),
            "usb" => {
                let (bus, ports) = rest
                    .split_once('-')
                    .ok_or_else(|| bad("a USB path looks like 3-2 or 3-2.1"))?;
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if !digits(bus) || !ports.split('.').all(digits) {
                    return Err(bad("a USB path looks like 3-2 or 3-2.1"));
                }
                Ok(DeviceName::Usb(rest.to_string()))
            }
            _ => Err(bad("unknown scheme; expected `nv`, `usb` or `emu`")),
        }
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Nv(index) => write!(f, "nv:{index}"),
            DeviceName::Usb(path) => write!(f, "usb:{path}"),
            DeviceName::Emu => f.write_str("emu"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_scheme() {
        for (text, want) in [
            ("nv:0", DeviceName::Nv(0)),
            ("nv:12", DeviceName::Nv(12)),
            ("usb:3-2", DeviceName::Usb("3-2".into())),
            ("usb:1-4.2", DeviceName::Usb("1-4.2".into())),
            ("emu", DeviceName::Emu),
        ] {
            let got: DeviceName = text.parse().unwrap();
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn rejects_malformed_names_with_a_reason() {
        for text in
            ["", "nv", "nv:", "nv:x", "nv:-1", "usb:3", "usb:3-", "usb:a-b", "amd:0", "emu:1"]
        {
            match text.parse::<DeviceName>() {
                Err(Error::BadDeviceName { name, why }) => {
                    assert_eq!(name, text);
                    assert!(!why.is_empty());
                }
                other => panic!("{text:?} parsed as {other:?}"),
            }
        }
    }
}
