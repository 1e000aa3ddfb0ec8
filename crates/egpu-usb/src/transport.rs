//! The transport seam: what every USB backend (real `nusb`, emulated bridge) offers the
//! protocol layer above it.
//!
//! Contract, shared by every backend:
//! - [`UsbTransport::submit`] queues a transfer and returns a [`Tag`] at once; several transfers
//!   may be in flight on each endpoint.
//! - Transfers on one endpoint complete in submission order. EP0 (control) is one endpoint.
//! - [`UsbTransport::wait`] blocks until that tag's transfer is done or its deadline passes.
//!   A transfer that has not completed by its deadline is cancelled and its wait returns
//!   [`UsbError::Timeout`].
//! - Any failed transfer — waited on or not — latches a **sticky error**: the next `wait`, for
//!   whatever tag, returns [`UsbError::Sticky`] naming the first failure. The sticky error stays
//!   until [`UsbTransport::reset_interface`] (SET_INTERFACE alt 0, which also makes the custom
//!   firmware drop its streaming state) succeeds. This keeps a fire-and-forget pipeline honest:
//!   an error in a transfer nobody waited for still stops the next step.
//! - OUT transfers must move every byte: a short OUT is an error. IN transfers return the bytes
//!   that arrived (`actual_length` of them); checking that against what the protocol expects is
//!   the protocol layer's job, because only it knows what a short reply means.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::UsbError;

/// Identifies one submitted transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u64);

/// `bmRequestType` of a vendor request to the device, host-to-device (USB 2.0 §9.3.1).
pub const REQUEST_TYPE_VENDOR_OUT: u8 = 0x40;
/// `bmRequestType` of a vendor request to the device, device-to-host.
pub const REQUEST_TYPE_VENDOR_IN: u8 = 0xC0;

/// The eight-byte SETUP packet of a control transfer (USB 2.0 §9.3), minus `wLength`, which
/// the transfer itself carries (the OUT data's length, or the IN length asked for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlSetup {
    /// `bmRequestType`: direction, type and recipient (USB 2.0 §9.3.1).
    pub request_type: u8,
    /// `bRequest`: the request code (the bridge's vendor codes: usb-bridge.md §3).
    pub request: u8,
    /// `wValue`: request-specific.
    pub value: u16,
    /// `wIndex`: request-specific.
    pub index: u16,
}

impl ControlSetup {
    /// A vendor request to the device, direction host-to-device.
    pub const fn vendor_out(request: u8, value: u16, index: u16) -> Self {
        Self { request_type: REQUEST_TYPE_VENDOR_OUT, request, value, index }
    }

    /// A vendor request to the device, direction device-to-host.
    pub const fn vendor_in(request: u8, value: u16, index: u16) -> Self {
        Self { request_type: REQUEST_TYPE_VENDOR_IN, request, value, index }
    }

    /// The SETUP packet as it goes on the wire (little-endian fields, USB 2.0 Table 9-2).
    pub fn to_bytes(&self, length: u16) -> [u8; 8] {
        let [v0, v1] = self.value.to_le_bytes();
        let [i0, i1] = self.index.to_le_bytes();
        let [l0, l1] = length.to_le_bytes();
        [self.request_type, self.request, v0, v1, i0, i1, l0, l1]
    }
}

/// One USB transfer to submit.
#[derive(Clone, Debug)]
pub enum Transfer {
    /// Control transfer with an IN data stage of up to `length` bytes.
    ControlIn {
        /// The SETUP packet.
        setup: ControlSetup,
        /// `wLength`: the most bytes the device may return.
        length: u16,
    },
    /// Control transfer with an OUT data stage (`data` may be empty).
    ControlOut {
        /// The SETUP packet.
        setup: ControlSetup,
        /// The data stage; its length is `wLength`.
        data: Bytes,
    },
    /// Bulk IN of up to `length` bytes on `endpoint` (address with bit 7 set, e.g. 0x81).
    BulkIn {
        /// Endpoint address, bit 7 set.
        endpoint: u8,
        /// The most bytes to receive.
        length: usize,
    },
    /// Bulk OUT of `data` on `endpoint` (e.g. 0x02). `Bytes` lets a caller stream slices of one
    /// large buffer without copying it.
    BulkOut {
        /// Endpoint address, bit 7 clear.
        endpoint: u8,
        /// The bytes to send.
        data: Bytes,
    },
}

impl Transfer {
    /// The endpoint address this transfer runs on (0 for control).
    pub fn endpoint(&self) -> u8 {
        match self {
            Transfer::ControlIn { .. } | Transfer::ControlOut { .. } => 0,
            Transfer::BulkIn { endpoint, .. } | Transfer::BulkOut { endpoint, .. } => *endpoint,
        }
    }

    /// Bytes this transfer asks to move.
    pub fn requested_len(&self) -> usize {
        match self {
            Transfer::ControlIn { length, .. } => usize::from(*length),
            Transfer::ControlOut { data, .. } | Transfer::BulkOut { data, .. } => data.len(),
            Transfer::BulkIn { length, .. } => *length,
        }
    }
}

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transfer::ControlIn { setup, length } => write!(
                f,
                "control IN request 0x{:02X} (wValue 0x{:04X}, wIndex 0x{:04X}, {} bytes)",
                setup.request, setup.value, setup.index, length
            ),
            Transfer::ControlOut { setup, data } => write!(
                f,
                "control OUT request 0x{:02X} (wValue 0x{:04X}, wIndex 0x{:04X}, {} bytes)",
                setup.request,
                setup.value,
                setup.index,
                data.len()
            ),
            Transfer::BulkIn { endpoint, length } => {
                write!(f, "bulk IN of {length} bytes on endpoint 0x{endpoint:02X}")
            }
            Transfer::BulkOut { endpoint, data } => {
                write!(f, "bulk OUT of {} bytes on endpoint 0x{endpoint:02X}", data.len())
            }
        }
    }
}

/// What a completed transfer gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Bytes received by an IN transfer; `data.len()` is the transfer's `actual_length`.
    In(Vec<u8>),
    /// An OUT transfer moved all of its bytes.
    Out {
        /// Bytes moved (all of them, else the transfer failed with `ShortOut`).
        length: usize,
    },
}

impl Completion {
    /// The received bytes of an IN transfer; an OUT completion has none.
    pub fn into_data(self) -> Vec<u8> {
        match self {
            Completion::In(data) => data,
            Completion::Out { .. } => Vec::new(),
        }
    }
}

/// USB link speed, which sets the custom firmware's transfer limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbSpeed {
    /// USB 1.1 full speed, 12 Mb/s.
    Full,
    /// USB 2.0 high speed, 480 Mb/s.
    High,
    /// USB 3 SuperSpeed, 5 Gb/s.
    Super,
    /// USB 3 SuperSpeed+, 10 Gb/s or more.
    SuperPlus,
}

impl UsbSpeed {
    /// SuperSpeed or faster (the bridge's 1024-byte bulk packets and larger limits).
    pub fn is_superspeed(self) -> bool {
        matches!(self, UsbSpeed::Super | UsbSpeed::SuperPlus)
    }
}

impl fmt::Display for UsbSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UsbSpeed::Full => "USB 1.1 full speed (12 Mb/s)",
            UsbSpeed::High => "USB 2.0 high speed (480 Mb/s)",
            UsbSpeed::Super => "USB 3 SuperSpeed (5 Gb/s)",
            UsbSpeed::SuperPlus => "USB 3 SuperSpeed+ (10 Gb/s or more)",
        })
    }
}

/// Identity of an opened USB device, read from its descriptors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable user-facing name: `usb:<bus>-<address>`, or `emu` / `emu:<n>` for emulated ones.
    pub name: String,
    /// USB idVendor from the device descriptor.
    pub vendor_id: u16,
    /// USB idProduct from the device descriptor.
    pub product_id: u16,
    /// iManufacturer string, if the device has one and it could be read.
    pub manufacturer: Option<String>,
    /// iProduct string, if the device has one and it could be read.
    pub product: Option<String>,
    /// iSerialNumber string, if the device has one and it could be read.
    pub serial: Option<String>,
    /// Negotiated link speed, where the OS reports it.
    pub speed: Option<UsbSpeed>,
}

/// A USB device with one claimed interface, as the protocol layer sees it.
pub trait UsbTransport: Send {
    /// Descriptor identity of the device.
    fn info(&self) -> &DeviceInfo;

    /// Queue `transfer`, to be cancelled if it has not completed within `timeout`.
    fn submit(&mut self, transfer: Transfer, timeout: Duration) -> Result<Tag, UsbError>;

    /// Block until `tag` completes; see the module docs for ordering and the sticky error.
    fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError>;

    /// SET_INTERFACE(interface 0, alt 0): cancels everything in flight, makes the bridge clear
    /// both bulk endpoints and its streaming state, and clears the sticky error.
    fn reset_interface(&mut self) -> Result<(), UsbError>;

    /// CLEAR_FEATURE(ENDPOINT_HALT) on `endpoint`; the bridge also cancels streaming.
    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError>;

    /// Submit and wait in one step.
    fn transfer(&mut self, transfer: Transfer, timeout: Duration) -> Result<Completion, UsbError> {
        let tag = self.submit(transfer, timeout)?;
        self.wait(tag)
    }
}

impl<T: UsbTransport + ?Sized> UsbTransport for Box<T> {
    fn info(&self) -> &DeviceInfo {
        (**self).info()
    }
    fn submit(&mut self, transfer: Transfer, timeout: Duration) -> Result<Tag, UsbError> {
        (**self).submit(transfer, timeout)
    }
    fn wait(&mut self, tag: Tag) -> Result<Completion, UsbError> {
        (**self).wait(tag)
    }
    fn reset_interface(&mut self) -> Result<(), UsbError> {
        (**self).reset_interface()
    }
    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        (**self).clear_halt(endpoint)
    }
}
