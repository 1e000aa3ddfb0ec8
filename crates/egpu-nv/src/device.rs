//! An open NVIDIA GPU: RM objects, UVM-mapped memory, a compute and a copy GPFIFO channel,
//! timeline signals and submission. Sequence: reference nv-driver.md §1.3/§1.4/§2.
//!
//! UNVERIFIED ON HARDWARE: written from the reference without a GPU; `examples/nv_suite.rs`
//! is the first thing to run on an H100 (see bench/nv_gpu_suite.sh).

use crate::arch::Arch;
use crate::cubin::{Cubin, CubinKernel};
use crate::launch::{
    build_cbuf0_into, build_qmd, QmdLaunch, LOCAL_WINDOW_BASE, SHARED_WINDOW_BASE, STACK_RESERVE,
};
use crate::pushbuf::{compute, gpfifo_entry, host, subchannel, PushBuffer};
use crate::rm::client::{RmClient, RmError};
use crate::rm::params::UvmParams;
use crate::rm::structs::*;
use crate::rm::{class, ctrl, flags};
use crate::va;
use crate::NvError;
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// GPFIFO entries per channel.
const GPFIFO_ENTRIES: u64 = 0x10000;
/// Bytes of pushbuffer ring per channel.
const PUSH_RING: u64 = 4 << 20;
/// Bytes of kernel-argument (cbuf0 + QMD) ring.
const KARGS_RING: u64 = 16 << 20;
/// Signal slots (16 B each: value, timestamp).
const SIGNAL_SLOTS: u64 = 4096;
/// Internal waits (ring space, program upload).
const INTERNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most local memory one thread may have (the SM's limit on sm_80–sm_90).
const MAX_LOCAL_BYTES_PER_THREAD: u32 = 512 << 10;
/// How long dropping a device waits for queued work before unmapping its memory.
const DROP_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes of the usermode (doorbell) object mapped for the CPU.
const USERMODE_BYTES: u64 = 0x10000;
/// VA window handed to UVM for each channel's RM-managed context buffers.
const CHANNEL_WINDOW: u64 = 0x400_0000;

/// A CPU mapping made through RM whose address the kernel chose; unmapped when dropped.
#[derive(Debug)]
struct CpuMapping {
    ptr: *mut u8,
    len: u64,
}

impl Drop for CpuMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping `map_to_cpu` made for this value, which
        // owns it; once it is dropped nothing reaches the mapping.
        unsafe { unmap(self.ptr as u64, self.len) };
    }
}

/// munmap a range this device mapped.
///
/// # Safety
///
/// `address..address + len` is a mapping this device made, and nothing uses it afterwards
/// (no pointer into it is read or written again).
unsafe fn unmap(address: u64, len: u64) {
    // SAFETY: the caller's contract: our own mapping, no longer used.
    unsafe { libc::munmap(address as *mut libc::c_void, len as usize) };
}

/// A buffer on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvBuffer {
    /// RM memory handle.
    pub handle: u32,
    /// GPU virtual address.
    pub va: u64,
    /// Size in bytes (rounded to the page size).
    pub size: u64,
    /// CPU address when host-visible (equal to `va`).
    pub host: bool,
}

/// A unit of work (the runtime's commands with addresses resolved). Borrows the kernel name and
/// argument block so that a launch costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvCommand<'a> {
    /// Copy between GPU VAs on the copy engine.
    Copy {
        /// Source VA.
        src: u64,
        /// Destination VA.
        dst: u64,
        /// Bytes.
        len: u64,
    },
    /// Launch a kernel of a loaded program.
    Launch {
        /// Program id from [`NvDevice::load_program`].
        program: u64,
        /// Kernel name.
        kernel: &'a str,
        /// Grid.
        grid: [u32; 3],
        /// Block.
        block: [u32; 3],
        /// Dynamic shared memory bytes.
        dynamic_shared_bytes: u32,
        /// Argument block, the kernel's `param_bytes` long.
        args: &'a [u8],
    },
    /// Release a signal slot with a value.
    Signal {
        /// Slot.
        slot: u32,
        /// Value.
        value: u64,
    },
    /// Hold the channel until the slot is ≥ value.
    Wait {
        /// Slot.
        slot: u32,
        /// Value.
        value: u64,
    },
}

#[derive(Debug)]
struct Ring {
    va: u64,
    size: u64,
    head: u64,
    // (monotonic start, channel sequence that must complete before reuse)
    inflight: VecDeque<(u64, u64)>,
}

impl Ring {
    /// Reserve `len` bytes aligned to `align`; returns (VA, sequence to wait for first).
    fn reserve(&mut self, len: u64, align: u64, seq: u64) -> Option<(u64, u64)> {
        if len > self.size {
            return None;
        }
        let mut start = self.head.next_multiple_of(align);
        if start % self.size + len > self.size {
            start = start.next_multiple_of(self.size);
        }
        let end = start + len;
        let mut wait = 0;
        while let Some(&(s, q)) = self.inflight.front() {
            if s + self.size < end {
                wait = wait.max(q);
                self.inflight.pop_front();
            } else {
                break;
            }
        }
        self.inflight.push_back((start, seq));
        self.head = end;
        Some((self.va + start % self.size, wait))
    }
}

#[derive(Debug)]
struct Channel {
    token: u32,
    ring_va: u64,
    userd_va: u64,
    put: u64,
    seq: u64,
    progress_slot: u32,
    push: Ring,
}

#[derive(Debug)]
struct Program {
    image: NvBuffer,
    cubin: Cubin,
}

/// An open NVIDIA GPU.
#[derive(Debug)]
pub struct NvDevice {
    client: RmClient,
    minor: u32,
    gpu_fd: File,
    h_device: u32,
    arch: Arch,
    uuid: [u8; 16],
    usermode: CpuMapping,
    next_handle: u32,
    /// Every buffer allocated and not yet freed, by VA: what `Drop` unmaps and releases.
    live: BTreeMap<u64, NvBuffer>,
    /// VA ranges reserved for UVM channel registration (CPU-visible window).
    channel_windows: Vec<(u64, u64)>,
    signals: NvBuffer,
    free_slots: Vec<u32>,
    order_slot: u32,
    order_value: u64,
    last_channel: Option<usize>,
    channels: Vec<Channel>,
    kargs: Ring,
    programs: BTreeMap<u64, Program>,
    next_program: u64,
    sm_count: u32,
    memory_bytes: Option<u64>,
    name: String,
    pci_address: String,
    grid_layout: GridLayout,
    local: Option<LocalMemory>,
    /// Local-memory buffers replaced by a larger one, freed once the compute channel has
    /// passed the sequence that last used them.
    retired_local: Vec<(NvBuffer, u64)>,
    /// Per-submission scratch kept between submissions so that a launch allocates nothing
    /// once they have grown: the two channels' pushbuffers, and cbuf0 + QMD bytes.
    push_scratch: [PushBuffer; 2],
    launch_bytes: Vec<u8>,
}

/// What sizing shader local memory (SLM) needs (GR_GET_INFO; litter values are the chip's
/// full, unfloorswept counts, which is what TPC-indexed SLM is laid out by).
#[derive(Debug, Clone, Copy)]
struct GridLayout {
    max_warps_per_sm: u32,
    sms_per_tpc: u32,
    tpcs_per_gpc: u32,
    gpcs: u32,
}

/// The SLM buffer the compute channel is configured with.
#[derive(Debug, Clone, Copy)]
struct LocalMemory {
    buffer: NvBuffer,
    /// Bytes of local memory each thread gets (what every QMD states).
    per_thread: u32,
}

impl GridLayout {
    /// SLM sizes for `per_thread` bytes per thread: (per-thread size as configured, bytes per
    /// TPC, whole buffer). tinygrad's sizing (`_ensure_has_local_memory`): 32 threads per warp,
    /// rounded to 512 B per warp, every warp slot of every SM of a TPC, 32 KiB granules per
    /// TPC, 128 KiB granules overall.
    fn local_memory_sizes(self, per_thread: u32) -> (u32, u64, u64) {
        let per_thread = per_thread.next_multiple_of(32);
        let per_warp = (u64::from(per_thread) * 32).next_multiple_of(0x200);
        let per_tpc = (per_warp * u64::from(self.max_warps_per_sm) * u64::from(self.sms_per_tpc))
            .next_multiple_of(0x8000);
        let total = (per_tpc * u64::from(self.tpcs_per_gpc) * u64::from(self.gpcs))
            .next_multiple_of(0x2_0000);
        (per_thread, per_tpc, total)
    }
}

// SAFETY: the raw pointers point into mappings owned by this device; all access goes through
// `&mut self` or volatile reads of GPU-written memory.
unsafe impl Send for NvDevice {}

const COMPUTE: usize = 0;
const COPY: usize = 1;

impl NvDevice {
    /// Open `nv:<index>` and bring up channels (reference §1.3 steps 1–22).
    pub fn open(index: u32) -> Result<NvDevice, NvError> {
        let mut client = RmClient::open()?;
        let cards = client.card_info()?;
        let card =
            *cards.get(index as usize).ok_or(NvError::NoSuchGpu { index, found: cards.len() })?;
        client.init_uvm()?;
        let gpu_fd = client.open_gpu_fd(card.minor_number)?;
        let h_client = client.h_client();
        let (h_device, h_subdevice) = client.open_device(card.gpu_id)?;
        let [sm_version, tpcs, max_warps_per_sm, litter_gpcs, litter_tpcs, litter_sms] = client
            .gr_info(
                h_subdevice,
                [
                    ctrl::NV2080_CTRL_GR_INFO_INDEX_SM_VERSION,
                    ctrl::NV2080_CTRL_GR_INFO_INDEX_SHADER_PIPE_SUB_COUNT,
                    ctrl::NV2080_CTRL_GR_INFO_INDEX_MAX_WARPS_PER_SM,
                    ctrl::NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_GPCS,
                    ctrl::NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_TPC_PER_GPC,
                    ctrl::NV2080_CTRL_GR_INFO_INDEX_LITTER_NUM_SM_PER_TPC,
                ],
            )?;
        let arch =
            Arch::from_sm_version(sm_version).ok_or(NvError::UnsupportedGpu { sm_version })?;
        // Sandboxes (gVisor) may refuse FB queries: the size is then unknown, not an error.
        let memory_bytes = client
            .fb_info(h_subdevice, [ctrl::NV2080_CTRL_FB_INFO_INDEX_TOTAL_RAM_SIZE])
            .ok()
            .map(|[kib]| u64::from(kib) << 10);
        let classes = client.class_list(h_device)?;
        let pick = |want: &[u32], what: &'static str| {
            want.iter().copied().find(|c| classes.contains(c)).ok_or(NvError::MissingClass { what })
        };
        let usermode_class = pick(arch.usermode_classes(), "usermode")?;
        let gpfifo_class = pick(arch.gpfifo_classes(), "GPFIFO channel")?;
        let compute_class = pick(&[arch.compute_class()], "compute")?;
        let copy_class = pick(&[arch.copy_class()], "copy engine")?;

        let h_usermode = client.alloc_without_params(h_subdevice, 0, usermode_class)?;
        let usermode = CpuMapping {
            ptr: client.map_to_cpu(
                card.minor_number,
                h_device,
                h_usermode,
                USERMODE_BYTES,
                None,
                2,
            )?,
            len: USERMODE_BYTES,
        };

        let mut va = NV_VASPACE_ALLOCATION_PARAMETERS {
            vaBase: flags::VASPACE_BASE,
            vaSize: flags::VASPACE_SIZE,
            flags: flags::VASPACE_FLAGS_UVM_OWNED,
            ..Default::default()
        };
        let h_vaspace = client.alloc(h_device, 0, class::FERMI_VASPACE_A, &mut va)?;

        let mut gid = NV2080_CTRL_GPU_GET_GID_INFO_PARAMS {
            flags: flags::GID_FLAGS_FORMAT_BINARY,
            length: 16,
            ..Default::default()
        };
        client.control(h_subdevice, &mut gid)?;
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&gid.data[..16]);
        let mut reg =
            UVM_REGISTER_GPU_PARAMS { gpu_uuid: uuid, rmCtrlFd: -1, ..Default::default() };
        client.uvm(&mut reg)?;
        let mut regva = UVM_REGISTER_GPU_VASPACE_PARAMS {
            gpuUuid: uuid,
            rmCtrlFd: client.ctl().as_raw_fd(),
            hClient: h_client,
            hVaSpace: h_vaspace,
            rmStatus: 0,
        };
        client.uvm(&mut regva)?;

        let pci_address = crate::gpu::pci_address(&card);
        let mut device = NvDevice {
            client,
            minor: card.minor_number,
            gpu_fd,
            h_device,
            arch,
            uuid,
            usermode,
            next_handle: 0x1001,
            live: BTreeMap::new(),
            channel_windows: Vec::new(),
            signals: NvBuffer { handle: 0, va: 0, size: 0, host: true },
            free_slots: Vec::new(),
            order_slot: 0,
            order_value: 0,
            last_channel: None,
            channels: Vec::new(),
            kargs: Ring { va: 0, size: KARGS_RING, head: 0, inflight: VecDeque::new() },
            programs: BTreeMap::new(),
            next_program: 1,
            sm_count: tpcs * litter_sms,
            memory_bytes,
            name: crate::gpu::model_name(&pci_address)
                .unwrap_or_else(|| format!("NVIDIA {arch:?} GPU")),
            pci_address,
            grid_layout: GridLayout {
                max_warps_per_sm,
                sms_per_tpc: litter_sms,
                tpcs_per_gpc: litter_tpcs,
                gpcs: litter_gpcs,
            },
            local: None,
            retired_local: Vec::new(),
            push_scratch: [PushBuffer::new(), PushBuffer::new()],
            launch_bytes: Vec::new(),
        };
        device.signals = device.alloc(SIGNAL_SLOTS * 16, true)?;
        device.free_slots = (0..SIGNAL_SLOTS as u32).rev().collect();
        device.order_slot = device.create_signal()?;
        device.kargs.va = device.alloc(KARGS_RING, true)?.va;

        let mut tsg = NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS {
            engineType: flags::NV2080_ENGINE_TYPE_GRAPHICS,
            ..Default::default()
        };
        let h_tsg = device.client.alloc(h_device, 0, class::KEPLER_CHANNEL_GROUP_A, &mut tsg)?;
        let mut share = NV_CTXSHARE_ALLOCATION_PARAMETERS {
            hVASpace: h_vaspace,
            flags: flags::CTXSHARE_SUBCONTEXT_ASYNC,
            subctxId: 0,
        };
        let h_ctxshare = device.client.alloc(h_tsg, 0, class::FERMI_CONTEXT_SHARE_A, &mut share)?;
        let gpfifo = device.alloc_vram(0x20_0000, true, true)?;
        let notifier = device.alloc_notifier(48 << 20)?.handle;
        for (i, engine_class) in [compute_class, copy_class].into_iter().enumerate() {
            let ring_off = i as u64 * 0x10_0000;
            let mut p = NV_CHANNEL_ALLOC_PARAMS {
                hObjectError: notifier,
                hObjectBuffer: gpfifo.handle,
                gpFifoOffset: gpfifo.va + ring_off,
                gpFifoEntries: GPFIFO_ENTRIES as u32,
                hContextShare: h_ctxshare,
                // The copy channel gets its own runqueue: otherwise it waits behind the compute
                // channel whenever that one stalls on a wait-for-idle under a long kernel.
                flags: if i == COPY { flags::CHANNEL_RUNQUEUE_ONE } else { 0 },
                ..Default::default()
            };
            p.hUserdMemory[0] = gpfifo.handle;
            p.userdOffset[0] = ring_off + GPFIFO_ENTRIES * 8;
            let h_channel = device.client.alloc(h_tsg, 0, gpfifo_class, &mut p)?;
            device.client.alloc_without_params(h_channel, 0, engine_class)?;
            let mut token =
                NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS { workSubmitToken: u32::MAX };
            device.client.control(h_channel, &mut token)?;
            let (uvm_base, uvm_length) = Self::reserve_va(CHANNEL_WINDOW, true)?;
            device.channel_windows.push((uvm_base, uvm_length));
            let mut rc = UVM_REGISTER_CHANNEL_PARAMS {
                gpuUuid: uuid,
                rmCtrlFd: device.client.ctl().as_raw_fd(),
                hClient: h_client,
                hChannel: h_channel,
                base: uvm_base,
                length: uvm_length,
                ..Default::default()
            };
            device.client.uvm(&mut rc)?;
            let push_va = device.alloc(PUSH_RING, true)?.va;
            let progress_slot = device.create_signal()?;
            device.channels.push(Channel {
                token: token.workSubmitToken,
                ring_va: gpfifo.va + ring_off,
                userd_va: gpfifo.va + ring_off + GPFIFO_ENTRIES * 8,
                put: 0,
                seq: 0,
                progress_slot,
                push: Ring { va: push_va, size: PUSH_RING, head: 0, inflight: VecDeque::new() },
            });
        }
        // The 3-byte form; older drivers read only the first two bytes of it.
        let mut schedule =
            NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS_V580 { bEnable: 1, ..Default::default() };
        device.client.control(h_tsg, &mut schedule)?;

        let mut init = [PushBuffer::new(), PushBuffer::new()];
        init[COMPUTE]
            .set_object(subchannel::COMPUTE, compute_class)?
            .inc(
                subchannel::COMPUTE,
                compute::SET_SHADER_LOCAL_MEMORY_WINDOW_A,
                &[(LOCAL_WINDOW_BASE >> 32) as u32, LOCAL_WINDOW_BASE as u32],
            )?
            .inc(
                subchannel::COMPUTE,
                compute::SET_SHADER_SHARED_MEMORY_WINDOW_A,
                &[(SHARED_WINDOW_BASE >> 32) as u32, SHARED_WINDOW_BASE as u32],
            )?;
        init[COPY].set_object(subchannel::COPY, copy_class)?;
        device.flush(&mut init)?;
        device.wait_idle(Instant::now() + INTERNAL_TIMEOUT)?;
        Ok(device)
    }

    /// Architecture family.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Number of enabled SMs (TPCs × SMs per TPC).
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// Marketing name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// PCI address `domain:bus:device.function`.
    pub fn pci_address(&self) -> &str {
        &self.pci_address
    }

    /// Video memory in bytes, when the driver answered the FB query.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_bytes
    }

    /// The GPU's UUID.
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// Driver version.
    pub fn driver_version(&self) -> crate::rm::DriverVersion {
        self.client.version()
    }

    /// Reserve GPU VA for `size` bytes in the CPU-visible or GPU-only window; returns (start,
    /// reserved size).
    fn reserve_va(size: u64, cpu_visible: bool) -> Result<(u64, u64), NvError> {
        va::reserve(size, cpu_visible)
            .ok_or(NvError::OutOfSpace { what: "GPU virtual address window" })
    }

    fn uvm_map(&self, va: u64, size: u64, handle: u32) -> Result<(), NvError> {
        let mut range =
            UVM_CREATE_EXTERNAL_RANGE_PARAMS { base: va, length: size, ..Default::default() };
        self.client.uvm(&mut range)?;
        if self.client.version().uvm_map_external_gpu_slots()
            == UVM_MAP_EXTERNAL_ALLOCATION_PARAMS::GPU_SLOTS
        {
            self.uvm_map_external::<UVM_MAP_EXTERNAL_ALLOCATION_PARAMS>(va, size, handle)
        } else {
            self.uvm_map_external::<UVM_MAP_EXTERNAL_ALLOCATION_PARAMS_V535>(va, size, handle)
        }
    }

    /// UVM_MAP_EXTERNAL_ALLOCATION in layout `P`.
    fn uvm_map_external<P: UvmMapExternalAllocation + UvmParams>(
        &self,
        va: u64,
        size: u64,
        handle: u32,
    ) -> Result<(), NvError> {
        let gpu = UvmGpuMappingAttributes {
            gpuUuid: self.uuid,
            gpuMappingType: flags::UVM_MAPPING_READ_WRITE_ATOMIC,
            ..Default::default()
        };
        let mut map = P::new_boxed(
            va,
            size,
            gpu,
            self.client.ctl().as_raw_fd(),
            self.client.h_client(),
            handle,
        );
        self.client.uvm(&mut *map)?;
        Ok(())
    }

    fn alloc_vram(
        &mut self,
        size: u64,
        cpu_visible: bool,
        contiguous: bool,
    ) -> Result<NvBuffer, NvError> {
        let (va, size) = Self::reserve_va(size.max(1), cpu_visible)?;
        let huge = size >= 8 << 20;
        let page = if huge { 2 << 20 } else { 0x1000 };
        let mut p = NV_MEMORY_ALLOCATION_PARAMS {
            owner: self.client.h_client(),
            r#type: flags::NVOS32_TYPE_IMAGE,
            flags: flags::VIDMEM_ALLOC_FLAGS,
            attr: if contiguous {
                flags::ATTR_PHYSICALITY_CONTIGUOUS
            } else {
                flags::ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS
            } | if huge { flags::ATTR_PAGE_SIZE_HUGE } else { 0 },
            attr2: flags::ATTR2_VIDMEM | if huge { flags::ATTR2_PAGE_SIZE_HUGE_2MB } else { 0 },
            format: flags::MEMORY_FORMAT_PITCH,
            size,
            alignment: page,
            limit: size - 1,
            ..Default::default()
        };
        let handle =
            self.alloc_memory(class::NV01_MEMORY_LOCAL_USER, &mut p, (va, size), cpu_visible)?;
        let buffer = NvBuffer { handle, va, size, host: cpu_visible };
        if cpu_visible {
            if let Err(e) =
                self.client.map_to_cpu(self.minor, self.h_device, handle, size, Some(va), 0)
            {
                // Nothing of ours is mapped at `va` (it may be someone else's): no munmap.
                self.release(buffer, false);
                return Err(e.into());
            }
        }
        let mapped = self.uvm_map(va, size, handle);
        self.keep_or_release(buffer, mapped)
    }

    /// RM_ALLOC of memory `class` under the device; on failure the VA range reserved for it
    /// (`range`, in the CPU-visible window or not) goes back.
    fn alloc_memory(
        &self,
        class: u32,
        params: &mut NV_MEMORY_ALLOCATION_PARAMS,
        (va, size): (u64, u64),
        cpu_visible: bool,
    ) -> Result<u32, NvError> {
        self.client.alloc(self.h_device, 0, class, params).map_err(|e| {
            va::release(va, size, cpu_visible);
            e.into()
        })
    }

    /// The channels' error notifier: system memory the GPU writes, never mapped for the CPU.
    fn alloc_notifier(&mut self, size: u64) -> Result<NvBuffer, NvError> {
        let (va, size) = Self::reserve_va(size, false)?;
        let mut p = NV_MEMORY_ALLOCATION_PARAMS {
            owner: self.client.h_client(),
            r#type: flags::NVOS32_TYPE_NOTIFIER,
            flags: flags::SYSMEM_ALLOC_FLAGS,
            attr: flags::ATTR_PHYSICALITY_ALLOW_NONCONTIGUOUS | flags::ATTR_LOCATION_PCI,
            attr2: flags::ATTR2_SYSMEM_UNCACHED,
            format: flags::MEMORY_FORMAT_PITCH,
            size,
            alignment: 0x1000,
            limit: size - 1,
            ..Default::default()
        };
        let handle = self.alloc_memory(class::NV01_MEMORY_SYSTEM, &mut p, (va, size), false)?;
        let buffer = NvBuffer { handle, va, size, host: false };
        let mapped = self.uvm_map(va, size, handle);
        self.keep_or_release(buffer, mapped)
    }

    /// Allocate `size` bytes: device memory (VRAM, GPU-only) or host-visible pinned memory.
    pub fn alloc(&mut self, size: u64, host_visible: bool) -> Result<NvBuffer, NvError> {
        if !host_visible {
            return self.alloc_vram(size, false, false);
        }
        let (va, size) = Self::reserve_va(size.max(1), true)?;
        // GPU VA == CPU VA for host-visible buffers.
        if let Err(source) =
            crate::rm::client::mmap_at(Some(va), size, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1)
        {
            // Something else of this process lives there: keep the range reserved so it is not
            // handed out again.
            if source.raw_os_error() != Some(libc::EEXIST) {
                va::release(va, size, true);
            }
            return Err(RmError::Mmap { call: "host buffer".into(), source }.into());
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        let buffer = NvBuffer { handle, va, size, host: true };
        // SAFETY: `va..va + size` is the anonymous mapping just made for this buffer, which
        // stays mapped until `release` frees the memory object (RM_FREE comes before munmap
        // there); the CPU reaches it only through raw-pointer copies in `write_host`/`read_host`
        // and volatile signal accesses, never through a Rust reference.
        let registered = unsafe {
            self.client.alloc_os_descriptor(&self.gpu_fd, self.h_device, handle, va, size)
        }
        .map_err(NvError::from)
        .and_then(|_| self.uvm_map(va, size, handle));
        self.keep_or_release(buffer, registered)
    }

    /// Track `buffer` if `result` is Ok; otherwise release what of it exists and pass the
    /// error on.
    fn keep_or_release(
        &mut self,
        buffer: NvBuffer,
        result: Result<(), NvError>,
    ) -> Result<NvBuffer, NvError> {
        match result {
            Ok(()) => {
                self.live.insert(buffer.va, buffer);
                Ok(buffer)
            }
            Err(e) => {
                self.release(buffer, true);
                Err(e)
            }
        }
    }

    /// `buffer` is one this device allocated and has not freed (its fields are public, so a
    /// stale or made-up copy must not reach memory).
    fn check_live(&self, buffer: &NvBuffer) -> Result<(), NvError> {
        if self.live.get(&buffer.va) == Some(buffer) {
            Ok(())
        } else {
            Err(NvError::ForeignBuffer { va: buffer.va, size: buffer.size })
        }
    }

    /// Free a buffer from [`NvDevice::alloc`]. The caller makes sure the GPU is done with it.
    pub fn free(&mut self, buffer: NvBuffer) {
        // A stale copy of a freed buffer must not untrack the buffer now at its address.
        if self.live.get(&buffer.va) == Some(&buffer) {
            self.live.remove(&buffer.va);
            self.release(buffer, true);
        }
    }

    /// Undo a buffer: its UVM range, its RM memory, its CPU mapping (when `mapped`) and its VA.
    /// Failures are ignored: each step releases what exists.
    fn release(&mut self, buffer: NvBuffer, mapped: bool) {
        if self.client.version().uvm_free_has_length() {
            let mut p =
                UVM_FREE_PARAMS { base: buffer.va, length: buffer.size, ..Default::default() };
            let _ = self.client.uvm(&mut p);
        } else {
            let mut p = UVM_FREE_PARAMS_V590 { base: buffer.va, ..Default::default() };
            let _ = self.client.uvm(&mut p);
        }
        let _ = self.client.free(self.h_device, buffer.handle);
        if buffer.host && mapped {
            // SAFETY: a host buffer's CPU mapping at its VA is this device's (made by `alloc`
            // or `map_to_cpu`); the buffer is no longer tracked, so `check_live` keeps every
            // later access out, and its RM object was freed just above.
            unsafe { unmap(buffer.va, buffer.size) };
        }
        va::release(buffer.va, buffer.size, buffer.host);
    }

    /// Write into a host-visible buffer.
    pub fn write_host(
        &mut self,
        buffer: &NvBuffer,
        offset: u64,
        data: &[u8],
    ) -> Result<(), NvError> {
        self.check_live(buffer)?;
        check_host_range(buffer, offset, data.len())?;
        // SAFETY: range checked against the buffer's live CPU mapping at `va`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (buffer.va + offset) as *mut u8,
                data.len(),
            )
        };
        Ok(())
    }

    /// Read from a host-visible buffer.
    pub fn read_host(&self, buffer: &NvBuffer, offset: u64, out: &mut [u8]) -> Result<(), NvError> {
        self.check_live(buffer)?;
        check_host_range(buffer, offset, out.len())?;
        // SAFETY: range checked against the buffer's live CPU mapping at `va`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (buffer.va + offset) as *const u8,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        Ok(())
    }

    /// Load a cubin for this GPU's SM; returns a program id.
    pub fn load_program(&mut self, image: &[u8]) -> Result<u64, NvError> {
        let cubin = Cubin::parse(image)?;
        if cubin.sm != self.arch.sm() {
            return Err(NvError::WrongSm { cubin: cubin.sm, device: self.arch.sm() });
        }
        let size = cubin.image.bytes.len() as u64;
        let buffer = self.alloc(size, false)?;
        let staging = match self.alloc(size, true) {
            Ok(staging) => staging,
            Err(e) => {
                self.free(buffer);
                return Err(e);
            }
        };
        let uploaded = self.upload(&staging, &buffer, &cubin.image.at(buffer.va));
        match uploaded {
            Ok(()) => self.free(staging),
            // The copy may still be running: leak both buffers rather than free them under it.
            Err(e @ NvError::Timeout { .. }) => return Err(e),
            Err(e) => {
                self.free(staging);
                self.free(buffer);
                return Err(e);
            }
        }
        let id = self.next_program;
        self.next_program += 1;
        self.programs.insert(id, Program { image: buffer, cubin });
        Ok(id)
    }

    /// Copy `bytes` to the device buffer `dst` through the host-visible `staging` and wait.
    fn upload(&mut self, staging: &NvBuffer, dst: &NvBuffer, bytes: &[u8]) -> Result<(), NvError> {
        self.write_host(staging, 0, bytes)?;
        let done = self.create_signal()?;
        let result = self
            .submit(&[
                NvCommand::Copy { src: staging.va, dst: dst.va, len: bytes.len() as u64 },
                NvCommand::Signal { slot: done, value: 1 },
            ])
            .and_then(|()| self.wait_signal(done, 1, Instant::now() + INTERNAL_TIMEOUT));
        if !matches!(result, Err(NvError::Timeout { .. })) {
            self.destroy_signal(done);
        }
        result
    }

    /// A kernel's metadata.
    pub fn kernel(&self, program: u64, name: &str) -> Option<&CubinKernel> {
        self.programs.get(&program)?.cubin.kernel(name)
    }

    /// Kernel names of a program.
    pub fn kernel_names(&self, program: u64) -> Vec<String> {
        self.programs
            .get(&program)
            .map(|p| p.cubin.kernels.iter().map(|k| k.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Unload a program.
    pub fn unload_program(&mut self, program: u64) {
        if let Some(p) = self.programs.remove(&program) {
            self.free(p.image);
        }
    }

    /// A fresh signal slot, value 0.
    pub fn create_signal(&mut self) -> Result<u32, NvError> {
        let slot = self.free_slots.pop().ok_or(NvError::OutOfSignals)?;
        self.set_signal(slot, 0)?;
        Ok(slot)
    }

    /// Return a slot.
    pub fn destroy_signal(&mut self, slot: u32) {
        if (slot as u64) < SIGNAL_SLOTS && !self.free_slots.contains(&slot) {
            self.free_slots.push(slot);
        }
    }

    /// GPU address of a slot's value (timestamp at +8).
    pub fn signal_address(&self, slot: u32) -> Result<u64, NvError> {
        if u64::from(slot) >= SIGNAL_SLOTS {
            return Err(NvError::NoSuchSignal { slot });
        }
        Ok(self.slot_address(slot))
    }

    /// Address of a slot known to be in range (the device's own slots, or checked ones).
    fn slot_address(&self, slot: u32) -> u64 {
        debug_assert!(u64::from(slot) < SIGNAL_SLOTS);
        self.signals.va + u64::from(slot) * 16
    }

    /// Value of an in-range slot.
    fn slot_value(&self, slot: u32) -> u64 {
        // SAFETY: in-range slots lie in the signal buffer, mapped for the device's lifetime;
        // the GPU writes them, hence volatile.
        unsafe { std::ptr::read_volatile(self.slot_address(slot) as *const u64) }
    }

    /// Current value.
    pub fn signal_value(&self, slot: u32) -> Result<u64, NvError> {
        self.signal_address(slot)?;
        Ok(self.slot_value(slot))
    }

    /// GPU timestamp (ns) written with the last release.
    pub fn signal_timestamp(&self, slot: u32) -> Result<u64, NvError> {
        let address = self.signal_address(slot)? + 8;
        // SAFETY: as in `slot_value`.
        Ok(unsafe { std::ptr::read_volatile(address as *const u64) })
    }

    /// Set from the CPU.
    pub fn set_signal(&mut self, slot: u32, value: u64) -> Result<(), NvError> {
        let address = self.signal_address(slot)?;
        // SAFETY: as in `slot_value`.
        unsafe { std::ptr::write_volatile(address as *mut u64, value) };
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Wait until `slot` ≥ `value` or the deadline passes.
    pub fn wait_signal(&self, slot: u32, value: u64, deadline: Instant) -> Result<(), NvError> {
        self.signal_address(slot)?;
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let seen = self.slot_value(slot);
            if seen >= value {
                return Ok(());
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) {
                if Instant::now() >= deadline {
                    return Err(NvError::Timeout {
                        slot,
                        wanted: value,
                        last_seen: seen,
                        waited: start.elapsed(),
                    });
                }
                if start.elapsed() > Duration::from_millis(1) {
                    std::thread::yield_now();
                }
            }
            std::hint::spin_loop();
        }
    }

    fn wait_idle(&self, deadline: Instant) -> Result<(), NvError> {
        for ch in &self.channels {
            self.wait_signal(ch.progress_slot, ch.seq, deadline)?;
        }
        Ok(())
    }

    /// Encode and submit commands. They run in order with each other and after everything
    /// submitted before, across the compute and copy channels (a semaphore hand-off at every
    /// channel change).
    pub fn submit(&mut self, commands: &[NvCommand<'_>]) -> Result<(), NvError> {
        self.submit_inner(commands, self.last_channel)
    }

    /// Like [`NvDevice::submit`], but not ordered after earlier submissions: lets a copy run
    /// while a previously submitted kernel is still executing. Order with signals if needed.
    pub fn submit_concurrent(&mut self, commands: &[NvCommand<'_>]) -> Result<(), NvError> {
        self.submit_inner(commands, None)
    }

    fn submit_inner(
        &mut self,
        commands: &[NvCommand<'_>],
        mut last: Option<usize>,
    ) -> Result<(), NvError> {
        let local = self.local_memory_needed(commands)?;
        self.ensure_local_memory(local)?;
        // Reuse last submission's pushbuffers (an early error return leaves fresh ones).
        let mut pbs = std::mem::take(&mut self.push_scratch);
        for pb in &mut pbs {
            pb.clear();
        }
        let order_addr = self.slot_address(self.order_slot);
        // A grid launched in this submission may still be running (no WFI since).
        let mut compute_running = false;
        for command in commands {
            let ch = match command {
                NvCommand::Copy { .. } => COPY,
                NvCommand::Launch { .. } => COMPUTE,
                _ => last.unwrap_or(COMPUTE),
            };
            if let Some(prev) = last.filter(|&p| p != ch) {
                self.order_value += 1;
                pbs[prev].semaphore_release(order_addr, self.order_value)?;
                pbs[ch].semaphore_acquire(order_addr, self.order_value)?;
                compute_running &= prev != COMPUTE;
            }
            last = Some(ch);
            match command {
                NvCommand::Copy { src, dst, len } => {
                    pbs[COPY].copy(*src, *dst, *len)?;
                }
                NvCommand::Signal { slot, value } => {
                    pbs[ch].semaphore_release(self.signal_address(*slot)?, *value)?;
                    compute_running &= ch != COMPUTE;
                }
                NvCommand::Wait { slot, value } => {
                    pbs[ch].semaphore_acquire(self.signal_address(*slot)?, *value)?;
                }
                NvCommand::Launch { program, kernel, grid, block, dynamic_shared_bytes, args } => {
                    // A launch only queues its grid: without a wait the next grid may
                    // overlap it. Signals release with a WFI, so they already separate.
                    if compute_running {
                        pbs[COMPUTE].wait_for_idle()?;
                    }
                    let qmd_va = self.prepare_launch(
                        *program,
                        kernel,
                        *grid,
                        *block,
                        *dynamic_shared_bytes,
                        args,
                    )?;
                    pbs[COMPUTE].launch_qmd(qmd_va)?;
                    compute_running = true;
                }
            }
        }
        if last.is_some() {
            self.last_channel = last;
        }
        let flushed = self.flush(&mut pbs);
        self.push_scratch = pbs;
        flushed
    }

    /// Make sure the compute channel has at least `per_thread` bytes of local memory per
    /// thread. Growing allocates a new SLM buffer and switches the channel to it in a
    /// submission of its own, behind a wait-for-idle; the device's state changes only once that
    /// is on the GPU, and the old buffer is retired until the channel has passed it.
    fn ensure_local_memory(&mut self, per_thread: u32) -> Result<(), NvError> {
        if per_thread == 0 || self.local.is_some_and(|l| l.per_thread >= per_thread) {
            return Ok(());
        }
        let done = self.slot_value(self.channels[COMPUTE].progress_slot);
        let (reusable, kept): (Vec<_>, Vec<_>) =
            self.retired_local.drain(..).partition(|&(_, seq)| seq <= done);
        self.retired_local = kept;
        for (buffer, _) in reusable {
            self.free(buffer);
        }
        let (per_thread, per_tpc, total) = self.grid_layout.local_memory_sizes(per_thread);
        let buffer = self.alloc_vram(total, false, false)?;
        let mut switch = PushBuffer::new();
        // Grids still running keep using the old SLM: switch only once they have drained.
        switch
            .wait_for_idle()?
            .inc(
                subchannel::COMPUTE,
                compute::SET_SHADER_LOCAL_MEMORY_A,
                &[(buffer.va >> 32) as u32, buffer.va as u32],
            )?
            .inc(
                subchannel::COMPUTE,
                compute::SET_SHADER_LOCAL_MEMORY_NON_THROTTLED_A,
                &[(per_tpc >> 32) as u32, per_tpc as u32, 0xFF],
            )?;
        if let Err(e) = self.flush(&mut [switch, PushBuffer::new()]) {
            self.free(buffer);
            return Err(e);
        }
        if let Some(old) = self.local.replace(LocalMemory { buffer, per_thread }) {
            self.retired_local.push((old.buffer, self.channels[COMPUTE].seq));
        }
        Ok(())
    }

    /// Local memory per thread the launches in `commands` need: the largest stack frame plus
    /// the space above the initial stack pointer (0 when none uses local memory).
    fn local_memory_needed(&self, commands: &[NvCommand<'_>]) -> Result<u32, NvError> {
        let mut need = 0;
        for command in commands {
            let NvCommand::Launch { program, kernel, .. } = command else { continue };
            let Some(k) = self.kernel(*program, kernel) else { continue };
            if k.local_bytes == 0 {
                continue;
            }
            if k.local_bytes > MAX_LOCAL_BYTES_PER_THREAD {
                return Err(NvError::LocalMemoryTooLarge {
                    kernel: k.name.clone(),
                    bytes: k.local_bytes,
                    limit: MAX_LOCAL_BYTES_PER_THREAD,
                });
            }
            need = need.max(k.local_bytes + STACK_RESERVE);
        }
        Ok(need)
    }

    fn prepare_launch(
        &mut self,
        program: u64,
        name: &str,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared_bytes: u32,
        args: &[u8],
    ) -> Result<u64, NvError> {
        let arch = self.arch;
        let p = self.programs.get(&program).ok_or(NvError::NoSuchProgram { program })?;
        let k =
            p.cubin.kernel(name).ok_or_else(|| NvError::NoSuchKernel { name: name.to_string() })?;
        let program_address = p.image.va + k.code_offset;
        let template = p.cubin.constant0_template(k);
        build_cbuf0_into(&mut self.launch_bytes, arch, k, template, grid, block, args)?;
        let cb_len = self.launch_bytes.len();
        let qmd_off = (cb_len as u64).next_multiple_of(256);
        let total = qmd_off + arch.qmd_version().size_bytes() as u64;
        let seq = self.channels[COMPUTE].seq + 1;
        let (va, wait) = self
            .kargs
            .reserve(total, 256, seq)
            .ok_or(NvError::OutOfSpace { what: "kernel arguments" })?;
        if wait >= seq {
            // The ring wrapped onto launches of this very submission, which cannot finish
            // before it is flushed.
            return Err(NvError::OutOfSpace {
                what: "kernel-argument ring (too many launches in one submission; split it)",
            });
        }
        self.wait_signal(
            self.channels[COMPUTE].progress_slot,
            wait,
            Instant::now() + INTERNAL_TIMEOUT,
        )?;
        let qmd = build_qmd(
            arch,
            k,
            &QmdLaunch {
                program_address,
                image_address: p.image.va,
                cbuf0_address: va,
                cbuf0_bytes: cb_len as u32,
                grid,
                block,
                dynamic_shared_bytes,
                local_bytes_per_thread: self.local.map_or(0, |l| l.per_thread),
                release: None,
            },
        )?;
        // cbuf0 then the QMD in one reused buffer; they land `qmd_off` apart in the ring.
        qmd.append_bytes(&mut self.launch_bytes);
        let (cb, q) = self.launch_bytes.split_at(cb_len);
        // SAFETY: [va, va + total) was just reserved in the kargs ring (host memory mapped for the
        // device's lifetime) and the GPU finished with its previous use (waited above); `cb`
        // ends at or before `qmd_off` and `q` is the QMD's size, so both stay inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(cb.as_ptr(), va as *mut u8, cb.len());
            std::ptr::copy_nonoverlapping(q.as_ptr(), (va + qmd_off) as *mut u8, q.len());
        }
        Ok(va + qmd_off)
    }

    /// Put each non-empty pushbuffer on its channel: progress release, copy to the push ring,
    /// GPFIFO entry, GPPut, doorbell (reference §2.1).
    fn flush(&mut self, pbs: &mut [PushBuffer; 2]) -> Result<(), NvError> {
        for (i, pb) in pbs.iter_mut().enumerate() {
            if pb.dwords().is_empty() {
                continue;
            }
            let seq = self.channels[i].seq + 1;
            let progress = self.slot_address(self.channels[i].progress_slot);
            pb.semaphore_release(progress, seq)?;
            let bytes = pb.dwords().len() as u64 * 4;
            let (va, wait) = self.channels[i]
                .push
                .reserve(bytes, 256, seq)
                .ok_or(NvError::OutOfSpace { what: "pushbuffer" })?;
            self.wait_signal(
                self.channels[i].progress_slot,
                wait,
                Instant::now() + INTERNAL_TIMEOUT,
            )?;
            let entry = gpfifo_entry(va, pb.dwords().len(), true, false)?;
            // One GPFIFO entry per flush, so entries in flight = sequences not yet completed.
            // Keep one slot free so GP_PUT never catches up with GP_GET. (USERD's GP_GET
            // write-back may be disabled; the progress semaphore is what the GPU surely writes.)
            let oldest_allowed = seq.saturating_sub(GPFIFO_ENTRIES - 1);
            self.wait_signal(
                self.channels[i].progress_slot,
                oldest_allowed,
                Instant::now() + INTERNAL_TIMEOUT,
            )?;
            let ch = &mut self.channels[i];
            // SAFETY: writes into this channel's push ring slot (reserved above), its GPFIFO ring
            // entry and USERD GP_PUT, and the usermode doorbell — all mappings this device owns.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    pb.dwords().as_ptr(),
                    va as *mut u32,
                    pb.dwords().len(),
                );
                std::ptr::write_volatile(
                    (ch.ring_va + (ch.put % GPFIFO_ENTRIES) * 8) as *mut u64,
                    entry,
                );
                ch.put = (ch.put + 1) % GPFIFO_ENTRIES;
                fence(Ordering::SeqCst);
                std::ptr::write_volatile(
                    (ch.userd_va + host::USERD_GP_PUT as u64) as *mut u32,
                    ch.put as u32,
                );
                fence(Ordering::SeqCst);
                std::ptr::write_volatile(
                    self.usermode.ptr.add(host::USERMODE_NOTIFY_CHANNEL_PENDING) as *mut u32,
                    ch.token,
                );
            }
            ch.seq = seq;
        }
        Ok(())
    }
}

impl Drop for NvDevice {
    /// Wait (briefly) for queued work, then unmap and release every buffer's CPU mapping and
    /// VA range. RM objects go with the root client and UVM state with its file descriptors
    /// when the fields drop after this.
    fn drop(&mut self) {
        let _ = self.wait_idle(Instant::now() + DROP_TIMEOUT);
        for buffer in std::mem::take(&mut self.live).into_values() {
            if buffer.host {
                // SAFETY: a live host buffer's CPU mapping at its VA is this device's, and the
                // device is going away, so nothing reaches it again. A GPU still running after
                // the deadline writes to pages RM keeps pinned until the client closes, no
                // longer mapped here.
                unsafe { unmap(buffer.va, buffer.size) };
            }
            va::release(buffer.va, buffer.size, buffer.host);
        }
        for (start, size) in self.channel_windows.drain(..) {
            va::release(start, size, true);
        }
    }
}

fn check_host_range(buffer: &NvBuffer, offset: u64, len: usize) -> Result<(), NvError> {
    if !buffer.host || offset.checked_add(len as u64).is_none_or(|end| end > buffer.size) {
        return Err(NvError::BadRange { offset, len: len as u64, size: buffer.size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_waits_only_for_space_it_reuses() {
        let mut r = Ring { va: 0x1000_0000, size: 1024, head: 0, inflight: VecDeque::new() };
        assert_eq!(r.reserve(512, 256, 1), Some((0x1000_0000, 0)));
        assert_eq!(r.reserve(256, 256, 2), Some((0x1000_0200, 0)));
        assert_eq!(r.reserve(256, 256, 3), Some((0x1000_0300, 0)));
        // Wraps onto the first 512 bytes: must wait for sequence 1 only.
        assert_eq!(r.reserve(256, 256, 4), Some((0x1000_0000, 1)));
        // Bytes 256..768 were last used by sequences 1 and 2: wait for 2.
        assert_eq!(r.reserve(512, 256, 5), Some((0x1000_0100, 2)));
        // 768 bytes do not fit before the end: skip to the next lap, after sequences 3..=5.
        assert_eq!(r.reserve(768, 256, 6), Some((0x1000_0000, 5)));
        assert_eq!(r.reserve(2048, 256, 7), None);
    }

    #[test]
    fn local_memory_is_sized_per_tpc_slot() {
        // GH100-like litter values: 64 warps per SM, 2 SMs per TPC, 9 TPCs per GPC, 8 GPCs.
        let h100 = GridLayout { max_warps_per_sm: 64, sms_per_tpc: 2, tpcs_per_gpc: 9, gpcs: 8 };
        // 24 B/thread → 32 B; a warp needs 1 KiB; 128 warp slots per TPC → 128 KiB per TPC;
        // 72 TPC slots → 9 MiB.
        assert_eq!(h100.local_memory_sizes(24), (32, 128 << 10, 9 << 20));
        // 8 B/thread → 32 B as well (the per-thread granule).
        assert_eq!(h100.local_memory_sizes(8), h100.local_memory_sizes(32));
        // 1 SM per TPC, 48 warps, 100 B/thread → 128 B; 4 KiB per warp; 192 KiB per TPC;
        // 3 TPC slots → 576 KiB, rounded up to the 128 KiB granule → 640 KiB.
        let small = GridLayout { max_warps_per_sm: 48, sms_per_tpc: 1, tpcs_per_gpc: 3, gpcs: 1 };
        assert_eq!(small.local_memory_sizes(100), (128, 192 << 10, 640 << 10));
    }

    #[test]
    fn host_ranges_are_checked() {
        let b = NvBuffer { handle: 1, va: 0x1000, size: 16, host: true };
        assert!(check_host_range(&b, 0, 16).is_ok());
        assert!(check_host_range(&b, 1, 16).is_err());
        assert!(check_host_range(&NvBuffer { host: false, ..b }, 0, 1).is_err());
    }
}
