//! The RM client: ioctls on /dev/nvidiactl, /dev/nvidiaN and /dev/nvidia-uvm.
//!
//! Sequence and parameters from the reference nv-driver.md §1.3/§1.4. Every `unsafe` block is an
//! ioctl or mmap on a file descriptor this client owns, with a `// SAFETY:` note.
//!
//! The kernel writes into every parameter struct it is handed, and follows some of the
//! addresses inside them. The safe calls therefore take only structs whose class, command or
//! UVM call is pinned by a trait in [`super::params`]; calls with a raw address, or with a
//! struct that holds one, are `unsafe fn`s whose callers vouch for it.

use super::escape::*;
use super::params::{RmAllocParams, RmControlParams, UvmParams};
use super::structs::*;
use super::{class, ctrl, flags, nv_ioctl_request, DriverVersion, RmStatus};
use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use thiserror::Error;
use zerocopy::{FromBytes, IntoBytes};

/// Path of the control node.
pub const NVIDIACTL: &str = "/dev/nvidiactl";
/// Path of the UVM node.
pub const NVIDIA_UVM: &str = "/dev/nvidia-uvm";

/// Errors of the RM layer; each names the call that failed.
#[derive(Debug, Error)]
pub enum RmError {
    /// /dev/nvidiactl does not exist: NVIDIA's kernel module is not loaded.
    #[error("no NVIDIA kernel driver: {NVIDIACTL} does not exist (load nvidia.ko, or use a USB/PCIe path)")]
    NoKernelDriver,
    /// A device node could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// Node path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The ioctl itself failed (errno), e.g. a size the driver does not accept.
    #[error("{call}: ioctl failed: {source}")]
    Ioctl {
        /// The RM call, e.g. "RM_ALLOC HOPPER_CHANNEL_GPFIFO_A".
        call: String,
        /// OS error.
        source: std::io::Error,
    },
    /// RM (or UVM) answered with a non-OK status.
    #[error("{call}: {status}")]
    Status {
        /// The RM call.
        call: String,
        /// The status.
        status: RmStatus,
    },
    /// mmap of an RM mapping failed.
    #[error("{call}: mmap failed: {source}")]
    Mmap {
        /// What was mapped.
        call: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The driver reported a version string we cannot parse.
    #[error("driver version {0:?} is not a number like 580.105.08")]
    Version(String),
}

fn open_node(path: &str) -> Result<File, RmError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| RmError::Open { path: path.to_string(), source })
}

/// Issue an nvidia.ko escape `nr` with `params` on `fd`.
///
/// # Safety
///
/// Every address stored in `params` must be valid for what escape `nr` does with it for the
/// length of the call (RM_ALLOC's `pAllocParms`, RM_CONTROL's `params`: readable and writable
/// for the size RM copies) and, for RM_ALLOC_MEMORY's `pMemory`, for as long as the memory
/// object lives (see [`RmClient::alloc_os_descriptor`]). The struct itself is safe to hand
/// over: nvidia.ko checks the size encoded in the request and copies exactly that many bytes,
/// and any bytes are a valid `T`.
unsafe fn nv_ioctl<T: IntoBytes + FromBytes>(
    fd: &File,
    nr: u32,
    params: &mut T,
    call: &dyn Fn() -> String,
) -> Result<(), RmError> {
    let request = nv_ioctl_request(nr, std::mem::size_of::<T>()).ok_or_else(|| RmError::Ioctl {
        call: call(),
        source: std::io::Error::other("parameter struct too large for the ioctl size field"),
    })?;
    // SAFETY: `params` is a live, exclusively borrowed struct without padding whose size is
    // encoded in the request; the driver reads and writes at most that many bytes through the
    // pointer and any bytes it writes are a valid `T`. Addresses inside it: the caller's
    // contract.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::c_ulong, params as *mut T) };
    if rc < 0 {
        return Err(RmError::Ioctl { call: call(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Issue escape `nr` and check the RM status the driver wrote into `params`.
///
/// # Safety
///
/// As for [`nv_ioctl`].
unsafe fn rm_ioctl<T: IntoBytes + FromBytes>(
    fd: &File,
    nr: u32,
    params: &mut T,
    call: &dyn Fn() -> String,
    status: fn(&T) -> u32,
) -> Result<(), RmError> {
    // SAFETY: the caller's contract is nv_ioctl's.
    unsafe { nv_ioctl(fd, nr, params, call) }?;
    RmStatus(status(params)).check().map_err(|status| RmError::Status { call: call(), status })
}

/// Issue UVM ioctl `P::CMD` on `fd`, after checking that `P` has the layout of the running
/// driver's struct (UVM copies the size of its own struct, whatever ours is).
fn uvm_ioctl<P: UvmParams>(
    fd: &File,
    version: DriverVersion,
    params: &mut P,
) -> Result<(), RmError> {
    let (ours, drivers) = (std::mem::size_of::<P>(), P::driver_size(version));
    if ours != drivers {
        return Err(RmError::Ioctl {
            call: P::NAME.to_string(),
            source: std::io::Error::other(format!(
                "parameter struct is {ours} bytes, driver {version} expects {drivers}"
            )),
        });
    }
    // SAFETY: `params` is a live, exclusively borrowed struct without padding, of the size UVM
    // copies in and out for `P::CMD` on this driver (checked above), holding no address UVM
    // follows (the `UvmParams` contract); any bytes UVM writes are a valid `P`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), P::CMD as libc::c_ulong, params as *mut P) };
    if rc < 0 {
        return Err(RmError::Ioctl {
            call: P::NAME.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// mmap `length` bytes of `fd` (or anonymous memory when `fd` is -1) read-write, at `at` when
/// given. A fixed address never replaces an existing mapping (MAP_FIXED_NOREPLACE): if
/// something else already lives there the call fails with EEXIST instead of clobbering it.
/// `flags` must not contain `MAP_FIXED`, which would replace one (refused with InvalidInput).
pub fn mmap_at(
    at: Option<u64>,
    length: u64,
    flags: libc::c_int,
    fd: libc::c_int,
) -> Result<*mut u8, std::io::Error> {
    if flags & libc::MAP_FIXED != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "MAP_FIXED would replace existing mappings; pass the address as `at`",
        ));
    }
    let fixed = if at.is_some() { libc::MAP_FIXED_NOREPLACE } else { 0 };
    // SAFETY: a new mapping; with an address it is only placed where nothing is mapped, so no
    // existing memory of this process changes.
    let ptr = unsafe {
        libc::mmap(
            at.unwrap_or(0) as *mut libc::c_void,
            length as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            flags | fixed,
            fd,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    if let Some(at) = at.filter(|&at| at != ptr as u64) {
        // Kernels before 4.17 treat the flag as a hint and may place the mapping elsewhere.
        // SAFETY: unmapping exactly the mapping just made.
        unsafe { libc::munmap(ptr, length as usize) };
        return Err(std::io::Error::other(format!(
            "the kernel placed the mapping at {ptr:p}, not at 0x{at:x} (Linux 4.17 or newer needed)"
        )));
    }
    Ok(ptr.cast())
}

fn check_uvm(call: &str, status: u32) -> Result<(), RmError> {
    RmStatus(status).check().map_err(|status| RmError::Status { call: call.to_string(), status })
}

/// Name of an RM class for error messages.
pub fn class_name(c: u32) -> String {
    let name = match c {
        class::NV01_ROOT_CLIENT => "NV01_ROOT_CLIENT",
        class::NV01_DEVICE_0 => "NV01_DEVICE_0",
        class::NV20_SUBDEVICE_0 => "NV20_SUBDEVICE_0",
        class::NV01_MEMORY_LOCAL_USER => "NV01_MEMORY_LOCAL_USER",
        class::NV01_MEMORY_SYSTEM => "NV01_MEMORY_SYSTEM",
        class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR => "NV01_MEMORY_SYSTEM_OS_DESCRIPTOR",
        class::FERMI_VASPACE_A => "FERMI_VASPACE_A",
        class::KEPLER_CHANNEL_GROUP_A => "KEPLER_CHANNEL_GROUP_A",
        class::FERMI_CONTEXT_SHARE_A => "FERMI_CONTEXT_SHARE_A",
        class::HOPPER_USERMODE_A => "HOPPER_USERMODE_A",
        class::AMPERE_USERMODE_A => "AMPERE_USERMODE_A",
        class::TURING_USERMODE_A => "TURING_USERMODE_A",
        class::BLACKWELL_USERMODE_A => "BLACKWELL_USERMODE_A",
        class::AMPERE_CHANNEL_GPFIFO_A => "AMPERE_CHANNEL_GPFIFO_A",
        class::HOPPER_CHANNEL_GPFIFO_A => "HOPPER_CHANNEL_GPFIFO_A",
        class::BLACKWELL_CHANNEL_GPFIFO_A => "BLACKWELL_CHANNEL_GPFIFO_A",
        class::BLACKWELL_CHANNEL_GPFIFO_B => "BLACKWELL_CHANNEL_GPFIFO_B",
        class::AMPERE_COMPUTE_A => "AMPERE_COMPUTE_A",
        class::AMPERE_COMPUTE_B => "AMPERE_COMPUTE_B",
        class::ADA_COMPUTE_A => "ADA_COMPUTE_A",
        class::HOPPER_COMPUTE_A => "HOPPER_COMPUTE_A",
        class::BLACKWELL_COMPUTE_A => "BLACKWELL_COMPUTE_A",
        class::BLACKWELL_COMPUTE_B => "BLACKWELL_COMPUTE_B",
        class::AMPERE_DMA_COPY_A => "AMPERE_DMA_COPY_A",
        class::AMPERE_DMA_COPY_B => "AMPERE_DMA_COPY_B",
        class::HOPPER_DMA_COPY_A => "HOPPER_DMA_COPY_A",
        class::BLACKWELL_DMA_COPY_A => "BLACKWELL_DMA_COPY_A",
        class::BLACKWELL_DMA_COPY_B => "BLACKWELL_DMA_COPY_B",
        _ => return format!("class 0x{c:x}"),
    };
    name.to_string()
}

/// An RM client: the control fd, UVM fds, the root client handle and the driver's layout branch.
#[derive(Debug)]
pub struct RmClient {
    ctl: File,
    uvm: Option<(File, File)>,
    h_client: u32,
    version: DriverVersion,
}

impl RmClient {
    /// Open /dev/nvidiactl, learn the driver version (CHECK_VERSION_STR in QUERY mode, which
    /// sandboxes allow, reference §1.7) and allocate a root client.
    pub fn open() -> Result<RmClient, RmError> {
        if !std::path::Path::new(NVIDIACTL).exists() {
            return Err(RmError::NoKernelDriver);
        }
        let ctl = open_node(NVIDIACTL)?;
        let mut query = nv_ioctl_rm_api_version_t { cmd: u32::from(b'2'), ..Default::default() };
        // SAFETY: the version query holds no address.
        unsafe {
            nv_ioctl(&ctl, NV_ESC_CHECK_VERSION_STR, &mut query, &|| {
                "CHECK_VERSION_STR(QUERY)".into()
            })
        }?;
        let text: String =
            query.versionString.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
        let version = DriverVersion::parse(&text).ok_or(RmError::Version(text))?;
        let mut client = RmClient { ctl, uvm: None, h_client: 0, version };
        client.h_client = client.alloc_without_params(0, 0, class::NV01_ROOT_CLIENT)?;
        Ok(client)
    }

    /// The driver's version.
    pub fn version(&self) -> DriverVersion {
        self.version
    }

    /// Root client handle.
    pub fn h_client(&self) -> u32 {
        self.h_client
    }

    /// The control fd.
    pub fn ctl(&self) -> &File {
        &self.ctl
    }

    /// NV_ESC_RM_ALLOC: allocate `hclass` under `parent` (0 ⇒ RM picks the handle) with its
    /// parameter struct; a class `P` is not made for is refused before the kernel sees it.
    pub fn alloc<P: RmAllocParams>(
        &self,
        parent: u32,
        new: u32,
        hclass: u32,
        params: &mut P,
    ) -> Result<u32, RmError> {
        let refused = if !P::accepts(hclass) {
            Some(format!("{} is not this class's parameter struct", std::any::type_name::<P>()))
        } else if !P::fits(self.version) {
            Some(format!(
                "driver {} uses a larger {} than this crate knows",
                self.version,
                std::any::type_name::<P>()
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            return Err(RmError::Ioctl {
                call: format!("RM_ALLOC {}", class_name(hclass)),
                source: std::io::Error::other(why),
            });
        }
        let size = std::mem::size_of::<P>() as u32;
        // SAFETY: `params` is live and exclusively borrowed for the call, and RM copies at most
        // its size in and out for this class on this driver, following no address in it
        // (`RmAllocParams` contract; class and driver checked above).
        unsafe { self.alloc_raw(parent, new, hclass, (params as *mut P).cast(), size) }
    }

    /// NV_ESC_RM_ALLOC of a class that takes no parameters (`pAllocParms` null).
    pub fn alloc_without_params(&self, parent: u32, new: u32, hclass: u32) -> Result<u32, RmError> {
        // SAFETY: a null parameter pointer: RM reads nothing from the caller (a class that
        // needs parameters fails the copy with an error).
        unsafe { self.alloc_raw(parent, new, hclass, std::ptr::null_mut(), 0) }
    }

    /// NV_ESC_RM_ALLOC with a raw parameter pointer.
    ///
    /// # Safety
    ///
    /// `params` is null, or valid for reads and writes of the class-defined parameter size of
    /// `hclass` (RM copies that much in and back out, ignoring `size`) for the length of the
    /// call, and every address inside the parameters is valid for what RM does with it.
    unsafe fn alloc_raw(
        &self,
        parent: u32,
        new: u32,
        hclass: u32,
        params: *mut c_void,
        size: u32,
    ) -> Result<u32, RmError> {
        let mut p = NVOS21_PARAMETERS {
            hRoot: self.h_client,
            hObjectParent: parent,
            hObjectNew: new,
            hClass: hclass,
            pAllocParms: params as u64,
            paramsSize: size,
            status: 0,
        };
        let call = || format!("RM_ALLOC {}", class_name(hclass));
        // SAFETY: `pAllocParms` is the caller's `params`, valid as this function's contract says.
        unsafe { rm_ioctl(&self.ctl, NV_ESC_RM_ALLOC, &mut p, &call, |p| p.status) }?;
        Ok(p.hObjectNew)
    }

    /// NV_ESC_RM_FREE.
    pub fn free(&self, parent: u32, object: u32) -> Result<(), RmError> {
        let mut p = NVOS00_PARAMETERS {
            hRoot: self.h_client,
            hObjectParent: parent,
            hObjectOld: object,
            status: 0,
        };
        let call = || format!("RM_FREE 0x{object:x}");
        // SAFETY: RM_FREE's parameters hold handles only.
        unsafe { rm_ioctl(&self.ctl, NV_ESC_RM_FREE, &mut p, &call, |p| p.status) }
    }

    /// NV_ESC_RM_CONTROL `P::CMD` on `object`, with the `paramsSize` this driver expects.
    pub fn control<P: RmControlParams>(&self, object: u32, params: &mut P) -> Result<(), RmError> {
        let size = P::params_size(self.version);
        if size > std::mem::size_of::<P>() {
            return Err(RmError::Ioctl {
                call: format!("RM_CONTROL {}", P::NAME),
                source: std::io::Error::other(format!(
                    "driver {} expects {size} parameter bytes, the struct has {}",
                    self.version,
                    std::mem::size_of::<P>()
                )),
            });
        }
        // SAFETY: `params` is live and exclusively borrowed for the call and at least `size`
        // bytes long (checked above); RM copies `size` bytes in and out for `P::CMD` and
        // follows no address in them (`RmControlParams` contract).
        unsafe {
            self.control_sized(object, P::CMD, (params as *mut P).cast(), size as u32, P::NAME)
        }
    }

    /// NV_ESC_RM_CONTROL `cmd` with `size` bytes of parameters at `params`.
    ///
    /// # Safety
    ///
    /// `params` is valid for reads and writes of `size` bytes for the length of the call (RM
    /// copies `size` bytes in and back out), and every address inside the parameters that
    /// command `cmd` follows is valid for what it does with it (e.g. a list RM fills must be
    /// writable for as many entries as the parameters announce).
    pub unsafe fn control_sized(
        &self,
        object: u32,
        cmd: u32,
        params: *mut c_void,
        size: u32,
        name: &str,
    ) -> Result<(), RmError> {
        let mut p = NVOS54_PARAMETERS {
            hClient: self.h_client,
            hObject: object,
            cmd,
            flags: 0,
            params: params as u64,
            paramsSize: size,
            status: 0,
        };
        let call = || format!("RM_CONTROL {name}");
        // SAFETY: `params` is the caller's, valid as this function's contract says.
        unsafe { rm_ioctl(&self.ctl, NV_ESC_RM_CONTROL, &mut p, &call, |p| p.status) }
    }

    /// NV_ESC_CARD_INFO: the GPUs nvidia.ko has probed (valid entries only).
    pub fn card_info(&self) -> Result<Vec<nv_ioctl_card_info_t>, RmError> {
        let mut cards = [nv_ioctl_card_info_t::default(); 64];
        // SAFETY: the card table holds no address RM follows (`reg_address`/`fb_address` are
        // bus addresses RM reports).
        unsafe { nv_ioctl(&self.ctl, NV_ESC_CARD_INFO, &mut cards, &|| "CARD_INFO".into()) }?;
        Ok(cards.into_iter().filter(|c| c.valid != 0).collect())
    }

    /// Open `/dev/nvidia<minor>` and register it with this client's control fd.
    pub fn open_gpu_fd(&self, minor: u32) -> Result<File, RmError> {
        let path = format!("/dev/nvidia{minor}");
        let fd = open_node(&path)?;
        let mut p = nv_ioctl_register_fd_t { ctl_fd: self.ctl.as_raw_fd() };
        // SAFETY: REGISTER_FD's parameter is a file descriptor, no address.
        unsafe { nv_ioctl(&fd, NV_ESC_REGISTER_FD, &mut p, &|| format!("REGISTER_FD {path}")) }?;
        Ok(fd)
    }

    /// Open /dev/nvidia-uvm twice, UVM_INITIALIZE and UVM_MM_INITIALIZE (§1.3 step 4).
    pub fn init_uvm(&mut self) -> Result<(), RmError> {
        if self.uvm.is_some() {
            return Ok(());
        }
        let uvm_fd = open_node(NVIDIA_UVM)?;
        let uvm_fd2 = open_node(NVIDIA_UVM)?;
        let mut init = UVM_INITIALIZE_PARAMS::default();
        uvm_ioctl(&uvm_fd, self.version, &mut init)?;
        check_uvm("UVM_INITIALIZE", init.rmStatus)?;
        let mut mm = UVM_MM_INITIALIZE_PARAMS { uvmFd: uvm_fd.as_raw_fd(), rmStatus: 0 };
        // Errors tolerated, as CUDA does (reference §1.3 step 4).
        let _ = uvm_ioctl(&uvm_fd2, self.version, &mut mm);
        self.uvm = Some((uvm_fd, uvm_fd2));
        Ok(())
    }

    /// Issue UVM ioctl `P::CMD` and check the rmStatus UVM wrote back. A struct of another
    /// driver release's layout is refused before the kernel sees it.
    pub fn uvm<P: UvmParams>(&self, params: &mut P) -> Result<(), RmError> {
        let (fd, _) = self.uvm.as_ref().ok_or_else(|| RmError::Ioctl {
            call: P::NAME.to_string(),
            source: std::io::Error::other("UVM not initialised"),
        })?;
        uvm_ioctl(fd, self.version, params)?;
        check_uvm(P::NAME, params.rm_status())
    }

    /// Map RM memory `h_memory` for the CPU: a fresh GPU fd, RM_MAP_MEMORY, mmap (§1.4).
    /// `at` asks for a fixed CPU address (never replacing an existing mapping), else the kernel
    /// chooses. `nvos33_flags`: 0 read-write; 2 (`NVOS33_FLAGS_ACCESS_WRITE_ONLY`) suits the
    /// usermode doorbell page, which is only written (tinygrad has used both).
    pub fn map_to_cpu(
        &self,
        minor: u32,
        h_device: u32,
        h_memory: u32,
        length: u64,
        at: Option<u64>,
        nvos33_flags: u32,
    ) -> Result<*mut u8, RmError> {
        let fd = self.open_gpu_fd(minor)?;
        let mut p = nv_ioctl_nvos33_parameters_with_fd {
            params: NVOS33_PARAMETERS {
                hClient: self.h_client,
                hDevice: h_device,
                hMemory: h_memory,
                length,
                flags: nvos33_flags,
                ..Default::default()
            },
            fd: fd.as_raw_fd(),
            _pad: 0,
        };
        let call = || format!("RM_MAP_MEMORY 0x{h_memory:x}");
        // SAFETY: RM_MAP_MEMORY's parameters hold handles, a length and a file descriptor;
        // `pLinearAddress` is only written back (a cookie for mmap), not followed.
        unsafe { rm_ioctl(&self.ctl, NV_ESC_RM_MAP_MEMORY, &mut p, &call, |p| p.params.status) }?;
        // nvidia.ko requires offset 0 and the full mapped size, one mapping per fd. The VMA keeps
        // the file alive; `fd` may close afterwards.
        mmap_at(at, length, libc::MAP_SHARED, fd.as_raw_fd())
            .map_err(|source| RmError::Mmap { call: call(), source })
    }

    /// NV_ESC_RM_ALLOC_MEMORY of pinned host memory at `address` (OS descriptor) on the GPU fd.
    ///
    /// # Safety
    ///
    /// `address..address + size` is memory this process has mapped, and keeps mapped, for as
    /// long as the memory object `h_new` lives: RM pins those pages, and the GPU may read and
    /// write them through any GPU mapping of the object. No Rust reference may cover them while
    /// the GPU can write them; the CPU reaches them through raw pointers only.
    pub unsafe fn alloc_os_descriptor(
        &self,
        gpu_fd: &File,
        h_device: u32,
        h_new: u32,
        address: u64,
        size: u64,
    ) -> Result<u32, RmError> {
        let call = || "RM_ALLOC_MEMORY NV01_MEMORY_SYSTEM_OS_DESCRIPTOR".to_string();
        let Some(limit) = size.checked_sub(1) else {
            return Err(RmError::Ioctl {
                call: call(),
                source: std::io::Error::other("an OS descriptor of 0 bytes"),
            });
        };
        let mut p = nv_ioctl_nvos02_parameters_with_fd {
            params: NVOS02_PARAMETERS {
                hRoot: self.h_client,
                hObjectParent: h_device,
                hObjectNew: h_new,
                hClass: class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR,
                flags: flags::OS_DESCRIPTOR_FLAGS,
                pMemory: address,
                limit,
                ..Default::default()
            },
            fd: -1,
            _pad: 0,
        };
        // SAFETY: `pMemory` names the caller's range, valid as this function's contract says.
        unsafe { rm_ioctl(gpu_fd, NV_ESC_RM_ALLOC_MEMORY, &mut p, &call, |p| p.params.status) }?;
        Ok(p.params.hObjectNew)
    }

    /// Allocate the device and subdevice objects of the GPU with `gpu_id` (from CARD_INFO);
    /// returns (device, subdevice) handles.
    pub fn open_device(&self, gpu_id: u32) -> Result<(u32, u32), RmError> {
        let mut device = NV0080_ALLOC_PARAMETERS {
            deviceId: self.device_instance(gpu_id)?,
            hClientShare: self.h_client,
            ..Default::default()
        };
        let h_device = self.alloc(self.h_client, 0, class::NV01_DEVICE_0, &mut device)?;
        let mut subdevice = NV2080_ALLOC_PARAMETERS::default();
        match self.alloc(h_device, 0, class::NV20_SUBDEVICE_0, &mut subdevice) {
            Ok(h_subdevice) => Ok((h_device, h_subdevice)),
            Err(e) => {
                let _ = self.free(self.h_client, h_device);
                Err(e)
            }
        }
    }

    /// NV2080_CTRL_CMD_GR_GET_INFO for `indices` (`ctrl::NV2080_CTRL_GR_INFO_INDEX_*`).
    pub fn gr_info<const N: usize>(
        &self,
        h_subdevice: u32,
        indices: [u32; N],
    ) -> Result<[u32; N], RmError> {
        let mut entries = indices.map(|index| NV2080_CTRL_GR_INFO { index, data: 0 });
        let mut p = NV2080_CTRL_GR_GET_INFO_PARAMS {
            grInfoListSize: N as u32,
            grInfoList: entries.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: `p` is live for the call and its full size is passed; `grInfoList` points at
        // `entries`, live and exclusively ours, exactly `grInfoListSize` entries of the
        // {index, data} pairs RM fills.
        unsafe {
            self.control_sized(
                h_subdevice,
                ctrl::NV2080_CTRL_CMD_GR_GET_INFO,
                (&mut p as *mut NV2080_CTRL_GR_GET_INFO_PARAMS).cast(),
                std::mem::size_of_val(&p) as u32,
                "NV2080_CTRL_CMD_GR_GET_INFO",
            )
        }?;
        Ok(entries.map(|e| e.data))
    }

    /// NV2080_CTRL_CMD_FB_GET_INFO for `indices` (`ctrl::NV2080_CTRL_FB_INFO_INDEX_*`).
    pub fn fb_info<const N: usize>(
        &self,
        h_subdevice: u32,
        indices: [u32; N],
    ) -> Result<[u32; N], RmError> {
        let mut entries = indices.map(|index| NV2080_CTRL_FB_INFO { index, data: 0 });
        let mut p = NV2080_CTRL_FB_GET_INFO_PARAMS {
            fbInfoListSize: N as u32,
            fbInfoList: entries.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: `p` is live for the call and its full size is passed; `fbInfoList` points at
        // `entries`, live and exclusively ours, exactly `fbInfoListSize` entries of the
        // {index, data} pairs RM fills.
        unsafe {
            self.control_sized(
                h_subdevice,
                ctrl::NV2080_CTRL_CMD_FB_GET_INFO,
                (&mut p as *mut NV2080_CTRL_FB_GET_INFO_PARAMS).cast(),
                std::mem::size_of_val(&p) as u32,
                "NV2080_CTRL_CMD_FB_GET_INFO",
            )
        }?;
        Ok(entries.map(|e| e.data))
    }

    /// The classes the device offers (NV0080_CTRL_CMD_GPU_GET_CLASSLIST, two-call pointer
    /// form: count, then list).
    pub fn class_list(&self, h_device: u32) -> Result<Vec<u32>, RmError> {
        let name = "NV0080_CTRL_CMD_GPU_GET_CLASSLIST";
        let cmd = ctrl::NV0080_CTRL_CMD_GPU_GET_CLASSLIST;
        let mut p = NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS::default();
        let size = std::mem::size_of_val(&p) as u32;
        let params: *mut NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS = &mut p;
        // SAFETY: `p` is live for the call and its full size is passed; `classList` is null, so
        // RM only reports the count.
        unsafe { self.control_sized(h_device, cmd, params.cast(), size, name) }?;
        let mut list = vec![0u32; p.numClasses as usize];
        p.classList = list.as_mut_ptr() as u64;
        let params: *mut NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS = &mut p;
        // SAFETY: as above; `classList` points at `list`, live and exclusively ours, exactly
        // `numClasses` u32 entries long, which is as many as RM writes.
        unsafe { self.control_sized(h_device, cmd, params.cast(), size, name) }?;
        list.truncate(p.numClasses as usize);
        Ok(list)
    }

    /// Query a GPU's device instance from its gpu_id (CARD_INFO).
    pub fn device_instance(&self, gpu_id: u32) -> Result<u32, RmError> {
        let mut p = NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS { gpuId: gpu_id, ..Default::default() };
        self.control(self.h_client, &mut p)?;
        Ok(p.deviceInstance)
    }
}

impl Drop for RmClient {
    fn drop(&mut self) {
        if self.h_client != 0 {
            // Freeing the root client frees every object under it.
            let _ = self.free(0, self.h_client);
        }
    }
}
