//! GPU test suite for the NVIDIA kernel-module path (needs an NVIDIA GPU, nvidia.ko and NVRTC).
//!
//! `nv_suite [--gpu N]` runs the checks; `nv_suite --bench [--gpu N] [--bytes B]` measures our
//! runtime and the CUDA driver API on the same GPU and prints both with ratios (exit status 1
//! when a goal of issue 3 is missed). Skips (exit 0) with a message when /dev/nvidiactl is
//! absent. Exit status 1 when any check fails.

use egpu_nv::bench::KERNELS;
use egpu_nv::device::{NvCommand, NvDevice};
use egpu_nv::nvrtc::Nvrtc;
use egpu_nv::NvError;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Polls `wait_flag` makes before giving up, so that a broken test cannot hang the GPU: each
/// poll crosses PCIe to host memory (~1 µs), so about 15 s, far beyond the 64 MiB copy it waits
/// out.
const SPIN_LIMIT: u64 = 1 << 24;

/// One check: a message on success, the failure otherwise.
type Check = fn(&mut Ctx) -> Result<String, String>;

struct Ctx {
    dev: NvDevice,
    program: u64,
    sig: u32,
    value: u64,
}

impl Ctx {
    fn run(&mut self, commands: &[NvCommand<'_>]) -> Result<(), NvError> {
        self.value += 1;
        self.dev.submit(commands)?;
        self.dev.submit(&[NvCommand::Signal { slot: self.sig, value: self.value }])?;
        self.dev.wait_signal(self.sig, self.value, Instant::now() + TIMEOUT)
    }

    /// The argument block of `kernel` with `args` (each truncated to its parameter's size).
    fn args(&self, kernel: &str, args: &[u64]) -> Vec<u8> {
        let k = self.dev.kernel(self.program, kernel).expect("kernel in nv_suite.cu");
        let mut block = vec![0u8; k.param_bytes as usize];
        for (p, v) in k.params.iter().zip(args) {
            let bytes = v.to_le_bytes();
            block[p.offset as usize..(p.offset + p.size) as usize]
                .copy_from_slice(&bytes[..p.size as usize]);
        }
        block
    }

    fn launch<'a>(
        &self,
        kernel: &'a str,
        grid: u32,
        block: u32,
        shared: u32,
        args: &'a [u8],
    ) -> NvCommand<'a> {
        NvCommand::Launch {
            program: self.program,
            kernel,
            grid: [grid, 1, 1],
            block: [block, 1, 1],
            dynamic_shared_bytes: shared,
            args,
        }
    }
}

fn floats_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_to_floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn vector_add(c: &mut Ctx) -> Result<String, String> {
    let n = 1u32 << 20;
    let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let b: Vec<f32> = (0..n).map(|i| (n - i) as f32).collect();
    let bytes = u64::from(n) * 4;
    let host = c.dev.alloc(bytes * 3, true).map_err(|e| e.to_string())?;
    let dev = c.dev.alloc(bytes * 3, false).map_err(|e| e.to_string())?;
    c.dev.write_host(&host, 0, &floats_to_bytes(&a)).map_err(|e| e.to_string())?;
    c.dev.write_host(&host, bytes, &floats_to_bytes(&b)).map_err(|e| e.to_string())?;
    // The output starts as NaNs on the device, so stale memory cannot pass for a result.
    c.dev.write_host(&host, 2 * bytes, &[0xFF; 4].repeat(n as usize)).map_err(|e| e.to_string())?;
    let args = c.args("vadd", &[dev.va, dev.va + bytes, dev.va + 2 * bytes, u64::from(n)]);
    let launch = c.launch("vadd", n.div_ceil(256), 256, 0, &args);
    c.run(&[
        NvCommand::Copy { src: host.va, dst: dev.va, len: 3 * bytes },
        launch,
        NvCommand::Copy { src: dev.va + 2 * bytes, dst: host.va + 2 * bytes, len: bytes },
    ])
    .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; bytes as usize];
    c.dev.read_host(&host, 2 * bytes, &mut out).map_err(|e| e.to_string())?;
    let got = bytes_to_floats(&out);
    let bad = (0..n as usize).filter(|&i| got[i] != a[i] + b[i]).count();
    c.dev.free(host);
    c.dev.free(dev);
    if bad == 0 {
        Ok(format!("{n} elements match the CPU"))
    } else {
        Err(format!("{bad} of {n} elements differ from the CPU"))
    }
}

fn dependent_launches(c: &mut Ctx) -> Result<String, String> {
    // One submission: c = a + b, then d = c + b, which reads what the first launch wrote. If
    // the second grid could start before the first finished, d would miss parts of c.
    let n = 1u32 << 24;
    let bytes = u64::from(n) * 4;
    let a: Vec<f32> = (0..n).map(|i| (i % 1024) as f32).collect();
    let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let host = c.dev.alloc(bytes * 2, true).map_err(|e| e.to_string())?;
    let dev = c.dev.alloc(bytes * 4, false).map_err(|e| e.to_string())?;
    c.dev.write_host(&host, 0, &floats_to_bytes(&a)).map_err(|e| e.to_string())?;
    c.dev.write_host(&host, bytes, &floats_to_bytes(&b)).map_err(|e| e.to_string())?;
    let (va_a, va_b, va_c, va_d) = (dev.va, dev.va + bytes, dev.va + 2 * bytes, dev.va + 3 * bytes);
    let first = c.args("vadd", &[va_a, va_b, va_c, u64::from(n)]);
    let second = c.args("vadd", &[va_c, va_b, va_d, u64::from(n)]);
    c.run(&[
        NvCommand::Copy { src: host.va, dst: dev.va, len: 2 * bytes },
        c.launch("vadd", n / 256, 256, 0, &first),
        c.launch("vadd", n / 256, 256, 0, &second),
        NvCommand::Copy { src: va_d, dst: host.va, len: bytes },
    ])
    .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; bytes as usize];
    c.dev.read_host(&host, 0, &mut out).map_err(|e| e.to_string())?;
    c.dev.free(host);
    c.dev.free(dev);
    let got = bytes_to_floats(&out);
    let bad = (0..n as usize).filter(|&i| got[i] != a[i] + 2.0 * b[i]).count();
    if bad == 0 {
        Ok(format!("two dependent launches in one submission: {n} elements correct"))
    } else {
        Err(format!("{bad} of {n} elements wrong: the second launch overlapped the first"))
    }
}

fn reduction(c: &mut Ctx) -> Result<String, String> {
    let n = 1u32 << 22;
    let block = 512u32;
    let blocks = n.div_ceil(block);
    let input: Vec<f32> = (0..n).map(|i| (i.wrapping_mul(7919) % 1000) as f32 / 1000.0).collect();
    let host = c.dev.alloc(u64::from(n) * 4, true).map_err(|e| e.to_string())?;
    let dev_in = c.dev.alloc(u64::from(n) * 4, false).map_err(|e| e.to_string())?;
    let partial = c.dev.alloc(u64::from(blocks) * 4, true).map_err(|e| e.to_string())?;
    c.dev.write_host(&host, 0, &floats_to_bytes(&input)).map_err(|e| e.to_string())?;
    let args = c.args("reduce_sum", &[dev_in.va, partial.va, u64::from(n)]);
    let launch = c.launch("reduce_sum", blocks, block, block * 4, &args);
    c.run(&[NvCommand::Copy { src: host.va, dst: dev_in.va, len: u64::from(n) * 4 }, launch])
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; blocks as usize * 4];
    c.dev.read_host(&partial, 0, &mut out).map_err(|e| e.to_string())?;
    let gpu: Vec<f32> = bytes_to_floats(&out);
    let mut worst = 0f64;
    for (bi, g) in gpu.iter().enumerate() {
        let lo = bi * block as usize;
        let cpu: f64 =
            input[lo..(lo + block as usize).min(n as usize)].iter().map(|&x| f64::from(x)).sum();
        worst = worst.max((f64::from(*g) - cpu).abs() / cpu.abs().max(1.0));
    }
    for b in [host, dev_in, partial] {
        c.dev.free(b);
    }
    if worst < 1e-4 {
        Ok(format!("{blocks} block sums match the CPU (worst relative error {worst:.2e})"))
    } else {
        Err(format!("block sums differ from the CPU: worst relative error {worst:.2e}"))
    }
}

fn round_trip_1gib(c: &mut Ctx) -> Result<String, String> {
    let size = 1u64 << 30;
    let src = c.dev.alloc(size, true).map_err(|e| e.to_string())?;
    let dst = c.dev.alloc(size, true).map_err(|e| e.to_string())?;
    let dev = c.dev.alloc(size, false).map_err(|e| e.to_string())?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 24];
    let mut want = 0u64;
    for off in (0..size).step_by(chunk.len()) {
        for w in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            w.copy_from_slice(&state.to_le_bytes());
            want = want.wrapping_mul(31).wrapping_add(state);
        }
        c.dev.write_host(&src, off, &chunk).map_err(|e| e.to_string())?;
    }
    c.run(&[
        NvCommand::Copy { src: src.va, dst: dev.va, len: size },
        NvCommand::Copy { src: dev.va, dst: dst.va, len: size },
    ])
    .map_err(|e| e.to_string())?;
    let mut got = 0u64;
    for off in (0..size).step_by(chunk.len()) {
        c.dev.read_host(&dst, off, &mut chunk).map_err(|e| e.to_string())?;
        for w in chunk.chunks_exact(8) {
            got = got.wrapping_mul(31).wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
        }
    }
    for b in [src, dst, dev] {
        c.dev.free(b);
    }
    if got == want {
        Ok(format!("1 GiB host→device→host checksum {want:016x} matches"))
    } else {
        Err(format!("checksum {got:016x}, expected {want:016x}"))
    }
}

fn ten_thousand_launches(c: &mut Ctx) -> Result<String, String> {
    let counter = c.dev.alloc(4096, true).map_err(|e| e.to_string())?;
    c.dev.write_host(&counter, 0, &0u32.to_le_bytes()).map_err(|e| e.to_string())?;
    let fence = c.dev.create_signal().map_err(|e| e.to_string())?;
    let args = c.args("bump", &[counter.va]);
    for i in 1..=10_000u64 {
        let launch = c.launch("bump", 1, 1, 0, &args);
        c.dev
            .submit(&[launch, NvCommand::Signal { slot: fence, value: i }])
            .map_err(|e| e.to_string())?;
    }
    c.dev.wait_signal(fence, 10_000, Instant::now() + TIMEOUT).map_err(|e| e.to_string())?;
    let mut out = [0u8; 4];
    c.dev.read_host(&counter, 0, &mut out).map_err(|e| e.to_string())?;
    c.dev.destroy_signal(fence);
    c.dev.free(counter);
    let n = u32::from_le_bytes(out);
    if n == 10_000 {
        Ok("10,000 launches, each fenced; counter = 10000".into())
    } else {
        Err(format!("counter = {n}, expected 10000"))
    }
}

fn copy_overlaps_compute(c: &mut Ctx) -> Result<String, String> {
    // The kernel spins until the CPU sets `flag`; the CPU sets it only after the copy (on the
    // copy channel, submitted separately) has signalled. Without overlap this cannot finish.
    let flags = c.dev.alloc(4096, true).map_err(|e| e.to_string())?;
    c.dev.write_host(&flags, 0, &[0u8; 8]).map_err(|e| e.to_string())?;
    let src = c.dev.alloc(64 << 20, false).map_err(|e| e.to_string())?;
    let dst = c.dev.alloc(64 << 20, false).map_err(|e| e.to_string())?;
    let kernel_done = c.dev.create_signal().map_err(|e| e.to_string())?;
    let copy_done = c.dev.create_signal().map_err(|e| e.to_string())?;
    let args = c.args("wait_flag", &[flags.va, flags.va + 4, SPIN_LIMIT]);
    let launch = c.launch("wait_flag", 1, 1, 0, &args);
    c.dev
        .submit(&[launch, NvCommand::Signal { slot: kernel_done, value: 1 }])
        .map_err(|e| e.to_string())?;
    c.dev
        .submit_concurrent(&[
            NvCommand::Copy { src: src.va, dst: dst.va, len: 64 << 20 },
            NvCommand::Signal { slot: copy_done, value: 1 },
        ])
        .map_err(|e| e.to_string())?;
    let copy_result = c.dev.wait_signal(copy_done, 1, Instant::now() + Duration::from_secs(10));
    let still_running = c.dev.signal_value(kernel_done).map_err(|e| e.to_string())? == 0;
    c.dev.write_host(&flags, 0, &1u32.to_le_bytes()).map_err(|e| e.to_string())?;
    c.dev.wait_signal(kernel_done, 1, Instant::now() + TIMEOUT).map_err(|e| e.to_string())?;
    let mut seen = [0u8; 4];
    c.dev.read_host(&flags, 4, &mut seen).map_err(|e| e.to_string())?;
    c.dev.destroy_signal(kernel_done);
    c.dev.destroy_signal(copy_done);
    for b in [flags, src, dst] {
        c.dev.free(b);
    }
    copy_result.map_err(|e| format!("copy did not finish while the kernel ran: {e}"))?;
    match (still_running, u32::from_le_bytes(seen)) {
        (true, 1) => Ok("64 MiB copy completed while a kernel was running".into()),
        (true, 2) => Err("the kernel gave up waiting for the flag the CPU set".into()),
        (true, other) => Err(format!("the kernel reported {other}, expected 1")),
        (false, _) => Err("the kernel finished before the flag was set (test is broken)".into()),
    }
}

fn local_memory(c: &mut Ctx) -> Result<String, String> {
    let local = c.dev.kernel(c.program, "local_scratch").map_or(0, |k| k.local_bytes);
    if local == 0 {
        return Err("local_scratch uses no local memory: the test no longer tests it".into());
    }
    let (threads, salt) = (64 * 1024u32, 977u32);
    let out = c.dev.alloc(u64::from(threads) * 4, true).map_err(|e| e.to_string())?;
    let args = c.args("local_scratch", &[out.va, u64::from(salt)]);
    let launch = c.launch("local_scratch", threads / 256, 256, 0, &args);
    c.run(&[launch]).map_err(|e| e.to_string())?;
    let mut bytes = vec![0u8; threads as usize * 4];
    c.dev.read_host(&out, 0, &mut bytes).map_err(|e| e.to_string())?;
    c.dev.free(out);
    let bad = bytes
        .chunks_exact(4)
        .enumerate()
        .filter(|(t, w)| {
            let want = (64 * 31 * *t as u32).wrapping_add(2016 * salt);
            u32::from_le_bytes([w[0], w[1], w[2], w[3]]) != want
        })
        .count();
    if bad == 0 {
        Ok(format!("{threads} threads with {local} B of local memory each agree with the CPU"))
    } else {
        Err(format!("{bad} of {threads} threads differ from the CPU"))
    }
}

fn fence_timeout(c: &mut Ctx) -> Result<String, String> {
    let never = c.dev.create_signal().map_err(|e| e.to_string())?;
    let result = c.dev.wait_signal(never, 1, Instant::now() + Duration::from_millis(200));
    c.dev.destroy_signal(never);
    match result {
        Err(NvError::Timeout { wanted: 1, last_seen: 0, .. }) => {
            Ok(format!("reported: {}", result.unwrap_err()))
        }
        other => Err(format!("expected a timeout, got {other:?}")),
    }
}

/// Our benchmark, then the CUDA peer in a child process, then ratios. Returns the exit status.
fn bench(gpu: u32, bytes: u64) -> i32 {
    let (ours, spec) = match egpu_nv::bench::run(gpu, bytes) {
        Ok(measured) => measured,
        Err(e) => {
            println!("FAIL bench: {e}");
            return 1;
        }
    };
    let mut peer_args =
        vec![egpu_nv::bench::PEER_FLAG.to_string(), "--bytes".into(), bytes.to_string()];
    peer_args.extend(spec.args());
    match egpu_nv::bench::run_peer_process(&peer_args) {
        Ok(cuda) => {
            let comparison = egpu_nv::bench::Comparison { ours, cuda };
            print!("{comparison}");
            if comparison.goals_met() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            print!("{ours}");
            println!("FAIL CUDA peer: {e}");
            1
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let gpu = flag("--gpu").unwrap_or(0) as u32;
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        println!("SKIP: no NVIDIA kernel driver (/dev/nvidiactl absent); the GPU suite needs an NVIDIA GPU with nvidia.ko");
        return;
    }
    let bytes = flag("--bytes").unwrap_or(256 << 20);
    if args.iter().any(|a| a == egpu_nv::bench::PEER_FLAG) {
        let Some(spec) = egpu_nv::bench::PeerSpec::from_args(&args) else {
            eprintln!("{} needs --pci BUS_ID and --sm N", egpu_nv::bench::PEER_FLAG);
            std::process::exit(2);
        };
        match egpu_nv::cuda_peer::run(&spec, bytes) {
            Ok(report) => print!("{report}"),
            Err(e) => {
                eprintln!("CUDA peer failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if args.iter().any(|a| a == "--bench") {
        std::process::exit(bench(gpu, bytes));
    }
    let setup = || -> Result<Ctx, NvError> {
        let mut dev = NvDevice::open(gpu)?;
        let nvrtc = Nvrtc::load()?;
        let cubin = nvrtc.compile_for_sm(KERNELS, "nv_suite.cu", dev.arch().sm(), &[])?;
        let program = dev.load_program(&cubin)?;
        let sig = dev.create_signal()?;
        println!(
            "device nv:{gpu}: {:?} sm_{}, {} SMs, driver {}",
            dev.arch(),
            dev.arch().sm(),
            dev.sm_count(),
            dev.driver_version()
        );
        Ok(Ctx { dev, program, sig, value: 0 })
    };
    let mut ctx = match setup() {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL setup: {e}");
            std::process::exit(1);
        }
    };
    let checks: [(&str, Check); 8] = [
        ("vector_add", vector_add),
        ("dependent_launches", dependent_launches),
        ("shared_memory_reduction", reduction),
        ("round_trip_1gib", round_trip_1gib),
        ("ten_thousand_launches", ten_thousand_launches),
        ("copy_overlaps_compute", copy_overlaps_compute),
        ("local_memory", local_memory),
        ("fence_timeout", fence_timeout),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        let t0 = Instant::now();
        match check(&mut ctx) {
            Ok(msg) => println!("PASS {name} ({:.2?}): {msg}", t0.elapsed()),
            Err(msg) => {
                failed += 1;
                println!("FAIL {name} ({:.2?}): {msg}", t0.elapsed());
            }
        }
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
