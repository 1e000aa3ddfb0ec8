//! The client against a small scripted server of our own (a thread on a Unix socket that
//! answers from a fake card, passing shared memory as a descriptor), with faults injected:
//! error replies, short and garbled replies, a server that vanishes or falls silent, a second
//! client. The real protocol peer (the emulated TinyGPU server, written separately from
//! §A.4) is exercised by the shared link tests.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::*;

const BAR0: u64 = 0x1_0A00_0000;
const BAR2: u64 = 0x1_2000_0000;
const BAR5: u64 = 0x1_3000_0000;
const SYSMEM_BUS: u64 = 0x8_0000_0000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answer `command` with status 1 and this message.
    Error(Command, &'static str),
    /// Send this many bytes of the reply to `command`, then close.
    Truncate(Command, usize),
    /// Never answer `command` (the connection stays open).
    Silent(Command),
    /// Announce the wrong data length for an MMIO_READ.
    WrongLength,
    /// Close the connection at once (what TinyGPU does to a second client).
    CloseAtOnce,
    /// MAP_SYSMEM_FD without the descriptor.
    NoFd,
    /// MAP_SYSMEM_FD whose address list has a gap.
    Scattered,
    /// The vendor ID reads all ones.
    Dead,
}

struct Card {
    config: [u8; 256],
    bars: Vec<(u32, u64, Vec<u8>)>,
    mapped: Vec<u32>,
    sysmem: Vec<File>,
    resets: u32,
}

impl Card {
    fn new() -> Card {
        let mut config = [0u8; 256];
        config[0..4].copy_from_slice(&0x744C_1002u32.to_le_bytes());
        config[8..12].copy_from_slice(&0x0300_00C8u32.to_le_bytes()); // class 030000, rev c8
        config[0x10..0x14].copy_from_slice(&0x0000_000Cu32.to_le_bytes()); // BAR0 64-bit pref
        config[0x18..0x1C].copy_from_slice(&0x0000_000Cu32.to_le_bytes()); // BAR2 64-bit pref
        config[0x20..0x24].copy_from_slice(&0x0000_E001u32.to_le_bytes()); // BAR4 I/O
        config[0x24..0x28].copy_from_slice(&0xFCC0_0000u32.to_le_bytes()); // BAR5 32-bit
        Card {
            config,
            bars: vec![
                (0, BAR0, vec![0; 0x10000]),
                (2, BAR2, vec![0; 0x2000]),
                (5, BAR5, vec![0; 0x1000]),
            ],
            mapped: Vec::new(),
            sysmem: Vec::new(),
            resets: 0,
        }
    }

    fn bar(&mut self, index: u32) -> Option<&mut Vec<u8>> {
        self.bars.iter_mut().find(|(i, ..)| *i == index).map(|(.., memory)| memory)
    }
}

struct Peer {
    socket: PathBuf,
    log: Arc<Mutex<Vec<Request>>>,
    card: Arc<Mutex<Card>>,
    _dir: tempfile::TempDir,
    _thread: JoinHandle<()>,
}

fn reply(stream: &mut UnixStream, resp0: u64, resp1: u64) -> io::Result<()> {
    stream.write_all(&Response { status: 0, resp0, resp1 }.encode())
}

fn error_reply(stream: &mut UnixStream, message: &str) -> io::Result<()> {
    stream.write_all(&Response { status: 1, resp0: message.len() as u64, resp1: 0 }.encode())?;
    stream.write_all(message.as_bytes())
}

/// Shared memory for MAP_SYSMEM_FD: a memfd on Linux (what TinyGPU's shm is to the client),
/// an unlinked temporary file elsewhere.
fn shared_memory(size: u64) -> File {
    #[cfg(target_os = "linux")]
    // SAFETY: memfd_create with a NUL-terminated name; the returned descriptor is ours.
    let file = unsafe {
        let fd = libc::memfd_create(c"egpu-tinygpu-test".as_ptr(), libc::MFD_CLOEXEC);
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        File::from_raw_fd(fd)
    };
    #[cfg(not(target_os = "linux"))]
    let file = tempfile::tempfile().unwrap();
    file.set_len(size).unwrap();
    file
}

/// Send `bytes` with `fd` attached (`SCM_RIGHTS`), as the server's `sendmsg` does.
fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() };
    let mut control = [0u64; 8];
    // SAFETY: msghdr and its control buffer are locals alive for the call; the CMSG macros stay
    // inside `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        libc::CMSG_DATA(cmsg).cast::<libc::c_int>().write_unaligned(fd);
        if libc::sendmsg(stream.as_raw_fd(), &raw const msg, 0) != bytes.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn serve(
    mut stream: UnixStream,
    card: &Mutex<Card>,
    log: &Mutex<Vec<Request>>,
    fault: Option<Fault>,
) -> io::Result<()> {
    if fault == Some(Fault::CloseAtOnce) {
        return Ok(());
    }
    loop {
        let mut header = [0u8; REQUEST_LEN];
        if stream.read_exact(&mut header).is_err() {
            return Ok(()); // the client left
        }
        let request = Request::decode(&header).expect("the client sends known commands");
        log.lock().unwrap().push(request);
        let command = request.command;
        let mut card = card.lock().unwrap();
        if command == Command::MmioWrite {
            let mut data = vec![0u8; request.arg1 as usize];
            stream.read_exact(&mut data)?;
            let mapped = card.mapped.contains(&request.bar);
            // Like server.c: a write that fails validation is dropped without a word.
            if let (true, Some(memory)) = (mapped, card.bar(request.bar)) {
                let start = request.arg0 as usize;
                memory[start..start + data.len()].copy_from_slice(&data);
            }
            continue;
        }
        match fault {
            Some(Fault::Error(on, message)) if on == command => {
                error_reply(&mut stream, message)?;
                continue;
            }
            Some(Fault::Silent(on)) if on == command => {
                // Hold the connection open without answering until the client gives up.
                let _ = stream.read(&mut [0u8; 1]);
                return Ok(());
            }
            Some(Fault::Truncate(on, len)) if on == command => {
                let mut full = Response { status: 0, resp0: 4, resp1: 0 }.encode().to_vec();
                full.extend_from_slice(&[0xAB; 4]);
                stream.write_all(&full[..len])?;
                return Ok(());
            }
            _ => {}
        }
        match command {
            Command::CfgRead => {
                let (offset, size) = (request.arg0 as usize, request.arg1 as usize);
                let mut value = [0u8; 8];
                value[..size].copy_from_slice(&card.config[offset..offset + size]);
                let mut value = u64::from_le_bytes(value);
                if fault == Some(Fault::Dead) {
                    value = (1u64 << (8 * size)) - 1;
                }
                reply(&mut stream, value, 0)?;
            }
            Command::CfgWrite => {
                let (offset, size) = (request.arg0 as usize, request.arg1 as usize);
                let bytes = request.arg2.to_le_bytes();
                card.config[offset..offset + size].copy_from_slice(&bytes[..size]);
                reply(&mut stream, 0, 0)?;
            }
            Command::MapBar => match card.bars.iter().find(|(i, ..)| *i == request.bar) {
                Some(&(index, base, ref memory)) => {
                    let size = memory.len() as u64;
                    card.mapped.push(index);
                    reply(&mut stream, base, size)?;
                }
                None => error_reply(&mut stream, &format!("BAR{} is not present", request.bar))?,
            },
            Command::MmioRead => {
                let (offset, len) = (request.arg0 as usize, request.arg1 as usize);
                if !card.mapped.contains(&request.bar) {
                    error_reply(&mut stream, "MMIO on a BAR that was not mapped")?;
                    continue;
                }
                let memory = card.bar(request.bar).unwrap();
                let data = memory[offset..offset + len].to_vec();
                let announced = if fault == Some(Fault::WrongLength) { len + 4 } else { len };
                reply(&mut stream, announced as u64, 0)?;
                stream.write_all(&data)?;
            }
            Command::MapSysmemFd => {
                let size = request.arg0.div_ceil(4096).max(4) * 4096;
                let file = shared_memory(size);
                let words: &[u64] = match fault {
                    Some(Fault::Scattered) => {
                        &[SYSMEM_BUS, 0x1000, SYSMEM_BUS + 0x10000, size - 0x1000, 0, 0]
                    }
                    _ => &[SYSMEM_BUS + card.sysmem.len() as u64 * 0x10_0000, size, 0, 0],
                };
                let list: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                file.write_all_at(&list, 0)?;
                let header =
                    Response { status: 0, resp0: size, resp1: card.sysmem.len() as u64 }.encode();
                if fault == Some(Fault::NoFd) {
                    stream.write_all(&header)?;
                } else {
                    send_with_fd(&stream, &header, file.as_fd().as_raw_fd())?;
                }
                card.sysmem.push(file);
            }
            Command::Reset => {
                card.resets += 1;
                reply(&mut stream, 0, 0)?;
            }
            other => error_reply(&mut stream, &format!("{other} is not implemented"))?,
        }
    }
}

impl Peer {
    fn start(fault: Option<Fault>) -> Peer {
        Self::start_with(fault, Card::new())
    }

    fn start_with(fault: Option<Fault>, card: Card) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tinygpu.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let card = Arc::new(Mutex::new(card));
        let (thread_log, thread_card) = (log.clone(), card.clone());
        let thread = std::thread::spawn(move || {
            // One connection is served; later ones are accepted and closed at once.
            let Ok((stream, _)) = listener.accept() else { return };
            let _ = serve(stream, &thread_card, &thread_log, fault);
        });
        Peer { socket, log, card, _dir: dir, _thread: thread }
    }

    fn connect(&self) -> Result<TinyGpuLink, LinkError> {
        TinyGpuLink::connect(&self.socket, 0, fast())
    }

    fn commands(&self) -> Vec<Command> {
        self.log.lock().unwrap().iter().map(|r| r.command).collect()
    }
}

fn fast() -> TinyGpuOptions {
    TinyGpuOptions { reply_timeout: Duration::from_millis(300), ..Default::default() }
}

fn tinygpu_error(error: &LinkError) -> &TinyGpuError {
    error
        .transport_source::<TinyGpuError>()
        .unwrap_or_else(|| panic!("not a TinyGPU error: {error}"))
}

#[test]
fn opening_maps_every_memory_bar_and_presents_the_function_at_the_servers_bases() {
    let peer = Peer::start(None);
    let link = TinyGpuLink::connect(&peer.socket, 3, fast()).unwrap();
    let topology = link.topology();
    let gpu = topology.gpu().expect("a display function");
    assert_eq!((gpu.bdf, gpu.vendor_id, gpu.device_id), (BDF, 0x1002, 0x744C));
    assert_eq!((gpu.class, gpu.revision), (0x03_0000, 0xC8));
    let bars: Vec<_> =
        gpu.bars.iter().map(|b| (b.index, b.kind, b.prefetchable, b.address, b.size)).collect();
    assert_eq!(
        bars,
        [
            (0, BarKind::Mem64, true, BAR0, 0x10000),
            (2, BarKind::Mem64, true, BAR2, 0x2000),
            (5, BarKind::Mem32, false, BAR5, 0x1000),
        ]
    );
    let log = peer.log.lock().unwrap();
    // MAP_BAR for BAR0, BAR2 and BAR5 only: BAR1/BAR3 are upper halves, BAR4 is I/O.
    let mapped: Vec<u32> =
        log.iter().filter(|r| r.command == Command::MapBar).map(|r| r.bar).collect();
    assert_eq!(mapped, [0, 2, 5]);
    assert!(log.iter().all(|r| r.dev_id == 3), "the device index travels as dev_id");
    assert!(log.iter().all(|r| r.command != Command::MmioRead), "no MMIO before MAP_BAR");
}

#[test]
fn bar_accesses_go_by_bar_and_offset_and_writes_are_posted_until_a_flush() {
    let peer = Peer::start(None);
    let options = TinyGpuOptions { max_transfer: 64, ..fast() };
    let mut link = TinyGpuLink::connect(&peer.socket, 0, options).unwrap();
    let before = peer.log.lock().unwrap().len();
    let trips = link.stats().round_trips;

    link.mem_write(BAR5 + 0x10, 4, 0xDEAD_BEEF).unwrap();
    link.mem_write(BAR5 + 0x16, 2, 0x1234).unwrap();
    let data: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    link.mem_write_bytes(BAR0 + 0x1000, Bytes::from(data.clone())).unwrap();
    assert_eq!(link.stats().round_trips, trips, "posted writes wait for no reply");
    link.flush().unwrap();
    {
        let log = peer.log.lock().unwrap();
        let sent: Vec<_> =
            log[before..].iter().map(|r| (r.command, r.bar, r.arg0, r.arg1)).collect();
        assert_eq!(
            sent,
            [
                (Command::MmioWrite, 5, 0x10, 4),
                (Command::MmioWrite, 5, 0x16, 2),
                (Command::MmioWrite, 0, 0x1000, 64),
                (Command::MmioWrite, 0, 0x1040, 64),
                (Command::MmioWrite, 0, 0x1080, 64),
                (Command::MmioWrite, 0, 0x10C0, 8),
                (Command::CfgRead, 0, 0, 4),
            ]
        );
    }
    {
        let mut card = peer.card.lock().unwrap();
        assert_eq!(&card.bar(5).unwrap()[0x10..0x18], &[0xEF, 0xBE, 0xAD, 0xDE, 0, 0, 0x34, 0x12]);
        assert_eq!(&card.bar(0).unwrap()[0x1000..0x10C8], &data[..]);
    }
    assert_eq!(link.mem_read32(BAR5 + 0x10).unwrap(), 0xDEAD_BEEF);
    assert_eq!(link.mem_read(BAR0 + 0x1000, 200).unwrap(), data);
    let reads = peer.commands().iter().filter(|c| **c == Command::MmioRead).count();
    assert_eq!(reads, 1 + 4, "one read, and 200 bytes in 64-byte requests");

    // Nothing decodes, straddles a BAR's end, or misaligned: refused before anything is sent.
    let sent = peer.log.lock().unwrap().len();
    assert!(matches!(link.mem_read32(0x1000), Err(LinkError::UnsupportedRequest { .. })));
    assert!(link.mem_read(BAR5 + 0xFFC, 8).is_err());
    assert!(matches!(link.mem_write(BAR5 + 1, 2, 0), Err(LinkError::Unaligned { .. })));
    assert!(matches!(link.mem_read(BAR5 + 2, 4), Err(LinkError::Unaligned { .. })));
    assert_eq!(peer.log.lock().unwrap().len(), sent);
    assert_eq!(
        link.map_range(BAR0, 0x1000).unwrap().map(|r| r.len()),
        None,
        "server addresses are not ours"
    );
}

#[test]
fn config_space_of_the_one_function_goes_through_cfg_commands() {
    let peer = Peer::start(None);
    let mut link = peer.connect().unwrap();
    assert_eq!(link.config_read32(BDF, 0).unwrap(), 0x744C_1002);
    assert_eq!(link.config_read16(BDF, 2).unwrap(), 0x744C);
    link.config_write(BDF, 0x04, 2, 0x0006).unwrap();
    assert_eq!(&peer.card.lock().unwrap().config[4..6], &[0x06, 0x00]);
    assert!(matches!(link.config_read(Bdf::new(1, 0, 0), 0, 4), Err(LinkError::Config { .. })));
    assert!(matches!(link.config_read(BDF, 3, 2), Err(LinkError::Unaligned { .. })));
    assert!(matches!(link.config_write(BDF, 0x1000, 4, 0), Err(LinkError::Unaligned { .. })));
    link.reset_function().unwrap();
    assert_eq!(peer.card.lock().unwrap().resets, 1);
    link.reset().unwrap();
    assert_eq!(peer.card.lock().unwrap().resets, 1, "resetting the link leaves the card alone");
}

#[test]
fn gpu_visible_memory_is_the_servers_buffer_received_as_a_descriptor() {
    let peer = Peer::start(None);
    let mut link = peer.connect().unwrap();
    let region = link.dma_alloc(5000).unwrap();
    assert_eq!(region.size, 16 << 10, "rounded up by the server, at least 16 KiB");
    assert_eq!(region.bus_address, SYSMEM_BUS, "the first entry of the address list");
    assert_eq!(region.size % link.dma_info().granule, 0);
    // The address list at the head of the buffer is cleared for the caller.
    let pending = link.dma_read_begin(&region, 0, 64).unwrap();
    assert_eq!(pending.release, None);
    assert_eq!(link.dma_read_finish(pending).unwrap(), vec![0u8; 64]);

    // Host writes land in the server's memory; the server's (device's) writes are seen here.
    link.dma_write(&region, 100, Bytes::from_static(b"egpu")).unwrap();
    let shared = peer.card.lock().unwrap().sysmem[0].try_clone().unwrap();
    let mut seen = [0u8; 4];
    shared.read_exact_at(&mut seen, 100).unwrap();
    assert_eq!(&seen, b"egpu");
    shared.write_all_at(b"from the device", 0x3000).unwrap();
    let pending = link.dma_read_begin(&region, 0x3000, 15).unwrap();
    assert_eq!(link.dma_read_finish(pending).unwrap(), b"from the device");

    let second = link.dma_alloc(4096).unwrap();
    assert_ne!((second.id, second.bus_address), (region.id, region.bus_address));
    assert!(link.dma_write(&region, region.size - 2, Bytes::from_static(b"abcd")).is_err());
    link.dma_free(region).unwrap();
    assert!(link.dma_free(region).is_err());
    assert!(link.dma_write(&region, 0, Bytes::from_static(b"x")).is_err(), "freed");
    assert!(link.dma_alloc(0).is_err());
}

#[test]
fn a_scattered_address_list_or_a_missing_descriptor_is_refused_and_the_link_goes_on() {
    for (fault, expect) in [(Fault::Scattered, "scattered"), (Fault::NoFd, "no file descriptor")] {
        let peer = Peer::start(Some(fault));
        let mut link = peer.connect().unwrap();
        let error = link.dma_alloc(0x8000).unwrap_err();
        assert!(error.to_string().contains(expect), "{error}");
        assert!(error.to_string().contains("MAP_SYSMEM_FD"), "{error}");
        link.flush().expect("the reply was read whole: the stream is in step");
    }
}

#[test]
fn an_error_reply_carries_the_servers_message_and_the_link_goes_on() {
    let peer = Peer::start(Some(Fault::Error(Command::CfgWrite, "ConfigurationWrite16 failed")));
    let mut link = peer.connect().unwrap();
    let error = link.config_write(BDF, 4, 2, 6).unwrap_err();
    match tinygpu_error(&error) {
        TinyGpuError::Server { command, status, message } => {
            assert_eq!(
                (*command, *status, message.as_str()),
                (Command::CfgWrite, 1, "ConfigurationWrite16 failed")
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    assert_eq!(link.config_read32(BDF, 0).unwrap(), 0x744C_1002);
}

#[test]
fn a_server_that_vanishes_mid_reply_is_a_typed_error_naming_the_command() {
    let peer = Peer::start(Some(Fault::Truncate(Command::MmioRead, 10)));
    let mut link = peer.connect().unwrap();
    let error = link.mem_read32(BAR0).unwrap_err();
    match tinygpu_error(&error) {
        TinyGpuError::Closed { command, part, received, expected } => {
            assert_eq!(
                (*command, *part, *received, *expected),
                (Command::MmioRead, "reply header", 10, 17)
            );
        }
        other => panic!("expected a closed stream, got {other:?}"),
    }
    assert!(error.to_string().contains("MMIO_READ"), "{error}");
    // Cut after the header: the data is what is missing.
    let peer = Peer::start(Some(Fault::Truncate(Command::MmioRead, 19)));
    let error = peer.connect().unwrap().mem_read32(BAR0).unwrap_err();
    assert!(matches!(
        tinygpu_error(&error),
        TinyGpuError::Closed { part: "read data", received: 2, .. }
    ));

    // Everything after is refused as out of step, the link reset included.
    let error = link.flush().unwrap_err();
    assert!(matches!(tinygpu_error(&error), TinyGpuError::OutOfStep { .. }), "{error}");
    assert!(link.reset().is_err());
    // Posted writes after the server is gone fail too (no SIGPIPE, no silent success).
    assert!(link.mem_write(BAR0, 4, 1).is_err());
}

#[test]
fn a_silent_server_times_out_naming_what_was_awaited() {
    let peer = Peer::start(Some(Fault::Silent(Command::MapSysmemFd)));
    let mut link = peer.connect().unwrap();
    let error = link.dma_alloc(4096).unwrap_err();
    match tinygpu_error(&error) {
        TinyGpuError::Timeout { command, part, waited } => {
            assert_eq!(
                (*command, *part, *waited),
                (Command::MapSysmemFd, "reply header", Duration::from_millis(300))
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let peer = Peer::start(Some(Fault::Silent(Command::CfgRead)));
    let error = peer.connect().err().expect("no answer to the first config read");
    assert!(matches!(
        tinygpu_error(&error),
        TinyGpuError::Timeout { command: Command::CfgRead, .. }
    ));
}

#[test]
fn a_reply_announcing_the_wrong_length_is_garbled() {
    let peer = Peer::start(Some(Fault::WrongLength));
    let mut link = peer.connect().unwrap();
    let error = link.mem_read(BAR0, 8).unwrap_err();
    assert!(
        matches!(tinygpu_error(&error), TinyGpuError::Garbled { command: Command::MmioRead, .. }),
        "{error}"
    );
    assert!(link.mem_read32(BAR0).is_err(), "out of step afterwards");
}

#[test]
fn a_second_client_is_told_who_holds_the_server() {
    let peer = Peer::start(None);
    let _first = peer.connect().unwrap();
    let error = peer.connect().err().expect("the egpu lock is held");
    let text = error.to_string();
    assert!(text.contains("in use by egpu process"), "{text}");
    assert!(text.contains(&std::process::id().to_string()), "{text}");

    // Another program (tinygrad) holds the server: it closes our connection at once.
    let peer = Peer::start(Some(Fault::CloseAtOnce));
    let error = peer.connect().err().expect("closed at once");
    assert!(matches!(tinygpu_error(&error), TinyGpuError::InUse { .. }), "{error}");
}

#[test]
fn a_gpu_reading_all_ones_is_reported_as_a_dead_tunnel() {
    let peer = Peer::start(Some(Fault::Dead));
    let error = peer.connect().err().expect("all ones");
    assert!(matches!(tinygpu_error(&error), TinyGpuError::DeadDevice { .. }), "{error}");
    assert!(error.to_string().contains("Driver Extensions"), "{error}");
}

#[test]
fn nothing_listening_is_a_clear_error_and_nothing_is_started_by_connect() {
    let dir = tempfile::tempdir().unwrap();
    let error = TinyGpuLink::connect(&dir.path().join("absent.sock"), 0, fast()).err().unwrap();
    assert!(matches!(tinygpu_error(&error), TinyGpuError::Connect { .. }), "{error}");
    assert!(error.to_string().contains("absent.sock"), "{error}");
}

/// The only test that touches `APL_REMOTE_SOCK` (tests run in parallel threads).
#[test]
fn open_uses_the_documented_socket_path_and_serves_only_the_first_gpu() {
    let error = TinyGpuLink::open(1, fast()).err().unwrap();
    assert!(matches!(tinygpu_error(&error), TinyGpuError::OnlyFirstGpu { index: 1 }), "{error}");

    let peer = Peer::start(None);
    // SAFETY (edition 2021: safe fn): no other test reads or writes this variable.
    std::env::set_var(crate::tinygpu::SOCKET_ENV, &peer.socket);
    let link = TinyGpuLink::open(0, fast());
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.sock");
    std::env::set_var(crate::tinygpu::SOCKET_ENV, &absent);
    let missing =
        TinyGpuLink::open(0, TinyGpuOptions { app: dir.path().join("TinyGPU"), ..fast() });
    std::env::remove_var(crate::tinygpu::SOCKET_ENV);

    assert_eq!(link.unwrap().socket_path(), peer.socket);
    let error = missing.err().unwrap();
    if cfg!(target_os = "macos") {
        assert!(matches!(tinygpu_error(&error), TinyGpuError::AppMissing { .. }), "{error}");
    } else {
        assert!(matches!(tinygpu_error(&error), TinyGpuError::NotMacOs { .. }), "{error}");
        assert!(error.to_string().contains("APL_REMOTE_SOCK"), "{error}");
    }
}

/// The documented bootstrap with stand-in apps: one that fails at once is reported with its
/// exit status, one that runs without ever listening is given up on (and stopped) after the
/// attempts, a missing one is named.
#[test]
fn starting_the_server_reports_an_app_that_fails_or_never_listens() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tinygpu.sock");
    let options = |app: &str| TinyGpuOptions {
        app: PathBuf::from(app),
        start_server: true,
        connect_attempts: 5,
        connect_interval: Duration::from_millis(20),
        ..fast()
    };
    if Path::new("/bin/false").is_file() {
        let error = TinyGpuLink::reach_server(&socket, &options("/bin/false")).err().unwrap();
        assert!(matches!(error, TinyGpuError::NoServer { .. }), "{error}");
        assert!(error.to_string().contains("exited with"), "{error}");
    }
    if Path::new("/usr/bin/yes").is_file() {
        // `yes server <path>` runs until stopped and never listens.
        let error = TinyGpuLink::reach_server(&socket, &options("/usr/bin/yes")).err().unwrap();
        match &error {
            TinyGpuError::NoServer { detail, .. } => {
                assert!(detail.contains("last attempt"), "{error}");
            }
            other => panic!("expected NoServer, got {other:?}"),
        }
    }
    let missing = dir.path().join("TinyGPU.app/Contents/MacOS/TinyGPU");
    let error =
        TinyGpuLink::reach_server(&socket, &options(missing.to_str().unwrap())).err().unwrap();
    assert!(matches!(error, TinyGpuError::AppMissing { .. }), "{error}");
    assert!(error.to_string().contains("setup_tinygpu_osx.sh"), "{error}");
}
