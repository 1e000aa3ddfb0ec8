use std::time::Duration;

use thiserror::Error;

/// Errors of the remote link and the share server: the socket, the Noise channel, the
/// protocol. Each names the peer and what was under way or awaited.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RemoteError {
    #[error("{peer}: no answer within {after:?} while waiting for {awaited}; is the server still running and reachable? (slow links: raise EGPU_REMOTE_TIMEOUT_S)")]
    Timeout { peer: String, awaited: String, after: Duration },

    #[error("{peer}: the connection closed while waiting for {awaited}")]
    Closed { peer: String, awaited: String },

    #[error("{peer}: {awaited}: {source}")]
    Io {
        peer: String,
        awaited: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{peer}: cannot connect: {reason}")]
    Connect { peer: String, reason: String },

    #[error("{peer}: refused: {reason}")]
    Refused { peer: String, reason: String },

    #[error("{peer}: Noise {what} failed ({reason})")]
    Noise { peer: String, what: String, reason: String },

    #[error("{peer}: protocol error: {reason}")]
    Protocol { peer: String, reason: String },

    #[error("{peer}: the remote device failed: {message}")]
    Device { peer: String, message: String },

    #[error("invalid key: {0}")]
    Key(String),

    #[error("refusing to listen on {addr} without a key: anyone who reaches that address would get config, BAR and DMA access to the GPU. Give `--key-file PATH` (or EGPU_SHARE_KEY), 32 bytes in hex or base64, e.g. from `head -c32 /dev/urandom | base64`; or listen on loopback (127.0.0.1)")]
    KeyRequired { addr: String },

    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}
