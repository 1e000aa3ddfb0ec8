//! One PCI function's 4 KiB configuration space: bytes, per-bit write masks and a reset image,
//! plus the registers whose writes have side effects (BARs, Resizable BAR, FLR).

/// PCI COMMAND register bits (PCI Local Bus spec 3.0 §6.2.2).
pub const COMMAND: u16 = 0x04;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;

/// Standard capability IDs (PCI Code and ID Assignment spec).
pub const CAP_ID_PM: u8 = 0x01;
pub const CAP_ID_PCIE: u8 = 0x10;
/// Extended capability IDs.
pub const EXT_CAP_ID_AER: u16 = 0x0001;
pub const EXT_CAP_ID_REBAR: u16 = 0x0015;

/// Offsets inside the PCI Express capability (PCIe Base spec §7.5.3).
pub const PCIE_DEVCAP: u16 = 0x04;
pub const PCIE_DEVCTL: u16 = 0x08;
/// DevCap bit 28: Function Level Reset capability.
pub const DEVCAP_FLR: u32 = 1 << 28;
/// DevCtl bit 15: Initiate Function Level Reset (reads 0).
pub const DEVCTL_BCR_FLR: u16 = 1 << 15;

const SIZE: usize = 4096;

/// Raw configuration space with write masks; side effects are applied by the owner.
#[derive(Clone)]
pub(crate) struct ConfigSpace {
    bytes: Box<[u8]>,
    wmask: Box<[u8]>,
    reset: Box<[u8]>,
}

impl std::fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigSpace({:04X}:{:04X})", self.read16(0), self.read16(2))
    }
}

impl ConfigSpace {
    pub fn new() -> Self {
        Self {
            bytes: vec![0; SIZE].into_boxed_slice(),
            wmask: vec![0; SIZE].into_boxed_slice(),
            reset: vec![0; SIZE].into_boxed_slice(),
        }
    }

    pub fn read8(&self, off: u16) -> u8 {
        self.bytes.get(usize::from(off)).copied().unwrap_or(0)
    }

    pub fn read16(&self, off: u16) -> u16 {
        u16::from_le_bytes([self.read8(off), self.read8(off.wrapping_add(1))])
    }

    pub fn read32(&self, off: u16) -> u32 {
        u32::from_le_bytes([
            self.read8(off),
            self.read8(off.wrapping_add(1)),
            self.read8(off.wrapping_add(2)),
            self.read8(off.wrapping_add(3)),
        ])
    }

    /// Device-side store, ignoring write masks (used while building and for side effects).
    pub fn set8(&mut self, off: u16, v: u8) {
        if let Some(b) = self.bytes.get_mut(usize::from(off)) {
            *b = v;
        }
    }

    pub fn set16(&mut self, off: u16, v: u16) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set8(off + i as u16, b);
        }
    }

    pub fn set32(&mut self, off: u16, v: u32) {
        for (i, b) in v.to_le_bytes().into_iter().enumerate() {
            self.set8(off + i as u16, b);
        }
    }

    /// Make the bits of `mask` at `off` (`len` bytes, little-endian) writable by software.
    pub fn writable(&mut self, off: u16, len: u16, mask: u32) {
        for i in 0..len.min(4) {
            if let Some(m) = self.wmask.get_mut(usize::from(off + i)) {
                *m = (mask >> (8 * i)) as u8;
            }
        }
    }

    /// Software write of one dword at dword-aligned `reg` with PCIe byte enables: each enabled
    /// byte merges through the write mask (§4.1 partial-dword writes merge by byte enable).
    pub fn write_masked(&mut self, reg: u16, value: u32, byte_enables: u8) {
        let reg = reg & 0xFFC;
        for i in 0..4u16 {
            if byte_enables & (1 << i) == 0 {
                continue;
            }
            let at = usize::from(reg + i);
            let v = (value >> (8 * i)) as u8;
            let m = self.wmask[at];
            self.bytes[at] = (self.bytes[at] & !m) | (v & m);
        }
    }

    /// Remember the current contents as the state after reset.
    pub fn capture_reset_image(&mut self) {
        self.reset.copy_from_slice(&self.bytes);
    }

    /// Return to the reset image (fundamental reset or FLR).
    pub fn reset(&mut self) {
        self.bytes.copy_from_slice(&self.reset);
    }

    pub fn command(&self) -> u16 {
        self.read16(COMMAND)
    }

    /// Walk the standard capability list from 0x34 for `id`.
    pub fn find_cap(&self, id: u8) -> Option<u16> {
        let mut ptr = u16::from(self.read8(0x34)) & 0xFC;
        for _ in 0..48 {
            if ptr < 0x40 {
                return None;
            }
            if self.read8(ptr) == id {
                return Some(ptr);
            }
            ptr = u16::from(self.read8(ptr + 1)) & 0xFC;
        }
        None
    }
}

/// Builds a configuration space: header, then capabilities chained in order.
pub(crate) struct ConfigBuilder {
    pub cs: ConfigSpace,
    last_cap: Option<u16>,
    last_ext: Option<u16>,
}

/// Link capability and status of a PCI Express function (speed 1 = 2.5 GT/s .. 4 = 16 GT/s).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    pub max_speed: u8,
    pub max_width: u8,
    pub cur_speed: u8,
    pub cur_width: u8,
}

/// PCI Express device/port type (PCIe cap register bits 7:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PortType {
    Endpoint = 0x0,
    RootPort = 0x4,
    UpstreamSwitchPort = 0x5,
    DownstreamSwitchPort = 0x6,
}

impl ConfigBuilder {
    /// Common header fields of a type-0 (`bridge = false`) or type-1 function.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8, bridge: bool) -> Self {
        let mut cs = ConfigSpace::new();
        cs.set16(0x00, vendor);
        cs.set16(0x02, device);
        // STATUS bit 4: capabilities list present.
        cs.set16(0x06, 1 << 4);
        cs.set32(0x08, (class << 8) | u32::from(revision));
        cs.set8(0x0E, u8::from(bridge));
        // COMMAND: I/O, memory, bus master, parity, SERR#, INTx disable.
        cs.writable(COMMAND, 2, 0x0547);
        // Cache line size.
        cs.writable(0x0C, 1, 0xFF);
        // Interrupt line.
        cs.writable(0x3C, 1, 0xFF);
        if bridge {
            // PCI-to-PCI Bridge spec 1.2 §3.2: bus numbers, I/O base/limit, memory windows.
            cs.writable(0x18, 3, 0x00FF_FFFF);
            cs.writable(0x1C, 2, 0xF0F0);
            cs.writable(0x20, 4, 0xFFF0_FFF0);
            // Prefetchable base/limit: low nibble 0x1 = 64-bit capable (read-only).
            cs.set16(0x24, 0x0001);
            cs.set16(0x26, 0x0001);
            cs.writable(0x24, 4, 0xFFF0_FFF0);
            cs.writable(0x28, 4, 0xFFFF_FFFF);
            cs.writable(0x2C, 4, 0xFFFF_FFFF);
            cs.writable(0x30, 4, 0xFFFF_FFFF);
            // Bridge control.
            cs.writable(0x3E, 2, 0x0FFF);
        } else {
            // BAR registers: fully writable here, re-masked by size after every write.
            for reg in (0x10..=0x24u16).step_by(4) {
                cs.writable(reg, 4, 0xFFFF_FFFF);
            }
        }
        Self { cs, last_cap: None, last_ext: None }
    }

    pub fn multifunction(mut self) -> Self {
        let ht = self.cs.read8(0x0E);
        self.cs.set8(0x0E, ht | 0x80);
        self
    }

    pub fn interrupt_pin(mut self, pin: u8) -> Self {
        self.cs.set8(0x3D, pin);
        self
    }

    fn link_cap(&mut self, at: u16, id: u8) {
        match self.last_cap {
            None => self.cs.set8(0x34, at as u8),
            Some(prev) => self.cs.set8(prev + 1, at as u8),
        }
        self.cs.set8(at, id);
        self.last_cap = Some(at);
    }

    /// Power Management capability v3 (8 bytes; PMCSR power state writable).
    pub fn pm_cap(mut self, at: u16) -> Self {
        self.link_cap(at, CAP_ID_PM);
        self.cs.set16(at + 2, 0x0003);
        self.cs.writable(at + 4, 2, 0x8103);
        self
    }

    /// PCI Express capability v2 (0x3C bytes).
    pub fn pcie_cap(mut self, at: u16, port: PortType, flr: bool, link: LinkInfo) -> Self {
        let LinkInfo { max_speed, max_width, cur_speed, cur_width } = link;
        self.link_cap(at, CAP_ID_PCIE);
        self.cs.set16(at + 2, 0x0002 | ((port as u16) << 4));
        // DevCap: max payload 256 B (encoding 1), FLR if capable.
        let devcap = 0x1 | if flr { DEVCAP_FLR } else { 0 };
        self.cs.set32(at + PCIE_DEVCAP, devcap);
        // DevCtl: everything but bit 15 (BCR/FLR, which reads 0).
        self.cs.set16(at + PCIE_DEVCTL, 0x2810);
        self.cs.writable(at + PCIE_DEVCTL, 2, 0x7FFF);
        // LinkCap: speed 3:0, width 9:4; Data Link Layer Active reporting on downstream and
        // root ports.
        let downstream = matches!(port, PortType::DownstreamSwitchPort | PortType::RootPort);
        let dll = if downstream { 1 << 20 } else { 0 };
        self.cs.set32(at + 0x0C, u32::from(max_speed) | (u32::from(max_width) << 4) | dll);
        self.cs.writable(at + 0x10, 2, 0x0FDB);
        let active = if downstream { 1 << 13 } else { 0 };
        self.cs.set16(at + 0x12, u16::from(cur_speed) | (u16::from(cur_width) << 4) | active);
        // DevCtl2 writable, LinkCap2 supported speeds vector (bits 7:1), LinkCtl2 target speed.
        self.cs.writable(at + 0x28, 2, 0x07FF);
        let speeds: u32 = (1..=u32::from(max_speed)).map(|s| 1 << s).sum();
        self.cs.set32(at + 0x2C, speeds);
        self.cs.set16(at + 0x30, u16::from(max_speed));
        self.cs.writable(at + 0x30, 2, 0x000F);
        self
    }

    fn link_ext(&mut self, at: u16, id: u16, version: u8) {
        if let Some(prev) = self.last_ext {
            let h = self.cs.read32(prev);
            self.cs.set32(prev, (h & 0x000F_FFFF) | (u32::from(at) << 20));
        }
        self.cs.set32(at, u32::from(id) | (u32::from(version) << 16));
        self.last_ext = Some(at);
    }

    /// Advanced Error Reporting v2 (all registers read-only zero in this model).
    pub fn aer_cap(mut self, at: u16) -> Self {
        self.link_ext(at, EXT_CAP_ID_AER, 2);
        self
    }

    /// Resizable BAR capability with one entry (PCIe Base spec §7.8.6): capability register
    /// (+4) bit n+4 set = 2^n MiB supported; control (+8) bits 2:0 BAR index, 7:5 number of
    /// resizable BARs, 12:8 current size encoding (writable).
    pub fn rebar_cap(
        mut self,
        at: u16,
        bar: u8,
        supported_indices: std::ops::RangeInclusive<u8>,
        default_index: u8,
    ) -> Self {
        self.link_ext(at, EXT_CAP_ID_REBAR, 1);
        let cap: u32 = supported_indices.map(|i| 1u32 << (u32::from(i) + 4)).sum();
        self.cs.set32(at + 4, cap);
        self.cs.set32(at + 8, u32::from(bar) | (1 << 5) | (u32::from(default_index) << 8));
        self.cs.writable(at + 8, 2, 0x1F00);
        self
    }

    pub fn finish(mut self) -> ConfigSpace {
        self.cs.capture_reset_image();
        self.cs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_enables_merge_only_enabled_writable_bytes() {
        let mut cs = ConfigBuilder::new(0x1B21, 0x2461, 0x060400, 0, true).finish();
        // Bus numbers are writable, the latency byte (0x1B) is not.
        cs.write_masked(0x18, 0xAA04_0100, 0b0110);
        assert_eq!(cs.read32(0x18), 0x0004_0100);
        // Vendor ID is read-only.
        cs.write_masked(0x00, 0xFFFF_FFFF, 0xF);
        assert_eq!(cs.read16(0), 0x1B21);
    }

    #[test]
    fn capability_chain_is_walkable() {
        let cs = ConfigBuilder::new(0x1002, 0x744C, 0x030000, 0xC8, false)
            .pm_cap(0x50)
            .pcie_cap(
                0x64,
                PortType::Endpoint,
                true,
                LinkInfo { max_speed: 4, max_width: 16, cur_speed: 4, cur_width: 16 },
            )
            .aer_cap(0x100)
            .rebar_cap(0x200, 0, 8..=15, 8)
            .finish();
        assert_eq!(cs.find_cap(CAP_ID_PM), Some(0x50));
        assert_eq!(cs.find_cap(CAP_ID_PCIE), Some(0x64));
        assert_eq!(cs.read32(0x100) >> 20, 0x200);
        assert_eq!(cs.read32(0x200) & 0xFFFF, u32::from(EXT_CAP_ID_REBAR));
        assert_eq!(cs.read32(0x204), 0x000F_F000);
    }
}
