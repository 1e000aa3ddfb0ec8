//! The client: a [`PcieLink`] whose transactions go to an `egpu share` server.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use egpu_hal::{Bdf, DmaInfo, DmaRegion, LinkError, PcieLink, PendingDmaRead};

use crate::channel::{self, SecureStream, WireStats};
use crate::error::RemoteError;
use crate::wire::{self, ErrorCode, Hello, Reply, Request, MAX_DATA, MAX_READ};
use crate::Key;

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The pre-shared key, if the server has one.
    pub key: Option<Key>,
    /// Deadline of the TCP connect and the handshake.
    pub connect_timeout: Duration,
    /// Deadline of every later wait for the server.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            key: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
        }
    }
}

impl ClientConfig {
    /// The defaults with the key from the environment (`EGPU_SHARE_KEY`,
    /// `EGPU_SHARE_KEY_FILE`) and the deadline from `EGPU_REMOTE_TIMEOUT_S` (1–3600).
    pub fn from_env() -> Result<Self, RemoteError> {
        let mut config = Self { key: Key::from_env()?, ..Self::default() };
        if let Ok(text) = std::env::var("EGPU_REMOTE_TIMEOUT_S") {
            let seconds: u64 =
                text.trim().parse().ok().filter(|s| (1..=3600).contains(s)).ok_or_else(|| {
                    RemoteError::Key(format!(
                        "EGPU_REMOTE_TIMEOUT_S={text:?}: seconds from 1 to 3600 expected"
                    ))
                })?;
            config.timeout = Duration::from_secs(seconds);
        }
        Ok(config)
    }
}

/// What the client has sent and waited for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Times the client waited for the server (a read, a flush, an allocation...).
    pub round_trips: u64,
    /// Requests sent.
    pub requests: u64,
    /// Bytes on the socket (ciphertext, framing, handshake).
    pub wire: WireStats,
}

/// A link to a device served by `egpu share` on another machine (or this one).
pub struct RemoteLink {
    stream: SecureStream,
    hello: Hello,
    local: SocketAddr,
    server: SocketAddr,
    header: Vec<u8>,
    stats: RemoteStats,
    /// Set when the connection failed: the stream is out of step and every later call fails.
    broken: Option<String>,
    authenticated: bool,
}

impl RemoteLink {
    /// Connect to `host:port`, run the handshake and read the server's hello.
    pub fn connect(host: &str, port: u16, config: &ClientConfig) -> Result<Self, RemoteError> {
        let peer =
            if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| RemoteError::Connect { peer: peer.clone(), reason: e.to_string() })?
            .collect();
        let mut last = String::from("the name resolved to no address");
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, config.connect_timeout) {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        let tcp = tcp.ok_or_else(|| RemoteError::Connect {
            peer: peer.clone(),
            reason: format!("{last} (is `egpu share` running there, on this port?)"),
        })?;
        let io = |e: std::io::Error| RemoteError::Io {
            peer: peer.clone(),
            awaited: "setting up the socket".into(),
            source: e,
        };
        tcp.set_nodelay(true).map_err(io)?;
        tcp.set_read_timeout(Some(config.connect_timeout)).map_err(io)?;
        tcp.set_write_timeout(Some(config.timeout)).map_err(io)?;
        let local = tcp.local_addr().map_err(io)?;
        let server = tcp.peer_addr().map_err(io)?;
        let mut stream = channel::connect(tcp, &peer, config.key.as_ref())?;
        let hello = match decode(&peer, &stream.read_message("the server's hello")?)? {
            Reply::Hello(hello) => hello,
            Reply::Refused { reason } => return Err(RemoteError::Refused { peer, reason }),
            other => {
                return Err(RemoteError::Protocol {
                    peer,
                    reason: format!("expected the hello, got {other:?}"),
                })
            }
        };
        stream.set_read_timeout(config.timeout);
        let stats = RemoteStats { wire: stream.stats(), ..RemoteStats::default() };
        Ok(Self {
            stream,
            hello,
            local,
            server,
            header: Vec::with_capacity(64),
            stats,
            broken: None,
            authenticated: config.key.is_some(),
        })
    }

    /// The served link's kind ("usb-asm2464", "emulated").
    pub fn remote_kind(&self) -> &str {
        &self.hello.kind
    }

    /// Whether an emulator is behind the served link.
    pub fn remote_is_emulated(&self) -> bool {
        self.hello.emulated
    }

    /// The Noise protocol of the channel (authenticated with a key, or only encrypted).
    pub fn channel(&self) -> &'static str {
        crate::channel::pattern(self.authenticated)
    }

    /// This end's socket address (what the server calls the holder).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's socket address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }

    /// Round trips, requests and socket bytes so far.
    pub fn stats(&self) -> RemoteStats {
        RemoteStats { wire: self.stream.stats(), ..self.stats }
    }

    fn lost(&mut self, op: &str, error: RemoteError) -> LinkError {
        self.broken = Some(error.to_string());
        LinkError::transport(op.to_string())(error)
    }

    fn check_usable(&self, op: &str) -> Result<(), LinkError> {
        match &self.broken {
            Some(cause) => Err(LinkError::Transport {
                op: op.to_string(),
                source: Box::new(RemoteError::Closed {
                    peer: self.stream.peer().to_string(),
                    awaited: format!("an earlier request ({cause}); open the device again"),
                }),
            }),
            None => Ok(()),
        }
    }

    /// Queue a request (and its bulk data) without waiting.
    fn send(&mut self, op: &str, request: &Request, data: &[u8]) -> Result<(), LinkError> {
        self.check_usable(op)?;
        self.header.clear();
        wire::encode_request_header(request, &mut self.header);
        self.stats.requests += 1;
        let header = std::mem::take(&mut self.header);
        let sent = self.stream.write(&header, op).and_then(|()| self.stream.write(data, op));
        self.header = header;
        sent.map_err(|e| self.lost(op, e))
    }

    /// Send what is queued; the caller then reads the replies it is owed (one round trip).
    fn flush_requests(&mut self, op: &str) -> Result<(), LinkError> {
        self.stream.flush(op).map_err(|e| self.lost(op, e))?;
        self.stats.round_trips += 1;
        Ok(())
    }

    fn receive(&mut self, op: &str) -> Result<Reply, LinkError> {
        let awaited = format!("the reply to {op}");
        let body = self.stream.read_message(&awaited).map_err(|e| self.lost(op, e))?;
        let peer = self.stream.peer().to_string();
        decode(&peer, &body).map_err(|e| self.lost(op, e))
    }

    /// A reply that is not an error, or the error as the local link would have given it.
    fn expect(&mut self, op: &str) -> Result<Reply, LinkError> {
        match self.receive(op)? {
            Reply::Error { code, op: remote_op, message } => {
                let op = if remote_op.is_empty() { op.to_string() } else { remote_op };
                Err(match code {
                    ErrorCode::UnsupportedRequest => LinkError::UnsupportedRequest { op },
                    ErrorCode::CompleterAbort => LinkError::CompleterAbort { op },
                    ErrorCode::Busy => LinkError::Busy { op, reason: message },
                    ErrorCode::Unsupported => LinkError::Unsupported { op, link: "remote" },
                    ErrorCode::Other | ErrorCode::BadRequest => LinkError::Transport {
                        op,
                        source: Box::new(RemoteError::Device {
                            peer: self.stream.peer().to_string(),
                            message,
                        }),
                    },
                })
            }
            Reply::Hello(_) | Reply::Refused { .. } => {
                let error = RemoteError::Protocol {
                    peer: self.stream.peer().to_string(),
                    reason: format!("unexpected hello or refusal in reply to {op}"),
                };
                Err(self.lost(op, error))
            }
            reply => Ok(reply),
        }
    }

    fn call(&mut self, op: &str, request: &Request) -> Result<Reply, LinkError> {
        self.send(op, request, &[])?;
        self.flush_requests(op)?;
        self.expect(op)
    }

    fn mismatch(&mut self, op: &str, reply: &Reply) -> LinkError {
        let error = RemoteError::Protocol {
            peer: self.stream.peer().to_string(),
            reason: format!("unexpected reply to {op}: {reply:?}"),
        };
        self.lost(op, error)
    }

    fn call_value(&mut self, op: &str, request: &Request) -> Result<u32, LinkError> {
        match self.call(op, request)? {
            Reply::Value(value) => Ok(value),
            other => Err(self.mismatch(op, &other)),
        }
    }

    fn call_ok(&mut self, op: &str, request: &Request) -> Result<(), LinkError> {
        match self.call(op, request)? {
            Reply::Ok => Ok(()),
            other => Err(self.mismatch(op, &other)),
        }
    }

    /// Collect the data chunks of one read of `len` bytes into `out`.
    fn receive_data(&mut self, op: &str, len: usize, out: &mut Vec<u8>) -> Result<(), LinkError> {
        let start = out.len();
        loop {
            match self.expect(op)? {
                Reply::Data(chunk) if out.len() - start + chunk.len() <= len => {
                    out.extend_from_slice(&chunk);
                    if out.len() - start == len {
                        return Ok(());
                    }
                }
                other => return Err(self.mismatch(op, &other)),
            }
        }
    }
}

fn decode(peer: &str, body: &Bytes) -> Result<Reply, RemoteError> {
    wire::decode_reply(body)
        .map_err(|e| RemoteError::Protocol { peer: peer.to_string(), reason: e.to_string() })
}

fn too_long(op: &str, len: usize) -> LinkError {
    LinkError::OutOfRange { op: op.into(), offset: 0, len, size: MAX_READ as u64 }
}

impl PcieLink for RemoteLink {
    fn kind(&self) -> &'static str {
        "remote"
    }

    fn counters(&self) -> Option<egpu_hal::LinkCounters> {
        let stats = self.stats();
        Some(egpu_hal::LinkCounters {
            requests: stats.requests,
            round_trips: stats.round_trips,
            bytes_out: stats.wire.bytes_out,
            bytes_in: stats.wire.bytes_in,
        })
    }

    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        let op = format!("config read of {bdf} at 0x{offset:03X}");
        self.call_value(&op, &Request::ConfigRead { bdf, offset, size })
    }

    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        self.send("config write", &Request::ConfigWrite { bdf, offset, size, value }, &[])
    }

    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        let op = format!("memory read of 0x{address:X}");
        self.call_value(&op, &Request::MemRead32 { address })
    }

    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        self.send("memory write", &Request::MemWrite { address, size, value }, &[])
    }

    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        let op = format!("streaming read of {len} bytes at 0x{address:X}");
        if !address.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op, address, len });
        }
        // Every piece is requested before any reply is read: one round trip in all.
        let pieces: Vec<(u64, usize)> = (0..len.max(1))
            .step_by(MAX_READ)
            .map(|at| (address + at as u64, MAX_READ.min(len - at.min(len))))
            .collect();
        for &(at, piece) in &pieces {
            self.send(&op, &Request::MemRead { address: at, len: piece as u32 }, &[])?;
        }
        self.flush_requests(&op)?;
        let mut out = Vec::with_capacity(len);
        let mut first_error = None;
        for &(_, piece) in &pieces {
            // After an error the other pieces' replies are still read, to stay in step.
            if let Err(error) = self.receive_data(&op, piece, &mut out) {
                if self.broken.is_some() {
                    return Err(error);
                }
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(out),
        }
    }

    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        let op = "streaming memory write";
        if !address.is_multiple_of(4) || !data.len().is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: op.into(), address, len: data.len() });
        }
        for at in (0..data.len()).step_by(MAX_DATA) {
            let piece = data.slice(at..data.len().min(at + MAX_DATA));
            let request =
                Request::MemWriteBytes { address: address + at as u64, data: Bytes::new() };
            self.send_with_data(op, &request, &piece)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        self.call_ok("flush", &Request::Flush)
    }

    fn reset(&mut self) -> Result<(), LinkError> {
        self.call_ok("reset", &Request::Reset)
    }

    fn dma_info(&self) -> DmaInfo {
        self.hello.dma
    }

    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        let op = format!("allocate {size} bytes of GPU-visible memory");
        match self.call(&op, &Request::DmaAlloc { size })? {
            Reply::Region(region) => Ok(region),
            other => Err(self.mismatch(&op, &other)),
        }
    }

    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        self.call_ok("free GPU-visible memory", &Request::DmaFree { region })
    }

    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        let op = "write GPU-visible memory";
        region.check(op, offset, data.len())?;
        for at in (0..data.len()).step_by(MAX_DATA) {
            let piece = data.slice(at..data.len().min(at + MAX_DATA));
            let request = Request::DmaWrite {
                region: *region,
                offset: offset + at as u64,
                data: Bytes::new(),
            };
            self.send_with_data(op, &request, &piece)?;
        }
        Ok(())
    }

    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        let op = "read GPU-visible memory";
        region.check(op, offset, len)?;
        if len > MAX_READ {
            return Err(too_long(op, len));
        }
        let request = Request::DmaReadBegin { region: *region, offset, len: len as u32 };
        match self.call(op, &request)? {
            Reply::Pending { handle, release } => {
                Ok(PendingDmaRead { region: *region, offset, len, release, token: handle })
            }
            other => Err(self.mismatch(op, &other)),
        }
    }

    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        let op = "read GPU-visible memory";
        self.send(op, &Request::DmaReadFinish { handle: pending.token }, &[])?;
        self.flush_requests(op)?;
        let mut out = Vec::with_capacity(pending.len);
        self.receive_data(op, pending.len, &mut out)?;
        Ok(out)
    }
}

impl RemoteLink {
    /// Queue a bulk-write request whose data follows its header (the header's length prefix
    /// must count the data, so it is encoded with a placeholder of the same length).
    fn send_with_data(
        &mut self,
        op: &str,
        request: &Request,
        data: &Bytes,
    ) -> Result<(), LinkError> {
        let request = match request.clone() {
            Request::MemWriteBytes { address, .. } => {
                Request::MemWriteBytes { address, data: data.clone() }
            }
            Request::DmaWrite { region, offset, .. } => {
                Request::DmaWrite { region, offset, data: data.clone() }
            }
            other => other,
        };
        self.send(op, &request, data)
    }
}
