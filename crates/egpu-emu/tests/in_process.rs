//! The in-process link on its own: config and memory requests by hand through the
//! `PcieLink` trait (no driver crate), GPU-visible host memory, the fabric's upstream rules
//! for device DMA into it, and misuse ending in typed errors. The shared PCIe tests that run
//! against both front-ends live in egpu-link's tests/both_front_ends.rs.

use bytes::Bytes;
use egpu_emu::map::{HOST_APERTURE_BASE, HOST_APERTURE_SIZE, HOST_GRANULE};
use egpu_emu::{DmaError, EmulatedFabric, FabricConfig, GpuKind};
use egpu_hal::{Bdf, DmaRegion, LinkError, PcieLink};

const ROOT: Bdf = Bdf::new(0, 0, 0);
const GA102: Bdf = Bdf::new(1, 0, 0);
const MMIO_BAR: u64 = 0x1000_0000;

/// GA102 behind the root port: bus numbers, a 32-bit window 0x1000_0000..0x1FFF_FFFF,
/// BAR0 (MMIO) at its base, COMMAND.MEM (not bus mastering) on both.
fn ga102_up(link: &mut dyn PcieLink) {
    link.config_write(ROOT, 0x18, 4, (1 << 16) | (1 << 8)).unwrap();
    link.config_write(ROOT, 0x20, 4, 0x1FF0_1000).unwrap();
    link.config_write(ROOT, 0x04, 2, 0x02).unwrap();
    link.config_write(GA102, 0x10, 4, MMIO_BAR as u32).unwrap();
    link.config_write(GA102, 0x04, 2, 0x02).unwrap();
}

#[test]
fn identity_and_config_routing() {
    let fabric = EmulatedFabric::with_gpu(GpuKind::Ga102);
    let mut link = fabric.link();
    assert_eq!(link.kind(), "emulated");
    // A root port (type-1 header) on bus 0.
    assert_eq!(link.config_read32(ROOT, 0).unwrap(), 0x000C_1B36);
    assert_eq!(link.config_read(ROOT, 0x0E, 1).unwrap() & 0x7F, 1);
    assert_eq!(link.config_read(ROOT, 0x02, 2).unwrap(), 0x000C);
    // Bus 1 is unreachable until the root port's bus numbers are programmed.
    assert!(matches!(link.config_read32(GA102, 0), Err(LinkError::UnsupportedRequest { .. })));
    ga102_up(&mut link);
    assert_eq!(link.config_read16(GA102, 0).unwrap(), 0x10DE);
    assert_eq!(link.config_read16(GA102, 2).unwrap(), 0x2204);
    // Sizes other than 1, 2, 4 and accesses across a dword are refused.
    assert!(matches!(link.config_read(GA102, 0x03, 2), Err(LinkError::Unaligned { .. })));
    assert!(matches!(link.config_read(GA102, 0x00, 3), Err(LinkError::Unaligned { .. })));
    assert!(matches!(link.config_write(GA102, 0x02, 4, 0), Err(LinkError::Unaligned { .. })));
}

#[test]
fn memory_requests_reach_a_bar_only_through_the_window() {
    let fabric = EmulatedFabric::with_gpu(GpuKind::Ga102);
    let mut link = fabric.link();
    ga102_up(&mut link);
    link.mem_write_bytes(MMIO_BAR + 0x100, Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8])).unwrap();
    assert_eq!(link.mem_read(MMIO_BAR + 0x100, 8).unwrap(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
    // 2 bytes at +2 of a dword: byte enables 0b1100.
    link.mem_write(MMIO_BAR + 0x102, 2, 0xBEEF).unwrap();
    assert_eq!(link.mem_read32(MMIO_BAR + 0x100).unwrap(), 0xBEEF_0201);
    assert!(matches!(link.mem_write(MMIO_BAR + 3, 2, 0), Err(LinkError::Unaligned { .. })));
    assert!(matches!(link.mem_read(MMIO_BAR + 2, 8), Err(LinkError::Unaligned { .. })));
    // Past BAR0's 16 MiB, still inside the window: nothing decodes it.
    let beyond = MMIO_BAR + (16 << 20);
    assert!(matches!(link.mem_read32(beyond), Err(LinkError::UnsupportedRequest { .. })));
    assert!(matches!(link.mem_read(beyond - 8, 16), Err(LinkError::UnsupportedRequest { .. })));
    let before = fabric.stats().posted_writes_dropped;
    link.mem_write_bytes(beyond - 8, Bytes::from(vec![7u8; 16])).unwrap();
    assert_eq!(fabric.stats().posted_writes_dropped, before + 2, "the two undecoded dwords");
    // Taking COMMAND.MEM off the root port stops everything below it.
    link.config_write(ROOT, 0x04, 2, 0x00).unwrap();
    assert!(matches!(link.mem_read32(MMIO_BAR), Err(LinkError::UnsupportedRequest { .. })));
}

#[test]
fn gpu_visible_memory_is_allocated_first_fit_in_the_host_aperture() {
    let fabric = EmulatedFabric::with_gpu(GpuKind::Navi31);
    let mut link = fabric.link();
    let info = link.dma_info();
    assert!(info.host_reads_directly);
    assert_eq!((info.total_bytes, info.granule), (HOST_APERTURE_SIZE, HOST_GRANULE));
    let a = link.dma_alloc(1).unwrap();
    let b = link.dma_alloc(3 * HOST_GRANULE - 7).unwrap();
    assert_eq!((a.bus_address, a.size), (HOST_APERTURE_BASE, HOST_GRANULE));
    assert_eq!((b.bus_address, b.size), (HOST_APERTURE_BASE + HOST_GRANULE, 3 * HOST_GRANULE));
    link.dma_free(a).unwrap();
    assert!(link.dma_free(a).is_err(), "a double free is refused");
    assert_eq!(link.dma_alloc(HOST_GRANULE).unwrap().bus_address, HOST_APERTURE_BASE);
    // A region the link never handed out, and ranges outside a region, are refused.
    let forged = DmaRegion { id: 99, ..b };
    assert!(link.dma_write(&forged, 0, Bytes::from_static(&[0; 4])).is_err());
    assert!(matches!(
        link.dma_write(&b, b.size - 2, Bytes::from_static(&[0; 4])),
        Err(LinkError::OutOfRange { .. })
    ));
    assert!(matches!(link.dma_read_begin(&b, b.size, 1), Err(LinkError::OutOfRange { .. })));
    assert!(matches!(link.dma_alloc(HOST_APERTURE_SIZE), Err(LinkError::Busy { .. })));
    assert!(matches!(link.dma_alloc(u64::MAX), Err(LinkError::Busy { .. })));
    // The host reads back what it wrote, at any offset, with no release.
    link.dma_write(&b, 5, Bytes::from_static(b"host")).unwrap();
    let pending = link.dma_read_begin(&b, 4, 6).unwrap();
    assert_eq!(pending.release, None);
    assert_eq!(link.dma_read_finish(pending).unwrap(), b"\0host\0");
}

#[test]
fn device_dma_lands_in_host_memory_under_the_fabric_rules() {
    let fabric = EmulatedFabric::with_gpu(GpuKind::Ga102);
    let mut link = fabric.link();
    let region = link.dma_alloc(8192).unwrap();
    let at = region.bus_address + 0x10;
    ga102_up(&mut link);
    // COMMAND.MEM only: the GPU may not master the bus.
    assert!(matches!(
        fabric.gpu_dma_write(at, &[1, 2, 3, 4]),
        Err(DmaError::BusMasterDisabled { ref device, .. }) if device.contains("2204")
    ));
    // With mastering on the GPU, the root port still does not forward upstream.
    link.config_write(GA102, 0x04, 2, 0x06).unwrap();
    assert!(matches!(
        fabric.gpu_dma_write(at, &[1, 2, 3, 4]),
        Err(DmaError::BusMasterDisabled { ref device, .. }) if device.contains("root port")
    ));
    link.config_write(ROOT, 0x04, 2, 0x06).unwrap();
    fabric.gpu_dma_write(at, &[1, 2, 3, 4]).unwrap();
    assert_eq!(fabric.host_memory(at, 4), Some(vec![1, 2, 3, 4]));
    let pending = link.dma_read_begin(&region, 0x10, 4).unwrap();
    assert_eq!(link.dma_read_finish(pending).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(fabric.gpu_dma_read(at, 4).unwrap(), vec![1, 2, 3, 4]);
    // An address the root port's window claims would go peer to peer.
    assert!(matches!(fabric.gpu_dma_write(MMIO_BAR, &[0; 4]), Err(DmaError::PeerToPeer { .. })));
    // Past the region, or in a freed one: nothing host-side holds it.
    let end = region.bus_address + region.size;
    assert!(matches!(fabric.gpu_dma_write(end - 2, &[0; 4]), Err(DmaError::NoHostMemory { .. })));
    link.dma_free(region).unwrap();
    assert!(matches!(fabric.gpu_dma_write(at, &[0; 4]), Err(DmaError::NoHostMemory { .. })));
    let stats = fabric.stats();
    assert_eq!((stats.gpu_dma_requests, stats.gpu_dma_bytes), (2, 8));
    assert_eq!(stats.gpu_dma_rejected, 5);
}

#[test]
fn crs_after_an_flr_is_retried_within_a_bound() {
    // GA102's PCIe capability is at 0x58; DevCtl at +8, bit 15 initiates an FLR.
    let flr = |link: &mut dyn PcieLink| link.config_write(GA102, 0x58 + 8, 2, 0x8000).unwrap();
    let config = FabricConfig { crs_reads_after_reset: 10, ..Default::default() };
    let fabric = EmulatedFabric::new(config.with_gpu(GpuKind::Ga102));
    let mut link = fabric.link();
    ga102_up(&mut link);
    flr(&mut link);
    // The FLR put the header back: BAR0 and COMMAND are cleared; CRS was retried away.
    assert_eq!(link.config_read32(GA102, 0x10).unwrap(), 0);
    assert_eq!(link.config_read16(GA102, 0x04).unwrap(), 0);

    let config = FabricConfig { crs_reads_after_reset: 1000, ..Default::default() };
    let fabric = EmulatedFabric::new(config.with_gpu(GpuKind::Ga102));
    let mut link = fabric.link();
    ga102_up(&mut link);
    flr(&mut link);
    assert!(matches!(link.config_read32(GA102, 0), Err(LinkError::ConfigRetry { .. })));
}

#[test]
fn an_empty_slot_has_no_gpu_to_act_as() {
    let fabric = EmulatedFabric::with_gpu(GpuKind::None);
    assert!(matches!(fabric.gpu_dma_write(HOST_APERTURE_BASE, &[0]), Err(DmaError::NoGpu { .. })));
    assert_eq!(fabric.vram(0, 4), vec![0; 4]);
    let mut link = fabric.link();
    link.config_write(ROOT, 0x18, 4, 1 << 8 | 1 << 16).unwrap();
    assert!(matches!(link.config_read32(GA102, 0), Err(LinkError::UnsupportedRequest { .. })));
}
