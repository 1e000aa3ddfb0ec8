use std::time::Duration;

use egpu_usb::UsbError;
use thiserror::Error;

use crate::pcie::Bdf;

/// Errors of the link layer: the bridge protocol, the PCIe fabric and BAR access. Each variant
/// names the operation that failed and keeps the underlying code.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("{op}: {source}")]
    Usb {
        op: String,
        #[source]
        source: UsbError,
    },

    #[error("{device} runs the stock ASMedia firmware (ID {vendor_id:04x}:{product_id:04x}); egpu needs the open custom firmware: build and flash `handmade/` from github.com/tinygrad/asm2464pd-firmware, then replug")]
    StockFirmware { device: String, vendor_id: u16, product_id: u16 },

    #[error("{device} (ID {vendor_id:04x}:{product_id:04x}, product {product:?}) is not an ASM2464PD bridge with the custom firmware (expected ID add1:0001 or 3801:0001 and a product string starting with `custom`)")]
    NotABridge { device: String, vendor_id: u16, product_id: u16, product: Option<String> },

    #[error("{op}: the bridge answered {actual} bytes where {expected} were expected; the firmware may be an incompatible revision, update it")]
    ShortReply { op: String, expected: usize, actual: usize },

    #[error("{op}: TLP engine error after {attempts} attempts (last ret_status 0x{ret_status:02X}); check that the GPU is powered and the link is up (`egpu info`)")]
    TlpFailed { op: String, attempts: u32, ret_status: u8 },

    #[error("{op}: Unsupported Request completion (no device or BAR decodes this address); check the topology with `egpu info`")]
    UnsupportedRequest { op: String },

    #[error("{op}: Completer Abort from the device")]
    CompleterAbort { op: String },

    #[error("{op}: the device kept answering Configuration Request Retry Status after {attempts} attempts; it is still initialising: wait and retry, or power-cycle the GPU")]
    ConfigRetry { op: String, attempts: u32 },

    #[error("{op}: completion with reserved status 0b{status:03b}")]
    ReservedCompletion { op: String, status: u8 },

    #[error("PCIe link did not come up: LTSSM state 0x{ltssm:02X} (0x78 = L0) after {waited:?}; check the GPU's own power supply and cables, reseat the card, then replug the bridge")]
    LinkDown { ltssm: u8, waited: Duration },

    #[error(
        "{op}: address 0x{address:X} and length {len} must be multiples of 4 for dword access"
    )]
    Unaligned { op: String, address: u64, len: usize },

    #[error("{op}: range 0x{offset:X}+0x{len:X} is outside the {size:#X}-byte region")]
    OutOfRange { op: String, offset: u64, len: usize, size: u64 },

    #[error("{op}: {len} bytes do not fit in the bridge SRAM from slot {start_slot} (512 KiB, 32 slots of 16 KiB)")]
    SramRange { op: String, start_slot: u8, len: usize },

    #[error("{op} on {bdf}: {reason}")]
    Config { op: String, bdf: Bdf, reason: String },

    #[error("{op}: {reason}")]
    Busy { op: String, reason: String },

    #[error("invalid bridge settings: {0}")]
    InvalidConfig(String),

    #[error("PCIe fabric: {0}")]
    Fabric(String),

    #[error("no GPU (display-class function) found behind the bridge; is the card seated and powered? `egpu info` shows what was found")]
    NoGpu,
}

impl LinkError {
    /// Wrap a transport error with the operation that was under way.
    pub fn usb(op: impl Into<String>) -> impl FnOnce(UsbError) -> LinkError {
        let op = op.into();
        move |source| LinkError::Usb { op, source }
    }
}
