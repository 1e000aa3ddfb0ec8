//! Encoding a launch allocates nothing once the reused buffers have grown: the cbuf0 + QMD
//! bytes and the pushbuffer commands that `NvDevice::submit` builds per launch, counted by a
//! global allocator. (The device itself needs a GPU; this covers the CPU-side encoding it does
//! for each launch, with the same functions and buffer reuse.)

use egpu_nv::arch::Arch;
use egpu_nv::cubin::{ConstantBank, CubinKernel};
use egpu_nv::launch::{build_cbuf0_into, build_qmd, QmdLaunch};
use egpu_nv::pushbuf::PushBuffer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Counts allocations made by the current thread (other test-harness threads don't count).
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call unchanged to the system allocator; counting touches only a
// thread-local Cell, which does not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn kernel(arch: Arch) -> CubinKernel {
    let param_base = arch.cbuf0_param_base();
    CubinKernel {
        name: "saxpy".into(),
        code_offset: 0x100,
        code_bytes: 0x200,
        registers: 32,
        params: vec![],
        param_base,
        param_bytes: 24,
        constant0_bytes: param_base + 24,
        constant0_offset: None,
        shared_bytes: 0x400,
        local_bytes: 0,
        max_threads: None,
        barriers: 1,
        constant_banks: vec![ConstantBank { bank: 3, offset: 0x1000, bytes: 64 }],
    }
}

/// What `NvDevice::prepare_launch` and `submit_inner` do for one launch, minus the GPU.
fn encode_launch(
    arch: Arch,
    k: &CubinKernel,
    template: &[u8],
    args: &[u8],
    i: u32,
    bytes: &mut Vec<u8>,
    pb: &mut PushBuffer,
) {
    let (grid, block) = ([1 + i % 64, 1, 1], [128, 1, 1]);
    build_cbuf0_into(bytes, arch, k, template, grid, block, args).unwrap();
    let cb_len = bytes.len();
    let va = 0x10_0000_0000 + u64::from(i) * 0x1000;
    let launch = QmdLaunch {
        program_address: 0x20_0000_0000 + k.code_offset,
        image_address: 0x20_0000_0000,
        cbuf0_address: va,
        cbuf0_bytes: cb_len as u32,
        grid,
        block,
        dynamic_shared_bytes: 256,
        local_bytes_per_thread: 0,
        release: None,
    };
    let qmd = build_qmd(arch, k, &launch).unwrap();
    qmd.append_bytes(bytes);
    assert_eq!(bytes.len(), cb_len + arch.qmd_version().size_bytes());
    pb.clear();
    pb.wait_for_idle().unwrap();
    pb.launch_qmd(va + (cb_len as u64).next_multiple_of(256)).unwrap();
    pb.semaphore_release(0x10_0100_0000, u64::from(i)).unwrap();
}

#[test]
fn encoding_launches_allocates_nothing_once_warm() {
    const LAUNCHES: u32 = 1000;
    for arch in [Arch::Ada, Arch::Hopper, Arch::BlackwellGb20x] {
        let k = kernel(arch);
        let template = vec![0u8; k.constant0_bytes as usize];
        let args = [7u8; 24];
        let mut bytes = Vec::new();
        let mut pb = PushBuffer::new();
        // The first launch grows the reused buffers.
        encode_launch(arch, &k, &template, &args, 0, &mut bytes, &mut pb);
        let before = allocations();
        for i in 1..=LAUNCHES {
            encode_launch(arch, &k, &template, &args, i, &mut bytes, &mut pb);
        }
        let during = allocations() - before;
        assert_eq!(during, 0, "{arch:?}: {during} allocations in {LAUNCHES} launches");
        // The counter does count: a fresh buffer shows up.
        let before = allocations();
        let fresh = egpu_nv::launch::build_cbuf0(arch, &k, &template, [1; 3], [1; 3], &args);
        assert!(fresh.is_ok() && allocations() > before, "{arch:?}: the counter saw nothing");
    }
}
