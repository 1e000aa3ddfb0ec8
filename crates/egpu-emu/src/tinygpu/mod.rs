//! The third front-end: an emulated TinyGPU.app socket server (`TinyGPU server <path>`),
//! serving the GPU of an emulated fabric over a Unix socket the way macos-ecosystem.md §A.4
//! describes `installer/Shared/server.c`. Written from that document only, never from a
//! client; `[U]` marks behaviour the document leaves open and a plausible choice was made.
//!
//! What it does:
//! - framing: 33-byte requests, 17-byte responses, status 1 followed by `resp0` bytes of
//!   message (`wire`); `dev_id` ignored;
//! - CFG_READ/CFG_WRITE on the GPU function, RESET (an FLR; BARs and COMMAND restored as
//!   macOS does `[U]`), RESIZE_BAR a no-op;
//! - MAP_BAR answers (base, size) with a stable made-up virtual address per BAR
//!   ([`BAR_VIRTUAL_BASE`]); MMIO_READ/MMIO_WRITE by BAR and offset, validated as server.c
//!   does (unmapped BAR or out of range: reads answer status 1, writes are dropped silently);
//!   MMIO_WRITE is posted (no reply);
//! - MAP_SYSMEM_FD: shared memory (memfd) rounded up to 4 KiB, at least 16 KiB, laid out as
//!   DMA segments at made-up IOVAs ([`SYSMEM_IOVA_BASE`], up to `max_segments` segments with
//!   gaps between them `[U]`), the `[addr,len,…,0,0]` list written at its start, the
//!   descriptor passed with `SCM_RIGHTS`. That memory is the fabric's host side: the GPU's
//!   DMA to those IOVAs lands in the client's mapping;
//! - PROBE, MAP_SYSMEM, SYSMEM_READ, SYSMEM_WRITE, PING and unknown commands: status 1 and
//!   a message;
//! - one client at a time: a second connection is accepted and closed at once (§A.3);
//!   everything a session allocated (DMA memory, BAR mappings `[U]`) goes when it ends;
//! - faults ([`ServerFault`]): die after N requests, die in the middle of a reply or of a
//!   client's MMIO_WRITE, stall. A dead server closes its connection (the client reads EOF)
//!   and its listener (connect is refused) but leaves the socket file, as a killed process
//!   does `[U]`; dropping the handle removes it.
//!
//! Deadlines: a client may stay idle between requests for as long as it likes, but once a
//! request has begun its remaining bytes, and every reply, must move within
//! [`TinyGpuServerConfig::io_timeout`] or the connection is closed `[U]` (the real server
//! would wait forever).
//!
//! Linux only (memfd_create).

mod card;
mod shm;
mod wire;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::GpuKind;
use crate::error::DmaError;
use crate::lock;
use card::{Card, Outcome, MAX_MMIO_TRANSFER};
pub use card::{
    CardStats, BAR_VIRTUAL_BASE, BAR_VIRTUAL_STRIDE, SYSMEM_IOVA_BASE, SYSMEM_SEGMENT_GAP,
};
use wire::{Request, REQUEST_LEN};

/// How the emulated TinyGPU server is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TinyGpuServerConfig {
    /// The card whose GPU is served.
    pub gpu: GpuKind,
    /// Bytes of VRAM (sparse).
    pub vram_size: u64,
    /// Most DMA segments one MAP_SYSMEM_FD allocation is split into (1..=32; §A.2 allows up
    /// to 32). Default 4 `[U]`: real DART mappings are often one segment, several make a
    /// client that only reads the first pair fail loudly.
    pub max_segments: usize,
    /// Config reads answered with CRS after a RESET.
    pub crs_reads_after_reset: u32,
    /// How long the rest of a begun request, or a reply, may take to move.
    pub io_timeout: Duration,
}

impl TinyGpuServerConfig {
    /// Defaults: 24 GiB of VRAM, 4 segments per allocation, no CRS, 10 s I/O deadline.
    pub fn new(gpu: GpuKind) -> Self {
        Self {
            gpu,
            vram_size: 24 << 30,
            max_segments: 4,
            crs_reads_after_reset: 0,
            io_timeout: Duration::from_secs(10),
        }
    }

    /// Split each DMA allocation into at most this many segments (clamped to 1..=32).
    pub fn with_max_segments(mut self, segments: usize) -> Self {
        self.max_segments = segments;
        self
    }

    /// Bytes of VRAM on the GPU.
    pub fn with_vram_size(mut self, bytes: u64) -> Self {
        self.vram_size = bytes;
        self
    }

    /// Deadline for the rest of a begun request and for each reply.
    pub fn with_io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }
}

/// A failure the server is told to have. Request counts start when the fault is injected
/// and run across sessions; only one fault is armed at a time (a new one replaces it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFault {
    /// Once `requests` more requests have been handled, the server dies on receiving the
    /// next one, without handling it (`requests: 0` dies at once).
    DieAfter {
        /// Requests handled normally before the server dies.
        requests: u64,
    },
    /// The first reply sent after `requests` more requests have been handled is cut after
    /// `bytes` bytes (header and data together; a descriptor is not sent), then the server
    /// dies.
    DieMidReply {
        /// Requests answered whole before the cut reply.
        requests: u64,
        /// Bytes of the cut reply that reach the client.
        bytes: usize,
    },
    /// The first MMIO_WRITE after `requests` more requests: the server reads `bytes` bytes
    /// of its data, then dies while the client is still sending.
    DieMidWrite {
        /// Requests handled normally before the cut MMIO_WRITE.
        requests: u64,
        /// Bytes of that write's data the server reads before dying.
        bytes: usize,
    },
    /// Once `requests` more requests have been handled, the server stops reading and
    /// answering; the connection stays open until the server is killed or dropped.
    StallAfter {
        /// Requests handled normally before the server goes silent.
        requests: u64,
    },
}

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum TinyGpuServerError {
    /// The fabric has no GPU to serve.
    #[error("start the emulated TinyGPU server: no GPU in the fabric (GpuKind::None); like the real app finding no `tinygpu` service, nothing will listen")]
    NoGpu,
    #[error("start the emulated TinyGPU server: {path} exists and is not a socket; remove it or choose another path")]
    /// Something other than a socket is at the socket path.
    PathTaken {
        /// The path asked for.
        path: PathBuf,
    },
    #[error("start the emulated TinyGPU server: bind {path}: {source}")]
    /// Binding the listening socket failed.
    Bind {
        /// The path asked for.
        path: PathBuf,
        /// Why `bind` failed.
        source: io::Error,
    },
    #[error("start the emulated TinyGPU server: spawn its accept thread: {0}")]
    /// The accept thread could not be started.
    Thread(io::Error),
}

/// What the server saw, for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TinyGpuServerStats {
    /// Connections served.
    pub connections: u64,
    /// Connections closed at once because another client held the server.
    pub connections_refused: u64,
    /// Requests handled (all sessions).
    pub requests: u64,
    /// Sessions that ended because a begun request or a reply missed the I/O deadline.
    pub io_timeouts: u64,
    /// Sessions ended by a panic inside the emulator (a bug; should stay 0).
    pub internal_errors: u64,
    /// The card's counters.
    pub card: CardStats,
}

struct Control {
    /// The "process" is gone: no more connections, no more requests.
    dead: bool,
    /// The handle is being dropped.
    shutting_down: bool,
    listener: Option<Arc<UnixListener>>,
    /// A clone of the live connection, to cut it from outside its thread.
    session: Option<UnixStream>,
    sessions: Vec<JoinHandle<()>>,
    fault: Option<(ServerFault, u64)>,
    stats: TinyGpuServerStats,
}

impl Control {
    /// Requests handled since the armed fault was injected, and the fault.
    fn armed(&self) -> Option<(ServerFault, u64)> {
        self.fault.map(|(f, base)| (f, self.stats.requests - base))
    }

    /// The server dies: listener and connection shut (peers see refusal and EOF).
    fn die(&mut self) {
        self.dead = true;
        if let Some(listener) = self.listener.take() {
            // SAFETY: shutdown on a descriptor this Arc keeps open; it makes new connects
            // fail and wakes the accept thread, which then drops its clone.
            unsafe {
                libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        if let Some(session) = self.session.take() {
            let _ = session.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    card: Mutex<Card>,
    control: Mutex<Control>,
    wake: Condvar,
    io_timeout: Duration,
}

/// An emulated TinyGPU server listening on a Unix socket. Dropping it stops it and removes
/// the socket file.
pub struct EmulatedTinyGpuServer {
    path: PathBuf,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl EmulatedTinyGpuServer {
    /// Serve the GPU of a `gpu` card at `path` with the default configuration.
    pub fn start(path: impl AsRef<Path>, gpu: GpuKind) -> Result<Self, TinyGpuServerError> {
        Self::start_with(path, TinyGpuServerConfig::new(gpu))
    }

    /// Serve at `path` as `config` says. A stale socket file at `path` is replaced, as the
    /// real server unlinks its path before binding `[U]`.
    pub fn start_with(
        path: impl AsRef<Path>,
        config: TinyGpuServerConfig,
    ) -> Result<Self, TinyGpuServerError> {
        let path = path.as_ref().to_path_buf();
        let card = Card::new(
            config.gpu,
            config.vram_size,
            config.max_segments,
            config.crs_reads_after_reset,
        )
        .ok_or(TinyGpuServerError::NoGpu)?;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if !meta.file_type().is_socket() {
                return Err(TinyGpuServerError::PathTaken { path });
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener = UnixListener::bind(&path)
            .map_err(|source| TinyGpuServerError::Bind { path: path.clone(), source })?;
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            card: Mutex::new(card),
            control: Mutex::new(Control {
                dead: false,
                shutting_down: false,
                listener: Some(Arc::clone(&listener)),
                session: None,
                sessions: Vec::new(),
                fault: None,
                stats: TinyGpuServerStats::default(),
            }),
            wake: Condvar::new(),
            io_timeout: config.io_timeout,
        });
        let for_thread = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("tinygpu-emu-accept".into())
            .spawn(move || accept_loop(&for_thread, &listener))
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                TinyGpuServerError::Thread(e)
            })?;
        Ok(Self { path, shared, accept: Some(accept) })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Arm a fault (replacing any armed one). `DieAfter { requests: 0 }` kills at once.
    pub fn inject(&self, fault: ServerFault) {
        let mut control = lock(&self.shared.control);
        if fault == (ServerFault::DieAfter { requests: 0 }) {
            control.die();
            self.shared.wake.notify_all();
            return;
        }
        let base = control.stats.requests;
        control.fault = Some((fault, base));
    }

    /// The server dies now (as when the GPU is unplugged: server.c `_exit(0)`s, §A.3).
    pub fn kill(&self) {
        lock(&self.shared.control).die();
        self.shared.wake.notify_all();
    }

    /// Whether the server is still up (not killed, not dead of a fault).
    pub fn is_alive(&self) -> bool {
        !lock(&self.shared.control).dead
    }

    /// Counters so far.
    pub fn stats(&self) -> TinyGpuServerStats {
        let mut stats = lock(&self.shared.control).stats.clone();
        stats.card = lock(&self.shared.card).stats();
        stats
    }

    /// GPU VRAM at `offset` (zeros past its size).
    pub fn vram(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        lock(&self.shared.card).vram(offset, &mut out);
        out
    }

    /// Store into GPU VRAM directly (dropped past its size).
    pub fn set_vram(&self, offset: u64, data: &[u8]) {
        lock(&self.shared.card).set_vram(offset, data);
    }

    /// The GPU writes `data` at a DMA address on its own (device-side stimulus), obeying
    /// bus mastering; it lands in the client's MAP_SYSMEM_FD memory if a segment holds it.
    pub fn gpu_dma_write(&self, bus_address: u64, data: &[u8]) -> Result<(), DmaError> {
        lock(&self.shared.card).gpu_dma_write(bus_address, data)
    }

    /// The GPU reads `len` bytes at a DMA address on its own.
    pub fn gpu_dma_read(&self, bus_address: u64, len: usize) -> Result<Vec<u8>, DmaError> {
        lock(&self.shared.card).gpu_dma_read(bus_address, len)
    }
}

impl Drop for EmulatedTinyGpuServer {
    fn drop(&mut self) {
        let sessions = {
            let mut control = lock(&self.shared.control);
            control.shutting_down = true;
            control.die();
            std::mem::take(&mut control.sessions)
        };
        self.shared.wake.notify_all();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for session in sessions {
            let _ = session.join();
        }
        // A session accepted while we were taking the list above.
        let late = std::mem::take(&mut lock(&self.shared.control).sessions);
        for session in late {
            let _ = session.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener) {
    loop {
        let accepted = listener.accept();
        let mut control = lock(&shared.control);
        if control.dead {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            // Anything else (out of descriptors, ...) ends the server as it would end a
            // real one `[U]`.
            Err(_) => {
                control.die();
                return;
            }
        };
        // A client that closed and reconnects at once finds its old session still winding
        // down: wait for that (it ends as soon as its thread sees the hang-up, within the
        // I/O deadline) rather than refuse a client that is in fact the only one.
        if control.session.as_ref().is_some_and(peer_gone) {
            let deadline = Instant::now() + shared.io_timeout;
            while control.session.is_some() && !control.dead {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                control = shared
                    .wake
                    .wait_timeout(control, left)
                    .map_or_else(|poison| poison.into_inner().0, |(guard, _)| guard);
            }
            if control.dead {
                return;
            }
        }
        // §A.3: one client at a time; the next connection is closed at once.
        if control.session.is_some() {
            control.stats.connections_refused += 1;
            drop(stream);
            continue;
        }
        let Ok(clone) = stream.try_clone() else { continue };
        control.session = Some(clone);
        control.stats.connections += 1;
        // Threads of finished sessions are joined here so they do not pile up.
        let (done, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut control.sessions).into_iter().partition(|h| h.is_finished());
        control.sessions = running;
        for handle in done {
            let _ = handle.join();
        }
        let for_thread = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("tinygpu-emu-session".into())
            .spawn(move || serve(&for_thread, stream));
        match spawned {
            Ok(handle) => control.sessions.push(handle),
            Err(_) => {
                control.session = None;
            }
        }
    }
}

/// Why a session ended (kept for the counters).
enum Ended {
    /// The client closed, or the server died or stopped.
    Closed,
    /// A begun request or a reply missed the I/O deadline.
    Timeout,
}

fn ended(e: &io::Error) -> Ended {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ended::Timeout,
        _ => Ended::Closed,
    }
}

/// Ends a session however its thread leaves (a bug that panics included), so the server
/// never stays "busy" with a client that is gone. Everything is settled before the client
/// sees the connection close.
struct SessionEnd<'a> {
    shared: &'a Shared,
    stream: UnixStream,
    how: Ended,
}

impl Drop for SessionEnd<'_> {
    fn drop(&mut self) {
        lock(&self.shared.card).end_session();
        let mut control = lock(&self.shared.control);
        control.session = None;
        if matches!(self.how, Ended::Timeout) {
            control.stats.io_timeouts += 1;
        }
        let _ = self.stream.shutdown(Shutdown::Both);
        drop(control);
        self.shared.wake.notify_all();
    }
}

fn serve(shared: &Shared, stream: UnixStream) {
    let mut end = SessionEnd { shared, stream, how: Ended::Closed };
    // A panic here is an emulator bug: counted (tests assert there are none) and the
    // session closed, as a crashing server would close it.
    let stream = &mut end.stream;
    match std::panic::catch_unwind(AssertUnwindSafe(|| session(shared, stream))) {
        Ok(how) => end.how = how,
        Err(_) => lock(&shared.control).stats.internal_errors += 1,
    }
}

/// Whether the peer of `stream` has hung up (or this side was shut down).
fn peer_gone(stream: &UnixStream) -> bool {
    let mut poll =
        libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call; timeout 0 never blocks.
    let ready = unsafe { libc::poll(&raw mut poll, 1, 0) };
    ready > 0 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// What the armed fault says to do before handling a complete request.
enum Gate {
    Go,
    Die,
    Stall,
}

fn gate(control: &Control) -> Gate {
    if control.dead {
        return Gate::Die;
    }
    match control.armed() {
        Some((ServerFault::DieAfter { requests }, handled)) if handled >= requests => Gate::Die,
        Some((ServerFault::StallAfter { requests }, handled)) if handled >= requests => Gate::Stall,
        _ => Gate::Go,
    }
}

fn die(shared: &Shared) {
    lock(&shared.control).die();
    shared.wake.notify_all();
}

fn session(shared: &Shared, stream: &mut UnixStream) -> Ended {
    if stream.set_write_timeout(Some(shared.io_timeout)).is_err() {
        return Ended::Closed;
    }
    loop {
        // Idle between requests without a deadline; a begun request must finish in time.
        let mut header = [0u8; REQUEST_LEN];
        if stream.set_read_timeout(None).is_err() {
            return Ended::Closed;
        }
        let first = match stream.read(&mut header) {
            Ok(0) => return Ended::Closed,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Ended::Closed,
        };
        if stream.set_read_timeout(Some(shared.io_timeout)).is_err() {
            return Ended::Closed;
        }
        if let Err(e) = stream.read_exact(&mut header[first..]) {
            return ended(&e);
        }
        let req = Request::parse(&header);
        let mut payload = Vec::new();
        if req.cmd == wire::cmd::MMIO_WRITE {
            // server.c's buffer is 64 MiB; a longer write cannot be taken in, and without
            // reading it the stream cannot be resynchronised, so the connection ends `[U]`.
            if req.arg1 > MAX_MMIO_TRANSFER {
                return Ended::Closed;
            }
            let cut = match lock(&shared.control).armed() {
                Some((ServerFault::DieMidWrite { requests, bytes }, handled))
                    if handled >= requests =>
                {
                    Some(bytes.min(req.arg1 as usize))
                }
                _ => None,
            };
            if let Some(bytes) = cut {
                let mut partial = vec![0u8; bytes];
                let _ = stream.read_exact(&mut partial);
                die(shared);
                return Ended::Closed;
            }
            payload = vec![0u8; req.arg1 as usize];
            if let Err(e) = stream.read_exact(&mut payload) {
                return ended(&e);
            }
        }
        {
            let mut control = lock(&shared.control);
            match gate(&control) {
                Gate::Go => {}
                Gate::Die => {
                    control.die();
                    shared.wake.notify_all();
                    return Ended::Closed;
                }
                Gate::Stall => {
                    while !control.dead {
                        control =
                            shared.wake.wait(control).unwrap_or_else(|poison| poison.into_inner());
                    }
                    return Ended::Closed;
                }
            }
        }
        let outcome = lock(&shared.card).handle(&req, &payload);
        let cut = {
            let mut control = lock(&shared.control);
            let cut = match (&outcome, control.armed()) {
                (Outcome::Posted, _) => None,
                (_, Some((ServerFault::DieMidReply { requests, bytes }, handled)))
                    if handled >= requests =>
                {
                    Some(bytes)
                }
                _ => None,
            };
            control.stats.requests += 1;
            cut
        };
        let sent = match (outcome, cut) {
            (Outcome::Posted, _) => Ok(()),
            (Outcome::Reply(bytes) | Outcome::ReplyWithFd(bytes, _), Some(n)) => {
                let _ = stream.write_all(&bytes[..n.min(bytes.len())]);
                die(shared);
                return Ended::Closed;
            }
            (Outcome::Reply(bytes), None) => stream.write_all(&bytes),
            (Outcome::ReplyWithFd(bytes, fd), None) => {
                // The server's copy of the descriptor closes when `fd` drops; its mapping
                // stays for the session `[U]`.
                shm::send_with_fd(stream, &bytes, fd.as_fd())
            }
        };
        if let Err(e) = sent {
            return ended(&e);
        }
    }
}
