use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::Tag;

/// Errors of the USB transport layer. Each names the transfer or step that failed and, where
/// one helps, what to try next.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UsbError {
    /// The transfer's deadline passed before it completed.
    #[error("{transfer} timed out after {after:?}; the bridge may be wedged: replug it or power-cycle the enclosure, then retry")]
    Timeout {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
        /// The deadline it was given.
        after: Duration,
    },

    /// The device answered with a STALL handshake.
    #[error("{transfer} stalled (the device refused it); `egpu` resets the interface before the next command")]
    Stall {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
    },

    /// The device vanished during the transfer.
    #[error("{transfer} failed: the device is gone (unplugged, reset or powered off); check the cable and power, then run `egpu list`")]
    Disconnected {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
    },

    /// A bulk or control OUT moved fewer bytes than it was given.
    #[error("{transfer} moved only {actual} bytes; a USB OUT must move them all")]
    ShortOut {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
        /// Bytes the host controller reported moved.
        actual: usize,
    },

    /// The device sent more than the transfer asked for (babble).
    #[error("{transfer} received more data than asked for (babble); check the cable and port")]
    Overflow {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
    },

    /// The transfer was cancelled before it completed (by a reset or a drop).
    #[error("{transfer} was cancelled")]
    Cancelled {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
    },

    /// Any other transfer failure the USB stack reports.
    #[error("{transfer} failed: {reason}")]
    Failed {
        /// The transfer, as the user reads it (e.g. "control OUT request 0xE5").
        transfer: String,
        /// The OS's or USB stack's description of the failure.
        reason: String,
    },

    /// Refused because an earlier transfer on this transport failed and was not yet cleared.
    #[error("an earlier transfer failed, so this one was not trusted: {first}")]
    Sticky {
        /// The first failure, latched until the transport is reset.
        first: Box<UsbError>,
    },

    /// `wait` on a tag that is not in flight.
    #[error("no transfer with tag {0:?} is in flight (already waited for, or never submitted)")]
    UnknownTag(Tag),

    /// No attached device matches the name.
    #[error("no USB device named `{name}`; run `egpu list` to see what is attached")]
    NotFound {
        /// The device name asked for (`usb:BUS-PORT…` or a bus/address form).
        name: String,
    },

    /// The OS refused to open the device node (udev rule missing).
    #[error("permission denied opening {name}: {reason}; on Linux run `sudo egpu setup --install` to add a udev rule, then replug the bridge")]
    PermissionDenied {
        /// The device that could not be opened.
        name: String,
        /// The OS's description of the refusal.
        reason: String,
    },

    /// Opening or claiming the device failed for another reason.
    #[error("cannot open {name}: {reason}")]
    Open {
        /// The device that could not be opened.
        name: String,
        /// The OS's or USB stack's description of the failure.
        reason: String,
    },

    /// Another egpu process holds the bridge's lock file.
    #[error("{name} is in use by another egpu process (lock {}); stop that process first", lock.display())]
    Busy {
        /// The device, with the holder's pid where the lock file names one.
        name: String,
        /// The lock file another process holds.
        lock: PathBuf,
    },

    /// Enumerating USB devices failed (the OS's reason).
    #[error("cannot list USB devices: {0}")]
    Enumerate(String),
}

impl UsbError {
    /// A cheap copy for latching as the sticky error while the original goes to its waiter.
    /// Errors carry only strings and plain values, so nothing is lost.
    pub fn duplicate(&self) -> UsbError {
        match self {
            UsbError::Timeout { transfer, after } => {
                UsbError::Timeout { transfer: transfer.clone(), after: *after }
            }
            UsbError::Stall { transfer } => UsbError::Stall { transfer: transfer.clone() },
            UsbError::Disconnected { transfer } => {
                UsbError::Disconnected { transfer: transfer.clone() }
            }
            UsbError::ShortOut { transfer, actual } => {
                UsbError::ShortOut { transfer: transfer.clone(), actual: *actual }
            }
            UsbError::Overflow { transfer } => UsbError::Overflow { transfer: transfer.clone() },
            UsbError::Cancelled { transfer } => UsbError::Cancelled { transfer: transfer.clone() },
            UsbError::Failed { transfer, reason } => {
                UsbError::Failed { transfer: transfer.clone(), reason: reason.clone() }
            }
            UsbError::Sticky { first } => UsbError::Sticky { first: Box::new(first.duplicate()) },
            UsbError::UnknownTag(tag) => UsbError::UnknownTag(*tag),
            UsbError::NotFound { name } => UsbError::NotFound { name: name.clone() },
            UsbError::PermissionDenied { name, reason } => {
                UsbError::PermissionDenied { name: name.clone(), reason: reason.clone() }
            }
            UsbError::Open { name, reason } => {
                UsbError::Open { name: name.clone(), reason: reason.clone() }
            }
            UsbError::Busy { name, lock } => {
                UsbError::Busy { name: name.clone(), lock: lock.clone() }
            }
            UsbError::Enumerate(reason) => UsbError::Enumerate(reason.clone()),
        }
    }

    /// True when the device itself is gone, so retrying on it is pointless.
    pub fn is_disconnect(&self) -> bool {
        match self {
            UsbError::Disconnected { .. } => true,
            UsbError::Sticky { first } => first.is_disconnect(),
            _ => false,
        }
    }
}
