//! Random bytes as a kernel: the interpreter ends every run with a result or a typed error
//! within its step budget, never a panic or a hang.
#![no_main]

use egpu_rdna::{run, Arch, Dispatch, FlatMemory, Memory};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let arch = if data[0] & 1 == 0 { Arch::Gfx11 } else { Arch::Gfx12 };
    let base = 0x1000u64;
    let mut mem = FlatMemory::new(base, 64 * 1024);
    let code = &data[4..data.len().min(32 * 1024)];
    mem.write(base, code).expect("code fits");
    let d = Dispatch {
        arch,
        entry: base,
        rsrc1: 0,
        // USER_SGPR 2, workgroup id x/y enabled, x and y work-item ids.
        rsrc2: (2 << 1) | (1 << 7) | (1 << 8) | (1 << 11),
        rsrc3: 0,
        user_sgprs: vec![(base + 0x8000) as u32, 0],
        grid: [1 + u32::from(data[1] & 1), 1, 1],
        block: [1 + u32::from(data[2] & 63), 1 + u32::from(data[3] & 1), 1],
        lds_size: 1024,
        scratch_per_lane: 64,
        step_budget: 20_000,
    };
    let _ = run(&d, &mut mem);
});
