//! The remote link over loopback: a server thread serving the emulator's in-process link (a
//! separate engineer's model of the fabric and the card), clients in the test. Covers the key
//! rules, what is on the wire, one client at a time, clients that vanish and hostile messages.
//! The shared PCIe link tests run through the remote link in egpu-link/tests/both_front_ends.rs.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use egpu_emu::{EmulatedFabric, GpuKind};
use egpu_hal::{Bdf, DmaInfo, DmaRegion, LinkError, PcieLink, PendingDmaRead};
use egpu_link::pcie::bar::{BarMmio, BarRegion};
use egpu_link::pcie::fabric::{self, FabricOptions, Topology};
use egpu_remote::wire::{self, Reply, Request};
use egpu_remote::{ClientConfig, Key, RemoteError, RemoteLink, Server, ServerConfig, ServerHandle};

/// A link that counts every transaction it passes on (what "device access" means here).
struct Counted<L> {
    inner: L,
    accesses: Arc<AtomicU64>,
}

impl<L: PcieLink> Counted<L> {
    fn hit(&self) {
        self.accesses.fetch_add(1, Ordering::SeqCst);
    }
}

impl<L: PcieLink> PcieLink for Counted<L> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn config_read(&mut self, bdf: Bdf, offset: u16, size: u8) -> Result<u32, LinkError> {
        self.hit();
        self.inner.config_read(bdf, offset, size)
    }
    fn config_write(
        &mut self,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), LinkError> {
        self.hit();
        self.inner.config_write(bdf, offset, size, value)
    }
    fn mem_read32(&mut self, address: u64) -> Result<u32, LinkError> {
        self.hit();
        self.inner.mem_read32(address)
    }
    fn mem_write(&mut self, address: u64, size: u8, value: u32) -> Result<(), LinkError> {
        self.hit();
        self.inner.mem_write(address, size, value)
    }
    fn mem_read(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        self.hit();
        self.inner.mem_read(address, len)
    }
    fn mem_write_bytes(&mut self, address: u64, data: Bytes) -> Result<(), LinkError> {
        self.hit();
        self.inner.mem_write_bytes(address, data)
    }
    fn flush(&mut self) -> Result<(), LinkError> {
        self.hit();
        self.inner.flush()
    }
    fn reset(&mut self) -> Result<(), LinkError> {
        self.hit();
        self.inner.reset()
    }
    fn dma_info(&self) -> DmaInfo {
        self.inner.dma_info()
    }
    fn dma_alloc(&mut self, size: u64) -> Result<DmaRegion, LinkError> {
        self.hit();
        self.inner.dma_alloc(size)
    }
    fn dma_free(&mut self, region: DmaRegion) -> Result<(), LinkError> {
        self.hit();
        self.inner.dma_free(region)
    }
    fn dma_write(&mut self, region: &DmaRegion, offset: u64, data: Bytes) -> Result<(), LinkError> {
        self.hit();
        self.inner.dma_write(region, offset, data)
    }
    fn dma_read_begin(
        &mut self,
        region: &DmaRegion,
        offset: u64,
        len: usize,
    ) -> Result<PendingDmaRead, LinkError> {
        self.hit();
        self.inner.dma_read_begin(region, offset, len)
    }
    fn dma_read_finish(&mut self, pending: PendingDmaRead) -> Result<Vec<u8>, LinkError> {
        self.hit();
        self.inner.dma_read_finish(pending)
    }
}

struct Served {
    addr: SocketAddr,
    handle: ServerHandle,
    fabric: EmulatedFabric,
    accesses: Arc<AtomicU64>,
}

/// A server on 127.0.0.1 (port picked by the system) serving a fresh emulated Navi 31.
fn serve(key: Option<Key>) -> Served {
    let fabric = EmulatedFabric::with_gpu(GpuKind::Navi31);
    let accesses = Arc::new(AtomicU64::new(0));
    let config = ServerConfig { key, emulated: true, ..ServerConfig::default() };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let (addr, handle) = (server.local_addr(), server.handle());
    let mut link = Counted { inner: fabric.link(), accesses: Arc::clone(&accesses) };
    std::thread::spawn(move || server.serve(&mut link));
    Served { addr, handle, fabric, accesses }
}

fn connect(addr: SocketAddr, key: Option<Key>) -> Result<RemoteLink, RemoteError> {
    let config = ClientConfig { key, ..ClientConfig::default() };
    RemoteLink::connect(&addr.ip().to_string(), addr.port(), &config)
}

fn key(seed: u8) -> Key {
    Key::from_bytes(std::array::from_fn(|i| seed.wrapping_add(i as u8 * 7) | 1))
}

fn bring_up(link: &mut dyn PcieLink) -> (Topology, BarRegion) {
    let topology = fabric::bring_up(link, &FabricOptions::default()).unwrap();
    let bar = topology.gpu().unwrap().bar(0).unwrap();
    let vram = BarRegion { address: bar.address, size: bar.size };
    (topology, vram)
}

/// Wait (bounded) until the server has ended `count` sessions.
fn wait_sessions_ended(handle: &ServerHandle, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while handle.sessions_ended() < count {
        assert!(Instant::now() < deadline, "the server did not end the session within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A TCP relay between one client and the server that records both directions and can cut
/// the connection after the client has sent `cut_after` bytes.
struct Relay {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

fn relay(server: SocketAddr, cut_after: Option<usize>) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let to_server = Arc::new(Mutex::new(Vec::new()));
    let to_client = Arc::new(Mutex::new(Vec::new()));
    let (up, down) = (Arc::clone(&to_server), Arc::clone(&to_client));
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let upstream = TcpStream::connect(server).unwrap();
        let pump = |mut from: TcpStream,
                    mut to: TcpStream,
                    log: Arc<Mutex<Vec<u8>>>,
                    cut: Option<usize>| {
            move || {
                let mut buf = vec![0u8; 64 << 10];
                let mut moved = 0usize;
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let n = cut.map_or(n, |cut| n.min(cut - moved));
                    log.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    moved += n;
                    if cut == Some(moved) {
                        break;
                    }
                }
                // Both ends go away at once, as when a process is killed.
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
            }
        };
        let a = std::thread::spawn(pump(
            client.try_clone().unwrap(),
            upstream.try_clone().unwrap(),
            up,
            cut_after,
        ));
        let b = std::thread::spawn(pump(upstream, client, down, None));
        let _ = (a.join(), b.join());
    });
    Relay { addr, to_server, to_client }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- keys ------------------------------------------------------------------------------------

#[test]
fn a_keyed_server_refuses_clients_without_its_key_before_any_device_access() {
    let served = serve(Some(key(1)));
    let error = connect(served.addr, None).err().expect("no key must be refused");
    assert!(matches!(error, RemoteError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("requires a key"), "{error}");
    let error = connect(served.addr, Some(key(2))).err().expect("a wrong key must be refused");
    assert!(matches!(error, RemoteError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("key does not match"), "{error}");
    assert_eq!(served.accesses.load(Ordering::SeqCst), 0, "refused clients reached the device");
    assert_eq!(served.handle.holder(), None);

    // The right key works, and does reach the device.
    let mut link = connect(served.addr, Some(key(1))).unwrap();
    let direct = served.fabric.link().config_read32(Bdf::new(0, 0, 0), 0).unwrap();
    assert_ne!(direct & 0xFFFF, 0xFFFF);
    assert_eq!(link.config_read32(Bdf::new(0, 0, 0), 0).unwrap(), direct);
    assert!(served.accesses.load(Ordering::SeqCst) > 0);
}

#[test]
fn a_client_with_a_key_is_refused_by_a_server_without_one_rather_than_downgraded() {
    let served = serve(None);
    let error = connect(served.addr, Some(key(3))).err().unwrap();
    assert!(error.to_string().contains("has no key"), "{error}");
    assert_eq!(served.accesses.load(Ordering::SeqCst), 0);
}

#[test]
fn listening_beyond_loopback_without_a_key_is_refused_before_binding() {
    // The check comes before the bind, so nothing listens on any other interface.
    let error = Server::bind("0.0.0.0:0".parse().unwrap(), ServerConfig::default()).err().unwrap();
    assert!(matches!(error, RemoteError::KeyRequired { .. }), "{error}");
    assert!(error.to_string().contains("--key-file"), "{error}");
}

// ---- what is on the wire -------------------------------------------------------------------

#[test]
fn traffic_on_the_wire_is_ciphertext_with_and_without_a_key() {
    let canary: Vec<u8> =
        b"EGPU-PLAINTEXT-CANARY-".iter().chain(b"0123456789abcdef").copied().collect();
    let payload: Bytes = canary.iter().copied().cycle().take(1 << 20).collect::<Vec<u8>>().into();
    for key in [Some(key(4)), None] {
        let served = serve(key.clone());
        let relay = relay(served.addr, None);
        let mut link = connect(relay.addr, key.clone()).unwrap();
        let (_, vram) = bring_up(&mut link);
        let mut bar = BarMmio::new(&mut link, vram);
        bar.write_bytes(0x10_0000, payload.clone()).unwrap();
        assert_eq!(bar.read(0x10_0000, payload.len()).unwrap(), payload, "data round trip");
        assert_eq!(served.fabric.vram(0x10_0000, payload.len()), payload.to_vec());
        drop(link);
        let up = relay.to_server.lock().unwrap().clone();
        let down = relay.to_client.lock().unwrap().clone();
        // The payload crossed the relay both ways...
        assert!(
            up.len() > payload.len() && down.len() > payload.len(),
            "{} / {}",
            up.len(),
            down.len()
        );
        // ...and no 16-byte piece of it appears in clear in either direction.
        for piece in canary.windows(16).step_by(3) {
            assert!(
                !contains(&up, piece),
                "key {}: plaintext on the wire to the server",
                key.is_some()
            );
            assert!(
                !contains(&down, piece),
                "key {}: plaintext on the wire to the client",
                key.is_some()
            );
        }
    }
}

// ---- one client at a time, and clients that vanish -------------------------------------------

#[test]
fn a_second_client_is_told_who_holds_the_device() {
    let served = serve(None);
    let mut first = connect(served.addr, None).unwrap();
    first.flush().unwrap();
    let error = connect(served.addr, None).err().expect("the device is held");
    let holder = first.local_addr().to_string();
    assert!(error.to_string().contains(&format!("in use by {holder}")), "{error}");
    assert_eq!(served.handle.holder(), Some(first.local_addr()));
    drop(first);
    wait_sessions_ended(&served.handle, 1);
    let mut second = connect(served.addr, None).unwrap();
    second.flush().unwrap();
}

#[test]
fn a_client_cut_off_mid_copy_releases_the_device_for_the_next() {
    let served = serve(None);
    // Cut the client's side after 3 MiB of a 32 MiB streaming write.
    let relay = relay(served.addr, Some(3 << 20));
    let mut doomed = connect(relay.addr, None).unwrap();
    let (_, vram) = bring_up(&mut doomed);
    let staging = doomed.dma_alloc(1 << 20).unwrap();
    let data: Bytes = (0..32u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let result = BarMmio::new(&mut doomed, vram).write_bytes(0, data).and_then(|()| doomed.flush());
    let error = result.expect_err("the copy cannot complete through a cut connection");
    assert!(matches!(error, LinkError::Transport { .. }), "{error}");
    // Later calls fail at once, naming the earlier failure.
    assert!(doomed
        .mem_read32(vram.address)
        .unwrap_err()
        .to_string()
        .contains("open the device again"));

    wait_sessions_ended(&served.handle, 1);
    assert_eq!(served.handle.holder(), None);
    // The region the vanished client held was freed with its session.
    assert_eq!(served.fabric.host_memory(staging.bus_address, 16), None);
    let mut next = connect(served.addr, None).unwrap();
    let (_, vram) = bring_up(&mut next);
    let mut bar = BarMmio::new(&mut next, vram);
    bar.write32(0x40, 0xC0FF_EE00).unwrap();
    assert_eq!(bar.read32(0x40).unwrap(), 0xC0FF_EE00);
}

// ---- hostile messages ------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An authenticated raw channel (the hello already read).
fn raw_session(addr: SocketAddr) -> egpu_remote::channel::SecureStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut stream = egpu_remote::channel::connect(tcp, "test", None).unwrap();
    let hello = wire::decode_reply(&stream.read_message("hello").unwrap()).unwrap();
    assert!(matches!(hello, Reply::Hello(_)), "{hello:?}");
    stream
}

#[test]
fn ten_thousand_random_and_truncated_messages_leave_the_server_serving() {
    let served = serve(None);
    let templates: Vec<Vec<u8>> = [
        Request::ConfigRead { bdf: Bdf::new(0, 0, 0), offset: 0, size: 4 },
        Request::MemRead32 { address: 0x8000_0000 },
        Request::MemWrite { address: 0x8000_0000, size: 4, value: 1 },
        Request::MemRead { address: 0x8000_0000, len: 64 },
        Request::MemWriteBytes { address: 0x8000_0000, data: Bytes::from_static(&[1; 16]) },
        Request::DmaAlloc { size: 4096 },
        Request::DmaFree { region: DmaRegion { id: 1, bus_address: 0x1_0000_0000, size: 4096 } },
        Request::DmaReadBegin {
            region: DmaRegion { id: 1, bus_address: 0x1_0000_0000, size: 4096 },
            offset: 0,
            len: 16,
        },
        Request::DmaReadFinish { handle: 1 },
        Request::Flush,
    ]
    .iter()
    .map(|r| wire::encode_request(r)[4..].to_vec())
    .collect();
    // A request whose answer nothing random can produce: marks where the replies are up to.
    const SYNC: u64 = 0xFEED_FACE_DEAD_BEEF;
    // A ping first takes any failure of a posted write in the batch (the server answers it to
    // the first request that has a reply).
    let mut sync = wire::encode_request(&Request::Ping);
    sync.extend(wire::encode_request(&Request::DmaReadFinish { handle: SYNC }));
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut stream = raw_session(served.addr);
    let mut sessions = 1u64;
    for i in 0..10_000u32 {
        let body: Vec<u8> = match i % 4 {
            0 => (0..rng.next() % 80).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut body = templates[(rng.next() as usize) % templates.len()].clone();
                body.truncate((rng.next() as usize) % (body.len() + 1));
                body
            }
            _ => {
                let mut body = templates[(rng.next() as usize) % templates.len()].clone();
                let at = (rng.next() as usize) % body.len();
                body[at] ^= 1 << (rng.next() % 8);
                body
            }
        };
        if i % 1000 == 999 {
            // A length prefix out of range ends the session (the framing is lost); the
            // server must then serve the next connection.
            stream.write(&u32::MAX.to_le_bytes(), "test").unwrap();
            stream.flush("test").unwrap();
            let _ = stream.read_message("the server closing");
            drop(stream);
            wait_sessions_ended(&served.handle, sessions);
            sessions += 1;
            stream = raw_session(served.addr);
            continue;
        }
        let mut message = (body.len() as u32).to_le_bytes().to_vec();
        message.extend_from_slice(&body);
        if body.is_empty() {
            message = 0u32.to_le_bytes().to_vec(); // an empty message is a framing error too
            stream.write(&message, "test").unwrap();
            stream.flush("test").unwrap();
            let _ = stream.read_message("the server closing");
            drop(stream);
            wait_sessions_ended(&served.handle, sessions);
            sessions += 1;
            stream = raw_session(served.addr);
            continue;
        }
        stream.write(&message, "test").unwrap();
        if i % 50 == 49 {
            stream.write(&sync, "test").unwrap();
            stream.flush("test").unwrap();
            loop {
                let reply = wire::decode_reply(
                    &stream.read_message("replies").unwrap_or_else(|e| panic!("at {i}: {e}")),
                )
                .unwrap();
                if matches!(&reply, Reply::Error { message, .. } if message.contains(&SYNC.to_string()))
                {
                    break;
                }
            }
        }
    }
    drop(stream);
    // Garbage before any handshake: the server closes each, and goes on.
    for _ in 0..200 {
        let mut tcp = TcpStream::connect(served.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let garbage: Vec<u8> = (0..1 + rng.next() % 40).map(|_| rng.next() as u8).collect();
        let _ = tcp.write_all(&garbage);
        let _ = tcp.shutdown(Shutdown::Write);
        // The server hangs up on each (a short prelude ends at our EOF).
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest);
        assert!(rest.len() <= 9, "the server answered garbage with {} bytes", rest.len());
    }
    wait_sessions_ended(&served.handle, sessions);
    // A handshake thread may still be winding down after hanging up: "too many connections"
    // is the only refusal allowed here, and only for a bounded while.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut link = loop {
        match connect(served.addr, None) {
            Ok(link) => break link,
            Err(e)
                if e.to_string().contains("too many connections") && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("the server stopped serving: {e}"),
        }
    };
    let (topology, _) = bring_up(&mut link);
    assert_eq!(topology.gpu().unwrap().vendor_id, 0x1002);
}

// ---- round trips -----------------------------------------------------------------------------

#[test]
fn round_trips_per_operation_match_the_usb_link_shape() {
    let served = serve(None);
    let mut link = connect(served.addr, None).unwrap();
    let (topology, vram) = bring_up(&mut link);
    let gpu = topology.gpu().unwrap().bdf;
    let cost = |link: &mut RemoteLink, body: &mut dyn FnMut(&mut RemoteLink)| {
        let before = link.stats().round_trips;
        body(link);
        link.stats().round_trips - before
    };
    assert_eq!(
        cost(&mut link, &mut |l| {
            l.config_read32(gpu, 0).unwrap();
        }),
        1
    );
    assert_eq!(
        cost(&mut link, &mut |l| {
            l.mem_read32(vram.address).unwrap();
        }),
        1
    );
    let posted = cost(&mut link, &mut |l| {
        for i in 0..1000 {
            l.mem_write(vram.address + 4 * i, 4, i as u32).unwrap();
        }
    });
    assert_eq!(posted, 0, "posted writes wait for nothing");
    assert_eq!(cost(&mut link, &mut |l| l.flush().unwrap()), 1);
    let big: Bytes = vec![0x5A; 80 << 20].into();
    assert_eq!(cost(&mut link, &mut |l| l.mem_write_bytes(vram.address, big.clone()).unwrap()), 0);
    // 80 MiB is two read requests (64 MiB each at most), pipelined: still one round trip.
    let read =
        cost(&mut link, &mut |l| assert_eq!(l.mem_read(vram.address, 80 << 20).unwrap(), big));
    assert_eq!(read, 1);
    let region = link.dma_alloc(64 << 10).unwrap();
    assert_eq!(
        cost(&mut link, &mut |l| l.dma_write(&region, 0, Bytes::from(vec![7; 64 << 10])).unwrap()),
        0
    );
    let read_back = cost(&mut link, &mut |l| {
        let pending = l.dma_read_begin(&region, 0, 64 << 10).unwrap();
        assert_eq!(l.dma_read_finish(pending).unwrap(), vec![7; 64 << 10]);
    });
    assert_eq!(read_back, 2, "begin and finish");
    assert_eq!(served.fabric.host_memory(region.bus_address, 4), Some(vec![7; 4]));
}
