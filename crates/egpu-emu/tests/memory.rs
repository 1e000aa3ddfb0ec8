//! §4.1, §4.3–4.5, §12.6: memory TLPs through bridge windows and BARs, streaming modes.

mod common;

use std::time::Duration;

use common::*;
use egpu_emu::{BridgeConfig, Fault, GpuKind};
use egpu_usb::{UsbError, UsbSpeed, UsbTransport};

const UR: u8 = 0b001;
const VRAM_BAR: u64 = 0x8_0000_0000;
const MMIO_BAR: u64 = 0x1000_0000;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[test]
fn memory_reaches_a_bar_only_after_windows_and_command_are_set() {
    let mut host = Host::new(BridgeConfig::default());
    host.power_on();
    // BAR addresses assigned but no bridge windows, no COMMAND.MEM anywhere.
    host.setup_bridges(4);
    for b in 0..4 {
        host.cfg_write_sized(b, 0, 0, 0x04, 0x00, 1);
    }
    host.cfg_write(4, 0, 0, 0x24, MMIO_BAR as u32);
    assert_eq!(host.mem_read32(MMIO_BAR).status, UR, "bridges do not forward yet");
    host.mem_write32(MMIO_BAR + 0x100, 0x1111_1111);
    assert!(host.bridge.stats().posted_writes_dropped >= 1, "posted write silently dropped");
    // Bridges forward, GPU does not decode (COMMAND.MEM clear on the GPU): still UR.
    for b in 0..4 {
        host.cfg_write_sized(b, 0, 0, 0x04, 0x06, 1);
    }
    assert_eq!(host.mem_read32(MMIO_BAR).status, UR);
    host.cfg_write_sized(4, 0, 0, 0x04, 0x06, 1);
    // The write dropped while nothing forwarded it left nothing behind.
    assert_eq!(host.mem_read32(MMIO_BAR + 0x100).data, 0);
    host.mem_write32(MMIO_BAR + 0x100, 0xDEAD_BEEF);
    let r = host.mem_read32(MMIO_BAR + 0x100);
    assert_eq!((r.ret, r.status, r.data), (0, 0, 0xDEAD_BEEF));
    // The earlier dropped write left nothing behind: only the later one landed.
    // Take the middle bridge's MEM away again: UR.
    host.cfg_write_sized(1, 0, 0, 0x04, 0x04, 1);
    assert_eq!(host.mem_read32(MMIO_BAR + 0x100).status, UR);
    // A window that does not cover the BAR also blocks it.
    host.cfg_write_sized(1, 0, 0, 0x04, 0x06, 1);
    host.cfg_write_sized(2, 0, 0, 0x20, 0x2000, 2);
    assert_eq!(host.mem_read32(MMIO_BAR + 0x100).status, UR);
    host.cfg_write_sized(2, 0, 0, 0x20, 0x1000, 2);
    assert_eq!(host.mem_read32(MMIO_BAR + 0x100).data, 0xDEAD_BEEF);
}

#[test]
fn four_dword_vram_access_through_bar0() {
    let mut host = Host::new(BridgeConfig::default());
    let bars = host.bring_up(4);
    assert_eq!(bars[&0].0, VRAM_BAR);
    host.mem_write32(VRAM_BAR + 0x1234_5670, 0x0102_0304);
    assert_eq!(host.bridge.vram(0x1234_5670, 4), vec![4, 3, 2, 1]);
    host.bridge.set_vram(0x40, &[0xAA, 0xBB, 0xCC, 0xDD]);
    assert_eq!(host.mem_read32(VRAM_BAR + 0x40).data, 0xDDCC_BBAA);
    // Past the 24 GiB of VRAM inside the 32 GiB BAR: reads 0, writes vanish.
    host.mem_write32(VRAM_BAR + (30 << 30), 0xFFFF_FFFF);
    assert_eq!(host.mem_read32(VRAM_BAR + (30 << 30)).data, 0);
}

#[test]
fn byte_enables_merge_partial_dword_writes_and_reads_return_the_dword() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host.bridge.set_vram(0x100, &[0x11, 0x22, 0x33, 0x44]);
    // §4.1: a 2-byte write at offset 1 -> be 0b0110, data shifted left by 8.
    host.ok(f0_out(0x60, 0b0110, 0, VRAM_BAR + 0x100, 0xBEEF << 8));
    assert_eq!(host.bridge.vram(0x100, 4), vec![0x11, 0xEF, 0xBE, 0x44]);
    // A 1-byte read at offset 3 returns the whole dword; byte count from the enables.
    let r = host.tlp(0x20, 0b1000, VRAM_BAR + 0x100, 0);
    assert_eq!(r.data, 0x44BE_EF11);
    assert_eq!(r.byte_count, 1);
}

#[test]
fn four_dword_headers_below_4gib_are_counted_and_optionally_rejected() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host.reset_stats_only();
    host.ok(f0_out(0x60, 0xF, 0, MMIO_BAR + 8, 7));
    assert_eq!(host.tlp(0x20, 0xF, MMIO_BAR + 8, 0).data, 7, "AMD tolerates it");
    assert_eq!(host.bridge.stats().tlps_4dw_below_4gib, 2);
    host.tlp(0x00, 0xF, MMIO_BAR + 8, 0);
    assert_eq!(host.bridge.stats().tlps_4dw_below_4gib, 2, "3DW is legal");

    let mut strict = Host::new(BridgeConfig::default().with_reject_4dw_below_4gib(true));
    strict.bring_up(4);
    strict.ok(f0_out(0x60, 0xF, 0, MMIO_BAR + 8, 7));
    assert_eq!(strict.tlp(0x20, 0xF, MMIO_BAR + 8, 0).ret, 0xFF, "malformed: no completion");
    assert_eq!(strict.tlp(0x00, 0xF, MMIO_BAR + 8, 0).data, 0, "the 4DW write was dropped");
}

#[test]
fn mode1_stream_writes_and_mode2_stream_reads_vram() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    let data = pattern(64 << 10, 1);
    host.reset_stats_only();
    host.stream_write(VRAM_BAR + 0x10_0000, &data);
    assert_eq!(host.bridge.vram(0x10_0000, data.len()), data);
    let back = host.stream_read(VRAM_BAR + 0x10_0000, data.len());
    assert_eq!(back, data);
    let s = host.bridge.stats();
    assert_eq!(s.tlps, 2 * (data.len() as u64 / 4), "§4.1: one TLP per dword");
    assert_eq!(s.bulk_out_bytes, data.len() as u64);
    assert_eq!(s.bulk_in_bytes, data.len() as u64);
    // A 3DW stream into the MMIO BAR.
    let regs = pattern(256, 9);
    host.stream_write(MMIO_BAR + 0x2000, &regs);
    assert_eq!(host.stream_read(MMIO_BAR + 0x2000, 256), regs);
}

#[test]
fn streams_across_the_end_of_a_bar_drop_what_nothing_decodes() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    // BAR5 is 1 MiB at 0x1000_0000; write 16 bytes straddling its end.
    let end = MMIO_BAR + (1 << 20);
    host.stream_write(end - 8, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    let back = host.stream_read(end - 8, 16);
    assert_eq!(&back[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
    // §4.5: failed reads in a stream repeat the engine's stale data register silently.
    assert_eq!(&back[8..12], &[5, 6, 7, 8]);
    assert_eq!(&back[12..16], &[5, 6, 7, 8]);
    assert!(host.bridge.stats().posted_writes_dropped >= 2);
}

#[test]
fn mode2_reads_the_first_chunk_at_arm_time() {
    for (speed, chunk_dwords) in [(UsbSpeed::SuperPlus, 256usize), (UsbSpeed::High, 128)] {
        let mut host = Host::new(BridgeConfig::default().with_speed(speed));
        host.bring_up(4);
        host.bridge.set_vram(0, &[0x11; 4096]);
        host.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 1024));
        // §1.2: the chunk sits in XDATA 0x8000 already.
        assert_eq!(host.bridge.xdata(0x8000, 4), vec![0x11; 4]);
        // The GPU changes memory after the arm, before the bulk IN.
        host.bridge.set_vram(0, &[0x22; 4096]);
        let got = host.ok(bulk_in(4096)).into_data();
        let first = chunk_dwords * 4;
        assert!(got[..first].iter().all(|&b| b == 0x11), "{speed:?}: prefetched chunk");
        assert!(got[first..].iter().all(|&b| b == 0x22), "{speed:?}: read after the IN");
    }
}

#[test]
fn any_f0_out_cancels_an_armed_stream() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 16));
    host.ok(f0_out(0x00, 0xF, 0, MMIO_BAR, 0));
    let r = host.usb.transfer(bulk_in(64), Duration::from_millis(30));
    assert!(
        matches!(r, Err(UsbError::Timeout { after, .. }) if after == Duration::from_millis(30))
    );
    host.ok_reset();
    // Same for mode 1: the armed write is gone, a bulk OUT has nowhere to go.
    host.ok(f0_out(0x60, 0xF, 1, VRAM_BAR, 4));
    host.ok(f0_out(0x00, 0xF, 0, MMIO_BAR, 0));
    assert!(matches!(host.run(bulk_out(vec![0u8; 16])), Err(UsbError::Timeout { .. })));
    assert!(host.bridge.stats().streams_cancelled >= 2);
}

#[test]
fn stream_bulk_out_may_split_on_packet_boundaries_but_not_elsewhere() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    let data = pattern(3072, 3);
    host.ok(f0_out(0x60, 0xF, 1, VRAM_BAR, 768));
    host.ok(bulk_out(data[..1024].to_vec()));
    host.ok(bulk_out(data[1024..].to_vec()));
    assert_eq!(host.bridge.vram(0, 3072), data);
    // A short packet that does not finish the count: STALL, endpoint halted, stream gone.
    host.ok(f0_out(0x60, 0xF, 1, VRAM_BAR, 768));
    assert!(matches!(host.run(bulk_out(vec![0u8; 100])), Err(UsbError::Stall { .. })));
    host.ok_reset();
    // More than armed: also refused.
    host.ok(f0_out(0x60, 0xF, 1, VRAM_BAR, 4));
    assert!(matches!(host.run(bulk_out(vec![0u8; 32])), Err(UsbError::Stall { .. })));
    assert_eq!(host.bridge.vram(0, 16), data[..16].to_vec(), "nothing written");
}

#[test]
fn bulk_in_shorter_than_the_data_must_be_whole_packets() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host.bridge.set_vram(0, &pattern(4096, 5));
    host.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 1024));
    let a = host.ok(bulk_in(1024)).into_data();
    let b = host.ok(bulk_in(8192)).into_data();
    assert_eq!(a.len() + b.len(), 4096, "the last IN is short");
    assert_eq!([a, b].concat(), pattern(4096, 5));
    // A buffer that is not a multiple of the packet size and shorter than the data: babble.
    host.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 1024));
    assert!(matches!(host.run(bulk_in(100)), Err(UsbError::Overflow { .. })));
    host.ok_reset();
}

#[test]
fn ga102_bar1_vram_with_three_dword_reads_below_4gib_bars() {
    let mut host = Host::new(BridgeConfig::default().with_gpu(GpuKind::Ga102));
    let bars = host.bring_up(2);
    host.mem_write32(bars[&1].0 + 0x80, 0x1357_9BDF);
    assert_eq!(host.bridge.vram(0x80, 4), 0x1357_9BDFu32.to_le_bytes().to_vec());
    // BAR3 is plain memory.
    host.stream_write(bars[&3].0, &[9, 8, 7, 6]);
    assert_eq!(host.stream_read(bars[&3].0, 4), vec![9, 8, 7, 6]);
    // Audio function's BAR is unassigned and its COMMAND.MEM is off: nothing there.
    assert_eq!(host.mem_read32(0x1F00_0000).status, UR);
}

#[test]
fn io_and_message_tlps() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    // I/O read (fmt 0x02) is not routed in this model: UR.
    assert_eq!(host.tlp(0x02, 0xF, 0x1000, 0).status, UR);
    // A message (0x34) is posted: F0 IN afterwards finds no completion.
    host.ok(f0_out(0x34, 0, 0, 0, 0));
    assert_eq!(parse_reply(&host.ok(f0_in()).into_data()).ret, 0xFF);
}

#[test]
fn link_down_fault_makes_tlps_time_out_until_f3() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host.bridge.inject(Fault::LinkDown);
    assert_ne!(host.xread(0xB450, 1), vec![0x78]);
    let r = host.cfg_read(0, 0, 0, 0);
    assert_eq!((r.ret, r.data), (0xFF, 0));
    assert!(host.bridge.gpu_dma_write(0x20_0000, &[1]).is_err());
    host.power_on();
    assert_eq!(host.cfg_read32(0, 0, 0, 0) & 0xFFFF, 0x1B21);
    // F3 on asserted PERST#: the bridges lost their bus numbers.
    assert_eq!(host.cfg_read(1, 0, 0, 0).status, UR);
}

#[test]
fn high_speed_bulk_packets_are_512_bytes() {
    let mut hs = Host::new(BridgeConfig::default().with_speed(UsbSpeed::High));
    hs.bring_up(4);
    hs.bridge.set_vram(0, &pattern(2048, 6));
    hs.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 512));
    let a = hs.ok(bulk_in(512)).into_data();
    let b = hs.ok(bulk_in(1536)).into_data();
    assert_eq!([a, b].concat(), pattern(2048, 6), "512-byte pieces are whole packets on USB2");
    let mut ss = Host::new(BridgeConfig::default());
    ss.bring_up(4);
    ss.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 512));
    assert!(matches!(ss.run(bulk_in(512)), Err(UsbError::Overflow { .. })), "not on USB3");
}
