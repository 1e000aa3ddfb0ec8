//! A PCIe link over the network.
//!
//! `egpu share DEVICE` runs a [`Server`] that serves any local [`PcieLink`] (USB bridge,
//! emulated, later TinyGPU and Linux PCIe); `remote:HOST:PORT` opens a [`RemoteLink`], a
//! [`PcieLink`] whose transactions travel to that server. Posted writes are batched and get no
//! reply, so as on the USB link a read or a flush costs one round trip and writes none;
//! streaming reads larger than one request are pipelined in the same round trip.
//!
//! Security (tinygrad's RemotePCIDevice has none; this has it from the start):
//! - the server listens on loopback unless given another address, and then only with a key;
//! - every byte after a 9-byte prelude is Noise-encrypted (ChaCha20-Poly1305, via `snow`);
//! - with a key (`Noise_NNpsk0`), a client without it or with another fails the handshake's
//!   first message, before any request is read, so it never reaches the device;
//! - without a key (loopback only, `Noise_NN`) the channel is encrypted but anyone who can
//!   connect may use the device, i.e. every local user;
//! - one client holds the device at a time; the next is told "in use by ADDR" (after it
//!   authenticated, so the holder's address is not told to strangers).

pub mod channel;
mod client;
mod error;
mod server;
pub mod wire;

use std::path::Path;

pub use channel::{Prelude, WireStats};
pub use client::{ClientConfig, RemoteLink, RemoteStats};
pub use error::RemoteError;
pub use server::{Server, ServerConfig, ServerHandle};

pub use egpu_hal::PcieLink;

/// Environment variable holding the key (hex or base64, 32 bytes), for both sides.
pub const KEY_ENV: &str = "EGPU_SHARE_KEY";
/// Environment variable naming a file that holds the key (client side).
pub const KEY_FILE_ENV: &str = "EGPU_SHARE_KEY_FILE";

/// A 32-byte pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<32 bytes, not shown>)")
    }
}

impl Key {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parse 64 hex digits or base64 (standard alphabet, padded or not) of 32 bytes;
    /// surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, RemoteError> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| RemoteError::Key(e.to_string()))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .map_err(|_| {
                    RemoteError::Key(
                        "neither 64 hex digits nor base64 (make one with `head -c32 /dev/urandom | base64`)"
                            .into(),
                    )
                })?
        };
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| RemoteError::Key(format!("{} bytes where 32 are needed", bytes.len())))?;
        if bytes == [0; 32] {
            return Err(RemoteError::Key("all zero; make a random one".into()));
        }
        Ok(Self(bytes))
    }

    /// Read a key file (hex or base64). Warns on stderr if others may read it.
    pub fn from_file(path: &Path) -> Result<Self, RemoteError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RemoteError::Key(format!("reading {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: key file {} is readable by other users; `chmod 600` it",
                        path.display()
                    );
                }
            }
        }
        Self::parse(&text).map_err(|e| RemoteError::Key(format!("{}: {e}", path.display())))
    }

    /// The key from [`KEY_ENV`] or the file named by [`KEY_FILE_ENV`]; `None` if neither is set.
    pub fn from_env() -> Result<Option<Self>, RemoteError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            return Self::parse(&text)
                .map(Some)
                .map_err(|e| RemoteError::Key(format!("{KEY_ENV}: {e}")));
        }
        match std::env::var_os(KEY_FILE_ENV) {
            Some(path) => Self::from_file(Path::new(&path)).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_and_base64_and_bad_ones_say_why() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Key::parse(&hex).unwrap(), Key(bytes));
        assert_eq!(Key::parse(&format!("  {}\n", hex.to_uppercase())).unwrap(), Key(bytes));
        // base64 of 01..20, as `base64` from coreutils writes it.
        let b64 = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
        assert_eq!(Key::parse(b64).unwrap(), Key(bytes));
        assert_eq!(Key::parse(b64.trim_end_matches('=')).unwrap(), Key(bytes));
        assert!(Key::parse("AQID").unwrap_err().to_string().contains("3 bytes where 32"));
        assert!(Key::parse("not a key!").unwrap_err().to_string().contains("neither 64 hex"));
        assert!(Key::parse(&"0".repeat(64)).unwrap_err().to_string().contains("all zero"));
        assert!(!format!("{:?}", Key(bytes)).contains("01"));
    }
}
