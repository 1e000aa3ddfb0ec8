//! RM ioctl parameter structs, `#[repr(C)]`, with size and offset checks at compile time.
//! Each derives zerocopy's `IntoBytes + FromBytes`: no implicit padding (every gap is a
//! `_pad*` field) and any bytes are a valid value, so the kernel may write the whole struct.
//! Which struct goes with which class or command is in [`super::params`].
//!
//! Layouts are the 580 branch as measured in the reference (nv-driver.md §1.2, gcc + gdb
//! `ptype /o` on 580.105.08 / 580.142). Where 570/535 differ (§1.6) both forms exist and
//! the [`crate::rm::DriverVersion`] methods choose. Names follow NVIDIA's headers (`nvos.h`, `nv-ioctl.h`,
//! `uvm_ioctl.h`, `cl*.h`, `ctrl*.h`) so they can be grepped there.

#![allow(non_snake_case, non_camel_case_types)]

use std::mem::{offset_of, size_of};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Assert a struct's size and field offsets at compile time, as measured on NVIDIA's headers
/// (reference §1.2). zerocopy's derive proves there is no padding; these pin where fields are.
macro_rules! layout {
    ($ty:ty, $size:expr $(, $field:ident @ $off:expr)* $(,)?) => {
        const _: () = assert!(size_of::<$ty>() == $size);
        $(const _: () = assert!(offset_of!($ty, $field) == $off);)*
    };
}

/// `NVOS21_PARAMETERS` (NV_ESC_RM_ALLOC, 32 B): allocate an RM object.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS21_PARAMETERS {
    pub hRoot: u32,
    pub hObjectParent: u32,
    /// 0 ⇒ RM picks the handle and returns it here.
    pub hObjectNew: u32,
    pub hClass: u32,
    /// User pointer to the class's allocation parameters (or 0).
    pub pAllocParms: u64,
    /// Ignored by RM for allocs: it copies the class-defined size (reference §1.2).
    pub paramsSize: u32,
    pub status: u32,
}
layout!(NVOS21_PARAMETERS, 32, hRoot @ 0, hObjectParent @ 4, hObjectNew @ 8, hClass @ 12, pAllocParms @ 16, paramsSize @ 24, status @ 28);

/// `NVOS64_PARAMETERS` (NV_ESC_RM_ALLOC, 48 B): NVOS21 plus requested access rights.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS64_PARAMETERS {
    pub hRoot: u32,
    pub hObjectParent: u32,
    pub hObjectNew: u32,
    pub hClass: u32,
    pub pAllocParms: u64,
    pub pRightsRequested: u64,
    pub paramsSize: u32,
    pub flags: u32,
    pub status: u32,
    pub _pad: u32,
}
layout!(NVOS64_PARAMETERS, 48, pAllocParms @ 16, pRightsRequested @ 24, paramsSize @ 32, flags @ 36, status @ 40);

/// `NVOS00_PARAMETERS` (NV_ESC_RM_FREE, 16 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS00_PARAMETERS {
    pub hRoot: u32,
    pub hObjectParent: u32,
    pub hObjectOld: u32,
    pub status: u32,
}
layout!(NVOS00_PARAMETERS, 16, hRoot @ 0, hObjectParent @ 4, hObjectOld @ 8, status @ 12);

/// `NVOS54_PARAMETERS` (NV_ESC_RM_CONTROL, 32 B). `paramsSize` must equal the command's size.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS54_PARAMETERS {
    pub hClient: u32,
    pub hObject: u32,
    pub cmd: u32,
    pub flags: u32,
    pub params: u64,
    pub paramsSize: u32,
    pub status: u32,
}
layout!(NVOS54_PARAMETERS, 32, hClient @ 0, hObject @ 4, cmd @ 8, flags @ 12, params @ 16, paramsSize @ 24, status @ 28);

/// `NVOS02_PARAMETERS` (48 B): allocate memory described by the client (OS descriptor).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS02_PARAMETERS {
    pub hRoot: u32,
    pub hObjectParent: u32,
    /// Client-chosen handle (unlike NVOS21).
    pub hObjectNew: u32,
    pub hClass: u32,
    pub flags: u32,
    pub _pad0: u32,
    pub pMemory: u64,
    pub limit: u64,
    pub status: u32,
    pub _pad1: u32,
}
layout!(NVOS02_PARAMETERS, 48, hObjectNew @ 8, hClass @ 12, flags @ 16, pMemory @ 24, limit @ 32, status @ 40);

/// `nv_ioctl_nvos02_parameters_with_fd` (NV_ESC_RM_ALLOC_MEMORY on the GPU fd, 56 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct nv_ioctl_nvos02_parameters_with_fd {
    pub params: NVOS02_PARAMETERS,
    pub fd: i32,
    pub _pad: u32,
}
layout!(nv_ioctl_nvos02_parameters_with_fd, 56, params @ 0, fd @ 48);

/// `NVOS33_PARAMETERS` (48 B): map RM memory for the CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS33_PARAMETERS {
    pub hClient: u32,
    pub hDevice: u32,
    pub hMemory: u32,
    pub _pad0: u32,
    pub offset: u64,
    pub length: u64,
    /// Out: the mmap "address" cookie (unused by us: we mmap the fd at offset 0).
    pub pLinearAddress: u64,
    pub status: u32,
    pub flags: u32,
}
layout!(NVOS33_PARAMETERS, 48, hClient @ 0, hDevice @ 4, hMemory @ 8, offset @ 16, length @ 24, pLinearAddress @ 32, status @ 40, flags @ 44);

/// `nv_ioctl_nvos33_parameters_with_fd` (NV_ESC_RM_MAP_MEMORY, 56 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct nv_ioctl_nvos33_parameters_with_fd {
    pub params: NVOS33_PARAMETERS,
    pub fd: i32,
    pub _pad: u32,
}
layout!(nv_ioctl_nvos33_parameters_with_fd, 56, params @ 0, fd @ 48);

/// `NVOS34_PARAMETERS` (NV_ESC_RM_UNMAP_MEMORY, 32 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS34_PARAMETERS {
    pub hClient: u32,
    pub hDevice: u32,
    pub hMemory: u32,
    pub _pad0: u32,
    pub pLinearAddress: u64,
    pub status: u32,
    pub flags: u32,
}
layout!(NVOS34_PARAMETERS, 32, hMemory @ 8, pLinearAddress @ 16, status @ 24, flags @ 28);

/// `NVOS46_PARAMETERS`, 580 layout (NV_ESC_RM_MAP_MEMORY_DMA, 64 B). Kept for the fallback
/// path only: the compute path maps through UVM (reference §1.4, §7).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS46_PARAMETERS_V580 {
    pub hClient: u32,
    pub hDevice: u32,
    pub hDma: u32,
    pub hMemory: u32,
    pub offset: u64,
    pub length: u64,
    pub flags: u32,
    pub flags2: u32,
    pub kindOverride: u32,
    pub _pad0: u32,
    pub dmaOffset: u64,
    pub status: u32,
    pub _pad1: u32,
}
layout!(NVOS46_PARAMETERS_V580, 64, hDma @ 8, hMemory @ 12, offset @ 16, length @ 24, flags @ 32, flags2 @ 36, kindOverride @ 40, dmaOffset @ 48, status @ 56);

/// `NVOS46_PARAMETERS`, 570/535 layout (56 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVOS46_PARAMETERS_V570 {
    pub hClient: u32,
    pub hDevice: u32,
    pub hDma: u32,
    pub hMemory: u32,
    pub offset: u64,
    pub length: u64,
    pub flags: u32,
    pub _pad0: u32,
    pub dmaOffset: u64,
    pub status: u32,
    pub _pad1: u32,
}
layout!(NVOS46_PARAMETERS_V570, 56, flags @ 32, dmaOffset @ 40, status @ 48);

/// `nv_pci_info_t` inside the card info.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct nv_pci_info_t {
    pub domain: u32,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
    pub _pad: u8,
    pub vendor_id: u16,
    pub device_id: u16,
}
layout!(nv_pci_info_t, 12, domain @ 0, bus @ 4, slot @ 5, function @ 6, vendor_id @ 8, device_id @ 10);

/// `nv_ioctl_card_info_t` (NV_ESC_CARD_INFO, 72 B each; the ioctl takes an array).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct nv_ioctl_card_info_t {
    /// `NvBool` (u8) followed by padding.
    pub valid: u8,
    pub _pad0: [u8; 3],
    pub pci_info: nv_pci_info_t,
    pub gpu_id: u32,
    pub interrupt_line: u16,
    pub _pad1: [u8; 2],
    pub reg_address: u64,
    pub reg_size: u64,
    pub fb_address: u64,
    pub fb_size: u64,
    pub minor_number: u32,
    pub dev_name: [u8; 10],
    pub _pad2: [u8; 2],
}
layout!(nv_ioctl_card_info_t, 72, valid @ 0, pci_info @ 4, gpu_id @ 16, interrupt_line @ 20, reg_address @ 24, fb_size @ 48, minor_number @ 56, dev_name @ 60);

/// `nv_ioctl_rm_api_version_t` (NV_ESC_CHECK_VERSION_STR, 72 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct nv_ioctl_rm_api_version_t {
    /// `NV_RM_API_VERSION_CMD_*`: 0 strict, '1' relaxed, '2' query.
    pub cmd: u32,
    /// `NV_RM_API_VERSION_REPLY_*`: 1 = recognized.
    pub reply: u32,
    pub versionString: [u8; 64],
}
layout!(nv_ioctl_rm_api_version_t, 72, cmd @ 0, reply @ 4, versionString @ 8);

impl Default for nv_ioctl_rm_api_version_t {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// `nv_ioctl_register_fd_t` (NV_ESC_REGISTER_FD on a GPU fd, 4 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct nv_ioctl_register_fd_t {
    pub ctl_fd: i32,
}
layout!(nv_ioctl_register_fd_t, 4, ctl_fd @ 0);

// ---- allocation parameter structs (pAllocParms of NVOS21) ----

/// `NV0080_ALLOC_PARAMETERS` (NV01_DEVICE_0, 56 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV0080_ALLOC_PARAMETERS {
    pub deviceId: u32,
    pub hClientShare: u32,
    pub hTargetClient: u32,
    pub hTargetDevice: u32,
    pub flags: u32,
    pub _pad0: u32,
    pub vaSpaceSize: u64,
    pub vaStartInternal: u64,
    pub vaLimitInternal: u64,
    pub vaMode: u32,
    pub _pad1: u32,
}
layout!(NV0080_ALLOC_PARAMETERS, 56, deviceId @ 0, hClientShare @ 4, hTargetClient @ 8, hTargetDevice @ 12, flags @ 16, vaSpaceSize @ 24, vaStartInternal @ 32, vaLimitInternal @ 40, vaMode @ 48);

/// `NV2080_ALLOC_PARAMETERS` (NV20_SUBDEVICE_0, 4 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_ALLOC_PARAMETERS {
    pub subDeviceId: u32,
}
layout!(NV2080_ALLOC_PARAMETERS, 4, subDeviceId @ 0);

/// `NV_VASPACE_ALLOCATION_PARAMETERS`, 580 layout (FERMI_VASPACE_A, 56 B, with `pasid`).
/// On 570 the class is 48 B; RM copies the class-defined size, so the 56-B form is safe to
/// pass to both (the extra 8 B are simply not read by 570).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV_VASPACE_ALLOCATION_PARAMETERS {
    pub index: u32,
    pub flags: u32,
    pub vaSize: u64,
    pub vaStartInternal: u64,
    pub vaLimitInternal: u64,
    pub bigPageSize: u32,
    pub _pad0: u32,
    pub vaBase: u64,
    pub pasid: u32,
    pub _pad1: u32,
}
layout!(NV_VASPACE_ALLOCATION_PARAMETERS, 56, index @ 0, flags @ 4, vaSize @ 8, vaStartInternal @ 16, vaLimitInternal @ 24, bigPageSize @ 32, vaBase @ 40, pasid @ 48);

/// `NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS` (KEPLER_CHANNEL_GROUP_A, 20 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS {
    pub hObjectError: u32,
    pub hObjectEccError: u32,
    pub hVASpace: u32,
    pub engineType: u32,
    /// `NvBool`.
    pub bIsCallingContextVgpuPlugin: u8,
    pub _pad: [u8; 3],
}
layout!(NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS, 20, hVASpace @ 8, engineType @ 12, bIsCallingContextVgpuPlugin @ 16);

/// `NV_CTXSHARE_ALLOCATION_PARAMETERS` (FERMI_CONTEXT_SHARE_A, 12 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV_CTXSHARE_ALLOCATION_PARAMETERS {
    pub hVASpace: u32,
    pub flags: u32,
    pub subctxId: u32,
}
layout!(NV_CTXSHARE_ALLOCATION_PARAMETERS, 12, hVASpace @ 0, flags @ 4, subctxId @ 8);

/// `NV_MEMORY_ALLOCATION_PARAMS` (NV01_MEMORY_LOCAL_USER / NV01_MEMORY_SYSTEM, 128 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV_MEMORY_ALLOCATION_PARAMS {
    pub owner: u32,
    pub r#type: u32,
    pub flags: u32,
    pub width: u32,
    pub height: u32,
    pub pitch: i32,
    pub attr: u32,
    pub attr2: u32,
    pub format: u32,
    pub comprCovg: u32,
    pub zcullCovg: u32,
    pub _pad0: u32,
    pub rangeLo: u64,
    pub rangeHi: u64,
    pub size: u64,
    pub alignment: u64,
    pub offset: u64,
    pub limit: u64,
    pub address: u64,
    pub ctagOffset: u32,
    pub hVASpace: u32,
    pub internalflags: u32,
    pub tag: u32,
    pub numaNode: i32,
    pub _pad1: u32,
}
layout!(NV_MEMORY_ALLOCATION_PARAMS, 128, owner @ 0, r#type @ 4, flags @ 8, attr @ 24, attr2 @ 28, format @ 32, rangeLo @ 48, rangeHi @ 56, size @ 64, alignment @ 72, offset @ 80, limit @ 88, address @ 96, ctagOffset @ 104, hVASpace @ 108, internalflags @ 112, tag @ 116, numaNode @ 120);

/// `NV_MEMORY_DESC_PARAMS` (24 B), only filled by kernel-RM/GSP clients.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV_MEMORY_DESC_PARAMS {
    pub base: u64,
    pub size: u64,
    pub addressSpace: u32,
    pub cacheAttrib: u32,
}
layout!(NV_MEMORY_DESC_PARAMS, 24, base @ 0, size @ 8, addressSpace @ 16, cacheAttrib @ 20);

/// `NV_CHANNEL_ALLOC_PARAMS` = `NV_CHANNELGPFIFO_ALLOCATION_PARAMETERS` (GPFIFO classes, 368 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV_CHANNEL_ALLOC_PARAMS {
    pub hObjectError: u32,
    pub hObjectBuffer: u32,
    /// GPU VA of the GPFIFO ring.
    pub gpFifoOffset: u64,
    pub gpFifoEntries: u32,
    pub flags: u32,
    pub hContextShare: u32,
    pub hVASpace: u32,
    pub hUserdMemory: [u32; 8],
    pub userdOffset: [u64; 8],
    pub engineType: u32,
    pub cid: u32,
    pub subDeviceId: u32,
    pub hObjectEccError: u32,
    pub instanceMem: NV_MEMORY_DESC_PARAMS,
    pub userdMem: NV_MEMORY_DESC_PARAMS,
    pub ramfcMem: NV_MEMORY_DESC_PARAMS,
    pub mthdbufMem: NV_MEMORY_DESC_PARAMS,
    pub hPhysChannelGroup: u32,
    pub internalFlags: u32,
    pub errorNotifierMem: NV_MEMORY_DESC_PARAMS,
    pub eccErrorNotifierMem: NV_MEMORY_DESC_PARAMS,
    pub ProcessID: u32,
    pub SubProcessID: u32,
    pub encryptIv: [u32; 3],
    pub decryptIv: [u32; 3],
    pub hmacNonce: [u32; 8],
    pub tpcConfigID: u32,
    pub _pad: u32,
}
layout!(NV_CHANNEL_ALLOC_PARAMS, 368,
    hObjectError @ 0, hObjectBuffer @ 4, gpFifoOffset @ 8, gpFifoEntries @ 16, flags @ 20, hContextShare @ 24,
    hVASpace @ 28, hUserdMemory @ 32, userdOffset @ 64, engineType @ 128, cid @ 132, subDeviceId @ 136,
    hObjectEccError @ 140, instanceMem @ 144, userdMem @ 168, ramfcMem @ 192, mthdbufMem @ 216,
    hPhysChannelGroup @ 240, internalFlags @ 244, errorNotifierMem @ 248, eccErrorNotifierMem @ 272,
    ProcessID @ 296, SubProcessID @ 300, encryptIv @ 304, decryptIv @ 316, hmacNonce @ 328, tpcConfigID @ 360);

// ---- control parameter structs (NVOS54 params) ----

/// `NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS` (32 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS {
    pub gpuId: u32,
    pub gpuFlags: u32,
    pub deviceInstance: u32,
    pub subDeviceInstance: u32,
    pub sliStatus: u32,
    pub boardId: u32,
    pub gpuInstance: u32,
    pub numaId: i32,
}
layout!(NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS, 32, gpuId @ 0, deviceInstance @ 8, numaId @ 28);

/// `NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS` (16 B, pointer-based: call once with a null list to
/// learn `numClasses`, then with a list that long). Used instead of `_V2`, whose inline array
/// length (`NV0080_CTRL_GPU_CLASSLIST_MAX_SIZE`) differs between branches (100, 116, …) and
/// would make `paramsSize` branch-dependent.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS {
    pub numClasses: u32,
    pub _pad: u32,
    pub classList: u64,
}
layout!(NV0080_CTRL_GPU_GET_CLASSLIST_PARAMS, 16, numClasses @ 0, classList @ 8);

/// `NV2080_CTRL_GPU_GET_GID_INFO_PARAMS` (268 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_GPU_GET_GID_INFO_PARAMS {
    pub index: u32,
    /// 2 = binary format (16-byte UUID).
    pub flags: u32,
    pub length: u32,
    pub data: [u8; 256],
}
layout!(NV2080_CTRL_GPU_GET_GID_INFO_PARAMS, 268, index @ 0, flags @ 4, length @ 8, data @ 12);

impl Default for NV2080_CTRL_GPU_GET_GID_INFO_PARAMS {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// `NV2080_CTRL_GR_INFO` ({index, data}, 8 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_GR_INFO {
    pub index: u32,
    pub data: u32,
}
layout!(NV2080_CTRL_GR_INFO, 8, index @ 0, data @ 4);

/// `NV2080_CTRL_GR_ROUTE_INFO` (16 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_GR_ROUTE_INFO {
    pub flags: u32,
    pub _pad: u32,
    pub route: u64,
}
layout!(NV2080_CTRL_GR_ROUTE_INFO, 16, flags @ 0, route @ 8);

/// `NV2080_CTRL_GR_GET_INFO_PARAMS` (32 B; points at an array of [`NV2080_CTRL_GR_INFO`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_GR_GET_INFO_PARAMS {
    pub grInfoListSize: u32,
    pub _pad: u32,
    pub grInfoList: u64,
    pub grRouteInfo: NV2080_CTRL_GR_ROUTE_INFO,
}
layout!(NV2080_CTRL_GR_GET_INFO_PARAMS, 32, grInfoListSize @ 0, grInfoList @ 8, grRouteInfo @ 16);

/// `NV2080_CTRL_FB_INFO` ({index, data}, 8 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_FB_INFO {
    pub index: u32,
    pub data: u32,
}
layout!(NV2080_CTRL_FB_INFO, 8, index @ 0, data @ 4);

/// `NV2080_CTRL_FB_GET_INFO_PARAMS` (16 B; points at an array of [`NV2080_CTRL_FB_INFO`]).
/// RM converts it to the `_V2` form itself (`rmapi_deprecated_control.c`), so its size does
/// not depend on the branch's `NV2080_CTRL_FB_INFO_MAX_LIST_SIZE` (0x36/0x39/0x80 in
/// 535/570/580), unlike `_V2`'s.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_FB_GET_INFO_PARAMS {
    pub fbInfoListSize: u32,
    pub _pad: u32,
    pub fbInfoList: u64,
}
layout!(NV2080_CTRL_FB_GET_INFO_PARAMS, 16, fbInfoListSize @ 0, fbInfoList @ 8);

/// `NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS` (4 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS {
    pub workSubmitToken: u32,
}
layout!(NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS, 4, workSubmitToken @ 0);

/// `NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS`, 580 layout (3 B: + bSkipEnable).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580 {
    pub bEnable: u8,
    pub bSkipSubmit: u8,
    pub bSkipEnable: u8,
}
layout!(NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580, 3, bEnable @ 0, bSkipSubmit @ 1, bSkipEnable @ 2);

/// `NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS`, 570/535 layout (2 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V570 {
    pub bEnable: u8,
    pub bSkipSubmit: u8,
}
layout!(NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V570, 2, bEnable @ 0, bSkipSubmit @ 1);

/// `NV2080_CTRL_PERF_BOOST_PARAMS` (8 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct NV2080_CTRL_PERF_BOOST_PARAMS {
    pub flags: u32,
    pub duration: u32,
}
layout!(NV2080_CTRL_PERF_BOOST_PARAMS, 8, flags @ 0, duration @ 4);

// ---- UVM (raw command numbers on /dev/nvidia-uvm; sizes from reference §1.2) ----

/// `UVM_INITIALIZE_PARAMS` (16 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_INITIALIZE_PARAMS {
    pub flags: u64,
    pub rmStatus: u32,
    pub _pad: u32,
}
layout!(UVM_INITIALIZE_PARAMS, 16, flags @ 0, rmStatus @ 8);

/// `UVM_MM_INITIALIZE_PARAMS` (8 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_MM_INITIALIZE_PARAMS {
    pub uvmFd: i32,
    pub rmStatus: u32,
}
layout!(UVM_MM_INITIALIZE_PARAMS, 8, uvmFd @ 0, rmStatus @ 4);

/// `UVM_REGISTER_GPU_PARAMS` (40 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_REGISTER_GPU_PARAMS {
    pub gpu_uuid: [u8; 16],
    pub numaEnabled: u8,
    pub _pad: [u8; 3],
    pub numaNodeId: i32,
    pub rmCtrlFd: i32,
    pub hClient: u32,
    pub hSmcPartRef: u32,
    pub rmStatus: u32,
}
layout!(UVM_REGISTER_GPU_PARAMS, 40, gpu_uuid @ 0, numaEnabled @ 16, numaNodeId @ 20, rmCtrlFd @ 24, hClient @ 28, hSmcPartRef @ 32, rmStatus @ 36);

/// `UVM_REGISTER_GPU_VASPACE_PARAMS` (32 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_REGISTER_GPU_VASPACE_PARAMS {
    pub gpuUuid: [u8; 16],
    pub rmCtrlFd: i32,
    pub hClient: u32,
    pub hVaSpace: u32,
    pub rmStatus: u32,
}
layout!(UVM_REGISTER_GPU_VASPACE_PARAMS, 32, gpuUuid @ 0, rmCtrlFd @ 16, hClient @ 20, hVaSpace @ 24, rmStatus @ 28);

/// `UVM_REGISTER_CHANNEL_PARAMS` (56 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_REGISTER_CHANNEL_PARAMS {
    pub gpuUuid: [u8; 16],
    pub rmCtrlFd: i32,
    pub hClient: u32,
    pub hChannel: u32,
    pub _pad0: u32,
    pub base: u64,
    pub length: u64,
    pub rmStatus: u32,
    pub _pad1: u32,
}
layout!(UVM_REGISTER_CHANNEL_PARAMS, 56, rmCtrlFd @ 16, hClient @ 20, hChannel @ 24, base @ 32, length @ 40, rmStatus @ 48);

/// `UVM_CREATE_EXTERNAL_RANGE_PARAMS` (24 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_CREATE_EXTERNAL_RANGE_PARAMS {
    pub base: u64,
    pub length: u64,
    pub rmStatus: u32,
    pub _pad: u32,
}
layout!(UVM_CREATE_EXTERNAL_RANGE_PARAMS, 24, base @ 0, length @ 8, rmStatus @ 16);

/// `UVM_FREE_PARAMS` before 590 (24 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_FREE_PARAMS {
    pub base: u64,
    pub length: u64,
    pub rmStatus: u32,
    pub _pad: u32,
}
layout!(UVM_FREE_PARAMS, 24, base @ 0, length @ 8, rmStatus @ 16);

/// `UVM_FREE_PARAMS` from 590 on (16 B: `length` dropped).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UVM_FREE_PARAMS_V590 {
    pub base: u64,
    pub rmStatus: u32,
    pub _pad: u32,
}
layout!(UVM_FREE_PARAMS_V590, 16, base @ 0, rmStatus @ 8);

/// `UvmGpuMappingAttributes` (36 B).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct UvmGpuMappingAttributes {
    pub gpuUuid: [u8; 16],
    /// 1 = UvmGpuMappingTypeReadWriteAtomic.
    pub gpuMappingType: u32,
    pub gpuCachingType: u32,
    pub gpuFormatType: u32,
    pub gpuElementBits: u32,
    pub gpuCompressionType: u32,
}
layout!(UvmGpuMappingAttributes, 36, gpuUuid @ 0, gpuMappingType @ 16, gpuCachingType @ 20, gpuFormatType @ 24, gpuElementBits @ 28, gpuCompressionType @ 32);

/// Per-GPU attribute slots in [`UVM_MAP_EXTERNAL_ALLOCATION_PARAMS`] from 550.54
/// (`UVM_MAX_GPUS_V2`, later `UVM_MAX_GPUS`).
pub const UVM_MAX_GPUS: usize = 256;
/// Slots before 550.54 (`UVM_MAX_GPUS` = `NV_MAX_DEVICES`).
pub const UVM_MAX_GPUS_V1: usize = 32;

/// `UVM_MAP_EXTERNAL_ALLOCATION_PARAMS` with `$gpus` per-GPU slots. Two concrete structs
/// rather than one generic over the slot count: zerocopy proves a struct free of padding only
/// when its field types are concrete.
macro_rules! uvm_map_external_allocation_params {
    ($(#[$doc:meta])* $name:ident, $gpus:expr) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
        pub struct $name {
            pub base: u64,
            pub length: u64,
            pub offset: u64,
            pub perGpuAttributes: [UvmGpuMappingAttributes; $gpus],
            pub gpuAttributesCount: u64,
            pub rmCtrlFd: i32,
            pub hClient: u32,
            pub hMemory: u32,
            pub rmStatus: u32,
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new_zeroed()
            }
        }

        impl UvmMapExternalAllocation for $name {
            const GPU_SLOTS: usize = $gpus;

            fn new_boxed(
                base: u64,
                length: u64,
                gpu: UvmGpuMappingAttributes,
                rm_ctrl_fd: i32,
                h_client: u32,
                h_memory: u32,
            ) -> Box<Self> {
                let mut map = Box::new(Self::new_zeroed());
                map.base = base;
                map.length = length;
                map.perGpuAttributes[0] = gpu;
                map.gpuAttributesCount = 1;
                map.rmCtrlFd = rm_ctrl_fd;
                map.hClient = h_client;
                map.hMemory = h_memory;
                map
            }
        }
    };
}

/// The two layouts of `UVM_MAP_EXTERNAL_ALLOCATION_PARAMS`, built the same way.
pub trait UvmMapExternalAllocation: Sized {
    /// Per-GPU attribute slots in this layout.
    const GPU_SLOTS: usize;

    /// A request mapping `length` bytes of RM memory `h_memory` at `base` for one GPU.
    fn new_boxed(
        base: u64,
        length: u64,
        gpu: UvmGpuMappingAttributes,
        rm_ctrl_fd: i32,
        h_client: u32,
        h_memory: u32,
    ) -> Box<Self>;
}

uvm_map_external_allocation_params!(
    /// `UVM_MAP_EXTERNAL_ALLOCATION_PARAMS` from 550.54 on (9264 B).
    UVM_MAP_EXTERNAL_ALLOCATION_PARAMS,
    UVM_MAX_GPUS
);
layout!(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS, 9264, base @ 0, length @ 8, offset @ 16, perGpuAttributes @ 24, gpuAttributesCount @ 9240, rmCtrlFd @ 9248, hClient @ 9252, hMemory @ 9256, rmStatus @ 9260);

uvm_map_external_allocation_params!(
    /// `UVM_MAP_EXTERNAL_ALLOCATION_PARAMS` before 550.54 (1200 B).
    UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535,
    UVM_MAX_GPUS_V1
);
layout!(UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535, 1200, perGpuAttributes @ 24, gpuAttributesCount @ 1176, rmCtrlFd @ 1184, hClient @ 1188, hMemory @ 1192, rmStatus @ 1196);
