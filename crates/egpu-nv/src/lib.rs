//! NVIDIA driver for egpu.
//!
//! Talks to NVIDIA's kernel module (nvidia.ko) with resource-manager (RM) ioctls — no libcuda —
//! and submits work through GPFIFO channels it builds itself: pushbuffers, QMDs, semaphores and
//! copy-engine methods are encoded here as data. Kernels come from cubins (parsed by
//! [`cubin`]) compiled at run time by NVRTC ([`nvrtc`], loaded with `dlopen`).
//!
//! Layers, bottom up: [`rm`] (structs, status codes, the ioctl client), [`pushbuf`] / [`qmd`] /
//! [`launch`] (encoders), [`arch`] (per-architecture facts), [`cubin`], [`nvrtc`].

pub mod arch;
#[cfg(target_os = "linux")]
pub mod bench;
pub mod cubin;
#[cfg(target_os = "linux")]
pub mod cuda_peer;
#[cfg(target_os = "linux")]
pub mod device;
pub mod gpu;
pub mod launch;
pub mod nvrtc;
pub mod pushbuf;
pub mod qmd;
pub mod rm;
pub mod runtime;
pub mod va;

pub use gpu::{list_gpus, NvGpuInfo};

/// Errors of the NVIDIA driver, one variant per layer below plus the driver's own.
#[derive(Debug, thiserror::Error)]
pub enum NvError {
    /// /dev/nvidiactl is absent: NVIDIA's kernel module is not loaded on this machine.
    #[error("no NVIDIA kernel driver (/dev/nvidiactl not found); load nvidia.ko or use a USB/PCIe device")]
    NoKernelDriver,
    /// This platform has no nvidia.ko path (not Linux).
    #[error("the NVIDIA kernel-module path needs Linux")]
    Unsupported,
    /// An RM call failed.
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Rm(rm::client::RmError),
    /// A cubin was rejected.
    #[error(transparent)]
    Cubin(#[from] cubin::CubinError),
    /// A launch could not be prepared.
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
    /// A pushbuffer could not be encoded.
    #[error(transparent)]
    Encode(#[from] pushbuf::EncodeError),
    /// NVRTC failed.
    #[error(transparent)]
    Nvrtc(#[from] nvrtc::NvrtcError),
    /// The GPU's SM version is not one egpu knows.
    #[error("unsupported GPU: SM version 0x{sm_version:x}")]
    UnsupportedGpu {
        /// GR_GET_INFO SM_VERSION.
        sm_version: u32,
    },
    /// The GPU lacks a class egpu needs.
    #[error("the GPU exposes no usable {what} class")]
    MissingClass {
        /// Which kind.
        what: &'static str,
    },
    /// A cubin for another SM.
    #[error("cubin is for sm_{cubin}, the device is sm_{device}")]
    WrongSm {
        /// Cubin's SM.
        cubin: u32,
        /// Device's SM.
        device: u32,
    },
    /// Unknown program id.
    #[error("no program {program}")]
    NoSuchProgram {
        /// Id.
        program: u64,
    },
    /// Unknown kernel.
    #[error("no kernel {name:?} in the program")]
    NoSuchKernel {
        /// Name.
        name: String,
    },
    /// A kernel's stack frame is larger than a thread's local memory can be.
    #[error(
        "kernel {kernel} needs {bytes} bytes of local memory per thread; the GPU allows {limit}"
    )]
    LocalMemoryTooLarge {
        /// Kernel.
        kernel: String,
        /// Bytes per thread it asks for.
        bytes: u32,
        /// The limit.
        limit: u32,
    },
    /// A signal slot this device never handed out.
    #[error("no signal slot {slot}")]
    NoSuchSignal {
        /// Slot.
        slot: u32,
    },
    /// A buffer this device does not hold (freed already, or made up).
    #[error("buffer at GPU address 0x{va:x} ({size} bytes) is not allocated on this device")]
    ForeignBuffer {
        /// Its address.
        va: u64,
        /// Its size.
        size: u64,
    },
    /// All signal slots are in use.
    #[error("all signal slots are in use")]
    OutOfSignals,
    /// A ring could not provide space.
    #[error("no space in the {what}")]
    OutOfSpace {
        /// Which ring.
        what: &'static str,
    },
    /// A host access outside a buffer (or to device memory).
    #[error("host access {offset}+{len} outside a {size}-byte host-visible buffer")]
    BadRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Buffer size.
        size: u64,
    },
    /// A wait reached its deadline.
    #[error("timed out after {waited:?} waiting for signal slot {slot} to reach {wanted} (last seen {last_seen}); the GPU may be hung or faulted: check dmesg for Xid errors")]
    Timeout {
        /// Slot.
        slot: u32,
        /// Value waited for.
        wanted: u64,
        /// Last value read.
        last_seen: u64,
        /// Time waited.
        waited: std::time::Duration,
    },
    /// No GPU with that index.
    #[error("no NVIDIA GPU nv:{index} ({found} found)")]
    NoSuchGpu {
        /// Index asked for.
        index: u32,
        /// GPUs present.
        found: usize,
    },
}

#[cfg(target_os = "linux")]
impl From<rm::client::RmError> for NvError {
    fn from(e: rm::client::RmError) -> Self {
        match e {
            rm::client::RmError::NoKernelDriver => NvError::NoKernelDriver,
            other => NvError::Rm(other),
        }
    }
}
