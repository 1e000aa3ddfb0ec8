//! What kind of bridge, firmware and GPU the emulator pretends to be.

use egpu_usb::UsbSpeed;

/// The custom firmware's USB IDs (§1: tinygrad accepts these).
pub const CUSTOM_FIRMWARE_IDS: (u16, u16) = (0xADD1, 0x0001);
/// comma's VID, adopted by asm2464pd-firmware#76 (§1).
pub const COMMA_FIRMWARE_IDS: (u16, u16) = (0x3801, 0x0001);
/// Stock ASMedia firmware (§1: for flashing only); vendor requests go unanswered.
pub const STOCK_FIRMWARE_IDS: (u16, u16) = (0x174C, 0x2464);

/// Which GPU sits behind the bridge (§1.3 bus topology).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuKind {
    /// AMD Navi 31 (RX 7900 class): on-board switch 1002:1478/1479, GPU 1002:744C on bus 4.
    Navi31,
    /// NVIDIA GA102 (RTX 3090): GPU 10DE:2204 directly on bus 2 (PR #17369 `gpu_bus=2`).
    Ga102,
    /// Nothing in the slot: only the ASMedia switch ports answer.
    None,
}

/// How the emulated bridge behaves. `Default` is a SuperSpeed+ bridge with the custom
/// firmware "custom v0.1", PCIe off at boot, and a Navi 31 behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    /// GPU behind the bridge.
    pub gpu: GpuKind,
    /// USB idVendor.
    pub vendor_id: u16,
    /// USB idProduct.
    pub product_id: u16,
    /// iProduct string (§1: `custom v0.1`).
    pub product: String,
    /// iManufacturer string (§1: `tiny`).
    pub manufacturer: String,
    /// iSerialNumber string (§1: 8 hex chars from OTP).
    pub serial: String,
    /// `DeviceInfo::name` of the transport.
    pub name: String,
    /// Link speed; `UsbSpeed::High` applies the USB2 limits (§3, §4.5, §12.1).
    pub speed: UsbSpeed,
    /// §3 F3: the custom firmware boots with PCIe off since `29238b772f`; some builds power on.
    pub powered_at_boot: bool,
    /// E4 reads of 0xB450 after power-on that still show a training LTSSM value before 0x78
    /// (§11 #17380: cold GPUs take a moment). TLPs time out while the link trains.
    pub link_training_polls: u32,
    /// Transfers executed after a bulk OUT (F2 write or mode-1 stream) before its bytes are
    /// visible on the PCIe side (§4.6: "bulk OUT finished does not prove the bytes are
    /// visible"). 0 = visible as the transfer completes.
    pub visibility_delay: u32,
    /// With `visibility_delay > 0`: let the data land front to back, a proportional prefix
    /// after each later transfer, instead of all at once (§12.5: pollers must see partially
    /// written windows).
    pub progressive_visibility: bool,
    /// Bytes of GPU VRAM (sparse; untouched bytes read 0).
    pub vram_size: u64,
    /// §11 asm2464pd-firmware#75: a USB reset clears the F2 DMA state. `false` models older
    /// firmware, where a reset mid-transfer wedges the engine until the enclosure is
    /// power-cycled ([`crate::EmulatedBridge::replug`]).
    pub f2_reset_clears_dma: bool,
    /// §4.7 PR #17369: F2 reads always start at slot 0. `true` makes them honour the start
    /// slot instead (what one would naively expect; §14 lists it as open).
    pub f2_read_from_start_slot: bool,
    /// §4.1: 4DW headers with an address below 4 GiB are illegal; AMD tolerates them. They are
    /// always counted; with this set they are treated as malformed and dropped (no completion).
    pub reject_4dw_below_4gib: bool,
    /// Config reads that every function answers with Configuration Request Retry Status after
    /// power-on (F3) or an FLR (§12.6 "CRS after reset").
    pub crs_reads_after_reset: u32,
    /// §11 asm2464pd-firmware#83 reports E4 > 64 bytes *timing out* on USB2 HS, while §3 says
    /// the firmware clamps. Default `false` follows §3 (clamp); `true` follows #83.
    pub hs_e4_over_limit_times_out: bool,
    /// Answer request 0xC0 (INA231 power monitor, newer firmware only, §3).
    pub power_monitor: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            gpu: GpuKind::Navi31,
            vendor_id: CUSTOM_FIRMWARE_IDS.0,
            product_id: CUSTOM_FIRMWARE_IDS.1,
            product: "custom v0.1".into(),
            manufacturer: "tiny".into(),
            serial: "0123abcd".into(),
            name: "emu".into(),
            speed: UsbSpeed::SuperPlus,
            powered_at_boot: false,
            link_training_polls: 0,
            visibility_delay: 0,
            progressive_visibility: false,
            vram_size: 24 << 30,
            f2_reset_clears_dma: true,
            f2_read_from_start_slot: false,
            reject_4dw_below_4gib: false,
            crs_reads_after_reset: 0,
            hs_e4_over_limit_times_out: false,
            power_monitor: true,
        }
    }
}

impl BridgeConfig {
    /// The default configuration (same as `Default`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Put `gpu` behind the bridge.
    pub fn with_gpu(mut self, gpu: GpuKind) -> Self {
        self.gpu = gpu;
        self
    }

    /// Enumerate with these USB IDs. [`STOCK_FIRMWARE_IDS`]'s vendor (0x174C) makes the bridge
    /// behave like stock firmware: no vendor request is answered.
    pub fn with_usb_ids(mut self, vendor_id: u16, product_id: u16) -> Self {
        self.vendor_id = vendor_id;
        self.product_id = product_id;
        self
    }

    /// A stock-firmware bridge (174C:2464). Its product string is unknown to the reference;
    /// "AS2462" is what the fw repo's emulator shows for stock firmware (§1) `[U]`.
    pub fn with_stock_firmware(self) -> Self {
        self.with_usb_ids(STOCK_FIRMWARE_IDS.0, STOCK_FIRMWARE_IDS.1)
            .with_product("AS2462")
            .with_manufacturer("ASMedia")
    }

    /// iProduct string.
    pub fn with_product(mut self, product: impl Into<String>) -> Self {
        self.product = product.into();
        self
    }

    /// iManufacturer string.
    pub fn with_manufacturer(mut self, manufacturer: impl Into<String>) -> Self {
        self.manufacturer = manufacturer.into();
        self
    }

    /// iSerialNumber string.
    pub fn with_serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = serial.into();
        self
    }

    /// Transport name reported in `DeviceInfo`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// USB link speed.
    pub fn with_speed(mut self, speed: UsbSpeed) -> Self {
        self.speed = speed;
        self
    }

    /// Whether PCIe is powered and the link up when the bridge boots.
    pub fn with_powered_at_boot(mut self, powered: bool) -> Self {
        self.powered_at_boot = powered;
        self
    }

    /// E4 polls of 0xB450 after power-on before the link reaches L0.
    pub fn with_link_training_polls(mut self, polls: u32) -> Self {
        self.link_training_polls = polls;
        self
    }

    /// Later transfers before a bulk OUT's bytes become visible on the PCIe side.
    pub fn with_visibility_delay(mut self, transfers: u32) -> Self {
        self.visibility_delay = transfers;
        self
    }

    /// Let delayed bulk-OUT data become visible front to back in proportional steps.
    pub fn with_progressive_visibility(mut self, progressive: bool) -> Self {
        self.progressive_visibility = progressive;
        self
    }

    /// Bytes of VRAM on the GPU.
    pub fn with_vram_size(mut self, bytes: u64) -> Self {
        self.vram_size = bytes;
        self
    }

    /// `false`: firmware before #75, where a reset mid-F2-transfer wedges the DMA engine.
    pub fn with_f2_reset_clears_dma(mut self, clears: bool) -> Self {
        self.f2_reset_clears_dma = clears;
        self
    }

    /// `true`: F2 reads start at the armed start slot instead of slot 0.
    pub fn with_f2_read_from_start_slot(mut self, from_start_slot: bool) -> Self {
        self.f2_read_from_start_slot = from_start_slot;
        self
    }

    /// Drop 4DW TLPs that carry an address below 4 GiB instead of tolerating them.
    pub fn with_reject_4dw_below_4gib(mut self, reject: bool) -> Self {
        self.reject_4dw_below_4gib = reject;
        self
    }

    /// Config reads answered with CRS after power-on and FLR.
    pub fn with_crs_reads_after_reset(mut self, reads: u32) -> Self {
        self.crs_reads_after_reset = reads;
        self
    }

    /// On USB2, let E4 requests above 64 bytes time out (asm2464pd-firmware#83) instead of
    /// being clamped (§3).
    pub fn with_hs_e4_over_limit_times_out(mut self, times_out: bool) -> Self {
        self.hs_e4_over_limit_times_out = times_out;
        self
    }

    /// Whether request 0xC0 (power monitor) is answered.
    pub fn with_power_monitor(mut self, present: bool) -> Self {
        self.power_monitor = present;
        self
    }

    /// Stock ASMedia firmware answers none of the custom vendor requests (§1, §9).
    pub fn is_stock_firmware(&self) -> bool {
        self.vendor_id == STOCK_FIRMWARE_IDS.0
    }

    /// Bulk max packet size: 1024 on SuperSpeed, 512 on high speed (§1.1, §4.10).
    pub fn bulk_max_packet(&self) -> usize {
        if self.speed.is_superspeed() {
            1024
        } else {
            512
        }
    }

    /// §3: E4 returns at most 512 bytes on SuperSpeed, 64 on high speed.
    pub fn e4_limit(&self) -> usize {
        if self.speed.is_superspeed() {
            512
        } else {
            64
        }
    }

    /// §4.5: a mode-2 stream reads ahead up to 256 dwords per chunk on SuperSpeed, 128 on HS.
    pub fn stream_read_chunk_dwords(&self) -> usize {
        if self.speed.is_superspeed() {
            256
        } else {
            128
        }
    }
}
