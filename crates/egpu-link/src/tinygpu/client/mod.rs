//! The client of the TinyGPU server: one Unix-socket connection, one PCI function.
//!
//! **Address space presented.** The function appears at `00:00.0` (the server reaches one
//! function; config accesses to any other BDF are refused). Each memory BAR the server maps
//! (MAP_BAR, done for every BAR at open, before any MMIO) is presented at the base the server
//! returned: for TinyGPU.app that is the *server's* virtual address of its mapping, for other
//! servers whatever they call a base. The link only uses it to route `mem_*` accesses to
//! MMIO_READ/MMIO_WRITE by BAR and offset; no device ever sees these addresses, so
//! [`PcieLink::map_range`] has nothing to map (`None`).
//!
//! **GPU-visible memory** is MAP_SYSMEM_FD: the server's shared memory, received as a file
//! descriptor (`SCM_RIGHTS`) and mapped here, so host reads and writes are plain memory
//! accesses. The region's bus address is the first entry of the DMA address list the server
//! writes at the start of the buffer; a list that is not one contiguous range is refused
//! (the hal's region is one bus range). The server frees nothing before the connection
//! closes: [`PcieLink::dma_free`] unmaps our view only.
//!
//! **Ordering.** MMIO_WRITE has no reply (posted); a later read on the same stream is
//! answered after it, and [`PcieLink::flush`] is a CFG_READ (as tinygrad's bench flushes).
//! Every reply has a deadline; a failure that may leave the byte stream out of step (a
//! timeout, a short or garbled reply) makes every later call fail until the device is opened
//! again.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Instant;

use bytes::Bytes;
use egpu_hal::{DmaInfo, DmaRegion, PendingDmaRead};
use memmap2::MmapOptions;

use super::wire::{self, Command, Reply, Request, Response, REQUEST_LEN, RESPONSE_LEN};
use super::{TinyGpuError, TinyGpuOptions};
use crate::host_memory::MappedRegions;
use crate::pcie::fabric::{Bar, BarKind, Function, Topology};
use crate::pcie::{Bdf, PcieLink};
use crate::LinkError;

/// The function's address as this link presents it.
const BDF: Bdf = Bdf::new(0, 0, 0);
/// The server rounds sysmem to 4 KiB pages (minimum 16 KiB).
const SYSMEM_PAGE: u64 = 4096;
/// DART limit on what is mapped at once (about 1.5 GB, §A.2; reported, not documented).
const DART_BYTES: u64 = 1536 << 20;
/// Largest MAP_SYSMEM_FD size accepted in a reply (anything near the DART limit is sane).
const MAX_SYSMEM: u64 = 1 << 40;

struct MappedBar {
    index: u8,
    base: u64,
    size: u64,
}

/// Requests and replies so far (for `egpu bench link`: round trips per operation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TinyGpuStats {
    /// Requests sent.
    pub requests: u64,
    /// Replies awaited (round trips); posted writes have none.
    pub round_trips: u64,
    /// Bytes sent: request headers and MMIO_WRITE data.
    pub bytes_sent: u64,
    /// Bytes received: reply headers, MMIO_READ data and error messages.
    pub bytes_received: u64,
}

/// A PCI function reached through a TinyGPU server.
pub struct TinyGpuLink {
    stream: UnixStream,
    socket: PathBuf,
    dev_id: u32,
    options: TinyGpuOptions,
    function: Function,
    bars: Vec<MappedBar>,
    host: MappedRegions,
    /// Set when the byte stream may be out of step; every later call fails with it.
    broken: Option<String>,
    stats: TinyGpuStats,
    /// One egpu client per server; the server itself refuses a second connection.
    _lock: File,
    /// The server this link started, if any; it keeps serving after the link closes, as
    /// tinygrad leaves it.
    _server: Option<Child>,
}

fn transport(op: impl Into<String>) -> impl FnOnce(TinyGpuError) -> LinkError {
    LinkError::transport(op)
}

/// Take the egpu-side lock of `socket`: `<socket>.lock`, holding our pid.
fn lock_socket(socket: &Path) -> Result<File, TinyGpuError> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io = |source: io::Error| TinyGpuError::Connect { socket: path.clone(), source };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another egpu client".to_owned(),
                pid => format!("egpu process {pid}"),
            };
            return Err(TinyGpuError::InUse {
                what: format!("the TinyGPU server at {}", socket.display()),
                holder: format!("{holder} (lock {})", path.display()),
            });
        }
        Err(TryLockError::Error(source)) => return Err(io(source)),
    }
    // Best effort: the pid only makes the in-use message more helpful.
    let _ = file.set_len(0).and_then(|()| write!(file, "{}", std::process::id()));
    Ok(file)
}

fn not_listening(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound)
}

/// Sends that never raise SIGPIPE (the CLI restores the default SIGPIPE action so a closed
/// stdout ends it quietly; a vanished server must be an error instead).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const SEND_FLAGS: libc::c_int = 0;

fn set_socket_option(fd: RawFd, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads exactly `size_of::<c_int>()` bytes from a live local.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn configure(stream: &UnixStream, options: &TinyGpuOptions) {
    let fd = stream.as_raw_fd();
    let size = libc::c_int::try_from(options.socket_buffer).unwrap_or(libc::c_int::MAX);
    // Best effort, as in tinygrad: the OS caps the sizes (net.core.*mem_max, kern.ipc.*).
    let _ = set_socket_option(fd, libc::SO_SNDBUF, size);
    let _ = set_socket_option(fd, libc::SO_RCVBUF, size);
    #[cfg(target_vendor = "apple")]
    let _ = set_socket_option(fd, libc::SO_NOSIGPIPE, 1);
}

/// `recvmsg` into `buf`, keeping every descriptor passed with `SCM_RIGHTS`.
// The msghdr/cmsghdr field types differ between platforms (usize on Linux, u32 on macOS).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn recv_with_fds(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // Room for a few descriptors, aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = 0;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both alive for the call.
    let received = unsafe { libc::recvmsg(fd, &raw mut msg, flags) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages the kernel wrote into `control`, with the libc
    // macros that stay inside `msg_controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let payload =
                    ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..payload / std::mem::size_of::<libc::c_int>() {
                    // The kernel installed these descriptors in this process; we own them now.
                    let fd = data.add(i).read_unaligned();
                    // Where recvmsg cannot set close-on-exec itself, set it now so the buffer
                    // never leaks into a process this one starts.
                    #[cfg(not(any(target_os = "linux", target_os = "android")))]
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("passed file descriptors were cut off (MSG_CTRUNC)"));
    }
    Ok(received as usize)
}

/// Reads from the socket, each read limited by what is left of one deadline.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
    received: &'a mut u64,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let n = (&*self.stream).read(buf)?;
        *self.received += n as u64;
        Ok(n)
    }
}

impl TinyGpuLink {
    /// Connect to a server already listening on `socket_path` (never starts one), take the
    /// egpu lock of that socket, and map every BAR of device `device_index` (sent as
    /// `dev_id`; TinyGPU.app ignores it and serves its one GPU).
    pub fn connect(
        socket_path: &Path,
        device_index: u32,
        options: TinyGpuOptions,
    ) -> Result<TinyGpuLink, LinkError> {
        let op = format!("opening the TinyGPU server at {}", socket_path.display());
        let lock = lock_socket(socket_path).map_err(transport(op.clone()))?;
        let stream = UnixStream::connect(socket_path)
            .map_err(|source| TinyGpuError::Connect { socket: socket_path.into(), source })
            .map_err(transport(op))?;
        Self::from_stream(stream, socket_path, device_index, options, lock, None)
    }

    /// Open `tinygpu:index` as tinygrad does: connect to `$APL_REMOTE_SOCK` (or
    /// `$TMPDIR/tinygpu.sock`); if nothing listens, start `TinyGPU server <path>` once (macOS)
    /// and retry every `connect_interval`, `connect_attempts` times.
    pub fn open(index: u32, options: TinyGpuOptions) -> Result<TinyGpuLink, LinkError> {
        let socket = super::default_socket_path();
        let op = format!("opening tinygpu:{index}");
        if index != 0 {
            return Err(transport(op)(TinyGpuError::OnlyFirstGpu { index }));
        }
        let lock = lock_socket(&socket).map_err(transport(op.clone()))?;
        let (stream, server) = Self::reach_server(&socket, &options).map_err(transport(op))?;
        Self::from_stream(stream, &socket, index, options, lock, server)
    }

    fn reach_server(
        socket: &Path,
        options: &TinyGpuOptions,
    ) -> Result<(UnixStream, Option<Child>), TinyGpuError> {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok((stream, None)),
            Err(error) if not_listening(&error) => {}
            Err(source) => return Err(TinyGpuError::Connect { socket: socket.into(), source }),
        }
        if !options.start_server {
            return Err(TinyGpuError::NotMacOs { socket: socket.into() });
        }
        if !options.app.is_file() {
            return Err(TinyGpuError::AppMissing {
                socket: socket.into(),
                app: options.app.clone(),
            });
        }
        let mut child = std::process::Command::new(&options.app)
            .arg("server")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| TinyGpuError::Spawn {
                app: options.app.clone(),
                socket: socket.into(),
                source,
            })?;
        let started = Instant::now();
        let mut last = None;
        for _ in 0..options.connect_attempts.max(1) {
            std::thread::sleep(options.connect_interval);
            match UnixStream::connect(socket) {
                Ok(stream) => return Ok((stream, Some(child))),
                Err(error) if not_listening(&error) => last = Some(error),
                Err(source) => return Err(TinyGpuError::Connect { socket: socket.into(), source }),
            }
            // A zero exit may be a server that went to the background: keep trying.
            if let Ok(Some(status)) = child.try_wait().map(|s| s.filter(|s| !s.success())) {
                let advice = match status.code() {
                    Some(4) => {
                        "; the driver extension waits for approval: System Settings → \
                                General → Login Items & Extensions → Driver Extensions, turn \
                                TinyGPU on"
                    }
                    Some(3) => {
                        "; the app reports failure: is the GPU plugged in and powered \
                                (`TinyGPU status`)?"
                    }
                    _ => "",
                };
                return Err(TinyGpuError::NoServer {
                    socket: socket.into(),
                    waited: started.elapsed(),
                    detail: format!(": `TinyGPU server` exited with {status}{advice}"),
                });
            }
        }
        // It never came up and serves nobody: do not leave it behind.
        let _ = child.kill();
        let _ = child.wait();
        Err(TinyGpuError::NoServer {
            socket: socket.into(),
            waited: started.elapsed(),
            detail: last.map(|e| format!(" (last attempt: {e})")).unwrap_or_default(),
        })
    }

    fn from_stream(
        stream: UnixStream,
        socket: &Path,
        dev_id: u32,
        options: TinyGpuOptions,
        lock: File,
        server: Option<Child>,
    ) -> Result<TinyGpuLink, LinkError> {
        configure(&stream, &options);
        let mut link = TinyGpuLink {
            stream,
            socket: socket.into(),
            dev_id,
            options,
            function: Function {
                bdf: BDF,
                vendor_id: 0,
                device_id: 0,
                class: 0,
                revision: 0,
                header_type: 0,
                bars: Vec::new(),
                capabilities: Vec::new(),
                resizable_bars: Vec::new(),
                bridge: None,
                port_type: None,
            },
            bars: Vec::new(),
            host: MappedRegions::default(),
            broken: None,
            stats: TinyGpuStats::default(),
            _lock: lock,
            _server: server,
        };
        link.identify().map_err(transport(format!(
            "opening the device behind the TinyGPU server at {}",
            socket.display()
        )))?;
        Ok(link)
    }

    /// Read the function's identity and map its BARs.
    fn identify(&mut self) -> Result<(), TinyGpuError> {
        let ids = match self.cfg_read(0, 4) {
            // The server closes a second client's connection at once (`listen(fd, 1)`).
            Err(TinyGpuError::Closed { received: 0, .. }) => {
                return Err(TinyGpuError::InUse {
                    what: format!("the TinyGPU server at {}", self.socket.display()),
                    holder: "another client, e.g. tinygrad (the server closed this connection \
                             before answering; if nothing else runs, the server stopped: check \
                             `TinyGPU status`)"
                        .into(),
                })
            }
            other => other?,
        };
        if ids == 0xFFFF_FFFF || ids & 0xFFFF == 0xFFFF {
            return Err(TinyGpuError::DeadDevice { what: "the vendor ID", value: ids });
        }
        let class = self.cfg_read(8, 4)?;
        let header_type = self.cfg_read(0x0E, 1)? as u8;
        self.function.vendor_id = ids as u16;
        self.function.device_id = (ids >> 16) as u16;
        self.function.class = class >> 8;
        self.function.revision = class as u8;
        self.function.header_type = header_type;

        let mut index = 0u8;
        while index < 6 {
            let register = self.cfg_read(0x10 + 4 * u16::from(index), 4)?;
            let is_64 = register & 0x1 == 0 && (register >> 1) & 0x3 == 0b10;
            let step = if is_64 { 2 } else { 1 };
            if register & 0x1 != 0 {
                // I/O BARs are neither mapped nor used by the drivers.
                index += step;
                continue;
            }
            let mut request = self.request(Command::MapBar);
            request.bar = index.into();
            match self.call(request, &[]) {
                Ok(reply) if reply.resp1 > 0 => {
                    if reply.resp0.checked_add(reply.resp1).is_none() {
                        return self.garbled(
                            Command::MapBar,
                            format!(
                                "BAR{index} at {:#x}+{:#x} wraps around",
                                reply.resp0, reply.resp1
                            ),
                        );
                    }
                    self.bars.push(MappedBar { index, base: reply.resp0, size: reply.resp1 });
                    self.function.bars.push(Bar {
                        index,
                        kind: if is_64 { BarKind::Mem64 } else { BarKind::Mem32 },
                        prefetchable: register & 0x8 != 0,
                        size: reply.resp1,
                        address: reply.resp0,
                    });
                }
                // An unimplemented BAR: the server refuses to map it, cleanly.
                Ok(_) | Err(TinyGpuError::Server { .. }) => {}
                Err(error) => return Err(error),
            }
            index += step;
        }
        for (i, a) in self.bars.iter().enumerate() {
            for b in &self.bars[i + 1..] {
                if a.base < b.base + b.size && b.base < a.base + a.size {
                    return self.garbled(
                        Command::MapBar,
                        format!(
                            "BAR{} and BAR{} overlap at the bases it returned",
                            a.index, b.index
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn garbled<T>(&mut self, command: Command, reason: String) -> Result<T, TinyGpuError> {
        self.broken = Some(format!("{command}: {reason}"));
        Err(TinyGpuError::Garbled { command, reason })
    }

    /// The function, with its BARs at the bases the server returned (no fabric walk: macOS
    /// set the fabric up).
    pub fn topology(&self) -> Topology {
        Topology { functions: vec![self.function.clone()] }
    }

    /// The socket this link talks through.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Requests, round trips and bytes so far.
    pub fn stats(&self) -> TinyGpuStats {
        self.stats
    }

    /// Function-level reset of the GPU (RESET: FLR, falling back to a hot reset, done by the
    /// driver extension). Not [`PcieLink::reset`], which resets the link, never the card.
    pub fn reset_function(&mut self) -> Result<(), LinkError> {
        let request = self.request(Command::Reset);
        self.call(request, &[]).map(drop).map_err(transport("resetting the GPU (RESET)"))
    }

    fn request(&self, command: Command) -> Request {
        Request::new(command, self.dev_id)
    }

    fn check_step(&self) -> Result<(), TinyGpuError> {
        match &self.broken {
            Some(cause) => Err(TinyGpuError::OutOfStep { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Send a request and its data, with the send deadline.
    fn send(&mut self, request: Request, data: &[u8]) -> Result<(), TinyGpuError> {
        self.check_step()?;
        let command = request.command;
        let deadline = Instant::now() + self.options.send_timeout;
        let header = request.encode();
        for part in [&header[..], data] {
            let mut sent = 0;
            while sent < part.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                let result = if left.is_zero() {
                    Err(io::ErrorKind::TimedOut.into())
                } else {
                    self.stream.set_write_timeout(Some(left)).and_then(|()| {
                        let rest = &part[sent..];
                        // SAFETY: sends from a live slice of `rest.len()` bytes.
                        let n = unsafe {
                            libc::send(
                                self.stream.as_raw_fd(),
                                rest.as_ptr().cast(),
                                rest.len(),
                                SEND_FLAGS,
                            )
                        };
                        if n < 0 {
                            Err(io::Error::last_os_error())
                        } else {
                            Ok(n as usize)
                        }
                    })
                };
                match result {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let error = match e.kind() {
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                                TinyGpuError::Timeout {
                                    command,
                                    part: "room in the socket to send the request",
                                    waited: self.options.send_timeout,
                                }
                            }
                            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                                TinyGpuError::Closed {
                                    command,
                                    part: "request (while sending)",
                                    received: sent,
                                    expected: part.len(),
                                }
                            }
                            _ => TinyGpuError::Io { command, source: e },
                        };
                        self.broken = Some(error.to_string());
                        return Err(error);
                    }
                }
            }
        }
        self.stats.requests += 1;
        self.stats.bytes_sent += (REQUEST_LEN + data.len()) as u64;
        Ok(())
    }

    /// A request that expects a reply; `expected_data` is MMIO_READ's length.
    fn call_with_data(
        &mut self,
        request: Request,
        data: &[u8],
        expected_data: usize,
    ) -> Result<Reply, TinyGpuError> {
        self.send(request, data)?;
        self.stats.round_trips += 1;
        let waited = self.options.reply_timeout;
        let mut reader = DeadlineReader {
            stream: &self.stream,
            deadline: Instant::now() + waited,
            received: &mut self.stats.bytes_received,
        };
        let result = wire::read_reply(&mut reader, request.command, expected_data, waited);
        self.note(result)
    }

    fn call(&mut self, request: Request, data: &[u8]) -> Result<Reply, TinyGpuError> {
        self.call_with_data(request, data, 0)
    }

    /// Mark the stream out of step after any failure but a clean error reply.
    fn note<T>(&mut self, result: Result<T, TinyGpuError>) -> Result<T, TinyGpuError> {
        if let Err(error) = &result {
            if !matches!(error, TinyGpuError::Server { .. }) {
                self.broken = Some(error.to_string());
            }
        }
        result
    }

    fn cfg_read(&mut self, offset: u16, size: u8) -> Result<u32, TinyGpuError> {
        let mut request = self.request(Command::CfgRead);
        request.arg0 = offset.into();
        request.arg1 = size.into();
        let reply = self.call(request, &[])?;
        let limit = if size == 4 { u64::from(u32::MAX) } else { (1u64 << (8 * size)) - 1 };
        if reply.resp0 > limit {
            return self.garbled(
                Command::CfgRead,
                format!("value {:#x} for a {size}-byte read at {offset:#x}", reply.resp0),
            );
        }
        Ok(reply.resp0 as u32)
    }

    /// The BAR that decodes `address..address+len`, and the offset in it.
    fn locate(&self, op: &str, address: u64, len: usize) -> Result<(u32, u64), LinkError> {
        let end = address.checked_add(len as u64);
        self.bars
            .iter()
            .find(|bar| address >= bar.base && end.is_some_and(|end| end <= bar.base + bar.size))
            .map(|bar| (u32::from(bar.index), address - bar.base))
            .ok_or_else(|| LinkError::UnsupportedRequest {
                op: format!("{op} at {address:#x}: no BAR the TinyGPU server mapped decodes it"),
            })
    }

    fn check_config(&self, op: &str, bdf: Bdf, offset: u16, size: u8) -> Result<(), LinkError> {
        if bdf != BDF {
            return Err(LinkError::Config {
                op: op.into(),
                bdf,
                reason: format!("the TinyGPU link reaches only its one function at {BDF}"),
            });
        }
        let aligned = matches!(size, 1 | 2 | 4) && usize::from(offset % 4) + usize::from(size) <= 4;
        if !aligned || offset >= 0x1000 {
            return Err(LinkError::Unaligned {
                op: format!("{op} of {bdf}"),
                address: offset.into(),
                len: size.into(),
            });
        }
        Ok(())
    }

    fn mmio_read(&mut self, op: &str, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        let (bar, offset) = self.locate(op, address, len)?;
        let mut out = Vec::with_capacity(len);
        let chunk = self.options.max_transfer.max(4) & !3;
        while out.len() < len {
            let n = (len - out.len()).min(chunk);
            let mut request = self.request(Command::MmioRead);
            request.bar = bar;
            request.arg0 = offset + out.len() as u64;
            request.arg1 = n as u64;
            let reply = self
                .call_with_data(request, &[], n)
                .map_err(transport(format!("{op} at {address:#x}")))?;
            out.extend_from_slice(&reply.data);
        }
        Ok(out)
    }

    fn mmio_write(&mut self, op: &str, address: u64, data: &[u8]) -> Result<(), LinkError> {
        let (bar, offset) = self.locate(op, address, data.len())?;
        let chunk = self.options.max_transfer.max(4) & !3;
        for (i, part) in data.chunks(chunk).enumerate() {
            let mut request = self.request(Command::MmioWrite);
            request.bar = bar;
            request.arg0 = offset + (i * chunk) as u64;
            request.arg1 = part.len() as u64;
            self.send(request, part).map_err(transport(format!("{op} at {address:#x}")))?;
        }
        Ok(())
    }

    /// MAP_SYSMEM_FD: the reply header arrives with the descriptor (`sendmsg` with
    /// `SCM_RIGHTS`), so it is read with `recvmsg`.
    fn map_sysmem(&mut self, size: u64) -> Result<(u64, OwnedFd), TinyGpuError> {
        let command = Command::MapSysmemFd;
        let mut request = self.request(command);
        request.arg0 = size;
        request.arg1 = 1; // contiguous (ignored by the app)
        self.send(request, &[])?;
        self.stats.round_trips += 1;
        let waited = self.options.reply_timeout;
        let deadline = Instant::now() + waited;
        let mut header = [0u8; RESPONSE_LEN];
        let mut fds = Vec::new();
        let mut received = 0;
        while received < RESPONSE_LEN {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = if left.is_zero() {
                Err(io::ErrorKind::TimedOut.into())
            } else {
                self.stream.set_read_timeout(Some(left)).and_then(|()| {
                    recv_with_fds(self.stream.as_raw_fd(), &mut header[received..], &mut fds)
                })
            };
            let error = match result {
                Ok(0) => TinyGpuError::Closed {
                    command,
                    part: "reply header",
                    received,
                    expected: RESPONSE_LEN,
                },
                Ok(n) => {
                    received += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    TinyGpuError::Timeout { command, part: "reply header", waited }
                }
                Err(source) => TinyGpuError::Io { command, source },
            };
            return self.note(Err(error));
        }
        self.stats.bytes_received += RESPONSE_LEN as u64;
        let response = Response::decode(&header);
        if response.status != wire::STATUS_OK {
            let mut reader = DeadlineReader {
                stream: &self.stream,
                deadline,
                received: &mut self.stats.bytes_received,
            };
            let error = wire::read_error(&mut reader, command, response, waited);
            return self.note(Err(error));
        }
        let mapped = response.resp0;
        if mapped < size || mapped > MAX_SYSMEM {
            // The header was read whole: the stream is still in step.
            return Err(TinyGpuError::Garbled {
                command,
                reason: format!("{mapped:#x} bytes mapped for {size:#x} asked"),
            });
        }
        // One descriptor is expected; any extra ones are closed when `fds` drops.
        if fds.is_empty() {
            // The header was read whole: the stream is still in step.
            return Err(TinyGpuError::Garbled {
                command,
                reason: "the reply carried no file descriptor".into(),
            });
        }
        Ok((mapped, fds.swap_remove(0)))
    }
}

impl PcieLink for TinyGpuLink {
    fn kind(&self) -> &'static str {
        "tinygpu"
    }

    /// Socket requests and the replies awaited (posted MMIO_WRITEs have none).
    fn counters(&self) -> Option<egpu_hal::LinkCounters> {
        Some(egpu_hal::LinkCounters {
            requests: self.stats.requests,
            round_trips: self.stats.round_trips,
            bytes_out: self.stats.bytes_sent,
            bytes_in: self.stats.bytes_received,
        })
    }

    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        self.check_config("config read", bdf, offset, size)?;
        self.cfg_read(offset, size).map_err(transport(format!("config read at {offset:#x}")))
    }

    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        self.check_config("config write", bdf, offset, size)?;
        let mut request = self.request(Command::CfgWrite);
        request.arg0 = offset.into();
        request.arg1 = size.into();
        request.arg2 = value.into();
        self.call(request, &[]).map(drop).map_err(transport(format!("config write at {offset:#x}")))
    }

    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        if !address.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: "memory read".into(), address, len: 4 });
        }
        let data = self.mmio_read("memory read", address, 4)?;
        Ok(u32::from_le_bytes([data[0], data[1], data[2], data[3]]))
    }

    /// A 1–4 byte write, sent as an MMIO_WRITE of that many bytes (how the server performs
    /// sub-dword writes is its own affair).
    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        if !matches!(size, 1 | 2 | 4) || !address.is_multiple_of(u64::from(size)) {
            return Err(LinkError::Unaligned {
                op: "memory write".into(),
                address,
                len: size.into(),
            });
        }
        self.mmio_write("memory write", address, &value.to_le_bytes()[..usize::from(size)])
    }

    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        if !address.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(LinkError::Unaligned { op: "memory read".into(), address, len });
        }
        self.mmio_read("memory read", address, len)
    }

    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        if !address.is_multiple_of(4) || !data.len().is_multiple_of(4) {
            return Err(LinkError::Unaligned {
                op: "memory write".into(),
                address,
                len: data.len(),
            });
        }
        self.mmio_write("memory write", address, &data)
    }

    /// A CFG_READ of the vendor ID: answered only after every earlier MMIO_WRITE was taken.
    /// (TinyGPU.app drops a write that fails its checks without a word; nothing reports it.)
    fn flush(&mut self) -> Result<(), LinkError> {
        let op = "flushing posted writes (CFG_READ)";
        let ids = self.cfg_read(0, 4).map_err(transport(op))?;
        if ids == 0xFFFF_FFFF {
            return Err(transport(op)(TinyGpuError::DeadDevice {
                what: "the vendor ID",
                value: ids,
            }));
        }
        Ok(())
    }

    /// Nothing is queued on this side (writes leave at once); a stream out of step cannot be
    /// resynchronised without closing it, which would free every GPU-visible region, so that
    /// case is an error asking to open the device again. The card is never reset here
    /// ([`TinyGpuLink::reset_function`] does that).
    fn reset(&mut self) -> Result<(), LinkError> {
        self.check_step().map_err(transport("resetting the TinyGPU link"))
    }

    fn dma_info(&self) -> DmaInfo {
        DmaInfo {
            total_bytes: DART_BYTES,
            granule: SYSMEM_PAGE,
            write_alignment: 1,
            host_reads_directly: true,
        }
    }

    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        let op = format!("allocating {size:#x} bytes of GPU-visible memory (MAP_SYSMEM_FD)");
        if size == 0 || size > DART_BYTES {
            return Err(LinkError::OutOfRange {
                op,
                offset: 0,
                len: size as usize,
                size: DART_BYTES,
            });
        }
        let (mapped, fd) = self.map_sysmem(size).map_err(transport(op.clone()))?;
        let file = File::from(fd);
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        if length < mapped {
            return Err(transport(op)(TinyGpuError::Garbled {
                command: Command::MapSysmemFd,
                reason: format!(
                    "the descriptor holds {length:#x} bytes, the reply says {mapped:#x}"
                ),
            }));
        }
        // SAFETY: a shared mapping of the server's buffer; the server writes it only before
        // replying (the address list), afterwards only the device and this process touch it.
        let mut memory = unsafe { MmapOptions::new().len(mapped as usize).map_mut(&file) }
            .map_err(|source| TinyGpuError::Io { command: Command::MapSysmemFd, source })
            .map_err(transport(op.clone()))?;
        let segments = wire::parse_address_list(&memory).map_err(transport(op.clone()))?;
        let bus_address = wire::contiguous_base(&segments, mapped).map_err(transport(op))?;
        // The list is ordinary buffer memory; the region starts zeroed like other links'.
        let list_bytes = ((segments.len() + 1) * 16).min(memory.len());
        memory[..list_bytes].fill(0);
        Ok(self.host.insert(bus_address, memory))
    }

    /// Unmaps our view; the server keeps the buffer (and its DMA mapping) until the link
    /// closes, as TinyGPU has no per-buffer free (at most 128 per connection).
    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        self.host.remove(&region)
    }

    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        self.host.write(region, offset, &data)
    }

    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        self.host.read_begin(region, offset, len)
    }

    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        self.host.read_finish(&pending)
    }
}

#[cfg(test)]
mod tests;
