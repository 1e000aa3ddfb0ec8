use std::time::Duration;

use thiserror::Error;

use crate::link::Bdf;

/// Errors of the link layer: every link's protocol (the USB bridge today), the PCIe fabric and
/// BAR access. Each variant names the operation that failed and keeps the underlying code.
#[derive(Debug, Error)]
#[non_exhaustive]
#[allow(missing_docs)] // the variants' messages are their documentation
pub enum LinkError {
    /// The transport under the link failed (a USB transfer, a socket, a sysfs file); `source`
    /// is the transport's own typed error (e.g. `egpu_usb::UsbError`).
    #[error("{op}: {source}")]
    Transport {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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

    #[error("{op}: this link ({link}) cannot do that")]
    Unsupported { op: String, link: &'static str },
}

impl LinkError {
    /// Wrap a transport error with the operation that was under way.
    pub fn transport<E>(op: impl Into<String>) -> impl FnOnce(E) -> LinkError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let op = op.into();
        move |source| LinkError::Transport { op, source: Box::new(source) }
    }

    /// The transport's own error, if this is a transport failure of type `E`.
    pub fn transport_source<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            LinkError::Transport { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }
}
