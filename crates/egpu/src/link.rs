//! Links by device name: open the bridge (real or emulated) or the remote link behind a device
//! name and reach the PCIe fabric through it. This is what `egpu info`, `egpu bench link`,
//! `egpu demo` and `egpu share` work on; vendor drivers get the same [`PcieLink`] when they
//! open a device.

use std::time::Duration;

use egpu_link::asm2464::wire::LTSSM_L0;
use egpu_link::pcie::fabric::{self, FabricOptions};
use egpu_link::Asm2464;
use egpu_usb::lock::BridgeLock;
use egpu_usb::UsbTransport;

#[cfg(feature = "emu")]
pub use crate::emulated_copy::{EmulatedCopyEngine, Place};
pub use egpu_hal::{
    BarMmio, BarRegion, Bdf, DmaInfo, DmaRegion, DmaRelease, LinkCounters, LinkError, PcieLink,
    PendingDmaRead,
};
pub use egpu_link::asm2464::wire::{PCIE_CQ_PAGE, PCIE_SRAM_BASE, SRAM_SLOT_SIZE};
pub use egpu_link::pcie::fabric::{format_size, Bar, BarKind, Function, Topology};
pub use egpu_link::LinkStats;

#[cfg(feature = "emu")]
use crate::EmulatedCard;
use crate::{DeviceName, Error};

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

/// An opened link: the USB bridge (with the emulator behind it when there is one), a
/// Linux PCIe function, or a GPU behind the TinyGPU app's server.
pub struct OpenLink {
    name: DeviceName,
    reach: Reach,
}

enum Reach {
    Bridge {
        bridge: Box<Asm2464<Box<dyn UsbTransport>>>,
        #[cfg(feature = "emu")]
        emulator: Option<egpu_emu::EmulatedBridge>,
        _lock: Option<BridgeLock>,
    },
    #[cfg(target_os = "linux")]
    Pci(Box<egpu_link::pci::SysfsPciLink>),
    #[cfg(unix)]
    TinyGpu(Box<egpu_link::tinygpu::TinyGpuLink>),
    #[cfg(feature = "remote")]
    Remote(Box<egpu_remote::RemoteLink>),
}

/// What a remote link says about the device it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteInfo {
    /// The server's socket address.
    pub server: std::net::SocketAddr,
    /// The served link's kind ("usb-asm2464", "emulated").
    pub kind: String,
    /// Whether an emulator is behind the served link.
    pub emulated: bool,
    /// The Noise protocol the channel runs.
    pub channel: &'static str,
}

/// Serving a local device to other machines (`egpu share`).
#[cfg(feature = "remote")]
pub mod share {
    pub use egpu_remote::{Key, RemoteError, Server, ServerConfig, ServerHandle, KEY_ENV};

    use super::OpenLink;
    use crate::Error;

    /// Serve `link` with `server` until the server is stopped.
    pub fn serve(link: &mut OpenLink, server: Server) -> Result<(), Error> {
        let device = link.name().to_string();
        server.serve(link.link()).map_err(|e| Error::Link {
            device,
            source: super::LinkError::transport("serving the device")(e),
        })
    }
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
            let reach =
                Reach::Bridge { bridge: Box::new(bridge), emulator: Some(emulator), _lock: None };
            Ok(OpenLink { name: name.clone(), reach })
        }
        DeviceName::Usb { bus, ports } => {
            let usb_name = egpu_usb::discover::bridge_name(bus, ports);
            let (transport, lock) = egpu_usb::discover::open_bridge(&usb_name)
                .map_err(LinkError::transport("opening the bridge"))
                .map_err(link_error)?;
            let transport: Box<dyn UsbTransport> = Box::new(transport);
            let bridge = Asm2464::open(transport, egpu_link::Asm2464Config::default())
                .map_err(link_error)?;
            let reach = Reach::Bridge {
                bridge: Box::new(bridge),
                #[cfg(feature = "emu")]
                emulator: None,
                _lock: Some(lock),
            };
            Ok(OpenLink { name: name.clone(), reach })
        }
        #[cfg(target_os = "linux")]
        DeviceName::Pci { domain, bus, device, function } => {
            let address = egpu_link::pci::PciAddress {
                domain: *domain,
                bus: *bus,
                device: *device,
                function: *function,
            };
            let link = egpu_link::pci::SysfsPciLink::open(address).map_err(link_error)?;
            Ok(OpenLink { name: name.clone(), reach: Reach::Pci(Box::new(link)) })
        }
        // TinyGPU.app exists only on macOS, but the client runs on any Unix against a server
        // named by $APL_REMOTE_SOCK (the emulated TinyGPU server in tests).
        #[cfg(unix)]
        DeviceName::TinyGpu(index) => {
            let options = egpu_link::tinygpu::TinyGpuOptions::default();
            let link =
                egpu_link::tinygpu::TinyGpuLink::open(*index, options).map_err(link_error)?;
            Ok(OpenLink { name: name.clone(), reach: Reach::TinyGpu(Box::new(link)) })
        }
        #[cfg(not(unix))]
        DeviceName::TinyGpu(_) => Err(unavailable(
            "TinyGPU is a macOS link (the TinyGPU app's Unix-socket server)".into(),
        )),
        #[cfg(feature = "remote")]
        DeviceName::Remote { host, port } => {
            let config = egpu_remote::ClientConfig::from_env()
                .map_err(LinkError::transport("reading the remote link's settings"))
                .map_err(link_error)?;
            let remote = egpu_remote::RemoteLink::connect(host, *port, &config)
                .map_err(LinkError::transport("connecting"))
                .map_err(link_error)?;
            Ok(OpenLink { name: name.clone(), reach: Reach::Remote(Box::new(remote)) })
        }
        other => Err(unavailable(format!(
            "{} is not a link egpu can open yet (USB bridges, Linux PCIe, TinyGPU, remote and \
             emulated devices are)",
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
        match &mut self.reach {
            Reach::Bridge { bridge, .. } => bridge.as_mut(),
            #[cfg(target_os = "linux")]
            Reach::Pci(link) => link.as_mut(),
            #[cfg(unix)]
            Reach::TinyGpu(link) => link.as_mut(),
            #[cfg(feature = "remote")]
            Reach::Remote(link) => link.as_mut(),
        }
    }

    /// The USB bridge, when this link is one.
    fn usb_bridge(&self) -> Option<&Asm2464<Box<dyn UsbTransport>>> {
        match &self.reach {
            Reach::Bridge { bridge, .. } => Some(bridge),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    fn bridge(&mut self, op: &str) -> Result<&mut Asm2464<Box<dyn UsbTransport>>, LinkError> {
        let kind = self.link().kind();
        match &mut self.reach {
            Reach::Bridge { bridge, .. } => Ok(bridge),
            #[allow(unreachable_patterns)]
            _ => Err(LinkError::Unsupported { op: op.into(), link: kind }),
        }
    }

    #[cfg(feature = "emu")]
    fn emulator(&self) -> Option<&egpu_emu::EmulatedBridge> {
        match &self.reach {
            Reach::Bridge { emulator, .. } => emulator.as_ref(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether an emulator is behind the link (zero-latency transport, device time counted).
    pub fn is_emulated(&self) -> bool {
        #[cfg(feature = "emu")]
        return self.emulator().is_some();
        #[cfg(not(feature = "emu"))]
        false
    }

    /// The remote link's view of the device it reaches; `None` for a local link.
    pub fn remote_info(&self) -> Option<RemoteInfo> {
        match &self.reach {
            #[cfg(feature = "remote")]
            Reach::Remote(remote) => Some(RemoteInfo {
                server: remote.server_addr(),
                kind: remote.remote_kind().to_string(),
                emulated: remote.remote_is_emulated(),
                channel: remote.channel(),
            }),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether the emulated GPU's copy engine is behind the link (here or at a remote server),
    /// so measurements can make the device release GPU-visible memory reads.
    pub fn has_emulated_gpu(&self) -> bool {
        self.is_emulated() || self.remote_info().is_some_and(|info| info.emulated)
    }

    /// The bridge's USB identity; `None` on links without a bridge.
    pub fn bridge_info(&self) -> Option<BridgeInfo> {
        let info = self.usb_bridge()?.info();
        Some(BridgeInfo {
            name: info.name.clone(),
            vendor_id: info.vendor_id,
            product_id: info.product_id,
            manufacturer: info.manufacturer.clone(),
            product: info.product.clone(),
            serial: info.serial.clone(),
            speed: info.speed.map(|speed| speed.to_string()),
        })
    }

    /// The PCIe LTSSM state the bridge reports (0x78 = L0, link up).
    pub fn ltssm(&mut self) -> Result<u8, LinkError> {
        self.bridge("reading the bridge's LTSSM")?.ltssm()
    }

    /// Whether an LTSSM value means the link is up.
    pub fn is_link_up(ltssm: u8) -> bool {
        ltssm == LTSSM_L0
    }

    /// The bridge's power monitor: (millivolts, milliamps).
    pub fn power_monitor(&mut self) -> Result<(u16, i16), LinkError> {
        self.bridge("reading the bridge's power monitor")?.power_monitor()
    }

    /// USB transfers and bytes so far (zero on links without USB; see [`OpenLink::counters`]).
    pub fn stats(&self) -> LinkStats {
        self.usb_bridge().map(Asm2464::stats).unwrap_or_default()
    }

    /// Requests and round trips so far, counted alike on every link that has messages;
    /// `None` where accesses are loads and stores into mapped BARs (Linux PCIe).
    pub fn counters(&self) -> Option<LinkCounters> {
        match &self.reach {
            Reach::Bridge { bridge, .. } => bridge.counters(),
            #[cfg(target_os = "linux")]
            Reach::Pci(link) => link.counters(),
            #[cfg(unix)]
            Reach::TinyGpu(link) => link.counters(),
            #[cfg(feature = "remote")]
            Reach::Remote(link) => link.counters(),
        }
    }

    /// Whether the link is the USB bridge (the only one with USB transfers to show).
    pub fn is_usb(&self) -> bool {
        matches!(self.reach, Reach::Bridge { .. })
    }

    /// Bytes one streaming read call moves at most on this link.
    pub fn stream_chunk(&self) -> usize {
        match &self.reach {
            Reach::Bridge { bridge, .. } => bridge.config().stream_chunk,
            #[cfg(target_os = "linux")]
            Reach::Pci(_) => 1 << 20,
            #[cfg(unix)]
            Reach::TinyGpu(_) => egpu_link::tinygpu::wire::MAX_MMIO_TRANSFER,
            #[cfg(feature = "remote")]
            Reach::Remote(_) => egpu_remote::wire::MAX_READ,
        }
    }

    /// Walk and set up the PCIe fabric behind the link (on Linux PCIe the kernel did that, on
    /// TinyGPU macOS did: the function as it is; a remote link walks the far fabric).
    pub fn bring_up(&mut self) -> Result<Topology, LinkError> {
        match &mut self.reach {
            #[cfg(target_os = "linux")]
            Reach::Pci(link) => Ok(link.topology()),
            #[cfg(unix)]
            Reach::TinyGpu(link) => Ok(link.topology()),
            _ => fabric::bring_up(self.link(), &FabricOptions::default()),
        }
    }

    /// Start counting the emulator's own time afresh (no-op on real hardware).
    pub fn reset_device_time(&self) {
        #[cfg(feature = "emu")]
        if let Some(emulator) = self.emulator() {
            emulator.reset_stats();
        }
    }

    /// Time spent inside the emulator since [`OpenLink::reset_device_time`]; `None` on real
    /// hardware.
    pub fn device_time(&self) -> Option<Duration> {
        #[cfg(feature = "emu")]
        return self.emulator().map(|emulator| emulator.stats().device_time);
        #[cfg(not(feature = "emu"))]
        None
    }
}

// Not on macOS: there `open` would start an installed TinyGPU.app.
#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;

    /// The only test of this crate that touches `APL_REMOTE_SOCK`.
    #[test]
    fn tinygpu_names_open_the_tinygpu_link_at_the_documented_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tinygpu.sock");
        std::env::set_var(egpu_link::tinygpu::SOCKET_ENV, &socket);
        let result = open(&DeviceName::TinyGpu(0));
        std::env::remove_var(egpu_link::tinygpu::SOCKET_ENV);
        let error = result.err().expect("nothing listens there");
        let text = format!("{error} {:?}", std::error::Error::source(&error));
        assert!(text.contains("tinygpu:0"), "{text}");
        assert!(text.contains(&socket.display().to_string()), "{text}");
    }
}
