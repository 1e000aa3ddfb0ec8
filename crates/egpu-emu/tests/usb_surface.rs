//! §1, §1.1, §3: the USB surface, XDATA requests and their limits.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use egpu_emu::{BridgeConfig, EmulatedBridge, GpuKind};
use egpu_usb::{ControlSetup, Transfer, UsbError, UsbSpeed, UsbTransport};

#[test]
fn device_info_matches_the_custom_firmware() {
    let bridge = EmulatedBridge::new(BridgeConfig::default());
    let usb = bridge.transport();
    let info = usb.info();
    assert_eq!(info.name, "emu");
    assert_eq!((info.vendor_id, info.product_id), (0xADD1, 0x0001));
    assert_eq!(info.product.as_deref(), Some("custom v0.1"));
    assert_eq!(info.manufacturer.as_deref(), Some("tiny"));
    assert_eq!(info.serial.as_deref(), Some("0123abcd"));
    assert_eq!(info.speed, Some(UsbSpeed::SuperPlus));

    let comma = EmulatedBridge::new(BridgeConfig::default().with_usb_ids(0x3801, 0x0001));
    assert_eq!(comma.transport().info().vendor_id, 0x3801);
}

fn get_descriptor(kind: u8, index: u8, length: u16) -> Transfer {
    Transfer::ControlIn {
        setup: ControlSetup {
            request_type: 0x80,
            request: 0x06,
            value: (u16::from(kind) << 8) | u16::from(index),
            index: 0,
        },
        length,
    }
}

#[test]
fn descriptors_follow_section_1_1() {
    let mut host = Host::new(BridgeConfig::default());
    let dev = host.ok(get_descriptor(1, 0, 18)).into_data();
    assert_eq!(dev.len(), 18);
    assert_eq!(u16::from_le_bytes([dev[2], dev[3]]), 0x0320, "bcdUSB 3.20 on SuperSpeed");
    assert_eq!(dev[7], 9, "EP0 512 B on SuperSpeed");
    assert_eq!(u16::from_le_bytes([dev[8], dev[9]]), 0xADD1);
    let config = host.ok(get_descriptor(2, 0, 512)).into_data();
    assert_eq!(config[7], 0xC0, "self-powered");
    // Find alt 0's endpoints: 0x81 and 0x02, 1024 bytes, and companion bMaxBurst 15.
    let mut i = 0;
    let mut alt0_eps = Vec::new();
    let mut alt = None;
    while i < config.len() {
        let (len, ty) = (config[i] as usize, config[i + 1]);
        if ty == 4 {
            alt = Some(config[i + 3]);
            assert_eq!(&config[i + 5..i + 8], &[0xFF, 0xFF, 0xFF], "vendor class");
        }
        if ty == 5 && alt == Some(0) {
            alt0_eps.push((config[i + 2], u16::from_le_bytes([config[i + 4], config[i + 5]])));
            assert_eq!(config[i + 7 + 2], 15, "SS companion bMaxBurst 15");
        }
        i += len;
    }
    assert_eq!(alt0_eps, vec![(0x81, 1024), (0x02, 1024)]);
    // String 2 = product.
    let s = host.ok(get_descriptor(3, 2, 255)).into_data();
    let text: Vec<u16> = s[2..].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    assert_eq!(String::from_utf16_lossy(&text), "custom v0.1");
    // USB2 configuration: one alt, four endpoints at 512.
    let mut hs = Host::new(BridgeConfig::default().with_speed(UsbSpeed::High));
    let dev = hs.ok(get_descriptor(1, 0, 18)).into_data();
    assert_eq!((dev[2], dev[3], dev[7]), (0x00, 0x02, 64));
    let config = hs.ok(get_descriptor(2, 0, 512)).into_data();
    assert_eq!(config[9 + 4], 4, "bNumEndpoints of the only USB2 interface");
    assert!(
        matches!(hs.run(get_descriptor(0x0F, 0, 64)), Err(UsbError::Stall { .. })),
        "no BOS on USB2"
    );
}

#[test]
fn e4_clamps_to_512_on_superspeed_and_64_on_high_speed() {
    let mut ss = Host::new(BridgeConfig::default());
    assert_eq!(ss.xread(0x1000, 255).len(), 255);
    assert_eq!(ss.xread(0x1000, 512).len(), 512);
    assert_eq!(ss.xread(0x1000, 600).len(), 512, "§3: returns fewer bytes silently");
    let mut hs = Host::new(BridgeConfig::default().with_speed(UsbSpeed::High));
    assert_eq!(hs.xread(0x1000, 64).len(), 64);
    assert_eq!(hs.xread(0x1000, 255).len(), 64);
    // asm2464pd-firmware#83 variant: over-limit E4 on USB2 times out.
    let mut hs83 = Host::new(
        BridgeConfig::default().with_speed(UsbSpeed::High).with_hs_e4_over_limit_times_out(true),
    );
    assert_eq!(hs83.xread(0x1000, 64).len(), 64);
    match hs83.usb.transfer(e4(0x1000, 65), Duration::from_millis(250)) {
        Err(UsbError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(250)),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn e5_writes_one_byte_that_e4_reads_back_and_banks_are_separate() {
    let mut host = Host::new(BridgeConfig::default());
    host.xwrite(0x0100, 0x5A);
    host.xwrite(0x0101, 0xA5);
    assert_eq!(host.xread(0x00FF, 4), vec![0, 0x5A, 0xA5, 0]);
    host.ok(e5_bank(0x0100, 1, 0x77));
    assert_eq!(host.ok(e4_bank(0x0100, 1, 1)).into_data(), vec![0x77]);
    assert_eq!(host.xread(0x0100, 1), vec![0x5A], "bank 1 is a different space");
    assert_eq!(host.bridge.xdata(0x0100, 2), vec![0x5A, 0xA5]);
    // The address wraps at 0xFFFF like the 8051's DPTR.
    host.xwrite(0x0000, 0x11);
    let wrapped = host.xread(0xFFFF, 2);
    assert_eq!(wrapped[1], 0x11);
}

#[test]
fn unknown_vendor_requests_zlp_or_silence() {
    let mut host = Host::new(BridgeConfig::default());
    // §1.1: unknown OUT with wLength 0 is ACKed.
    let ack =
        Transfer::ControlOut { setup: ControlSetup::vendor_out(0xAB, 0, 0), data: Bytes::new() };
    host.ok(ack);
    // ... with data it is ignored and the host times out.
    let ignored = Transfer::ControlOut {
        setup: ControlSetup::vendor_out(0xAB, 0, 0),
        data: Bytes::from_static(&[1, 2]),
    };
    assert!(matches!(host.run(ignored), Err(UsbError::Timeout { .. })));
    host.ok_reset();
    let unknown_in = Transfer::ControlIn { setup: ControlSetup::vendor_in(0xAB, 0, 0), length: 4 };
    assert!(matches!(host.run(unknown_in), Err(UsbError::Timeout { .. })));
    assert_eq!(host.bridge.stats().unknown_requests, 3);
}

#[test]
fn stock_firmware_answers_no_vendor_request() {
    let mut host = Host::new(BridgeConfig::default().with_stock_firmware());
    assert_eq!(host.usb.info().vendor_id, 0x174C);
    assert_eq!(host.usb.info().product_id, 0x2464);
    assert!(matches!(host.run(e4(0xB450, 1)), Err(UsbError::Timeout { .. })));
    host.ok_reset();
    assert!(matches!(host.run(f3(true)), Err(UsbError::Timeout { .. })));
    host.ok_reset();
    // Standard requests still work: the device enumerates.
    host.ok(get_descriptor(1, 0, 18));
}

#[test]
fn power_monitor_reports_rails() {
    let mut host = Host::new(BridgeConfig::default());
    let c0 = Transfer::ControlIn { setup: ControlSetup::vendor_in(0xC0, 0, 0), length: 4 };
    let off = host.ok(c0.clone()).into_data();
    assert_eq!(off, vec![0, 0, 0, 0]);
    host.power_on();
    let on = host.ok(c0).into_data();
    assert_eq!(on.len(), 4);
    assert!(u16::from_le_bytes([on[0], on[1]]) > 10_000, "12 V rail once powered");
}

#[test]
fn transfers_to_endpoints_the_interface_lacks_fail_at_submit() {
    let mut host = Host::new(BridgeConfig::default());
    let r = host.usb.submit(Transfer::BulkIn { endpoint: 0x83, length: 4 }, TIMEOUT);
    assert!(matches!(r, Err(UsbError::Failed { .. })), "{r:?}");
    let r = host
        .usb
        .submit(Transfer::BulkOut { endpoint: 0x81, data: Bytes::from_static(&[0; 4]) }, TIMEOUT);
    assert!(matches!(r, Err(UsbError::Failed { .. })), "{r:?}");
    // Nothing latched: the next transfer works.
    host.xread(0, 1);
}

#[test]
fn f3_power_follows_the_ltssm_and_blocks_about_two_seconds_when_training_is_slow() {
    let mut host =
        Host::new(BridgeConfig::default().with_gpu(GpuKind::Ga102).with_link_training_polls(2));
    assert_eq!(host.xread(0xB450, 1), vec![0x00], "§3: custom fw boots with PCIe off");
    // The firmware waits up to 20×100 ms for L0; a 1 s control timeout is too short.
    assert!(matches!(host.run(f3(true)), Err(UsbError::Timeout { .. })));
    host.ok_reset();
    let first = host.xread(0xB450, 1)[0];
    let second = host.xread(0xB450, 1)[0];
    let third = host.xread(0xB450, 1)[0];
    assert_ne!(first, 0x78);
    assert_ne!(second, 0x78);
    assert_eq!(third, 0x78, "two polls still training, then L0");
    // While training, TLPs time out.
    let mut slow = Host::new(BridgeConfig::default().with_link_training_polls(1));
    slow.usb.transfer(f3(true), Duration::from_secs(10)).unwrap();
    let r = slow.cfg_read(0, 0, 0, 0);
    assert_eq!(r.ret, 0xFF, "no completion while the link trains");
    assert_ne!(slow.xread(0xB450, 1), vec![0x78]);
    assert_eq!(slow.xread(0xB450, 1), vec![0x78]);
    let r = slow.cfg_read(0, 0, 0, 0);
    assert_eq!((r.ret, r.data & 0xFFFF), (0, 0x1B21), "link up: the ASMedia port answers");
    // Off again.
    host.ok(f3(false));
    assert_eq!(host.bridge.ltssm(), 0x00);
    let booted_on = EmulatedBridge::new(BridgeConfig::default().with_powered_at_boot(true));
    assert_eq!(booted_on.ltssm(), 0x78);
}

#[test]
fn standard_requests_through_raw_control_transfers() {
    let mut host = Host::new(BridgeConfig::default());
    let get_config = Transfer::ControlIn {
        setup: ControlSetup { request_type: 0x80, request: 0x08, value: 0, index: 0 },
        length: 1,
    };
    assert_eq!(host.ok(get_config).into_data(), vec![1]);
    let get_status = Transfer::ControlIn {
        setup: ControlSetup { request_type: 0x80, request: 0x00, value: 0, index: 0 },
        length: 2,
    };
    assert_eq!(host.ok(get_status).into_data(), vec![1, 0], "self-powered");
    // A class request is not understood: protocol STALL, and EP0 works right after.
    let class = Transfer::ControlIn {
        setup: ControlSetup { request_type: 0xA1, request: 0xFE, value: 0, index: 0 },
        length: 1,
    };
    assert!(matches!(host.run(class), Err(UsbError::Stall { .. })));
    host.ok_reset();
    host.xread(0, 1);
}

#[test]
fn handles_are_shareable_across_threads() {
    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync_clone::<EmulatedBridge>();
    assert_send::<egpu_emu::EmulatedUsb>();
    // Stimulus from another thread is seen by the host side.
    let bridge = EmulatedBridge::new(BridgeConfig::default());
    let device = bridge.clone();
    std::thread::spawn(move || device.set_sram(0, &[0x42])).join().unwrap();
    let mut usb = bridge.transport();
    assert_eq!(usb.transfer(e4(0xF000, 1), TIMEOUT).unwrap().into_data(), vec![0x42]);
}

#[test]
fn alt_setting_1_exposes_the_legacy_endpoints_which_never_answer() {
    let mut host = Host::new(BridgeConfig::default());
    let r = host.usb.submit(Transfer::BulkIn { endpoint: 0x83, length: 8 }, TIMEOUT);
    assert!(r.is_err(), "alt 0 has no 0x83");
    let set_alt1 = Transfer::ControlOut {
        setup: ControlSetup { request_type: 0x01, request: 0x0B, value: 1, index: 0 },
        data: Bytes::new(),
    };
    host.ok(set_alt1);
    let r =
        host.usb.transfer(Transfer::BulkIn { endpoint: 0x83, length: 8 }, Duration::from_millis(3));
    assert!(matches!(r, Err(UsbError::Timeout { .. })), "{r:?}");
    host.ok_reset();
    assert!(host.usb.submit(Transfer::BulkIn { endpoint: 0x83, length: 8 }, TIMEOUT).is_err());
}
