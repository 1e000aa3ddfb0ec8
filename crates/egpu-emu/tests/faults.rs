//! §12.7 fault injection, unplug, SET_INTERFACE / CLEAR_HALT recovery, and the stats.

mod common;

use std::time::Duration;

use common::*;
use egpu_emu::{BridgeConfig, CompletionStatus, Fault};
use egpu_usb::{Completion, UsbError, UsbTransport};

const VRAM_BAR: u64 = 0x8_0000_0000;

fn navi() -> Host {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    host
}

#[test]
fn f0_ret_status_faults_fire_the_given_number_of_times() {
    let mut host = navi();
    host.bridge.inject(Fault::F0RetStatus { status: 1, times: 2 });
    let a = host.cfg_read(0, 0, 0, 0);
    assert_eq!(a.ret, 1, "§3: engine error bit seen");
    assert_eq!(host.cfg_read(0, 0, 0, 0).ret, 1);
    let c = host.cfg_read(0, 0, 0, 0);
    assert_eq!((c.ret, c.data & 0xFFFF), (0, 0x1B21), "consumed after two replies");
    host.bridge.inject(Fault::F0RetStatus { status: 0xFF, times: 1 });
    let d = host.cfg_read(0, 0, 0, 0);
    assert_eq!((d.ret, d.data, d.status), (0xFF, 0, 0), "bytes 0–6 zeroed");
}

#[test]
fn completion_faults_hit_non_posted_tlps_only() {
    let mut host = navi();
    for (status, bits) in [
        (CompletionStatus::UnsupportedRequest, 0b001),
        (CompletionStatus::CompleterAbort, 0b100),
        (CompletionStatus::ConfigRetry, 0b010),
    ] {
        host.bridge.inject(Fault::Completion { status, times: 1 });
        // A posted write does not consume it.
        host.mem_write32(VRAM_BAR, 0x1111_2222);
        let r = host.mem_read32(VRAM_BAR);
        assert_eq!((r.ret, r.status), (0, bits), "{status:?}");
        assert_eq!(host.mem_read32(VRAM_BAR).data, 0x1111_2222);
    }
    // A config write that completes with UR had no effect.
    host.bridge
        .inject(Fault::Completion { status: CompletionStatus::UnsupportedRequest, times: 1 });
    assert_eq!(host.cfg_write(4, 0, 0, 0x3C, 0x0B).status, 0b001);
    assert_eq!(host.cfg_read32(4, 0, 0, 0x3C) & 0xFF, 0);
    // In a mode-2 stream a failed dword silently repeats stale data (§4.5).
    host.bridge.set_vram(0x100, &[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
    host.bridge.inject(Fault::Completion { status: CompletionStatus::CompleterAbort, times: 1 });
    let got = host.stream_read(VRAM_BAR + 0x100, 12);
    let words: Vec<u32> =
        got.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(words[1..], [2, 3]);
    assert_ne!(words[0], 1, "the aborted read returned the stale engine register");
}

#[test]
fn config_retry_fault_answers_crs() {
    let mut host = navi();
    host.bridge.inject(Fault::ConfigRetry { reads: 3 });
    for _ in 0..3 {
        assert_eq!(host.cfg_read(4, 0, 0, 0).status, 0b010);
    }
    assert_eq!(host.cfg_read32(4, 0, 0, 0), 0x744C_1002);
}

#[test]
fn garbage_streaming_reads_are_silent() {
    let mut host = navi();
    host.bridge.set_vram(0, &[0x10; 16]);
    host.bridge.inject(Fault::GarbageStreamingReads { times: 2 });
    let got = host.stream_read(VRAM_BAR, 16);
    assert_ne!(&got[..8], &[0x10; 8], "garbage");
    assert_eq!(&got[8..], &[0x10; 8], "then good data again");
    // Mode 0 is not affected.
    host.bridge.inject(Fault::GarbageStreamingReads { times: 1 });
    assert_eq!(host.mem_read32(VRAM_BAR).data, 0x1010_1010);
}

#[test]
fn link_down_until_cleared() {
    let mut host = navi();
    host.bridge.inject(Fault::LinkDown);
    assert_ne!(host.bridge.ltssm(), 0x78);
    assert_eq!(host.mem_read32(VRAM_BAR).ret, 0xFF);
    host.bridge.clear_faults();
    assert_eq!(host.bridge.ltssm(), 0x78);
    assert_eq!(host.mem_read32(VRAM_BAR).ret, 0);
}

#[test]
fn stall_fault_halts_a_bulk_endpoint_until_clear_halt() {
    let mut host = navi();
    host.bridge.inject(Fault::Stall { endpoint: 0x02 });
    host.ok(f2(false, 1, 0, 1));
    assert!(matches!(host.run(bulk_out(vec![1u8; 512])), Err(UsbError::Stall { .. })));
    host.ok_reset();
    // SET_INTERFACE cleared the halt (and the F2 state): a new arm works.
    host.ok(f2(false, 1, 0, 1));
    host.ok(bulk_out(vec![1u8; 512]));
    // With only CLEAR_HALT, the halt also goes but the sticky error stays.
    host.bridge.inject(Fault::Stall { endpoint: 0x81 });
    assert!(matches!(host.run(bulk_in(4)), Err(UsbError::Stall { .. })));
    assert!(matches!(host.run(bulk_in(4)), Err(UsbError::Stall { .. })), "still halted");
    host.usb.clear_halt(0x81).unwrap();
    assert!(matches!(host.run(e4(0, 1)), Err(UsbError::Sticky { .. })));
    host.ok_reset();
    assert_eq!(host.stream_read(VRAM_BAR, 4).len(), 4);
}

#[test]
fn stall_on_ep0_is_a_protocol_stall() {
    let mut host = navi();
    host.bridge.inject(Fault::Stall { endpoint: 0 });
    assert!(matches!(host.run(e4(0, 1)), Err(UsbError::Stall { .. })));
    host.ok_reset();
    host.xread(0, 1);
}

#[test]
fn timeout_fault_swallows_one_transfer() {
    let mut host = navi();
    host.bridge.inject(Fault::Timeout { endpoint: 0 });
    // The swallowed E5 never reaches the firmware.
    match host.usb.transfer(e5(0x300, 0x42), Duration::from_millis(70)) {
        Err(UsbError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(70)),
        other => panic!("{other:?}"),
    }
    host.ok_reset();
    assert_eq!(host.xread(0x300, 1), vec![0]);
    // A later transfer queued behind a swallowed one runs once the first one has expired.
    host.bridge.inject(Fault::Timeout { endpoint: 0 });
    let lost = host.usb.submit(e5(0x301, 1), Duration::from_millis(10)).unwrap();
    let later = host.usb.submit(e5(0x302, 2), Duration::from_millis(500)).unwrap();
    assert!(matches!(host.usb.wait(later), Err(UsbError::Sticky { .. })), "ran after the loss");
    assert!(matches!(host.usb.wait(lost), Err(UsbError::Timeout { .. })));
    host.ok_reset();
    assert_eq!(host.xread(0x301, 2), vec![0, 2]);
}

#[test]
fn short_bulk_in_truncates_the_next_in() {
    let mut host = navi();
    host.bridge.set_vram(0, &[5; 64]);
    host.bridge.inject(Fault::ShortBulkIn { bytes: 10 });
    let got = host.stream_read(VRAM_BAR, 64);
    assert_eq!(got, vec![5; 10], "IN transfers return actual_length bytes");
    assert_eq!(host.stream_read(VRAM_BAR, 64).len(), 64);
}

#[test]
fn disconnect_after_n_transfers_fails_everything_in_flight() {
    let mut host = navi();
    host.bridge.inject(Fault::DisconnectAfter { transfers: 2 });
    host.xread(0, 1);
    host.ok(f2(true, 1, 0, 1));
    let pending = host.usb.submit(bulk_in(512), TIMEOUT);
    // The F2 arm was the second transfer: the device is gone before the bulk IN.
    let err = match pending {
        Ok(tag) => host.usb.wait(tag).unwrap_err(),
        Err(e) => e,
    };
    assert!(err.is_disconnect(), "{err}");
    assert!(host.run(e4(0, 1)).unwrap_err().is_disconnect());
    assert!(host.usb.reset_interface().unwrap_err().is_disconnect());
}

#[test]
fn unplug_mid_stream() {
    let mut host = navi();
    host.ok(f2(true, 1, 0, 1));
    let tag = host.usb.submit(bulk_in(512), TIMEOUT).unwrap();
    host.bridge.unplug();
    assert!(matches!(host.usb.wait(tag), Err(UsbError::Disconnected { .. })));
    assert!(matches!(host.usb.submit(e4(0, 1), TIMEOUT), Err(UsbError::Disconnected { .. })));
    assert!(host.usb.clear_halt(0x81).is_err());
}

#[test]
fn reset_interface_clears_streaming_state_and_the_sticky_error() {
    let mut host = navi();
    // Arm a mode-1 write and a mode-2 read, fail something, then reset.
    host.ok(f0_out(0x20, 0xF, 2, VRAM_BAR, 64));
    host.ok(f2(false, 1, 0, 1));
    assert!(matches!(host.usb.transfer(bulk_in(3), TIMEOUT), Err(UsbError::Overflow { .. })));
    assert!(matches!(host.run(e4(0, 1)), Err(UsbError::Sticky { .. })));
    host.ok_reset();
    // Sticky gone, endpoints clear, nothing armed any more.
    host.xread(0, 1);
    let r = host.usb.transfer(bulk_out(vec![0u8; 512]), Duration::from_millis(2));
    assert!(matches!(r, Err(UsbError::Timeout { .. })), "F2 arm was cleared: {r:?}");
    host.ok_reset();
    let r = host.usb.transfer(bulk_in(256), Duration::from_millis(2));
    assert!(matches!(r, Err(UsbError::Timeout { .. })), "stream was cleared: {r:?}");
    host.ok_reset();
    // Tags from before the reset are forgotten.
    let tag = host.usb.submit(e4(0, 1), TIMEOUT).unwrap();
    host.ok_reset();
    assert!(matches!(host.usb.wait(tag), Err(UsbError::UnknownTag(_))));
}

#[test]
fn stats_count_requests_bytes_and_tlps() {
    let mut host = navi();
    host.bridge.reset_stats();
    host.xread(0, 4);
    host.xwrite(0x200, 1);
    host.cfg_read(0, 0, 0, 0);
    host.stream_write(VRAM_BAR, &[0u8; 4096]);
    host.ok(f2(false, 2, 0, 1));
    host.ok(bulk_out(vec![0u8; 1024]));
    host.ok(f3(false));
    let s = host.bridge.stats();
    assert_eq!(
        (
            s.e4_requests,
            s.e5_requests,
            s.f0_out_requests,
            s.f0_in_requests,
            s.f2_requests,
            s.f3_requests
        ),
        (1, 1, 2, 1, 1, 1)
    );
    assert_eq!((s.bulk_out_transfers, s.bulk_out_bytes), (2, 5120));
    assert_eq!(s.tlps, 1 + 1024);
    host.bridge.reset_stats();
    assert_eq!(host.bridge.stats().e4_requests, 0);
}

#[test]
fn every_wait_returns_and_unknown_tags_are_reported() {
    let mut host = navi();
    let done = host.usb.submit(e4(0, 1), TIMEOUT).unwrap();
    assert!(matches!(host.usb.wait(done), Ok(Completion::In(_))));
    assert!(matches!(host.usb.wait(done), Err(UsbError::UnknownTag(_))));
}
