//! The benchmark's peer: NVIDIA's CUDA driver API (libcuda, loaded at run time) driving the
//! same kernels through [`crate::bench::measure`]. egpu itself never uses libcuda; this exists
//! only so that `egpu bench nv:N` can print honest ratios against CUDA on the same GPU.
//!
//! Signatures from CUDA's `cuda.h` (driver API, stable ABI; the `_v2` entry points are the
//! ones `cuda.h` maps the plain names to since CUDA 4).

use crate::bench::{
    measure, stream_elements, stream_grid, BenchReport, BenchTarget, CopyDirection, PeerSpec,
};
use libloading::Library;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::mem::ManuallyDrop;

/// Errors of the CUDA peer.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// libcuda could not be loaded or lacks an entry point.
    #[error("libcuda.so.1: {0}")]
    Load(String),
    /// A driver API call failed.
    #[error("{call} failed: {name} (CUresult {code})")]
    Call {
        /// The function.
        call: &'static str,
        /// CUresult.
        code: c_int,
        /// cuGetErrorName.
        name: String,
    },
    /// NVRTC was needed for the kernels.
    #[error(transparent)]
    Nvrtc(#[from] crate::nvrtc::NvrtcError),
}

type CuResult = c_int;
type CuDevice = c_int;
type CuDevicePtr = u64;
type Handle = *mut c_void;

/// `CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT`.
const MULTIPROCESSOR_COUNT: c_int = 16;
/// `CU_STREAM_NON_BLOCKING`.
const STREAM_NON_BLOCKING: c_uint = 1;

struct Api {
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    device_get_by_pci_bus_id: unsafe extern "C" fn(*mut CuDevice, *const c_char) -> CuResult,
    device_get_name: unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult,
    device_get_attribute: unsafe extern "C" fn(*mut c_int, c_int, CuDevice) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut Handle, CuDevice) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(Handle) -> CuResult,
    module_load_data: unsafe extern "C" fn(*mut Handle, *const c_void) -> CuResult,
    module_get_function: unsafe extern "C" fn(*mut Handle, Handle, *const c_char) -> CuResult,
    stream_create: unsafe extern "C" fn(*mut Handle, c_uint) -> CuResult,
    stream_synchronize: unsafe extern "C" fn(Handle) -> CuResult,
    #[allow(clippy::type_complexity)]
    launch_kernel: unsafe extern "C" fn(
        Handle,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        Handle,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut CuDevicePtr, usize) -> CuResult,
    mem_alloc_host: unsafe extern "C" fn(*mut *mut c_void, usize) -> CuResult,
    memcpy_htod_async: unsafe extern "C" fn(CuDevicePtr, *const c_void, usize, Handle) -> CuResult,
    memcpy_dtoh_async: unsafe extern "C" fn(*mut c_void, CuDevicePtr, usize, Handle) -> CuResult,
    memcpy_dtod_async: unsafe extern "C" fn(CuDevicePtr, CuDevicePtr, usize, Handle) -> CuResult,
    get_error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
}

/// The CUDA side as a [`BenchTarget`]. Allocations are released when the process exits (the
/// peer runs in a process of its own).
struct Cuda {
    api: Api,
    // Never unloaded: libcuda's threads and exit handlers outlive any point we could pick.
    _library: ManuallyDrop<Library>,
    stream: Handle,
    empty: Handle,
    stream_copy: Handle,
    sm_count: u32,
    host: *mut c_void,
    a: CuDevicePtr,
    b: CuDevicePtr,
    copy_bytes: u64,
}

impl Cuda {
    fn check(&self, call: &'static str, code: CuResult) -> Result<(), CudaError> {
        if code == 0 {
            return Ok(());
        }
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName stores a pointer to a static string (or leaves it null).
        let known =
            unsafe { (self.api.get_error_name)(code, &raw mut name) } == 0 && !name.is_null();
        let name = if known {
            // SAFETY: non-null, NUL-terminated static string from libcuda.
            unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
        } else {
            "unknown".into()
        };
        Err(CudaError::Call { call, code, name })
    }

    /// Open the device at PCI address `pci_bus_id`, load `cubin` and allocate the copy
    /// buffers.
    fn open(pci_bus_id: &str, cubin: &[u8], copy_bytes: u64) -> Result<(Cuda, String), CudaError> {
        // SAFETY: loading the NVIDIA driver library runs its initialisers, as any CUDA program does.
        let library = unsafe { Library::new("libcuda.so.1") }
            .map_err(|e| CudaError::Load(format!("{e} (is the NVIDIA driver installed?)")))?;
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: the symbol is the driver API function with the signature of the field
                // it is stored in (cuda.h); the library outlives the pointer (kept in `Cuda`).
                *unsafe { library.get($name) }.map_err(|e| CudaError::Load(e.to_string()))?
            }};
        }
        let api = Api {
            init: sym!(b"cuInit\0"),
            device_get_by_pci_bus_id: sym!(b"cuDeviceGetByPCIBusId\0"),
            device_get_name: sym!(b"cuDeviceGetName\0"),
            device_get_attribute: sym!(b"cuDeviceGetAttribute\0"),
            primary_ctx_retain: sym!(b"cuDevicePrimaryCtxRetain\0"),
            ctx_set_current: sym!(b"cuCtxSetCurrent\0"),
            module_load_data: sym!(b"cuModuleLoadData\0"),
            module_get_function: sym!(b"cuModuleGetFunction\0"),
            stream_create: sym!(b"cuStreamCreate\0"),
            stream_synchronize: sym!(b"cuStreamSynchronize\0"),
            launch_kernel: sym!(b"cuLaunchKernel\0"),
            mem_alloc: sym!(b"cuMemAlloc_v2\0"),
            mem_alloc_host: sym!(b"cuMemAllocHost_v2\0"),
            memcpy_htod_async: sym!(b"cuMemcpyHtoDAsync_v2\0"),
            memcpy_dtoh_async: sym!(b"cuMemcpyDtoHAsync_v2\0"),
            memcpy_dtod_async: sym!(b"cuMemcpyDtoDAsync_v2\0"),
            get_error_name: sym!(b"cuGetErrorName\0"),
        };
        let mut cuda = Cuda {
            api,
            _library: ManuallyDrop::new(library),
            stream: std::ptr::null_mut(),
            empty: std::ptr::null_mut(),
            stream_copy: std::ptr::null_mut(),
            sm_count: 0,
            host: std::ptr::null_mut(),
            a: 0,
            b: 0,
            copy_bytes,
        };
        let api = &cuda.api;
        let mut device: CuDevice = 0;
        let mut name = [0 as c_char; 256];
        let mut sms: c_int = 0;
        let mut context: Handle = std::ptr::null_mut();
        let mut module: Handle = std::ptr::null_mut();
        let bus_id = CString::new(pci_bus_id)
            .map_err(|_| CudaError::Load(format!("bad PCI bus id {pci_bus_id:?}")))?;
        // SAFETY: each call gets valid out-pointers (locals above) and the sizes of the buffers
        // behind them; `cubin` outlives cuModuleLoadData, which copies it.
        unsafe {
            cuda.check("cuInit", (api.init)(0))?;
            cuda.check(
                "cuDeviceGetByPCIBusId",
                (api.device_get_by_pci_bus_id)(&raw mut device, bus_id.as_ptr()),
            )?;
            cuda.check(
                "cuDeviceGetName",
                (api.device_get_name)(name.as_mut_ptr(), name.len() as c_int, device),
            )?;
            cuda.check(
                "cuDeviceGetAttribute",
                (api.device_get_attribute)(&raw mut sms, MULTIPROCESSOR_COUNT, device),
            )?;
            cuda.check(
                "cuDevicePrimaryCtxRetain",
                (api.primary_ctx_retain)(&raw mut context, device),
            )?;
            cuda.check("cuCtxSetCurrent", (api.ctx_set_current)(context))?;
            cuda.check(
                "cuModuleLoadData",
                (api.module_load_data)(&raw mut module, cubin.as_ptr().cast()),
            )?;
            let function = |name: &str| -> Result<Handle, CudaError> {
                let c_name = CString::new(name).expect("kernel names have no NUL");
                let mut f: Handle = std::ptr::null_mut();
                cuda.check(
                    "cuModuleGetFunction",
                    (api.module_get_function)(&raw mut f, module, c_name.as_ptr()),
                )?;
                Ok(f)
            };
            let empty = function("empty")?;
            let stream_copy = function("stream_copy")?;
            let mut stream: Handle = std::ptr::null_mut();
            cuda.check(
                "cuStreamCreate",
                (api.stream_create)(&raw mut stream, STREAM_NON_BLOCKING),
            )?;
            let mut host: *mut c_void = std::ptr::null_mut();
            cuda.check("cuMemAllocHost", (api.mem_alloc_host)(&raw mut host, copy_bytes as usize))?;
            let (mut a, mut b) = (0, 0);
            cuda.check("cuMemAlloc", (api.mem_alloc)(&raw mut a, copy_bytes as usize))?;
            cuda.check("cuMemAlloc", (api.mem_alloc)(&raw mut b, copy_bytes as usize))?;
            cuda.empty = empty;
            cuda.stream_copy = stream_copy;
            cuda.stream = stream;
            cuda.host = host;
            cuda.a = a;
            cuda.b = b;
        }
        cuda.sm_count = sms.max(1) as u32;
        // SAFETY: cuDeviceGetName wrote a NUL-terminated name into the buffer; the last byte is
        // forced to NUL in case it filled it.
        name[255] = 0;
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
        Ok((cuda, name))
    }

    /// Launch `function` on the stream.
    ///
    /// # Safety
    ///
    /// `function` is a kernel of this context's module, and `params` holds one pointer per
    /// kernel parameter, each to a live value of that parameter's type, for the length of the
    /// call (libcuda reads through them; a device pointer among those values must be one the
    /// kernel may write).
    unsafe fn launch(
        &mut self,
        function: Handle,
        grid: u32,
        block: u32,
        params: &mut [*mut c_void],
    ) -> Result<(), CudaError> {
        let params_ptr = if params.is_empty() { std::ptr::null_mut() } else { params.as_mut_ptr() };
        // SAFETY: the caller's contract; cuLaunchKernel copies the parameter values before it
        // returns.
        let code = unsafe {
            (self.api.launch_kernel)(
                function,
                grid,
                1,
                1,
                block,
                1,
                1,
                0,
                self.stream,
                params_ptr,
                std::ptr::null_mut(),
            )
        };
        self.check("cuLaunchKernel", code)
    }
}

impl BenchTarget for Cuda {
    type Error = CudaError;
    fn launch_empty(&mut self) -> Result<(), CudaError> {
        // SAFETY: `empty` is the module's parameterless kernel.
        unsafe { self.launch(self.empty, 1, 1, &mut []) }
    }
    fn launch_stream(&mut self) -> Result<(), CudaError> {
        let (mut input, mut output) = (self.a, self.b);
        let mut n = stream_elements(self.copy_bytes);
        let mut params: [*mut c_void; 3] =
            [(&raw mut input).cast(), (&raw mut output).cast(), (&raw mut n).cast()];
        // SAFETY: `stream_copy` takes (input, output, n) as three 64-bit values, which the
        // pointers above point at for the call; `a` and `b` are device allocations of
        // `copy_bytes`, which is what `n` elements span (`stream_elements`).
        unsafe { self.launch(self.stream_copy, stream_grid(self.sm_count), 256, &mut params) }
    }
    fn copy(&mut self, direction: CopyDirection) -> Result<(), CudaError> {
        let len = self.copy_bytes as usize;
        // SAFETY: `host` is a pinned allocation and `a`/`b` device allocations, each
        // `copy_bytes` long, alive until the process exits.
        let code = unsafe {
            match direction {
                CopyDirection::HostToDevice => {
                    (self.api.memcpy_htod_async)(self.a, self.host, len, self.stream)
                }
                CopyDirection::DeviceToHost => {
                    (self.api.memcpy_dtoh_async)(self.host, self.a, len, self.stream)
                }
                CopyDirection::DeviceToDevice => {
                    (self.api.memcpy_dtod_async)(self.b, self.a, len, self.stream)
                }
            }
        };
        self.check("cuMemcpyAsync", code)
    }
    fn finish(&mut self) -> Result<(), CudaError> {
        // SAFETY: a stream created by this context.
        let code = unsafe { (self.api.stream_synchronize)(self.stream) };
        self.check("cuStreamSynchronize", code)
    }
}

/// Measure CUDA on the GPU and SM `spec` names (what our side measured), with the same
/// kernels compiled by the same NVRTC.
pub fn run(spec: &PeerSpec, copy_bytes: u64) -> Result<BenchReport, CudaError> {
    let nvrtc = crate::nvrtc::Nvrtc::load()?;
    let cubin = nvrtc.compile_for_sm(crate::bench::KERNELS, "nv_suite.cu", spec.sm, &[])?;
    let (mut cuda, name) = Cuda::open(&spec.pci_bus_id, &cubin, copy_bytes)?;
    let device = format!(
        "CUDA {name} ({}) sm_{}, {} SMs (libcuda driver API)",
        spec.pci_bus_id, spec.sm, cuda.sm_count
    );
    measure(&mut cuda, device, copy_bytes)
}
