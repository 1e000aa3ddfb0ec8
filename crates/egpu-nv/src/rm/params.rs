//! Which parameter struct goes with which RM class, control command and UVM command, and what
//! the kernel does with it. These contracts are what make the RM client's typed calls safe: the
//! kernel writes through the struct we hand it, so a call is only sound when the struct is at
//! least as large as what the kernel copies back and holds no address the kernel would follow.
//!
//! Every struct here is [`IntoBytes`] + [`FromBytes`] (derived in `structs.rs`): it has no
//! padding and any bytes the kernel writes are a valid value. Structs that carry a pointer the
//! kernel follows (the GR/FB info lists, the class list, `pAllocParms`, `pMemory`) get no
//! impl: they go through the client's `unsafe` calls, whose callers vouch for the pointer.

use super::structs::*;
use super::{class, ctrl, uvm, DriverVersion};
use std::mem::size_of;
use zerocopy::{FromBytes, IntoBytes};

/// Allocation parameters (`pAllocParms` of NV_ESC_RM_ALLOC) of the classes [`accepts`] admits.
///
/// [`accepts`]: RmAllocParams::accepts
///
/// # Safety
///
/// For every class `accepts` admits, on every driver version for which `fits` holds, RM
/// copies at most `size_of::<Self>()` bytes from the struct and back (it copies the
/// class-defined size and ignores `paramsSize`, reference nv-driver.md §1.2), and follows no
/// field of it as a pointer into the caller's memory.
pub unsafe trait RmAllocParams: IntoBytes + FromBytes + Sized {
    /// Whether `class` takes this struct as its allocation parameters.
    fn accepts(class: u32) -> bool;

    /// Whether the driver's class-defined size on `version` fits in this struct; a release
    /// known to have grown it is refused before the kernel sees it.
    fn fits(version: DriverVersion) -> bool {
        let _ = version;
        true
    }
}

/// Parameters of one RM control command (`params` of NV_ESC_RM_CONTROL).
///
/// # Safety
///
/// `params_size(v) <= size_of::<Self>()` for every version `v`, and RM's handler for `CMD`
/// reads and writes only the first `params_size(v)` bytes of the struct (RM copies
/// `paramsSize` bytes in and out, reference §1.2) and follows no field of it as a pointer into
/// the caller's memory.
pub unsafe trait RmControlParams: IntoBytes + FromBytes + Sized {
    /// The control command.
    const CMD: u32;
    /// Its name for error messages.
    const NAME: &'static str;

    /// `paramsSize` on driver `version` (the struct's size unless the layout changed).
    fn params_size(version: DriverVersion) -> usize {
        let _ = version;
        size_of::<Self>()
    }
}

/// Parameters of one UVM ioctl (a raw command number on /dev/nvidia-uvm).
///
/// # Safety
///
/// On a driver `v` with `driver_size(v) == size_of::<Self>()`, UVM's handler for `CMD` copies
/// exactly `size_of::<Self>()` bytes in and back out (UVM copies the size of its own struct:
/// the command number carries none, reference §1.1) and follows no field of it as a pointer
/// into the caller's memory (`base`/`length` fields name GPU VA ranges UVM manages, not
/// buffers it copies to).
pub unsafe trait UvmParams: IntoBytes + FromBytes + Sized {
    /// The UVM command number.
    const CMD: u64;
    /// Its name for error messages.
    const NAME: &'static str;

    /// The `rmStatus` UVM wrote back.
    fn rm_status(&self) -> u32;

    /// Size of the driver's own struct for `CMD` on `version`; the call is refused unless it
    /// equals this struct's size.
    fn driver_size(version: DriverVersion) -> usize {
        let _ = version;
        size_of::<Self>()
    }
}

macro_rules! alloc_params {
    ($($ty:ty => [$($class:path),+ $(,)?];)*) => {$(
        // SAFETY: the class-defined size of every class listed is at most this struct's size
        // on every release the reference covers (§1.2, §1.6: 535 to 595; the one that grew,
        // FERMI_VASPACE_A, is declared in its larger 580 form). Later releases are assumed
        // not to grow them until a layout table says otherwise, as gVisor's does for the
        // channel parameters below (it lists no 610 change for these). The fields are
        // handles, flags, sizes and GPU virtual addresses, none a pointer RM writes through.
        unsafe impl RmAllocParams for $ty {
            fn accepts(c: u32) -> bool {
                matches!(c, $($class)|+)
            }
        }
    )*};
}

alloc_params! {
    NV0080_ALLOC_PARAMETERS => [class::NV01_DEVICE_0];
    NV2080_ALLOC_PARAMETERS => [class::NV20_SUBDEVICE_0];
    NV_VASPACE_ALLOCATION_PARAMETERS => [class::FERMI_VASPACE_A];
    NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS => [class::KEPLER_CHANNEL_GROUP_A];
    NV_CTXSHARE_ALLOCATION_PARAMETERS => [class::FERMI_CONTEXT_SHARE_A];
    NV_MEMORY_ALLOCATION_PARAMS => [class::NV01_MEMORY_LOCAL_USER, class::NV01_MEMORY_SYSTEM];
}

// SAFETY: 368 bytes from 570 on, smaller before (570 appended `tpcConfigID`, reference §1.6
// and gVisor's `NV_CHANNEL_ALLOC_PARAMS_V570`); 610.43.02 inserted `hHandleVASpace` and grew
// it to 376 (gVisor's `_V610`), so `fits` refuses 610 and later. Fields are handles, flags, a
// GPU VA, offsets and memory descriptors RM reads only from kernel clients, none a pointer RM
// writes through.
unsafe impl RmAllocParams for NV_CHANNEL_ALLOC_PARAMS {
    fn accepts(c: u32) -> bool {
        matches!(
            c,
            class::AMPERE_CHANNEL_GPFIFO_A
                | class::HOPPER_CHANNEL_GPFIFO_A
                | class::BLACKWELL_CHANNEL_GPFIFO_A
                | class::BLACKWELL_CHANNEL_GPFIFO_B
        )
    }

    fn fits(version: DriverVersion) -> bool {
        !version.at_least(610, 0)
    }
}

macro_rules! control_params {
    ($($ty:ty => $cmd:ident;)*) => {$(
        // SAFETY: the command's exported parameter struct is exactly this one (sizes asserted
        // in structs.rs), holding only values and inline arrays, no pointer RM follows.
        unsafe impl RmControlParams for $ty {
            const CMD: u32 = ctrl::$cmd;
            const NAME: &'static str = stringify!($cmd);
        }
    )*};
}

control_params! {
    NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS => NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2;
    NV2080_CTRL_GPU_GET_GID_INFO_PARAMS => NV2080_CTRL_CMD_GPU_GET_GID_INFO;
    NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS => NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN;
    NV2080_CTRL_PERF_BOOST_PARAMS => NV2080_CTRL_CMD_PERF_BOOST;
}

// SAFETY: `gpfifo_schedule_size` is 2 or 3, never more than this 3-byte struct, and older
// drivers read and write only the first two bytes, which agree with their layout; the fields are
// booleans.
unsafe impl RmControlParams for NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580 {
    const CMD: u32 = ctrl::NVA06C_CTRL_CMD_GPFIFO_SCHEDULE;
    const NAME: &'static str = "NVA06C_CTRL_CMD_GPFIFO_SCHEDULE";

    fn params_size(version: DriverVersion) -> usize {
        version.gpfifo_schedule_size()
    }
}

macro_rules! uvm_params {
    ($($ty:ty => $cmd:ident;)*) => {$(
        // SAFETY: UVM's struct for this command has this layout on every supported release
        // (sizes asserted in structs.rs against the reference, §1.2); its fields are values,
        // handles, file descriptors and GPU VA ranges, none a pointer UVM copies through.
        unsafe impl UvmParams for $ty {
            const CMD: u64 = uvm::$cmd;
            const NAME: &'static str = stringify!($cmd);

            fn rm_status(&self) -> u32 {
                self.rmStatus
            }
        }
    )*};
}

uvm_params! {
    UVM_INITIALIZE_PARAMS => UVM_INITIALIZE;
    UVM_MM_INITIALIZE_PARAMS => UVM_MM_INITIALIZE;
    UVM_REGISTER_GPU_PARAMS => UVM_REGISTER_GPU;
    UVM_REGISTER_GPU_VASPACE_PARAMS => UVM_REGISTER_GPU_VASPACE;
    UVM_REGISTER_CHANNEL_PARAMS => UVM_REGISTER_CHANNEL;
    UVM_CREATE_EXTERNAL_RANGE_PARAMS => UVM_CREATE_EXTERNAL_RANGE;
}

/// Size of the driver's `UVM_FREE_PARAMS`: 24 B with `length`, 16 B from 590 on.
fn uvm_free_size(version: DriverVersion) -> usize {
    if version.uvm_free_has_length() {
        size_of::<UVM_FREE_PARAMS>()
    } else {
        size_of::<UVM_FREE_PARAMS_V590>()
    }
}

// SAFETY: the 24-byte layout of releases before 590 (`driver_size` says which); fields are a
// GPU VA range and the status.
unsafe impl UvmParams for UVM_FREE_PARAMS {
    const CMD: u64 = uvm::UVM_FREE;
    const NAME: &'static str = "UVM_FREE";

    fn rm_status(&self) -> u32 {
        self.rmStatus
    }

    fn driver_size(version: DriverVersion) -> usize {
        uvm_free_size(version)
    }
}

// SAFETY: the 16-byte layout from 590 on (`driver_size` says which); fields are a GPU VA and the
// status.
unsafe impl UvmParams for UVM_FREE_PARAMS_V590 {
    const CMD: u64 = uvm::UVM_FREE;
    const NAME: &'static str = "UVM_FREE";

    fn rm_status(&self) -> u32 {
        self.rmStatus
    }

    fn driver_size(version: DriverVersion) -> usize {
        uvm_free_size(version)
    }
}

/// Size of the driver's `UVM_MAP_EXTERNAL_ALLOCATION_PARAMS`: a 24-byte head, 36 bytes per
/// per-GPU slot, a 24-byte tail.
fn uvm_map_external_size(version: DriverVersion) -> usize {
    24 + size_of::<UvmGpuMappingAttributes>() * version.uvm_map_external_gpu_slots() + 24
}

const _: () = assert!(size_of::<UVM_MAP_EXTERNAL_ALLOCATION_PARAMS>() == 48 + 36 * UVM_MAX_GPUS);
const _: () =
    assert!(size_of::<UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535>() == 48 + 36 * UVM_MAX_GPUS_V1);

macro_rules! uvm_map_external_params {
    ($($ty:ty;)*) => {$(
        // SAFETY: one of the two layouts, used only on the drivers whose struct has its size
        // (`driver_size`); `base`/`length`/`offset` are a GPU VA range and an offset into RM
        // memory, the rest values, handles and a file descriptor.
        unsafe impl UvmParams for $ty {
            const CMD: u64 = uvm::UVM_MAP_EXTERNAL_ALLOCATION;
            const NAME: &'static str = "UVM_MAP_EXTERNAL_ALLOCATION";

            fn rm_status(&self) -> u32 {
                self.rmStatus
            }

            fn driver_size(version: DriverVersion) -> usize {
                uvm_map_external_size(version)
            }
        }
    )*};
}

uvm_map_external_params! {
    UVM_MAP_EXTERNAL_ALLOCATION_PARAMS;
    UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> DriverVersion {
        DriverVersion::parse(text).unwrap()
    }

    #[test]
    fn each_release_gets_exactly_one_layout_of_the_changed_uvm_structs() {
        for text in ["535.261.03", "550.40.07", "550.54.14", "580.105.08", "590.44.01"] {
            let v = version(text);
            let fits = |size: usize, driver: usize| usize::from(size == driver);
            let free = fits(size_of::<UVM_FREE_PARAMS>(), UVM_FREE_PARAMS::driver_size(v))
                + fits(size_of::<UVM_FREE_PARAMS_V590>(), UVM_FREE_PARAMS_V590::driver_size(v));
            let map = fits(
                size_of::<UVM_MAP_EXTERNAL_ALLOCATION_PARAMS>(),
                UVM_MAP_EXTERNAL_ALLOCATION_PARAMS::driver_size(v),
            ) + fits(
                size_of::<UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535>(),
                UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535::driver_size(v),
            );
            assert_eq!((free, map), (1, 1), "{text}");
        }
    }

    #[test]
    fn control_sizes_never_exceed_the_struct() {
        for text in ["535.261.03", "570.86.16", "575.64.05", "580.105.08"] {
            let v = version(text);
            let size = NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580::params_size(v);
            assert!(size <= size_of::<NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580>(), "{text}");
            assert_eq!(size, v.gpfifo_schedule_size(), "{text}");
        }
    }

    #[test]
    fn alloc_params_name_their_classes() {
        assert!(NV_MEMORY_ALLOCATION_PARAMS::accepts(class::NV01_MEMORY_SYSTEM));
        assert!(NV_CHANNEL_ALLOC_PARAMS::accepts(class::HOPPER_CHANNEL_GPFIFO_A));
        assert!(!NV_CHANNEL_ALLOC_PARAMS::accepts(class::FERMI_VASPACE_A));
        assert!(!NV2080_ALLOC_PARAMETERS::accepts(class::NV01_DEVICE_0));
        // 610 grew the channel parameters past our 368 bytes.
        assert!(NV_CHANNEL_ALLOC_PARAMS::fits(version("595.45.04")));
        assert!(!NV_CHANNEL_ALLOC_PARAMS::fits(version("610.43.02")));
        assert!(NV_VASPACE_ALLOCATION_PARAMETERS::fits(version("610.43.02")));
    }
}
