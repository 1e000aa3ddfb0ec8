//! §1.3, §4.2, §5, §12.6: config routing, bridges, BAR sizing, REBAR, capabilities, FLR/CRS.

mod common;

use common::*;
use egpu_emu::{BridgeConfig, GpuKind};
use egpu_usb::UsbTransport;

const UR: u8 = 0b001;
const CRS: u8 = 0b010;

#[test]
fn type0_config_read_of_the_asmedia_vendor_id() {
    let mut host = Host::new(BridgeConfig::default());
    host.power_on();
    let r = host.cfg_read(0, 0, 0, 0x00);
    assert_eq!(r.ret, 0, "§3: ret_status 0 = completed");
    assert_eq!(r.status, 0, "successful completion");
    assert_eq!(r.data & 0xFFFF, 0x1B21, "ASMedia vendor ID");
    assert_eq!(r.data >> 16, 0x2461);
    assert_eq!(r.cpl_type & 1, 1, "0xB284 bit 0: completion with data");
    assert_eq!(r.byte_count, 4);
    // Class code: PCI-to-PCI bridge, header type 1.
    assert_eq!((host.cfg_read32(0, 0, 0, 0x0C) >> 16) & 0x7F, 1);
    assert_eq!(host.cfg_read32(0, 0, 0, 0x08) >> 8, 0x060400);
    // The engine registers mirror the last TLP (§1.2: address big-endian at 0xB218).
    assert_eq!(host.xread(0xB210, 1), vec![0x04]);
    assert_eq!(
        host.xread(0xB220, 4),
        vec![0x06, 0x04, 0x00, 0x01],
        "class|rev, big-endian at 0xB220"
    );
}

#[test]
fn config_before_power_on_times_out() {
    let mut host = Host::new(BridgeConfig::default());
    let r = host.cfg_read(0, 0, 0, 0);
    assert_eq!(r.ret, 0xFF);
    assert_eq!(r.data, 0, "§3: bytes 0–6 zeroed on timeout");
}

#[test]
fn type1_reaches_deeper_buses_only_after_bus_numbers_are_programmed() {
    let mut host = Host::new(BridgeConfig::default());
    host.power_on();
    let r = host.cfg_read(1, 0, 0, 0);
    assert_eq!((r.ret, r.status), (0, UR), "unprogrammed bridge: Unsupported Request");
    // Program bus 0's bridge: secondary 1, subordinate 4.
    host.cfg_write(0, 0, 0, 0x18, (4 << 16) | (1 << 8));
    assert_eq!(host.cfg_read32(0, 0, 0, 0x18) & 0xFF_FFFF, 0x04_0100);
    assert_eq!(host.cfg_read32(1, 0, 0, 0) & 0xFFFF, 0x1B21, "downstream ASMedia port");
    // Bus 2 still needs bus 1's bridge programmed.
    assert_eq!(host.cfg_read(2, 0, 0, 0).status, UR);
    host.cfg_write(1, 0, 0, 0x18, (4 << 16) | (2 << 8) | 1);
    assert_eq!(host.cfg_read32(2, 0, 0, 0), 0x1478_1002, "AMD upstream switch port");
    host.setup_bridges(4);
    assert_eq!(host.cfg_read32(3, 0, 0, 0), 0x1479_1002);
    assert_eq!(host.cfg_read32(4, 0, 0, 0), 0x744C_1002, "Navi 31 on bus 4");
    assert_eq!(host.cfg_read32(4, 0, 0, 0x08) >> 8, 0x030000);
    assert_eq!(host.cfg_read32(4, 0, 1, 0), 0xAB30_1002, "HDMI audio function 1");
    assert_eq!(host.cfg_read32(4, 0, 1, 0x08) >> 8, 0x040300);
    // Beyond the subordinate bus nobody claims the request.
    assert_eq!(host.cfg_read(5, 0, 0, 0).status, UR);
}

#[test]
fn absent_functions_and_devices_are_unsupported_requests() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    for (bus, dev, func) in [(4, 0, 2), (4, 1, 0), (0, 3, 0), (3, 0, 1)] {
        let r = host.cfg_read(bus, dev, func, 0);
        assert_eq!((r.ret, r.status, r.cpl_type & 1), (0, UR, 0), "{bus}:{dev}.{func}");
    }
    // A config write to an absent function is also UR.
    assert_eq!(host.cfg_write(4, 0, 5, 0x04, 0).status, UR);
    assert!(host.bridge.stats().unsupported_requests >= 5);
}

#[test]
fn ga102_sits_on_bus_2() {
    let mut host = Host::new(BridgeConfig::default().with_gpu(GpuKind::Ga102));
    host.power_on();
    host.setup_bridges(2);
    assert_eq!(host.cfg_read32(2, 0, 0, 0), 0x2204_10DE);
    assert_eq!(host.cfg_read32(2, 0, 1, 0), 0x1AEF_10DE);
    assert_eq!(host.cfg_read(3, 0, 0, 0).status, UR);
}

#[test]
fn no_gpu_leaves_only_the_asmedia_ports() {
    let mut host = Host::new(BridgeConfig::default().with_gpu(GpuKind::None));
    host.power_on();
    host.setup_bridges(2);
    assert_eq!(host.cfg_read32(1, 0, 0, 0) & 0xFFFF, 0x1B21);
    assert_eq!(host.cfg_read(2, 0, 0, 0).status, UR);
    assert!(host.bridge.gpu_dma_write(0x20_0000, &[1]).is_err());
}

/// Walk a standard capability list from 0x34; returns (id, offset) pairs.
fn caps(host: &mut Host, bus: u8, func: u8) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    let mut ptr = (host.cfg_read32(bus, 0, func, 0x34) & 0xFC) as u16;
    while ptr != 0 && out.len() < 48 {
        let header = host.cfg_read32(bus, 0, func, ptr);
        out.push((header as u8, ptr));
        ptr = ((header >> 8) & 0xFC) as u16;
    }
    out
}

#[test]
fn every_function_has_pm_and_pcie_capabilities() {
    let mut host = Host::new(BridgeConfig::default());
    host.bring_up(4);
    for (bus, func) in [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (4, 1)] {
        let status = host.cfg_read32(bus, 0, func, 0x04) >> 16;
        assert_ne!(status & 0x10, 0, "{bus}.{func}: STATUS.CAP_LIST");
        let ids: Vec<u8> = caps(&mut host, bus, func).iter().map(|c| c.0).collect();
        assert!(ids.contains(&0x01) && ids.contains(&0x10), "{bus}.{func}: {ids:?}");
    }
    // Port types in the PCIe capability: upstream switch port 5, downstream 6, endpoint 0.
    for (bus, ty) in [(0u8, 5u32), (1, 6), (2, 5), (3, 6), (4, 0)] {
        let at = caps(&mut host, bus, 0).iter().find(|c| c.0 == 0x10).unwrap().1;
        assert_eq!((host.cfg_read32(bus, 0, 0, at) >> 20) & 0xF, ty, "bus {bus}");
    }
}

#[test]
fn bar_sizing_reads_back_masks_with_type_bits() {
    let mut host = Host::new(BridgeConfig::default());
    host.power_on();
    host.setup_bridges(4);
    // BAR0: 64-bit prefetchable memory (type bits 0b1100), default 256 MiB.
    assert_eq!(host.cfg_read32(4, 0, 0, 0x10) & 0xF, 0xC);
    host.cfg_write(4, 0, 0, 0x10, 0xFFFF_FFFF);
    host.cfg_write(4, 0, 0, 0x14, 0xFFFF_FFFF);
    let lo = host.cfg_read32(4, 0, 0, 0x10);
    let hi = host.cfg_read32(4, 0, 0, 0x14);
    assert_eq!(lo, 0xF000_000C);
    assert_eq!(hi, 0xFFFF_FFFF);
    let size = !((u64::from(hi) << 32) | u64::from(lo & !0xF)) + 1;
    assert_eq!(size, 256 << 20);
    // BAR4 is an I/O BAR (bit 0 set) that a driver must skip.
    host.cfg_write(4, 0, 0, 0x20, 0xFFFF_FFFF);
    assert_eq!(host.cfg_read32(4, 0, 0, 0x20), 0xFFFF_FF01);
    // BAR5: 32-bit non-prefetchable 1 MiB.
    host.cfg_write(4, 0, 0, 0x24, 0xFFFF_FFFF);
    assert_eq!(host.cfg_read32(4, 0, 0, 0x24), 0xFFF0_0000);
    // Bridges have no BARs.
    host.cfg_write(1, 0, 0, 0x10, 0xFFFF_FFFF);
    assert_eq!(host.cfg_read32(1, 0, 0, 0x10), 0);
    let bars = host.assign_bars(4);
    assert_eq!(bars.get(&0), Some(&(0x8_0000_0000, 256 << 20)));
    assert_eq!(bars.get(&2), Some(&(0x8_1000_0000, 2 << 20)));
    assert_eq!(bars.get(&5), Some(&(0x1000_0000, 1 << 20)));
    assert!(!bars.contains_key(&4));
}

#[test]
fn rebar_resize_changes_what_sizing_returns() {
    let mut host = Host::new(BridgeConfig::default());
    host.power_on();
    host.setup_bridges(4);
    // Walk extended capabilities to the REBAR one (ID 0x15).
    let mut at = 0x100u16;
    let mut rebar = None;
    // Bounded: a looping list must fail the test, not hang it.
    for _ in 0..64 {
        let header = host.cfg_read32(4, 0, 0, at);
        if header & 0xFFFF == 0x15 {
            rebar = Some(at);
            break;
        }
        at = (header >> 20) as u16;
        if at == 0 {
            break;
        }
    }
    let rebar = rebar.expect("Navi 31 has a Resizable BAR capability");
    assert_ne!(rebar, 0x100, "another extended capability comes first");
    let cap = host.cfg_read32(4, 0, 0, rebar + 4);
    assert_ne!(cap & (1 << (4 + 8)), 0, "256 MiB supported");
    assert_ne!(cap & (1 << (4 + 15)), 0, "32 GiB supported");
    assert_eq!(cap & (1 << (4 + 16)), 0, "64 GiB not supported");
    let ctl = host.cfg_read32(4, 0, 0, rebar + 8);
    assert_eq!(ctl & 0x7, 0, "controls BAR0");
    assert_eq!((ctl >> 5) & 0x7, 1, "one resizable BAR");
    assert_eq!((ctl >> 8) & 0x1F, 8, "256 MiB now");
    // Resize to 32 GiB (index 15).
    host.cfg_write(4, 0, 0, rebar + 8, (ctl & !0x1F00) | (15 << 8));
    assert_eq!((host.cfg_read32(4, 0, 0, rebar + 8) >> 8) & 0x1F, 15);
    host.cfg_write(4, 0, 0, 0x10, 0xFFFF_FFFF);
    host.cfg_write(4, 0, 0, 0x14, 0xFFFF_FFFF);
    let lo = host.cfg_read32(4, 0, 0, 0x10);
    let hi = host.cfg_read32(4, 0, 0, 0x14);
    let size = !((u64::from(hi) << 32) | u64::from(lo & !0xF)) + 1;
    assert_eq!(size, 32 << 30);
    // An unsupported size is ignored.
    host.cfg_write(4, 0, 0, rebar + 8, (ctl & !0x1F00) | (20 << 8));
    assert_eq!((host.cfg_read32(4, 0, 0, rebar + 8) >> 8) & 0x1F, 15);
    // The §5 bring-up reaches the same answer.
    let mut fresh = Host::new(BridgeConfig::default());
    let bars = fresh.bring_up(4);
    assert_eq!(bars[&0], (0x8_0000_0000, 32 << 30));
    assert_eq!(bars[&2].0, 0x8_0000_0000 + (32 << 30), "doorbells right after VRAM");
}

#[test]
fn ga102_bars_and_rebar_on_bar1() {
    let mut host = Host::new(BridgeConfig::default().with_gpu(GpuKind::Ga102));
    let bars = host.bring_up(2);
    assert_eq!(bars[&0], (0x1000_0000, 16 << 20), "BAR0 32-bit MMIO");
    assert_eq!(bars[&1], (0x8_0000_0000, 32 << 30), "BAR1 VRAM after REBAR");
    assert_eq!(bars[&3].1, 32 << 20, "BAR3 64-bit prefetchable 32 MiB");
    assert!(!bars.contains_key(&5), "BAR5 is I/O");
}

#[test]
fn partial_dword_config_writes_merge_by_byte_enable() {
    let mut host = Host::new(BridgeConfig::default());
    host.power_on();
    // 0x19 secondary bus via a 1-byte write at offset 1: be 0b0010, data shifted by 8.
    host.cfg_write_sized(0, 0, 0, 0x19, 0x07, 1);
    host.cfg_write_sized(0, 0, 0, 0x1A, 0x09, 1);
    assert_eq!(host.cfg_read32(0, 0, 0, 0x18) & 0xFF_FFFF, 0x09_0700);
    // The driver shifts read data: reading 0x1A returns the whole dword.
    let r = host.cfg_read(0, 0, 0, 0x1A);
    assert_eq!((r.data >> 16) & 0xFF, 0x09);
}

#[test]
fn flr_resets_the_function_and_crs_follows() {
    let mut host = Host::new(BridgeConfig::default().with_crs_reads_after_reset(2));
    host.usb.transfer(f3(true), std::time::Duration::from_secs(10)).unwrap();
    // After power-on each function answers config reads with CRS twice.
    assert_eq!(host.cfg_read(0, 0, 0, 0).status, CRS);
    assert_eq!(host.cfg_read(0, 0, 0, 0).status, CRS);
    assert_eq!(host.cfg_read(0, 0, 0, 0).status, 0);
    host.cfg_read(0, 0, 0, 0);
    host.cfg_write(0, 0, 0, 0x18, (4 << 16) | (1 << 8));
    // Each function answers CRS a bounded number of times after power-on (two by default).
    let settle = |host: &mut Host, bus: u8| {
        let settled = (0..=2).any(|_| host.cfg_read(bus, 0, 0, 0).status != CRS);
        assert!(settled, "bus {bus} still answers CRS");
    };
    for bus in 1..4 {
        settle(&mut host, bus);
        host.cfg_write(bus, 0, 0, 0x18, (4 << 16) | ((u32::from(bus) + 1) << 8) | u32::from(bus));
    }
    settle(&mut host, 4);
    host.cfg_write(4, 0, 0, 0x10, 0x4000_0000);
    host.cfg_write_sized(4, 0, 0, 0x04, 0x06, 2);
    assert_eq!(host.cfg_read32(4, 0, 0, 0x04) & 0x7, 0x6);
    // DevCap.FLR is set; DevCtl bit 15 starts an FLR.
    let pcie = caps(&mut host, 4, 0).iter().find(|c| c.0 == 0x10).unwrap().1;
    assert_ne!(host.cfg_read32(4, 0, 0, pcie + 4) & (1 << 28), 0);
    let devctl = host.cfg_read32(4, 0, 0, pcie + 8) & 0xFFFF;
    host.cfg_write_sized(4, 0, 0, pcie + 8, devctl | 0x8000, 2);
    assert_eq!(host.cfg_read(4, 0, 0, 0).status, CRS, "initialising after FLR");
    assert_eq!(host.cfg_read(4, 0, 0, 0).status, CRS);
    assert_eq!(host.cfg_read32(4, 0, 0, 0x04) & 0x7, 0, "COMMAND cleared by FLR");
    assert_eq!(host.cfg_read32(4, 0, 0, 0x10) & !0xF, 0, "BAR cleared by FLR");
    assert_eq!(host.cfg_read32(4, 0, 0, pcie + 8) & 0x8000, 0, "BCR_FLR reads 0");
}
