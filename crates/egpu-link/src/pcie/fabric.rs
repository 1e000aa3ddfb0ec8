//! Bringing up the PCIe fabric behind a bridge: walk the buses from bus 0, number them, size
//! every BAR, grow resizable BARs to their largest size, assign addresses, open the bridge
//! windows and enable memory decode and bus mastering.
//!
//! Nothing is hard-coded about where the GPU sits: AMD cards carry their own switch (GPU on
//! bus 4 behind the bridge), NVIDIA cards usually sit on bus 2 (docs/reference/usb-bridge.md
//! §1.3), and a different enclosure may differ again.

use std::fmt;

use super::caps::{self, Capability};
use super::regs::*;
use super::{Bdf, PcieLink};
use crate::LinkError;

/// Address pools the fabric hands out (§5: 32-bit window from 0x1000_0000, 64-bit
/// prefetchable window from 32 GiB).
#[derive(Clone, Copy, Debug)]
pub struct FabricOptions {
    /// Start of the 32-bit non-prefetchable pool.
    pub mem32_base: u64,
    /// End (exclusive) of the 32-bit pool.
    pub mem32_end: u64,
    /// Start of the 64-bit prefetchable pool.
    pub pref_base: u64,
    /// End (exclusive) of the 64-bit prefetchable pool.
    pub pref_end: u64,
    /// Grow every resizable BAR to the largest size it supports.
    pub max_resizable_bars: bool,
}

impl Default for FabricOptions {
    fn default() -> Self {
        Self {
            mem32_base: 0x1000_0000,
            mem32_end: 0x1_0000_0000,
            pref_base: 0x8_0000_0000,
            pref_end: 1 << 47,
            max_resizable_bars: true,
        }
    }
}

/// Kind of a base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space: not routed over the bridge, left unassigned.
    Io,
    /// Memory space, 32-bit address.
    Mem32,
    /// Memory space, 64-bit address (takes two BAR registers).
    Mem64,
}

/// One sized (and, for memory BARs, assigned) BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR number (0–5); a 64-bit BAR occupies `index` and `index + 1`.
    pub index: u8,
    /// I/O, 32-bit or 64-bit memory (BAR bits 2:0).
    pub kind: BarKind,
    /// Prefetchable memory (BAR bit 3).
    pub prefetchable: bool,
    /// Size in bytes, from writing all-ones and reading back.
    pub size: u64,
    /// Assigned bus address (0 for I/O BARs).
    pub address: u64,
}

/// One entry of a Resizable BAR capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizableBar {
    /// BAR number (0–5) this entry resizes.
    pub bar: u8,
    /// Supported sizes as a bitmask: bit n set means 2^(n+20) bytes is supported (the REBAR
    /// capability register's bits 31:4, PCIe Base Spec §7.8.6); see [`Self::supported_sizes`].
    pub supported: u64,
    /// Size chosen, in bytes.
    pub size: u64,
}

impl ResizableBar {
    /// Supported sizes as byte counts.
    pub fn supported_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        (0..44).filter(move |bit| self.supported >> bit & 1 == 1).map(|bit| 1u64 << (bit + 20))
    }
}

/// Bus numbers and windows of a type-1 (bridge) function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeInfo {
    /// Secondary bus number: the bus directly below this bridge.
    pub secondary: u8,
    /// Subordinate bus number: the highest bus below this bridge.
    pub subordinate: u8,
    /// Inclusive non-prefetchable window, if open.
    pub memory: Option<(u64, u64)>,
    /// Inclusive prefetchable window, if open.
    pub prefetchable: Option<(u64, u64)>,
    /// The prefetchable window decodes 64-bit addresses (base register bits 3:0 = 1).
    pub prefetchable_64: bool,
}

/// One PCI function found by the walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Bus, device and function number on the bridge's fabric.
    pub bdf: Bdf,
    /// PCI vendor ID (config offset 0x00).
    pub vendor_id: u16,
    /// PCI device ID (config offset 0x02).
    pub device_id: u16,
    /// 24-bit class code (base, sub, programming interface).
    pub class: u32,
    /// Revision ID (config offset 0x08).
    pub revision: u8,
    /// Header type (config offset 0x0E): 0 endpoint, 1 bridge; bit 7 multi-function.
    pub header_type: u8,
    /// Implemented BARs, sized and assigned by the walk.
    pub bars: Vec<Bar>,
    /// Standard and extended capabilities, in list order.
    pub capabilities: Vec<Capability>,
    /// Resizable BAR entries, after resizing to the largest supported size.
    pub resizable_bars: Vec<ResizableBar>,
    /// Bus numbers and windows, for type-1 (bridge) functions.
    pub bridge: Option<BridgeInfo>,
    /// PCIe port type from the PCI Express capability (bits 7:4 of its flags), if any.
    pub port_type: Option<u8>,
}

impl Function {
    /// Base class code (class bits 23:16), e.g. 0x03 for display.
    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }

    /// Whether this is a display controller (base class 0x03): a GPU.
    pub fn is_display(&self) -> bool {
        self.base_class() == PCI_BASE_CLASS_DISPLAY
    }

    /// The BAR numbered `index`, if implemented.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|bar| bar.index == index)
    }

    /// A readable name for known vendors and devices.
    pub fn name(&self) -> String {
        device_name(self.vendor_id, self.device_id, self.class)
    }
}

/// Every function behind the bridge, in walk order (parents before children).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// Functions in walk order.
    pub functions: Vec<Function>,
}

impl Topology {
    /// The first display-class function: the GPU.
    pub fn gpu(&self) -> Option<&Function> {
        self.functions.iter().find(|function| function.is_display())
    }

    /// The function at `bdf`, if the walk found one.
    pub fn get(&self, bdf: Bdf) -> Option<&Function> {
        self.functions.iter().find(|function| function.bdf == bdf)
    }

    /// Bridges between the host and `bdf`, outermost first.
    pub fn path_to(&self, bdf: Bdf) -> Vec<&Function> {
        let mut path = Vec::new();
        let mut bus = bdf.bus;
        while let Some(bridge) = self
            .functions
            .iter()
            .find(|f| f.bridge.is_some_and(|b| b.secondary == bus) && f.bdf.bus < bus)
        {
            path.push(bridge);
            if bridge.bdf.bus == 0 {
                break;
            }
            bus = bridge.bdf.bus;
        }
        path.reverse();
        path
    }
}

impl fmt::Display for Topology {
    /// Indented tree: children below the bridge whose secondary bus they sit on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn depth(topology: &Topology, function: &Function) -> usize {
            topology.path_to(function.bdf).len()
        }
        for function in &self.functions {
            let indent = "  ".repeat(depth(self, function));
            writeln!(
                f,
                "{indent}{} [{:04x}:{:04x}] {}",
                function.bdf,
                function.vendor_id,
                function.device_id,
                function.name()
            )?;
            if let Some(bridge) = function.bridge {
                write!(f, "{indent}    buses {:02x}-{:02x}", bridge.secondary, bridge.subordinate)?;
                if let Some((base, limit)) = bridge.memory {
                    write!(f, ", memory {base:#x}-{limit:#x}")?;
                }
                if let Some((base, limit)) = bridge.prefetchable {
                    write!(f, ", prefetchable {base:#x}-{limit:#x}")?;
                }
                writeln!(f)?;
            }
            for bar in &function.bars {
                let kind = match (bar.kind, bar.prefetchable) {
                    (BarKind::Io, _) => "I/O (not routed)".to_string(),
                    (BarKind::Mem32, p) => {
                        format!("32-bit{}", if p { " prefetchable" } else { "" })
                    }
                    (BarKind::Mem64, p) => {
                        format!("64-bit{}", if p { " prefetchable" } else { "" })
                    }
                };
                let place = if bar.kind == BarKind::Io {
                    String::new()
                } else {
                    format!(" at {:#x}", bar.address)
                };
                writeln!(
                    f,
                    "{indent}    BAR{} {} {}{place}",
                    bar.index,
                    format_size(bar.size),
                    kind
                )?;
            }
            for rebar in &function.resizable_bars {
                let largest = rebar.supported_sizes().last().unwrap_or(0);
                writeln!(
                    f,
                    "{indent}    Resizable BAR{}: {} (largest supported {})",
                    rebar.bar,
                    format_size(rebar.size),
                    format_size(largest)
                )?;
            }
        }
        Ok(())
    }
}

/// `256 MiB`, `32 GiB`, `4 KiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] =
        [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, scale) in UNITS {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    format!("{bytes} B")
}

/// Walk, size, assign and enable everything behind the bridge.
pub fn bring_up(link: &mut dyn PcieLink, options: &FabricOptions) -> Result<Topology, LinkError> {
    let mut topology = Topology::default();
    let mut next_bus = 1u8;
    // Bus 0 is the bridge's own port, straight below its TLP engine; like tinygrad (§5) only
    // device 0 is addressed there: nothing filters Type 0 device numbers on the way.
    scan_bus(link, 0, false, &mut next_bus, &mut topology)?;

    let mut pools = Pools {
        mem32: Pool { next: options.mem32_base, end: options.mem32_end, name: "32-bit memory" },
        pref: Pool { next: options.pref_base, end: options.pref_end, name: "64-bit prefetchable" },
    };
    for index in 0..topology.functions.len() {
        let bdf = topology.functions[index].bdf;
        if options.max_resizable_bars {
            topology.functions[index].resizable_bars =
                grow_resizable_bars(link, bdf, &topology.functions[index].capabilities)?;
        }
        let header = topology.functions[index].header_type & PCI_HEADER_TYPE_MASK;
        topology.functions[index].bars = size_bars(link, bdf, header)?;
    }
    assign_bus(link, 0, true, &mut topology, &mut pools)?;
    for function in &topology.functions {
        let command = link.config_read16(function.bdf, PCI_COMMAND)?;
        link.config_write(
            function.bdf,
            PCI_COMMAND,
            2,
            u32::from(command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER),
        )?;
    }
    link.flush()?;
    Ok(topology)
}

/// Read vendor/device; `None` when nothing answers at `bdf`.
fn probe(link: &mut dyn PcieLink, bdf: Bdf) -> Result<Option<u32>, LinkError> {
    match link.config_read32(bdf, PCI_VENDOR_ID) {
        Ok(id) if id & 0xFFFF == 0xFFFF || id == 0 => Ok(None),
        Ok(id) => Ok(Some(id)),
        // An absent function is reported as Unsupported Request (§4.9).
        Err(LinkError::UnsupportedRequest { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

fn scan_bus(
    link: &mut dyn PcieLink,
    bus: u8,
    all_devices: bool,
    next_bus: &mut u8,
    topology: &mut Topology,
) -> Result<(), LinkError> {
    // Below a root or downstream port only device 0 can exist (PCIe Base Spec §7.3.1), which
    // saves 31 round trips per bus over USB.
    let devices = if all_devices { 0..32 } else { 0..1 };
    let mut present = Vec::new();
    for device in devices {
        let Some(id) = probe(link, Bdf::new(bus, device, 0))? else { continue };
        let header = link.config_read(Bdf::new(bus, device, 0), PCI_HEADER_TYPE, 1)? as u8;
        present.push((Bdf::new(bus, device, 0), id, header));
        if header & PCI_HEADER_TYPE_MFD != 0 {
            for function in 1..8 {
                let bdf = Bdf::new(bus, device, function);
                if let Some(id) = probe(link, bdf)? {
                    let header = link.config_read(bdf, PCI_HEADER_TYPE, 1)? as u8;
                    present.push((bdf, id, header));
                }
            }
        }
    }
    // Bus numbers left from an earlier session could overlap the ones handed out below and
    // misroute Type 1 requests: close every bridge on this bus before numbering any of them.
    for &(bdf, _, header) in &present {
        if header & PCI_HEADER_TYPE_MASK == PCI_HEADER_TYPE_BRIDGE {
            write_bus_numbers(link, bdf, 0, 0)?;
        }
    }
    for (bdf, id, header_type) in present {
        scan_function(link, bdf, id, header_type, next_bus, topology)?;
    }
    Ok(())
}

fn scan_function(
    link: &mut dyn PcieLink,
    bdf: Bdf,
    id: u32,
    header_type: u8,
    next_bus: &mut u8,
    topology: &mut Topology,
) -> Result<(), LinkError> {
    let class_revision = link.config_read32(bdf, PCI_CLASS_REVISION)?;
    // Decode stays off while BARs are sized and resized (PCIe Base Spec §7.8.6 for REBAR).
    let command = link.config_read16(bdf, PCI_COMMAND)?;
    link.config_write(
        bdf,
        PCI_COMMAND,
        2,
        u32::from(command & !(PCI_COMMAND_MEMORY | PCI_COMMAND_IO | PCI_COMMAND_MASTER)),
    )?;
    let mut capabilities = caps::capabilities(link, bdf, false)?;
    let port_type = match capabilities.iter().find(|c| c.id == u16::from(PCI_CAP_ID_EXP)) {
        Some(cap) => Some(((link.config_read16(bdf, cap.offset + 2)? >> 4) & 0xF) as u8),
        None => None,
    };
    if port_type.is_some() {
        capabilities = caps::capabilities(link, bdf, true)?;
    }
    let index = topology.functions.len();
    topology.functions.push(Function {
        bdf,
        vendor_id: id as u16,
        device_id: (id >> 16) as u16,
        class: class_revision >> 8,
        revision: class_revision as u8,
        header_type,
        bars: Vec::new(),
        capabilities,
        resizable_bars: Vec::new(),
        bridge: None,
        port_type,
    });

    if header_type & PCI_HEADER_TYPE_MASK == PCI_HEADER_TYPE_BRIDGE {
        if *next_bus == u8::MAX {
            return Err(LinkError::Fabric("ran out of bus numbers".into()));
        }
        let secondary = *next_bus;
        *next_bus += 1;
        // Open the full range below while scanning, then close it to what was found.
        write_bus_numbers(link, bdf, secondary, 0xFF)?;
        // Port types 4 (root port) and 6 (downstream port) have a single device below.
        let all_devices = !matches!(port_type, Some(4) | Some(6));
        scan_bus(link, secondary, all_devices, next_bus, topology)?;
        let subordinate = *next_bus - 1;
        write_bus_numbers(link, bdf, secondary, subordinate)?;
        let prefetchable_64 = link.config_read16(bdf, PCI_PREF_MEMORY_BASE)? & 0xF == 0x1;
        topology.functions[index].bridge = Some(BridgeInfo {
            secondary,
            subordinate,
            memory: None,
            prefetchable: None,
            prefetchable_64,
        });
    }
    Ok(())
}

fn write_bus_numbers(
    link: &mut dyn PcieLink,
    bdf: Bdf,
    secondary: u8,
    subordinate: u8,
) -> Result<(), LinkError> {
    // Keep the secondary latency timer byte as it is.
    let old = link.config_read32(bdf, PCI_PRIMARY_BUS)?;
    let value = (old & 0xFF00_0000)
        | u32::from(subordinate) << 16
        | u32::from(secondary) << 8
        | u32::from(bdf.bus);
    link.config_write(bdf, PCI_PRIMARY_BUS, 4, value)
}

/// Set every Resizable BAR entry to its largest supported size (tinygrad does BAR0 only).
fn grow_resizable_bars(
    link: &mut dyn PcieLink,
    bdf: Bdf,
    capabilities: &[Capability],
) -> Result<Vec<ResizableBar>, LinkError> {
    let Some(cap) = capabilities.iter().find(|c| c.extended && c.id == PCI_EXT_CAP_ID_REBAR) else {
        return Ok(Vec::new());
    };
    let first_control = link.config_read32(bdf, cap.offset + PCI_REBAR_CTRL)?;
    let entries = (first_control & PCI_REBAR_CTRL_NBAR_MASK) >> PCI_REBAR_CTRL_NBAR_SHIFT;
    let mut resized = Vec::new();
    for entry in 0..entries.clamp(1, 6) as u16 {
        let capability = link.config_read32(bdf, cap.offset + PCI_REBAR_CAP + 8 * entry)?;
        let control_offset = cap.offset + PCI_REBAR_CTRL + 8 * entry;
        let control = link.config_read32(bdf, control_offset)?;
        let supported = u64::from((capability & PCI_REBAR_CAP_SIZES) >> 4);
        if supported == 0 {
            continue;
        }
        // Size field: 0 = 1 MiB, 1 = 2 MiB, ... (bit n of `supported`).
        let largest = 63 - supported.leading_zeros();
        let control = (control & !PCI_REBAR_CTRL_BAR_SIZE) | largest << PCI_REBAR_CTRL_BAR_SHIFT;
        link.config_write(bdf, control_offset, 4, control)?;
        resized.push(ResizableBar {
            bar: (control & PCI_REBAR_CTRL_BAR_IDX) as u8,
            supported,
            size: 1 << (largest + 20),
        });
    }
    Ok(resized)
}

/// Size the BARs by writing all-ones and reading the mask back (PCI Local Bus Spec §6.2.5.1),
/// restoring each register afterwards.
fn size_bars(link: &mut dyn PcieLink, bdf: Bdf, header: u8) -> Result<Vec<Bar>, LinkError> {
    let count = match header {
        PCI_HEADER_TYPE_NORMAL => 6,
        PCI_HEADER_TYPE_BRIDGE => 2,
        _ => 0,
    };
    let mut bars = Vec::new();
    let mut index = 0u8;
    while index < count {
        let offset = PCI_BASE_ADDRESS_0 + 4 * u16::from(index);
        let original = link.config_read32(bdf, offset)?;
        link.config_write(bdf, offset, 4, u32::MAX)?;
        let mask_low = link.config_read32(bdf, offset)?;
        link.config_write(bdf, offset, 4, original)?;
        if original & PCI_BASE_ADDRESS_SPACE_IO != 0 {
            let mask = mask_low & PCI_BASE_ADDRESS_IO_MASK & 0xFFFF;
            if mask != 0 {
                let size = u64::from((!mask).wrapping_add(1) & 0xFFFF);
                bars.push(Bar { index, kind: BarKind::Io, prefetchable: false, size, address: 0 });
            }
            index += 1;
            continue;
        }
        let is_64 = original & PCI_BASE_ADDRESS_MEM_TYPE_MASK == PCI_BASE_ADDRESS_MEM_TYPE_64;
        let prefetchable = original & PCI_BASE_ADDRESS_MEM_PREFETCH != 0;
        let mask_high = if is_64 {
            if index + 1 >= count {
                return Err(LinkError::Config {
                    op: "sizing BARs".into(),
                    bdf,
                    reason: format!("BAR{index} claims 64 bits but is the last BAR"),
                });
            }
            let original_high = link.config_read32(bdf, offset + 4)?;
            link.config_write(bdf, offset + 4, 4, u32::MAX)?;
            let mask = link.config_read32(bdf, offset + 4)?;
            link.config_write(bdf, offset + 4, 4, original_high)?;
            mask
        } else {
            u32::MAX
        };
        let mask = u64::from(mask_high) << 32 | u64::from(mask_low & PCI_BASE_ADDRESS_MEM_MASK);
        // An unimplemented BAR reads back zero in every writable bit.
        if mask_low & PCI_BASE_ADDRESS_MEM_MASK != 0 || (is_64 && mask_high != 0) {
            // The lowest writable address bit gives the size; devices need not implement every
            // upper address bit (as Linux's pci_size).
            let size = mask & mask.wrapping_neg();
            let kind = if is_64 { BarKind::Mem64 } else { BarKind::Mem32 };
            bars.push(Bar { index, kind, prefetchable, size, address: 0 });
        }
        index += if is_64 { 2 } else { 1 };
    }
    Ok(bars)
}

struct Pool {
    next: u64,
    end: u64,
    name: &'static str,
}

impl Pool {
    fn take(&mut self, size: u64, align: u64) -> Result<u64, LinkError> {
        let base = self.next.div_ceil(align) * align;
        match base.checked_add(size) {
            Some(end) if end <= self.end => {
                self.next = end;
                Ok(base)
            }
            _ => Err(LinkError::Fabric(format!(
                "the {} window has no room for {} more (next free {:#x}, end {:#x})",
                self.name,
                format_size(size),
                self.next,
                self.end
            ))),
        }
    }
}

struct Pools {
    mem32: Pool,
    pref: Pool,
}

/// Bridge windows have 1 MiB granularity.
const WINDOW_ALIGN: u64 = 1 << 20;

/// Assign the BARs of every function on `bus` and, depth first, below its bridges; open each
/// bridge's windows around what its subtree received.
fn assign_bus(
    link: &mut dyn PcieLink,
    bus: u8,
    above_4g_reachable: bool,
    topology: &mut Topology,
    pools: &mut Pools,
) -> Result<(), LinkError> {
    let on_bus: Vec<usize> =
        (0..topology.functions.len()).filter(|&i| topology.functions[i].bdf.bus == bus).collect();
    for index in on_bus {
        let bdf = topology.functions[index].bdf;
        // Largest first keeps natural alignment from wasting space.
        let mut order: Vec<usize> = (0..topology.functions[index].bars.len()).collect();
        order.sort_by_key(|&b| std::cmp::Reverse(topology.functions[index].bars[b].size));
        for b in order {
            let bar = topology.functions[index].bars[b];
            let pool = match (bar.kind, bar.prefetchable) {
                (BarKind::Io, _) => continue,
                // Only 64-bit prefetchable BARs may live above 4 GiB, and only where every
                // bridge above has a 64-bit prefetchable window.
                (BarKind::Mem64, true) if above_4g_reachable => &mut pools.pref,
                _ => &mut pools.mem32,
            };
            let address = pool.take(bar.size, bar.size.max(4096))?;
            let offset = PCI_BASE_ADDRESS_0 + 4 * u16::from(bar.index);
            let flags = link.config_read32(bdf, offset)? & 0xF;
            link.config_write(
                bdf,
                offset,
                4,
                (address as u32 & PCI_BASE_ADDRESS_MEM_MASK) | flags,
            )?;
            if bar.kind == BarKind::Mem64 {
                link.config_write(bdf, offset + 4, 4, (address >> 32) as u32)?;
            }
            topology.functions[index].bars[b].address = address;
        }
        let Some(bridge) = topology.functions[index].bridge else { continue };
        let mem_start = align_up(pools.mem32.next, WINDOW_ALIGN);
        let pref_start = align_up(pools.pref.next, WINDOW_ALIGN);
        pools.mem32.next = mem_start;
        pools.pref.next = pref_start;
        let reachable = above_4g_reachable && bridge.prefetchable_64;
        assign_bus(link, bridge.secondary, reachable, topology, pools)?;
        pools.mem32.next = align_up(pools.mem32.next, WINDOW_ALIGN);
        pools.pref.next = align_up(pools.pref.next, WINDOW_ALIGN);
        let memory = (pools.mem32.next > mem_start).then(|| (mem_start, pools.mem32.next - 1));
        let prefetchable =
            (pools.pref.next > pref_start).then(|| (pref_start, pools.pref.next - 1));
        write_windows(link, bdf, memory, prefetchable)?;
        let info = topology.functions[index].bridge.as_mut().expect("bridge checked above");
        info.memory = memory;
        info.prefetchable = prefetchable;
    }
    Ok(())
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

/// Program a bridge's memory and prefetchable windows; `None` closes a window (base > limit).
fn write_windows(
    link: &mut dyn PcieLink,
    bdf: Bdf,
    memory: Option<(u64, u64)>,
    prefetchable: Option<(u64, u64)>,
) -> Result<(), LinkError> {
    // Base/limit registers hold address bits 31:20 in their bits 15:4.
    let (mem_base, mem_limit) = memory.unwrap_or((0xFFF0_0000, 0));
    link.config_write(bdf, PCI_MEMORY_BASE, 2, ((mem_base >> 16) & 0xFFF0) as u32)?;
    link.config_write(bdf, PCI_MEMORY_LIMIT, 2, ((mem_limit >> 16) & 0xFFF0) as u32)?;
    let (pref_base, pref_limit) = prefetchable.unwrap_or((0xFFF0_0000, 0));
    link.config_write(bdf, PCI_PREF_MEMORY_BASE, 2, ((pref_base >> 16) & 0xFFF0) as u32)?;
    link.config_write(bdf, PCI_PREF_MEMORY_LIMIT, 2, ((pref_limit >> 16) & 0xFFF0) as u32)?;
    link.config_write(bdf, PCI_PREF_BASE_UPPER32, 4, (pref_base >> 32) as u32)?;
    link.config_write(bdf, PCI_PREF_LIMIT_UPPER32, 4, (pref_limit >> 32) as u32)?;
    Ok(())
}

/// Names for the vendors and devices egpu meets behind a bridge.
pub fn device_name(vendor_id: u16, device_id: u16, class: u32) -> String {
    let vendor = match vendor_id {
        0x1002 => "AMD",
        0x10DE => "NVIDIA",
        0x1B21 => "ASMedia",
        _ => "",
    };
    let device = match (vendor_id, device_id) {
        (0x1B21, 0x2461..=0x2464) => "ASM246x switch port",
        (0x1002, 0x1478) => "Navi 10 XL upstream port of PCI Express switch",
        (0x1002, 0x1479) => "Navi 10 XL downstream port of PCI Express switch",
        (0x1002, 0x744C) => "Navi 31 [Radeon RX 7900 XT/7900 XTX]",
        (0x1002, 0x7448) => "Navi 31 [Radeon Pro W7900]",
        (0x1002, 0x747E) => "Navi 32 [Radeon RX 7700 XT/7800 XT]",
        (0x1002, 0x7480) => "Navi 33 [Radeon RX 7600/7600 XT]",
        (0x1002, 0x7550) => "Navi 48 [Radeon RX 9070/9070 XT]",
        (0x1002, 0x7590) => "Navi 44 [Radeon RX 9060 XT]",
        (0x1002, 0xAB30) => "Navi 31 HDMI/DP audio",
        (0x10DE, 0x2204) => "GA102 [GeForce RTX 3090]",
        (0x10DE, 0x2684) => "AD102 [GeForce RTX 4090]",
        (0x10DE, 0x2B85) => "GB202 [GeForce RTX 5090]",
        (0x10DE, 0x1AEF) => "GA102 high definition audio",
        _ => "",
    };
    let class_name = match class >> 16 {
        0x03 => "display controller",
        0x04 => "multimedia controller",
        0x06 => "bridge",
        _ => "device",
    };
    match (vendor, device) {
        ("", _) => format!("unknown {class_name}"),
        (vendor, "") => format!("{vendor} {class_name}"),
        (vendor, device) => format!("{vendor} {device}"),
    }
}
