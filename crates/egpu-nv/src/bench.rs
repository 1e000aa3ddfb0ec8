//! `egpu bench nv:N`: launch latency, launch throughput, copy and memory bandwidth.
//!
//! CPU times are wall-clock around our calls; GPU-side numbers come from the same runs. Only
//! measurement lives here; comparisons with CUDA are made by `bench/nv_vs_cuda.py`.

use crate::device::{NvCommand, NvDevice};
use crate::nvrtc::Nvrtc;
use crate::NvError;
use std::fmt;
use std::time::{Duration, Instant};

/// CUDA C of the benchmark and suite kernels.
pub const KERNELS: &str = include_str!("../../../kernels/nv_suite.cu");

/// Benchmark results.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Device description.
    pub device: String,
    /// CPU cost of submitting one empty-kernel launch (µs).
    pub launch_submit_us: f64,
    /// Submit → completion observed on the CPU, one empty kernel (µs, median).
    pub launch_end_to_end_us: f64,
    /// Empty-kernel launches per second, back to back.
    pub launches_per_second: f64,
    /// Host → device copy (GB/s).
    pub h2d_gbps: f64,
    /// Device → host copy (GB/s).
    pub d2h_gbps: f64,
    /// Device → device copy (GB/s).
    pub d2d_gbps: f64,
    /// Streaming kernel read+write bandwidth (GB/s).
    pub stream_gbps: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device {}", self.device)?;
        writeln!(f, "launch_submit_us {:.3}", self.launch_submit_us)?;
        writeln!(f, "launch_end_to_end_us {:.3}", self.launch_end_to_end_us)?;
        writeln!(f, "launches_per_second {:.0}", self.launches_per_second)?;
        writeln!(f, "h2d_gbps {:.2}", self.h2d_gbps)?;
        writeln!(f, "d2h_gbps {:.2}", self.d2h_gbps)?;
        writeln!(f, "d2d_gbps {:.2}", self.d2d_gbps)?;
        write!(f, "stream_gbps {:.2}", self.stream_gbps)
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Run the benchmark on `nv:<index>`; `copy_bytes` sizes the bandwidth tests.
pub fn run(index: u32, copy_bytes: u64) -> Result<BenchReport, NvError> {
    let mut dev = NvDevice::open(index)?;
    let nvrtc = Nvrtc::load()?;
    let cubin = nvrtc.compile_for_sm(KERNELS, "nv_suite.cu", dev.arch().sm(), &[])?;
    let program = dev.load_program(&cubin)?;
    let sig = dev.create_signal()?;
    let mut value = 0u64;
    let empty = |_: ()| NvCommand::Launch {
        program,
        kernel: "empty".into(),
        grid: [1, 1, 1],
        block: [1, 1, 1],
        dynamic_shared_bytes: 0,
        args: vec![],
    };

    // Submit cost and end-to-end latency, one launch at a time.
    let (mut submit, mut e2e) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        value += 1;
        let t0 = Instant::now();
        dev.submit(&[empty(()), NvCommand::Signal { slot: sig, value }])?;
        let t1 = Instant::now();
        dev.wait_signal(sig, value, Instant::now() + TIMEOUT)?;
        submit.push((t1 - t0).as_secs_f64() * 1e6);
        e2e.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    // Throughput: 10,000 launches, one signal at the end.
    let n = 10_000;
    let t0 = Instant::now();
    for _ in 0..n {
        dev.submit(&[empty(())])?;
    }
    value += 1;
    dev.submit(&[NvCommand::Signal { slot: sig, value }])?;
    dev.wait_signal(sig, value, Instant::now() + TIMEOUT)?;
    let launches_per_second = n as f64 / t0.elapsed().as_secs_f64();

    let host = dev.alloc(copy_bytes, true)?;
    let a = dev.alloc(copy_bytes, false)?;
    let b = dev.alloc(copy_bytes, false)?;
    let mut bandwidth = |dev: &mut NvDevice, src: u64, dst: u64| -> Result<f64, NvError> {
        let mut best = f64::MAX;
        for _ in 0..5 {
            value += 1;
            let t0 = Instant::now();
            dev.submit(&[
                NvCommand::Copy { src, dst, len: copy_bytes },
                NvCommand::Signal { slot: sig, value },
            ])?;
            dev.wait_signal(sig, value, Instant::now() + TIMEOUT)?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        Ok(copy_bytes as f64 / best / 1e9)
    };
    let h2d_gbps = bandwidth(&mut dev, host.va, a.va)?;
    let d2h_gbps = bandwidth(&mut dev, a.va, host.va)?;
    let d2d_gbps = bandwidth(&mut dev, a.va, b.va)?;
    let vec4 = copy_bytes / 16;
    let mut args = Vec::new();
    args.extend(a.va.to_le_bytes());
    args.extend(b.va.to_le_bytes());
    args.extend(vec4.to_le_bytes());
    let mut best = f64::MAX;
    for _ in 0..5 {
        value += 1;
        let t0 = Instant::now();
        dev.submit(&[
            NvCommand::Launch {
                program,
                kernel: "stream_copy".into(),
                grid: [dev.sm_count().max(1) * 8, 1, 1],
                block: [256, 1, 1],
                dynamic_shared_bytes: 0,
                args: args.clone(),
            },
            NvCommand::Signal { slot: sig, value },
        ])?;
        dev.wait_signal(sig, value, Instant::now() + TIMEOUT)?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let stream_gbps = 2.0 * copy_bytes as f64 / best / 1e9;
    let report = BenchReport {
        device: format!(
            "nv:{index} {:?} sm_{} driver {}",
            dev.arch(),
            dev.arch().sm(),
            dev.driver_version()
        ),
        launch_submit_us: median(submit),
        launch_end_to_end_us: median(e2e),
        launches_per_second,
        h2d_gbps,
        d2h_gbps,
        d2d_gbps,
        stream_gbps,
    };
    for buffer in [host, a, b] {
        dev.free(buffer);
    }
    Ok(report)
}
