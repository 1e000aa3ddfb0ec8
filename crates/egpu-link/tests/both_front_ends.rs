//! One set of PCIe tests, written once against `&mut dyn PcieLink`, run against the
//! front-ends of the emulator (egpu-emu, written from docs/reference/usb-bridge.md and
//! macos-ecosystem.md §A.4, not from this crate): the ASM2464 USB bridge driven by this
//! crate's `Asm2464`, the emulator's in-process link, and the emulated TinyGPU.app socket
//! server driven by this crate's `TinyGpuLink`; the fabric front-ends also through the remote
//! link (egpu-remote) serving them. The fabric walk is this crate's
//! `fabric::bring_up`; the TinyGPU link has no fabric to walk (macOS set it up, the server
//! reaches one function), so its tests take the function it presents and check the analogue.
//! What the device holds is checked on the device side (the emulator's VRAM), not only
//! through the link.

use std::time::Duration;

use bytes::Bytes;
use egpu_emu::copy_engine as ce;
use egpu_emu::{
    BridgeConfig, EmulatedBridge, EmulatedFabric, EmulatedTinyGpuServer, FabricConfig, GpuKind,
    ServerFault, TinyGpuServerConfig, TinyGpuServerError,
};
use egpu_link::pcie::bar::{BarMmio, BarRegion};
use egpu_link::pcie::fabric::{self, BarKind, FabricOptions, Topology};
use egpu_link::tinygpu::{TinyGpuError, TinyGpuLink, TinyGpuOptions};
use egpu_link::{Asm2464, Asm2464Config, Bdf, LinkError, PcieLink};
use tempfile::TempDir;

/// The device side of a front-end, for checks the link cannot make about itself.
enum Device {
    Usb(EmulatedBridge),
    InProcess(EmulatedFabric),
    /// The server, and the directory holding its socket (removed after the server).
    TinyGpu(EmulatedTinyGpuServer, TempDir),
}

impl Device {
    fn vram(&self, offset: u64, len: usize) -> Vec<u8> {
        match self {
            Device::Usb(d) => d.vram(offset, len),
            Device::InProcess(d) => d.vram(offset, len),
            Device::TinyGpu(d, _) => d.vram(offset, len),
        }
    }
}

struct Target {
    name: &'static str,
    link: Box<dyn PcieLink>,
    device: Device,
    /// The function a single-function link presents in place of a fabric walk.
    presented: Option<Topology>,
}

fn usb(gpu: GpuKind) -> Target {
    let emulator = EmulatedBridge::new(BridgeConfig::default().with_gpu(gpu));
    let config = Asm2464Config {
        retry_backoff: Duration::ZERO,
        config_retry_backoff: Duration::from_millis(1),
        config_retry_timeout: Duration::from_millis(200),
        link_poll_interval: Duration::ZERO,
        ..Default::default()
    };
    let link = Asm2464::open(emulator.transport(), config).expect("open the emulated bridge");
    Target {
        name: "usb-asm2464",
        link: Box::new(link),
        device: Device::Usb(emulator),
        presented: None,
    }
}

fn in_process(gpu: GpuKind) -> Target {
    let emulator = EmulatedFabric::new(FabricConfig::default().with_gpu(gpu));
    Target {
        name: "in-process",
        link: Box::new(emulator.link()),
        device: Device::InProcess(emulator),
        presented: None,
    }
}

/// `local` served by `egpu share`'s server in a thread on 127.0.0.1, reached through the remote
/// link (egpu-remote): the same tests, through the encrypted TCP protocol.
fn remote(name: &'static str, mut local: Target) -> Target {
    let config = egpu_remote::ServerConfig::default();
    let server = egpu_remote::Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let addr = server.local_addr();
    let mut link = local.link;
    std::thread::spawn(move || server.serve(link.as_mut()));
    let client = egpu_remote::ClientConfig::default();
    local.link =
        Box::new(egpu_remote::RemoteLink::connect("127.0.0.1", addr.port(), &client).unwrap());
    local.name = name;
    local
}

/// The remote link serving each fabric front-end.
fn remotes(gpu: GpuKind) -> [Target; 2] {
    [remote("remote(in-process)", in_process(gpu)), remote("remote(usb)", usb(gpu))]
}

/// Client options that keep a failing test short (nothing here waits on a healthy server).
fn tinygpu_options() -> TinyGpuOptions {
    TinyGpuOptions {
        reply_timeout: Duration::from_secs(5),
        send_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// The emulated TinyGPU server on a socket in a fresh temp dir, and the client connected.
fn tinygpu_with(config: TinyGpuServerConfig) -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("tinygpu.sock");
    let server = EmulatedTinyGpuServer::start_with(&socket, config).expect("start the server");
    let link = TinyGpuLink::connect(&socket, 0, tinygpu_options()).expect("connect the client");
    Target {
        name: "tinygpu",
        presented: Some(link.topology()),
        link: Box::new(link),
        device: Device::TinyGpu(server, dir),
    }
}

/// The server handing out each DMA buffer as one segment (the client refuses scattered ones;
/// see `a_scattered_tinygpu_buffer_is_refused_and_the_link_goes_on`).
fn tinygpu(gpu: GpuKind) -> Target {
    tinygpu_with(TinyGpuServerConfig::new(gpu).with_max_segments(1))
}

/// Run `test` against the front-ends that reach a fabric (bridges, several functions), also
/// through the remote link.
fn each_fabric_front_end(gpu: GpuKind, test: impl Fn(&mut Target)) {
    for mut target in [usb(gpu), in_process(gpu)].into_iter().chain(remotes(gpu)) {
        test(&mut target);
    }
}

/// Run `test` against every front-end with `gpu` in the slot, also through the remote link.
fn each_front_end(gpu: GpuKind, test: impl Fn(&mut Target)) {
    let local = [usb(gpu), in_process(gpu), tinygpu(gpu)];
    for mut target in local.into_iter().chain(remotes(gpu)) {
        test(&mut target);
    }
}

/// The fabric walk, or the function a single-function link presents.
fn bring_up(t: &mut Target, options: &FabricOptions) -> Topology {
    if let Some(presented) = &t.presented {
        return presented.clone();
    }
    fabric::bring_up(t.link.as_mut(), options).unwrap_or_else(|e| panic!("{}: {e}", t.name))
}

fn region(topology: &Topology, index: u8) -> BarRegion {
    let bar = topology.gpu().unwrap().bar(index).unwrap();
    BarRegion { address: bar.address, size: bar.size }
}

/// The GPU's register BAR (the one 32-bit BAR), where the emulator's copy engine lives.
fn mmio(topology: &Topology) -> BarRegion {
    let bar = topology.gpu().unwrap().bars.iter().find(|b| b.kind == BarKind::Mem32).unwrap();
    BarRegion { address: bar.address, size: bar.size }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

// ---- fabric walk ---------------------------------------------------------------------------

#[test]
fn the_fabric_walk_finds_each_card_behind_bridges_that_forward_its_bars() {
    for (gpu, ids) in [(GpuKind::Navi31, (0x1002, 0x744C)), (GpuKind::Ga102, (0x10DE, 0x2204))] {
        each_fabric_front_end(gpu, |t| {
            let topology = bring_up(t, &FabricOptions::default());
            let found = topology.gpu().unwrap_or_else(|| panic!("{}: no GPU", t.name));
            assert_eq!((found.vendor_id, found.device_id), ids, "{}", t.name);
            let path = topology.path_to(found.bdf);
            // One bridge per bus above the GPU, each on the bus its parent opened.
            assert_eq!(path.len(), usize::from(found.bdf.bus), "{}", t.name);
            for (depth, bridge) in path.iter().enumerate() {
                assert_eq!(bridge.bdf.bus, depth as u8, "{}: {}", t.name, bridge.bdf);
                let info = bridge.bridge.unwrap();
                assert!(info.secondary <= found.bdf.bus && found.bdf.bus <= info.subordinate);
                for bar in found.bars.iter().filter(|b| b.kind != BarKind::Io) {
                    let window = if bar.prefetchable { info.prefetchable } else { info.memory };
                    let (base, limit) = window.unwrap();
                    assert!(
                        base <= bar.address && bar.address + bar.size - 1 <= limit,
                        "{}: {} does not forward BAR{}",
                        t.name,
                        bridge.bdf,
                        bar.index
                    );
                }
            }
            if gpu == GpuKind::Navi31 {
                let ids: Vec<_> = path.iter().map(|f| (f.vendor_id, f.device_id)).collect();
                assert_eq!(
                    ids[ids.len() - 2..],
                    [(0x1002, 0x1478), (0x1002, 0x1479)],
                    "{}",
                    t.name
                );
            }
            let audio = Bdf::new(found.bdf.bus, found.bdf.device, 1);
            assert!(topology.get(audio).is_some(), "{}: the HDMI audio function", t.name);
        });
    }
}

#[test]
fn an_empty_slot_has_only_the_ports_above_it() {
    each_fabric_front_end(GpuKind::None, |t| {
        let topology = bring_up(t, &FabricOptions::default());
        assert!(topology.gpu().is_none(), "{}", t.name);
        assert!(!topology.functions.is_empty(), "{}: the ports still answer", t.name);
        assert!(topology.functions.iter().all(|f| f.bridge.is_some()), "{}", t.name);
    });
}

// ---- BAR sizing and Resizable BAR ---------------------------------------------------------

#[test]
fn bars_are_sized_with_their_types_and_naturally_aligned() {
    let expected = [
        (
            GpuKind::Navi31,
            vec![
                (0, BarKind::Mem64, true, 256 << 20),
                (2, BarKind::Mem64, true, 2 << 20),
                (5, BarKind::Mem32, false, 1 << 20),
            ],
        ),
        (
            GpuKind::Ga102,
            vec![
                (0, BarKind::Mem32, false, 16 << 20),
                (1, BarKind::Mem64, true, 256 << 20),
                (3, BarKind::Mem64, true, 32 << 20),
            ],
        ),
    ];
    let options = FabricOptions { max_resizable_bars: false, ..Default::default() };
    for (gpu, bars) in expected {
        each_fabric_front_end(gpu, |t| {
            let topology = bring_up(t, &options);
            let found = topology.gpu().unwrap();
            for &(index, kind, prefetchable, size) in &bars {
                let bar = found.bar(index).unwrap_or_else(|| panic!("{}: BAR{index}", t.name));
                assert_eq!((bar.kind, bar.prefetchable, bar.size), (kind, prefetchable, size));
                assert_eq!(bar.address % bar.size, 0, "{}: BAR{index} aligned", t.name);
            }
            assert!(found.bars.iter().any(|b| b.kind == BarKind::Io), "{}: I/O BAR seen", t.name);
        });
    }
}

/// The REBAR control register's size field, read back over config space: walks the extended
/// capability list from 0x100 (the REBAR capability is not first in it).
fn rebar_size_index(link: &mut dyn PcieLink, bdf: Bdf) -> u32 {
    let mut at = 0x100u16;
    for _ in 0..64 {
        let header = link.config_read32(bdf, at).unwrap();
        if header & 0xFFFF == 0x15 {
            return (link.config_read32(bdf, at + 8).unwrap() >> 8) & 0x1F;
        }
        at = (header >> 20) as u16;
        assert_ne!(at, 0, "no Resizable BAR capability on {bdf}");
    }
    panic!("extended capability list of {bdf} does not end");
}

#[test]
fn resizable_bar_is_grown_to_the_largest_size() {
    for (gpu, vram_bar) in [(GpuKind::Navi31, 0), (GpuKind::Ga102, 1)] {
        each_fabric_front_end(gpu, |t| {
            let topology = bring_up(t, &FabricOptions::default());
            let found = topology.gpu().unwrap();
            let vram = found.bar(vram_bar).unwrap();
            assert_eq!(vram.size, 32 << 30, "{}", t.name);
            assert_eq!(vram.address % vram.size, 0, "{}", t.name);
            // The device agrees: size encoding 15 = 2^(20+15) bytes.
            assert_eq!(rebar_size_index(t.link.as_mut(), found.bdf), 15, "{}", t.name);
            // The whole grown BAR decodes: its last dword is VRAM (24 GiB) or reads 0 past it.
            let mut bar = BarMmio::new(t.link.as_mut(), region(&topology, vram_bar));
            bar.write32(vram.size - 4, 0x1234_5678).unwrap();
            assert_eq!(bar.read32(vram.size - 4).unwrap(), 0, "{}: past 24 GiB of VRAM", t.name);
            bar.write32((24 << 30) - 4, 0x1234_5678).unwrap();
            assert_eq!(bar.read32((24 << 30) - 4).unwrap(), 0x1234_5678, "{}", t.name);
        });
    }
}

// ---- BAR access ------------------------------------------------------------------------------

#[test]
fn streaming_writes_and_reads_round_trip_through_vram() {
    each_front_end(GpuKind::Navi31, |t| {
        let topology = bring_up(t, &FabricOptions::default());
        let vram = region(&topology, 0);
        let data = pattern(3 << 20, 5);
        let mut bar = BarMmio::new(t.link.as_mut(), vram);
        bar.write_bytes(0x1000, data.clone()).unwrap();
        assert_eq!(bar.read(0x1000, data.len()).unwrap(), data, "{}", t.name);
        bar.flush().unwrap();
        // The device side agrees: the bytes really are in VRAM at that offset.
        assert_eq!(t.device.vram(0x1000, data.len()), data.to_vec(), "{}", t.name);
    });
}

#[test]
fn partial_and_coalesced_writes_land_where_they_should() {
    each_front_end(GpuKind::Navi31, |t| {
        let topology = bring_up(t, &FabricOptions::default());
        let vram = region(&topology, 0);
        let mut bar = BarMmio::new(t.link.as_mut(), vram);
        let mut batch = bar.batch();
        for i in 0..64u32 {
            batch.write32(0x2000 + 4 * u64::from(i), i * 3).unwrap();
        }
        batch.write32(0x9000, 0x0D00_BE11).unwrap();
        assert_eq!(batch.runs(), 2);
        batch.submit().unwrap();
        bar.flush().unwrap();
        let expected: Vec<u8> = (0..64u32).flat_map(|i| (i * 3).to_le_bytes()).collect();
        assert_eq!(t.device.vram(0x2000, 256), expected, "{}", t.name);
        assert_eq!(bar.read32(0x9000).unwrap(), 0x0D00_BE11, "{}", t.name);
        // A 1-byte write at +1 changes only that byte (byte enables).
        t.link.mem_write(vram.address + 0x9001, 1, 0xAB).unwrap();
        t.link.flush().unwrap();
        assert_eq!(t.device.vram(0x9000, 4), vec![0x11, 0xAB, 0x00, 0x0D], "{}", t.name);
    });
}

#[test]
fn a_read_nothing_decodes_is_an_unsupported_request() {
    each_front_end(GpuKind::Navi31, |t| {
        bring_up(t, &FabricOptions::default());
        let error = t.link.mem_read32(0x2000_0000_0000).unwrap_err();
        assert!(matches!(error, LinkError::UnsupportedRequest { .. }), "{}: {error}", t.name);
    });
}

// ---- GPU-visible memory, moved by the device ------------------------------------------------

/// Program the emulator's copy engine in one coalesced batch and return STATUS.
fn copy(link: &mut dyn PcieLink, mmio: BarRegion, src: u64, dst: u64, len: u32, flags: u32) -> u32 {
    let mut bar = BarMmio::new(link, mmio);
    let mut batch = bar.batch();
    batch
        .write32(ce::BASE + ce::SRC, src as u32)
        .unwrap()
        .write32(ce::BASE + ce::SRC + 4, (src >> 32) as u32)
        .unwrap()
        .write32(ce::BASE + ce::DST, dst as u32)
        .unwrap()
        .write32(ce::BASE + ce::DST + 4, (dst >> 32) as u32)
        .unwrap()
        .write32(ce::BASE + ce::LENGTH, len)
        .unwrap()
        .write32(ce::BASE + ce::FLAGS, flags)
        .unwrap()
        .write32(ce::BASE + ce::GO, 1)
        .unwrap();
    batch.submit().unwrap();
    bar.read32(ce::BASE + ce::STATUS).unwrap()
}

fn fence(link: &mut dyn PcieLink, mmio: BarRegion, address: u64, value: u32) -> u32 {
    let mut bar = BarMmio::new(link, mmio);
    let mut batch = bar.batch();
    batch
        .write32(ce::BASE + ce::FENCE_ADDR, address as u32)
        .unwrap()
        .write32(ce::BASE + ce::FENCE_ADDR + 4, (address >> 32) as u32)
        .unwrap()
        .write32(ce::BASE + ce::FENCE_VALUE, value)
        .unwrap()
        .write32(ce::BASE + ce::FENCE_GO, 1)
        .unwrap();
    batch.submit().unwrap();
    bar.read32(ce::BASE + ce::STATUS).unwrap()
}

#[test]
fn gpu_visible_memory_round_trips_through_vram_by_device_copies() {
    for gpu in [GpuKind::Navi31, GpuKind::Ga102] {
        each_front_end(gpu, |t| {
            let topology = bring_up(t, &FabricOptions::default());
            let mmio = mmio(&topology);
            let link = t.link.as_mut();
            let info = link.dma_info();
            let len = 48 << 10;
            let staging = link.dma_alloc(len as u64).unwrap();
            assert!(staging.size >= len as u64 && staging.size % info.granule == 0);

            // Host -> GPU-visible memory -> (device copy) -> VRAM.
            let data = pattern(len, 7);
            link.dma_write(&staging, 0, data.clone()).unwrap();
            link.flush().unwrap();
            let status =
                copy(link, mmio, staging.bus_address, 0x40_0000, len as u32, ce::FLAG_SRC_PCIE);
            assert_eq!(status, ce::STATUS_OK, "{}: copy into VRAM", t.name);
            assert_eq!(t.device.vram(0x40_0000, len), data.to_vec(), "{}", t.name);

            // VRAM -> (device copy) -> GPU-visible memory -> host, with the release the link
            // asks for (the USB bridge's F2 read waits for a write into its CQ page).
            let back = pattern(len, 99);
            let link = t.link.as_mut();
            BarMmio::new(&mut *link, region(&topology, if gpu == GpuKind::Navi31 { 0 } else { 1 }))
                .write_bytes(0x80_0000, back.clone())
                .unwrap();
            let status =
                copy(link, mmio, 0x80_0000, staging.bus_address, len as u32, ce::FLAG_DST_PCIE);
            assert_eq!(status, ce::STATUS_OK, "{}: copy out of VRAM", t.name);
            let pending = link.dma_read_begin(&staging, 0, len).unwrap();
            assert_eq!(pending.release.is_none(), info.host_reads_directly, "{}", t.name);
            if let Some(release) = pending.release {
                let status = fence(link, mmio, release.bus_address, release.value);
                assert_eq!(status, ce::STATUS_OK, "{}: release write", t.name);
            }
            assert_eq!(link.dma_read_finish(pending).unwrap(), back.to_vec(), "{}", t.name);
            link.dma_free(staging).unwrap();
        });
    }
}

#[test]
fn device_copies_obey_the_fabric_rules() {
    each_front_end(GpuKind::Navi31, |t| {
        let topology = bring_up(t, &FabricOptions::default());
        let mmio = mmio(&topology);
        let gpu = topology.gpu().unwrap().bdf;
        let link = t.link.as_mut();
        let staging = link.dma_alloc(4096).unwrap();
        let into_host =
            |link: &mut dyn PcieLink, dst: u64| copy(link, mmio, 0, dst, 4096, ce::FLAG_DST_PCIE);
        assert_eq!(into_host(link, staging.bus_address), ce::STATUS_OK, "{}", t.name);
        // Nothing host-side at 16 MiB on either front-end: the engine reports the failure.
        assert_eq!(into_host(link, 0x100_0000), ce::STATUS_ERROR, "{}", t.name);
        // Without bus mastering on the GPU nothing leaves it.
        let command = link.config_read16(gpu, 0x04).unwrap();
        link.config_write(gpu, 0x04, 2, u32::from(command & !0x4)).unwrap();
        assert_eq!(into_host(link, staging.bus_address), ce::STATUS_ERROR, "{}", t.name);
        link.config_write(gpu, 0x04, 2, u32::from(command)).unwrap();
        assert_eq!(into_host(link, staging.bus_address), ce::STATUS_OK, "{}", t.name);
    });
}

// ---- the TinyGPU link: one function instead of a fabric -------------------------------------

fn tinygpu_error(error: &LinkError) -> &TinyGpuError {
    error
        .transport_source::<TinyGpuError>()
        .unwrap_or_else(|| panic!("not a TinyGPU error: {error}"))
}

/// The analogue of the fabric walk and BAR sizing: the link presents the GPU at 00:00.0 with
/// the memory BARs the server mapped (MAP_BAR), typed from config space; the HDMI audio
/// function and everything else is out of its reach.
#[test]
fn the_tinygpu_link_presents_the_one_gpu_function_with_the_bars_the_server_mapped() {
    let expected = [
        (
            GpuKind::Navi31,
            (0x1002, 0x744C),
            vec![(0, BarKind::Mem64, true), (2, BarKind::Mem64, true), (5, BarKind::Mem32, false)],
        ),
        (
            GpuKind::Ga102,
            (0x10DE, 0x2204),
            vec![(0, BarKind::Mem32, false), (1, BarKind::Mem64, true), (3, BarKind::Mem64, true)],
        ),
    ];
    for (gpu, ids, bars) in expected {
        let mut t = tinygpu(gpu);
        let topology = bring_up(&mut t, &FabricOptions::default());
        assert_eq!(topology.functions.len(), 1);
        let found = topology.gpu().expect("the GPU");
        assert_eq!((found.vendor_id, found.device_id), ids);
        assert_eq!(found.bdf, Bdf::new(0, 0, 0));
        assert!(found.bridge.is_none() && topology.path_to(found.bdf).is_empty());
        let presented: Vec<_> =
            found.bars.iter().map(|b| (b.index, b.kind, b.prefetchable)).collect();
        assert_eq!(presented, bars, "{gpu:?}: I/O BARs are not mapped, memory BARs all are");
        // The sizes are the device's: config space agrees (BAR sizing by all-ones write).
        for bar in &found.bars {
            let register = 0x10 + 4 * u16::from(bar.index);
            let original = t.link.config_read32(found.bdf, register).unwrap();
            let high = if bar.kind == BarKind::Mem64 {
                Some(t.link.config_read32(found.bdf, register + 4).unwrap())
            } else {
                None
            };
            t.link.config_write(found.bdf, register, 4, 0xFFFF_FFFF).unwrap();
            let mut mask = u64::from(t.link.config_read32(found.bdf, register).unwrap() & !0xF);
            if high.is_some() {
                t.link.config_write(found.bdf, register + 4, 4, 0xFFFF_FFFF).unwrap();
                mask |= u64::from(t.link.config_read32(found.bdf, register + 4).unwrap()) << 32;
            } else {
                mask |= 0xFFFF_FFFF_0000_0000;
            }
            assert_eq!(!mask + 1, bar.size, "{gpu:?}: BAR{} size", bar.index);
            t.link.config_write(found.bdf, register, 4, original).unwrap();
            if let Some(high) = high {
                t.link.config_write(found.bdf, register + 4, 4, high).unwrap();
            }
        }
        // Every memory BAR decodes through the link at the base it presents (VRAM checked on
        // the device side).
        let vram = found.bar(if gpu == GpuKind::Navi31 { 0 } else { 1 }).unwrap();
        t.link.mem_write(vram.address + vram.size - 4, 4, 0x5EED_0001).unwrap();
        t.link.flush().unwrap();
        assert_eq!(t.device.vram(vram.size - 4, 4), 0x5EED_0001u32.to_le_bytes());
        // The audio function (and any other BDF) is refused by the link, not sent.
        let audio = Bdf::new(0, 0, 1);
        let error = t.link.config_read32(audio, 0).unwrap_err();
        assert!(matches!(error, LinkError::Config { .. }), "{error}");
    }
}

/// The analogue of the empty slot: with no GPU, the real app finds no `tinygpu` service and
/// nothing listens, so there is nothing to connect to.
#[test]
fn an_empty_slot_has_no_tinygpu_server_to_connect_to() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tinygpu.sock");
    let started = EmulatedTinyGpuServer::start(&socket, GpuKind::None);
    assert!(matches!(started, Err(TinyGpuServerError::NoGpu)), "{:?}", started.err());
    let error = TinyGpuLink::connect(&socket, 0, tinygpu_options()).err().expect("no server");
    assert!(matches!(tinygpu_error(&error), TinyGpuError::Connect { .. }), "{error}");
}

/// The server's default splits a buffer into up to 4 DMA segments with gaps (an `[U]` choice
/// of the emulator; §A.2 allows up to 32). The hal's region is one bus range, so the client
/// refuses such a buffer with `Scattered`, names the segments, and the link goes on.
#[test]
fn a_scattered_tinygpu_buffer_is_refused_and_the_link_goes_on() {
    let mut t = tinygpu_with(TinyGpuServerConfig::new(GpuKind::Navi31));
    let error = t.link.dma_alloc(64 << 10).unwrap_err();
    match tinygpu_error(&error) {
        TinyGpuError::Scattered { segments } => {
            assert!(segments.len() > 1, "{segments:?}");
            assert_eq!(segments.iter().map(|s| s.1).sum::<u64>(), 64 << 10, "{segments:?}");
        }
        other => panic!("expected Scattered, got {other}"),
    }
    // Still in step: config reads work and a one-segment buffer (16 KiB, the minimum) is
    // usable by the device.
    assert_eq!(t.link.config_read32(Bdf::new(0, 0, 0), 0).unwrap(), 0x744C_1002);
    let region = t.link.dma_alloc(16 << 10).unwrap();
    let Device::TinyGpu(server, _) = &t.device else { unreachable!() };
    server.gpu_dma_write(region.bus_address + 8, b"landed").unwrap();
    let pending = t.link.dma_read_begin(&region, 8, 6).unwrap();
    assert_eq!(t.link.dma_read_finish(pending).unwrap(), b"landed");
}

/// A server that dies in the middle of a transfer: each way is a typed error naming the
/// command (a closed connection, not a timeout: the client does not wait out its deadline),
/// and every later call fails at once asking to open the device again.
#[test]
fn a_tinygpu_server_dying_mid_transfer_is_a_typed_error_not_a_hang() {
    // Mid-reply: a 1 MiB MMIO_READ whose reply is cut after 64 KiB.
    let mut t = tinygpu(GpuKind::Navi31);
    let vram = region(&bring_up(&mut t, &FabricOptions::default()), 0);
    let Device::TinyGpu(server, _) = &t.device else { unreachable!() };
    server.inject(ServerFault::DieMidReply { requests: 0, bytes: 64 << 10 });
    let error = t.link.mem_read(vram.address, 1 << 20).unwrap_err();
    match tinygpu_error(&error) {
        TinyGpuError::Closed { received, expected, .. } => {
            assert!(received < expected, "{error}");
        }
        other => panic!("expected Closed, got {other}"),
    }
    assert!(!server.is_alive());
    let error = t.link.config_read32(Bdf::new(0, 0, 0), 0).unwrap_err();
    assert!(matches!(tinygpu_error(&error), TinyGpuError::OutOfStep { .. }), "{error}");

    // Mid-write: the server takes 4 KiB of a 4 MiB posted MMIO_WRITE and dies; the write
    // itself or the flush after it fails.
    let mut t = tinygpu(GpuKind::Navi31);
    let vram = region(&bring_up(&mut t, &FabricOptions::default()), 0);
    let Device::TinyGpu(server, _) = &t.device else { unreachable!() };
    server.inject(ServerFault::DieMidWrite { requests: 0, bytes: 4096 });
    let error = t
        .link
        .mem_write_bytes(vram.address, pattern(4 << 20, 3))
        .and_then(|()| t.link.flush())
        .unwrap_err();
    assert!(
        matches!(tinygpu_error(&error), TinyGpuError::Closed { .. }),
        "expected Closed, got {error}"
    );
    assert!(!server.is_alive());
    // And a new client finds nothing listening (the server is gone, as after an unplug).
    drop(t.link);
    let Device::TinyGpu(server, _dir) = t.device else { unreachable!() };
    let error = TinyGpuLink::connect(server.path(), 0, tinygpu_options()).err().unwrap();
    assert!(matches!(tinygpu_error(&error), TinyGpuError::Connect { .. }), "{error}");
}

// ---- counters ---------------------------------------------------------------------------------

/// Every front-end counts its messages the same way (`egpu bench link` compares them): a read
/// is one round trip, a posted write none until something waits for it, and the writes are
/// all sent by the flush.
#[test]
fn each_link_counts_one_round_trip_per_read_and_none_per_posted_write() {
    each_front_end(GpuKind::Navi31, |t| {
        let topology = bring_up(t, &FabricOptions::default());
        let gpu = topology.gpu().unwrap().bdf;
        let vram = region(&topology, 0);
        let link = t.link.as_mut();
        let counted = |link: &dyn PcieLink| link.counters().unwrap_or_else(|| panic!("{}", t.name));
        let start = counted(link);
        link.config_read32(gpu, 0).unwrap();
        assert_eq!((counted(link) - start).round_trips, 1, "{}: config read", t.name);
        let start = counted(link);
        link.mem_read32(vram.address).unwrap();
        let read = counted(link) - start;
        assert_eq!(read.round_trips, 1, "{}: dword read", t.name);
        assert!(read.bytes_in >= 4, "{}: {read:?}", t.name);
        let start = counted(link);
        for i in 0..10 {
            link.mem_write(vram.address + 4 * i, 4, 7).unwrap();
        }
        assert_eq!((counted(link) - start).round_trips, 0, "{}: posted writes", t.name);
        link.flush().unwrap();
        let writes = counted(link) - start;
        assert!(writes.requests >= 10 && writes.bytes_out >= 40, "{}: {writes:?}", t.name);
        assert!(writes.round_trips <= 1, "{}: the flush waits once at most", t.name);
        assert_eq!(t.device.vram(36, 4), 7u32.to_le_bytes(), "{}", t.name);
    });
}
