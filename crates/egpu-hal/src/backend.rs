//! The seam between the runtime and a vendor driver.
//!
//! A backend deals in plain ids and byte slices; the runtime (`egpu::Device` and friends)
//! adds ownership, bounds checks, argument layout, staging and graphs on top. Everything here
//! is vendor-blind so that the runtime tests against a software backend.

use crate::Error;
use std::ops::Range;
use std::sync::Arc;

/// Who made the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    /// NVIDIA.
    Nvidia,
    /// AMD.
    Amd,
    /// A software device (tests, emulator).
    Software,
}

/// What a device says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceProperties {
    /// Vendor.
    pub vendor: Vendor,
    /// Marketing or chip name, e.g. "NVIDIA H100 80GB HBM3" or "GH100".
    pub name: String,
    /// Architecture / ISA target the device runs, e.g. "sm_90" or "gfx1100".
    pub architecture: String,
    /// Device memory in bytes.
    pub memory_bytes: u64,
    /// Compute units (NVIDIA: SMs; AMD: CUs).
    pub compute_units: u32,
    /// Most threads one block (workgroup) may have.
    pub max_threads_per_block: u32,
}

/// Where a buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryKind {
    /// Device memory (VRAM): fast for kernels, reached by the CPU only through copies.
    Device,
    /// Host memory the GPU can reach and the CPU can read/write directly (staging).
    HostVisible,
}

/// Backend handle of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufferId(pub u64);
/// Backend handle of a loaded program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProgramId(pub u64);
/// Backend handle of a timeline signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalId(pub u64);

/// Where one kernel parameter sits in the argument block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSlot {
    /// Byte offset from the start of the argument block.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// What a program's metadata says about one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// Kernel (symbol) name; shared so that recording a launch copies no string.
    pub name: Arc<str>,
    /// Parameters in declaration order.
    pub params: Vec<ParamSlot>,
    /// Size of the whole argument block in bytes.
    pub param_bytes: u32,
    /// Most threads per block this kernel may be launched with.
    pub max_threads_per_block: u32,
    /// Static shared memory the kernel declares, in bytes.
    pub static_shared_bytes: u32,
}

/// One kernel launch, arguments already laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchCommand {
    /// Program holding the kernel.
    pub program: ProgramId,
    /// Kernel name within the program.
    pub kernel: Arc<str>,
    /// Grid size in blocks (x, y, z).
    pub grid: [u32; 3],
    /// Block size in threads (x, y, z).
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes, on top of the kernel's static shared memory.
    pub dynamic_shared_bytes: u32,
    /// Where the argument block (`KernelInfo::param_bytes` long) sits in
    /// [`CommandList::args`].
    pub args: Range<usize>,
}

/// One unit of recorded GPU work. Commands of one submission run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Copy `len` bytes between two buffers (either kind).
    Copy {
        /// Source buffer.
        src: BufferId,
        /// Byte offset in the source.
        src_offset: u64,
        /// Destination buffer.
        dst: BufferId,
        /// Byte offset in the destination.
        dst_offset: u64,
        /// Bytes to copy.
        len: u64,
    },
    /// Launch a kernel.
    Launch(LaunchCommand),
    /// Set the signal to `value` once all earlier work has finished.
    Signal {
        /// The signal.
        signal: SignalId,
        /// The value to write.
        value: u64,
    },
    /// Hold later work on the GPU until the signal is at least `value`.
    Wait {
        /// The signal.
        signal: SignalId,
        /// The value to wait for.
        value: u64,
    },
}

impl Command {
    /// The command with every signal value raised by `offset` (how graphs advance timelines).
    pub fn with_signal_offset(&self, offset: u64) -> Command {
        match self {
            Command::Signal { signal, value } => {
                Command::Signal { signal: *signal, value: value + offset }
            }
            Command::Wait { signal, value } => {
                Command::Wait { signal: *signal, value: value + offset }
            }
            other => other.clone(),
        }
    }
}

/// Recorded work: commands in order, and one arena holding every launch's argument block
/// (so recording a launch into a list with room allocates nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandList {
    /// The commands, run in order.
    pub commands: Vec<Command>,
    /// Argument blocks of the launches, addressed by [`LaunchCommand::args`].
    pub args: Vec<u8>,
}

impl CommandList {
    /// The argument block of a launch of this list.
    pub fn launch_args(&self, launch: &LaunchCommand) -> &[u8] {
        self.args.get(launch.args.clone()).unwrap_or(&[])
    }

    /// Forget the commands, keeping the capacity.
    pub fn clear(&mut self) {
        self.commands.clear();
        self.args.clear();
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// A vendor driver as the runtime sees it. Ids are only meaningful to the backend that made them.
pub trait Backend: Send {
    /// The device's properties.
    fn properties(&self) -> DeviceProperties;
    /// Allocate `size` bytes of the given kind.
    fn alloc(&mut self, size: u64, kind: MemoryKind) -> Result<BufferId, Error>;
    /// Free a buffer; the runtime calls this exactly once per buffer.
    fn free(&mut self, buffer: BufferId);
    /// The address kernels use for the buffer (what a pointer argument carries).
    fn device_address(&self, buffer: BufferId) -> Result<u64, Error>;
    /// Write bytes into a host-visible buffer (range already checked by the runtime).
    fn write_host(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), Error>;
    /// Read bytes from a host-visible buffer (range already checked by the runtime).
    fn read_host(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), Error>;
    /// Load a program image (cubin, HSACO, …).
    fn load_program(&mut self, image: &[u8]) -> Result<ProgramId, Error>;
    /// Names of the kernels in a program.
    fn kernel_names(&self, program: ProgramId) -> Result<Vec<String>, Error>;
    /// Metadata of one kernel, `None` if the program has no such kernel.
    fn kernel_info(&self, program: ProgramId, name: &str) -> Result<Option<KernelInfo>, Error>;
    /// Unload a program; called exactly once per program.
    fn unload_program(&mut self, program: ProgramId);
    /// Create a timeline signal starting at 0.
    fn create_signal(&mut self) -> Result<SignalId, Error>;
    /// Destroy a signal; called exactly once per signal.
    fn destroy_signal(&mut self, signal: SignalId);
    /// The signal's current value. The runtime polls this to wait, taking the device lock only
    /// for each read, so a waiting thread never holds up another thread's submission; keep
    /// it cheap (one memory read, or one register read over the link).
    fn signal_value(&mut self, signal: SignalId) -> Result<u64, Error>;
    /// Set the signal from the CPU.
    fn set_signal(&mut self, signal: SignalId, value: u64) -> Result<(), Error>;
    /// Queue the commands for execution in order, with every signal/wait value raised by
    /// `signal_offset`; returns once they are handed to the device.
    fn submit(&mut self, list: &CommandList, signal_offset: u64) -> Result<(), Error>;
    /// Replay a recorded list with signal values raised by `signal_offset`.
    ///
    /// The default submits the list again; a backend may instead keep a prebuilt command
    /// buffer per graph (keyed by `graph`) and only patch signal values and ring a doorbell.
    fn replay(&mut self, graph: u64, list: &CommandList, signal_offset: u64) -> Result<(), Error> {
        let _ = graph;
        self.submit(list, signal_offset)
    }
    /// Forget any state kept for a graph.
    fn drop_graph(&mut self, graph: u64) {
        let _ = graph;
    }
}
