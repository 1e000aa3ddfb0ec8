//! A session owns every buffer of the forward pass: once it has run a chunk of a given size,
//! further forward passes of that size or smaller (decode steps included) allocate nothing.
//! Measured with a counting global allocator on the real SmolLM2 GGUF, one worker thread (so
//! that which thread runs which task, and hence which per-thread scratch grows, is fixed).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::smollm2_gguf;
use egpu_llm::cpu::CpuBackend;
use egpu_llm::gguf::GgufFile;
use egpu_llm::model::Model;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn forward_passes_allocate_nothing_once_the_session_is_warm() {
    let Some(path) = smollm2_gguf("forward_passes_allocate_nothing_once_the_session_is_warm")
    else {
        return;
    };
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let model = Model::load(&file, CpuBackend::new(1).unwrap(), &mut |_, _| {}).unwrap();
    let mut session = model.session(128).unwrap();
    let prompt: Vec<u32> = (100..124).collect();
    // Warm-up: a prefill chunk of 8 and a decode step grow every buffer.
    model.forward_logits(&mut session, &prompt[..16], 8).unwrap();
    model.forward_logits(&mut session, &[42], 8).unwrap();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut passes = 0;
    for &id in &[7u32, 8, 9, 10, 11, 12] {
        let logits = model.forward_logits(&mut session, &[id], 8).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
        passes += 1;
    }
    model.forward_logits(&mut session, &prompt[16..], 8).unwrap();
    passes += 1;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "{allocations} allocations in {passes} warm forward passes");
}
