use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::Tag;

/// Errors of the USB transport layer. Each names the transfer or step that failed and, where
/// one helps, what to try next.
#[derive(Debug, Error)]
pub enum UsbError {
    #[error("{transfer} timed out after {after:?}; the bridge may be wedged: replug it or power-cycle the enclosure, then retry")]
    Timeout { transfer: String, after: Duration },

    #[error("{transfer} stalled (the device refused it); `egpu` resets the interface before the next command")]
    Stall { transfer: String },

    #[error("{transfer} failed: the device is gone (unplugged, reset or powered off); check the cable and power, then run `egpu list`")]
    Disconnected { transfer: String },

    #[error("{transfer} moved only {actual} bytes; a USB OUT must move them all")]
    ShortOut { transfer: String, actual: usize },

    #[error("{transfer} received more data than asked for (babble); check the cable and port")]
    Overflow { transfer: String },

    #[error("{transfer} was cancelled")]
    Cancelled { transfer: String },

    #[error("{transfer} failed: {reason}")]
    Failed { transfer: String, reason: String },

    #[error("an earlier transfer failed, so this one was not trusted: {first}")]
    Sticky { first: Box<UsbError> },

    #[error("no transfer with tag {0:?} is in flight (already waited for, or never submitted)")]
    UnknownTag(Tag),

    #[error("no USB device named `{name}`; run `egpu list` to see what is attached")]
    NotFound { name: String },

    #[error("permission denied opening {name}: {reason}; on Linux run `sudo egpu setup --install` to add a udev rule, then replug the bridge")]
    PermissionDenied { name: String, reason: String },

    #[error("cannot open {name}: {reason}")]
    Open { name: String, reason: String },

    #[error("{name} is in use by another egpu process (lock {}); stop that process first", lock.display())]
    Busy { name: String, lock: PathBuf },

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
