//! The TinyGPU link (`tinygpu:N`): a GPU on a Mac's Thunderbolt/USB4 port, driven through the
//! TinyGPU app's Unix-socket server (macos-ecosystem.md §A.3–§A.4, §A.7). The app is signed
//! for the TinyGPU driver extension, so egpu needs no Apple signature: it starts
//! `TinyGPU server <socket>` when nothing listens and speaks the 33-byte-request /
//! 17-byte-response protocol.
//!
//! - [`wire`]: the protocol as plain data (every platform).
//! - [`TinyGpuLink`] (Unix only): the client, a [`crate::PcieLink`].
//! - [`enumerate`]: GPUs in the IOKit registry (read through `ioreg` on macOS).
//!
//! The link works wherever a Unix socket does (the tests speak to a fake server on Linux);
//! only macOS has the app, so [`TinyGpuLink::open`] starts a server only there.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

pub mod enumerate;
pub mod wire;

#[cfg(unix)]
mod client;
#[cfg(unix)]
pub use client::{TinyGpuLink, TinyGpuStats};

pub use wire::Command;

/// Where the app's executable lives (it must be installed in /Applications, §A.1).
pub const DEFAULT_APP: &str = "/Applications/TinyGPU.app/Contents/MacOS/TinyGPU";
/// The environment variable tinygrad reads for the socket path.
pub const SOCKET_ENV: &str = "APL_REMOTE_SOCK";
/// The socket's file name in `$TMPDIR` when [`SOCKET_ENV`] is unset.
pub const SOCKET_FILE: &str = "tinygpu.sock";

/// The socket path tinygrad uses: `$APL_REMOTE_SOCK`, else `$TMPDIR/tinygpu.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => std::env::temp_dir().join(SOCKET_FILE),
    }
}

/// How the client talks to the server.
#[derive(Clone, Debug)]
pub struct TinyGpuOptions {
    /// Deadline for each reply (a whole reply, header and data).
    pub reply_timeout: Duration,
    /// Deadline for sending one request with its data.
    pub send_timeout: Duration,
    /// The app to start when nothing listens ([`TinyGpuLink::open`] only).
    pub app: PathBuf,
    /// Whether [`TinyGpuLink::open`] starts `app` when nothing listens (default: on macOS,
    /// the only system with the app).
    pub start_server: bool,
    /// Connection attempts after starting the app (tinygrad: 100).
    pub connect_attempts: u32,
    /// Pause before each of those attempts (tinygrad: 50 ms).
    pub connect_interval: Duration,
    /// `SO_SNDBUF` / `SO_RCVBUF` asked for (tinygrad: 64 MiB; the OS may grant less).
    pub socket_buffer: usize,
    /// Largest MMIO transfer per request (the server's limit is 64 MiB).
    pub max_transfer: usize,
}

impl Default for TinyGpuOptions {
    fn default() -> Self {
        TinyGpuOptions {
            reply_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            app: PathBuf::from(DEFAULT_APP),
            start_server: cfg!(target_os = "macos"),
            connect_attempts: 100,
            connect_interval: Duration::from_millis(50),
            socket_buffer: 64 << 20,
            max_transfer: wire::MAX_MMIO_TRANSFER,
        }
    }
}

/// What went wrong talking to the TinyGPU server. Carried as the source of
/// [`crate::LinkError::Transport`]; each variant names the command or step.
#[derive(Debug, Error)]
#[non_exhaustive]
#[allow(missing_docs)] // the messages are the documentation
pub enum TinyGpuError {
    #[error("{command}: the TinyGPU server answered status {status}: {message}")]
    Server { command: Command, status: u8, message: String },

    #[error("{command}: the TinyGPU server closed the connection after {received} of {expected} bytes of the {part}; the server exits when the GPU is unplugged or its driver stops (check the cable, `TinyGPU status`), then open the device again")]
    Closed { command: Command, part: &'static str, received: usize, expected: usize },

    #[error("{command}: no {part} from the TinyGPU server within {waited:?}; the server or the GPU hangs: unplug and replug the GPU, then open the device again")]
    Timeout { command: Command, part: &'static str, waited: Duration },

    #[error("{command}: garbled reply from the TinyGPU server ({reason}); the app may be a version egpu does not know")]
    Garbled { command: Command, reason: String },

    #[error("{command}: socket error talking to the TinyGPU server: {source}")]
    Io {
        command: Command,
        #[source]
        source: std::io::Error,
    },

    #[error("the connection to the TinyGPU server is out of step since an earlier failure ({cause}); open the device again")]
    OutOfStep { cause: String },

    #[error("nothing listens on {socket} and the TinyGPU app is not installed at {app}: install it (docs/tinygpu.md in tinygrad: `setup_tinygpu_osx.sh`, then allow the driver extension in System Settings), or set {SOCKET_ENV} to a running server's socket")]
    AppMissing { socket: PathBuf, app: PathBuf },

    #[error("nothing listens on {socket}: TinyGPU.app exists only on macOS; on this system set {SOCKET_ENV} to the socket of a running TinyGPU-protocol server")]
    NotMacOs { socket: PathBuf },

    #[error("starting `{app} server {socket}`: {source}")]
    Spawn {
        app: PathBuf,
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the TinyGPU server did not come up on {socket} within {waited:?}{detail}")]
    NoServer { socket: PathBuf, waited: Duration, detail: String },

    #[error("connecting to the TinyGPU server at {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} is in use by {holder}; only one client may drive it at a time")]
    InUse { what: String, holder: String },

    #[error("MAP_SYSMEM_FD: the GPU-visible buffer is scattered over {} DMA segments ({}); this link hands out one bus range per region, so it cannot be used", segments.len(), describe_segments(segments))]
    Scattered { segments: Vec<(u64, u64)> },

    #[error("the GPU reads 0x{value:08X} at {what}: the Thunderbolt tunnel is dead or the driver extension waits for approval (System Settings → General → Login Items & Extensions → Driver Extensions); check the enclosure's power and cable")]
    DeadDevice { what: &'static str, value: u32 },

    #[error("TinyGPU's server drives only the first GPU its driver extension matched (use tinygpu:0, not tinygpu:{index})")]
    OnlyFirstGpu { index: u32 },

    #[error("{0}")]
    Unsupported(String),
}

fn describe_segments(segments: &[(u64, u64)]) -> String {
    let shown: Vec<String> =
        segments.iter().take(4).map(|(a, l)| format!("{a:#x}+{l:#x}")).collect();
    let more = if segments.len() > 4 { ", …" } else { "" };
    format!("{}{more}", shown.join(", "))
}
