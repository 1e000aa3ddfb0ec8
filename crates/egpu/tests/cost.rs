//! What the runtime itself costs: a launch allocates nothing once its queue has room, a graph
//! replay allocates nothing, and a thread waiting on a signal does not hold up another
//! thread's submission. Counted, not timed: a counting allocator and a poll counter.

use egpu::backend::{Backend, BufferId, Command, CommandList, ProgramId, SignalId};
use egpu::{Arg, Device, DeviceProperties, Error, KernelInfo, MemoryKind, ParamSlot, Vendor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts allocations made by the current thread (tests run on several threads at once).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the thread-local counter is
// const-initialised, so touching it never allocates or recurses.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A backend that executes nothing: it counts what it is handed and sets signals at once.
/// Shared counters let the test look inside while the device owns the backend.
#[derive(Default)]
struct CountingBackend {
    launches: Arc<AtomicU64>,
    signal_polls: Arc<AtomicU64>,
    signals: Vec<u64>,
}

impl Backend for CountingBackend {
    fn properties(&self) -> DeviceProperties {
        DeviceProperties {
            vendor: Vendor::Software,
            name: "counting".into(),
            architecture: "none".into(),
            memory_bytes: 1 << 30,
            compute_units: 1,
            max_threads_per_block: 1024,
        }
    }
    fn alloc(&mut self, _size: u64, _kind: MemoryKind) -> Result<BufferId, Error> {
        Ok(BufferId(1))
    }
    fn free(&mut self, _buffer: BufferId) {}
    fn device_address(&self, buffer: BufferId) -> Result<u64, Error> {
        Ok(buffer.0 << 32)
    }
    fn write_host(&mut self, _: BufferId, _: u64, _: &[u8]) -> Result<(), Error> {
        Ok(())
    }
    fn read_host(&mut self, _: BufferId, _: u64, _: &mut [u8]) -> Result<(), Error> {
        Ok(())
    }
    fn load_program(&mut self, _image: &[u8]) -> Result<ProgramId, Error> {
        Ok(ProgramId(1))
    }
    fn kernel_names(&self, _: ProgramId) -> Result<Vec<String>, Error> {
        Ok(vec!["scale".into()])
    }
    fn kernel_info(&self, _: ProgramId, name: &str) -> Result<Option<KernelInfo>, Error> {
        Ok((name == "scale").then(|| KernelInfo {
            name: name.into(),
            params: vec![ParamSlot { offset: 0, size: 8 }, ParamSlot { offset: 8, size: 4 }],
            param_bytes: 12,
            max_threads_per_block: 256,
            static_shared_bytes: 0,
        }))
    }
    fn unload_program(&mut self, _: ProgramId) {}
    fn create_signal(&mut self) -> Result<SignalId, Error> {
        self.signals.push(0);
        Ok(SignalId(self.signals.len() as u64 - 1))
    }
    fn destroy_signal(&mut self, _: SignalId) {}
    fn signal_value(&mut self, signal: SignalId) -> Result<u64, Error> {
        self.signal_polls.fetch_add(1, Ordering::SeqCst);
        Ok(self.signals[signal.0 as usize])
    }
    fn set_signal(&mut self, signal: SignalId, value: u64) -> Result<(), Error> {
        self.signals[signal.0 as usize] = value;
        Ok(())
    }
    fn submit(&mut self, list: &CommandList, signal_offset: u64) -> Result<(), Error> {
        for command in &list.commands {
            match command {
                Command::Launch(launch) => {
                    assert_eq!(list.launch_args(launch).len(), 12);
                    self.launches.fetch_add(1, Ordering::SeqCst);
                }
                Command::Signal { signal, value } => {
                    self.signals[signal.0 as usize] = value + signal_offset
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[test]
fn launches_and_replays_allocate_nothing_once_the_queue_has_room() {
    let backend = CountingBackend::default();
    let launches = backend.launches.clone();
    let device = Device::from_backend("counting:0", Box::new(backend));
    let buffer = device.alloc(4096, MemoryKind::Device).unwrap();
    let kernel = device.load_program(b"scale").unwrap().kernel("scale").unwrap();
    let done = device.signal().unwrap();
    let mut queue = device.queue_with_capacity(8, 256);
    let step = |queue: &mut egpu::Queue, value: u64| {
        queue
            .launch(&kernel, [4, 1, 1], [64, 1, 1], 0, &[Arg::Buffer(&buffer), Arg::F32(2.0)])
            .unwrap()
            .launch(&kernel, [4, 1, 1], [64, 1, 1], 0, &[Arg::BufferAt(&buffer, 64), Arg::U32(7)])
            .unwrap()
            .signal(&done, value)
            .unwrap();
        queue.submit().unwrap();
    };

    const STEPS: u64 = 1000;
    let before = allocations();
    for value in 1..=STEPS {
        step(&mut queue, value);
    }
    let recorded = allocations() - before;
    assert_eq!(launches.load(Ordering::SeqCst), 2 * STEPS);
    assert_eq!(done.value().unwrap(), STEPS);
    assert_eq!(recorded, 0, "{STEPS} steps of two launches allocated {recorded} times");

    let mut recording = device.queue_with_capacity(8, 256);
    step(&mut recording, 1);
    // `step` submitted; record the same work again without submitting, as a graph.
    recording
        .launch(&kernel, [4, 1, 1], [64, 1, 1], 0, &[Arg::Buffer(&buffer), Arg::F32(2.0)])
        .unwrap()
        .signal(&done, 1)
        .unwrap();
    let graph = recording.record();
    let before = allocations();
    for round in 0..STEPS {
        graph.launch_with_signal_offset(STEPS + round).unwrap();
    }
    let replayed = allocations() - before;
    assert_eq!(done.value().unwrap(), 2 * STEPS);
    assert_eq!(replayed, 0, "{STEPS} graph replays allocated {replayed} times");
}

#[test]
fn a_waiting_thread_does_not_hold_up_another_threads_submit() {
    let backend = CountingBackend::default();
    let polls = backend.signal_polls.clone();
    let device = Device::from_backend("counting:0", Box::new(backend));
    let signal = device.signal().unwrap();
    let waiter = {
        let signal = signal.clone();
        // The only way the signal reaches 1 is the other thread's submission below: if the
        // waiter held the device while waiting, that submission would queue behind the whole
        // deadline and this wait would time out.
        std::thread::spawn(move || signal.wait_for(1, Duration::from_secs(600)))
    };
    // Submit only once the waiter is inside its wait (it has polled at least once).
    while polls.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let mut queue = device.queue();
    queue.signal(&signal, 1).unwrap();
    queue.submit().unwrap();
    waiter.join().unwrap().expect("the wait sees the other thread's submission");
}
