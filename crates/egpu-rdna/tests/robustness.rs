//! Random bytes never panic or hang the decoder, the printers or the interpreter (the same
//! checks as the fuzz targets in fuzz/, bounded and deterministic for CI: 20,000 decodes of
//! random words per architecture, 300 random kernels under a 20,000-step budget).

use egpu_rdna::{disasm, run, Arch, Dispatch, FlatMemory, Memory};

fn rng(seed: u64) -> impl FnMut() -> u32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 16) as u32
    }
}

/// Random words biased towards real encoding prefixes.
fn words(r: &mut impl FnMut() -> u32, n: usize) -> Vec<u8> {
    const PREFIXES: [u32; 12] =
        [0xBE, 0xBF, 0x80, 0x7E, 0x7C, 0xD4, 0xD6, 0xCC, 0xC8, 0xD8, 0xDC, 0xEE];
    (0..n)
        .flat_map(|_| {
            let w = r();
            let w = if w & 1 == 0 {
                (w & 0x00FF_FFFF) | PREFIXES[(w >> 8) as usize % 12] << 24
            } else {
                w
            };
            w.to_le_bytes()
        })
        .collect()
}

#[test]
fn random_words_decode_and_print_without_panics() {
    for arch in [Arch::Gfx11, Arch::Gfx12] {
        let mut r = rng(11);
        let mut decoded = 0;
        for _ in 0..5_000 {
            let bytes = words(&mut r, 4);
            for cut in [bytes.len(), 7, 4, 3, 0] {
                if let Ok(inst) = egpu_rdna::decode(arch, &bytes[..cut], 0) {
                    assert!(inst.len as usize <= cut);
                    let _ = disasm::try_format(&inst);
                    let _ = disasm::format(&inst);
                    decoded += 1;
                }
            }
        }
        assert!(decoded > 1000, "{arch:?}: only {decoded} random words decoded");
    }
}

#[test]
fn random_kernels_end_in_a_result_or_a_typed_error() {
    let mut r = rng(12);
    for i in 0..300 {
        let arch = if i % 2 == 0 { Arch::Gfx11 } else { Arch::Gfx12 };
        let base = 0x1000u64;
        let mut mem = FlatMemory::new(base, 64 * 1024);
        let code = words(&mut r, 64);
        mem.write(base, &code).unwrap();
        let d = Dispatch {
            arch,
            entry: base,
            rsrc1: 0,
            rsrc2: (2 << 1) | (1 << 7) | (1 << 8) | (1 << 11),
            rsrc3: 0,
            user_sgprs: vec![(base + 0x8000) as u32, 0],
            grid: [2, 1, 1],
            block: [33 + i % 40, 2, 1],
            lds_size: 1024,
            scratch_per_lane: 64,
            step_budget: 20_000,
        };
        // Either outcome is fine; the test is that it returns.
        let _ = run(&d, &mut mem);
    }
}
