//! The encrypted channel under the messages: a short plaintext prelude (magic, version, whether
//! the client brings a key; the server's yes or no), then a Noise handshake, then Noise
//! transport frames (`u16 BE length` + ciphertext, at most 65535 bytes, as the Noise spec
//! frames them) carrying the message stream.
//!
//! With a key both sides run `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`: the key is mixed in
//! before the first message, so a peer without it fails the first message's authentication
//! and nothing past the handshake happens. Without a key (loopback only) they run
//! `Noise_NN_25519_ChaChaPoly_BLAKE2s`: still encrypted, but anyone who can connect may, which
//! on loopback means any local user. Both preludes are the handshake's prologue, so a
//! man-in-the-middle that rewrites them breaks the handshake.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use snow::{HandshakeState, TransportState};

use crate::error::RemoteError;
use crate::Key;

const PATTERN_PSK: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PATTERN_OPEN: &str = "Noise_NN_25519_ChaChaPoly_BLAKE2s";

/// The Noise protocol name for a channel with or without a pre-shared key.
pub fn pattern(with_key: bool) -> &'static str {
    if with_key {
        PATTERN_PSK
    } else {
        PATTERN_OPEN
    }
}

/// Largest Noise message.
const NOISE_MAX: usize = 65535;
/// Poly1305 tag per frame.
const TAG: usize = 16;
/// Plaintext bytes per full frame.
const FRAME_PLAIN: usize = NOISE_MAX - TAG;
/// Sealed frames are gathered up to this many bytes before one socket write.
const WRITE_BATCH: usize = 256 << 10;

const MAGIC: &[u8; 7] = b"EGPUSHR";

/// The plaintext prelude each side sends once: magic, version, and a mode (client: 1 = brings a
/// key; server: a [`PreludeStatus`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prelude {
    /// Protocol version.
    pub version: u8,
    /// Client: whether it brings a key. Server: the status byte.
    pub mode: u8,
}

/// The server's answer to a client's prelude.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PreludeStatus {
    Proceed = 0,
    KeyRequired = 1,
    NoKeyHere = 2,
    Version = 3,
    TooManyConnections = 4,
}

impl Prelude {
    /// Bytes on the wire.
    pub const LEN: usize = 9;

    fn encode(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..7].copy_from_slice(MAGIC);
        out[7] = self.version;
        out[8] = self.mode;
        out
    }

    /// Parse a prelude; `None` if the bytes are not one (wrong length or magic).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [m @ .., version, mode] if m == MAGIC => Some(Self { version: *version, mode: *mode }),
            _ => None,
        }
    }
}

/// Counters of what crossed the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    /// Bytes written to the socket (ciphertext, framing and handshake included).
    pub bytes_out: u64,
    /// Bytes read from the socket.
    pub bytes_in: u64,
}

/// The socket after the handshake: an encrypted, buffered byte stream.
pub struct SecureStream {
    tcp: TcpStream,
    noise: TransportState,
    /// Plaintext not yet sealed (always less than a full frame).
    plain_out: Vec<u8>,
    /// Sealed frames not yet written.
    sealed: Vec<u8>,
    /// Plaintext of the last frame read, from `plain_at` on not yet consumed.
    plain_in: Vec<u8>,
    plain_at: usize,
    frame: Vec<u8>,
    /// Where the peer is, for messages.
    peer: String,
    stats: WireStats,
}

fn io_error(peer: &str, awaited: &str, error: io::Error, timeout: Option<Duration>) -> RemoteError {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RemoteError::Timeout {
            peer: peer.to_string(),
            awaited: awaited.to_string(),
            after: timeout.unwrap_or_default(),
        },
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => {
            RemoteError::Closed { peer: peer.to_string(), awaited: awaited.to_string() }
        }
        _ => {
            RemoteError::Io { peer: peer.to_string(), awaited: awaited.to_string(), source: error }
        }
    }
}

fn read_exact(
    tcp: &mut TcpStream,
    peer: &str,
    awaited: &str,
    buf: &mut [u8],
) -> Result<(), RemoteError> {
    tcp.read_exact(buf).map_err(|e| io_error(peer, awaited, e, tcp.read_timeout().ok().flatten()))
}

fn write_all(tcp: &mut TcpStream, peer: &str, what: &str, buf: &[u8]) -> Result<(), RemoteError> {
    tcp.write_all(buf).map_err(|e| io_error(peer, what, e, tcp.write_timeout().ok().flatten()))
}

fn noise_error(peer: &str, what: &str) -> impl FnOnce(snow::Error) -> RemoteError {
    let (peer, what) = (peer.to_string(), what.to_string());
    move |error| RemoteError::Noise { peer, what, reason: format!("{error:?}") }
}

fn builder<'a>(key: Option<&'a Key>, prologue: &'a [u8]) -> Result<snow::Builder<'a>, RemoteError> {
    let params = pattern(key.is_some()).parse().map_err(|e| RemoteError::Noise {
        peer: String::new(),
        what: "Noise parameters".into(),
        reason: format!("{e:?}"),
    })?;
    let builder =
        snow::Builder::new(params).prologue(prologue).map_err(noise_error("", "prologue"))?;
    match key {
        Some(key) => builder.psk(0, key.bytes()).map_err(noise_error("", "pre-shared key")),
        None => Ok(builder),
    }
}

fn send_handshake(
    tcp: &mut TcpStream,
    peer: &str,
    state: &mut HandshakeState,
    what: &str,
) -> Result<u64, RemoteError> {
    let mut buf = vec![0u8; 2 + 256];
    let n = state.write_message(&[], &mut buf[2..]).map_err(noise_error(peer, what))?;
    buf[..2].copy_from_slice(&(n as u16).to_be_bytes());
    write_all(tcp, peer, what, &buf[..2 + n])?;
    Ok(2 + n as u64)
}

fn receive_handshake(
    tcp: &mut TcpStream,
    peer: &str,
    state: &mut HandshakeState,
    what: &str,
) -> Result<u64, RemoteError> {
    let mut len = [0u8; 2];
    read_exact(tcp, peer, what, &mut len)?;
    let len = usize::from(u16::from_be_bytes(len));
    // Handshake messages of these patterns are 32 (+16 with a key) bytes plus an empty payload.
    if len > 256 {
        return Err(RemoteError::Protocol {
            peer: peer.to_string(),
            reason: format!("{what}: {len}-byte handshake message (at most 256 expected)"),
        });
    }
    let mut message = vec![0u8; len];
    read_exact(tcp, peer, what, &mut message)?;
    let mut payload = [0u8; 256];
    state.read_message(&message, &mut payload).map_err(noise_error(peer, what))?;
    Ok(2 + len as u64)
}

/// Client side: prelude and handshake. `peer` names the server in messages.
pub fn connect(
    mut tcp: TcpStream,
    peer: &str,
    key: Option<&Key>,
) -> Result<SecureStream, RemoteError> {
    let hello = Prelude { version: crate::wire::VERSION, mode: u8::from(key.is_some()) }.encode();
    write_all(&mut tcp, peer, "sending the prelude", &hello)?;
    let mut answer = [0u8; Prelude::LEN];
    read_exact(&mut tcp, peer, "the server's prelude", &mut answer).map_err(|e| match e {
        RemoteError::Closed { .. } => RemoteError::Protocol {
            peer: peer.to_string(),
            reason: "the server closed the connection at once (is it `egpu share`, and has it \
                     room for another connection?)"
                .into(),
        },
        e => e,
    })?;
    let status = Prelude::decode(&answer).ok_or_else(|| RemoteError::Protocol {
        peer: peer.to_string(),
        reason: "this is not an `egpu share` server (wrong prelude)".into(),
    })?;
    let refused =
        |reason: &str| RemoteError::Refused { peer: peer.to_string(), reason: reason.into() };
    match status.mode {
        m if m == PreludeStatus::Proceed as u8 => {}
        m if m == PreludeStatus::KeyRequired as u8 => {
            return Err(refused(
                "the server requires a key: set EGPU_SHARE_KEY (hex or base64, 32 bytes) or \
                 EGPU_SHARE_KEY_FILE to the key `egpu share` was given",
            ))
        }
        m if m == PreludeStatus::NoKeyHere as u8 => {
            return Err(refused(
                "the server has no key but this client brings one; refusing rather than \
                 connecting unauthenticated (unset EGPU_SHARE_KEY, or give the server the key)",
            ))
        }
        m if m == PreludeStatus::Version as u8 => {
            return Err(refused(&format!(
                "the server speaks protocol version {}, this client {}; use the same egpu on both",
                status.version,
                crate::wire::VERSION
            )))
        }
        m if m == PreludeStatus::TooManyConnections as u8 => {
            return Err(refused("too many connections are being set up at the server; retry"))
        }
        other => {
            return Err(RemoteError::Protocol {
                peer: peer.to_string(),
                reason: format!("unknown prelude status {other}"),
            })
        }
    }
    let prologue = [hello, answer].concat();
    let mut state =
        builder(key, &prologue)?.build_initiator().map_err(noise_error(peer, "handshake"))?;
    let mut stats = WireStats { bytes_out: hello.len() as u64, bytes_in: answer.len() as u64 };
    stats.bytes_out += send_handshake(&mut tcp, peer, &mut state, "handshake message 1")?;
    stats.bytes_in += receive_handshake(&mut tcp, peer, &mut state, "the server's handshake reply")
        .map_err(|e| match (e, key.is_some()) {
            (RemoteError::Closed { .. }, true) => refused(
                "the server closed the connection during the handshake: the key does not match \
                 the server's (check EGPU_SHARE_KEY / EGPU_SHARE_KEY_FILE)",
            ),
            (e, _) => e,
        })?;
    SecureStream::new(tcp, peer, state, stats)
}

/// Server side: read the client's prelude and answer it. `room` is false when too many
/// connections are already being set up.
pub fn accept(
    mut tcp: TcpStream,
    peer: &str,
    key: Option<&Key>,
    room: bool,
) -> Result<Result<SecureStream, PreludeStatus>, RemoteError> {
    let mut hello = [0u8; Prelude::LEN];
    read_exact(&mut tcp, peer, "the client's prelude", &mut hello)?;
    let client = Prelude::decode(&hello).ok_or_else(|| RemoteError::Protocol {
        peer: peer.to_string(),
        reason: "not an egpu client (wrong prelude)".into(),
    })?;
    let status = if client.version != crate::wire::VERSION {
        PreludeStatus::Version
    } else if !room {
        PreludeStatus::TooManyConnections
    } else {
        match (client.mode, key.is_some()) {
            (0, true) => PreludeStatus::KeyRequired,
            (1, false) => PreludeStatus::NoKeyHere,
            (0 | 1, _) => PreludeStatus::Proceed,
            _ => {
                return Err(RemoteError::Protocol {
                    peer: peer.to_string(),
                    reason: format!("prelude mode {} (0 or 1 allowed)", client.mode),
                })
            }
        }
    };
    let answer = Prelude { version: crate::wire::VERSION, mode: status as u8 }.encode();
    write_all(&mut tcp, peer, "answering the prelude", &answer)?;
    if status != PreludeStatus::Proceed {
        return Ok(Err(status));
    }
    let prologue = [hello, answer].concat();
    let mut state =
        builder(key, &prologue)?.build_responder().map_err(noise_error(peer, "handshake"))?;
    let mut stats = WireStats { bytes_out: answer.len() as u64, bytes_in: hello.len() as u64 };
    stats.bytes_in += receive_handshake(&mut tcp, peer, &mut state, "handshake message 1")?;
    stats.bytes_out += send_handshake(&mut tcp, peer, &mut state, "handshake reply")?;
    SecureStream::new(tcp, peer, state, stats).map(Ok)
}

impl SecureStream {
    fn new(
        tcp: TcpStream,
        peer: &str,
        state: HandshakeState,
        stats: WireStats,
    ) -> Result<Self, RemoteError> {
        let noise = state.into_transport_mode().map_err(noise_error(peer, "handshake end"))?;
        Ok(Self {
            tcp,
            noise,
            plain_out: Vec::with_capacity(FRAME_PLAIN),
            sealed: Vec::with_capacity(WRITE_BATCH + NOISE_MAX + 2),
            plain_in: Vec::with_capacity(FRAME_PLAIN),
            plain_at: 0,
            frame: vec![0; NOISE_MAX],
            peer: peer.to_string(),
            stats,
        })
    }

    /// The socket (for timeouts and addresses).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Bytes that crossed the socket so far.
    pub fn stats(&self) -> WireStats {
        self.stats
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    fn seal(&mut self, plain_len: usize, what: &str) -> Result<(), RemoteError> {
        let at = self.sealed.len();
        self.sealed.resize(at + 2 + plain_len + TAG, 0);
        let n = self
            .noise
            .write_message(&self.plain_out[..plain_len], &mut self.sealed[at + 2..])
            .map_err(noise_error(&self.peer, what))?;
        self.sealed[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        self.sealed.truncate(at + 2 + n);
        self.plain_out.drain(..plain_len);
        if self.sealed.len() >= WRITE_BATCH {
            self.write_sealed(what)?;
        }
        Ok(())
    }

    fn write_sealed(&mut self, what: &str) -> Result<(), RemoteError> {
        if !self.sealed.is_empty() {
            write_all(&mut self.tcp, &self.peer, what, &self.sealed)?;
            self.stats.bytes_out += self.sealed.len() as u64;
            self.sealed.clear();
        }
        Ok(())
    }

    /// Queue plaintext; full frames are sealed (and sent in batches) as they fill.
    pub fn write(&mut self, mut data: &[u8], what: &str) -> Result<(), RemoteError> {
        while !data.is_empty() {
            let take = (FRAME_PLAIN - self.plain_out.len()).min(data.len());
            self.plain_out.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.plain_out.len() == FRAME_PLAIN {
                self.seal(FRAME_PLAIN, what)?;
            }
        }
        Ok(())
    }

    /// Seal what is queued and send everything.
    pub fn flush(&mut self, what: &str) -> Result<(), RemoteError> {
        if !self.plain_out.is_empty() {
            self.seal(self.plain_out.len(), what)?;
        }
        self.write_sealed(what)
    }

    fn read_frame(&mut self, awaited: &str) -> Result<(), RemoteError> {
        let mut len = [0u8; 2];
        read_exact(&mut self.tcp, &self.peer, awaited, &mut len)?;
        let len = usize::from(u16::from_be_bytes(len));
        if len < TAG {
            return Err(RemoteError::Protocol {
                peer: self.peer.clone(),
                reason: format!("{len}-byte frame while waiting for {awaited} (at least {TAG})"),
            });
        }
        read_exact(&mut self.tcp, &self.peer, awaited, &mut self.frame[..len])?;
        self.stats.bytes_in += 2 + len as u64;
        self.plain_in.resize(len, 0);
        let n = self.noise.read_message(&self.frame[..len], &mut self.plain_in).map_err(|_| {
            RemoteError::Protocol {
                peer: self.peer.clone(),
                reason: format!(
                    "a frame failed authentication while waiting for {awaited} (tampered with, \
                     or not from the peer)"
                ),
            }
        })?;
        self.plain_in.truncate(n);
        self.plain_at = 0;
        Ok(())
    }

    /// Fill `buf` from the decrypted stream, reading frames as needed.
    pub fn read_exact(&mut self, mut buf: &mut [u8], awaited: &str) -> Result<(), RemoteError> {
        while !buf.is_empty() {
            if self.plain_at == self.plain_in.len() {
                self.read_frame(awaited)?;
            }
            let take = (self.plain_in.len() - self.plain_at).min(buf.len());
            buf[..take].copy_from_slice(&self.plain_in[self.plain_at..self.plain_at + take]);
            self.plain_at += take;
            buf = &mut buf[take..];
        }
        Ok(())
    }

    /// Read one length-prefixed message body, bounds-checked before anything is allocated.
    pub fn read_message(&mut self, awaited: &str) -> Result<bytes::Bytes, RemoteError> {
        let mut prefix = [0u8; 4];
        self.read_exact(&mut prefix, awaited)?;
        let len = crate::wire::decode_length(prefix).map_err(|e| RemoteError::Protocol {
            peer: self.peer.clone(),
            reason: format!("while waiting for {awaited}: {e}"),
        })?;
        let mut body = vec![0u8; len];
        self.read_exact(&mut body, awaited)?;
        Ok(body.into())
    }

    /// Set the deadline of every later read.
    pub fn set_read_timeout(&self, timeout: Duration) {
        let _ = self.tcp.set_read_timeout(Some(timeout));
    }
}
