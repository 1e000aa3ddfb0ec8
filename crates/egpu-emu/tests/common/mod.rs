//! Raw transfers built by hand from the tables of docs/reference/usb-bridge.md, and a tiny
//! host that strings them together. Nothing here comes from the driver crates: each helper
//! names the table row it encodes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use egpu_emu::{BridgeConfig, EmulatedBridge, EmulatedUsb};
use egpu_usb::{Completion, ControlSetup, Transfer, UsbError, UsbTransport};

pub const TIMEOUT: Duration = Duration::from_secs(1);

/// §3 E4: wValue = XDATA address, wIndex high byte = bank, wLength = n.
pub fn e4(addr: u16, len: u16) -> Transfer {
    e4_bank(addr, 0, len)
}

pub fn e4_bank(addr: u16, bank: u8, len: u16) -> Transfer {
    Transfer::ControlIn {
        setup: ControlSetup {
            request_type: 0xC0,
            request: 0xE4,
            value: addr,
            index: u16::from(bank) << 8,
        },
        length: len,
    }
}

/// §3 E5: wValue = address, wIndex low byte = value, high byte = bank, no data stage.
pub fn e5(addr: u16, value: u8) -> Transfer {
    e5_bank(addr, 0, value)
}

pub fn e5_bank(addr: u16, bank: u8, value: u8) -> Transfer {
    Transfer::ControlOut {
        setup: ControlSetup {
            request_type: 0x40,
            request: 0xE5,
            value: addr,
            index: (u16::from(bank) << 8) | u16::from(value),
        },
        data: Bytes::new(),
    }
}

/// §3 F0 OUT: wValue = fmt | be<<8, wIndex[1:0] = mode, 12 bytes addr_lo, addr_hi, value (LE).
pub fn f0_out(fmt: u8, be: u8, mode: u16, addr: u64, value: u32) -> Transfer {
    let mut data = Vec::with_capacity(12);
    data.extend_from_slice(&(addr as u32).to_le_bytes());
    data.extend_from_slice(&((addr >> 32) as u32).to_le_bytes());
    data.extend_from_slice(&value.to_le_bytes());
    Transfer::ControlOut {
        setup: ControlSetup {
            request_type: 0x40,
            request: 0xF0,
            value: u16::from(fmt) | (u16::from(be) << 8),
            index: mode,
        },
        data: Bytes::from(data),
    }
}

/// §3 F0 IN: wValue 0, wIndex 0, wLength 8.
pub fn f0_in() -> Transfer {
    Transfer::ControlIn {
        setup: ControlSetup { request_type: 0xC0, request: 0xF0, value: 0, index: 0 },
        length: 8,
    }
}

/// §3 F2: wValue bit 15 direction (1 = SRAM→host), bits 14:0 sectors; wIndex low = start
/// slot, high = number of slots.
pub fn f2(to_host: bool, sectors: u16, start_slot: u8, slots: u8) -> Transfer {
    Transfer::ControlOut {
        setup: ControlSetup {
            request_type: 0x40,
            request: 0xF2,
            value: (u16::from(to_host) << 15) | sectors,
            index: u16::from(start_slot) | (u16::from(slots) << 8),
        },
        data: Bytes::new(),
    }
}

/// §3 F3: wValue bit 0 = power on.
pub fn f3(on: bool) -> Transfer {
    Transfer::ControlOut {
        setup: ControlSetup { request_type: 0x40, request: 0xF3, value: u16::from(on), index: 0 },
        data: Bytes::new(),
    }
}

pub fn bulk_out(data: impl Into<Bytes>) -> Transfer {
    Transfer::BulkOut { endpoint: 0x02, data: data.into() }
}

pub fn bulk_in(length: usize) -> Transfer {
    Transfer::BulkIn { endpoint: 0x81, length }
}

/// §3 F0 IN reply decoded: data LE, status = byte 4 bits 7:5, byte 6 type, byte 7 ret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub data: u32,
    pub status: u8,
    pub cpl_type: u8,
    pub ret: u8,
    pub byte_count: u16,
}

pub fn parse_reply(b: &[u8]) -> Reply {
    assert_eq!(b.len(), 8, "F0 IN reply is 8 bytes");
    Reply {
        data: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        status: b[4] >> 5,
        cpl_type: b[6],
        ret: b[7],
        byte_count: (u16::from(b[4] & 0x0F) << 8) | u16::from(b[5]),
    }
}

/// §4.2: bus<<24 | dev<<19 | fn<<16 | register.
pub fn cfg_addr(bus: u8, dev: u8, func: u8, reg: u16) -> u64 {
    (u64::from(bus) << 24)
        | (u64::from(dev) << 19)
        | (u64::from(func) << 16)
        | u64::from(reg & 0xFFF)
}

pub struct Host {
    pub bridge: EmulatedBridge,
    pub usb: EmulatedUsb,
}

impl Host {
    pub fn new(config: BridgeConfig) -> Self {
        let bridge = EmulatedBridge::new(config);
        let usb = bridge.transport();
        Self { bridge, usb }
    }

    pub fn run(&mut self, t: Transfer) -> Result<Completion, UsbError> {
        self.usb.transfer(t, TIMEOUT)
    }

    pub fn ok(&mut self, t: Transfer) -> Completion {
        let what = t.to_string();
        self.run(t).unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    pub fn xread(&mut self, addr: u16, len: u16) -> Vec<u8> {
        self.ok(e4(addr, len)).into_data()
    }

    pub fn xwrite(&mut self, addr: u16, value: u8) {
        self.ok(e5(addr, value));
    }

    pub fn power_on(&mut self) {
        self.usb.transfer(f3(true), Duration::from_secs(10)).expect("F3 on");
        assert_eq!(self.xread(0xB450, 1), vec![0x78], "§1.2: LTSSM 0x78 after F3 on");
    }

    /// One mode-0 TLP and its F0 IN reply.
    pub fn tlp(&mut self, fmt: u8, be: u8, addr: u64, value: u32) -> Reply {
        self.ok(f0_out(fmt, be, 0, addr, value));
        parse_reply(&self.ok(f0_in()).into_data())
    }

    /// §4.2: Type 0 when bus == 0, Type 1 otherwise.
    pub fn cfg_read(&mut self, bus: u8, dev: u8, func: u8, reg: u16) -> Reply {
        let fmt = if bus == 0 { 0x04 } else { 0x05 };
        self.tlp(fmt, 0x0F, cfg_addr(bus, dev, func, reg & !3), 0)
    }

    pub fn cfg_write_be(
        &mut self,
        bus: u8,
        dev: u8,
        func: u8,
        reg: u16,
        value: u32,
        be: u8,
    ) -> Reply {
        let fmt = if bus == 0 { 0x44 } else { 0x45 };
        self.tlp(fmt, be, cfg_addr(bus, dev, func, reg & !3), value)
    }

    pub fn cfg_write(&mut self, bus: u8, dev: u8, func: u8, reg: u16, value: u32) -> Reply {
        self.cfg_write_be(bus, dev, func, reg, value, 0x0F)
    }

    /// §4.1 sub-dword write: byte enables shifted by the offset, data shifted into place.
    pub fn cfg_write_sized(&mut self, bus: u8, dev: u8, func: u8, reg: u16, value: u32, size: u8) {
        let offset = reg & 3;
        let be = (((1u16 << size) - 1) << offset) as u8;
        let r = self.cfg_write_be(bus, dev, func, reg & !3, value << (8 * offset), be);
        assert_eq!((r.ret, r.status), (0, 0), "config write {bus}:{dev}.{func} 0x{reg:X}");
    }

    pub fn cfg_read32(&mut self, bus: u8, dev: u8, func: u8, reg: u16) -> u32 {
        let r = self.cfg_read(bus, dev, func, reg);
        assert_eq!((r.ret, r.status), (0, 0), "config read {bus}:{dev}.{func} 0x{reg:X}");
        r.data
    }

    /// §4.1: 3DW (0x40) below 4 GiB, 4DW (0x60) above.
    pub fn mem_write32(&mut self, addr: u64, value: u32) {
        let fmt = if addr >> 32 == 0 { 0x40 } else { 0x60 };
        self.ok(f0_out(fmt, 0x0F, 0, addr, value));
    }

    pub fn mem_read32(&mut self, addr: u64) -> Reply {
        let fmt = if addr >> 32 == 0 { 0x00 } else { 0x20 };
        self.tlp(fmt, 0x0F, addr, 0)
    }

    /// §4.4: F0 mode 1 then bulk OUT of the dwords.
    pub fn stream_write(&mut self, addr: u64, data: &[u8]) {
        let fmt = if addr >> 32 == 0 { 0x40 } else { 0x60 };
        self.ok(f0_out(fmt, 0x0F, 1, addr, (data.len() / 4) as u32));
        self.ok(bulk_out(data.to_vec()));
    }

    /// §4.5: F0 mode 2 then bulk IN.
    pub fn stream_read(&mut self, addr: u64, len: usize) -> Vec<u8> {
        let fmt = if addr >> 32 == 0 { 0x00 } else { 0x20 };
        self.ok(f0_out(fmt, 0x0F, 2, addr, (len / 4) as u32));
        self.ok(bulk_in(len)).into_data()
    }

    /// §5 table: bus numbers, windows and COMMAND on each bridge 0..gpu_bus-1.
    pub fn setup_bridges(&mut self, gpu_bus: u8) {
        for b in 0..gpu_bus {
            self.cfg_write(b, 0, 0, 0x18, (u32::from(gpu_bus) << 16) | (u32::from(b + 1) << 8));
            self.cfg_write_sized(b, 0, 0, 0x20, 0x1000, 2);
            self.cfg_write_sized(b, 0, 0, 0x22, 0xFFFF, 2);
            self.cfg_write_sized(b, 0, 0, 0x24, 0x0000, 2);
            self.cfg_write_sized(b, 0, 0, 0x26, 0xFFFF, 2);
            self.cfg_write(b, 0, 0, 0x28, 0x8);
            self.cfg_write(b, 0, 0, 0x2C, 0xFFFF_FFFF);
            self.cfg_write_sized(b, 0, 0, 0x04, 0x07, 1);
        }
    }

    /// §5 GPU step 1: walk extended capabilities from 0x100 and set each REBAR's first entry
    /// to its largest supported size.
    pub fn rebar_max(&mut self, bus: u8) {
        let mut at = 0x100u16;
        for _ in 0..64 {
            let header = self.cfg_read32(bus, 0, 0, at);
            if header & 0xFFFF == 0x15 {
                let cap = self.cfg_read32(bus, 0, 0, at + 4);
                let ctl = self.cfg_read32(bus, 0, 0, at + 8);
                // bit_length(cap >> 4) - 1
                let index = (32 - (cap >> 4).leading_zeros()) - 1;
                self.cfg_write(bus, 0, 0, at + 8, (ctl & !0x1F00) | (index << 8));
            }
            at = (header >> 20) as u16;
            if at == 0 {
                break;
            }
        }
    }

    /// §5 GPU step 2: size BARs 0x10..0x24 (skipping I/O), assign prefetchable ones from
    /// 32 GiB and the rest from 0x1000_0000, each pool advancing by round_up(size, 2 MiB);
    /// then COMMAND = IO|MEM|MASTER.
    pub fn assign_bars(&mut self, bus: u8) -> BTreeMap<usize, (u64, u64)> {
        let mut pref = 0x8_0000_0000u64;
        let mut mem = 0x1000_0000u64;
        let mut out = BTreeMap::new();
        let mut i = 0usize;
        while i < 6 {
            let reg = 0x10 + 4 * i as u16;
            let orig = self.cfg_read32(bus, 0, 0, reg);
            if orig & 1 == 1 {
                i += 1;
                continue;
            }
            let is64 = (orig >> 1) & 3 == 2;
            let prefetchable = orig & 8 != 0;
            self.cfg_write(bus, 0, 0, reg, 0xFFFF_FFFF);
            let mut mask = u64::from(self.cfg_read32(bus, 0, 0, reg) & !0xF);
            if is64 {
                self.cfg_write(bus, 0, 0, reg + 4, 0xFFFF_FFFF);
                mask |= u64::from(self.cfg_read32(bus, 0, 0, reg + 4)) << 32;
            } else {
                mask |= 0xFFFF_FFFF_0000_0000;
            }
            if mask == 0xFFFF_FFFF_0000_0000 || mask == 0 {
                i += if is64 { 2 } else { 1 };
                continue;
            }
            let size = (!mask).wrapping_add(1);
            let pool = if prefetchable { &mut pref } else { &mut mem };
            let addr = *pool;
            *pool += size.div_ceil(2 << 20) * (2 << 20);
            self.cfg_write(bus, 0, 0, reg, addr as u32);
            if is64 {
                self.cfg_write(bus, 0, 0, reg + 4, (addr >> 32) as u32);
            }
            out.insert(i, (addr, size));
            i += if is64 { 2 } else { 1 };
        }
        self.cfg_write_sized(bus, 0, 0, 0x04, 0x07, 1);
        out
    }

    /// F3 on, bridges, REBAR, BARs: the §2/§5 bring-up for a GPU on `gpu_bus`.
    pub fn bring_up(&mut self, gpu_bus: u8) -> BTreeMap<usize, (u64, u64)> {
        self.power_on();
        self.setup_bridges(gpu_bus);
        self.rebar_max(gpu_bus);
        self.assign_bars(gpu_bus)
    }
}

impl Host {
    /// SET_INTERFACE alt 0, which also clears the sticky error.
    pub fn ok_reset(&mut self) {
        self.usb.reset_interface().expect("SET_INTERFACE");
    }
}

impl Host {
    /// Zero the emulator's counters (device side).
    pub fn reset_stats_only(&mut self) {
        self.bridge.reset_stats();
    }
}

impl Host {
    /// After a STALL the OUT endpoint stays halted: another transfer on it stalls again (or
    /// reports the sticky error of the first stall).
    pub fn expect_out_endpoint_halted(&mut self) {
        let r = self.run(bulk_out(vec![0u8; 512]));
        assert!(matches!(r, Err(UsbError::Stall { .. }) | Err(UsbError::Sticky { .. })), "{r:?}");
    }

    /// §5 bring-up without the LTSSM assertion (for bridges powered at boot).
    pub fn bring_up_quiet(&mut self, gpu_bus: u8) {
        self.setup_bridges(gpu_bus);
        self.rebar_max(gpu_bus);
        self.assign_bars(gpu_bus);
    }
}
