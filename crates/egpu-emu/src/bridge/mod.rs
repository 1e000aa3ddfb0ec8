//! The ASM2464 front-end: the bridge's whole state behind one lock, and the device-side
//! operations its layers share: XDATA and its windows, the bridge memories the GPU can reach
//! (the fabric's host side), the visibility queue, power and link. The USB surface is in
//! [`usb`], the custom firmware's requests, TLP engine and F2 engine in [`firmware`].

pub(crate) mod descriptors;
pub(crate) mod firmware;
pub(crate) mod usb;

use std::collections::VecDeque;

use bytes::Bytes;

use crate::config::BridgeConfig;
use crate::devices::cards;
use crate::error::DmaError;
use crate::fault::FaultState;
use crate::pcie::{Fabric, HostSide};
use crate::stats::EmuStats;
use firmware::FirmwareState;
use usb::UsbState;

/// §1.2: XDATA 0xB450 holds the LTSSM state; 0x78 = L0 (link up).
pub const LTSSM_L0: u8 = 0x78;
/// LTSSM value while PCIe is powered off. The document gives only 0x78 `[U]`.
pub const LTSSM_OFF: u8 = 0x00;
/// LTSSM value while the link is still training after F3 `[U]` (any value but 0x78 works).
pub const LTSSM_TRAINING: u8 = 0x10;
/// LTSSM value after an injected link loss `[U]`.
pub const LTSSM_LINK_LOST: u8 = 0x01;

/// XDATA address of the LTSSM register.
/// §1.2: the LTSSM state register (0x78 = L0).
pub const XDATA_LTSSM: u16 = 0xB450;
/// §1.2 / §1.3: XDATA window onto the first 4 KiB of SRAM.
pub const XDATA_SRAM_WINDOW: u16 = 0xF000;
/// §1.3: XDATA window onto the 0x820000 page.
pub const XDATA_SYS_WINDOW: u16 = 0xA000;
/// §8: XDATA window onto the admin page at PCIe 0x800000.
pub const XDATA_ADMIN_WINDOW: u16 = 0xB000;
/// §1.3: XDATA window onto the completion-queue page.
pub const XDATA_CQ_WINDOW: u16 = 0xB800;
/// §1.2: streaming-read chunks are assembled here.
pub const XDATA_STREAM_BUFFER: u16 = 0x8000;

/// §1: 512 KiB SRAM at PCIe 0x200000, 32 slots of 16 KiB.
pub const SRAM_PCIE_BASE: u64 = 0x20_0000;
/// §1: SRAM size in bytes.
pub const SRAM_SIZE: usize = 512 << 10;
/// §1: one SRAM slot (the F2 engine's unit of placement).
pub const SRAM_SLOT_SIZE: usize = 16 << 10;
/// §1.3: the 0x820000 page (XDATA 0xA000).
pub const SYS_PAGE_PCIE: u64 = 0x82_0000;
/// §1.3: the NVMe completion-queue page (XDATA 0xB800). AMD maps it at 0x822000, the NV PR
/// at 0x828000; the exact aliasing is `[U]` (§14), so both decode to the same page.
pub const CQ_PAGE_PCIE: u64 = 0x82_2000;
/// The NV PR's address of the completion-queue page (same page, `[U]`).
pub const CQ_PAGE_PCIE_ALIAS: u64 = 0x82_8000;
/// §8: the mock maps XDATA 0xB000 to PCIe 0x800000 (512 B).
pub const ADMIN_PAGE_PCIE: u64 = 0x80_0000;
/// §8: bytes of the admin page that are backed.
pub const ADMIN_PAGE_SIZE: usize = 0x200;
const PAGE: usize = 0x1000;
/// §1.2: only 0xB800–0xB8FF of XDATA shows the CQ page.
const CQ_XDATA_SPAN: u16 = 0x100;

/// A bridge memory the GPU can reach upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Region {
    Sram,
    SysPage,
    CqPage,
    AdminPage,
}

/// Decode an upstream request of `len` bytes at `addr` (the whole range must fit one region).
pub(crate) fn decode_upstream(addr: u64, len: usize) -> Option<(Region, usize)> {
    let regions = [
        (SRAM_PCIE_BASE, SRAM_SIZE, Region::Sram),
        (ADMIN_PAGE_PCIE, ADMIN_PAGE_SIZE, Region::AdminPage),
        (SYS_PAGE_PCIE, PAGE, Region::SysPage),
        (CQ_PAGE_PCIE, PAGE, Region::CqPage),
        (CQ_PAGE_PCIE_ALIAS, PAGE, Region::CqPage),
    ];
    let end = addr.checked_add(len as u64)?;
    regions.into_iter().find_map(|(base, size, region)| {
        (addr >= base && end <= base + size as u64).then(|| (region, (addr - base) as usize))
    })
}

/// What one XDATA byte is (§1.2).
enum XPlace {
    /// The read-only LTSSM register.
    Ltssm,
    /// Bank 1 (and the banks aliasing it) at this offset.
    Phy(usize),
    /// A window onto a bridge memory the GPU reaches too.
    Window(Region, usize),
    /// Plain bank-0 RAM.
    Ram(usize),
}

fn xdata_place(bank: u8, addr: u16) -> XPlace {
    if bank != 0 {
        return XPlace::Phy(usize::from(addr));
    }
    let window = |base: u16, region| XPlace::Window(region, usize::from(addr - base));
    match addr {
        XDATA_LTSSM => XPlace::Ltssm,
        0xF000..=0xFFFF => window(XDATA_SRAM_WINDOW, Region::Sram),
        0xA000..=0xAFFF => window(XDATA_SYS_WINDOW, Region::SysPage),
        0xB000..=0xB1FF => window(XDATA_ADMIN_WINDOW, Region::AdminPage),
        a if (XDATA_CQ_WINDOW..XDATA_CQ_WINDOW + CQ_XDATA_SPAN).contains(&a) => {
            window(XDATA_CQ_WINDOW, Region::CqPage)
        }
        _ => XPlace::Ram(usize::from(addr)),
    }
}

/// The fabric's host side behind the bridge: its SRAM and queue pages (§1.3, §6).
pub(crate) struct BridgeHost<'a> {
    mem: &'a mut BridgeMemory,
    fw: &'a mut FirmwareState,
    link: &'a LinkState,
    stats: &'a mut EmuStats,
}

impl HostSide for BridgeHost<'_> {
    fn link_check(&self, addr: u64, len: usize) -> Result<(), DmaError> {
        if self.link.up() {
            Ok(())
        } else {
            Err(DmaError::LinkDown { addr, len, ltssm: self.link.ltssm() })
        }
    }

    fn memory(&mut self, addr: u64, len: usize) -> Result<&mut [u8], DmaError> {
        let (region, offset) =
            decode_upstream(addr, len).ok_or(DmaError::Unmapped { addr, len })?;
        Ok(&mut self.mem.region_mut(region)[offset..offset + len])
    }

    fn landed(&mut self, addr: u64, len: usize) {
        if let Some((Region::CqPage, _)) = decode_upstream(addr, len) {
            self.fw.cq_written();
        }
    }

    fn count(&mut self, moved: Option<usize>) {
        match moved {
            Some(bytes) => {
                self.stats.gpu_dma_requests += 1;
                self.stats.gpu_dma_bytes += bytes as u64;
            }
            None => self.stats.gpu_dma_rejected += 1,
        }
    }
}

/// The bridge's own memories.
pub(crate) struct BridgeMemory {
    /// Bank 0 XDATA (plain RAM where no window or register overrides it).
    pub xdata: Box<[u8]>,
    /// Bank 1 ("PHY/DPX" space, §3) as plain RAM; other non-zero banks alias it `[U]`.
    pub phy: Box<[u8]>,
    pub sram: Box<[u8]>,
    pub sys_page: Box<[u8]>,
    pub cq_page: Box<[u8]>,
    pub admin_page: Box<[u8]>,
}

impl BridgeMemory {
    fn new() -> Self {
        Self {
            xdata: vec![0; 0x1_0000].into_boxed_slice(),
            phy: vec![0; 0x1_0000].into_boxed_slice(),
            sram: vec![0; SRAM_SIZE].into_boxed_slice(),
            sys_page: vec![0; PAGE].into_boxed_slice(),
            cq_page: vec![0; PAGE].into_boxed_slice(),
            admin_page: vec![0; ADMIN_PAGE_SIZE].into_boxed_slice(),
        }
    }

    pub fn region(&self, region: Region) -> &[u8] {
        match region {
            Region::Sram => &self.sram,
            Region::SysPage => &self.sys_page,
            Region::CqPage => &self.cq_page,
            Region::AdminPage => &self.admin_page,
        }
    }

    pub fn region_mut(&mut self, region: Region) -> &mut [u8] {
        match region {
            Region::Sram => &mut self.sram,
            Region::SysPage => &mut self.sys_page,
            Region::CqPage => &mut self.cq_page,
            Region::AdminPage => &mut self.admin_page,
        }
    }
}

/// PCIe power and link.
#[derive(Debug, Default)]
pub(crate) struct LinkState {
    pub powered: bool,
    pub training_polls_left: u32,
    pub lost: bool,
}

impl LinkState {
    pub fn ltssm(&self) -> u8 {
        if !self.powered {
            LTSSM_OFF
        } else if self.lost {
            LTSSM_LINK_LOST
        } else if self.training_polls_left > 0 {
            LTSSM_TRAINING
        } else {
            LTSSM_L0
        }
    }

    pub fn up(&self) -> bool {
        self.ltssm() == LTSSM_L0
    }
}

/// Where delayed bulk-OUT data goes once visible.
#[derive(Clone, Copy, Debug)]
pub(crate) enum VisTarget {
    /// F2 write into SRAM at this offset.
    Sram { offset: usize },
    /// Mode-1 stream: MWr TLPs from this address.
    Stream { addr: u64, fmt: u8, byte_enables: u8 },
}

/// Bulk-OUT data accepted by the bridge but not yet visible on the PCIe side (§4.6).
#[derive(Debug)]
pub(crate) struct PendingVisibility {
    pub target: VisTarget,
    pub data: Bytes,
    /// Bytes already applied (progressive visibility).
    pub applied: usize,
    /// Execution number of the transfer that delivered the data.
    pub created: u64,
}

/// Everything, behind the bridge's mutex.
pub(crate) struct Emu {
    pub cfg: BridgeConfig,
    pub usb: UsbState,
    pub fw: FirmwareState,
    pub mem: BridgeMemory,
    pub fabric: Fabric,
    pub link: LinkState,
    pub faults: FaultState,
    pub stats: EmuStats,
    pub visibility: VecDeque<PendingVisibility>,
    /// Transfers the device has executed so far.
    pub exec_count: u64,
}

impl Emu {
    pub fn new(cfg: BridgeConfig) -> Self {
        let mut emu = Self {
            usb: UsbState::new(),
            fw: FirmwareState::default(),
            mem: BridgeMemory::new(),
            fabric: Self::build_fabric(&cfg),
            link: LinkState::default(),
            faults: FaultState::default(),
            stats: EmuStats::default(),
            visibility: VecDeque::new(),
            exec_count: 0,
            cfg,
        };
        if emu.cfg.powered_at_boot {
            emu.link.powered = true;
        }
        emu
    }

    /// The bridge's own switch with the configured card in its slot (§1.3).
    fn build_fabric(cfg: &BridgeConfig) -> Fabric {
        let mut fabric = Fabric::new();
        let slot = cards::asm2464_switch(&mut fabric);
        cards::install(&mut fabric, slot, cfg.gpu, cfg.vram_size);
        fabric
    }

    // ---------------------------------------------------------------- XDATA (§1.2)

    /// One byte of XDATA as the 8051 sees it, windows included. No side effects.
    pub fn xdata_read(&self, bank: u8, addr: u16) -> u8 {
        match xdata_place(bank, addr) {
            XPlace::Ltssm => self.link.ltssm(),
            XPlace::Phy(at) => self.mem.phy[at],
            XPlace::Window(region, at) => self.mem.region(region)[at],
            XPlace::Ram(at) => self.mem.xdata[at],
        }
    }

    /// One byte written from the controller side (E5). The LTSSM register is read-only.
    /// Writes to the TLP engine registers (0xB210..) only store bytes: the legacy
    /// register-poke TLP path (§9.1) is not modelled.
    pub fn xdata_write(&mut self, bank: u8, addr: u16, value: u8) {
        match xdata_place(bank, addr) {
            XPlace::Ltssm => {}
            XPlace::Phy(at) => self.mem.phy[at] = value,
            XPlace::Window(region, at) => self.mem.region_mut(region)[at] = value,
            XPlace::Ram(at) => self.mem.xdata[at] = value,
        }
    }

    // ---------------------------------------------------------------- power and link (§3 F3)

    /// F3 on: PERST# and a fundamental reset of everything behind the bridge, then training.
    pub fn power_on(&mut self) {
        let was_off = !self.link.powered;
        self.link.powered = true;
        self.link.lost = false;
        self.link.training_polls_left = self.cfg.link_training_polls;
        self.fabric.reset_all(self.cfg.crs_reads_after_reset, was_off);
    }

    /// F3 off: rails dropped, so the GPU forgets its state and VRAM.
    pub fn power_off(&mut self) {
        self.link.powered = false;
        self.link.training_polls_left = 0;
        self.fabric.reset_all(0, true);
    }

    // ---------------------------------------------------------------- upstream DMA (§6)

    /// The fabric and the bridge memories behind it as its host side, borrowed apart.
    pub fn split(&mut self) -> (&mut Fabric, BridgeHost<'_>) {
        let host = BridgeHost {
            mem: &mut self.mem,
            fw: &mut self.fw,
            link: &self.link,
            stats: &mut self.stats,
        };
        (&mut self.fabric, host)
    }

    /// GPU-initiated write into a bridge memory. A write landing in the CQ page releases an
    /// armed F2 read (§4.7).
    pub fn gpu_dma_write(&mut self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let (fabric, mut host) = self.split();
        fabric.gpu_dma_write(&mut host, addr, data)
    }

    /// GPU-initiated read of a bridge memory.
    pub fn gpu_dma_read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, DmaError> {
        let (fabric, mut host) = self.split();
        fabric.gpu_dma_read(&mut host, addr, len)
    }

    // ---------------------------------------------------------------- visibility (§4.6, §12.5)

    /// Accept bulk-OUT data; it lands now or after `visibility_delay` later transfers.
    pub fn deliver(&mut self, target: VisTarget, data: Bytes) {
        if self.cfg.visibility_delay == 0 {
            self.apply_visibility_range(target, &data, 0, data.len());
            return;
        }
        // Numbered like the transfer being executed now (see `Emu::exec_count`).
        let created = self.exec_count + 1;
        self.visibility.push_back(PendingVisibility { target, data, applied: 0, created });
    }

    fn apply_visibility_range(&mut self, target: VisTarget, data: &[u8], from: usize, to: usize) {
        if from >= to {
            return;
        }
        match target {
            VisTarget::Sram { offset } => {
                let start = offset + from;
                self.mem.sram[start..offset + to].copy_from_slice(&data[from..to]);
            }
            VisTarget::Stream { addr, fmt, byte_enables } => {
                let at = firmware::advance(addr, fmt, from as u64);
                self.emit_stream_write(at, fmt, byte_enables, &data[from..to]);
            }
        }
    }

    /// After each executed transfer: let pending data land as far as its delay allows.
    pub fn apply_visibility(&mut self) {
        let delay = u64::from(self.cfg.visibility_delay);
        let mut i = 0;
        while i < self.visibility.len() {
            let (target, data, applied, elapsed) = {
                let p = &self.visibility[i];
                (p.target, p.data.clone(), p.applied, self.exec_count.saturating_sub(p.created))
            };
            let goal = if elapsed >= delay {
                data.len()
            } else if self.cfg.progressive_visibility {
                // Whole dwords only, front to back.
                ((data.len() as u64 * elapsed / delay) as usize) & !3
            } else {
                applied
            };
            self.apply_visibility_range(target, &data, applied, goal.max(applied));
            if goal >= data.len() {
                self.visibility.remove(i);
            } else {
                self.visibility[i].applied = goal.max(applied);
                i += 1;
            }
        }
    }

    /// Make every pending stream write visible now (the single-threaded firmware has sent all
    /// TLPs of an earlier stream before it handles the next F0, and PCIe keeps posted writes
    /// in order); `all` also lands pending F2 data.
    pub fn flush_visibility(&mut self, all: bool) {
        let mut i = 0;
        while i < self.visibility.len() {
            let is_stream = matches!(self.visibility[i].target, VisTarget::Stream { .. });
            if all || is_stream {
                if let Some(p) = self.visibility.remove(i) {
                    self.apply_visibility_range(p.target, &p.data, p.applied, p.data.len());
                }
            } else {
                i += 1;
            }
        }
    }
}
