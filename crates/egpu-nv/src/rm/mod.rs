//! The resource-manager (RM) API of nvidia.ko: ioctl numbers, classes, control commands,
//! parameter structs, status codes, driver-branch selection and (on Linux) the ioctl client.
//!
//! Facts from the reference `nv-driver.md` §1 and NVIDIA's open-gpu-kernel-modules headers.

pub mod params;
pub mod status;
pub mod structs;

#[cfg(target_os = "linux")]
pub mod client;

pub use status::RmStatus;

use std::fmt;

/// `NV_IOCTL_MAGIC` ('F'), the type byte of every nvidia.ko ioctl (`nv-ioctl-numbers.h`).
pub const NV_IOCTL_MAGIC: u32 = b'F' as u32;

/// nvidia.ko escape numbers (`nv-ioctl-numbers.h`, `nv_escape.h`), reference §1.1.
pub mod escape {
    /// `NV_ESC_CARD_INFO` (NV_IOCTL_BASE 200 + 0).
    pub const NV_ESC_CARD_INFO: u32 = 200;
    /// `NV_ESC_REGISTER_FD`.
    pub const NV_ESC_REGISTER_FD: u32 = 201;
    /// `NV_ESC_ALLOC_OS_EVENT`.
    pub const NV_ESC_ALLOC_OS_EVENT: u32 = 206;
    /// `NV_ESC_CHECK_VERSION_STR`.
    pub const NV_ESC_CHECK_VERSION_STR: u32 = 210;
    /// `NV_ESC_IOCTL_XFER_CMD` (params over 16 KiB).
    pub const NV_ESC_IOCTL_XFER_CMD: u32 = 211;
    /// `NV_ESC_RM_ALLOC_MEMORY` (on the per-GPU fd).
    pub const NV_ESC_RM_ALLOC_MEMORY: u32 = 0x27;
    /// `NV_ESC_RM_FREE`.
    pub const NV_ESC_RM_FREE: u32 = 0x29;
    /// `NV_ESC_RM_CONTROL`.
    pub const NV_ESC_RM_CONTROL: u32 = 0x2A;
    /// `NV_ESC_RM_ALLOC`.
    pub const NV_ESC_RM_ALLOC: u32 = 0x2B;
    /// `NV_ESC_RM_MAP_MEMORY`.
    pub const NV_ESC_RM_MAP_MEMORY: u32 = 0x4E;
    /// `NV_ESC_RM_UNMAP_MEMORY`.
    pub const NV_ESC_RM_UNMAP_MEMORY: u32 = 0x4F;
    /// `NV_ESC_RM_MAP_MEMORY_DMA`.
    pub const NV_ESC_RM_MAP_MEMORY_DMA: u32 = 0x57;
    /// `NV_ESC_RM_UNMAP_MEMORY_DMA`.
    pub const NV_ESC_RM_UNMAP_MEMORY_DMA: u32 = 0x58;
}

/// The ioctl request for escape `nr` with a `size`-byte parameter: `_IOWR('F', nr, size)`.
/// nvidia.ko checks the encoded size against the struct (reference §1.1), so this must be the
/// exact struct size. Sizes over the 14-bit field need `NV_ESC_IOCTL_XFER_CMD`; `None` then.
pub const fn nv_ioctl_request(nr: u32, size: usize) -> Option<u64> {
    if size >= (1 << 14) {
        return None;
    }
    Some((3u64 << 30) | ((size as u64) << 16) | ((NV_IOCTL_MAGIC as u64) << 8) | nr as u64)
}

/// RM class numbers (`g_allclasses.h`, reference §1.5).
pub mod class {
    /// `NV01_ROOT_CLIENT`.
    pub const NV01_ROOT_CLIENT: u32 = 0x41;
    /// `NV01_DEVICE_0`.
    pub const NV01_DEVICE_0: u32 = 0x80;
    /// `NV20_SUBDEVICE_0`.
    pub const NV20_SUBDEVICE_0: u32 = 0x2080;
    /// `NV01_MEMORY_VIRTUAL`.
    pub const NV01_MEMORY_VIRTUAL: u32 = 0x70;
    /// `NV01_MEMORY_LOCAL_USER` (VRAM).
    pub const NV01_MEMORY_LOCAL_USER: u32 = 0x40;
    /// `NV01_MEMORY_SYSTEM`.
    pub const NV01_MEMORY_SYSTEM: u32 = 0x3E;
    /// `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` (pinned user memory).
    pub const NV01_MEMORY_SYSTEM_OS_DESCRIPTOR: u32 = 0x71;
    /// `FERMI_VASPACE_A`.
    pub const FERMI_VASPACE_A: u32 = 0x90F1;
    /// `KEPLER_CHANNEL_GROUP_A` (a TSG).
    pub const KEPLER_CHANNEL_GROUP_A: u32 = 0xA06C;
    /// `FERMI_CONTEXT_SHARE_A`.
    pub const FERMI_CONTEXT_SHARE_A: u32 = 0x9067;
    /// `GT200_DEBUGGER`.
    pub const GT200_DEBUGGER: u32 = 0x83DE;
    /// `TURING_USERMODE_A`.
    pub const TURING_USERMODE_A: u32 = 0xC461;
    /// `AMPERE_USERMODE_A`.
    pub const AMPERE_USERMODE_A: u32 = 0xC561;
    /// `HOPPER_USERMODE_A`.
    pub const HOPPER_USERMODE_A: u32 = 0xC661;
    /// `BLACKWELL_USERMODE_A`.
    pub const BLACKWELL_USERMODE_A: u32 = 0xC761;
    /// `AMPERE_CHANNEL_GPFIFO_A`.
    pub const AMPERE_CHANNEL_GPFIFO_A: u32 = 0xC56F;
    /// `HOPPER_CHANNEL_GPFIFO_A`.
    pub const HOPPER_CHANNEL_GPFIFO_A: u32 = 0xC86F;
    /// `BLACKWELL_CHANNEL_GPFIFO_A`.
    pub const BLACKWELL_CHANNEL_GPFIFO_A: u32 = 0xC96F;
    /// `BLACKWELL_CHANNEL_GPFIFO_B`.
    pub const BLACKWELL_CHANNEL_GPFIFO_B: u32 = 0xCA6F;
    /// `AMPERE_COMPUTE_A` (GA100).
    pub const AMPERE_COMPUTE_A: u32 = 0xC6C0;
    /// `AMPERE_COMPUTE_B` (GA10x).
    pub const AMPERE_COMPUTE_B: u32 = 0xC7C0;
    /// `ADA_COMPUTE_A`.
    pub const ADA_COMPUTE_A: u32 = 0xC9C0;
    /// `HOPPER_COMPUTE_A`.
    pub const HOPPER_COMPUTE_A: u32 = 0xCBC0;
    /// `BLACKWELL_COMPUTE_A`.
    pub const BLACKWELL_COMPUTE_A: u32 = 0xCDC0;
    /// `BLACKWELL_COMPUTE_B`.
    pub const BLACKWELL_COMPUTE_B: u32 = 0xCEC0;
    /// `AMPERE_DMA_COPY_A`.
    pub const AMPERE_DMA_COPY_A: u32 = 0xC6B5;
    /// `AMPERE_DMA_COPY_B`.
    pub const AMPERE_DMA_COPY_B: u32 = 0xC7B5;
    /// `HOPPER_DMA_COPY_A`.
    pub const HOPPER_DMA_COPY_A: u32 = 0xC8B5;
    /// `BLACKWELL_DMA_COPY_A`.
    pub const BLACKWELL_DMA_COPY_A: u32 = 0xC9B5;
    /// `BLACKWELL_DMA_COPY_B`.
    pub const BLACKWELL_DMA_COPY_B: u32 = 0xCAB5;
}

/// RM control command numbers (reference §1.2).
pub mod ctrl {
    /// `NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2`.
    pub const NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2: u32 = 0x205;
    /// `NV0080_CTRL_CMD_GPU_GET_CLASSLIST`.
    pub const NV0080_CTRL_CMD_GPU_GET_CLASSLIST: u32 = 0x0080_0201;
    /// `NV2080_CTRL_CMD_GPU_GET_GID_INFO`.
    pub const NV2080_CTRL_CMD_GPU_GET_GID_INFO: u32 = 0x2080_014A;
    /// `NV2080_CTRL_CMD_GR_GET_INFO`.
    pub const NV2080_CTRL_CMD_GR_GET_INFO: u32 = 0x2080_1201;
    /// `NV2080_CTRL_CMD_FB_GET_INFO` (pointer form; RM converts it to `_V2`).
    pub const NV2080_CTRL_CMD_FB_GET_INFO: u32 = 0x2080_1301;
    /// `NV2080_CTRL_FB_INFO_INDEX_TOTAL_RAM_SIZE`: video memory in KiB.
    pub const NV2080_CTRL_FB_INFO_INDEX_TOTAL_RAM_SIZE: u32 = 0x08;
    /// `NV2080_CTRL_CMD_PERF_BOOST`.
    pub const NV2080_CTRL_CMD_PERF_BOOST: u32 = 0x2080_200A;
    /// `NVA06C_CTRL_CMD_GPFIFO_SCHEDULE`.
    pub const NVA06C_CTRL_CMD_GPFIFO_SCHEDULE: u32 = 0xA06C_0101;
    /// `NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN`.
    pub const NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN: u32 = 0xC36F_0108;
    /// `NV2080_CTRL_GR_INFO_INDEX_SHADER_PIPE_SUB_COUNT`: enabled TPCs in total. (The header's
    /// Tesla-era comment says "SMs per TPC"; NVIDIA's own UVM glue, `nv_gpu_ops.c`, and NVK read
    /// it as the TPC count, and a GA106 answers 14 with 28 SMs.)
    pub const NV2080_CTRL_GR_INFO_INDEX_SHADER_PIPE_SUB_COUNT: u32 = 9;
    /// `NV2080_CTRL_GR_INFO_INDEX_SM_VERSION`.
    pub const NV2080_CTRL_GR_INFO_INDEX_SM_VERSION: u32 = 12;
    /// `NV2080_CTRL_GR_INFO_INDEX_MAX_WARPS_PER_SM`.
    pub const NV2080_CTRL_GR_INFO_INDEX_MAX_WARPS_PER_SM: u32 = 13;
    /// `NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_GPCS`.
    pub const NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_GPCS: u32 = 20;
    /// `NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_TPC_PER_GPC`.
    pub const NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_TPC_PER_GPC: u32 = 23;
    /// `NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_SM_PER_TPC`.
    pub const NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_SM_PER_TPC: u32 = 32;
}

/// UVM ioctl command numbers (raw, not `_IOWR`-encoded; `uvm_ioctl.h`, reference §1.2).
pub mod uvm {
    /// `UVM_INITIALIZE`.
    pub const UVM_INITIALIZE: u64 = 0x3000_0001;
    /// `UVM_DEINITIALIZE`.
    pub const UVM_DEINITIALIZE: u64 = 0x3000_0002;
    /// `UVM_MM_INITIALIZE`.
    pub const UVM_MM_INITIALIZE: u64 = 0x4B;
    /// `UVM_REGISTER_GPU`.
    pub const UVM_REGISTER_GPU: u64 = 0x25;
    /// `UVM_REGISTER_GPU_VASPACE`.
    pub const UVM_REGISTER_GPU_VASPACE: u64 = 0x19;
    /// `UVM_REGISTER_CHANNEL`.
    pub const UVM_REGISTER_CHANNEL: u64 = 0x1B;
    /// `UVM_MAP_EXTERNAL_ALLOCATION`.
    pub const UVM_MAP_EXTERNAL_ALLOCATION: u64 = 0x21;
    /// `UVM_FREE`.
    pub const UVM_FREE: u64 = 0x22;
    /// `UVM_CREATE_EXTERNAL_RANGE`.
    pub const UVM_CREATE_EXTERNAL_RANGE: u64 = 0x49;
}

/// Flag and attribute values used for allocations (reference §1.3/§1.4).
pub mod flags {
    /// FERMI_VASPACE_A flags: ENABLE_PAGE_FAULTING | IS_EXTERNALLY_OWNED (UVM owns page tables).
    pub const VASPACE_FLAGS_UVM_OWNED: u32 = 0x48;
    /// `NVOS04_FLAGS_GROUP_CHANNEL_RUNQUEUE_ONE` (`alloc_channel.h`, bits 4:4): the channel's
    /// methods are fetched by the TSG's second runqueue, so it can feed its engine while a
    /// channel on the first is stalled (GP10x and later, channels in a TSG only).
    pub const CHANNEL_RUNQUEUE_ONE: u32 = 1 << 4;
    /// Base of the GPU VA space we ask for.
    pub const VASPACE_BASE: u64 = 0x1000;
    /// Size of the GPU VA space we ask for.
    pub const VASPACE_SIZE: u64 = 0x1_ffff_fb00_0000;
    /// NV_CTXSHARE flags: SUBCONTEXT_ASYNC.
    pub const CTXSHARE_SUBCONTEXT_ASYNC: u32 = 1;
    /// NV2080_ENGINE_TYPE_GRAPHICS.
    pub const NV2080_ENGINE_TYPE_GRAPHICS: u32 = 1;
    /// NVOS32 TYPE_IMAGE.
    pub const NVOS32_TYPE_IMAGE: u32 = 0;
    /// NVOS32 TYPE_NOTIFIER.
    pub const NVOS32_TYPE_NOTIFIER: u32 = 13;
    /// VRAM alloc flags: MAP_NOT_REQUIRED|MEMORY_HANDLE_PROVIDED|ALIGNMENT_FORCE|IGNORE_BANK_PLACEMENT|PERSISTENT_VIDMEM.
    pub const VIDMEM_ALLOC_FLAGS: u32 = 0x1C101;
    /// Sysmem alloc flags: as VIDMEM without PERSISTENT_VIDMEM.
    pub const SYSMEM_ALLOC_FLAGS: u32 = 0xC101;
    /// attr PHYSICALITY_CONTIGUOUS (bits 28:27).
    pub const ATTR_PHYSICALITY_CONTIGUOUS: u32 = 0x1000_0000;
    /// attr PHYSICALITY_NONCONTIGUOUS.
    pub const ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS: u32 = 0x1800_0000;
    /// attr PAGE_SIZE_HUGE (bits 24:23).
    pub const ATTR_PAGE_SIZE_HUGE: u32 = 0x0180_0000;
    /// attr LOCATION_PCI added to NONCONTIGUOUS (→ 0x1A000000).
    pub const ATTR_LOCATION_PCI: u32 = 0x0200_0000;
    /// attr2 GPU_CACHEABLE_YES | ZBC_PREFER_NO_ZBC.
    pub const ATTR2_VIDMEM: u32 = 0x5;
    /// attr2 PAGE_SIZE_HUGE_2MB.
    pub const ATTR2_PAGE_SIZE_HUGE_2MB: u32 = 0x10_0000;
    /// attr2 GPU_CACHEABLE_NO | ZBC_PREFER_NO_ZBC.
    pub const ATTR2_SYSMEM_UNCACHED: u32 = 0x9;
    /// Memory format used for plain buffers.
    pub const MEMORY_FORMAT_PITCH: u32 = 6;
    /// NVOS02 flags for OS-descriptor memory: PHYSICALITY_NONCONTIGUOUS|COHERENCY_CACHED|MAPPING_NO_MAP.
    pub const OS_DESCRIPTOR_FLAGS: u32 = 0x4000_1010;
    /// UvmGpuMappingTypeReadWriteAtomic.
    pub const UVM_MAPPING_READ_WRITE_ATOMIC: u32 = 1;
    /// NV2080_CTRL_GPU_GET_GID_FLAGS_FORMAT_BINARY.
    pub const GID_FLAGS_FORMAT_BINARY: u32 = 2;
}

/// A driver version such as 580.105.08, parsed into numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriverVersion {
    /// Major (the branch), e.g. 580.
    pub major: u32,
    /// Minor, e.g. 105.
    pub minor: u32,
    /// Patch, e.g. 8 (0 when absent).
    pub patch: u32,
}

impl DriverVersion {
    /// Parse "580.105.08" (or "580.105"); trailing NULs and whitespace are ignored.
    pub fn parse(text: &str) -> Option<DriverVersion> {
        let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(DriverVersion { major, minor, patch })
    }

    /// Whether this driver is `major.minor` or newer.
    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{:02}", self.major, self.minor, self.patch)
    }
}

/// Struct layouts that changed between driver releases, keyed by the first release with the
/// change (checked against open-gpu-kernel-modules tags 535.43.02 … 595.45.04, reference §1.6).
/// 580 is the tested release; the others are built from the headers.
impl DriverVersion {
    /// Size of `NVOS46_PARAMETERS` (MAP_MEMORY_DMA): 64 B from 580 (+ `kindOverride`), else 56.
    pub fn nvos46_size(self) -> usize {
        if self.at_least(580, 0) {
            std::mem::size_of::<structs::NVOS46_PARAMETERS_V580>()
        } else {
            std::mem::size_of::<structs::NVOS46_PARAMETERS_V570>()
        }
    }

    /// `paramsSize` of `NVA06C_CTRL_CMD_GPFIFO_SCHEDULE`: 3 B from 575 (+ `bSkipEnable`), else 2.
    pub fn gpfifo_schedule_size(self) -> usize {
        if self.at_least(575, 0) {
            std::mem::size_of::<structs::NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580>()
        } else {
            std::mem::size_of::<structs::NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V570>()
        }
    }

    /// Class-defined size of `NV_VASPACE_ALLOCATION_PARAMETERS`: 56 B from 580 (+ `pasid`),
    /// else 48 (RM reads only that much of our 56-byte struct, whose first 48 bytes agree).
    pub fn vaspace_params_size(self) -> usize {
        if self.at_least(580, 0) {
            56
        } else {
            48
        }
    }

    /// Per-GPU slots of `UVM_MAP_EXTERNAL_ALLOCATION_PARAMS`: `UVM_MAX_GPUS_V2` (256) from
    /// 550.54, `UVM_MAX_GPUS` (32) before.
    pub fn uvm_map_external_gpu_slots(self) -> usize {
        if self.at_least(550, 54) {
            structs::UVM_MAX_GPUS
        } else {
            structs::UVM_MAX_GPUS_V1
        }
    }

    /// Whether `UVM_FREE_PARAMS` still has its `length` field (dropped in 590).
    pub fn uvm_free_has_length(self) -> bool {
        !self.at_least(590, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::escape::*;
    use super::structs::*;
    use super::*;
    use std::mem::size_of;

    fn version(text: &str) -> DriverVersion {
        DriverVersion::parse(text).unwrap()
    }

    #[test]
    fn ioctl_requests_match_reference_table() {
        // Reference §1.1, "full request (580)" column.
        let cases: [(u32, usize, u64); 11] = [
            (NV_ESC_CARD_INFO, 64 * size_of::<nv_ioctl_card_info_t>(), 0xD200_46C8),
            (NV_ESC_REGISTER_FD, size_of::<nv_ioctl_register_fd_t>(), 0xC004_46C9),
            (NV_ESC_CHECK_VERSION_STR, size_of::<nv_ioctl_rm_api_version_t>(), 0xC048_46D2),
            (NV_ESC_RM_ALLOC_MEMORY, size_of::<nv_ioctl_nvos02_parameters_with_fd>(), 0xC038_4627),
            (NV_ESC_RM_FREE, size_of::<NVOS00_PARAMETERS>(), 0xC010_4629),
            (NV_ESC_RM_CONTROL, size_of::<NVOS54_PARAMETERS>(), 0xC020_462A),
            (NV_ESC_RM_ALLOC, size_of::<NVOS21_PARAMETERS>(), 0xC020_462B),
            (NV_ESC_RM_ALLOC, size_of::<NVOS64_PARAMETERS>(), 0xC030_462B),
            (NV_ESC_RM_MAP_MEMORY, size_of::<nv_ioctl_nvos33_parameters_with_fd>(), 0xC038_464E),
            (NV_ESC_RM_UNMAP_MEMORY, size_of::<NVOS34_PARAMETERS>(), 0xC020_464F),
            (NV_ESC_RM_MAP_MEMORY_DMA, version("580.105.08").nvos46_size(), 0xC040_4657),
        ];
        for (nr, size, want) in cases {
            assert_eq!(nv_ioctl_request(nr, size), Some(want), "escape 0x{nr:x} size {size}");
        }
        assert_eq!(
            nv_ioctl_request(NV_ESC_RM_MAP_MEMORY_DMA, version("570.86.16").nvos46_size()),
            Some(0xC038_4657)
        );
        assert_eq!(nv_ioctl_request(NV_ESC_RM_ALLOC, 1 << 14), None);
    }

    #[test]
    fn version_parsing_is_numeric() {
        let v = DriverVersion::parse("580.105.08\0\0").unwrap();
        assert_eq!(v, DriverVersion { major: 580, minor: 105, patch: 8 });
        assert_eq!(v.to_string(), "580.105.08");
        assert!(v.at_least(580, 105) && v.at_least(575, 200) && !v.at_least(580, 106));
        assert_eq!(version("595.45"), DriverVersion { major: 595, minor: 45, patch: 0 });
        for bad in ["", "580", "x.1.2", "580.1.2.3", "580..1"] {
            assert_eq!(DriverVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn layouts_change_at_the_releases_that_changed_them() {
        // (version, NVOS46, SCHEDULE, VASPACE, UVM map slots, UVM_FREE has length)
        let table = [
            ("535.261.03", 56, 2, 48, 32, true),
            ("550.40.07", 56, 2, 48, 32, true),
            ("550.54.14", 56, 2, 48, 256, true),
            ("570.86.16", 56, 2, 48, 256, true),
            ("575.64.05", 56, 3, 48, 256, true),
            ("580.105.08", 64, 3, 56, 256, true),
            ("590.44.01", 64, 3, 56, 256, false),
        ];
        for (text, nvos46, schedule, vaspace, slots, free_length) in table {
            let v = version(text);
            assert_eq!(
                (
                    v.nvos46_size(),
                    v.gpfifo_schedule_size(),
                    v.vaspace_params_size(),
                    v.uvm_map_external_gpu_slots(),
                    v.uvm_free_has_length()
                ),
                (nvos46, schedule, vaspace, slots, free_length),
                "{text}"
            );
        }
        assert_eq!(
            version("580.0").vaspace_params_size(),
            size_of::<NV_VASPACE_ALLOCATION_PARAMETERS>()
        );
    }
}
