//! An emulated PCIe fabric with GPUs in it, and three ways to reach it: an emulated ASMedia
//! ASM2464PD USB3-to-PCIe bridge running the open "custom" firmware, an in-process link, and
//! (Linux) an emulated TinyGPU.app socket server.
//!
//! Written from `docs/reference/usb-bridge.md` (section numbers in comments, `[U]` where the
//! document is silent and a plausible behaviour was chosen), never from the driver.
//!
//! Structure:
//! - `pcie`: the fabric — config routing by bus numbers through type-1 headers, memory routing
//!   through windows and BARs with COMMAND gating, and the upstream rules (bus mastering, no
//!   peer-to-peer) for requests devices initiate, which end in a front-end's host side.
//! - `devices`: one model per PCI function (switch ports, the GPUs, HDMI audio), each owning
//!   its configuration space and BARs, and card installers (Navi 31, GA102, an empty slot).
//!   How a new card is added is written down there.
//! - front-ends: `bridge` ([`EmulatedBridge`], an [`egpu_usb::UsbTransport`]: E4/E5/F0/F2/F3/C0
//!   decoded from raw setup and data bytes, bulk endpoints 0x02/0x81, the F2 SRAM DMA engine
//!   with its CQ release; the bridge's SRAM and queue pages are the fabric's host side) and
//!   `inproc` ([`EmulatedFabric`] / [`InProcessLink`], an [`egpu_hal::PcieLink`] that hands
//!   TLPs to the fabric directly, with emulated host RAM as GPU-visible memory) and
//!   `tinygpu` ([`EmulatedTinyGpuServer`], written from `docs/reference/macos-ecosystem.md`
//!   §A.4: the 33/17-byte socket protocol on a Unix socket, with DMA memory as memfd
//!   descriptors passed with `SCM_RIGHTS` that are the fabric's host side, and fault knobs).
//!
//! The GPUs carry an emulator-only copy engine in their MMIO BAR ([`copy_engine`]) that works
//! the same through both front-ends.
//!
//! Time is virtual: nothing sleeps, and a wait on a transfer that can never complete returns
//! `UsbError::Timeout` at once, carrying that transfer's timeout as if the time had passed.

mod bridge;
mod config;
mod devices;
mod error;
mod fault;
mod inproc;
mod pcie;
mod sparse;
mod stats;
#[cfg(target_os = "linux")]
pub mod tinygpu;
mod tlp;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use egpu_usb::{Completion, DeviceInfo, Tag, Transfer, UsbError, UsbTransport};

pub use config::{
    BridgeConfig, GpuKind, COMMA_FIRMWARE_IDS, CUSTOM_FIRMWARE_IDS, STOCK_FIRMWARE_IDS,
};
pub use devices::gpu::copy_engine;
pub use error::DmaError;
pub use fault::{CompletionStatus, Fault};
pub use inproc::{EmulatedFabric, FabricConfig, InProcessLink};
pub use stats::EmuStats;
#[cfg(target_os = "linux")]
pub use tinygpu::{
    EmulatedTinyGpuServer, ServerFault, TinyGpuServerConfig, TinyGpuServerError, TinyGpuServerStats,
};

/// Addresses and sizes of the bridge's memory map (§1.2, §1.3) and of the in-process link's
/// host aperture, for tests and tools.
pub mod map {
    pub use crate::bridge::usb::{EP_BULK_IN, EP_BULK_OUT};
    pub use crate::bridge::{
        ADMIN_PAGE_PCIE, ADMIN_PAGE_SIZE, CQ_PAGE_PCIE, CQ_PAGE_PCIE_ALIAS, LTSSM_L0,
        LTSSM_LINK_LOST, LTSSM_OFF, LTSSM_TRAINING, SRAM_PCIE_BASE, SRAM_SIZE, SRAM_SLOT_SIZE,
        SYS_PAGE_PCIE, XDATA_ADMIN_WINDOW, XDATA_CQ_WINDOW, XDATA_LTSSM, XDATA_SRAM_WINDOW,
        XDATA_STREAM_BUFFER, XDATA_SYS_WINDOW,
    };
    pub use crate::inproc::{HOST_APERTURE_BASE, HOST_APERTURE_SIZE, HOST_GRANULE};
}

/// Vendor request numbers of the custom firmware (§3).
pub mod requests {
    pub use crate::bridge::firmware::{
        REQ_PCIE_POWER, REQ_POWER_MONITOR, REQ_SRAM_DMA, REQ_TLP, REQ_XDATA_READ, REQ_XDATA_WRITE,
    };
}

use bridge::Emu;

fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug in the emulator; the state is still the best
    // information there is, so keep going rather than poison every later call.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The emulated bridge: device-side handle for inspection and stimulus. Cheap to clone; all
/// clones and all transports share one state.
#[derive(Clone)]
pub struct EmulatedBridge {
    shared: Arc<Mutex<Emu>>,
    info: DeviceInfo,
}

impl EmulatedBridge {
    /// A bridge as it is after boot: USB enumerated, PCIe off unless
    /// `config.powered_at_boot` (§3 F3).
    pub fn new(config: BridgeConfig) -> Self {
        let info = DeviceInfo {
            name: config.name.clone(),
            vendor_id: config.vendor_id,
            product_id: config.product_id,
            manufacturer: Some(config.manufacturer.clone()),
            product: Some(config.product.clone()),
            serial: Some(config.serial.clone()),
            speed: Some(config.speed),
        };
        Self { shared: Arc::new(Mutex::new(Emu::new(config))), info }
    }

    /// A USB transport onto this bridge (host side). Several transports share the device,
    /// its endpoint queues and its tags.
    pub fn transport(&self) -> EmulatedUsb {
        EmulatedUsb { shared: Arc::clone(&self.shared), info: self.info.clone() }
    }

    /// The configuration the bridge was built with.
    pub fn config(&self) -> BridgeConfig {
        lock(&self.shared).cfg.clone()
    }

    /// `len` bytes of bank-0 XDATA from `addr` as the 8051 would read them (windows and
    /// LTSSM included, no side effects); the address wraps at 0xFFFF.
    pub fn xdata(&self, addr: u16, len: usize) -> Vec<u8> {
        let emu = lock(&self.shared);
        (0..len).map(|i| emu.xdata_read(0, addr.wrapping_add(i as u16))).collect()
    }

    /// Bridge SRAM as the PCIe side currently sees it (bytes past 512 KiB read 0).
    pub fn sram(&self, offset: u32, len: usize) -> Vec<u8> {
        let emu = lock(&self.shared);
        let start = offset as usize;
        (0..len).map(|i| emu.mem.sram.get(start + i).copied().unwrap_or(0)).collect()
    }

    /// Store into bridge SRAM directly (bytes past 512 KiB are dropped).
    pub fn set_sram(&self, offset: u32, data: &[u8]) {
        let mut emu = lock(&self.shared);
        let start = (offset as usize).min(bridge::SRAM_SIZE);
        let n = data.len().min(bridge::SRAM_SIZE - start);
        emu.mem.sram[start..start + n].copy_from_slice(&data[..n]);
    }

    /// GPU VRAM at `offset` (zeros past `vram_size` or without a GPU).
    pub fn vram(&self, offset: u64, len: usize) -> Vec<u8> {
        let emu = lock(&self.shared);
        let mut out = vec![0; len];
        if let Some(vram) = emu.fabric.gpu_memory() {
            vram.read(offset, &mut out);
        }
        out
    }

    /// Store into GPU VRAM directly (dropped past `vram_size` or without a GPU).
    pub fn set_vram(&self, offset: u64, data: &[u8]) {
        if let Some(vram) = lock(&self.shared).fabric.gpu_memory_mut() {
            vram.write(offset, data);
        }
    }

    /// The GPU writes `data` at a PCIe bus address, obeying bus mastering and the bridge's
    /// upstream decode; a write into the CQ page releases an armed F2 read (§4.7).
    pub fn gpu_dma_write(&self, pcie_addr: u64, data: &[u8]) -> Result<(), DmaError> {
        lock(&self.shared).gpu_dma_write(pcie_addr, data)
    }

    /// The GPU reads `len` bytes at a PCIe bus address.
    pub fn gpu_dma_read(&self, pcie_addr: u64, len: usize) -> Result<Vec<u8>, DmaError> {
        lock(&self.shared).gpu_dma_read(pcie_addr, len)
    }

    /// Current LTSSM value (what E4 of 0xB450 would show, without counting as a poll).
    pub fn ltssm(&self) -> u8 {
        lock(&self.shared).link.ltssm()
    }

    /// Arm a fault; see [`Fault`] for when each one fires.
    #[allow(clippy::needless_pass_by_value)] // a fault is handed over; callers build it inline
    pub fn inject(&self, fault: Fault) {
        let mut emu = lock(&self.shared);
        let f = &mut emu.faults;
        match fault {
            Fault::F0RetStatus { status, times } => {
                f.f0_ret = (times > 0).then_some((status, times));
            }
            Fault::Completion { status, times } => {
                f.completion = (times > 0).then_some((status, times));
            }
            Fault::LinkDown => emu.link.lost = true,
            Fault::DisconnectAfter { transfers: 0 } => emu.unplug(),
            Fault::DisconnectAfter { transfers } => f.disconnect_after = Some(transfers),
            Fault::Stall { endpoint } => f.stall.push(endpoint),
            Fault::Timeout { endpoint } => f.timeout.push(endpoint),
            Fault::GarbageStreamingReads { times } => f.garbage_reads = times,
            Fault::ShortBulkIn { bytes } => f.short_bulk_in = Some(bytes),
            Fault::ConfigRetry { reads } => f.config_retry = reads,
        }
    }

    /// Disarm every pending fault and bring an injected link loss back up.
    pub fn clear_faults(&self) {
        let mut emu = lock(&self.shared);
        emu.faults = Default::default();
        emu.link.lost = false;
    }

    /// Counters since creation or the last [`reset_stats`](Self::reset_stats).
    pub fn stats(&self) -> EmuStats {
        lock(&self.shared).stats.clone()
    }

    /// Zero all counters.
    pub fn reset_stats(&self) {
        lock(&self.shared).stats = EmuStats::default();
    }

    /// The device disappears (cable pulled): everything in flight and every later transfer
    /// fails with `UsbError::Disconnected`.
    pub fn unplug(&self) {
        lock(&self.shared).unplug();
    }

    /// Plug the enclosure back in after a power cycle: the firmware reboots (XDATA, SRAM,
    /// F2 engine and PCIe power as at boot, GPU state lost), in-flight tags are forgotten.
    /// Counters keep running. This is also the only way out of a wedged F2 engine
    /// (`f2_reset_clears_dma = false`).
    pub fn replug(&self) {
        let mut emu = lock(&self.shared);
        let stats = emu.stats.clone();
        *emu = Emu::new(emu.cfg.clone());
        emu.stats = stats;
    }

    /// Land every bulk-OUT byte still waiting for `visibility_delay` now.
    pub fn flush_visibility(&self) {
        lock(&self.shared).flush_visibility(true);
    }

    /// Bytes of bulk-OUT data accepted but not yet visible on the PCIe side.
    pub fn pending_visibility_bytes(&self) -> usize {
        lock(&self.shared).visibility.iter().map(|p| p.data.len() - p.applied).sum()
    }

    /// Whether an armed F2 read has seen its CQ release (§4.7). `None` if no F2 read is armed.
    pub fn f2_read_released(&self) -> Option<bool> {
        match lock(&self.shared).fw.in_source {
            bridge::firmware::InSource::F2Read { released, .. } => Some(released),
            _ => None,
        }
    }
}

/// The host side of an [`EmulatedBridge`]: a [`UsbTransport`].
pub struct EmulatedUsb {
    shared: Arc<Mutex<Emu>>,
    info: DeviceInfo,
}

impl EmulatedUsb {
    fn timed<T>(&self, body: impl FnOnce(&mut Emu) -> T) -> T {
        let mut emu = lock(&self.shared);
        let start = Instant::now();
        let result = body(&mut emu);
        let spent: Duration = start.elapsed();
        emu.stats.device_time += spent;
        result
    }
}

impl UsbTransport for EmulatedUsb {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&mut self, transfer: Transfer, timeout: Duration) -> Result<Tag, UsbError> {
        self.timed(|emu| emu.submit(transfer, timeout))
    }

    fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError> {
        self.timed(|emu| emu.wait(tag))
    }

    fn reset_interface(&mut self) -> Result<(), UsbError> {
        self.timed(|emu| emu.reset_interface())
    }

    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        self.timed(|emu| emu.clear_halt(endpoint))
    }
}
