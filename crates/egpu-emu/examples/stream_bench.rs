//! How much of a bulk transfer's cost is the emulator itself: streams 1 GiB into VRAM with
//! F0 mode 1 (§4.4) in 4 MiB bulk OUTs, reads 64 MiB back with mode 2, moves 512 KiB windows
//! with F2, and prints the emulator's own `device_time` for each.
//!
//! `cargo run --release -p egpu-emu --example stream_bench [MiB]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use egpu_emu::{BridgeConfig, EmulatedBridge};
use egpu_usb::{ControlSetup, Transfer, UsbTransport};

const T: Duration = Duration::from_secs(10);

fn vendor_out(request: u8, value: u16, index: u16, data: Vec<u8>) -> Transfer {
    Transfer::ControlOut {
        setup: ControlSetup::vendor_out(request, value, index),
        data: data.into(),
    }
}

fn f0(fmt: u8, mode: u16, addr: u64, value: u32) -> Transfer {
    let mut d = (addr as u32).to_le_bytes().to_vec();
    d.extend(((addr >> 32) as u32).to_le_bytes());
    d.extend(value.to_le_bytes());
    vendor_out(0xF0, u16::from(fmt) | 0x0F00, mode, d)
}

fn cfg_write(usb: &mut impl UsbTransport, bus: u8, reg: u16, value: u32) {
    let fmt = if bus == 0 { 0x44 } else { 0x45 };
    usb.transfer(f0(fmt, 0, (u64::from(bus) << 24) | u64::from(reg), value), T).unwrap();
}

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1024);
    let bridge = EmulatedBridge::new(BridgeConfig::default().with_powered_at_boot(true));
    let mut usb = bridge.transport();
    // §5 minimal bring-up: bridges 0..3 forward everything, BAR0 at 32 GiB, MEM on the GPU.
    for b in 0..4u8 {
        cfg_write(&mut usb, b, 0x18, (4 << 16) | (u32::from(b + 1) << 8) | u32::from(b));
        cfg_write(&mut usb, b, 0x20, 0xFFFF_1000);
        cfg_write(&mut usb, b, 0x24, 0xFFF1_0001);
        cfg_write(&mut usb, b, 0x28, 0x8);
        cfg_write(&mut usb, b, 0x2C, 0xFFFF_FFFF);
        cfg_write(&mut usb, b, 0x04, 0x7);
    }
    cfg_write(&mut usb, 4, 0x10, 0);
    cfg_write(&mut usb, 4, 0x14, 0x8);
    cfg_write(&mut usb, 4, 0x04, 0x7);

    let chunk = 4 << 20;
    let buffer = Bytes::from((0..chunk).map(|i| i as u8).collect::<Vec<u8>>());
    let total = mib << 20;
    bridge.reset_stats();
    let wall = Instant::now();
    let mut done = 0usize;
    while done < total {
        let n = chunk.min(total - done);
        usb.transfer(f0(0x60, 1, 0x8_0000_0000 + done as u64, (n / 4) as u32), T).unwrap();
        usb.transfer(Transfer::BulkOut { endpoint: 0x02, data: buffer.slice(..n) }, T).unwrap();
        done += n;
    }
    let s = bridge.stats();
    println!(
        "mode-1 write {mib} MiB: device_time {:?} ({:.0} MB/s), wall {:?}, {} TLPs",
        s.device_time,
        total as f64 / s.device_time.as_secs_f64() / 1e6,
        wall.elapsed(),
        s.tlps
    );

    let read = total.min(64 << 20);
    bridge.reset_stats();
    let mut done = 0usize;
    while done < read {
        let n = chunk.min(read - done);
        usb.transfer(f0(0x20, 2, 0x8_0000_0000 + done as u64, (n / 4) as u32), T).unwrap();
        let got = usb.transfer(Transfer::BulkIn { endpoint: 0x81, length: n }, T).unwrap();
        assert_eq!(got.into_data().len(), n);
        done += n;
    }
    let s = bridge.stats();
    println!(
        "mode-2 read {} MiB: device_time {:?} ({:.0} MB/s)",
        read >> 20,
        s.device_time,
        read as f64 / s.device_time.as_secs_f64() / 1e6
    );

    bridge.reset_stats();
    let window = buffer.slice(..512 << 10);
    for _ in 0..256 {
        usb.transfer(vendor_out(0xF2, 1024, 0x2000, Vec::new()), T).unwrap();
        usb.transfer(Transfer::BulkOut { endpoint: 0x02, data: window.clone() }, T).unwrap();
    }
    let s = bridge.stats();
    println!(
        "F2 write 128 MiB: device_time {:?} ({:.0} MB/s)",
        s.device_time,
        (128u64 << 20) as f64 / s.device_time.as_secs_f64() / 1e6
    );
}
