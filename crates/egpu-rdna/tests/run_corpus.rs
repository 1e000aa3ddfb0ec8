//! Every corpus kernel runs in the interpreter on gfx1100 and gfx1201 and matches a host
//! implementation of the same computation: integers and f32 sums/products computed in the
//! kernel's order bit-exactly; softmax (exp through v_exp_f32) within a stated bound.

mod common;

use egpu_rdna::elf::CodeObject;
use egpu_rdna::{hsa_user_sgprs, run, Dispatch, ExecError, FlatMemory, Memory};

const BASE: u64 = 0x7_0000_0000;
const KERNARG: u64 = BASE + 0x10_0000;
const DATA: u64 = BASE + 0x20_0000;

struct Gpu {
    mem: FlatMemory,
    co: CodeObject,
    next: u64,
}

impl Gpu {
    fn load(kernel: &str, arch: &str) -> Option<Gpu> {
        if !common::have_tool("clang-19") {
            return None;
        }
        let path = common::build(kernel, arch);
        let co = CodeObject::parse(&std::fs::read(path).unwrap()).unwrap();
        let mut mem = FlatMemory::new(BASE, 32 << 20);
        mem.write(BASE + co.text_addr, &co.text).unwrap();
        Some(Gpu { mem, co, next: DATA })
    }

    fn alloc(&mut self, bytes: &[u8]) -> u64 {
        let va = self.next;
        self.mem.write(va, bytes).unwrap();
        self.next = (va + bytes.len() as u64 + 255) & !255;
        va
    }

    fn read(&mut self, va: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read(va, &mut v).unwrap();
        v
    }

    /// Dispatches `name` with explicit kernel arguments `args` (already laid out) and the
    /// code-object-v5 hidden arguments after them.
    fn dispatch(
        &mut self,
        name: &str,
        args: &[u8],
        grid: [u32; 3],
        block: [u32; 3],
    ) -> Result<egpu_rdna::Stats, ExecError> {
        self.dispatch_with(name, args, grid, block, |_| {})
    }

    fn dispatch_with(
        &mut self,
        name: &str,
        args: &[u8],
        grid: [u32; 3],
        block: [u32; 3],
        tweak: impl FnOnce(&mut Dispatch),
    ) -> Result<egpu_rdna::Stats, ExecError> {
        let k = self.co.kernel(name).unwrap().clone();
        let kd = k.descriptor;
        let mut ka = args.to_vec();
        ka.resize(args.len().next_multiple_of(8), 0);
        let hidden = ka.len();
        ka.resize(hidden + 256, 0);
        for i in 0..3 {
            ka[hidden + 4 * i..hidden + 4 * i + 4].copy_from_slice(&grid[i].to_le_bytes());
            ka[hidden + 12 + 2 * i..hidden + 14 + 2 * i]
                .copy_from_slice(&(block[i] as u16).to_le_bytes());
        }
        let dims = if grid[2] * block[2] > 1 {
            3u16
        } else if grid[1] * block[1] > 1 {
            2
        } else {
            1
        };
        ka[hidden + 64..hidden + 66].copy_from_slice(&dims.to_le_bytes());
        self.mem.write(KERNARG, &ka).unwrap();
        let mut d = Dispatch {
            arch: self.co.arch,
            entry: BASE + k.entry,
            rsrc1: kd.rsrc1,
            rsrc2: kd.rsrc2,
            rsrc3: kd.rsrc3,
            user_sgprs: hsa_user_sgprs(kd.properties, KERNARG, 0, 0, kd.private_segment_size),
            grid,
            block,
            lds_size: kd.group_segment_size,
            scratch_per_lane: kd.private_segment_size,
            step_budget: 50_000_000,
        };
        tweak(&mut d);
        run(&d, &mut self.mem)
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn to_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
fn to_i32s(b: &[u8]) -> Vec<i32> {
    b.chunks(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Deterministic test data (xorshift), no external crate.
fn rng(seed: u64) -> impl FnMut() -> u32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 16) as u32
    }
}
fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n).map(|_| (r() % 20001) as f32 / 1000.0 - 10.0).collect()
}

#[test]
fn saxpy_partial_workgroup_and_untouched_tail() {
    for arch in common::ARCHS {
        let Some(mut g) = Gpu::load("elementwise", arch) else { return };
        let n = 1000usize;
        let x = floats(n + 64, 1);
        let y = floats(n + 64, 2);
        let xa = g.alloc(&f32s(&x));
        let ya = g.alloc(&f32s(&y));
        let a = 1.7f32;
        let mut args = a.to_le_bytes().to_vec();
        args.resize(8, 0);
        args.extend(xa.to_le_bytes());
        args.extend(ya.to_le_bytes());
        args.extend((n as i32).to_le_bytes());
        let stats =
            g.dispatch("saxpy", &args, [n.div_ceil(256) as u32, 1, 1], [256, 1, 1]).unwrap();
        let out = to_f32s(&g.read(ya, (n + 64) * 4));
        for i in 0..n + 64 {
            // HIP contracts a*x+y into one fma.
            let want = if i < n { a.mul_add(x[i], y[i]) } else { y[i] };
            assert_eq!(out[i].to_bits(), want.to_bits(), "{arch} y[{i}]");
        }
        assert_eq!(stats.workgroups, 4);
        assert_eq!(stats.waves, 32);
    }
}

#[test]
fn reduction_with_lds_and_barriers() {
    for arch in common::ARCHS {
        let Some(mut g) = Gpu::load("reduce", arch) else { return };
        let n = 256 * 5 - 77;
        let x = floats(n, 3);
        let xa = g.alloc(&f32s(&x));
        let oa = g.alloc(&[0; 5 * 4]);
        let mut args = xa.to_le_bytes().to_vec();
        args.extend(oa.to_le_bytes());
        args.extend((n as i32).to_le_bytes());
        g.dispatch("reduce_sum", &args, [5, 1, 1], [256, 1, 1]).unwrap();
        let out = to_f32s(&g.read(oa, 20));
        for (b, got) in out.iter().enumerate() {
            let mut part: Vec<f32> =
                (0..256).map(|t| x.get(b * 256 + t).copied().unwrap_or(0.0)).collect();
            let mut s = 128;
            while s > 0 {
                for t in 0..s {
                    part[t] += part[t + s];
                }
                s >>= 1;
            }
            assert_eq!(got.to_bits(), part[0].to_bits(), "{arch} block {b}: {got} vs {}", part[0]);
        }
    }
}

fn dot_args(aa: u64, ba: u64, oa: u64, rows: i32, k: i32) -> Vec<u8> {
    let mut args = aa.to_le_bytes().to_vec();
    args.extend(ba.to_le_bytes());
    args.extend(oa.to_le_bytes());
    args.extend(rows.to_le_bytes());
    args.extend(k.to_le_bytes());
    args
}

#[test]
fn int8_dot_product_with_partial_waves() {
    for arch in common::ARCHS {
        let Some(mut g) = Gpu::load("dot_i8", arch) else { return };
        let (rows, k) = (100usize, 64usize);
        let mut r = rng(4);
        let a: Vec<i8> = (0..rows * k).map(|_| r() as i8).collect();
        let b: Vec<i8> = (0..k).map(|_| r() as i8).collect();
        let aa = g.alloc(&a.iter().map(|x| *x as u8).collect::<Vec<_>>());
        let ba = g.alloc(&b.iter().map(|x| *x as u8).collect::<Vec<_>>());
        let oa = g.alloc(&vec![0xAB; (rows + 8) * 4]);
        // 48 work-items per workgroup: the second wave starts with only 16 lanes in EXEC.
        g.dispatch(
            "dot_i8",
            &dot_args(aa, ba, oa, rows as i32, k as i32),
            [rows.div_ceil(48) as u32, 1, 1],
            [48, 1, 1],
        )
        .unwrap();
        let out = to_i32s(&g.read(oa, (rows + 8) * 4));
        for i in 0..rows {
            let want: i32 = (0..k).map(|j| i32::from(a[i * k + j]) * i32::from(b[j])).sum();
            assert_eq!(out[i], want, "{arch} row {i}");
        }
        for (i, v) in out.iter().enumerate().skip(rows) {
            assert_eq!(*v as u32, 0xABAB_ABAB, "{arch}: row {i} past the end was written");
        }
    }
}

#[test]
fn tiled_matmul_with_edge_tiles() {
    for arch in common::ARCHS {
        let Some(mut g) = Gpu::load("matmul", arch) else { return };
        let (m, n, k) = (37usize, 29usize, 45usize);
        let a = floats(m * k, 5);
        let b = floats(k * n, 6);
        let aa = g.alloc(&f32s(&a));
        let ba = g.alloc(&f32s(&b));
        let ca = g.alloc(&vec![0; m * n * 4]);
        let mut args = aa.to_le_bytes().to_vec();
        args.extend(ba.to_le_bytes());
        args.extend(ca.to_le_bytes());
        for v in [m, n, k] {
            args.extend((v as i32).to_le_bytes());
        }
        g.dispatch("matmul", &args, [n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1], [16, 16, 1])
            .unwrap();
        let c = to_f32s(&g.read(ca, m * n * 4));
        for row in 0..m {
            for col in 0..n {
                let mut acc = 0.0f32;
                for kk in 0..k.next_multiple_of(16) {
                    let (x, y) =
                        if kk < k { (a[row * k + kk], b[kk * n + col]) } else { (0.0, 0.0) };
                    acc = x.mul_add(y, acc);
                }
                assert_eq!(c[row * n + col].to_bits(), acc.to_bits(), "{arch} C[{row}][{col}]");
            }
        }
    }
}

fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i32).wrapping_sub(b.to_bits() as i32).unsigned_abs()
}

#[test]
fn softmax_with_shuffles_within_4_ulp() {
    for arch in common::ARCHS {
        let Some(mut g) = Gpu::load("softmax", arch) else { return };
        let (rows, cols) = (6usize, 100usize);
        let x = floats(rows * cols, 7);
        let xa = g.alloc(&f32s(&x));
        let ya = g.alloc(&vec![0; rows * cols * 4]);
        let mut args = xa.to_le_bytes().to_vec();
        args.extend(ya.to_le_bytes());
        args.extend((cols as i32).to_le_bytes());
        g.dispatch("softmax", &args, [rows as u32, 1, 1], [32, 1, 1]).unwrap();
        let y = to_f32s(&g.read(ya, rows * cols * 4));
        let mut worst = 0;
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            // The kernel rounds x - max to f32 before exp (so does this reference); exp, the
            // sum and the division are done exactly here, in f64.
            let m = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
            let e = |v: f32| f64::from(v - m).exp();
            let s: f64 = row.iter().map(|v| e(*v)).sum();
            for c in 0..cols {
                let want = (e(row[c]) / s) as f32;
                worst = worst.max(ulps(y[r * cols + c], want));
            }
        }
        // v_exp_f32 is accurate to 1 ULP; exp's range reduction, the shuffle-tree sum and the
        // division sequence add a few more.
        assert!(worst <= 4, "{arch}: softmax is {worst} ULP off");
        eprintln!("{arch}: softmax worst error {worst} ULP");
    }
}

#[test]
fn faults_are_typed_errors() {
    for arch in common::ARCHS {
        let Some(mut g) = Gpu::load("dot_i8", arch) else { return };
        let oa = g.alloc(&[0; 64 * 4]);
        let ba = g.alloc(&[1; 64]);
        // A matrix pointer outside the mapped memory: a memory fault naming the address.
        let bad = 0xDEAD_0000_0000u64;
        let err =
            g.dispatch("dot_i8", &dot_args(bad, ba, oa, 4, 64), [1, 1, 1], [32, 1, 1]).unwrap_err();
        match err {
            ExecError::Memory { fault, .. } => {
                assert!(fault.va >= bad && fault.va < bad + 4 * 64, "{fault}")
            }
            e => panic!("{arch}: expected a memory fault, got {e}"),
        }
        // The step budget bounds a run.
        let err = g
            .dispatch_with("dot_i8", &dot_args(bad, ba, oa, 4, 64), [1, 1, 1], [32, 1, 1], |d| {
                d.step_budget = 5
            })
            .unwrap_err();
        assert!(matches!(err, ExecError::StepBudget { budget: 5, .. }), "{arch}: {err}");
        // An undecodable word at the entry: a decode error naming the address and word.
        let err = g
            .dispatch_with("dot_i8", &dot_args(bad, ba, oa, 4, 64), [1, 1, 1], [32, 1, 1], |d| {
                d.entry = KERNARG + 200
            })
            .unwrap_err();
        assert!(
            matches!(err, ExecError::Decode { pc, .. } | ExecError::Unimplemented { pc, .. } if pc == KERNARG + 200),
            "{arch}: {err}"
        );
        // Code outside memory: a fetch fault.
        let err = g
            .dispatch_with("dot_i8", &dot_args(bad, ba, oa, 4, 64), [1, 1, 1], [32, 1, 1], |d| {
                d.entry = 0x10
            })
            .unwrap_err();
        assert!(matches!(err, ExecError::Fetch { pc: 0x10, .. }), "{arch}: {err}");
    }
}

fn alu_host(seed: u32, iters: i32) -> (u32, f32) {
    let mut h = seed;
    let mut f = (h & 0xffff) as f32 * (1.0 / 65536.0);
    for k in 0..iters {
        h ^= h << 13;
        h ^= h >> 17;
        h ^= h << 5;
        h = h.wrapping_mul(0x9E37_79B1).wrapping_add(k as u32);
        f = f.mul_add(0.999, 0.001);
    }
    (h, f)
}

fn run_alu(arch: &str, waves: u32, iters: i32) -> Option<(egpu_rdna::Stats, std::time::Duration)> {
    let mut g = Gpu::load("alu", arch)?;
    let n = (waves * 32) as usize;
    let mut r = rng(9);
    let seeds: Vec<u32> = (0..n).map(|_| r()).collect();
    let sa = g.alloc(&seeds.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<_>>());
    let oa = g.alloc(&vec![0; n * 4]);
    let fa = g.alloc(&vec![0; n * 4]);
    let mut args = sa.to_le_bytes().to_vec();
    args.extend(oa.to_le_bytes());
    args.extend(fa.to_le_bytes());
    args.extend(iters.to_le_bytes());
    let t = std::time::Instant::now();
    let stats = g.dispatch("alu_loop", &args, [waves, 1, 1], [32, 1, 1]).unwrap();
    let dt = t.elapsed();
    let out = to_i32s(&g.read(oa, n * 4));
    let fout = to_f32s(&g.read(fa, n * 4));
    for i in 0..n {
        let (h, f) = alu_host(seeds[i], iters);
        assert_eq!(out[i] as u32, h, "{arch} lane {i}");
        assert_eq!(fout[i].to_bits(), f.to_bits(), "{arch} lane {i}");
    }
    Some((stats, dt))
}

#[test]
fn alu_loop_matches_host() {
    for arch in common::ARCHS {
        if run_alu(arch, 3, 37).is_none() {
            return;
        }
    }
}

/// The speed figure: `cargo test --release -p egpu-rdna --test run_corpus -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: prints wave-instructions per second (run in release)"]
fn interpreter_speed() {
    for arch in common::ARCHS {
        let Some((stats, dt)) = run_alu(arch, 64, 20_000) else { return };
        eprintln!(
            "{arch}: {} wave-instructions in {:.3} s = {:.1} M wave-instructions/s (one core, ALU loop)",
            stats.wave_instructions,
            dt.as_secs_f64(),
            stats.wave_instructions as f64 / dt.as_secs_f64() / 1e6
        );
    }
}
