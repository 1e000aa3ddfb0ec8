//! The runtime's own logic (ownership, bounds, argument layout, staging, ordering, signals,
//! graphs) against a software backend that executes commands on the CPU.

use egpu::backend::{Backend, BufferId, Command, CommandList, ProgramId, SignalId};
use egpu::{Arg, Device, DeviceProperties, Error, KernelInfo, MemoryKind, ParamSlot, Vendor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// CPU backend. Kernels: "scale" (float* data, float factor, u32 n) and "fill" (u32* out, u32 v).
/// Work is queued by `submit` and executed lazily by `signal_value` (which the runtime polls
/// to wait), so tests can observe that work is not done before it is waited for.
#[derive(Default)]
struct CpuBackend {
    next: u64,
    buffers: HashMap<u64, (Vec<u8>, MemoryKind)>,
    signals: HashMap<u64, u64>,
    programs: HashMap<u64, Vec<String>>,
    /// Queued commands with their launch's argument block (empty for other commands).
    pending: Vec<(Command, Vec<u8>)>,
    log: Arc<Mutex<Vec<String>>>,
}

const BASE: u64 = 0x1000_0000;

impl CpuBackend {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn resolve(&mut self, address: u64) -> (u64, usize) {
        let id = (address - BASE) >> 32;
        (id, ((address - BASE) & 0xFFFF_FFFF) as usize)
    }

    /// Execute queued commands until a Wait cannot be satisfied.
    fn run(&mut self) {
        while !self.pending.is_empty() {
            let (cmd, a) = self.pending[0].clone();
            match &cmd {
                Command::Wait { signal, value } if self.signals[&signal.0] < *value => return,
                Command::Wait { .. } => {}
                Command::Signal { signal, value } => {
                    self.signals.insert(signal.0, *value);
                }
                Command::Copy { src, src_offset, dst, dst_offset, len } => {
                    let data = self.buffers[&src.0].0
                        [*src_offset as usize..(*src_offset + *len) as usize]
                        .to_vec();
                    self.buffers.get_mut(&dst.0).unwrap().0
                        [*dst_offset as usize..(*dst_offset + *len) as usize]
                        .copy_from_slice(&data);
                }
                Command::Launch(launch) => {
                    let threads = (launch.grid[0] * launch.block[0]) as usize;
                    match &*launch.kernel {
                        "scale" => {
                            let ptr = u64::from_le_bytes(a[0..8].try_into().unwrap());
                            let factor = f32::from_le_bytes(a[8..12].try_into().unwrap());
                            let n = u32::from_le_bytes(a[12..16].try_into().unwrap()) as usize;
                            let (id, off) = self.resolve(ptr);
                            let buf = &mut self.buffers.get_mut(&id).unwrap().0;
                            for i in 0..n.min(threads) {
                                let at = off + 4 * i;
                                let v = f32::from_le_bytes(buf[at..at + 4].try_into().unwrap())
                                    * factor;
                                buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
                            }
                        }
                        "fill" => {
                            let ptr = u64::from_le_bytes(a[0..8].try_into().unwrap());
                            let v = u32::from_le_bytes(a[8..12].try_into().unwrap());
                            let (id, off) = self.resolve(ptr);
                            let buf = &mut self.buffers.get_mut(&id).unwrap().0;
                            for i in 0..threads {
                                buf[off + 4 * i..off + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
                            }
                        }
                        other => panic!("unknown kernel {other}"),
                    }
                }
            }
            self.log
                .lock()
                .unwrap()
                .push(format!("{cmd:?}").split_whitespace().next().unwrap().to_string());
            self.pending.remove(0);
        }
    }
}

impl Backend for CpuBackend {
    fn properties(&self) -> DeviceProperties {
        DeviceProperties {
            vendor: Vendor::Software,
            name: "cpu".into(),
            architecture: "host".into(),
            memory_bytes: 1 << 30,
            compute_units: 1,
            max_threads_per_block: 1024,
            pci_address: None,
        }
    }
    fn alloc(&mut self, size: u64, kind: MemoryKind) -> Result<BufferId, Error> {
        let id = self.id();
        self.buffers.insert(id, (vec![0; size as usize], kind));
        Ok(BufferId(id))
    }
    fn free(&mut self, buffer: BufferId) {
        self.buffers.remove(&buffer.0).expect("freed once");
        self.log.lock().unwrap().push("Free".into());
    }
    fn device_address(&self, buffer: BufferId) -> Result<u64, Error> {
        Ok(BASE + (buffer.0 << 32))
    }
    fn write_host(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let (buf, kind) = self.buffers.get_mut(&buffer.0).unwrap();
        assert_eq!(
            *kind,
            MemoryKind::HostVisible,
            "runtime only writes host-visible buffers directly"
        );
        buf[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn read_host(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        let (buf, kind) = &self.buffers[&buffer.0];
        assert_eq!(*kind, MemoryKind::HostVisible);
        out.copy_from_slice(&buf[offset as usize..offset as usize + out.len()]);
        Ok(())
    }
    fn load_program(&mut self, image: &[u8]) -> Result<ProgramId, Error> {
        let text = String::from_utf8_lossy(image);
        let id = self.id();
        self.programs.insert(id, text.split(',').map(str::to_string).collect());
        Ok(ProgramId(id))
    }
    fn kernel_names(&self, program: ProgramId) -> Result<Vec<String>, Error> {
        Ok(self.programs[&program.0].clone())
    }
    fn kernel_info(&self, program: ProgramId, name: &str) -> Result<Option<KernelInfo>, Error> {
        if !self.programs[&program.0].iter().any(|k| k == name) {
            return Ok(None);
        }
        let (params, bytes) = match name {
            "scale" => (vec![(0, 8), (8, 4), (12, 4)], 16),
            "fill" => (vec![(0, 8), (8, 4)], 12),
            _ => (vec![], 0),
        };
        Ok(Some(KernelInfo {
            name: name.into(),
            params: params.into_iter().map(|(offset, size)| ParamSlot { offset, size }).collect(),
            param_bytes: bytes,
            max_threads_per_block: 256,
            static_shared_bytes: 0,
        }))
    }
    fn unload_program(&mut self, program: ProgramId) {
        self.programs.remove(&program.0);
    }
    fn create_signal(&mut self) -> Result<SignalId, Error> {
        let id = self.id();
        self.signals.insert(id, 0);
        Ok(SignalId(id))
    }
    fn destroy_signal(&mut self, signal: SignalId) {
        self.signals.remove(&signal.0);
    }
    fn signal_value(&mut self, signal: SignalId) -> Result<u64, Error> {
        self.run();
        Ok(self.signals[&signal.0])
    }
    fn set_signal(&mut self, signal: SignalId, value: u64) -> Result<(), Error> {
        self.signals.insert(signal.0, value);
        Ok(())
    }
    fn submit(&mut self, list: &CommandList, signal_offset: u64) -> Result<(), Error> {
        self.log.lock().unwrap().push(format!("Submit{}", list.commands.len()));
        for command in &list.commands {
            let args = match command {
                Command::Launch(launch) => list.launch_args(launch).to_vec(),
                _ => Vec::new(),
            };
            self.pending.push((command.with_signal_offset(signal_offset), args));
        }
        Ok(())
    }
}

fn device() -> (Device, Arc<Mutex<Vec<String>>>) {
    let backend = CpuBackend::default();
    let log = backend.log.clone();
    (Device::from_backend("cpu:0", Box::new(backend)), log)
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn device_buffer_round_trip_goes_through_staging() {
    let (dev, log) = device();
    let buf = dev.alloc(64, MemoryKind::Device).unwrap();
    let data: Vec<u8> = (0..48).collect();
    dev.write(&buf, 16, &data).unwrap();
    let mut out = vec![0u8; 48];
    dev.read(&buf, 16, &mut out).unwrap();
    assert_eq!(out, data);
    let log = log.lock().unwrap().clone();
    assert!(
        log.iter().filter(|l| l.starts_with("Copy")).count() >= 2,
        "device writes and reads use copies: {log:?}"
    );
}

#[test]
fn ranges_are_checked() {
    let (dev, _) = device();
    let buf = dev.alloc(16, MemoryKind::HostVisible).unwrap();
    assert!(matches!(
        dev.write(&buf, 10, &[0; 7]),
        Err(Error::OutOfBounds { offset: 10, len: 7, size: 16, .. })
    ));
    assert!(matches!(dev.read(&buf, u64::MAX, &mut [0; 2]), Err(Error::OutOfBounds { .. })));
    let other = dev.alloc(8, MemoryKind::Device).unwrap();
    assert!(matches!(dev.queue().copy(&buf, 0, &other, 0, 9), Err(Error::OutOfBounds { .. })));
    assert!(matches!(dev.alloc(0, MemoryKind::Device), Err(Error::OutOfBounds { .. })));
}

#[test]
fn launch_lays_arguments_out_and_runs_in_order() {
    let (dev, _) = device();
    let program = dev.load_program(b"scale,fill").unwrap();
    let scale = program.kernel("scale").unwrap();
    let fill = program.kernel("fill").unwrap();
    let buf = dev.alloc(4 * 8, MemoryKind::Device).unwrap();
    let done = dev.signal().unwrap();
    let mut q = dev.queue();
    q.launch(&fill, [1, 1, 1], [8, 1, 1], 0, &[Arg::Buffer(&buf), Arg::F32(1.5).into_u32_bits()])
        .unwrap();
    q.launch(
        &scale,
        [1, 1, 1],
        [8, 1, 1],
        0,
        &[Arg::BufferAt(&buf, 8), Arg::F32(2.0), Arg::U32(6)],
    )
    .unwrap();
    q.signal(&done, 1).unwrap();
    q.submit().unwrap();
    done.wait_for(1, Duration::from_secs(1)).unwrap();
    let mut out = vec![0u8; 32];
    dev.read(&buf, 0, &mut out).unwrap();
    assert_eq!(floats(&out), [1.5, 1.5, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]);
}

/// Helper so the test can pass an f32 bit pattern where the kernel takes u32.
trait Bits {
    fn into_u32_bits(self) -> Arg<'static>;
}
impl Bits for Arg<'_> {
    fn into_u32_bits(self) -> Arg<'static> {
        match self {
            Arg::F32(v) => Arg::U32(v.to_bits()),
            _ => unreachable!(),
        }
    }
}

#[test]
fn argument_mismatches_are_reported() {
    let (dev, _) = device();
    let program = dev.load_program(b"scale").unwrap();
    let scale = program.kernel("scale").unwrap();
    let buf = dev.alloc(16, MemoryKind::Device).unwrap();
    let mut q = dev.queue();
    match q.launch(&scale, [1; 3], [1; 3], 0, &[Arg::Buffer(&buf), Arg::F32(1.0)]) {
        Err(Error::ArgumentCount { expected: 3, got: 2, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    match q.launch(&scale, [1; 3], [1; 3], 0, &[Arg::Buffer(&buf), Arg::F64(1.0), Arg::U32(1)]) {
        Err(Error::ArgumentSize { index: 1, expected: 4, got: 8, .. }) => {}
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        q.launch(&scale, [1; 3], [512, 1, 1], 0, &[Arg::Buffer(&buf), Arg::F32(1.0), Arg::U32(1)]),
        Err(Error::BadLaunch { .. })
    ));
    assert!(matches!(
        q.launch(&scale, [0, 1, 1], [1; 3], 0, &[Arg::Buffer(&buf), Arg::F32(1.0), Arg::U32(1)]),
        Err(Error::BadLaunch { .. })
    ));
    assert!(q.commands().is_empty(), "failed launches record nothing");
    match program.kernel("nope") {
        Err(Error::NoSuchKernel { name, available }) => {
            assert_eq!((name.as_str(), available.as_str()), ("nope", "scale"));
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn gpu_wait_holds_work_until_the_cpu_signals() {
    let (dev, _) = device();
    let gate = dev.signal().unwrap();
    let done = dev.signal().unwrap();
    let buf = dev.alloc(4, MemoryKind::HostVisible).unwrap();
    let src = dev.alloc(4, MemoryKind::HostVisible).unwrap();
    dev.write(&src, 0, &7u32.to_le_bytes()).unwrap();
    let mut q = dev.queue();
    q.wait(&gate, 5).unwrap().copy(&src, 0, &buf, 0, 4).unwrap().signal(&done, 1).unwrap();
    q.submit().unwrap();
    // The wait is not satisfied: the host wait times out and reports what it saw.
    match done.wait(1, Instant::now()) {
        Err(Error::Timeout { wanted: 1, last_seen: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
    gate.set(5).unwrap();
    done.wait_for(1, Duration::from_secs(1)).unwrap();
    assert_eq!(done.value().unwrap(), 1);
    let mut out = [0u8; 4];
    dev.read(&buf, 0, &mut out).unwrap();
    assert_eq!(u32::from_le_bytes(out), 7);
}

#[test]
fn graph_replays_with_advancing_signal_values() {
    let (dev, log) = device();
    let program = dev.load_program(b"scale").unwrap();
    let scale = program.kernel("scale").unwrap();
    let buf = dev.alloc(4, MemoryKind::Device).unwrap();
    dev.write(&buf, 0, &1.0f32.to_le_bytes()).unwrap();
    let step = dev.signal().unwrap();
    let mut q = dev.queue();
    q.launch(&scale, [1; 3], [1; 3], 0, &[Arg::Buffer(&buf), Arg::F32(3.0), Arg::U32(1)]).unwrap();
    q.signal(&step, 1).unwrap();
    let graph = q.record();
    assert_eq!(graph.commands().len(), 2);
    let before = log.lock().unwrap().len();
    for round in 0..4u64 {
        graph.launch_with_signal_offset(round).unwrap();
        step.wait_for(round + 1, Duration::from_secs(1)).unwrap();
    }
    let submits = log.lock().unwrap()[before..].iter().filter(|l| l.starts_with("Submit")).count();
    assert_eq!(submits, 4, "each replay is one submission");
    let mut out = [0u8; 4];
    dev.read(&buf, 0, &mut out).unwrap();
    assert_eq!(f32::from_le_bytes(out), 81.0);
}

#[test]
fn buffers_stay_alive_while_recorded_and_are_freed_once() {
    let (dev, log) = device();
    let q = {
        let buf = dev.alloc(4, MemoryKind::Device).unwrap();
        let src = dev.alloc(4, MemoryKind::HostVisible).unwrap();
        let mut q = dev.queue();
        q.copy(&src, 0, &buf, 0, 4).unwrap();
        q
    };
    assert_eq!(log.lock().unwrap().iter().filter(|l| *l == "Free").count(), 0);
    drop(q);
    assert_eq!(log.lock().unwrap().iter().filter(|l| *l == "Free").count(), 2);
}

#[test]
fn objects_of_another_device_are_refused() {
    let (a, _) = device();
    let (b, _) = device();
    let buf = a.alloc(4, MemoryKind::HostVisible).unwrap();
    assert!(matches!(b.write(&buf, 0, &[1]), Err(Error::ForeignObject { .. })));
    let sig = a.signal().unwrap();
    assert!(matches!(b.queue().signal(&sig, 1), Err(Error::ForeignObject { .. })));
}

#[test]
fn open_rejects_bad_names_and_unsupported_kinds() {
    assert!(matches!(Device::open("gpu0"), Err(Error::BadDeviceName { .. })));
    assert!(matches!(Device::open("emu"), Err(Error::Unavailable { .. })));
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        match Device::open("nv:0") {
            Err(Error::Unavailable { name, why }) => {
                assert_eq!(name, "nv:0");
                assert!(why.contains("no NVIDIA kernel driver"), "{why}");
            }
            other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
        }
    } else {
        // Past the test harness's output capture, so that the skip shows in the run.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            "SKIP: nvidia.ko is loaded here, so the no-driver path of nv:0 cannot be observed\n"
                .as_bytes(),
        );
    }
}

#[test]
fn unordered_submission_runs_in_order_where_the_backend_cannot_overlap() {
    // CpuBackend keeps the default `submit_unordered`, which must still hand the work over.
    let (dev, log) = device();
    let src = dev.alloc(16, MemoryKind::HostVisible).unwrap();
    let dst = dev.alloc(16, MemoryKind::HostVisible).unwrap();
    let data: Vec<u8> = (100..116).collect();
    dev.write(&src, 0, &data).unwrap();
    let done = dev.signal().unwrap();
    let mut q = dev.queue();
    q.copy(&src, 0, &dst, 0, 16).unwrap().signal(&done, 1).unwrap();
    q.submit_unordered().unwrap();
    assert!(q.commands().is_empty(), "the queue starts a fresh recording");
    done.wait_for(1, Duration::from_secs(1)).unwrap();
    let mut out = vec![0u8; 16];
    dev.read(&dst, 0, &mut out).unwrap();
    assert_eq!(out, data);
    assert!(log.lock().unwrap().iter().any(|l| l == "Submit2"), "{:?}", log.lock().unwrap());
}
