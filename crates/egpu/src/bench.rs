//! `egpu bench nv:N` through the runtime: the benchmark's target is an [`egpu::Device`](Device)
//! (queue, kernels, signal), so what is measured is the runtime and the vendor's runtime
//! adapter under it, the path every program takes. The measuring routine, the report, the
//! goals and the CUDA driver API peer are egpu-nv's ([`measure`], [`BenchReport`],
//! [`Comparison`], [`run_peer`]), shared by both sides so that every figure means the same.

use crate::{Arg, Buffer, Device, Error, Kernel, MemoryKind, Program, Queue, Signal, Vendor};
use std::time::{Duration, Instant};

pub use egpu_nv::bench::{
    measure, run_peer_process, stream_elements, stream_grid, BenchReport, BenchTarget, Comparison,
    CopyDirection, PeerSpec, Workload, KERNELS, PEER_FLAG,
};

/// Wait limit for one `finish`.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What measuring a GPU can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A runtime operation failed (opening, allocating, launching, waiting).
    #[error(transparent)]
    Runtime(#[from] Error),
    /// NVRTC could not be loaded or could not compile the benchmark kernels.
    #[error("compiling the benchmark kernels: {0}")]
    Nvrtc(#[from] egpu_nv::nvrtc::NvrtcError),
    /// The device does not run CUDA kernels.
    #[error(
        "{device} is a {vendor:?} device with architecture {architecture:?}; the benchmark's \
         kernels are CUDA C for an NVIDIA GPU (sm_NN): use nv:N from `egpu list`"
    )]
    NotNvidia {
        /// The device's name.
        device: String,
        /// Its vendor.
        vendor: Vendor,
        /// Its architecture string.
        architecture: String,
    },
    /// The CUDA driver API peer failed.
    #[cfg(target_os = "linux")]
    #[error("CUDA peer: {0}")]
    CudaPeer(#[from] egpu_nv::cuda_peer::CudaError),
    /// The CUDA driver API peer runs on Linux only.
    #[error("the CUDA peer needs Linux (libcuda.so.1)")]
    PeerUnsupported,
}

/// The `sm_NN` number of an NVIDIA device (what NVRTC compiles for).
pub fn sm(device: &Device) -> Result<u32, BenchError> {
    let props = device.properties();
    let sm = props.architecture.strip_prefix("sm_").and_then(|n| n.parse().ok());
    match sm {
        Some(sm) if props.vendor == Vendor::Nvidia => Ok(sm),
        _ => Err(BenchError::NotNvidia {
            device: device.name().to_string(),
            vendor: props.vendor,
            architecture: props.architecture.clone(),
        }),
    }
}

/// The benchmark and GPU-suite kernels ([`KERNELS`]) compiled by NVRTC for the device's SM
/// (through NVRTC's on-disk cache).
pub fn compile_kernels(device: &Device) -> Result<Vec<u8>, BenchError> {
    let sm = sm(device)?;
    let nvrtc = egpu_nv::nvrtc::Nvrtc::load()?;
    Ok(nvrtc.compile_for_sm(KERNELS, "nv_suite.cu", sm, &[])?)
}

/// One line describing the device: name, PCI address, architecture, SMs, driver.
pub fn describe(device: &Device) -> String {
    let props = device.properties();
    let mut text = format!("{} {}", device.name(), props.name);
    if let Some(pci) = &props.pci_address {
        text += &format!(" ({pci})");
    }
    text += &format!(", {}, {} SMs", props.architecture, props.compute_units);
    if let Some(driver) = driver_version().filter(|_| props.vendor == Vendor::Nvidia) {
        text += &format!(", driver {driver}");
    }
    text
}

/// The loaded nvidia.ko's version, if it answers (the runtime's properties do not carry it).
fn driver_version() -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        egpu_nv::rm::client::RmClient::open().ok().map(|client| client.version().to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The runtime as a [`BenchTarget`]: each operation is recorded on one reused [`Queue`] and
/// submitted on its own (as the peer calls the driver API once per operation); `finish`
/// signals a timeline [`Signal`] and waits for it on the CPU.
pub struct RuntimeTarget {
    queue: Queue,
    empty: Kernel,
    stream_copy: Kernel,
    stream_grid: u32,
    signal: Signal,
    value: u64,
    host: Buffer,
    a: Buffer,
    b: Buffer,
    copy_bytes: u64,
}

impl RuntimeTarget {
    /// Set up on `device` with `program` (the [`KERNELS`] image): a pinned host buffer and two
    /// device buffers of `copy_bytes` each, and a signal.
    pub fn new(device: &Device, program: &Program, copy_bytes: u64) -> Result<Self, Error> {
        Ok(RuntimeTarget {
            // One command (plus a signal) per submission, at most 24 bytes of arguments.
            queue: device.queue_with_capacity(2, 64),
            empty: program.kernel("empty")?,
            stream_copy: program.kernel("stream_copy")?,
            stream_grid: stream_grid(device.properties().compute_units),
            signal: device.signal()?,
            value: 0,
            host: device.alloc(copy_bytes, MemoryKind::HostVisible)?,
            a: device.alloc(copy_bytes, MemoryKind::Device)?,
            b: device.alloc(copy_bytes, MemoryKind::Device)?,
            copy_bytes,
        })
    }
}

impl BenchTarget for RuntimeTarget {
    type Error = Error;
    fn launch_empty(&mut self) -> Result<(), Error> {
        self.queue.launch(&self.empty, [1, 1, 1], [1, 1, 1], 0, &[])?;
        self.queue.submit()
    }
    fn launch_stream(&mut self) -> Result<(), Error> {
        let args = [
            Arg::Buffer(&self.a),
            Arg::Buffer(&self.b),
            Arg::U64(stream_elements(self.copy_bytes)),
        ];
        self.queue.launch(&self.stream_copy, [self.stream_grid, 1, 1], [256, 1, 1], 0, &args)?;
        self.queue.submit()
    }
    fn copy(&mut self, direction: CopyDirection) -> Result<(), Error> {
        let (src, dst) = match direction {
            CopyDirection::HostToDevice => (&self.host, &self.a),
            CopyDirection::DeviceToHost => (&self.a, &self.host),
            CopyDirection::DeviceToDevice => (&self.a, &self.b),
        };
        self.queue.copy(src, 0, dst, 0, self.copy_bytes)?;
        self.queue.submit()
    }
    fn finish(&mut self) -> Result<(), Error> {
        self.value += 1;
        self.queue.signal(&self.signal, self.value)?;
        self.queue.submit()?;
        self.signal.wait(self.value, Instant::now() + TIMEOUT)
    }
}

/// Measure the runtime on the NVIDIA GPU `name` (`nv:N`) with `copy_bytes` per copy; also
/// says what the CUDA peer must measure to compare (`None` when the device has no PCI
/// address to find it by).
pub fn run(name: &str, copy_bytes: u64) -> Result<(BenchReport, Option<PeerSpec>), BenchError> {
    let device = Device::open(name)?;
    let cubin = compile_kernels(&device)?;
    let program = device.load_program(&cubin)?;
    let peer = device
        .properties()
        .pci_address
        .clone()
        .map(|pci_bus_id| Ok::<_, BenchError>(PeerSpec { pci_bus_id, sm: sm(&device)? }))
        .transpose()?;
    let mut target = RuntimeTarget::new(&device, &program, copy_bytes)?;
    let report = measure(&mut target, describe(&device), copy_bytes)?;
    Ok((report, peer))
}

/// Measure the CUDA driver API on the GPU and SM `spec` names, in this process (the child
/// process [`run_peer_process`] starts).
pub fn run_peer(spec: &PeerSpec, copy_bytes: u64) -> Result<BenchReport, BenchError> {
    #[cfg(target_os = "linux")]
    {
        Ok(egpu_nv::cuda_peer::run(spec, copy_bytes)?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (spec, copy_bytes);
        Err(BenchError::PeerUnsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{
        Backend, BufferId, Command, CommandList, DeviceProperties, KernelInfo, ParamSlot,
        ProgramId, SignalId,
    };
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const SMS: u32 = 4;

    /// What the device was asked to do, by the benchmark's operations.
    #[derive(Debug, Default)]
    struct Seen {
        empty_launches: u32,
        stream_launches: u32,
        copies: [u32; 3],
        signals: u32,
        /// Launches not yet followed by a signal.
        pending: u32,
        /// Signal reads by the runtime's waits.
        polls: u32,
        /// Anything the device was asked that the benchmark should not ask.
        wrong: Vec<String>,
    }

    /// A software NVIDIA device that completes work as it is submitted and checks it.
    struct Recorder {
        seen: Arc<Mutex<Seen>>,
        vendor: Vendor,
        architecture: &'static str,
        copy_bytes: u64,
        buffers: HashMap<u64, MemoryKind>,
        signals: HashMap<u64, u64>,
        next: u64,
    }

    impl Recorder {
        fn device(
            vendor: Vendor,
            architecture: &'static str,
            copy_bytes: u64,
        ) -> (Device, Arc<Mutex<Seen>>) {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let recorder = Recorder {
                seen: seen.clone(),
                vendor,
                architecture,
                copy_bytes,
                buffers: HashMap::new(),
                signals: HashMap::new(),
                next: 0,
            };
            (Device::from_backend("nv:0", Box::new(recorder)), seen)
        }
    }

    fn address(id: u64) -> u64 {
        0x7f00_0000_0000 + (id << 32)
    }

    impl Backend for Recorder {
        fn properties(&self) -> DeviceProperties {
            DeviceProperties {
                vendor: self.vendor,
                name: "recorder".into(),
                architecture: self.architecture.into(),
                memory_bytes: 1 << 30,
                compute_units: SMS,
                max_threads_per_block: 1024,
                pci_address: Some("0000:41:00.0".into()),
            }
        }
        fn alloc(&mut self, _: u64, kind: MemoryKind) -> Result<BufferId, Error> {
            self.next += 1;
            self.buffers.insert(self.next, kind);
            Ok(BufferId(self.next))
        }
        fn free(&mut self, buffer: BufferId) {
            self.buffers.remove(&buffer.0);
        }
        fn device_address(&self, buffer: BufferId) -> Result<u64, Error> {
            Ok(address(buffer.0))
        }
        fn write_host(&mut self, _: BufferId, _: u64, _: &[u8]) -> Result<(), Error> {
            Ok(())
        }
        fn read_host(&mut self, _: BufferId, _: u64, _: &mut [u8]) -> Result<(), Error> {
            Ok(())
        }
        fn load_program(&mut self, _: &[u8]) -> Result<ProgramId, Error> {
            Ok(ProgramId(1))
        }
        fn kernel_names(&self, _: ProgramId) -> Result<Vec<String>, Error> {
            Ok(vec!["empty".into(), "stream_copy".into()])
        }
        fn kernel_info(&self, _: ProgramId, name: &str) -> Result<Option<KernelInfo>, Error> {
            // stream_copy(const float4*, float4*, unsigned long long), as NVRTC lays it out.
            let params = match name {
                "empty" => vec![],
                "stream_copy" => (0..3).map(|i| ParamSlot { offset: 8 * i, size: 8 }).collect(),
                _ => return Ok(None),
            };
            Ok(Some(KernelInfo {
                name: Arc::from(name),
                param_bytes: 8 * params.len() as u32,
                params,
                max_threads_per_block: 1024,
                static_shared_bytes: 0,
            }))
        }
        fn unload_program(&mut self, _: ProgramId) {}
        fn create_signal(&mut self) -> Result<SignalId, Error> {
            self.next += 1;
            self.signals.insert(self.next, 0);
            Ok(SignalId(self.next))
        }
        fn destroy_signal(&mut self, signal: SignalId) {
            self.signals.remove(&signal.0);
        }
        fn signal_value(&mut self, signal: SignalId) -> Result<u64, Error> {
            self.seen.lock().unwrap().polls += 1;
            Ok(self.signals[&signal.0])
        }
        fn set_signal(&mut self, signal: SignalId, value: u64) -> Result<(), Error> {
            self.signals.insert(signal.0, value);
            Ok(())
        }
        fn submit(&mut self, list: &CommandList, offset: u64) -> Result<(), Error> {
            let mut seen = self.seen.lock().unwrap();
            for command in &list.commands {
                match command {
                    Command::Launch(launch) if &*launch.kernel == "empty" => {
                        if launch.grid != [1, 1, 1] || launch.block != [1, 1, 1] {
                            seen.wrong.push(format!("empty launched as {launch:?}"));
                        }
                        seen.empty_launches += 1;
                        seen.pending += 1;
                    }
                    Command::Launch(launch) => {
                        let args: Vec<u64> = list
                            .launch_args(launch)
                            .chunks_exact(8)
                            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
                            .collect();
                        let device_buffers = |a: u64| {
                            self.buffers
                                .iter()
                                .any(|(&id, &kind)| address(id) == a && kind == MemoryKind::Device)
                        };
                        let ok = args.len() == 3
                            && device_buffers(args[0])
                            && device_buffers(args[1])
                            && args[0] != args[1]
                            && args[2] == self.copy_bytes / 16
                            && launch.grid == [8 * SMS, 1, 1]
                            && launch.block == [256, 1, 1];
                        if !ok {
                            seen.wrong.push(format!("{launch:?} with {args:x?}"));
                        }
                        seen.stream_launches += 1;
                        seen.pending += 1;
                    }
                    Command::Copy { src, dst, len, src_offset: 0, dst_offset: 0 }
                        if *len == self.copy_bytes =>
                    {
                        use MemoryKind::{Device as D, HostVisible as H};
                        let direction = match (self.buffers[&src.0], self.buffers[&dst.0]) {
                            (H, D) => CopyDirection::HostToDevice,
                            (D, H) => CopyDirection::DeviceToHost,
                            (D, D) if src != dst => CopyDirection::DeviceToDevice,
                            _ => {
                                seen.wrong.push(format!("{command:?}"));
                                continue;
                            }
                        };
                        seen.copies[direction as usize] += 1;
                    }
                    Command::Signal { signal, value } => {
                        self.signals.insert(signal.0, value + offset);
                        seen.signals += 1;
                        seen.pending = 0;
                    }
                    other => seen.wrong.push(format!("{other:?}")),
                }
            }
            Ok(())
        }
    }

    #[test]
    fn the_runtime_target_gets_the_workload_measure_asks_for() {
        let copy_bytes = 1 << 20;
        let (device, seen) = Recorder::device(Vendor::Nvidia, "sm_90", copy_bytes);
        assert_eq!(sm(&device).unwrap(), 90);
        let program = device.load_program(b"cubin").unwrap();
        let mut target = RuntimeTarget::new(&device, &program, copy_bytes).unwrap();
        let report = measure(&mut target, describe(&device), copy_bytes).unwrap();
        assert!(report.device.starts_with("nv:0 recorder (0000:41:00.0), sm_90, 4 SMs"));

        let want = Workload::of_measure(copy_bytes);
        let seen = seen.lock().unwrap();
        assert!(seen.wrong.is_empty(), "unexpected commands: {:?}", seen.wrong);
        assert_eq!(seen.empty_launches, want.launches);
        assert_eq!(seen.stream_launches, want.streams);
        assert_eq!(seen.copies, want.copies);
        assert_eq!(seen.signals, want.finishes, "one signal per finish");
        assert_eq!(seen.pending, 0, "every launch is waited for");
        assert!(seen.polls >= want.finishes, "each finish reads its signal on the CPU");
    }

    #[test]
    fn devices_without_an_sm_are_refused_with_what_they_are() {
        for (vendor, architecture) in [(Vendor::Amd, "gfx1100"), (Vendor::Nvidia, "sm_x")] {
            let (device, _) = Recorder::device(vendor, architecture, 1);
            let error = sm(&device).unwrap_err();
            assert!(
                matches!(&error, BenchError::NotNvidia { vendor: v, architecture: a, .. }
                    if *v == vendor && a == architecture),
                "{error:?}"
            );
            let text = error.to_string();
            assert!(text.contains(architecture) && text.contains("nv:N"), "{text}");
        }
    }
}
