//! Errors of the emulator's device-side stimulus API.

use thiserror::Error;

/// Why GPU-initiated (upstream) DMA was refused. The real fabric would drop or UR such a
/// request; the emulator reports it so a test can see which rule fired.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
#[allow(missing_docs)] // `addr` is the bus address, `len` the byte count; each message says the rest
pub enum DmaError {
    /// The fabric has no GPU to make the request.
    #[error("GPU DMA of {len} bytes at PCIe 0x{addr:X}: no GPU in the emulated fabric (BridgeConfig::gpu or FabricConfig::gpu is GpuKind::None)")]
    NoGpu { addr: u64, len: usize },

    /// The link is not in L0.
    #[error("GPU DMA of {len} bytes at PCIe 0x{addr:X}: the PCIe link is down (LTSSM 0x{ltssm:02X}, not 0x78); power it on with F3")]
    LinkDown { addr: u64, len: usize, ltssm: u8 },

    /// A function on the path upstream has bus mastering off.
    #[error("GPU DMA of {len} bytes at PCIe 0x{addr:X}: bus mastering is off on {device}; set COMMAND.BUS_MASTER (bit 2) there")]
    BusMasterDisabled { addr: u64, len: usize, device: String },

    /// The address belongs to another device below the bridge.
    #[error("GPU DMA of {len} bytes at PCIe 0x{addr:X} is claimed by the memory window of {device}, so it would go peer-to-peer, which is not modelled")]
    PeerToPeer { addr: u64, len: usize, device: String },

    /// Nothing on the host side of the USB bridge decodes the address.
    #[error("GPU DMA of {len} bytes at PCIe 0x{addr:X}: no bridge memory decodes that range; the bridge decodes SRAM 0x200000-0x27FFFF, 0x800000-0x8001FF, 0x820000-0x820FFF and the CQ page 0x822000/0x828000 (4 KiB each)")]
    Unmapped { addr: u64, len: usize },

    /// No allocated host-memory region of the in-process link holds the range.
    #[error("GPU DMA of {len} bytes at bus 0x{addr:X}: no GPU-visible host memory region holds that range; the in-process link's regions live in the host aperture 0x1_0000_0000 + 4 GiB and exist once allocated with PcieLink::dma_alloc")]
    NoHostMemory { addr: u64, len: usize },

    #[error("GPU DMA of {len} bytes at bus 0x{addr:X}: no DMA memory of the TinyGPU server holds that whole range; DMA memory exists once a client allocated it with MAP_SYSMEM_FD, only at the segment addresses listed at its start, and only until that client disconnects")]
    NoSysmem { addr: u64, len: usize },
}
