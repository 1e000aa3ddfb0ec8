//! The emulated TinyGPU server driven over its Unix socket with requests built by hand from
//! macos-ecosystem.md §A.4 (33-byte `<BIIQQQ` requests, 17-byte `<BQQ` responses, an error
//! message of `resp0` bytes after status 1, the descriptor of MAP_SYSMEM_FD in SCM_RIGHTS).
//! No client library: every helper below names the table row it encodes.
#![cfg(target_os = "linux")]

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::time::Duration;

use egpu_emu::copy_engine as ce;
use egpu_emu::tinygpu::{BAR_VIRTUAL_BASE, BAR_VIRTUAL_STRIDE};
use egpu_emu::{DmaError, EmulatedTinyGpuServer, GpuKind, ServerFault, TinyGpuServerConfig};

// §A.4 command numbers.
const PROBE: u8 = 0;
const MAP_BAR: u8 = 1;
const MAP_SYSMEM_FD: u8 = 2;
const CFG_READ: u8 = 3;
const CFG_WRITE: u8 = 4;
const RESET: u8 = 5;
const MMIO_READ: u8 = 6;
const MMIO_WRITE: u8 = 7;
const MAP_SYSMEM: u8 = 8;
const SYSMEM_READ: u8 = 9;
const SYSMEM_WRITE: u8 = 10;
const RESIZE_BAR: u8 = 11;
const PING: u8 = 12;

/// A test never waits on the server longer than this.
const DEADLINE: Duration = Duration::from_secs(10);

/// The BARs of each card (emulator card models: Navi 31 VRAM BAR0, MMIO BAR5; GA102 MMIO
/// BAR0, VRAM BAR1).
#[derive(Clone, Copy)]
struct Card {
    kind: GpuKind,
    id: u32,
    vram_bar: u32,
    mmio_bar: u32,
}

const NAVI31: Card = Card { kind: GpuKind::Navi31, id: 0x744C_1002, vram_bar: 0, mmio_bar: 5 };
const GA102: Card = Card { kind: GpuKind::Ga102, id: 0x2204_10DE, vram_bar: 1, mmio_bar: 0 };

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("egpu-tgemu-{}-{name}.sock", std::process::id()))
}

/// Request: u8 cmd | u32 dev_id | u32 bar | u64 arg0 | u64 arg1 | u64 arg2, little-endian.
fn request(cmd: u8, dev_id: u32, bar: u32, args: [u64; 3]) -> Vec<u8> {
    let mut b = vec![cmd];
    b.extend_from_slice(&dev_id.to_le_bytes());
    b.extend_from_slice(&bar.to_le_bytes());
    for a in args {
        b.extend_from_slice(&a.to_le_bytes());
    }
    assert_eq!(b.len(), 33);
    b
}

/// Response: u8 status | u64 resp0 | u64 resp1.
#[derive(Debug, PartialEq, Eq)]
struct Resp {
    status: u8,
    resp0: u64,
    resp1: u64,
}

fn parse_resp(b: &[u8]) -> Resp {
    Resp {
        status: b[0],
        resp0: u64::from_le_bytes(b[1..9].try_into().unwrap()),
        resp1: u64::from_le_bytes(b[9..17].try_into().unwrap()),
    }
}

struct Client {
    s: UnixStream,
}

impl Client {
    fn connect(server: &EmulatedTinyGpuServer) -> Self {
        let s = UnixStream::connect(server.path()).expect("connect to the emulated server");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        Self { s }
    }

    fn send(&mut self, cmd: u8, bar: u32, args: [u64; 3]) {
        self.s.write_all(&request(cmd, 0, bar, args)).unwrap();
    }

    fn resp(&mut self) -> Resp {
        let mut b = [0u8; 17];
        self.s.read_exact(&mut b).expect("a 17-byte response");
        parse_resp(&b)
    }

    fn call(&mut self, cmd: u8, bar: u32, args: [u64; 3]) -> Resp {
        self.send(cmd, bar, args);
        self.resp()
    }

    /// A call expected to fail: status 1 and its message.
    fn call_err(&mut self, cmd: u8, bar: u32, args: [u64; 3]) -> String {
        let r = self.call(cmd, bar, args);
        assert_eq!(r.status, 1, "cmd {cmd} should fail: {r:?}");
        assert!(r.resp0 > 0 && r.resp0 < 4096, "message length {}", r.resp0);
        let mut msg = vec![0u8; r.resp0 as usize];
        self.s.read_exact(&mut msg).unwrap();
        String::from_utf8(msg).expect("UTF-8 message")
    }

    fn cfg_read(&mut self, offset: u64, size: u64) -> u64 {
        let r = self.call(CFG_READ, 0, [offset, size, 0]);
        assert_eq!(r.status, 0);
        r.resp0
    }

    fn cfg_write(&mut self, offset: u64, size: u64, value: u64) {
        assert_eq!(self.call(CFG_WRITE, 0, [offset, size, value]).status, 0);
    }

    fn map_bar(&mut self, bar: u32) -> (u64, u64) {
        let r = self.call(MAP_BAR, bar, [0; 3]);
        assert_eq!(r.status, 0, "MAP_BAR {bar}");
        (r.resp0, r.resp1)
    }

    fn mmio_read(&mut self, bar: u32, offset: u64, size: u64) -> Vec<u8> {
        let r = self.call(MMIO_READ, bar, [offset, size, 0]);
        assert_eq!((r.status, r.resp0), (0, size), "MMIO_READ BAR{bar} 0x{offset:X}+{size}");
        let mut data = vec![0u8; size as usize];
        self.s.read_exact(&mut data).unwrap();
        data
    }

    fn mmio_read32(&mut self, bar: u32, offset: u64) -> u32 {
        u32::from_le_bytes(self.mmio_read(bar, offset, 4).try_into().unwrap())
    }

    /// Posted: request then data, nothing comes back.
    fn mmio_write(&mut self, bar: u32, offset: u64, data: &[u8]) {
        let mut b = request(MMIO_WRITE, 0, bar, [offset, data.len() as u64, 0]);
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    /// MAP_SYSMEM_FD: the response arrives with the descriptor in SCM_RIGHTS.
    fn map_sysmem_fd(&mut self, size: u64) -> (Resp, Option<OwnedFd>) {
        self.send(MAP_SYSMEM_FD, 0, [size, 0, 0]);
        let mut b = [0u8; 17];
        let (n, fd) = recv_with_fd(&self.s, &mut b);
        assert!(n > 0, "EOF instead of the MAP_SYSMEM_FD response");
        self.s.read_exact(&mut b[n..]).unwrap();
        (parse_resp(&b), fd)
    }

    /// Program the copy engine (emulator-only block in the MMIO BAR) and run it.
    fn copy(&mut self, mmio_bar: u32, src: u64, dst: u64, len: u32, flags: u32) -> u32 {
        let mut regs = Vec::new();
        regs.extend_from_slice(&src.to_le_bytes());
        regs.extend_from_slice(&dst.to_le_bytes());
        regs.extend_from_slice(&len.to_le_bytes());
        regs.extend_from_slice(&flags.to_le_bytes());
        regs.extend_from_slice(&1u32.to_le_bytes());
        self.mmio_write(mmio_bar, ce::BASE + ce::SRC, &regs);
        self.mmio_read32(mmio_bar, ce::BASE + ce::STATUS)
    }

    fn read_to_eof(&mut self) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        self.s.read_to_end(&mut all).map(|_| all)
    }
}

/// recvmsg with room for one SCM_RIGHTS descriptor.
fn recv_with_fd(s: &UnixStream, buf: &mut [u8]) -> (usize, Option<OwnedFd>) {
    let fd_len = std::mem::size_of::<libc::c_int>() as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: all-zero is a valid empty msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points at live buffers of the sizes it states.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    assert_eq!(msg.msg_flags & libc::MSG_CTRUNC, 0, "control data truncated");
    let mut fd = None;
    // SAFETY: walking the control buffer the kernel just filled, with the libc macros.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&raw const msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<libc::c_int>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            header = libc::CMSG_NXTHDR(&raw const msg, header);
        }
    }
    (n as usize, fd)
}

/// The client's own MAP_SHARED mapping of a passed descriptor.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize) -> Self {
        // SAFETY: a fresh shared mapping of a descriptor we own; the kernel picks the address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Self { ptr: NonNull::new(p.cast()).unwrap(), len }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: a live mapping of len bytes, borrowed through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// `[addr,len,…,0,0]` u64 pairs from offset 0 until len == 0 (§A.4).
    fn segments(&mut self) -> Vec<(u64, u64)> {
        let b = self.bytes();
        let word = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap());
        let mut out = Vec::new();
        for pair in 0..64 {
            let (addr, len) = (word(2 * pair), word(2 * pair + 1));
            if len == 0 {
                return out;
            }
            out.push((addr, len));
        }
        panic!("address list not terminated within 64 pairs: {out:X?}");
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly what mmap returned.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn start(name: &str, card: &Card) -> EmulatedTinyGpuServer {
    EmulatedTinyGpuServer::start(socket_path(name), card.kind).expect("start the server")
}

// ------------------------------------------------------------------------ framing, config

#[test]
fn config_reads_and_writes_reach_the_gpu_function() {
    for card in [NAVI31, GA102] {
        let server = start(&format!("cfg-{:?}", card.kind), &card);
        let mut c = Client::connect(&server);
        assert_eq!(c.cfg_read(0, 4), u64::from(card.id));
        assert_eq!(c.cfg_read(2, 2), u64::from(card.id >> 16));
        assert_eq!(c.cfg_read(1, 1), u64::from((card.id >> 8) & 0xFF));
        // Class code: VGA controller (0x030000) in bits 31:8 of 0x08.
        assert_eq!(c.cfg_read(0x08, 4) >> 8, 0x03_0000);
        // dev_id is ignored by server.c.
        c.s.write_all(&request(CFG_READ, 7, 0, [0, 4, 0])).unwrap();
        assert_eq!(c.resp(), Resp { status: 0, resp0: u64::from(card.id), resp1: 0 });
        // The dext's ReadCfg answers sizes other than 1, 2, 4 with 0 and no error.
        assert_eq!(c.cfg_read(0, 3), 0);
        assert_eq!(c.cfg_read(0, 8), 0);
        // Writable register (interrupt line) read back through byte and dword reads.
        c.cfg_write(0x3C, 1, 0x5A);
        assert_eq!(c.cfg_read(0x3C, 1), 0x5A);
        assert_eq!(c.cfg_read(0x3C, 4) & 0xFF, 0x5A);
        // Past the 4 KiB space, or across a dword: all-ones; offsets near u64::MAX too.
        assert_eq!(c.cfg_read(0x1000, 4), 0xFFFF_FFFF);
        assert_eq!(c.cfg_read(u64::MAX - 1, 2), 0xFFFF);
        assert_eq!(c.cfg_read(0x03, 2), 0xFFFF);
        c.cfg_write(u64::MAX, 4, 0);
        assert_eq!(server.stats().internal_errors, 0);
        // Enumerated by "macOS" and started by the dext: IO, memory and bus master on.
        assert_eq!(c.cfg_read(0x04, 2) & 0x7, 0x7);
    }
}

#[test]
fn requests_split_across_writes_or_packed_together_are_framed_by_length() {
    let server = start("framing", &GA102);
    let mut c = Client::connect(&server);
    // One request a byte at a time.
    for byte in request(CFG_READ, 0, 0, [0, 4, 0]) {
        c.s.write_all(&[byte]).unwrap();
        c.s.flush().unwrap();
    }
    assert_eq!(c.resp(), Resp { status: 0, resp0: u64::from(GA102.id), resp1: 0 });
    // Three requests in one write (a posted write among them): two responses, in order.
    let mut b = request(CFG_READ, 0, 0, [2, 2, 0]);
    b.extend_from_slice(&request(MMIO_WRITE, 0, 0, [0, 4, 0]));
    b.extend_from_slice(&[1, 2, 3, 4]);
    b.extend_from_slice(&request(CFG_READ, 0, 0, [0, 2, 0]));
    c.s.write_all(&b).unwrap();
    assert_eq!(c.resp().resp0, 0x2204);
    assert_eq!(c.resp().resp0, 0x10DE);
    assert_eq!(server.stats().card.mmio_writes_dropped, 1, "BAR0 was never mapped");
    // A write longer than the server's 64 MiB buffer cannot be taken in: the connection
    // ends rather than reading the rest as requests.
    c.s.write_all(&request(MMIO_WRITE, 0, 0, [0, (64 << 20) + 4, 0])).unwrap();
    assert_eq!(c.read_to_eof().unwrap(), Vec::<u8>::new());
    assert!(server.is_alive());
}

#[test]
fn unimplemented_and_unknown_commands_answer_status_1_with_a_message() {
    let server = start("unimpl", &NAVI31);
    let mut c = Client::connect(&server);
    for (cmd, name) in [
        (PROBE, "PROBE"),
        (MAP_SYSMEM, "MAP_SYSMEM"),
        (SYSMEM_READ, "SYSMEM_READ"),
        (SYSMEM_WRITE, "SYSMEM_WRITE"),
        (PING, "PING"),
    ] {
        let msg = c.call_err(cmd, 0, [0; 3]);
        assert!(msg.contains(name) && msg.contains("not implemented"), "{msg}");
    }
    for cmd in [13u8, 99, 255] {
        let msg = c.call_err(cmd, 0, [0; 3]);
        assert!(msg.contains(&format!("unknown command {cmd}")), "{msg}");
    }
    // Still in step after all of those.
    assert_eq!(c.cfg_read(0, 4), u64::from(NAVI31.id));
    assert_eq!(server.stats().requests, 9);
}

// ------------------------------------------------------------------------ BARs and MMIO

#[test]
fn map_bar_reports_sizes_and_a_stable_base_and_refuses_non_memory_bars() {
    let server = start("mapbar", &NAVI31);
    let mut c = Client::connect(&server);
    let (base0, size0) = c.map_bar(0);
    assert_eq!((base0, size0), (BAR_VIRTUAL_BASE, 256 << 20));
    assert_eq!(c.map_bar(2), (BAR_VIRTUAL_BASE + 2 * BAR_VIRTUAL_STRIDE, 2 << 20));
    assert_eq!(c.map_bar(5), (BAR_VIRTUAL_BASE + 5 * BAR_VIRTUAL_STRIDE, 1 << 20));
    assert_eq!(c.map_bar(0), (base0, size0), "same base on a second MAP_BAR");
    assert!(c.call_err(MAP_BAR, 1, [0; 3]).contains("upper half"));
    assert!(c.call_err(MAP_BAR, 4, [0; 3]).contains("I/O"));
    assert!(c.call_err(MAP_BAR, 6, [0; 3]).contains("does not exist"));
    // RESIZE_BAR is a no-op in server.c.
    assert_eq!(c.call(RESIZE_BAR, 0, [0; 3]).status, 0);
    assert_eq!(c.map_bar(0), (base0, size0));

    let server = start("mapbar-ga102", &GA102);
    let mut c = Client::connect(&server);
    assert_eq!(c.map_bar(0).1, 16 << 20);
    assert_eq!(c.map_bar(1).1, 256 << 20);
    assert_eq!(c.map_bar(3).1, 32 << 20);
    assert!(c.call_err(MAP_BAR, 5, [0; 3]).contains("I/O"));
}

#[test]
fn mmio_needs_map_bar_first_reads_fail_and_writes_are_dropped() {
    let server = start("mapfirst", &NAVI31);
    let mut c = Client::connect(&server);
    let msg = c.call_err(MMIO_READ, 0, [0x100, 4, 0]);
    assert!(msg.contains("MAP_BAR"), "{msg}");
    // A write before MAP_BAR is dropped silently: no reply, nothing lands.
    c.mmio_write(0, 0x100, &[0xAB; 16]);
    assert_eq!(c.cfg_read(0, 4), u64::from(NAVI31.id), "no reply came for the write");
    assert_eq!(server.stats().card.mmio_writes_dropped, 1);
    assert_eq!(server.vram(0x100, 16), vec![0; 16]);
    c.map_bar(0);
    assert_eq!(c.mmio_read(0, 0x100, 16), vec![0; 16]);
    // Now the same write lands.
    c.mmio_write(0, 0x100, &[0xAB; 16]);
    assert_eq!(c.mmio_read(0, 0x100, 16), vec![0xAB; 16]);
    assert_eq!(server.vram(0x100, 16), vec![0xAB; 16]);
}

#[test]
fn mmio_writes_are_posted_and_bytes_round_trip_at_any_alignment() {
    let server = start("posted", &NAVI31);
    let mut c = Client::connect(&server);
    c.map_bar(2);
    let data = pattern(4096, 3);
    // Several posted writes back to back, then one read: had any write been answered, the
    // read's response would be out of step.
    c.mmio_write(2, 0x1000, &data[..2048]);
    c.mmio_write(2, 0x1000 + 2048, &data[2048..]);
    c.mmio_write(2, 0x3000, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(c.mmio_read(2, 0x1000, 4096), data);
    // Sub-dword writes only change their bytes; ragged reads return exactly what is asked.
    c.mmio_write(2, 0x3001, &[0xEE, 0xDD, 0xCC]);
    assert_eq!(c.mmio_read(2, 0x3000, 8), vec![1, 0xEE, 0xDD, 0xCC, 5, 6, 7, 8]);
    c.mmio_write(2, 0x3006, &[0x99]);
    assert_eq!(c.mmio_read(2, 0x3003, 5), vec![0xCC, 5, 6, 0x99, 8]);
    assert_eq!(c.mmio_read(2, 0x3000, 0), Vec::<u8>::new());
}

#[test]
fn mmio_out_of_range_reads_fail_and_writes_are_dropped() {
    let server = start("range", &NAVI31);
    let mut c = Client::connect(&server);
    c.map_bar(5);
    c.map_bar(0);
    let msg = c.call_err(MMIO_READ, 5, [(1 << 20) - 4, 8, 0]);
    assert!(msg.contains("past the end of BAR 5"), "{msg}");
    assert!(c.call_err(MMIO_READ, 5, [u64::MAX, 8, 0]).contains("past the end"));
    // More than the 64 MiB buffer, even inside the 256 MiB BAR.
    assert!(c.call_err(MMIO_READ, 0, [0, (64 << 20) + 4, 0]).contains("64 MiB"));
    assert!(c.call_err(MMIO_READ, 9, [0, 4, 0]).contains("not mapped"));
    c.mmio_write(5, (1 << 20) - 4, &[0x11; 8]);
    assert_eq!(c.mmio_read(5, (1 << 20) - 4, 4), vec![0; 4], "nothing of it landed");
    assert_eq!(server.stats().card.mmio_writes_dropped, 1);
    // The largest single read works.
    assert_eq!(c.mmio_read(0, 0, 64 << 20).len(), 64 << 20);
}

#[test]
fn memory_decode_off_makes_bar_reads_all_ones() {
    let server = start("decode", &GA102);
    let mut c = Client::connect(&server);
    c.map_bar(1);
    c.mmio_write(1, 0x40, &[7; 8]);
    let command = c.cfg_read(0x04, 2);
    c.cfg_write(0x04, 2, command & !0x2);
    assert_eq!(c.mmio_read(1, 0x40, 8), vec![0xFF; 8], "a master abort reads all-ones");
    c.mmio_write(1, 0x40, &[9; 8]);
    c.cfg_write(0x04, 2, command);
    assert_eq!(c.mmio_read(1, 0x40, 8), vec![7; 8], "the write with decode off went nowhere");
    assert!(server.stats().card.mmio_writes_undecoded >= 2);
}

#[test]
fn reset_is_a_function_level_reset_that_keeps_bars_and_vram() {
    let config = TinyGpuServerConfig::new(GpuKind::Navi31);
    let config = TinyGpuServerConfig { crs_reads_after_reset: 5, ..config };
    let server = EmulatedTinyGpuServer::start_with(socket_path("reset"), config).unwrap();
    let mut c = Client::connect(&server);
    c.map_bar(0);
    c.mmio_write(0, 0x8000, &[0x42; 32]);
    c.cfg_write(0x3C, 1, 0x5A);
    assert_eq!(c.call(RESET, 0, [0; 3]), Resp { status: 0, resp0: 0, resp1: 0 });
    // CRS after the FLR is retried inside the server: the first read still has data.
    assert_eq!(c.cfg_read(0, 4), u64::from(NAVI31.id));
    assert_eq!(c.cfg_read(0x3C, 1), 0, "the FLR reset the interrupt line");
    assert_eq!(c.cfg_read(0x04, 2) & 0x7, 0x7, "COMMAND restored");
    assert_eq!(c.mmio_read(0, 0x8000, 32), vec![0x42; 32], "BAR restored, VRAM kept");
}

// ------------------------------------------------------------------------ DMA memory

#[test]
fn map_sysmem_fd_passes_a_descriptor_with_the_address_list_at_its_start() {
    let server = start("sysmem", &NAVI31);
    let mut c = Client::connect(&server);
    // Rounded up to 4 KiB, at least 16 KiB.
    let (r, fd) = c.map_sysmem_fd(100);
    assert_eq!(r, Resp { status: 0, resp0: 16 << 10, resp1: 0 });
    let fd = fd.expect("a descriptor in SCM_RIGHTS");
    let file = std::fs::File::from(fd.try_clone().unwrap());
    assert_eq!(file.metadata().unwrap().len(), 16 << 10);
    let mut m = Mapping::new(&fd, 16 << 10);
    let segs = m.segments();
    assert_eq!(segs.iter().map(|s| s.1).sum::<u64>(), 16 << 10);

    let size = (1 << 20) + 1;
    let (r, fd) = c.map_sysmem_fd(size);
    assert_eq!(r, Resp { status: 0, resp0: (1 << 20) + 4096, resp1: 1 });
    let mut m = Mapping::new(fd.as_ref().unwrap(), r.resp0 as usize);
    let segs = m.segments();
    assert!(segs.len() > 1 && segs.len() <= 32, "{segs:X?}");
    assert_eq!(segs.iter().map(|s| s.1).sum::<u64>(), r.resp0);
    for (addr, len) in &segs {
        assert_eq!(addr % 4096, 0);
        assert_eq!(len % 4096, 0);
        assert!(addr + len <= 1 << 40, "IOVAs are at most 40 bits");
    }
    assert_eq!(server.stats().card.sysmem_allocations, 2);

    // One segment per allocation when told so.
    let config = TinyGpuServerConfig::new(GpuKind::Ga102).with_max_segments(1);
    let one = EmulatedTinyGpuServer::start_with(socket_path("sysmem-one"), config).unwrap();
    let mut c = Client::connect(&one);
    let (r, fd) = c.map_sysmem_fd(8 << 20);
    let mut m = Mapping::new(fd.as_ref().unwrap(), r.resp0 as usize);
    assert_eq!(m.segments().len(), 1);
    assert_eq!(m.segments()[0].1, 8 << 20);
}

/// Where segment `k` starts inside the buffer.
fn buffer_offset(segs: &[(u64, u64)], k: usize) -> usize {
    segs[..k].iter().map(|s| s.1 as usize).sum()
}

fn copy_engine_moves_data_through_the_passed_memory(card: Card) {
    let server = start(&format!("ce-{:?}", card.kind), &card);
    let mut c = Client::connect(&server);
    c.map_bar(card.vram_bar);
    c.map_bar(card.mmio_bar);
    let (r, fd) = c.map_sysmem_fd(256 << 10);
    let mut m = Mapping::new(fd.as_ref().unwrap(), r.resp0 as usize);
    let segs = m.segments();
    assert_eq!(segs.len(), 4);
    let list_bytes = (segs.len() + 1) * 16;

    // VRAM → DMA memory, into the third segment: the bytes appear in our own mapping.
    let data = pattern(8192, 5);
    c.mmio_write(card.vram_bar, 0x2_0000, &data);
    let (addr, _) = segs[2];
    let status = c.copy(card.mmio_bar, 0x2_0000, addr + 0x100, 8192, ce::FLAG_DST_PCIE);
    assert_eq!(status, ce::STATUS_OK);
    let at = buffer_offset(&segs, 2) + 0x100;
    assert_eq!(&m.bytes()[at..at + 8192], &data[..]);

    // DMA memory → VRAM: what we write in the mapping (even over the address list, which
    // is ordinary memory) is what the GPU reads.
    let ours = pattern(list_bytes + 64, 77);
    m.bytes()[..ours.len()].copy_from_slice(&ours);
    let status = c.copy(card.mmio_bar, segs[0].0, 0x9_0000, ours.len() as u32, ce::FLAG_SRC_PCIE);
    assert_eq!(status, ce::STATUS_OK);
    assert_eq!(c.mmio_read(card.vram_bar, 0x9_0000, ours.len() as u64), ours);

    // A copy running past a segment into the gap after it is refused whole.
    let (addr, len) = segs[1];
    let before = m.bytes()[buffer_offset(&segs, 1)..][..len as usize].to_vec();
    let status = c.copy(card.mmio_bar, 0x2_0000, addr + len - 16, 64, ce::FLAG_DST_PCIE);
    assert_eq!(status, ce::STATUS_ERROR);
    assert_eq!(&m.bytes()[buffer_offset(&segs, 1)..][..len as usize], &before[..]);
    let stats = server.stats().card;
    assert_eq!((stats.gpu_dma_requests, stats.gpu_dma_rejected), (2, 1));
    assert_eq!(stats.gpu_dma_bytes, 8192 + ours.len() as u64);

    // Device-side stimulus reaches the same memory, and reads what the client wrote.
    let (addr, _) = segs[3];
    server.gpu_dma_write(addr + 8, b"from the GPU").unwrap();
    let at = buffer_offset(&segs, 3) + 8;
    assert_eq!(&m.bytes()[at..at + 12], b"from the GPU");
    m.bytes()[at..at + 4].copy_from_slice(b"FROM");
    assert_eq!(server.gpu_dma_read(addr + 8, 12).unwrap(), b"FROM the GPU");
    assert!(matches!(server.gpu_dma_read(addr - 4, 8), Err(DmaError::NoSysmem { .. })));

    // Bus mastering off: the GPU's DMA is refused.
    let command = c.cfg_read(0x04, 2);
    c.cfg_write(0x04, 2, command & !0x4);
    let status = c.copy(card.mmio_bar, 0x2_0000, segs[3].0, 64, ce::FLAG_DST_PCIE);
    assert_eq!(status, ce::STATUS_ERROR);
    assert!(matches!(
        server.gpu_dma_write(segs[3].0, &[0; 4]),
        Err(DmaError::BusMasterDisabled { .. })
    ));
}

#[test]
fn copy_engine_moves_data_through_the_passed_memory_navi31() {
    copy_engine_moves_data_through_the_passed_memory(NAVI31);
}

#[test]
fn copy_engine_moves_data_through_the_passed_memory_ga102() {
    copy_engine_moves_data_through_the_passed_memory(GA102);
}

#[test]
fn dma_memory_and_bar_mappings_end_with_the_session() {
    let server = start("session-end", &NAVI31);
    let mut c = Client::connect(&server);
    c.map_bar(5);
    let (r, fd) = c.map_sysmem_fd(64 << 10);
    let mut m = Mapping::new(fd.as_ref().unwrap(), r.resp0 as usize);
    let segs = m.segments();
    server.set_vram(0, &[0x5C; 64]);
    assert_eq!(c.copy(5, 0, segs[0].0 + 4096, 64, ce::FLAG_DST_PCIE), ce::STATUS_OK);
    drop(c);

    let mut c = Client::connect(&server);
    assert!(c.call_err(MMIO_READ, 5, [0, 4, 0]).contains("MAP_BAR"), "mappings are per session");
    c.map_bar(5);
    server.set_vram(0, &[0x11; 64]);
    assert_eq!(c.copy(5, 0, segs[0].0 + 4096, 64, ce::FLAG_DST_PCIE), ce::STATUS_ERROR);
    // Our mapping outlives the session; the GPU no longer reaches it.
    assert_eq!(&m.bytes()[4096..4096 + 64], &[0x5C; 64]);
    // Allocation indices start again.
    assert_eq!(c.map_sysmem_fd(1).0.resp1, 0);
}

#[test]
fn a_session_holds_at_most_128_allocations() {
    let server = start("limit", &GA102);
    let mut c = Client::connect(&server);
    // Too large for the DMA address space at all: status 1, a message, no descriptor.
    let (r, fd) = c.map_sysmem_fd(u64::MAX);
    assert_eq!(r.status, 1);
    assert!(fd.is_none());
    let mut msg = vec![0u8; r.resp0 as usize];
    c.s.read_exact(&mut msg).unwrap();
    assert!(String::from_utf8(msg).unwrap().contains("DMA"));
    assert!(c.call_err(MAP_SYSMEM_FD, 0, [(3 << 29) + 1, 0, 0]).contains("DMA"));
    for i in 0..128 {
        let (r, fd) = c.map_sysmem_fd(4096);
        assert_eq!((r.status, r.resp1), (0, i));
        assert!(fd.is_some());
    }
    let msg = c.call_err(MAP_SYSMEM_FD, 0, [4096, 0, 0]);
    assert!(msg.contains("128"), "{msg}");
    drop(c);
    let mut c = Client::connect(&server);
    assert_eq!(c.map_sysmem_fd(4096).0.status, 0);
}

// ------------------------------------------------------------------------ clients, faults

#[test]
fn a_second_client_is_closed_at_once_and_the_first_keeps_working() {
    let server = start("second", &NAVI31);
    let mut first = Client::connect(&server);
    assert_eq!(first.cfg_read(0, 2), 0x1002);
    let mut second = Client::connect(&server);
    assert_eq!(second.read_to_eof().unwrap(), Vec::<u8>::new(), "EOF for the second client");
    assert_eq!(first.cfg_read(0, 2), 0x1002);
    let stats = server.stats();
    assert_eq!((stats.connections, stats.connections_refused), (1, 1));
    drop(first);
    // Once the first has hung up, the next one is served (even while the first session is
    // still winding down).
    let mut third = Client::connect(&server);
    assert_eq!(third.cfg_read(2, 2), 0x744C);
}

#[test]
fn server_dying_after_n_requests_is_seen_as_eof_then_refusal() {
    let server = start("die-after", &NAVI31);
    let path = server.path().to_path_buf();
    let mut c = Client::connect(&server);
    server.inject(ServerFault::DieAfter { requests: 2 });
    assert_eq!(c.cfg_read(0, 2), 0x1002);
    assert_eq!(c.cfg_read(2, 2), 0x744C);
    c.send(CFG_READ, 0, [0, 4, 0]);
    assert_eq!(c.read_to_eof().unwrap(), Vec::<u8>::new(), "EOF, no response");
    assert!(!server.is_alive());
    let refused = UnixStream::connect(&path).expect_err("nothing listens any more");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    assert!(path.exists(), "a dead server leaves its socket file");
    drop(server);
    assert!(!path.exists(), "dropping the handle removes it");
}

#[test]
fn server_dying_mid_reply_leaves_a_truncated_reply_then_eof() {
    let server = start("die-reply", &NAVI31);
    let mut c = Client::connect(&server);
    c.map_bar(0);
    server.inject(ServerFault::DieMidReply { requests: 1, bytes: 17 + 100 });
    c.mmio_write(0, 0, &[1; 64]); // posted: counts as a request, has no reply to cut
    c.send(MMIO_READ, 0, [0, 4096, 0]);
    let got = c.read_to_eof().unwrap();
    assert_eq!(got.len(), 117);
    assert_eq!(parse_resp(&got), Resp { status: 0, resp0: 4096, resp1: 0 });
    let mut expected = vec![1u8; 64];
    expected.resize(100, 0);
    assert_eq!(&got[17..], &expected[..]);
}

#[test]
fn server_dying_mid_write_breaks_the_clients_send() {
    let server = start("die-write", &NAVI31);
    let mut c = Client::connect(&server);
    c.map_bar(0);
    server.inject(ServerFault::DieMidWrite { requests: 0, bytes: 1000 });
    let mut b = request(MMIO_WRITE, 0, 0, [0, 4 << 20, 0]);
    b.extend_from_slice(&vec![0x33; 4 << 20]);
    let e = c.s.write_all(&b).expect_err("the server went away mid-write");
    assert!(matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset), "{e}");
    assert_eq!(server.vram(0, 16), vec![0; 16], "nothing of the write landed");
    assert!(!server.is_alive());
}

#[test]
fn a_stalled_server_answers_nothing_until_killed() {
    let server = start("stall", &GA102);
    let mut c = Client::connect(&server);
    server.inject(ServerFault::StallAfter { requests: 1 });
    assert_eq!(c.cfg_read(0, 2), 0x10DE);
    c.send(CFG_READ, 0, [0, 2, 0]);
    c.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut b = [0u8; 1];
    let e = c.s.read(&mut b).expect_err("no reply from a stalled server");
    assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}");
    c.s.set_read_timeout(Some(DEADLINE)).unwrap();
    server.kill();
    assert_eq!(c.read_to_eof().unwrap(), Vec::<u8>::new());
}

#[test]
fn a_half_sent_request_ends_the_session_at_the_deadline_and_the_server_lives_on() {
    let config =
        TinyGpuServerConfig::new(GpuKind::Navi31).with_io_timeout(Duration::from_millis(200));
    let server = EmulatedTinyGpuServer::start_with(socket_path("half"), config).unwrap();
    let mut c = Client::connect(&server);
    c.s.write_all(&request(CFG_READ, 0, 0, [0, 4, 0])[..10]).unwrap();
    assert_eq!(c.read_to_eof().unwrap(), Vec::<u8>::new(), "closed after the deadline");
    assert_eq!(server.stats().io_timeouts, 1);
    // A client that sends half a request and closes.
    let mut c = Client::connect(&server);
    c.s.write_all(&[CFG_READ, 0, 0]).unwrap();
    drop(c);
    let mut c = Client::connect(&server);
    assert_eq!(c.cfg_read(0, 4), u64::from(NAVI31.id));
    assert!(server.is_alive());
}

#[test]
fn random_bytes_never_bring_the_server_down() {
    let server = start("fuzz", &NAVI31);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let mut c = Client::connect(&server);
        let mut blob = Vec::new();
        for _ in 0..(next() % 8) {
            let cmd = (next() % 16) as u8;
            let bar = (next() % 8) as u32;
            // Mostly small values (so commands get past their first checks), some anything.
            let small = |v: u64| if v.is_multiple_of(4) { v } else { v % (1 << 16) };
            let args = [small(next()), small(next()), small(next())];
            blob.extend_from_slice(&request(cmd, next() as u32, bar, args));
        }
        let cut = (next() as usize) % (blob.len() + 1);
        let _ = c.s.write_all(&blob[..cut]);
        let _ = c.s.shutdown(std::net::Shutdown::Write);
        let _ = c.read_to_eof();
    }
    assert!(server.is_alive());
    let mut c = Client::connect(&server);
    assert_eq!(c.cfg_read(0, 4), u64::from(NAVI31.id));
    let stats = server.stats();
    assert_eq!((stats.connections, stats.connections_refused), (201, 0));
    assert_eq!(stats.internal_errors, 0, "no session ended in a panic");
}

// ------------------------------------------------------------------------ lifecycle

#[test]
fn start_refuses_no_gpu_and_non_socket_paths_and_replaces_stale_sockets() {
    let e = EmulatedTinyGpuServer::start(socket_path("none"), GpuKind::None).err().unwrap();
    assert!(e.to_string().contains("no GPU"), "{e}");
    let file = socket_path("regular-file");
    std::fs::write(&file, b"not a socket").unwrap();
    let e = EmulatedTinyGpuServer::start(&file, GpuKind::Navi31).err().unwrap();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket", "left alone");
    std::fs::remove_file(&file).unwrap();
    // A socket file left by a dead server.
    let stale = socket_path("stale");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let server = EmulatedTinyGpuServer::start(&stale, GpuKind::Navi31).unwrap();
    let mut c = Client::connect(&server);
    assert_eq!(c.cfg_read(0, 2), 0x1002);
    drop(server);
    assert!(!stale.exists());
    assert_eq!(c.read_to_eof().unwrap(), Vec::<u8>::new(), "dropping the server ends sessions");
}
