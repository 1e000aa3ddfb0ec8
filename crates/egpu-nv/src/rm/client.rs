//! The RM client: ioctls on /dev/nvidiactl, /dev/nvidiaN and /dev/nvidia-uvm.
//!
//! Sequence and parameters from the reference nv-driver.md §1.3/§1.4. Every `unsafe` block is an
//! ioctl or mmap on a file descriptor this client owns, with a `// SAFETY:` note.

use super::escape::*;
use super::structs::*;
use super::{class, ctrl, flags, nv_ioctl_request, uvm, DriverVersion, RmStatus};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use thiserror::Error;

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
fn nv_ioctl<T>(
    fd: &File,
    nr: u32,
    params: &mut T,
    call: &dyn Fn() -> String,
) -> Result<(), RmError> {
    let request = nv_ioctl_request(nr, std::mem::size_of::<T>()).ok_or_else(|| RmError::Ioctl {
        call: call(),
        source: std::io::Error::other("parameter struct too large for the ioctl size field"),
    })?;
    // SAFETY: `params` is a live, exclusively borrowed #[repr(C)] struct whose size is encoded in
    // the request; the driver reads and writes at most that many bytes through the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::c_ulong, params as *mut T) };
    if rc < 0 {
        return Err(RmError::Ioctl { call: call(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Issue escape `nr` and check the RM status the driver wrote into `params`.
fn rm_ioctl<T>(
    fd: &File,
    nr: u32,
    params: &mut T,
    call: &dyn Fn() -> String,
    status: fn(&T) -> u32,
) -> Result<(), RmError> {
    nv_ioctl(fd, nr, params, call)?;
    RmStatus(status(params)).check().map_err(|status| RmError::Status { call: call(), status })
}

/// Issue a UVM ioctl (raw command number) on `fd`.
fn uvm_ioctl<T>(fd: &File, cmd: u64, params: &mut T, call: &str) -> Result<(), RmError> {
    // SAFETY: `params` is the #[repr(C)] parameter struct UVM expects for `cmd` (sizes asserted in
    // structs.rs); UVM copies exactly sizeof(params) in and out.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), cmd as libc::c_ulong, params as *mut T) };
    if rc < 0 {
        return Err(RmError::Ioctl {
            call: call.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// mmap `length` bytes of `fd` (or anonymous memory when `fd` is -1) read-write, at `at` when
/// given. A fixed address never replaces an existing mapping (MAP_FIXED_NOREPLACE): if
/// something else already lives there the call fails with EEXIST instead of clobbering it.
pub fn mmap_at(
    at: Option<u64>,
    length: u64,
    flags: libc::c_int,
    fd: libc::c_int,
) -> Result<*mut u8, std::io::Error> {
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
        nv_ioctl(&ctl, NV_ESC_CHECK_VERSION_STR, &mut query, &|| {
            "CHECK_VERSION_STR(QUERY)".into()
        })?;
        let text: String =
            query.versionString.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
        let version = DriverVersion::parse(&text).ok_or(RmError::Version(text))?;
        let mut client = RmClient { ctl, uvm: None, h_client: 0, version };
        client.h_client = client.alloc(0, 0, class::NV01_ROOT_CLIENT, None::<&mut ()>)?;
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

    /// NV_ESC_RM_ALLOC: allocate `class` under `parent` (0 ⇒ RM picks the handle).
    pub fn alloc<P>(
        &self,
        parent: u32,
        new: u32,
        hclass: u32,
        params: Option<&mut P>,
    ) -> Result<u32, RmError> {
        let (ptr, size) = match params {
            Some(p) => (p as *mut P as u64, std::mem::size_of::<P>() as u32),
            None => (0, 0),
        };
        let mut p = NVOS21_PARAMETERS {
            hRoot: self.h_client,
            hObjectParent: parent,
            hObjectNew: new,
            hClass: hclass,
            pAllocParms: ptr,
            paramsSize: size,
            status: 0,
        };
        let call = || format!("RM_ALLOC {}", class_name(hclass));
        rm_ioctl(&self.ctl, NV_ESC_RM_ALLOC, &mut p, &call, |p| p.status)?;
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
        rm_ioctl(&self.ctl, NV_ESC_RM_FREE, &mut p, &call, |p| p.status)
    }

    /// NV_ESC_RM_CONTROL with a parameter struct whose size is the command's exported size.
    pub fn control<P>(
        &self,
        object: u32,
        cmd: u32,
        params: &mut P,
        name: &str,
    ) -> Result<(), RmError> {
        self.control_sized(
            object,
            cmd,
            params as *mut P as u64,
            std::mem::size_of::<P>() as u32,
            name,
        )
    }

    /// NV_ESC_RM_CONTROL with an explicit size (branch-dependent structs).
    pub fn control_sized(
        &self,
        object: u32,
        cmd: u32,
        params: u64,
        size: u32,
        name: &str,
    ) -> Result<(), RmError> {
        let mut p = NVOS54_PARAMETERS {
            hClient: self.h_client,
            hObject: object,
            cmd,
            flags: 0,
            params,
            paramsSize: size,
            status: 0,
        };
        let call = || format!("RM_CONTROL {name}");
        rm_ioctl(&self.ctl, NV_ESC_RM_CONTROL, &mut p, &call, |p| p.status)
    }

    /// NV_ESC_CARD_INFO: the GPUs nvidia.ko has probed (valid entries only).
    pub fn card_info(&self) -> Result<Vec<nv_ioctl_card_info_t>, RmError> {
        let mut cards = [nv_ioctl_card_info_t::default(); 64];
        nv_ioctl(&self.ctl, NV_ESC_CARD_INFO, &mut cards, &|| "CARD_INFO".into())?;
        Ok(cards.into_iter().filter(|c| c.valid != 0).collect())
    }

    /// Open `/dev/nvidia<minor>` and register it with this client's control fd.
    pub fn open_gpu_fd(&self, minor: u32) -> Result<File, RmError> {
        let path = format!("/dev/nvidia{minor}");
        let fd = open_node(&path)?;
        let mut p = nv_ioctl_register_fd_t { ctl_fd: self.ctl.as_raw_fd() };
        nv_ioctl(&fd, NV_ESC_REGISTER_FD, &mut p, &|| format!("REGISTER_FD {path}"))?;
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
        uvm_ioctl(&uvm_fd, uvm::UVM_INITIALIZE, &mut init, "UVM_INITIALIZE")?;
        check_uvm("UVM_INITIALIZE", init.rmStatus)?;
        let mut mm = UVM_MM_INITIALIZE_PARAMS { uvmFd: uvm_fd.as_raw_fd(), rmStatus: 0 };
        // Errors tolerated, as CUDA does (reference §1.3 step 4).
        let _ = uvm_ioctl(&uvm_fd2, uvm::UVM_MM_INITIALIZE, &mut mm, "UVM_MM_INITIALIZE");
        self.uvm = Some((uvm_fd, uvm_fd2));
        Ok(())
    }

    /// Issue a UVM ioctl and check its rmStatus (read by `status` from the params afterwards).
    pub fn uvm<T>(
        &self,
        cmd: u64,
        params: &mut T,
        call: &str,
        status: impl Fn(&T) -> u32,
    ) -> Result<(), RmError> {
        let (fd, _) = self.uvm.as_ref().ok_or_else(|| RmError::Ioctl {
            call: call.to_string(),
            source: std::io::Error::other("UVM not initialised"),
        })?;
        uvm_ioctl(fd, cmd, params, call)?;
        check_uvm(call, status(params))
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
        rm_ioctl(&self.ctl, NV_ESC_RM_MAP_MEMORY, &mut p, &call, |p| p.params.status)?;
        // nvidia.ko requires offset 0 and the full mapped size, one mapping per fd. The VMA keeps
        // the file alive; `fd` may close afterwards.
        mmap_at(at, length, libc::MAP_SHARED, fd.as_raw_fd())
            .map_err(|source| RmError::Mmap { call: call(), source })
    }

    /// NV_ESC_RM_ALLOC_MEMORY of pinned host memory at `address` (OS descriptor) on the GPU fd.
    pub fn alloc_os_descriptor(
        &self,
        gpu_fd: &File,
        h_device: u32,
        h_new: u32,
        address: u64,
        size: u64,
    ) -> Result<u32, RmError> {
        let mut p = nv_ioctl_nvos02_parameters_with_fd {
            params: NVOS02_PARAMETERS {
                hRoot: self.h_client,
                hObjectParent: h_device,
                hObjectNew: h_new,
                hClass: class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR,
                flags: flags::OS_DESCRIPTOR_FLAGS,
                pMemory: address,
                limit: size - 1,
                ..Default::default()
            },
            fd: -1,
            _pad: 0,
        };
        let call = || "RM_ALLOC_MEMORY NV01_MEMORY_SYSTEM_OS_DESCRIPTOR".to_string();
        rm_ioctl(gpu_fd, NV_ESC_RM_ALLOC_MEMORY, &mut p, &call, |p| p.params.status)?;
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
        let h_device = self.alloc(self.h_client, 0, class::NV01_DEVICE_0, Some(&mut device))?;
        let mut subdevice = NV2080_ALLOC_PARAMETERS::default();
        match self.alloc(h_device, 0, class::NV20_SUBDEVICE_0, Some(&mut subdevice)) {
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
        self.control(
            h_subdevice,
            ctrl::NV2080_CTRL_CMD_GR_GET_INFO,
            &mut p,
            "NV2080_CTRL_CMD_GR_GET_INFO",
        )?;
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
        self.control(
            h_subdevice,
            ctrl::NV2080_CTRL_CMD_FB_GET_INFO,
            &mut p,
            "NV2080_CTRL_CMD_FB_GET_INFO",
        )?;
        Ok(entries.map(|e| e.data))
    }

    /// The classes the device offers (NV0080_CTRL_CMD_GPU_GET_CLASSLIST, two-call pointer
    /// form: count, then list).
    pub fn class_list(&self, h_device: u32) -> Result<Vec<u32>, RmError> {
        let name = "NV0080_CTRL_CMD_GPU_GET_CLASSLIST";
        let mut p = NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS::default();
        self.control(h_device, ctrl::NV0080_CTRL_CMD_GPU_GET_CLASSLIST, &mut p, name)?;
        let mut list = vec![0u32; p.numClasses as usize];
        p.classList = list.as_mut_ptr() as u64;
        self.control(h_device, ctrl::NV0080_CTRL_CMD_GPU_GET_CLASSLIST, &mut p, name)?;
        list.truncate(p.numClasses as usize);
        Ok(list)
    }

    /// Query a GPU's device instance from its gpu_id (CARD_INFO).
    pub fn device_instance(&self, gpu_id: u32) -> Result<u32, RmError> {
        let mut p = NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS { gpuId: gpu_id, ..Default::default() };
        self.control(
            self.h_client,
            ctrl::NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2,
            &mut p,
            "NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2",
        )?;
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
