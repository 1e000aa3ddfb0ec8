//! The runtime backend of this driver: adapts [`crate::device::NvDevice`] (RM client,
//! channels, submission) to `egpu-hal`'s [`Backend`] trait, which the `egpu` runtime opens
//! for `nv:N`. Unverified on hardware until the GPU suite has run.

use egpu_hal::{
    Backend, BufferId, Command, CommandList, DeviceProperties, Error, KernelInfo, MemoryKind,
    ParamSlot, ProgramId, SignalId, Vendor,
};
#[cfg(target_os = "linux")]
use std::collections::HashMap;
#[cfg(target_os = "linux")]
use std::sync::Arc;

#[cfg(target_os = "linux")]
fn backend_err(operation: &'static str, device: &str, e: crate::NvError) -> Error {
    match e {
        crate::NvError::Timeout { slot, wanted, last_seen, waited } => Error::Timeout {
            what: format!("signal slot {slot} on {device}"),
            wanted,
            last_seen,
            waited,
        },
        other => Error::Backend { operation, device: device.to_string(), source: Box::new(other) },
    }
}

/// Open the `index`-th NVIDIA GPU found through nvidia.ko as a runtime backend; `name` is
/// what errors call it.
#[cfg(target_os = "linux")]
pub fn open(index: u32, name: &str) -> Result<Box<dyn Backend>, Error> {
    let dev = crate::device::NvDevice::open(index).map_err(|e| match e {
        crate::NvError::NoKernelDriver | crate::NvError::NoSuchGpu { .. } => {
            Error::Unavailable { name: name.to_string(), why: e.to_string() }
        }
        other => backend_err("open", name, other),
    })?;
    Ok(Box::new(NvBackend { name: name.to_string(), dev, buffers: HashMap::new(), next: 1 }))
}

/// Open: not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn open(_index: u32, name: &str) -> Result<Box<dyn Backend>, Error> {
    Err(Error::Unavailable {
        name: name.to_string(),
        why: "the NVIDIA kernel-module path needs Linux".into(),
    })
}

#[cfg(target_os = "linux")]
struct NvBackend {
    name: String,
    dev: crate::device::NvDevice,
    buffers: HashMap<u64, crate::device::NvBuffer>,
    next: u64,
}

#[cfg(target_os = "linux")]
impl NvBackend {
    fn buffer(&self, id: BufferId) -> Result<crate::device::NvBuffer, Error> {
        self.buffers.get(&id.0).copied().ok_or(Error::ForeignObject { operation: "buffer lookup" })
    }
}

#[cfg(target_os = "linux")]
impl Backend for NvBackend {
    fn properties(&self) -> DeviceProperties {
        let arch = self.dev.arch();
        DeviceProperties {
            vendor: Vendor::Nvidia,
            name: self.dev.name().to_string(),
            architecture: format!("sm_{}", arch.sm()),
            // 0 when the driver refused the FB query (sandboxes).
            memory_bytes: self.dev.memory_bytes().unwrap_or(0),
            compute_units: self.dev.sm_count(),
            max_threads_per_block: crate::launch::MAX_THREADS_PER_BLOCK,
        }
    }
    fn alloc(&mut self, size: u64, kind: MemoryKind) -> Result<BufferId, Error> {
        let b = self
            .dev
            .alloc(size, kind == MemoryKind::HostVisible)
            .map_err(|e| backend_err("alloc", &self.name, e))?;
        let id = self.next;
        self.next += 1;
        self.buffers.insert(id, b);
        Ok(BufferId(id))
    }
    fn free(&mut self, buffer: BufferId) {
        if let Some(b) = self.buffers.remove(&buffer.0) {
            self.dev.free(b);
        }
    }
    fn device_address(&self, buffer: BufferId) -> Result<u64, Error> {
        Ok(self.buffer(buffer)?.va)
    }
    fn write_host(&mut self, buffer: BufferId, offset: u64, data: &[u8]) -> Result<(), Error> {
        let b = self.buffer(buffer)?;
        self.dev.write_host(&b, offset, data).map_err(|e| backend_err("write", &self.name, e))
    }
    fn read_host(&mut self, buffer: BufferId, offset: u64, out: &mut [u8]) -> Result<(), Error> {
        let b = self.buffer(buffer)?;
        self.dev.read_host(&b, offset, out).map_err(|e| backend_err("read", &self.name, e))
    }
    fn load_program(&mut self, image: &[u8]) -> Result<ProgramId, Error> {
        self.dev
            .load_program(image)
            .map(ProgramId)
            .map_err(|e| backend_err("load program", &self.name, e))
    }
    fn kernel_names(&self, program: ProgramId) -> Result<Vec<String>, Error> {
        Ok(self.dev.kernel_names(program.0))
    }
    fn kernel_info(&self, program: ProgramId, name: &str) -> Result<Option<KernelInfo>, Error> {
        Ok(self.dev.kernel(program.0, name).map(|k| KernelInfo {
            name: Arc::from(k.name.as_str()),
            params: k.params.iter().map(|p| ParamSlot { offset: p.offset, size: p.size }).collect(),
            param_bytes: k.param_bytes,
            max_threads_per_block: crate::launch::max_threads_for(k),
            static_shared_bytes: k.shared_bytes,
        }))
    }
    fn unload_program(&mut self, program: ProgramId) {
        self.dev.unload_program(program.0);
    }
    fn create_signal(&mut self) -> Result<SignalId, Error> {
        self.dev
            .create_signal()
            .map(|s| SignalId(u64::from(s)))
            .map_err(|e| backend_err("create signal", &self.name, e))
    }
    fn destroy_signal(&mut self, signal: SignalId) {
        self.dev.destroy_signal(signal.0 as u32);
    }
    fn signal_value(&mut self, signal: SignalId) -> Result<u64, Error> {
        self.dev
            .signal_value(signal.0 as u32)
            .map_err(|e| backend_err("signal value", &self.name, e))
    }
    fn set_signal(&mut self, signal: SignalId, value: u64) -> Result<(), Error> {
        self.dev
            .set_signal(signal.0 as u32, value)
            .map_err(|e| backend_err("set signal", &self.name, e))
    }
    fn submit(&mut self, list: &CommandList, signal_offset: u64) -> Result<(), Error> {
        use crate::device::NvCommand;
        let mut out = Vec::with_capacity(list.commands.len());
        for c in &list.commands {
            out.push(match c {
                Command::Copy { src, src_offset, dst, dst_offset, len } => NvCommand::Copy {
                    src: self.buffer(*src)?.va + src_offset,
                    dst: self.buffer(*dst)?.va + dst_offset,
                    len: *len,
                },
                Command::Launch(l) => NvCommand::Launch {
                    program: l.program.0,
                    kernel: &l.kernel,
                    grid: l.grid,
                    block: l.block,
                    dynamic_shared_bytes: l.dynamic_shared_bytes,
                    args: list.launch_args(l),
                },
                Command::Signal { signal, value } => {
                    NvCommand::Signal { slot: signal.0 as u32, value: value + signal_offset }
                }
                Command::Wait { signal, value } => {
                    NvCommand::Wait { slot: signal.0 as u32, value: value + signal_offset }
                }
            });
        }
        self.dev.submit(&out).map_err(|e| backend_err("submit", &self.name, e))
    }
}
