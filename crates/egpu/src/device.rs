//! Devices and the objects that live on them.

use crate::backend::{Backend, BufferId, Command, CommandList, LaunchCommand, ProgramId, SignalId};
use crate::{DeviceName, DeviceProperties, Error, KernelInfo, MemoryKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the runtime's own synchronous helpers ([`Device::write`], [`Device::read`]) wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

struct Shared {
    name: String,
    /// Read once at open: properties do not change, and launches check the thread limit.
    properties: DeviceProperties,
    backend: Mutex<Box<dyn Backend>>,
    next_graph: AtomicU64,
}

impl Shared {
    fn backend(&self) -> MutexGuard<'_, Box<dyn Backend>> {
        // A panic while holding the lock cannot leave the backend's ids inconsistent in a way
        // the next caller could make worse, so keep going with the inner value.
        self.backend.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An open GPU. Cheap to clone; every clone is the same device.
#[derive(Clone)]
pub struct Device {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("name", &self.shared.name).finish()
    }
}

impl Device {
    /// Open a device by name (see [`DeviceName`]: `nv:0`, `amd:0`, `usb:3-2`, `emu:navi31`, …).
    pub fn open(name: &str) -> Result<Device, Error> {
        let parsed: DeviceName = name.parse()?;
        let backend = crate::registry::open_backend(&parsed)?;
        Ok(Device::from_backend(parsed.to_string(), backend))
    }

    /// Wrap a backend as a device (how tests and new drivers plug in).
    pub fn from_backend(name: impl Into<String>, backend: Box<dyn Backend>) -> Device {
        Device {
            shared: Arc::new(Shared {
                name: name.into(),
                properties: backend.properties(),
                backend: Mutex::new(backend),
                next_graph: AtomicU64::new(1),
            }),
        }
    }

    /// The name the device was opened with.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// What the device says about itself.
    pub fn properties(&self) -> &DeviceProperties {
        &self.shared.properties
    }

    /// Allocate a buffer of `size` bytes (more than zero).
    pub fn alloc(&self, size: u64, kind: MemoryKind) -> Result<Buffer, Error> {
        if size == 0 {
            return Err(Error::OutOfBounds { operation: "alloc", offset: 0, len: 0, size: 0 });
        }
        let id = self.shared.backend().alloc(size, kind)?;
        Ok(Buffer { inner: Arc::new(BufferInner { shared: self.shared.clone(), id, size, kind }) })
    }

    /// Copy `data` into `buffer` at `offset` and return when it has landed.
    /// Device buffers go through a temporary host-visible staging buffer.
    pub fn write(&self, buffer: &Buffer, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.check_own(&buffer.inner.shared, "write")?;
        buffer.check_range("write", offset, data.len() as u64)?;
        if data.is_empty() {
            return Ok(());
        }
        match buffer.kind() {
            MemoryKind::HostVisible => {
                self.shared.backend().write_host(buffer.inner.id, offset, data)
            }
            MemoryKind::Device => {
                let staging = self.alloc(data.len() as u64, MemoryKind::HostVisible)?;
                self.shared.backend().write_host(staging.inner.id, 0, data)?;
                let mut queue = self.queue();
                queue.copy(&staging, 0, buffer, offset, data.len() as u64)?;
                queue.finish(DEFAULT_TIMEOUT)
            }
        }
    }

    /// Read `out.len()` bytes from `buffer` at `offset`, after all submitted work has finished.
    pub fn read(&self, buffer: &Buffer, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        self.check_own(&buffer.inner.shared, "read")?;
        buffer.check_range("read", offset, out.len() as u64)?;
        if out.is_empty() {
            return Ok(());
        }
        match buffer.kind() {
            MemoryKind::HostVisible => {
                // Let earlier submitted work that may write this buffer finish first.
                self.queue().finish(DEFAULT_TIMEOUT)?;
                self.shared.backend().read_host(buffer.inner.id, offset, out)
            }
            MemoryKind::Device => {
                let staging = self.alloc(out.len() as u64, MemoryKind::HostVisible)?;
                let mut queue = self.queue();
                queue.copy(buffer, offset, &staging, 0, out.len() as u64)?;
                queue.finish(DEFAULT_TIMEOUT)?;
                // Bound to a local so the backend lock is released before `staging` drops
                // (its Drop takes the same lock).
                let result = self.shared.backend().read_host(staging.inner.id, 0, out);
                result
            }
        }
    }

    /// Load a program image (cubin for NVIDIA).
    pub fn load_program(&self, image: &[u8]) -> Result<Program, Error> {
        let id = self.shared.backend().load_program(image)?;
        Ok(Program { inner: Arc::new(ProgramInner { shared: self.shared.clone(), id }) })
    }

    /// Create a timeline signal starting at 0.
    pub fn signal(&self) -> Result<Signal, Error> {
        let id = self.shared.backend().create_signal()?;
        Ok(Signal { inner: Arc::new(SignalInner { shared: self.shared.clone(), id }) })
    }

    /// Start recording work.
    pub fn queue(&self) -> Queue {
        Queue { device: self.clone(), list: CommandList::default(), keep: Vec::new() }
    }

    /// Start recording work with room for `commands` commands and `arg_bytes` bytes of
    /// kernel arguments, so that recording (and resubmitting) that much allocates nothing.
    pub fn queue_with_capacity(&self, commands: usize, arg_bytes: usize) -> Queue {
        Queue {
            device: self.clone(),
            list: CommandList {
                commands: Vec::with_capacity(commands),
                args: Vec::with_capacity(arg_bytes),
            },
            // A launch keeps its program and up to a few buffers alive.
            keep: Vec::with_capacity(commands * 4),
        }
    }

    fn check_own(&self, shared: &Arc<Shared>, operation: &'static str) -> Result<(), Error> {
        if Arc::ptr_eq(&self.shared, shared) {
            Ok(())
        } else {
            Err(Error::ForeignObject { operation })
        }
    }
}

struct BufferInner {
    shared: Arc<Shared>,
    id: BufferId,
    size: u64,
    kind: MemoryKind,
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        self.shared.backend().free(self.id);
    }
}

/// Memory on (or visible to) a device. Freed when the last clone is dropped; queues and graphs
/// that use a buffer hold a clone, so recorded work never sees it freed.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<BufferInner>,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("size", &self.inner.size)
            .field("kind", &self.inner.kind)
            .finish()
    }
}

impl Buffer {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// Where the buffer lives.
    pub fn kind(&self) -> MemoryKind {
        self.inner.kind
    }

    /// The address a kernel uses to reach the buffer.
    pub fn device_address(&self) -> Result<u64, Error> {
        self.inner.shared.backend().device_address(self.inner.id)
    }

    fn check_range(&self, operation: &'static str, offset: u64, len: u64) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.inner.size => Ok(()),
            _ => Err(Error::OutOfBounds { operation, offset, len, size: self.inner.size }),
        }
    }
}

struct ProgramInner {
    shared: Arc<Shared>,
    id: ProgramId,
}

impl Drop for ProgramInner {
    fn drop(&mut self) {
        self.shared.backend().unload_program(self.id);
    }
}

/// A loaded program (one code object holding one or more kernels).
#[derive(Clone)]
pub struct Program {
    inner: Arc<ProgramInner>,
}

impl Program {
    /// Names of the kernels in the program.
    pub fn kernel_names(&self) -> Result<Vec<String>, Error> {
        self.inner.shared.backend().kernel_names(self.inner.id)
    }

    /// Look a kernel up by name.
    pub fn kernel(&self, name: &str) -> Result<Kernel, Error> {
        let backend = self.inner.shared.backend();
        match backend.kernel_info(self.inner.id, name)? {
            Some(info) => Ok(Kernel { program: self.clone(), info }),
            None => Err(Error::NoSuchKernel {
                name: name.to_string(),
                available: backend.kernel_names(self.inner.id)?.join(", "),
            }),
        }
    }
}

/// One kernel of a loaded program.
#[derive(Clone)]
pub struct Kernel {
    program: Program,
    info: KernelInfo,
}

impl Kernel {
    /// The kernel's metadata (parameters, limits).
    pub fn info(&self) -> &KernelInfo {
        &self.info
    }
}

/// A kernel argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// A pointer to the start of a buffer.
    Buffer(&'a Buffer),
    /// A pointer `offset` bytes into a buffer.
    BufferAt(&'a Buffer, u64),
    /// 32-bit unsigned value.
    U32(u32),
    /// 32-bit signed value.
    I32(i32),
    /// 64-bit unsigned value.
    U64(u64),
    /// 64-bit signed value.
    I64(i64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
    /// Raw bytes (a struct passed by value), laid out as the kernel expects.
    Bytes(&'a [u8]),
}

/// Lay arguments out at the end of `block` (grown by the kernel's `param_bytes`) following the
/// kernel's parameter slots. `address` turns a buffer (and offset) into the device address a
/// pointer carries. Nothing is allocated beyond growing `block`.
pub(crate) fn layout_args(
    info: &KernelInfo,
    args: &[Arg<'_>],
    block: &mut Vec<u8>,
    mut address: impl FnMut(&Buffer, u64) -> Result<u64, Error>,
) -> Result<std::ops::Range<usize>, Error> {
    if args.len() != info.params.len() {
        return Err(Error::ArgumentCount {
            kernel: info.name.to_string(),
            expected: info.params.len(),
            got: args.len(),
        });
    }
    let start = block.len();
    let range = start..start + info.param_bytes as usize;
    block.resize(range.end, 0);
    let result = (|| {
        for (index, (arg, slot)) in args.iter().zip(&info.params).enumerate() {
            let mut scalar = [0u8; 8];
            let bytes: &[u8] = match *arg {
                Arg::Buffer(buffer) => {
                    scalar = address(buffer, 0)?.to_le_bytes();
                    &scalar
                }
                Arg::BufferAt(buffer, offset) => {
                    buffer.check_range("pointer argument", offset, 0)?;
                    scalar = address(buffer, offset)?.to_le_bytes();
                    &scalar
                }
                Arg::U32(v) => put(&mut scalar, &v.to_le_bytes()),
                Arg::I32(v) => put(&mut scalar, &v.to_le_bytes()),
                Arg::U64(v) => put(&mut scalar, &v.to_le_bytes()),
                Arg::I64(v) => put(&mut scalar, &v.to_le_bytes()),
                Arg::F32(v) => put(&mut scalar, &v.to_le_bytes()),
                Arg::F64(v) => put(&mut scalar, &v.to_le_bytes()),
                Arg::Bytes(b) => b,
            };
            let wrong_size = || Error::ArgumentSize {
                kernel: info.name.to_string(),
                index,
                expected: slot.size,
                got: bytes.len() as u32,
            };
            if bytes.len() != slot.size as usize {
                return Err(wrong_size());
            }
            let at = range.start + slot.offset as usize;
            let target = block
                .get_mut(at..at + bytes.len())
                .filter(|_| slot.offset as usize + bytes.len() <= info.param_bytes as usize)
                .ok_or_else(wrong_size)?;
            target.copy_from_slice(bytes);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(range),
        Err(error) => {
            block.truncate(start);
            Err(error)
        }
    }
}

/// Copy a scalar's bytes into the front of `scratch` and return that part.
fn put<'s>(scratch: &'s mut [u8; 8], bytes: &[u8]) -> &'s [u8] {
    scratch[..bytes.len()].copy_from_slice(bytes);
    &scratch[..bytes.len()]
}

struct SignalInner {
    shared: Arc<Shared>,
    id: SignalId,
}

impl Drop for SignalInner {
    fn drop(&mut self) {
        self.shared.backend().destroy_signal(self.id);
    }
}

/// A timeline signal: a 64-bit value that only grows. The GPU sets it when work before a
/// `signal` command finishes; the GPU (queue `wait`) or the CPU ([`Signal::wait`]) wait on it.
#[derive(Clone)]
pub struct Signal {
    inner: Arc<SignalInner>,
}

impl Signal {
    /// The current value.
    pub fn value(&self) -> Result<u64, Error> {
        self.inner.shared.backend().signal_value(self.inner.id)
    }

    /// Set the value from the CPU (releases GPU work waiting on it).
    pub fn set(&self, value: u64) -> Result<(), Error> {
        self.inner.shared.backend().set_signal(self.inner.id, value)
    }

    /// Block until the value is at least `value` or `deadline` passes.
    ///
    /// Polls the value, taking the device lock only for each read, so other threads keep
    /// submitting while this one waits: spins briefly (GPU work often finishes within
    /// microseconds), then yields, then sleeps in growing steps up to 1 ms.
    pub fn wait(&self, value: u64, deadline: Instant) -> Result<(), Error> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            let seen = self.value()?;
            if seen >= value {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!("signal {} of {}", self.inner.id.0, self.inner.shared.name),
                    wanted: value,
                    last_seen: seen,
                    waited: now - start,
                });
            }
            polls = polls.saturating_add(1);
            match polls {
                0..=64 => std::hint::spin_loop(),
                65..=256 => std::thread::yield_now(),
                _ => {
                    let step = Duration::from_micros(u64::from(polls - 256).min(1000));
                    std::thread::sleep(step.min(deadline - now));
                }
            }
        }
    }

    /// Block until the value is at least `value`, for at most `timeout`.
    pub fn wait_for(&self, value: u64, timeout: Duration) -> Result<(), Error> {
        self.wait(value, Instant::now() + timeout)
    }
}

enum Keep {
    Buffer(#[allow(dead_code)] Buffer),
    Program(#[allow(dead_code)] Program),
    Signal(#[allow(dead_code)] Signal),
}

/// Recorded work for one device: copies, launches and signal operations, run in order.
pub struct Queue {
    device: Device,
    list: CommandList,
    keep: Vec<Keep>,
}

impl Queue {
    /// Copy `len` bytes from `src[src_offset..]` to `dst[dst_offset..]`.
    pub fn copy(
        &mut self,
        src: &Buffer,
        src_offset: u64,
        dst: &Buffer,
        dst_offset: u64,
        len: u64,
    ) -> Result<&mut Self, Error> {
        self.device.check_own(&src.inner.shared, "copy")?;
        self.device.check_own(&dst.inner.shared, "copy")?;
        src.check_range("copy source", src_offset, len)?;
        dst.check_range("copy destination", dst_offset, len)?;
        self.list.commands.push(Command::Copy {
            src: src.inner.id,
            src_offset,
            dst: dst.inner.id,
            dst_offset,
            len,
        });
        self.keep.push(Keep::Buffer(src.clone()));
        self.keep.push(Keep::Buffer(dst.clone()));
        Ok(self)
    }

    /// Launch `kernel` on `grid` blocks of `block` threads with `dynamic_shared_bytes` of
    /// dynamic shared memory; `args` are checked against the kernel's parameters.
    pub fn launch(
        &mut self,
        kernel: &Kernel,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_shared_bytes: u32,
        args: &[Arg<'_>],
    ) -> Result<&mut Self, Error> {
        self.device.check_own(&kernel.program.inner.shared, "launch")?;
        let info = &kernel.info;
        let bad = |why: String| Error::BadLaunch { kernel: info.name.to_string(), why };
        if grid.contains(&0) || block.contains(&0) {
            return Err(bad(format!(
                "grid {grid:?} and block {block:?} must have no zero dimension"
            )));
        }
        let threads = block.iter().map(|&d| u64::from(d)).product::<u64>();
        let limit = u64::from(
            info.max_threads_per_block.min(self.device.shared.properties.max_threads_per_block),
        );
        if threads > limit {
            return Err(bad(format!(
                "block {block:?} has {threads} threads, the most allowed is {limit}"
            )));
        }
        let (device, keep) = (&self.device, &mut self.keep);
        let args = layout_args(info, args, &mut self.list.args, |buffer, offset| {
            device.check_own(&buffer.inner.shared, "launch argument")?;
            keep.push(Keep::Buffer(buffer.clone()));
            Ok(buffer.device_address()? + offset)
        })?;
        self.list.commands.push(Command::Launch(LaunchCommand {
            program: kernel.program.inner.id,
            kernel: Arc::clone(&info.name),
            grid,
            block,
            dynamic_shared_bytes,
            args,
        }));
        self.keep.push(Keep::Program(kernel.program.clone()));
        Ok(self)
    }

    /// Set `signal` to `value` when all earlier work in this queue has finished.
    pub fn signal(&mut self, signal: &Signal, value: u64) -> Result<&mut Self, Error> {
        self.device.check_own(&signal.inner.shared, "signal")?;
        self.list.commands.push(Command::Signal { signal: signal.inner.id, value });
        self.keep.push(Keep::Signal(signal.clone()));
        Ok(self)
    }

    /// Hold later work in this queue until `signal` is at least `value`.
    pub fn wait(&mut self, signal: &Signal, value: u64) -> Result<&mut Self, Error> {
        self.device.check_own(&signal.inner.shared, "wait")?;
        self.list.commands.push(Command::Wait { signal: signal.inner.id, value });
        self.keep.push(Keep::Signal(signal.clone()));
        Ok(self)
    }

    /// The commands recorded so far.
    pub fn commands(&self) -> &[Command] {
        &self.list.commands
    }

    /// The recorded commands with their argument blocks.
    pub fn command_list(&self) -> &CommandList {
        &self.list
    }

    /// Hand the recorded work to the device and start a fresh recording (keeping the
    /// queue's capacity, so a queue reused per step stops allocating).
    pub fn submit(&mut self) -> Result<(), Error> {
        if self.list.is_empty() {
            return Ok(());
        }
        self.device.shared.backend().submit(&self.list, 0)?;
        self.list.clear();
        self.keep.clear();
        Ok(())
    }

    /// Submit, then wait (up to `timeout`) until everything submitted has finished.
    pub fn finish(&mut self, timeout: Duration) -> Result<(), Error> {
        let done = self.device.signal()?;
        self.signal(&done, 1)?;
        self.submit()?;
        done.wait_for(1, timeout)
    }

    /// Turn the recording into a graph that replays it with one call.
    pub fn record(self) -> Graph {
        let id = self.device.shared.next_graph.fetch_add(1, Ordering::Relaxed);
        Graph { device: self.device, id, list: self.list, _keep: self.keep }
    }
}

/// A recorded sequence of commands, replayed with [`Graph::launch`].
pub struct Graph {
    device: Device,
    id: u64,
    list: CommandList,
    _keep: Vec<Keep>,
}

impl Graph {
    /// The recorded commands.
    pub fn commands(&self) -> &[Command] {
        &self.list.commands
    }

    /// The recorded commands with their argument blocks.
    pub fn command_list(&self) -> &CommandList {
        &self.list
    }

    /// Replay the graph exactly as recorded.
    pub fn launch(&self) -> Result<(), Error> {
        self.launch_with_signal_offset(0)
    }

    /// Replay with every signal/wait value raised by `offset`, so that a graph recorded with
    /// values 1..=k can run again as k+1..=2k on the same timelines.
    pub fn launch_with_signal_offset(&self, offset: u64) -> Result<(), Error> {
        self.device.shared.backend().replay(self.id, &self.list, offset)
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        self.device.shared.backend().drop_graph(self.id);
    }
}
