//! The server behind `egpu share`: serves one local [`PcieLink`] to one client at a time.
//!
//! An acceptor thread takes connections; each gets a short-lived thread for the prelude and
//! the handshake (so a slow or hostile peer delays nobody), bounded in number and in time.
//! An authenticated client that finds the device free claims it and is handed to the thread
//! that owns the device (the caller of [`Server::serve`]); one that finds it held is told
//! who holds it. The device is touched only on the serving thread, so any link works, Send
//! or not, and a session that ends for any reason (EOF, reset, timeout, garbage) releases it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use egpu_hal::{DmaRegion, LinkError, PcieLink, PendingDmaRead};

use crate::channel::{self, SecureStream};
use crate::error::RemoteError;
use crate::wire::{self, ErrorCode, Hello, Reply, Request, MAX_DATA};
use crate::Key;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Pre-shared key; required unless listening on loopback.
    pub key: Option<Key>,
    /// Told to clients: whether an emulator is behind the served link.
    pub emulated: bool,
    /// Deadline of a connection's prelude and handshake.
    pub handshake_timeout: Duration,
    /// A client that sends nothing this long is dropped and the device released.
    pub idle_timeout: Duration,
    /// Deadline of every write to a client.
    pub io_timeout: Duration,
    /// Connections in their handshake at once; more are closed at once.
    pub max_handshakes: usize,
    /// Status lines on stderr.
    pub log: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            key: None,
            emulated: false,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            io_timeout: Duration::from_secs(30),
            max_handshakes: 16,
            log: false,
        }
    }
}

/// Most reads begun and not finished in one session.
const MAX_PENDING_READS: usize = 64;

#[derive(Default)]
struct Shared {
    holder: Mutex<Option<SocketAddr>>,
    handshakes: AtomicUsize,
    sessions_ended: AtomicU64,
    stop: AtomicBool,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    shared: Arc<Shared>,
}

/// Watch and stop a server from another thread.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// The address of the client holding the device, if one does.
    pub fn holder(&self) -> Option<SocketAddr> {
        *lock(&self.shared.holder)
    }

    /// Sessions that have ended (the device released after each).
    pub fn sessions_ended(&self) -> u64 {
        self.shared.sessions_ended.load(Ordering::SeqCst)
    }

    /// Make [`Server::serve`] return once the current session ends.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Server {
    /// Bind `addr`. Refused without a key unless `addr` is a loopback address.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> Result<Self, RemoteError> {
        if !addr.ip().is_loopback() && config.key.is_none() {
            return Err(RemoteError::KeyRequired { addr: addr.to_string() });
        }
        let listener = TcpListener::bind(addr)
            .map_err(|source| RemoteError::Listen { addr: addr.to_string(), source })?;
        Ok(Self { listener, config, shared: Arc::default() })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// A handle to watch or stop the server.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle { shared: Arc::clone(&self.shared) }
    }

    /// Serve `link` to one client after another until [`ServerHandle::stop`].
    pub fn serve(self, link: &mut dyn PcieLink) -> Result<(), RemoteError> {
        let (to_device, sessions) = mpsc::channel::<(SecureStream, SocketAddr)>();
        let Server { listener, config, shared } = self;
        {
            let (config, shared) = (config.clone(), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("egpu-share-accept".into())
                .spawn(move || accept_loop(listener, config, shared, to_device))
                .map_err(|source| RemoteError::Listen { addr: "acceptor thread".into(), source })?;
        }
        let hello = Hello {
            kind: link.kind().to_string(),
            emulated: config.emulated,
            dma: link.dma_info(),
        };
        while !shared.stop.load(Ordering::SeqCst) {
            let (stream, peer) = match sessions.recv_timeout(Duration::from_millis(200)) {
                Ok(session) => session,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut session = Session {
                link: &mut *link,
                stream,
                deferred: None,
                regions: HashMap::new(),
                pending: HashMap::new(),
                next_handle: 1,
                reply: Vec::new(),
            };
            let outcome = session.run(&hello, &config);
            session.release();
            if config.log {
                match outcome {
                    Ok(()) => eprintln!("egpu share: {peer} disconnected; device released"),
                    Err(e) => eprintln!("egpu share: {peer} dropped ({e}); device released"),
                }
            }
            *lock(&shared.holder) = None;
            shared.sessions_ended.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn accept_loop(
    listener: TcpListener,
    config: ServerConfig,
    shared: Arc<Shared>,
    to_device: mpsc::Sender<(SecureStream, SocketAddr)>,
) {
    for tcp in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(tcp) = tcp else { continue };
        let room = shared.handshakes.fetch_add(1, Ordering::SeqCst) < config.max_handshakes;
        let (config, shared, to_device) = (config.clone(), Arc::clone(&shared), to_device.clone());
        let spawned = std::thread::Builder::new().name("egpu-share-handshake".into()).spawn({
            let shared = Arc::clone(&shared);
            move || {
                let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
                if let Err(e) = admit(tcp, &config, &shared, &to_device, room) {
                    if config.log {
                        eprintln!("egpu share: connection from {peer} refused: {e}");
                    }
                }
                shared.handshakes.fetch_sub(1, Ordering::SeqCst);
            }
        });
        if spawned.is_err() {
            shared.handshakes.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Prelude, handshake, then claim the device or say who holds it.
fn admit(
    tcp: TcpStream,
    config: &ServerConfig,
    shared: &Shared,
    to_device: &mpsc::Sender<(SecureStream, SocketAddr)>,
    room: bool,
) -> Result<(), RemoteError> {
    let peer_addr = tcp.peer_addr().map_err(|source| RemoteError::Io {
        peer: "?".into(),
        awaited: "the peer's address".into(),
        source,
    })?;
    let peer = peer_addr.to_string();
    let setup = |r: std::io::Result<()>| {
        r.map_err(|source| RemoteError::Io {
            peer: peer.clone(),
            awaited: "setting up the socket".into(),
            source,
        })
    };
    setup(tcp.set_nodelay(true))?;
    setup(tcp.set_read_timeout(Some(config.handshake_timeout)))?;
    setup(tcp.set_write_timeout(Some(config.handshake_timeout)))?;
    let io_timeout = config.io_timeout;
    let mut stream = match channel::accept(tcp, &peer, config.key.as_ref(), room) {
        Ok(Ok(stream)) => stream,
        Ok(Err(status)) => {
            return Err(RemoteError::Refused { peer, reason: format!("prelude: {status:?}") })
        }
        Err(RemoteError::Noise { peer, .. }) if config.key.is_some() => {
            return Err(RemoteError::Refused {
                peer,
                reason: "the handshake failed: the client's key is not this server's".into(),
            })
        }
        Err(e) => return Err(e),
    };
    setup(stream.tcp().set_write_timeout(Some(io_timeout)))?;
    {
        let mut holder = lock(&shared.holder);
        if let Some(holder) = *holder {
            let reason = format!("the device is in use by {holder}; try again when it is done");
            let mut out = Vec::new();
            wire::encode_reply(&Reply::Refused { reason: reason.clone() }, &mut out);
            let _ = stream.write(&out, "refusing").and_then(|()| stream.flush("refusing"));
            return Err(RemoteError::Refused { peer, reason });
        }
        *holder = Some(peer_addr);
    }
    if config.log {
        eprintln!("egpu share: {peer} connected and holds the device");
    }
    if to_device.send((stream, peer_addr)).is_err() {
        *lock(&shared.holder) = None;
    }
    Ok(())
}

/// One client's use of the device.
struct Session<'a> {
    link: &'a mut dyn PcieLink,
    stream: SecureStream,
    /// The first posted operation that failed since the last answered request.
    deferred: Option<LinkError>,
    /// Regions this client allocated and has not freed, by id: freed when it leaves.
    regions: HashMap<u64, DmaRegion>,
    pending: HashMap<u64, PendingDmaRead>,
    next_handle: u64,
    reply: Vec<u8>,
}

/// The error code and text of a link error, for [`Reply::Error`].
fn error_reply(error: &LinkError) -> Reply {
    let (code, op) = match error {
        LinkError::UnsupportedRequest { op } => (ErrorCode::UnsupportedRequest, op.clone()),
        LinkError::CompleterAbort { op } => (ErrorCode::CompleterAbort, op.clone()),
        LinkError::Busy { op, .. } => (ErrorCode::Busy, op.clone()),
        LinkError::Unsupported { op, .. } => (ErrorCode::Unsupported, op.clone()),
        _ => (ErrorCode::Other, String::new()),
    };
    let message = match error {
        LinkError::Busy { reason, .. } => reason.clone(),
        _ => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text += &format!(": {cause}");
                source = cause.source();
            }
            text
        }
    };
    Reply::Error { code, op, message }
}

fn bad_request(reason: String) -> Reply {
    Reply::Error { code: ErrorCode::BadRequest, op: String::new(), message: reason }
}

impl Session<'_> {
    fn run(&mut self, hello: &Hello, config: &ServerConfig) -> Result<(), RemoteError> {
        self.send(&Reply::Hello(hello.clone()))?;
        self.stream.flush("sending the hello")?;
        loop {
            self.stream.set_read_timeout(config.idle_timeout);
            let body = match self.stream.read_message("the next request") {
                Ok(body) => body,
                Err(RemoteError::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            match wire::decode_request(&body) {
                Ok(request) => self.execute(request)?,
                // The framing is intact (the length prefix was in range), so the session goes
                // on; the client hears why, whatever the opcode.
                Err(e) => self.send(&bad_request(format!("malformed request: {e}")))?,
            }
            self.stream.flush("sending replies")?;
        }
    }

    fn send(&mut self, reply: &Reply) -> Result<(), RemoteError> {
        self.reply.clear();
        wire::encode_reply(reply, &mut self.reply);
        let reply = std::mem::take(&mut self.reply);
        let sent = self.stream.write(&reply, "sending a reply");
        self.reply = reply;
        sent
    }

    /// Data in chunks of at most [`MAX_DATA`] (at least one chunk).
    fn send_data(&mut self, data: &[u8]) -> Result<(), RemoteError> {
        let mut chunks = data.chunks(MAX_DATA).peekable();
        if chunks.peek().is_none() {
            return self.send(&Reply::Data(Bytes::new()));
        }
        for chunk in chunks {
            // Header then data, without copying the chunk into a reply buffer first.
            let header_len = 1u32 + chunk.len() as u32;
            let mut header = [0u8; 5];
            header[..4].copy_from_slice(&header_len.to_le_bytes());
            header[4] = 0x82;
            self.stream.write(&header, "sending data")?;
            self.stream.write(chunk, "sending data")?;
        }
        Ok(())
    }

    fn posted(&mut self, result: Result<(), LinkError>) {
        if let Err(error) = result {
            self.deferred.get_or_insert(error);
        }
    }

    fn answer(&mut self, result: Result<Reply, LinkError>) -> Result<(), RemoteError> {
        match result {
            Ok(reply) => self.send(&reply),
            Err(error) => self.send(&error_reply(&error)),
        }
    }

    fn answer_data(
        &mut self,
        result: Result<Vec<u8>, LinkError>,
        len: usize,
    ) -> Result<(), RemoteError> {
        match result {
            Ok(data) if data.len() == len => self.send_data(&data),
            Ok(data) => self.send(&bad_request(format!(
                "the served link returned {} bytes for a {len}-byte read",
                data.len()
            ))),
            Err(error) => self.send(&error_reply(&error)),
        }
    }

    fn execute(&mut self, request: Request) -> Result<(), RemoteError> {
        if matches!(request, Request::Reset) {
            self.deferred = None;
            let result = self.link.reset().map(|()| Reply::Ok);
            return self.answer(result);
        }
        if request.has_reply() {
            if let Some(error) = self.deferred.take() {
                // The request is not executed: it was ordered after a write that failed.
                let mut reply = error_reply(&error);
                if let Reply::Error { message, .. } = &mut reply {
                    *message = format!("an earlier posted operation failed: {message}");
                }
                return self.send(&reply);
            }
        }
        match request {
            Request::ConfigRead { bdf, offset, size } => {
                let result = self.link.config_read(bdf, offset, size).map(Reply::Value);
                self.answer(result)
            }
            Request::ConfigWrite { bdf, offset, size, value } => {
                let result = self.link.config_write(bdf, offset, size, value);
                self.posted(result);
                Ok(())
            }
            Request::MemRead32 { address } => {
                let result = self.link.mem_read32(address).map(Reply::Value);
                self.answer(result)
            }
            Request::MemWrite { address, size, value } => {
                let result = self.link.mem_write(address, size, value);
                self.posted(result);
                Ok(())
            }
            Request::MemRead { address, len } => {
                let result = self.link.mem_read(address, len as usize);
                self.answer_data(result, len as usize)
            }
            Request::MemWriteBytes { address, data } => {
                let result = self.link.mem_write_bytes(address, data);
                self.posted(result);
                Ok(())
            }
            Request::Flush => {
                let result = self.link.flush().map(|()| Reply::Ok);
                self.answer(result)
            }
            Request::Reset => Ok(()),
            Request::DmaAlloc { size } => {
                let result = self.link.dma_alloc(size);
                if let Ok(region) = &result {
                    self.regions.insert(region.id, *region);
                }
                self.answer(result.map(Reply::Region))
            }
            Request::DmaFree { region } => {
                // Only this client's own regions: another session's are not its to free.
                if self.regions.get(&region.id) != Some(&region) {
                    return self.send(&bad_request(format!(
                        "region {} at bus 0x{:X} was not allocated by this client",
                        region.id, region.bus_address
                    )));
                }
                let result = self.link.dma_free(region);
                if result.is_ok() {
                    self.regions.remove(&region.id);
                }
                self.answer(result.map(|()| Reply::Ok))
            }
            Request::DmaWrite { region, offset, data } => {
                let result = if self.regions.get(&region.id) == Some(&region) {
                    self.link.dma_write(&region, offset, data)
                } else {
                    Err(not_owned("write GPU-visible memory", &region))
                };
                self.posted(result);
                Ok(())
            }
            Request::DmaReadBegin { region, offset, len } => {
                if self.pending.len() >= MAX_PENDING_READS {
                    return self.send(&bad_request(format!(
                        "{MAX_PENDING_READS} reads begun and not finished; finish them first"
                    )));
                }
                let result = if self.regions.get(&region.id) == Some(&region) {
                    self.link.dma_read_begin(&region, offset, len as usize)
                } else {
                    Err(not_owned("read GPU-visible memory", &region))
                };
                match result {
                    Ok(pending) => {
                        let handle = self.next_handle;
                        self.next_handle += 1;
                        let release = pending.release;
                        self.pending.insert(handle, pending);
                        self.send(&Reply::Pending { handle, release })
                    }
                    Err(error) => self.send(&error_reply(&error)),
                }
            }
            Request::DmaReadFinish { handle } => match self.pending.remove(&handle) {
                Some(pending) => {
                    let len = pending.len;
                    let result = self.link.dma_read_finish(pending);
                    self.answer_data(result, len)
                }
                None => self.send(&bad_request(format!("no read {handle} was begun"))),
            },
            Request::Ping => self.send(&Reply::Ok),
        }
    }

    /// Give back what the client left: its regions, its posted writes flushed.
    fn release(&mut self) {
        self.pending.clear();
        for (_, region) in self.regions.drain() {
            let _ = self.link.dma_free(region);
        }
        if self.link.flush().is_err() {
            let _ = self.link.reset();
        }
    }
}

fn not_owned(op: &str, region: &DmaRegion) -> LinkError {
    LinkError::Fabric(format!(
        "{op}: region {} at bus 0x{:X} was not allocated by this client",
        region.id, region.bus_address
    ))
}
