//! §4.6, §4.7, §6, §7, §12.4, §12.5: the F2 engine, the CQ release, the copy engine stand-in,
//! upstream DMA rules and the visibility delay.

mod common;

use std::time::Duration;

use common::*;
use egpu_emu::{copy_engine as ce, BridgeConfig, DmaError, GpuKind};
use egpu_usb::{Completion, UsbError, UsbTransport};

const MMIO_BAR: u64 = 0x1000_0000;
const SLOT: usize = 16 << 10;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519).wrapping_add(seed) >> 11) as u8)
        .collect()
}

fn ce_write(host: &mut Host, reg: u64, value: u32) {
    host.mem_write32(MMIO_BAR + ce::BASE + reg, value);
}

fn ce_read(host: &mut Host, reg: u64) -> u32 {
    host.mem_read32(MMIO_BAR + ce::BASE + reg).data
}

/// Program and run one copy with single-TLP writes.
fn ce_copy(host: &mut Host, src: u64, dst: u64, len: u32, flags: u32) -> u32 {
    ce_write(host, ce::SRC, src as u32);
    ce_write(host, ce::SRC + 4, (src >> 32) as u32);
    ce_write(host, ce::DST, dst as u32);
    ce_write(host, ce::DST + 4, (dst >> 32) as u32);
    ce_write(host, ce::LENGTH, len);
    ce_write(host, ce::FLAGS, flags);
    ce_write(host, ce::GO, 1);
    assert_eq!(ce_read(host, ce::GO), 0, "GO reads 0 after the copy ran");
    ce_read(host, ce::STATUS)
}

fn ce_fence(host: &mut Host, addr: u64, value: u32) -> u32 {
    ce_write(host, ce::FENCE_ADDR, addr as u32);
    ce_write(host, ce::FENCE_ADDR + 4, (addr >> 32) as u32);
    ce_write(host, ce::FENCE_VALUE, value);
    ce_write(host, ce::FENCE_GO, 1);
    ce_read(host, ce::STATUS)
}

fn navi() -> Host {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host
}

#[test]
fn f2_write_lands_in_the_start_slot() {
    let mut host = navi();
    let data = pattern(4096, 1);
    // 8 sectors into slot 3, one slot.
    host.ok(f2(false, 8, 3, 1));
    host.ok(bulk_out(data.clone()));
    assert_eq!(host.bridge.sram((3 * SLOT) as u32, 4096), data);
    assert_eq!(host.bridge.sram(0, 16), vec![0; 16], "slot 0 untouched");
    // Slot 0 is also visible through the XDATA 0xF000 window (§1.2).
    host.ok(f2(false, 1, 0, 0));
    host.ok(bulk_out(pattern(512, 2)));
    assert_eq!(host.xread(0xF000, 512), pattern(512, 2));
    // ... and to the GPU at PCIe 0x200000.
    assert_eq!(host.bridge.gpu_dma_read(0x20_0000, 512).unwrap(), pattern(512, 2));
    assert_eq!(host.bridge.stats().f2_requests, 2);
}

#[test]
fn f2_write_of_the_wrong_size_stalls_and_clears_the_engine() {
    let mut host = navi();
    host.ok(f2(false, 8, 0, 1));
    assert!(matches!(host.run(bulk_out(vec![1u8; 1000])), Err(UsbError::Stall { .. })));
    // The endpoint stays halted.
    host.expect_out_endpoint_halted();
    assert_eq!(host.bridge.sram(0, 8), vec![0; 8], "nothing landed");
    // After CLEAR_HALT the engine is idle: a bulk OUT has nowhere to go.
    host.usb.clear_halt(0x02).unwrap();
    host.ok_reset();
    let r = host.usb.transfer(bulk_out(vec![1u8; 4096]), Duration::from_millis(5));
    assert!(matches!(r, Err(UsbError::Timeout { .. })), "{r:?}");
}

#[test]
fn f2_write_past_the_end_of_sram_is_refused() {
    let mut host = navi();
    // Slot 31 + 2 slots worth of sectors.
    host.ok(f2(false, 64, 31, 2));
    assert!(matches!(host.run(bulk_out(vec![0u8; 32 << 10])), Err(UsbError::Stall { .. })));
}

#[test]
fn f2_read_is_blocked_until_the_copy_engine_writes_the_cq_page() {
    let mut host = navi();
    let data = pattern(64 << 10, 7);
    host.bridge.set_vram(0x40_0000, &data);
    // §7.2: arm the read, then the GPU copies VRAM -> SRAM and writes the release.
    host.ok(f2(true, (data.len() / 512) as u16, 0, 4));
    let tag = host.usb.submit(bulk_in(data.len()), TIMEOUT).unwrap();
    assert_eq!(host.bridge.f2_read_released(), Some(false));
    assert_eq!(ce_copy(&mut host, 0x40_0000, 0x20_0000, data.len() as u32, ce::FLAG_DST_PCIE), 0);
    assert_eq!(host.bridge.f2_read_released(), Some(false), "SRAM writes do not release");
    assert_eq!(ce_fence(&mut host, 0x82_200C, 0), 0);
    assert_eq!(host.bridge.xdata(0xB80C, 4), vec![0; 4]);
    match host.usb.wait(tag).unwrap() {
        Completion::In(got) => assert_eq!(got, data),
        other => panic!("{other:?}"),
    }
    assert_eq!(host.bridge.f2_read_released(), None, "the read is complete");
}

#[test]
fn f2_read_without_a_release_times_out_and_a_reset_clears_it() {
    let mut host = navi();
    host.ok(f2(true, 1, 0, 1));
    let r = host.usb.transfer(bulk_in(512), Duration::from_secs(10));
    match r {
        Err(UsbError::Timeout { after, .. }) => assert_eq!(after, Duration::from_secs(10)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Sticky until SET_INTERFACE.
    assert!(matches!(host.run(e4(0, 1)), Err(UsbError::Sticky { .. })));
    host.ok_reset();
    assert_eq!(host.bridge.f2_read_released(), None, "fw >= #75: reset clears DMA state");
    host.xread(0, 1);
}

#[test]
fn f2_reads_start_at_slot_zero_whatever_the_start_slot_says() {
    let slot0 = pattern(SLOT, 11);
    let slot5 = pattern(SLOT, 55);
    for (from_start, expect) in [(false, &slot0), (true, &slot5)] {
        let mut host = Host::new(
            BridgeConfig::default()
                .with_f2_read_from_start_slot(from_start)
                .with_powered_at_boot(true),
        );
        host.bridge.set_sram(0, &slot0);
        host.bridge.set_sram((5 * SLOT) as u32, &slot5);
        host.ok(f2(true, (SLOT / 512) as u16, 5, 1));
        host.bring_up_quiet(4);
        host.bridge.gpu_dma_write(0x82_200C, &[0; 4]).unwrap();
        assert_eq!(&host.ok(bulk_in(SLOT)).into_data(), expect, "from_start_slot={from_start}");
    }
}

#[test]
fn the_nv_cq_alias_releases_too() {
    let mut host = Host::new(BridgeConfig::default().with_gpu(GpuKind::Ga102));
    host.bring_up(2);
    host.bridge.set_sram(0, &[0xAB; 512]);
    host.ok(f2(true, 1, 0, 1));
    // §1.3: NV maps the CQ page at 0x828000; it is the same page as 0x822000 and XDATA 0xB800.
    host.bridge.gpu_dma_write(0x82_8000, &[1, 2, 3, 4]).unwrap();
    assert_eq!(host.bridge.f2_read_released(), Some(true));
    assert_eq!(host.xread(0xB800, 4), vec![1, 2, 3, 4]);
    assert_eq!(host.bridge.gpu_dma_read(0x82_2000, 4).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(host.ok(bulk_in(512)).into_data(), vec![0xAB; 512]);
}

#[test]
fn bulk_in_waits_in_order_per_endpoint() {
    let mut host = navi();
    host.bridge.set_sram(0, &pattern(2048, 3));
    host.ok(f2(true, 4, 0, 1));
    // Whole 1024-byte packets, so splitting the read over two transfers is legal.
    let first = host.usb.submit(bulk_in(1024), TIMEOUT).unwrap();
    let second = host.usb.submit(bulk_in(1024), TIMEOUT).unwrap();
    // Meanwhile control transfers still run.
    assert_eq!(host.xread(0xF000, 4), pattern(4, 3));
    host.bridge.gpu_dma_write(0x82_200C, &[0; 4]).unwrap();
    let b = host.usb.wait(second).unwrap().into_data();
    let a = host.usb.wait(first).unwrap().into_data();
    assert_eq!(a, pattern(2048, 3)[..1024].to_vec(), "the earlier transfer got the first half");
    assert_eq!(b, pattern(2048, 3)[1024..].to_vec());
}

#[test]
fn a_bulk_in_buffer_shorter_than_a_packet_babbles() {
    let mut host = navi();
    host.ok(f2(true, 4, 0, 1));
    host.bridge.gpu_dma_write(0x82_200C, &[0; 4]).unwrap();
    assert!(matches!(host.run(bulk_in(512)), Err(UsbError::Overflow { .. })));
    // The endpoint is halted until CLEAR_HALT.
    host.ok_reset();
    host.ok(f2(true, 1, 0, 1));
    host.bridge.gpu_dma_write(0x82_200C, &[0; 4]).unwrap();
    assert_eq!(host.ok(bulk_in(512)).into_data().len(), 512, "exact length is fine");
}

#[test]
fn async_pipeline_completes_in_order() {
    let mut host = navi();
    let data = pattern(8192, 4);
    // §7.1: F2 arm and an E4 in one round trip, then the bulk OUT, all in flight.
    let arm = host.usb.submit(f2(false, 16, 16, 1), TIMEOUT).unwrap();
    let fence = host.usb.submit(e4(0xA800, 8), TIMEOUT).unwrap();
    let out = host.usb.submit(bulk_out(data.clone()), TIMEOUT).unwrap();
    let arm2 = host.usb.submit(f2(false, 1, 0, 1), TIMEOUT).unwrap();
    let out2 = host.usb.submit(bulk_out(vec![9u8; 512]), TIMEOUT).unwrap();
    assert_eq!(host.usb.wait(out2).unwrap(), Completion::Out { length: 512 });
    assert_eq!(host.usb.wait(out).unwrap(), Completion::Out { length: 8192 });
    assert_eq!(host.usb.wait(fence).unwrap().into_data(), vec![0; 8]);
    host.usb.wait(arm).unwrap();
    host.usb.wait(arm2).unwrap();
    assert_eq!(host.bridge.sram((16 * SLOT) as u32, 8192), data);
    assert_eq!(host.bridge.sram(0, 512), vec![9; 512]);
    // A bulk OUT submitted before its arm waits (NAK) until the arm arrives.
    let early = host.usb.submit(bulk_out(vec![7u8; 512]), TIMEOUT).unwrap();
    host.ok(f2(false, 1, 1, 1));
    host.usb.wait(early).unwrap();
    assert_eq!(host.bridge.sram(SLOT as u32, 4), vec![7; 4]);
}

#[test]
fn copyin_with_sentinel_and_drain_fence() {
    let mut host = navi();
    // Host -> SRAM window slots 0-15 with the sentinel in the last dword (§7.1).
    let mut wire = pattern(16 << 10, 8);
    let n = wire.len();
    wire[n - 4..].copy_from_slice(&0x5100_0001u32.to_le_bytes());
    host.ok(f2(false, (wire.len() / 512) as u16, 0, 1));
    host.ok(bulk_out(wire.clone()));
    // The GPU sees the sentinel, copies the window to VRAM and writes the drain fence at
    // PCIe 0x820800 (XDATA 0xA800).
    let sentinel = host.bridge.gpu_dma_read(0x20_0000 + n as u64 - 4, 4).unwrap();
    assert_eq!(sentinel, 0x5100_0001u32.to_le_bytes().to_vec());
    assert_eq!(ce_copy(&mut host, 0x20_0000, 0x100_0000, n as u32, ce::FLAG_SRC_PCIE), 0);
    assert_eq!(ce_fence(&mut host, 0x82_0800, 2), 0);
    assert_eq!(host.xread(0xA800, 4), vec![2, 0, 0, 0]);
    assert_eq!(host.bridge.vram(0x100_0000, n), wire);
}

#[test]
fn one_stream_programs_the_whole_copy_engine_block_in_order() {
    let mut host = navi();
    host.bridge.set_vram(0x1000, &[0x5A; 512]);
    host.ok(f2(true, 1, 0, 1));
    // SRC, DST, LENGTH, FLAGS, GO, STATUS, FENCE_ADDR, FENCE_VALUE, FENCE_GO in one stream.
    let dwords: [u32; 12] =
        [0x1000, 0, 0x20_0000, 0, 512, ce::FLAG_DST_PCIE, 1, 0, 0x82_200C, 0, 0, 1];
    let bytes: Vec<u8> = dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
    host.stream_write(MMIO_BAR + ce::BASE, &bytes);
    assert_eq!(host.ok(bulk_in(512)).into_data(), vec![0x5A; 512], "copy ran before the fence");
}

#[test]
fn upstream_dma_obeys_bus_mastering_and_the_bridge_decode() {
    let mut host = navi();
    assert!(host.bridge.gpu_dma_write(0x20_0000, &[1, 2, 3, 4]).is_ok());
    // Not a bridge memory.
    let e = host.bridge.gpu_dma_write(0x30_0000, &[0; 4]).unwrap_err();
    assert!(matches!(e, DmaError::Unmapped { addr: 0x30_0000, .. }), "{e}");
    // Crossing the end of SRAM.
    assert!(matches!(host.bridge.gpu_dma_read(0x27_FFFC, 8), Err(DmaError::Unmapped { .. })));
    // The CQ window is a 4 KiB page (§1.3).
    assert!(host.bridge.gpu_dma_read(0x82_2FFC, 4).is_ok());
    assert!(host.bridge.gpu_dma_read(0x82_3000, 4).is_err());
    // 0x800000 (512 B) ↔ XDATA 0xB000.
    host.bridge.gpu_dma_write(0x80_0010, &[0xEE]).unwrap();
    assert_eq!(host.xread(0xB010, 1), vec![0xEE]);
    // A bridge above the GPU without BUS_MASTER blocks upstream traffic.
    host.cfg_write_sized(2, 0, 0, 0x04, 0x02, 1);
    let e = host.bridge.gpu_dma_write(0x20_0000, &[0; 4]).unwrap_err();
    assert!(
        matches!(&e, DmaError::BusMasterDisabled { device, .. } if device.contains("1478")),
        "{e}"
    );
    host.cfg_write_sized(2, 0, 0, 0x04, 0x06, 1);
    // The GPU itself without BUS_MASTER: the copy engine reports an error and SRAM is unchanged.
    host.cfg_write_sized(4, 0, 0, 0x04, 0x02, 1);
    host.bridge.set_vram(0, &[0x77; 64]);
    assert_eq!(ce_copy(&mut host, 0, 0x20_0000, 64, ce::FLAG_DST_PCIE), ce::STATUS_ERROR);
    assert_eq!(host.bridge.sram(0, 4), vec![1, 2, 3, 4]);
    host.cfg_write_sized(4, 0, 0, 0x04, 0x06, 1);
    assert_eq!(ce_copy(&mut host, 0, 0x20_0000, 64, ce::FLAG_DST_PCIE), ce::STATUS_OK);
    assert_eq!(host.bridge.sram(0, 64), vec![0x77; 64]);
    // Out-of-range VRAM is an error too.
    assert_eq!(ce_copy(&mut host, 24 << 30, 0, 16, 0), ce::STATUS_ERROR);
    assert!(host.bridge.stats().gpu_dma_rejected >= 5);
}

#[test]
fn visibility_delay_holds_f2_data_back_for_n_transfers() {
    let mut host = Host::new(BridgeConfig::default().with_visibility_delay(2));
    host.bring_up(4);
    host.ok(f2(false, 8, 0, 1));
    host.ok(bulk_out(vec![0xC3; 4096]));
    // Completed on the host, not yet visible to the GPU or through the 0xF000 window.
    assert_eq!(host.bridge.sram(0, 4), vec![0; 4]);
    assert_eq!(host.bridge.pending_visibility_bytes(), 4096);
    assert_eq!(host.xread(0xF000, 4), vec![0; 4], "first later transfer: still old");
    assert_eq!(host.bridge.gpu_dma_read(0x20_0000, 4).unwrap(), vec![0; 4]);
    assert_eq!(host.xread(0xF000, 4), vec![0; 4], "second later transfer: old while it runs");
    assert_eq!(host.bridge.gpu_dma_read(0x20_0000, 4).unwrap(), vec![0xC3; 4], "after two");
    assert_eq!(host.xread(0xF000, 4), vec![0xC3; 4]);
    assert_eq!(host.bridge.pending_visibility_bytes(), 0);
}

#[test]
fn a_gpu_copy_before_visibility_sees_stale_data() {
    let mut host = Host::new(BridgeConfig::default().with_visibility_delay(20));
    host.bring_up(4);
    host.ok(f2(false, 1, 0, 1));
    host.ok(bulk_out(vec![0x99; 512]));
    // The copy engine runs (each ce_write is a transfer, fewer than 20 of them).
    assert_eq!(ce_copy(&mut host, 0x20_0000, 0x2000, 512, ce::FLAG_SRC_PCIE), 0);
    assert_eq!(host.bridge.vram(0x2000, 512), vec![0; 512]);
    host.bridge.flush_visibility();
    assert_eq!(host.bridge.sram(0, 512), vec![0x99; 512]);
}

#[test]
fn progressive_visibility_lands_front_to_back() {
    let mut host = Host::new(
        BridgeConfig::default().with_visibility_delay(4).with_progressive_visibility(true),
    );
    host.ok(f2(false, 8, 0, 1));
    host.ok(bulk_out(vec![0xFF; 4096]));
    host.xread(0, 1);
    let quarter = host.bridge.sram(0, 4096);
    assert!(quarter[..1024].iter().all(|&b| b == 0xFF));
    assert!(quarter[1024..].iter().all(|&b| b == 0), "the tail (sentinel) lands last");
    host.xread(0, 1);
    host.xread(0, 1);
    assert_eq!(host.bridge.sram(4092, 4), vec![0; 4]);
    host.xread(0, 1);
    assert_eq!(host.bridge.sram(4092, 4), vec![0xFF; 4]);
}

#[test]
fn stream_writes_are_delayed_but_flushed_by_the_next_f0() {
    let mut host = Host::new(BridgeConfig::default().with_visibility_delay(3));
    host.bring_up(4);
    host.stream_write(0x8_0000_0000, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(host.bridge.vram(0, 8), vec![0; 8], "bulk OUT done, TLPs not yet out");
    // The single-threaded firmware sends them before handling the next F0.
    let r = host.mem_read32(0x8_0000_0004);
    assert_eq!(r.data, u32::from_le_bytes([5, 6, 7, 8]));
}

#[test]
fn rearming_while_busy_replaces_the_job() {
    let mut host = navi();
    host.ok(f2(false, 8, 0, 1));
    host.ok(f2(false, 2, 1, 1));
    host.ok(bulk_out(vec![0x42; 1024]));
    assert_eq!(host.bridge.sram(SLOT as u32, 1024), vec![0x42; 1024]);
    assert_eq!(host.bridge.sram(0, 4), vec![0; 4]);
    assert_eq!(host.bridge.stats().f2_rearmed_while_busy, 1);
}

#[test]
fn reset_mid_transfer_clears_on_new_firmware_and_wedges_old_firmware() {
    // fw >= #75 (default): the reset clears the DMA state and a fresh arm works.
    let mut host = navi();
    host.ok(f2(false, 8, 0, 1));
    host.ok(bulk_out(vec![1u8; 2048]));
    host.ok_reset();
    let r = host.usb.transfer(bulk_out(vec![1u8; 2048]), Duration::from_millis(1));
    assert!(matches!(r, Err(UsbError::Timeout { .. })), "nothing armed after the reset");
    host.ok_reset();
    host.ok(f2(false, 1, 2, 1));
    host.ok(bulk_out(vec![2u8; 512]));
    assert_eq!(host.bridge.sram((2 * SLOT) as u32, 4), vec![2; 4]);

    // Older firmware: the engine is wedged until the enclosure is power-cycled.
    let mut old = Host::new(BridgeConfig::default().with_f2_reset_clears_dma(false));
    old.ok(f2(false, 8, 0, 1));
    old.ok(bulk_out(vec![1u8; 2048]));
    old.ok_reset();
    old.ok(f2(false, 1, 2, 1));
    let r = old.usb.transfer(bulk_out(vec![2u8; 512]), Duration::from_millis(1));
    assert!(matches!(r, Err(UsbError::Timeout { .. })), "wedged: {r:?}");
    old.bridge.replug();
    let mut usb = old.bridge.transport();
    usb.transfer(f2(false, 1, 2, 1), TIMEOUT).unwrap();
    usb.transfer(bulk_out(vec![2u8; 512]), TIMEOUT).unwrap();
    assert_eq!(old.bridge.sram((2 * SLOT) as u32, 4), vec![2; 4]);
}
