//! The protocol layer and the fabric bring-up against the emulated bridge (egpu-emu, written
//! from docs/reference/usb-bridge.md, not from this crate): every protocol path, and every
//! injected fault ending in a typed error rather than a panic or a hang.

use std::time::Duration;

use bytes::Bytes;
use egpu_emu::{BridgeConfig, CompletionStatus, EmulatedBridge, Fault, GpuKind};
use egpu_link::asm2464::wire::{LTSSM_L0, PCIE_CQ_PAGE, PCIE_SRAM_BASE, SRAM_SLOT_SIZE};
use egpu_link::pcie::bar::{BarMmio, BarRegion};
use egpu_link::pcie::fabric::{self, BarKind, FabricOptions, Topology};
use egpu_link::{Asm2464, Asm2464Config, Bdf, LinkError, PcieLink};
use egpu_usb::{UsbError, UsbSpeed};

type Link = Asm2464<egpu_emu::EmulatedUsb>;

fn fast_config() -> Asm2464Config {
    Asm2464Config {
        retry_backoff: Duration::ZERO,
        config_retry_backoff: Duration::from_millis(1),
        config_retry_timeout: Duration::from_millis(200),
        link_poll_interval: Duration::ZERO,
        ..Default::default()
    }
}

fn open(config: BridgeConfig) -> (EmulatedBridge, Link) {
    let emulator = EmulatedBridge::new(config);
    let link =
        Asm2464::open(emulator.transport(), fast_config()).expect("open the emulated bridge");
    (emulator, link)
}

fn up(gpu: GpuKind) -> (EmulatedBridge, Link, Topology) {
    let (emulator, mut link) = open(BridgeConfig::default().with_gpu(gpu));
    let topology = fabric::bring_up(&mut link, &FabricOptions::default()).expect("bring up");
    (emulator, link, topology)
}

fn region(topology: &Topology, index: u8) -> BarRegion {
    let bar = topology.gpu().unwrap().bar(index).unwrap();
    BarRegion { address: bar.address, size: bar.size }
}

fn bytes(len: usize, seed: u8) -> Bytes {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

// ---- identity and link ----------------------------------------------------------------

#[test]
fn open_powers_the_slot_and_brings_the_link_to_l0() {
    let emulator = EmulatedBridge::new(BridgeConfig::default());
    assert_ne!(emulator.ltssm(), LTSSM_L0, "custom firmware boots with PCIe off (§3 F3)");
    let mut link = Asm2464::open(emulator.transport(), fast_config()).unwrap();
    assert_eq!(emulator.ltssm(), LTSSM_L0);
    assert_eq!(link.ltssm().unwrap(), LTSSM_L0);
}

#[test]
fn a_slowly_training_link_is_polled_until_l0() {
    let config = BridgeConfig { link_training_polls: 5, ..Default::default() };
    let (emulator, _link) = open(config);
    assert_eq!(emulator.ltssm(), LTSSM_L0);
}

#[test]
fn a_link_that_never_trains_is_a_typed_error_with_advice() {
    let config = BridgeConfig { link_training_polls: u32::MAX, ..Default::default() };
    let emulator = EmulatedBridge::new(config);
    let mut link_config = fast_config();
    link_config.link_up_timeout = Duration::from_millis(50);
    link_config.link_poll_interval = Duration::from_millis(5);
    let error = Asm2464::open(emulator.transport(), link_config).err().unwrap();
    assert!(matches!(error, LinkError::LinkDown { .. }), "{error}");
    assert!(error.to_string().contains("power"), "{error}");
}

#[test]
fn stock_firmware_is_refused_with_flashing_advice() {
    let emulator = EmulatedBridge::new(BridgeConfig::default().with_stock_firmware());
    let error = Asm2464::open(emulator.transport(), fast_config()).err().unwrap();
    assert!(matches!(
        error,
        LinkError::StockFirmware { vendor_id: 0x174C, product_id: 0x2464, .. }
    ));
    assert!(error.to_string().contains("custom firmware"), "{error}");
}

#[test]
fn the_comma_vendor_id_is_accepted_and_the_legacy_patched_firmware_is_not() {
    let (_emulator, _link) = open(BridgeConfig::default().with_usb_ids(0x3801, 0x0001));
    // tinygrad's legacy patched stock firmware reuses the custom IDs but speaks SCSI: flash it.
    let emulator =
        EmulatedBridge::new(BridgeConfig::default().with_product("USB 3.2 PCIe TinyEnclosure"));
    let error = Asm2464::open(emulator.transport(), fast_config()).err().unwrap();
    assert!(matches!(error, LinkError::StockFirmware { vendor_id: 0xADD1, .. }), "{error}");
    assert!(error.to_string().contains("custom firmware"), "{error}");
    // An unknown revision of the custom firmware is driven, as `egpu list` promises.
    let (_emulator, _link) = open(BridgeConfig::default().with_product("custom-next v0.9"));
    let (_emulator, _link) = open(BridgeConfig::default().with_product("ASM2464 eGPU v2"));
}

#[test]
fn xdata_reads_and_writes_go_through_the_windows() {
    let (emulator, mut link) = open(BridgeConfig::default());
    link.xdata_write(0xF010, &[1, 2, 3, 4, 5]).unwrap();
    // §1.2: XDATA 0xF000 is a window onto SRAM offset 0.
    assert_eq!(emulator.sram(0x10, 5), vec![1, 2, 3, 4, 5]);
    emulator.set_sram(0x200, &[0xA5; 700]);
    assert_eq!(link.xdata_read(0xF200, 700).unwrap(), vec![0xA5; 700]);
}

#[test]
fn usb2_high_speed_limits_e4_chunks_to_64_bytes() {
    let config = BridgeConfig { speed: UsbSpeed::High, ..Default::default() };
    let (emulator, mut link) = open(config);
    emulator.set_sram(0, &[7; 200]);
    let before = link.stats();
    assert_eq!(link.xdata_read(0xF000, 200).unwrap(), vec![7; 200]);
    assert_eq!((link.stats() - before).control_in, 4, "ceil(200 / 64) E4 reads");
}

// ---- fabric -----------------------------------------------------------------------------

#[test]
fn navi31_is_found_behind_its_own_switch_and_its_vram_bar_grown() {
    let (_emulator, _link, topology) = up(GpuKind::Navi31);
    let gpu = topology.gpu().expect("a GPU");
    assert_eq!((gpu.vendor_id, gpu.device_id), (0x1002, 0x744C));
    assert_eq!(gpu.bdf, Bdf::new(4, 0, 0), "ASMedia ports on buses 0-1, AMD switch on 2-3");
    let path: Vec<Bdf> = topology.path_to(gpu.bdf).iter().map(|f| f.bdf).collect();
    assert_eq!(
        path,
        vec![Bdf::new(0, 0, 0), Bdf::new(1, 0, 0), Bdf::new(2, 0, 0), Bdf::new(3, 0, 0)]
    );
    assert!(topology.get(Bdf::new(4, 0, 1)).is_some(), "the HDMI audio function");

    let vram = gpu.bar(0).unwrap();
    assert_eq!(vram.kind, BarKind::Mem64);
    assert!(vram.prefetchable);
    assert_eq!(vram.size, 32 << 30, "Resizable BAR grown to the largest size");
    assert_eq!(vram.address % vram.size, 0, "naturally aligned");
    assert!(vram.address >= 0x8_0000_0000, "in the 64-bit prefetchable pool");
    let mmio = gpu.bar(5).unwrap();
    assert_eq!((mmio.kind, mmio.prefetchable, mmio.size), (BarKind::Mem32, false, 1 << 20));
    assert!(
        gpu.bars.iter().any(|bar| bar.kind == BarKind::Io),
        "the I/O BAR is seen and left alone"
    );

    // Every bridge on the path forwards the GPU's BARs.
    for bridge in topology.path_to(gpu.bdf) {
        let info = bridge.bridge.unwrap();
        let (base, limit) = info.prefetchable.unwrap();
        assert!(base <= vram.address && vram.address + vram.size - 1 <= limit, "{}", bridge.bdf);
        let (base, limit) = info.memory.unwrap();
        assert!(base <= mmio.address && mmio.address + mmio.size - 1 <= limit, "{}", bridge.bdf);
        assert!(info.secondary <= 4 && 4 <= info.subordinate);
    }
}

#[test]
fn ga102_sits_directly_below_the_asmedia_ports() {
    let (_emulator, _link, topology) = up(GpuKind::Ga102);
    let gpu = topology.gpu().unwrap();
    assert_eq!((gpu.vendor_id, gpu.device_id, gpu.bdf), (0x10DE, 0x2204, Bdf::new(2, 0, 0)));
    assert_eq!(gpu.bar(1).unwrap().size, 32 << 30);
    assert_eq!(gpu.bar(0).unwrap().size, 16 << 20);
}

#[test]
fn an_empty_slot_has_no_gpu() {
    let (_emulator, _link, topology) = up(GpuKind::None);
    assert!(topology.gpu().is_none());
    assert!(!topology.functions.is_empty(), "the ASMedia ports still answer");
}

#[test]
fn resizable_bar_can_be_left_alone() {
    let (_emulator, mut link) = open(BridgeConfig::default());
    let options = FabricOptions { max_resizable_bars: false, ..Default::default() };
    let topology = fabric::bring_up(&mut link, &options).unwrap();
    assert_eq!(topology.gpu().unwrap().bar(0).unwrap().size, 256 << 20);
}

// ---- BAR access ---------------------------------------------------------------------------

#[test]
fn streaming_writes_and_reads_round_trip_through_vram() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    let data = bytes(3 << 20, 5);
    BarMmio::new(&mut link, vram).write_bytes(0x1000, data.clone()).unwrap();
    assert_eq!(BarMmio::new(&mut link, vram).read(0x1000, data.len()).unwrap(), data);
    // The device side agrees: the bytes really are in VRAM at that offset.
    assert_eq!(emulator.vram(0x1000, 64), data[..64].to_vec());
    assert_eq!(
        emulator.vram(0x1000 + data.len() as u64 - 64, 64),
        data[data.len() - 64..].to_vec()
    );
}

#[test]
fn checked_single_reads_and_partial_writes() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.set_vram(0x40, &0x1122_3344u32.to_le_bytes());
    assert_eq!(BarMmio::new(&mut link, vram).read32(0x40).unwrap(), 0x1122_3344);
    // A 1-byte write at +1 changes only that byte (byte enables, §4.1).
    link.mem_write(vram.address + 0x41, 1, 0xAB).unwrap();
    link.flush().unwrap();
    assert_eq!(emulator.vram(0x40, 4), vec![0x44, 0xAB, 0x22, 0x11]);
}

#[test]
fn bar_access_is_bounds_and_alignment_checked() {
    let (_emulator, mut link, topology) = up(GpuKind::Navi31);
    let mmio = region(&topology, 5);
    let mut bar = BarMmio::new(&mut link, mmio);
    assert!(matches!(bar.read32(2), Err(LinkError::Unaligned { .. })));
    assert!(matches!(bar.read(mmio.size - 4, 8), Err(LinkError::OutOfRange { .. })));
    assert!(matches!(bar.write(0, &[1, 2, 3]), Err(LinkError::Unaligned { .. })));
}

#[test]
fn adjacent_writes_are_coalesced_into_one_stream() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    let before = link.stats();
    let mut bar = BarMmio::new(&mut link, vram);
    let mut batch = bar.batch();
    for i in 0..64u32 {
        batch.write32(0x2000 + 4 * u64::from(i), i * 3).unwrap();
    }
    batch.write32(0x9000, 0x0D00_BE11).unwrap();
    assert_eq!(batch.runs(), 2);
    batch.submit().unwrap();
    bar.flush().unwrap();
    let used = link.stats() - before;
    assert_eq!(
        used.transfers(),
        3,
        "one F0 arm + one bulk OUT for the run, one F0 for the lone write"
    );
    assert_eq!(emulator.vram(0x2000 + 4 * 63, 4), (63u32 * 3).to_le_bytes().to_vec());
    assert_eq!(emulator.vram(0x9000, 4), 0x0D00_BE11_u32.to_le_bytes().to_vec());
}

#[test]
fn writes_below_4_gib_use_3dw_headers() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let mmio = region(&topology, 5);
    assert!(mmio.address < 1 << 32);
    let before = emulator.stats().tlps_4dw_below_4gib;
    BarMmio::new(&mut link, mmio).write(0x100, &[0u8; 64]).unwrap();
    BarMmio::new(&mut link, mmio).read32(0x100).unwrap();
    link.flush().unwrap();
    assert_eq!(emulator.stats().tlps_4dw_below_4gib, before, "§4.1: no 4DW header below 4 GiB");
}

// ---- SRAM DMA (F2) ---------------------------------------------------------------------

#[test]
fn sram_writes_land_in_their_slot() {
    let (emulator, mut link) = open(BridgeConfig::default());
    let data = bytes(40_000, 9); // not a multiple of 512: padded to whole sectors
    link.sram_write(3, data.clone()).unwrap();
    link.flush().unwrap();
    let offset = 3 * SRAM_SLOT_SIZE as u32;
    assert_eq!(emulator.sram(offset, data.len()), data.to_vec());
    let before = link.stats();
    link.sram_write(16, bytes(256 << 10, 1)).unwrap();
    link.flush().unwrap();
    assert_eq!(
        (link.stats() - before).transfers(),
        2,
        "256 KiB of SRAM DMA = F2 arm + one bulk OUT"
    );
}

#[test]
fn sram_reads_wait_for_the_gpu_release_and_start_at_slot_0() {
    // The GPU may only write upstream once the fabric enabled bus mastering.
    let (emulator, mut link, _topology) = up(GpuKind::Navi31);
    let data = bytes(100 << 10, 3);
    emulator.set_sram(0, &data);
    let pending = link.arm_sram_read(data.len()).unwrap();
    // The GPU's write into the completion-queue page releases the read (§4.7).
    emulator.gpu_dma_write(PCIE_CQ_PAGE + 12, &0u32.to_le_bytes()).unwrap();
    assert_eq!(link.finish_sram_read(pending).unwrap(), data.to_vec());
}

#[test]
fn an_unreleased_sram_read_times_out_and_the_link_recovers() {
    let (_emulator, mut link) = open(BridgeConfig::default());
    let pending = link.arm_sram_read(4096).unwrap();
    let error = link.finish_sram_read(pending).unwrap_err();
    assert!(
        matches!(error.transport_source::<UsbError>(), Some(UsbError::Timeout { .. })),
        "{error}"
    );
    // The next operation resets the interface first and works.
    assert_eq!(link.ltssm().unwrap(), LTSSM_L0);
}

#[test]
fn gpu_dma_outside_sram_and_the_queue_pages_is_rejected() {
    let (emulator, _link, _topology) = up(GpuKind::Navi31);
    assert!(emulator.gpu_dma_write(PCIE_SRAM_BASE + 0x100, &[1, 2, 3, 4]).is_ok());
    assert!(emulator.gpu_dma_write(0x4000_0000, &[1, 2, 3, 4]).is_err());
}

#[test]
fn delayed_visibility_is_modelled_for_bulk_out_data() {
    let config = BridgeConfig { visibility_delay: 3, ..Default::default() };
    let (emulator, mut link) = open(config);
    link.sram_write(0, bytes(512, 1)).unwrap();
    link.flush().unwrap();
    // Completion of the bulk OUT on USB does not mean the GPU can see the bytes (§4.6).
    assert_eq!(emulator.sram(0, 4), vec![0; 4]);
    for _ in 0..4 {
        link.ltssm().unwrap();
    }
    assert_eq!(emulator.sram(0, 512), bytes(512, 1).to_vec());
}

// ---- injected faults ---------------------------------------------------------------------

#[test]
fn engine_errors_are_retried_within_the_bound() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let gpu = topology.gpu().unwrap().bdf;
    emulator.inject(Fault::F0RetStatus { status: 1, times: 3 });
    assert_eq!(link.config_read16(gpu, 0).unwrap(), 0x1002);
    emulator.inject(Fault::F0RetStatus { status: 0xFF, times: 50 });
    let error = link.config_read16(gpu, 0).unwrap_err();
    assert!(
        matches!(error, LinkError::TlpFailed { attempts: 11, ret_status: 0xFF, .. }),
        "{error}"
    );
    emulator.clear_faults();
    assert_eq!(link.config_read16(gpu, 2).unwrap(), 0x744C);
}

#[test]
fn unsupported_request_and_completer_abort_fail_at_once() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.inject(Fault::Completion { status: CompletionStatus::UnsupportedRequest, times: 1 });
    assert!(matches!(link.mem_read32(vram.address), Err(LinkError::UnsupportedRequest { .. })));
    emulator.inject(Fault::Completion { status: CompletionStatus::CompleterAbort, times: 1 });
    let error = link.mem_read32(vram.address).unwrap_err();
    assert!(matches!(error, LinkError::CompleterAbort { .. }), "{error}");
    // A read of an address no BAR decodes is a UR from the fabric itself.
    assert!(matches!(link.mem_read32(0x2000_0000_0000), Err(LinkError::UnsupportedRequest { .. })));
}

#[test]
fn config_retry_status_is_retried_then_bounded() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let gpu = topology.gpu().unwrap().bdf;
    emulator.inject(Fault::ConfigRetry { reads: 5 });
    assert_eq!(link.config_read16(gpu, 0).unwrap(), 0x1002);
    emulator.inject(Fault::ConfigRetry { reads: 1000 });
    assert!(matches!(link.config_read16(gpu, 0), Err(LinkError::ConfigRetry { .. })));
}

#[test]
fn a_link_drop_turns_tlps_into_errors_and_power_on_recovers() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let gpu = topology.gpu().unwrap().bdf;
    emulator.inject(Fault::LinkDown);
    assert!(matches!(link.config_read16(gpu, 0), Err(LinkError::TlpFailed { .. })));
    assert_ne!(link.ltssm().unwrap(), LTSSM_L0);
    link.power_on().unwrap();
    assert_eq!(link.ltssm().unwrap(), LTSSM_L0);
}

#[test]
fn unplugging_mid_stream_is_a_disconnect_error() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.inject(Fault::DisconnectAfter { transfers: 2 });
    let result =
        BarMmio::new(&mut link, vram).write_bytes(0, bytes(8 << 20, 1)).and_then(|_| link.flush());
    let error = result.unwrap_err();
    match error.transport_source::<UsbError>() {
        Some(source) => assert!(source.is_disconnect(), "{error}"),
        None => panic!("expected a USB disconnect, got {error}"),
    }
    assert!(link.ltssm().is_err(), "the device stays gone");
}

#[test]
fn stalls_and_timeouts_are_reported_and_recovered_from() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.inject(Fault::Stall { endpoint: 0x02 });
    let error =
        BarMmio::new(&mut link, vram).write(0, &[0u8; 64]).and_then(|_| link.flush()).unwrap_err();
    assert!(
        matches!(error.transport_source::<UsbError>(), Some(UsbError::Stall { .. })),
        "{error}"
    );
    emulator.inject(Fault::Timeout { endpoint: 0x81 });
    let error = BarMmio::new(&mut link, vram).read(0, 64).unwrap_err();
    assert!(
        matches!(error.transport_source::<UsbError>(), Some(UsbError::Timeout { .. })),
        "{error}"
    );
    // After both, the session heals itself.
    BarMmio::new(&mut link, vram).write(0, &[9u8; 64]).unwrap();
    assert_eq!(BarMmio::new(&mut link, vram).read(0, 64).unwrap(), vec![9u8; 64]);
}

#[test]
fn short_bulk_in_is_an_error_not_truncated_data() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.inject(Fault::ShortBulkIn { bytes: 16 });
    let error = BarMmio::new(&mut link, vram).read(0, 4096).unwrap_err();
    assert!(matches!(error, LinkError::ShortReply { expected: 4096, actual: 16, .. }), "{error}");
}

#[test]
fn streaming_reads_return_garbage_silently_but_checked_reads_do_not() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.set_vram(0, &[0x5A; 16]);
    emulator.inject(Fault::GarbageStreamingReads { times: 4 });
    // §4.5: mode 2 has no error path; the data is simply wrong.
    assert_ne!(BarMmio::new(&mut link, vram).read(0, 16).unwrap(), vec![0x5A; 16]);
    assert_eq!(BarMmio::new(&mut link, vram).read32(0).unwrap(), 0x5A5A_5A5A);
}

#[test]
fn an_armed_sram_read_owns_the_bulk_in_endpoint() {
    let (emulator, mut link, topology) = up(GpuKind::Navi31);
    let vram = region(&topology, 0);
    emulator.set_sram(0, &[0x33; 1024]);
    let pending = link.arm_sram_read(1024).unwrap();
    // A streaming read's data would complete the armed F2 transfer instead (§4.7): refused.
    let error = BarMmio::new(&mut link, vram).read(0, 64).unwrap_err();
    assert!(matches!(error, LinkError::Busy { .. }), "{error}");
    assert!(matches!(link.sram_write(0, bytes(512, 1)), Err(LinkError::Busy { .. })));
    // Checked single reads use EP0 only and still work.
    BarMmio::new(&mut link, vram).read32(0).unwrap();
    emulator.gpu_dma_write(PCIE_CQ_PAGE + 12, &[0; 4]).unwrap();
    assert_eq!(link.finish_sram_read(pending).unwrap(), vec![0x33; 1024]);
    BarMmio::new(&mut link, vram).read(0, 64).unwrap();
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let emulator = EmulatedBridge::new(BridgeConfig::default());
    let config = Asm2464Config { stream_chunk: 1000, ..fast_config() };
    let error = Asm2464::open(emulator.transport(), config).err().unwrap();
    assert!(matches!(error, LinkError::InvalidConfig(_)), "{error}");
    let config = Asm2464Config { stream_depth: 0, ..fast_config() };
    assert!(matches!(
        Asm2464::open(emulator.transport(), config),
        Err(LinkError::InvalidConfig(_))
    ));
}

// ---- GPU-visible memory through the link trait (bridge SRAM, usb-bridge.md §1.3, §6) -------

#[test]
fn gpu_visible_memory_is_sram_slots_written_by_f2_and_read_after_the_release() {
    // The release is a GPU write upstream, which needs the bus mastering the fabric enables.
    let (emulator, mut link, _topology) = up(GpuKind::Navi31);
    let info = link.dma_info();
    assert_eq!((info.total_bytes, info.granule), (512 << 10, SRAM_SLOT_SIZE as u64));
    assert!(!info.host_reads_directly);
    let first = link.dma_alloc(1).unwrap();
    let second = link.dma_alloc(3 * SRAM_SLOT_SIZE as u64 - 100).unwrap();
    assert_eq!((first.bus_address, first.size), (PCIE_SRAM_BASE, SRAM_SLOT_SIZE as u64));
    assert_eq!(second.bus_address, PCIE_SRAM_BASE + SRAM_SLOT_SIZE as u64);
    assert_eq!(second.size, 3 * SRAM_SLOT_SIZE as u64);

    // Host -> region: the device sees the bytes at the region's bus address.
    let data = bytes(20_000, 9);
    link.dma_write(&second, SRAM_SLOT_SIZE as u64, data.clone()).unwrap();
    link.flush().unwrap();
    let device_offset = (second.bus_address - PCIE_SRAM_BASE) as u32 + SRAM_SLOT_SIZE as u32;
    assert_eq!(emulator.sram(device_offset, data.len()), data.to_vec());

    // Region -> host: nothing arrives until the device makes the release write.
    let pending = link.dma_read_begin(&second, SRAM_SLOT_SIZE as u64, data.len()).unwrap();
    let release = pending.release.expect("the bridge needs a release write");
    assert_eq!(release.bus_address, PCIE_CQ_PAGE + 12);
    emulator.gpu_dma_write(release.bus_address, &release.value.to_le_bytes()).unwrap();
    assert_eq!(link.dma_read_finish(pending).unwrap(), data.to_vec());

    // Misuse is refused, and freed slots are reused.
    assert!(matches!(
        link.dma_write(&second, 100, Bytes::from_static(&[0; 4])),
        Err(LinkError::Unaligned { .. })
    ));
    assert!(matches!(link.dma_alloc(512 << 10), Err(LinkError::Busy { .. })));
    link.dma_free(first).unwrap();
    assert!(link.dma_free(first).is_err(), "a double free is refused");
    assert_eq!(link.dma_alloc(SRAM_SLOT_SIZE as u64).unwrap().bus_address, PCIE_SRAM_BASE);
}
