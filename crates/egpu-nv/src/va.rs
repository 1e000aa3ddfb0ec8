//! GPU virtual-address ranges, shared by every device of the process.
//!
//! Host-visible buffers live at GPU VA == CPU VA (reference §1.4), so two devices — or a device
//! opened after another was dropped — must never hand out the same range: one allocator per
//! window serves the whole process, and ranges go back to it when freed.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

/// Window for CPU-visible buffers (GPU VA == CPU VA): 64 GiB … 256 GiB, below where Linux
/// places mmap and stacks and above where it places executables and the heap on x86-64.
pub const LOW_WINDOW: (u64, u64) = (0x10_0000_0000, 0x40_0000_0000);
/// Window for GPU-only buffers: 256 GiB … 112 TiB, below the shared and local memory windows
/// (0x7293_0000_0000 and 0x7294_0000_0000, `launch.rs`), which must stay unbacked.
pub const HIGH_WINDOW: (u64, u64) = (0x40_0000_0000, 0x7000_0000_0000);

/// First-fit allocator over one window, with neighbouring free ranges merged.
#[derive(Debug)]
pub struct VaAllocator {
    /// Free ranges: start → end (exclusive).
    free: BTreeMap<u64, u64>,
}

impl VaAllocator {
    /// An allocator owning `[start, end)`.
    pub fn new((start, end): (u64, u64)) -> VaAllocator {
        VaAllocator { free: BTreeMap::from([(start, end)]) }
    }

    /// Reserve `size` bytes aligned to `align` (a power of two); `None` when no range fits.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        debug_assert!(align.is_power_of_two());
        let (start, end, at) = self.free.iter().find_map(|(&start, &end)| {
            let at = start.checked_next_multiple_of(align)?;
            (at.checked_add(size)? <= end).then_some((start, end, at))
        })?;
        self.free.remove(&start);
        if start < at {
            self.free.insert(start, at);
        }
        if at + size < end {
            self.free.insert(at + size, end);
        }
        Some(at)
    }

    /// Give `[start, start + size)` back, merging it with free neighbours.
    pub fn free(&mut self, start: u64, size: u64) {
        let (mut start, mut end) = (start, start + size);
        if let Some((&before, &before_end)) = self.free.range(..start).next_back() {
            if before_end == start {
                self.free.remove(&before);
                start = before;
            }
        }
        if let Some(after_end) = self.free.remove(&end) {
            end = after_end;
        }
        self.free.insert(start, end);
    }
}

static LOW: LazyLock<Mutex<VaAllocator>> =
    LazyLock::new(|| Mutex::new(VaAllocator::new(LOW_WINDOW)));
static HIGH: LazyLock<Mutex<VaAllocator>> =
    LazyLock::new(|| Mutex::new(VaAllocator::new(HIGH_WINDOW)));

fn window(cpu_visible: bool) -> &'static Mutex<VaAllocator> {
    if cpu_visible {
        &LOW
    } else {
        &HIGH
    }
}

/// Alignment for a buffer of `size` bytes: 2 MiB (huge pages) from 8 MiB up, else 4 KiB.
pub fn alignment_for(size: u64) -> u64 {
    if size >= 8 << 20 {
        2 << 20
    } else {
        0x1000
    }
}

/// Reserve a range of `size` bytes (rounded to its alignment) in the CPU-visible or GPU-only
/// window; returns (start, reserved size).
pub fn reserve(size: u64, cpu_visible: bool) -> Option<(u64, u64)> {
    // Decide the alignment from the page-rounded size, which is what callers pick the GPU page
    // size from: 8 MiB - 4 KiB + 1 bytes becomes 8 MiB and needs the 2 MiB alignment.
    let size = size.checked_next_multiple_of(0x1000)?;
    let align = alignment_for(size);
    let size = size.checked_next_multiple_of(align)?;
    // A poisoned lock only means another thread panicked mid-update of a BTreeMap whose
    // operations leave it consistent; keep using it.
    let mut allocator = window(cpu_visible).lock().unwrap_or_else(|e| e.into_inner());
    allocator.alloc(size, align).map(|start| (start, size))
}

/// Return a range from [`reserve`].
pub fn release(start: u64, size: u64, cpu_visible: bool) {
    window(cpu_visible).lock().unwrap_or_else(|e| e.into_inner()).free(start, size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_with_alignment_and_merging() {
        let mut va = VaAllocator::new((0x1000, 0x10_0000));
        let a = va.alloc(0x1000, 0x1000).unwrap();
        let b = va.alloc(0x2000, 0x1000).unwrap();
        assert_eq!((a, b), (0x1000, 0x2000));
        // 64 KiB alignment skips to 0x10000 and leaves [0x4000, 0x10000) free.
        let c = va.alloc(0x1000, 0x1_0000).unwrap();
        assert_eq!(c, 0x1_0000);
        assert_eq!(va.alloc(0xC000, 0x1000), Some(0x4000));
        va.free(0x4000, 0xC000);
        // Freed ranges are reused, and neighbours merge back into one window.
        va.free(a, 0x1000);
        assert_eq!(va.alloc(0x1000, 0x1000), Some(a));
        va.free(a, 0x1000);
        va.free(b, 0x2000);
        va.free(c, 0x1000);
        assert_eq!(va.free, BTreeMap::from([(0x1000, 0x10_0000)]));
        assert_eq!(va.alloc(0x10_0000, 0x1000), None, "larger than the window");
        assert_eq!(va.alloc(0xF_F000, 0x1000), Some(0x1000), "exactly the window");
        assert_eq!(va.alloc(1, 1), None, "full");
    }

    #[test]
    fn process_windows_never_hand_out_a_range_twice() {
        let (a, size_a) = reserve(0x1800, true).unwrap();
        let (b, _) = reserve(16 << 20, true).unwrap();
        assert_eq!(size_a, 0x2000);
        // Just under 8 MiB rounds to 8 MiB of 2 MiB pages: 2 MiB aligned.
        let (c, size_c) = reserve((8 << 20) - 0x1000 + 1, true).unwrap();
        assert_eq!((c % (2 << 20), size_c), (0, 8 << 20));
        release(c, size_c, true);
        assert_eq!(b % (2 << 20), 0);
        assert!(a + size_a <= b || b + (16 << 20) <= a);
        assert!((LOW_WINDOW.0..LOW_WINDOW.1).contains(&a));
        let (g, _) = reserve(0x1000, false).unwrap();
        assert!((HIGH_WINDOW.0..HIGH_WINDOW.1).contains(&g));
        assert!(HIGH_WINDOW.1 <= crate::launch::LOCAL_WINDOW_BASE);
        assert!(HIGH_WINDOW.1 <= crate::launch::SHARED_WINDOW_BASE);
        release(a, size_a, true);
        release(b, 16 << 20, true);
        release(g, 0x1000, false);
    }
}
