//! The runtime's error type, shared by the runtime and every backend.

use std::time::Duration;

/// Everything the runtime can report. Backend failures keep their own error as `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The device name does not parse.
    #[error("bad device name {name:?}: {why}")]
    BadDeviceName {
        /// The name as given.
        name: String,
        /// What was expected.
        why: String,
    },
    /// No backend for this kind of device is available in this build or on this machine.
    #[error("cannot open {name}: {why}")]
    Unavailable {
        /// The device name.
        name: String,
        /// Why, and what to try.
        why: String,
    },
    /// The link to the device failed (USB bridge, socket, …).
    #[error("link to {device} failed")]
    Link {
        /// The device's name.
        device: String,
        /// The link's error.
        #[source]
        source: crate::LinkError,
    },
    /// The vendor driver failed; `source` holds its own typed error.
    #[error("{operation} failed on {device}")]
    Backend {
        /// The runtime operation that failed (e.g. "submit", "load program").
        operation: &'static str,
        /// The device's name.
        device: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An offset/length pair reaches outside a buffer.
    #[error("{operation}: range {offset}..{offset}+{len} is outside a buffer of {size} bytes")]
    OutOfBounds {
        /// The operation.
        operation: &'static str,
        /// Start of the range in bytes.
        offset: u64,
        /// Length of the range in bytes.
        len: u64,
        /// The buffer's size in bytes.
        size: u64,
    },
    /// The buffer is not of the kind the operation needs (e.g. CPU access to device memory).
    #[error("{operation} needs a {needed} buffer")]
    WrongMemoryKind {
        /// The operation.
        operation: &'static str,
        /// The kind it needs.
        needed: &'static str,
    },
    /// No kernel of this name in the program.
    #[error("no kernel named {name:?} in the program (it has: {available})")]
    NoSuchKernel {
        /// The name looked up.
        name: String,
        /// Comma-separated names the program does have.
        available: String,
    },
    /// The number of launch arguments differs from the kernel's parameter count.
    #[error("kernel {kernel} takes {expected} arguments, got {got}")]
    ArgumentCount {
        /// Kernel name.
        kernel: String,
        /// Parameter count from the program's metadata.
        expected: usize,
        /// Arguments passed.
        got: usize,
    },
    /// One launch argument has a different size from the kernel's parameter.
    #[error(
        "kernel {kernel} argument {index}: parameter is {expected} bytes, argument is {got} bytes"
    )]
    ArgumentSize {
        /// Kernel name.
        kernel: String,
        /// 0-based argument index.
        index: usize,
        /// Parameter size from the program's metadata.
        expected: u32,
        /// Size of the argument passed.
        got: u32,
    },
    /// Launch geometry is invalid (zero dimension, too many threads, …).
    #[error("kernel {kernel}: bad launch geometry: {why}")]
    BadLaunch {
        /// Kernel name.
        kernel: String,
        /// What is wrong.
        why: String,
    },
    /// A wait reached its deadline.
    #[error("timed out after {waited:?} waiting for {what} to reach {wanted} (last seen {last_seen}); the GPU may be hung: check `egpu info`, then reset or replug")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The value waited for.
        wanted: u64,
        /// The last value read.
        last_seen: u64,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// Objects from two different devices were mixed.
    #[error("{operation}: object belongs to another device")]
    ForeignObject {
        /// The operation.
        operation: &'static str,
    },
}
