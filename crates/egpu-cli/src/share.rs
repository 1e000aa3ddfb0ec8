//! `egpu share DEVICE [--listen ADDR] [--key-file PATH]`: serve a local device (USB bridge,
//! emulated) to other machines, which open it as `remote:HOST:PORT`. Loopback by default;
//! any other address needs a key. Status lines go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use egpu::link::share::{self, Key, Server, ServerConfig, KEY_ENV};
use egpu::DeviceName;

use crate::device;
use crate::error::CliError;

/// Port `egpu share` listens on unless told otherwise.
const DEFAULT_PORT: u16 = 7390;

#[derive(Args)]
pub struct ShareArgs {
    /// Device to serve: a bridge (usb:BUS-PORT) or an emulated one (emu, emu:navi31, emu:ga102).
    pub device: String,
    /// Address to listen on, IP:PORT (port 0 picks a free one). Anything but loopback needs a
    /// key.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)).to_string())]
    pub listen: String,
    /// File holding the 32-byte pre-shared key, hex or base64 (or set EGPU_SHARE_KEY). Make one
    /// with `head -c32 /dev/urandom | base64 > key; chmod 600 key`; clients set
    /// EGPU_SHARE_KEY_FILE (or EGPU_SHARE_KEY) to the same key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Seconds a client may stay silent before it is dropped and the device released (1-86400).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
}

pub fn run(args: &ShareArgs) -> Result<(), CliError> {
    let target: DeviceName = args.device.parse()?;
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "--listen {}: expected IP:PORT, e.g. 127.0.0.1:{DEFAULT_PORT} or [::1]:{DEFAULT_PORT}",
            args.listen
        ))
    })?;
    let usage = |e: share::RemoteError| CliError::Usage(e.to_string());
    let key = match (&args.key_file, std::env::var(KEY_ENV)) {
        (Some(path), _) => Some(Key::from_file(path).map_err(usage)?),
        (None, Ok(text)) => {
            Some(Key::parse(&text).map_err(|e| CliError::Usage(format!("{KEY_ENV}: {e}")))?)
        }
        (None, Err(_)) => None,
    };
    let authenticated = key.is_some();
    // Check the address before opening the device, so a refused --listen touches nothing.
    if !listen.ip().is_loopback() && !authenticated {
        return Err(usage(share::RemoteError::KeyRequired { addr: listen.to_string() }));
    }
    let mut link = device::open(&target)?;
    let config = ServerConfig {
        key,
        emulated: link.is_emulated(),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        log: true,
        ..ServerConfig::default()
    };
    let server = Server::bind(listen, config).map_err(usage)?;
    let bound = server.local_addr();
    eprintln!(
        "egpu share: serving {target} ({}) on {bound}, {}",
        link.link().kind(),
        if authenticated {
            "Noise_NNpsk0 (key required, encrypted)"
        } else {
            "Noise_NN (encrypted, no key: any local user may connect)"
        }
    );
    eprintln!("egpu share: listening on {bound}; clients open remote:{bound}; Ctrl-C stops");
    share::serve(&mut link, server)?;
    Ok(())
}
