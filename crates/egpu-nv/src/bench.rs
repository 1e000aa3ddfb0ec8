//! `egpu bench nv:N`: launch latency, launch throughput, copy and memory bandwidth — measured
//! on our runtime (`egpu::bench`, through `egpu::Device` and this crate's runtime adapter) and,
//! as the peer, on NVIDIA's CUDA driver API (libcuda) on the same GPU.
//!
//! Both sides run the same kernels (one NVRTC cubin) through one measuring routine,
//! [`measure`], over the small [`BenchTarget`] trait, so every figure means the same thing on
//! both sides:
//! - `launch_submit_us`: CPU time per launch of an empty 1×1 kernel, in batches of 256 launched
//!   back to back and then waited for (mean over 20 batches; the batch stays below the depth at
//!   which CUDA starts blocking in cuLaunchKernel, about 1,000, so neither side measures the
//!   GPU's throughput instead);
//! - `launch_end_to_end_us`: one launch, then wait for it on the CPU (median of 2,000);
//! - `launches_per_second`: 10,000 launches back to back plus the final wait;
//! - `h2d/d2h/d2d_gbps`: one copy of `copy_bytes` between pinned host memory and VRAM or
//!   within VRAM, best of 5;
//! - `stream_gbps`: a grid-stride float4 copy kernel, bytes read + written, best of 5.
//!
//! The CUDA side runs in a child process ([`PEER_FLAG`]) so that libcuda and our RM client
//! never share a process (both register the GPU with UVM). Everything here but the peer is
//! vendor-blind; it lives beside the peer because the peer needs [`measure`] too.

use std::fmt;
use std::time::{Duration, Instant};

/// CUDA C of the benchmark and suite kernels.
pub const KERNELS: &str = include_str!("../../../kernels/nv_suite.cu");

/// Argument that makes a benchmark binary measure the CUDA peer and print its report.
pub const PEER_FLAG: &str = "--cuda-peer";

/// What one side measured (see the module docs for the definitions).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Device description.
    pub device: String,
    /// CPU cost of one empty-kernel launch (µs, mean of back-to-back launches).
    pub launch_submit_us: f64,
    /// Launch → completion seen by the CPU, one empty kernel (µs, median).
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

/// A goal of issue 3 for the ratio egpu / CUDA of one metric.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// The ratio must be at most this.
    AtMost(f64),
    /// The ratio must be at least this.
    AtLeast(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtMost(limit) => ratio <= limit,
            Goal::AtLeast(limit) => ratio >= limit,
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Goal::AtMost(limit) => write!(f, "<= {limit:.2}"),
            Goal::AtLeast(limit) => write!(f, ">= {limit:.2}"),
        }
    }
}

/// The numeric metrics in report order, with their goals: per-launch CPU cost ≤ 0.5× CUDA's,
/// copy bandwidth ≥ 0.95× CUDA's.
const METRICS: [(&str, Option<Goal>); 7] = [
    ("launch_submit_us", Some(Goal::AtMost(0.5))),
    ("launch_end_to_end_us", None),
    ("launches_per_second", None),
    ("h2d_gbps", Some(Goal::AtLeast(0.95))),
    ("d2h_gbps", Some(Goal::AtLeast(0.95))),
    ("d2d_gbps", Some(Goal::AtLeast(0.95))),
    ("stream_gbps", None),
];

impl BenchReport {
    fn values(&self) -> [f64; 7] {
        [
            self.launch_submit_us,
            self.launch_end_to_end_us,
            self.launches_per_second,
            self.h2d_gbps,
            self.d2h_gbps,
            self.d2d_gbps,
            self.stream_gbps,
        ]
    }

    /// Parse the `name value` lines [`fmt::Display`] writes.
    pub fn parse(text: &str) -> Option<BenchReport> {
        let mut device = None;
        let mut values = [None; 7];
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            if key == "device" {
                device = Some(value.to_string());
            } else if let Some(i) = METRICS.iter().position(|(name, _)| *name == key) {
                values[i] = Some(value.trim().parse::<f64>().ok()?);
            }
        }
        let [a, b, c, d, e, f, g] = values;
        Some(BenchReport {
            device: device?,
            launch_submit_us: a?,
            launch_end_to_end_us: b?,
            launches_per_second: c?,
            h2d_gbps: d?,
            d2h_gbps: e?,
            d2d_gbps: f?,
            stream_gbps: g?,
        })
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device {}", self.device)?;
        for ((name, _), value) in METRICS.iter().zip(self.values()) {
            writeln!(f, "{name} {value:.3}")?;
        }
        Ok(())
    }
}

/// Our report beside the peer's, with ratios and the goals.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Our runtime.
    pub ours: BenchReport,
    /// CUDA driver API.
    pub cuda: BenchReport,
}

impl Comparison {
    /// Each metric's name, ratio egpu / CUDA and goal.
    fn ratios(&self) -> impl Iterator<Item = (&'static str, f64, f64, f64, Option<Goal>)> {
        METRICS
            .into_iter()
            .zip(self.ours.values().into_iter().zip(self.cuda.values()))
            .map(|((name, goal), (ours, cuda))| (name, ours, cuda, ours / cuda, goal))
    }

    /// Whether every goal (see [`METRICS`]) is met.
    pub fn goals_met(&self) -> bool {
        self.ratios().all(|(.., ratio, goal)| goal.is_none_or(|goal| goal.met(ratio)))
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "egpu: {}", self.ours.device)?;
        writeln!(f, "CUDA: {}", self.cuda.device)?;
        writeln!(f, "{:24} {:>12} {:>12} {:>8}  goal", "metric", "egpu", "CUDA", "egpu/CUDA")?;
        for (name, ours, cuda, ratio, goal) in self.ratios() {
            let goal = goal.map_or(String::new(), |goal| {
                format!("{goal} {}", if goal.met(ratio) { "met" } else { "MISSED" })
            });
            writeln!(f, "{name:24} {ours:12.3} {cuda:12.3} {ratio:8.3}  {goal}")?;
        }
        Ok(())
    }
}

/// A GPU as the benchmark drives it. Work is queued in order; `finish` waits for all of it.
pub trait BenchTarget {
    /// Error type of the side.
    type Error: std::fmt::Display;
    /// Queue one launch of `empty` on a 1×1 grid.
    fn launch_empty(&mut self) -> Result<(), Self::Error>;
    /// Queue one launch of `stream_copy` from buffer A to buffer B (`copy_bytes` each).
    fn launch_stream(&mut self) -> Result<(), Self::Error>;
    /// Queue one copy of `copy_bytes`.
    fn copy(&mut self, direction: CopyDirection) -> Result<(), Self::Error>;
    /// Wait on the CPU until all queued work has finished.
    fn finish(&mut self) -> Result<(), Self::Error>;
}

/// Which copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    /// Pinned host → VRAM.
    HostToDevice,
    /// VRAM → pinned host.
    DeviceToHost,
    /// VRAM → VRAM.
    DeviceToDevice,
}

/// What [`measure`] asks of a target, counted: the workload both sides get. A target of its
/// own, so that a test of another side can compare what that side was asked to do with this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// Empty-kernel launches.
    pub launches: u32,
    /// Stream-kernel launches.
    pub streams: u32,
    /// Copies, indexed by [`CopyDirection`] as `usize`.
    pub copies: [u32; 3],
    /// Waits for all queued work.
    pub finishes: u32,
    /// Empty-kernel launches not yet followed by a finish (what the tests check ends at 0).
    pending: u32,
}

impl Workload {
    /// The workload of one [`measure`] run.
    pub fn of_measure(copy_bytes: u64) -> Workload {
        let mut workload = Workload::default();
        match measure(&mut workload, String::new(), copy_bytes) {
            Ok(_) => workload,
            Err(never) => match never {},
        }
    }
}

impl BenchTarget for Workload {
    type Error = std::convert::Infallible;
    fn launch_empty(&mut self) -> Result<(), Self::Error> {
        self.launches += 1;
        self.pending += 1;
        Ok(())
    }
    fn launch_stream(&mut self) -> Result<(), Self::Error> {
        self.streams += 1;
        Ok(())
    }
    fn copy(&mut self, direction: CopyDirection) -> Result<(), Self::Error> {
        self.copies[direction as usize] += 1;
        Ok(())
    }
    fn finish(&mut self) -> Result<(), Self::Error> {
        self.finishes += 1;
        self.pending = 0;
        Ok(())
    }
}

/// Launches per timed batch for the submit cost.
const SUBMIT_BATCH: u32 = 256;
/// Timed batches.
const SUBMIT_BATCHES: u32 = 20;
/// Round trips for the end-to-end latency.
const ROUND_TRIPS: u32 = 2_000;
/// Launches for the throughput.
const THROUGHPUT_LAUNCHES: u32 = 10_000;
/// Repetitions of each bandwidth measurement (best is kept).
const BANDWIDTH_RUNS: u32 = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Measure one side. `device` describes it in the report.
pub fn measure<T: BenchTarget>(
    target: &mut T,
    device: String,
    copy_bytes: u64,
) -> Result<BenchReport, T::Error> {
    // Warm up: first launches load the module, first copies fault in the mappings.
    target.launch_empty()?;
    target.copy(CopyDirection::HostToDevice)?;
    target.finish()?;

    let mut submitting = Duration::ZERO;
    for _ in 0..SUBMIT_BATCHES {
        let t0 = Instant::now();
        for _ in 0..SUBMIT_BATCH {
            target.launch_empty()?;
        }
        submitting += t0.elapsed();
        target.finish()?;
    }
    let launch_submit_us =
        submitting.as_secs_f64() * 1e6 / f64::from(SUBMIT_BATCH * SUBMIT_BATCHES);

    let mut round_trips = Vec::with_capacity(ROUND_TRIPS as usize);
    for _ in 0..ROUND_TRIPS {
        let t0 = Instant::now();
        target.launch_empty()?;
        target.finish()?;
        round_trips.push(t0.elapsed().as_secs_f64() * 1e6);
    }

    let t0 = Instant::now();
    for _ in 0..THROUGHPUT_LAUNCHES {
        target.launch_empty()?;
    }
    target.finish()?;
    let launches_per_second = f64::from(THROUGHPUT_LAUNCHES) / t0.elapsed().as_secs_f64();

    let best_seconds = |target: &mut T, op: &dyn Fn(&mut T) -> Result<(), T::Error>| {
        let mut best = f64::MAX;
        for _ in 0..BANDWIDTH_RUNS {
            let t0 = Instant::now();
            op(target)?;
            target.finish()?;
            best = best.min(t0.elapsed().as_secs_f64());
        }
        Ok::<f64, T::Error>(best)
    };
    let gbps = |seconds: f64| copy_bytes as f64 / seconds / 1e9;
    let h2d = best_seconds(target, &|t| t.copy(CopyDirection::HostToDevice))?;
    let d2h = best_seconds(target, &|t| t.copy(CopyDirection::DeviceToHost))?;
    let d2d = best_seconds(target, &|t| t.copy(CopyDirection::DeviceToDevice))?;
    let stream = best_seconds(target, &|t| t.launch_stream())?;
    Ok(BenchReport {
        device,
        launch_submit_us,
        launch_end_to_end_us: median(round_trips),
        launches_per_second,
        h2d_gbps: gbps(h2d),
        d2h_gbps: gbps(d2h),
        d2d_gbps: gbps(d2d),
        stream_gbps: 2.0 * gbps(stream),
    })
}

/// Grid for the streaming kernel: 8 blocks of 256 threads per SM.
pub fn stream_grid(sm_count: u32) -> u32 {
    sm_count.max(1) * 8
}

/// The stream kernel's element count (float4s) for `copy_bytes`.
pub fn stream_elements(copy_bytes: u64) -> u64 {
    copy_bytes / 16
}

/// Wait limit for the whole CUDA peer process.
const PEER_TIMEOUT: Duration = Duration::from_secs(600);

/// Which GPU and SM the CUDA peer must measure so that both sides run the same kernels on the
/// same device: the PCI bus id (CUDA's ordinals differ from `nv:N` under
/// `CUDA_VISIBLE_DEVICES`) and the SM our side compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// `domain:bus:device.function`, as `cuDeviceGetByPCIBusId` takes it.
    pub pci_bus_id: String,
    /// `sm_XX` number.
    pub sm: u32,
}

impl PeerSpec {
    /// Command-line arguments carrying the spec to the peer process.
    pub fn args(&self) -> [String; 4] {
        ["--pci".into(), self.pci_bus_id.clone(), "--sm".into(), self.sm.to_string()]
    }

    /// Read the spec back from a peer process's arguments.
    pub fn from_args(args: &[String]) -> Option<PeerSpec> {
        let value =
            |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
        Some(PeerSpec { pci_bus_id: value("--pci")?, sm: value("--sm")?.parse().ok()? })
    }
}

/// Measure the CUDA peer by running this executable again with `peer_args` (which must make
/// it measure the peer (`crate::cuda_peer::run`) and print the report), and read its report.
pub fn run_peer_process(peer_args: &[String]) -> Result<BenchReport, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let mut child = std::process::Command::new(&exe)
        .args(peer_args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    // The peer's waits (cuStreamSynchronize) have no deadline of their own: bound the process.
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the CUDA peer did not finish within {PEER_TIMEOUT:?}; the GPU may be hung \
                     (check dmesg for Xid errors) or busy with other work"
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", exe.display())),
        }
    }
    // Its report is a few hundred bytes, so the pipes never filled while it ran.
    let output = child.wait_with_output().map_err(|e| format!("reading the peer's output: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{} {} exited with {}: {} {}",
            exe.display(),
            peer_args.join(" "),
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    BenchReport::parse(&stdout).ok_or_else(|| format!("unreadable peer report:\n{stdout}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_get_the_same_workload() {
        // `Workload` is the target whose operations count themselves.
        let mut t = Workload::default();
        let report = measure(&mut t, "counting".into(), 1 << 20).unwrap();
        assert_eq!(
            t.launches,
            1 + SUBMIT_BATCH * SUBMIT_BATCHES + ROUND_TRIPS + THROUGHPUT_LAUNCHES
        );
        assert_eq!(t.streams, BANDWIDTH_RUNS);
        assert_eq!(t.copies, [1 + BANDWIDTH_RUNS, BANDWIDTH_RUNS, BANDWIDTH_RUNS]);
        assert_eq!(t.finishes, 1 + SUBMIT_BATCHES + ROUND_TRIPS + 1 + 4 * BANDWIDTH_RUNS);
        assert_eq!(t.pending, 0, "every launch is waited for");
        assert!(report.launch_submit_us >= 0.0 && report.h2d_gbps > 0.0);
        assert_eq!(Workload::of_measure(1 << 20), t);
    }

    #[test]
    fn errors_stop_the_measurement() {
        struct Failing;
        impl BenchTarget for Failing {
            type Error = String;
            fn launch_empty(&mut self) -> Result<(), String> {
                Err("GPU gone".into())
            }
            fn launch_stream(&mut self) -> Result<(), String> {
                Ok(())
            }
            fn copy(&mut self, _: CopyDirection) -> Result<(), String> {
                Ok(())
            }
            fn finish(&mut self) -> Result<(), String> {
                Ok(())
            }
        }
        assert_eq!(measure(&mut Failing, "x".into(), 1).unwrap_err(), "GPU gone");
    }

    fn report(device: &str, scale: f64) -> BenchReport {
        BenchReport {
            device: device.into(),
            launch_submit_us: 2.0 * scale,
            launch_end_to_end_us: 9.5 * scale,
            launches_per_second: 250_000.0 / scale,
            h2d_gbps: 25.0 / scale,
            d2h_gbps: 26.0 / scale,
            d2d_gbps: 1400.0 / scale,
            stream_gbps: 2900.0 / scale,
        }
    }

    #[test]
    fn peer_spec_travels_as_arguments() {
        let spec = PeerSpec { pci_bus_id: "0000:41:00.0".into(), sm: 90 };
        let mut args = vec!["--cuda-peer".to_string(), "--bytes".into(), "1024".into()];
        args.extend(spec.args());
        assert_eq!(PeerSpec::from_args(&args), Some(spec));
        assert_eq!(PeerSpec::from_args(&["--pci".into(), "0000:41:00.0".into()]), None);
    }

    #[test]
    fn report_text_round_trips() {
        let r = report("nv:0 Hopper sm_90, 132 SMs, driver 580.105.08", 1.0);
        assert_eq!(BenchReport::parse(&r.to_string()), Some(r));
        assert_eq!(BenchReport::parse("device x\nlaunch_submit_us 1.0\n"), None);
        assert_eq!(BenchReport::parse("device x\nlaunch_submit_us fast\n"), None);
    }

    #[test]
    fn goals_and_ratios() {
        let cuda = report("cuda", 1.0);
        let mut ours = report("ours", 1.0);
        ours.launch_submit_us = 0.9;
        let met = Comparison { ours: ours.clone(), cuda: cuda.clone() };
        assert!(met.goals_met());
        assert!(met.to_string().contains("launch_submit_us"));
        assert!(!met.to_string().contains("MISSED"));
        ours.h2d_gbps = 0.9 * cuda.h2d_gbps;
        let missed = Comparison { ours, cuda };
        assert!(!missed.goals_met());
        assert!(missed.to_string().contains("MISSED"));
    }
}
