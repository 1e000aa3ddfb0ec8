//! GPU test suite for NVIDIA GPUs through the runtime (needs an NVIDIA GPU, nvidia.ko and
//! NVRTC). Every check opens `nv:N` as an [`egpu::Device`] and works through its buffers,
//! queues and signals, so what passes here is the runtime and egpu-nv's runtime adapter, the
//! path every program takes.
//!
//! `nv_suite [--gpu N]` runs the checks; `nv_suite --bench [--gpu N] [--bytes B]` measures the
//! runtime and the CUDA driver API on the same GPU and prints both with ratios (exit status 1
//! when a goal of issue 3 is missed). Skips (exit 0) with a message when /dev/nvidiactl is
//! absent. Exit status 1 when any check fails.

use egpu::bench::{PeerSpec, PEER_FLAG};
use egpu::{Arg, Device, Error, Kernel, MemoryKind, Program, Queue, Signal};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
/// Polls `wait_flag` makes before giving up, so that a broken test cannot hang the GPU: each
/// poll crosses PCIe to host memory (~1 µs), so about 15 s, far beyond the 64 MiB copy it waits
/// out.
const SPIN_LIMIT: u64 = 1 << 24;

/// One check: a message on success, the failure otherwise.
type Check = fn(&mut Ctx) -> Result<String, String>;

struct Ctx {
    device: Device,
    program: Program,
    /// The same image parsed, for what the runtime does not report (local memory per thread).
    cubin: egpu_nv::cubin::Cubin,
    sig: Signal,
    value: u64,
}

/// Any error as the check's failure message.
fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Ctx {
    /// Submit `queue` followed by a signal, and wait for it.
    fn run(&mut self, queue: &mut Queue) -> Result<(), Error> {
        self.value += 1;
        queue.signal(&self.sig, self.value)?;
        queue.submit()?;
        self.sig.wait(self.value, Instant::now() + TIMEOUT)
    }

    fn kernel(&self, name: &str) -> Result<Kernel, String> {
        self.program.kernel(name).map_err(text)
    }

    fn alloc(&self, size: u64, kind: MemoryKind) -> Result<egpu::Buffer, String> {
        self.device.alloc(size, kind).map_err(text)
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
    let host = c.alloc(bytes * 3, MemoryKind::HostVisible)?;
    let dev = c.alloc(bytes * 3, MemoryKind::Device)?;
    c.device.write(&host, 0, &floats_to_bytes(&a)).map_err(text)?;
    c.device.write(&host, bytes, &floats_to_bytes(&b)).map_err(text)?;
    // The output starts as NaNs on the device, so stale memory cannot pass for a result.
    c.device.write(&host, 2 * bytes, &[0xFF; 4].repeat(n as usize)).map_err(text)?;
    let vadd = c.kernel("vadd")?;
    let mut q = c.device.queue();
    q.copy(&host, 0, &dev, 0, 3 * bytes)
        .and_then(|q| {
            q.launch(
                &vadd,
                [n.div_ceil(256), 1, 1],
                [256, 1, 1],
                0,
                &[
                    Arg::BufferAt(&dev, 0),
                    Arg::BufferAt(&dev, bytes),
                    Arg::BufferAt(&dev, 2 * bytes),
                    Arg::U32(n),
                ],
            )
        })
        .and_then(|q| q.copy(&dev, 2 * bytes, &host, 2 * bytes, bytes))
        .map_err(text)?;
    c.run(&mut q).map_err(text)?;
    let mut out = vec![0u8; bytes as usize];
    c.device.read(&host, 2 * bytes, &mut out).map_err(text)?;
    let got = bytes_to_floats(&out);
    let bad = (0..n as usize).filter(|&i| got[i] != a[i] + b[i]).count();
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
    let host = c.alloc(bytes * 2, MemoryKind::HostVisible)?;
    let dev = c.alloc(bytes * 4, MemoryKind::Device)?;
    c.device.write(&host, 0, &floats_to_bytes(&a)).map_err(text)?;
    c.device.write(&host, bytes, &floats_to_bytes(&b)).map_err(text)?;
    let vadd = c.kernel("vadd")?;
    let at = |i: u64| Arg::BufferAt(&dev, i * bytes);
    let mut q = c.device.queue();
    q.copy(&host, 0, &dev, 0, 2 * bytes)
        .and_then(|q| {
            q.launch(&vadd, [n / 256, 1, 1], [256, 1, 1], 0, &[at(0), at(1), at(2), Arg::U32(n)])
        })
        .and_then(|q| {
            q.launch(&vadd, [n / 256, 1, 1], [256, 1, 1], 0, &[at(2), at(1), at(3), Arg::U32(n)])
        })
        .and_then(|q| q.copy(&dev, 3 * bytes, &host, 0, bytes))
        .map_err(text)?;
    c.run(&mut q).map_err(text)?;
    let mut out = vec![0u8; bytes as usize];
    c.device.read(&host, 0, &mut out).map_err(text)?;
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
    let host = c.alloc(u64::from(n) * 4, MemoryKind::HostVisible)?;
    let dev_in = c.alloc(u64::from(n) * 4, MemoryKind::Device)?;
    let partial = c.alloc(u64::from(blocks) * 4, MemoryKind::HostVisible)?;
    c.device.write(&host, 0, &floats_to_bytes(&input)).map_err(text)?;
    let reduce = c.kernel("reduce_sum")?;
    let mut q = c.device.queue();
    q.copy(&host, 0, &dev_in, 0, u64::from(n) * 4)
        .and_then(|q| {
            q.launch(
                &reduce,
                [blocks, 1, 1],
                [block, 1, 1],
                block * 4,
                &[Arg::Buffer(&dev_in), Arg::Buffer(&partial), Arg::U32(n)],
            )
        })
        .map_err(text)?;
    c.run(&mut q).map_err(text)?;
    let mut out = vec![0u8; blocks as usize * 4];
    c.device.read(&partial, 0, &mut out).map_err(text)?;
    let gpu: Vec<f32> = bytes_to_floats(&out);
    let mut worst = 0f64;
    for (bi, g) in gpu.iter().enumerate() {
        let lo = bi * block as usize;
        let cpu: f64 =
            input[lo..(lo + block as usize).min(n as usize)].iter().map(|&x| f64::from(x)).sum();
        worst = worst.max((f64::from(*g) - cpu).abs() / cpu.abs().max(1.0));
    }
    if worst < 1e-4 {
        Ok(format!("{blocks} block sums match the CPU (worst relative error {worst:.2e})"))
    } else {
        Err(format!("block sums differ from the CPU: worst relative error {worst:.2e}"))
    }
}

fn round_trip_1gib(c: &mut Ctx) -> Result<String, String> {
    let size = 1u64 << 30;
    let src = c.alloc(size, MemoryKind::HostVisible)?;
    let dst = c.alloc(size, MemoryKind::HostVisible)?;
    let dev = c.alloc(size, MemoryKind::Device)?;
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
        c.device.write(&src, off, &chunk).map_err(text)?;
    }
    let mut q = c.device.queue();
    q.copy(&src, 0, &dev, 0, size).and_then(|q| q.copy(&dev, 0, &dst, 0, size)).map_err(text)?;
    c.run(&mut q).map_err(text)?;
    let mut got = 0u64;
    for off in (0..size).step_by(chunk.len()) {
        c.device.read(&dst, off, &mut chunk).map_err(text)?;
        for w in chunk.chunks_exact(8) {
            got = got.wrapping_mul(31).wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
        }
    }
    if got == want {
        Ok(format!("1 GiB host→device→host checksum {want:016x} matches"))
    } else {
        Err(format!("checksum {got:016x}, expected {want:016x}"))
    }
}

fn ten_thousand_launches(c: &mut Ctx) -> Result<String, String> {
    let counter = c.alloc(4096, MemoryKind::HostVisible)?;
    c.device.write(&counter, 0, &0u32.to_le_bytes()).map_err(text)?;
    let fence = c.device.signal().map_err(text)?;
    let bump = c.kernel("bump")?;
    // One queue reused for every submission: one launch and its fence each.
    let mut q = c.device.queue_with_capacity(2, 8);
    for i in 1..=10_000u64 {
        q.launch(&bump, [1, 1, 1], [1, 1, 1], 0, &[Arg::Buffer(&counter)])
            .and_then(|q| q.signal(&fence, i))
            .and_then(|q| q.submit())
            .map_err(text)?;
    }
    fence.wait(10_000, Instant::now() + TIMEOUT).map_err(text)?;
    let mut out = [0u8; 4];
    c.device.read(&counter, 0, &mut out).map_err(text)?;
    let n = u32::from_le_bytes(out);
    if n == 10_000 {
        Ok("10,000 launches, each fenced; counter = 10000".into())
    } else {
        Err(format!("counter = {n}, expected 10000"))
    }
}

fn copy_overlaps_compute(c: &mut Ctx) -> Result<String, String> {
    // The kernel spins until the CPU sets `flag`; the CPU sets it only after the copy
    // (submitted unordered, so it may run on the copy engine beside the kernel) has signalled.
    // Without overlap this cannot finish.
    let flags = c.alloc(4096, MemoryKind::HostVisible)?;
    c.device.write(&flags, 0, &[0u8; 8]).map_err(text)?;
    let src = c.alloc(64 << 20, MemoryKind::Device)?;
    let dst = c.alloc(64 << 20, MemoryKind::Device)?;
    let kernel_done = c.device.signal().map_err(text)?;
    let copy_done = c.device.signal().map_err(text)?;
    let wait_flag = c.kernel("wait_flag")?;
    let mut q = c.device.queue();
    q.launch(
        &wait_flag,
        [1, 1, 1],
        [1, 1, 1],
        0,
        &[Arg::BufferAt(&flags, 0), Arg::BufferAt(&flags, 4), Arg::U64(SPIN_LIMIT)],
    )
    .and_then(|q| q.signal(&kernel_done, 1))
    .and_then(|q| q.submit())
    .map_err(text)?;
    q.copy(&src, 0, &dst, 0, 64 << 20)
        .and_then(|q| q.signal(&copy_done, 1))
        .and_then(|q| q.submit_unordered())
        .map_err(text)?;
    let copy_result = copy_done.wait(1, Instant::now() + Duration::from_secs(10));
    let still_running = kernel_done.value().map_err(text)? == 0;
    // A host-visible write lands directly (no queue), so it reaches the spinning kernel.
    c.device.write(&flags, 0, &1u32.to_le_bytes()).map_err(text)?;
    kernel_done.wait(1, Instant::now() + TIMEOUT).map_err(text)?;
    let mut seen = [0u8; 4];
    c.device.read(&flags, 4, &mut seen).map_err(text)?;
    copy_result.map_err(|e| format!("copy did not finish while the kernel ran: {e}"))?;
    match (still_running, u32::from_le_bytes(seen)) {
        (true, 1) => Ok("64 MiB copy completed while a kernel was running".into()),
        (true, 2) => Err("the kernel gave up waiting for the flag the CPU set".into()),
        (true, other) => Err(format!("the kernel reported {other}, expected 1")),
        (false, _) => Err("the kernel finished before the flag was set (test is broken)".into()),
    }
}

fn local_memory(c: &mut Ctx) -> Result<String, String> {
    let local = c.cubin.kernel("local_scratch").map_or(0, |k| k.local_bytes);
    if local == 0 {
        return Err("local_scratch uses no local memory: the test no longer tests it".into());
    }
    let (threads, salt) = (64 * 1024u32, 977u32);
    let out = c.alloc(u64::from(threads) * 4, MemoryKind::HostVisible)?;
    let kernel = c.kernel("local_scratch")?;
    let mut q = c.device.queue();
    q.launch(&kernel, [threads / 256, 1, 1], [256, 1, 1], 0, &[Arg::Buffer(&out), Arg::U32(salt)])
        .map_err(text)?;
    c.run(&mut q).map_err(text)?;
    let mut bytes = vec![0u8; threads as usize * 4];
    c.device.read(&out, 0, &mut bytes).map_err(text)?;
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
    let never = c.device.signal().map_err(text)?;
    let result = never.wait(1, Instant::now() + Duration::from_millis(200));
    match result {
        Err(Error::Timeout { wanted: 1, last_seen: 0, .. }) => {
            Ok(format!("reported: {}", result.unwrap_err()))
        }
        other => Err(format!("expected a timeout, got {other:?}")),
    }
}

/// The runtime's benchmark, then the CUDA peer in a child process, then ratios. Returns the
/// exit status.
fn bench(gpu: u32, bytes: u64) -> i32 {
    let (ours, spec) = match egpu::bench::run(&format!("nv:{gpu}"), bytes) {
        Ok(measured) => measured,
        Err(e) => {
            println!("FAIL bench: {e}");
            return 1;
        }
    };
    let Some(spec) = spec else {
        print!("{ours}");
        println!("FAIL CUDA peer: the runtime reports no PCI address for nv:{gpu}");
        return 1;
    };
    let mut peer_args = vec![PEER_FLAG.to_string(), "--bytes".into(), bytes.to_string()];
    peer_args.extend(spec.args());
    match egpu::bench::run_peer_process(&peer_args) {
        Ok(cuda) => {
            let comparison = egpu::bench::Comparison { ours, cuda };
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

fn setup(gpu: u32) -> Result<Ctx, String> {
    let device = Device::open(&format!("nv:{gpu}")).map_err(text)?;
    let image = egpu::bench::compile_kernels(&device).map_err(text)?;
    let program = device.load_program(&image).map_err(text)?;
    let cubin = egpu_nv::cubin::Cubin::parse(&image).map_err(text)?;
    let sig = device.signal().map_err(text)?;
    println!("device {}", egpu::bench::describe(&device));
    Ok(Ctx { device, program, cubin, sig, value: 0 })
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
    if args.iter().any(|a| a == PEER_FLAG) {
        let Some(spec) = PeerSpec::from_args(&args) else {
            eprintln!("{PEER_FLAG} needs --pci BUS_ID and --sm N");
            std::process::exit(2);
        };
        match egpu::bench::run_peer(&spec, bytes) {
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
    let mut ctx = match setup(gpu) {
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
