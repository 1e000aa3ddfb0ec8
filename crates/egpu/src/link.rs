//! Links by device name: open the bridge (real or emulated) behind a device name and reach
//! the PCIe fabric through it. This is what `egpu info`, `egpu bench link` and `egpu demo`
//! work on; vendor drivers get the same [`PcieLink`] when they open a device.

use std::time::Duration;

use egpu_link::asm2464::wire::LTSSM_L0;
use egpu_link::pcie::fabric::{self, FabricOptions};
use egpu_link::Asm2464;
use egpu_usb::lock::BridgeLock;
use egpu_usb::UsbTransport;

#[cfg(feature = "emu")]
pub use crate::emulated_copy::{EmulatedCopyEngine, Place};
pub use egpu_hal::{
    BarMmio, BarRegion, Bdf, DmaInfo, DmaRegion, DmaRelease, LinkError, PcieLink, PendingDmaRead,
};
pub use egpu_link::asm2464::wire::{PCIE_CQ_PAGE, PCIE_SRAM_BASE, SRAM_SLOT_SIZE};
pub use egpu_link::pcie::fabric::{format_size, Bar, BarKind, Function, Topology};
pub use egpu_link::LinkStats;

use crate::{DeviceName, EmulatedCard, Error};

/// What the USB side of a bridge says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeInfo {
    /// The platform's name of the USB device.
    pub name: String,
    /// USB vendor ID.
    pub vendor_id: u16,
    /// USB product ID.
    pub product_id: u16,
    /// Manufacturer string.
    pub manufacturer: Option<String>,
    /// Product string (the firmware's identity).
    pub product: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Negotiated USB speed, in words.
    pub speed: Option<String>,
}

/// An opened bridge: the link, and the emulator behind it when there is one.
pub struct OpenLink {
    name: DeviceName,
    bridge: Asm2464<Box<dyn UsbTransport>>,
    #[cfg(feature = "emu")]
    emulator: Option<egpu_emu::EmulatedBridge>,
    _lock: Option<BridgeLock>,
}

/// Open the bridge behind `name` (`usb:…`, or an emulated `emu:…`).
pub fn open(name: &DeviceName) -> Result<OpenLink, Error> {
    let unavailable = |why: String| Error::Unavailable { name: name.to_string(), why };
    let link_error = |source: LinkError| Error::Link { device: name.to_string(), source };
    match name {
        #[cfg(feature = "emu")]
        DeviceName::Emu(card) => {
            let gpu = match card {
                EmulatedCard::Navi31 => egpu_emu::GpuKind::Navi31,
                EmulatedCard::Ga102 => egpu_emu::GpuKind::Ga102,
                EmulatedCard::None => egpu_emu::GpuKind::None,
                EmulatedCard::Navi48 => {
                    return Err(unavailable(
                        "the emulated Navi48 card is not modelled yet (only emu:navi31, \
                         emu:ga102 and emu:none are)"
                            .into(),
                    ))
                }
            };
            let emulator =
                egpu_emu::EmulatedBridge::new(egpu_emu::BridgeConfig::default().with_gpu(gpu));
            let transport: Box<dyn UsbTransport> = Box::new(emulator.transport());
            let bridge = Asm2464::open(transport, egpu_link::Asm2464Config::default())
                .map_err(link_error)?;
            Ok(OpenLink { name: name.clone(), bridge, emulator: Some(emulator), _lock: None })
        }
        DeviceName::Usb { bus, ports } => {
            let usb_name = egpu_usb::discover::bridge_name(bus, ports);
            let (transport, lock) = egpu_usb::discover::open_bridge(&usb_name)
                .map_err(LinkError::transport("opening the bridge"))
                .map_err(link_error)?;
            let transport: Box<dyn UsbTransport> = Box::new(transport);
            let bridge = Asm2464::open(transport, egpu_link::Asm2464Config::default())
                .map_err(link_error)?;
            Ok(OpenLink {
                name: name.clone(),
                bridge,
                #[cfg(feature = "emu")]
                emulator: None,
                _lock: Some(lock),
            })
        }
        other => Err(unavailable(format!(
            "{} is not a link egpu can open yet (USB bridges and emulated devices are)",
            other
        ))),
    }
}

impl OpenLink {
    /// The device name this link was opened for.
    pub fn name(&self) -> &DeviceName {
        &self.name
    }

    /// The link itself.
    pub fn link(&mut self) -> &mut dyn PcieLink {
        &mut self.bridge
    }

    /// Whether an emulator is behind the link (zero-latency transport, device time counted).
    pub fn is_emulated(&self) -> bool {
        #[cfg(feature = "emu")]
        return self.emulator.is_some();
        #[cfg(not(feature = "emu"))]
        false
    }

    /// The bridge's USB identity.
    pub fn bridge_info(&self) -> BridgeInfo {
        let info = self.bridge.info();
        BridgeInfo {
            name: info.name.clone(),
            vendor_id: info.vendor_id,
            product_id: info.product_id,
            manufacturer: info.manufacturer.clone(),
            product: info.product.clone(),
            serial: info.serial.clone(),
            speed: info.speed.map(|speed| speed.to_string()),
        }
    }

    /// The PCIe LTSSM state the bridge reports (0x78 = L0, link up).
    pub fn ltssm(&mut self) -> Result<u8, LinkError> {
        self.bridge.ltssm()
    }

    /// Whether an LTSSM value means the link is up.
    pub fn is_link_up(ltssm: u8) -> bool {
        ltssm == LTSSM_L0
    }

    /// The bridge's power monitor: (millivolts, milliamps).
    pub fn power_monitor(&mut self) -> Result<(u16, i16), LinkError> {
        self.bridge.power_monitor()
    }

    /// USB transfers and bytes so far.
    pub fn stats(&self) -> LinkStats {
        self.bridge.stats()
    }

    /// Bytes per bulk transfer of a streaming read (what one read call moves at most).
    pub fn stream_chunk(&self) -> usize {
        self.bridge.config().stream_chunk
    }

    /// Walk and set up the PCIe fabric behind the bridge.
    pub fn bring_up(&mut self) -> Result<Topology, LinkError> {
        fabric::bring_up(&mut self.bridge, &FabricOptions::default())
    }

    /// Start counting the emulator's own time afresh (no-op on real hardware).
    pub fn reset_device_time(&self) {
        #[cfg(feature = "emu")]
        if let Some(emulator) = &self.emulator {
            emulator.reset_stats();
        }
    }

    /// Time spent inside the emulator since [`OpenLink::reset_device_time`]; `None` on real
    /// hardware.
    pub fn device_time(&self) -> Option<Duration> {
        #[cfg(feature = "emu")]
        return self.emulator.as_ref().map(|emulator| emulator.stats().device_time);
        #[cfg(not(feature = "emu"))]
        None
    }
}
