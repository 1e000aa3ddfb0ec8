//! Kernel throughput on one thread, in GMAC per second of on-CPU time (robust against a busy
//! machine): `cargo run --release -p egpu-llm --example kernels -- MODEL.gguf`.

use egpu_llm::gguf::GgufFile;
use egpu_llm::qdot::{self, Isa, QActivations};
use egpu_llm::quant::RowKernel;

/// Nanoseconds this thread has spent on a CPU (Linux schedstat).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: kernels MODEL.gguf");
    let file = GgufFile::open(&path).expect("open");
    let isa = Isa::host();
    println!("kernels: {}", isa.name());
    for info in file.tensors.iter().filter(|t| t.dims.len() == 2).take(12) {
        let data = file.data_of(info).expect("tensor data");
        let Ok(k) = RowKernel::new(info.ggml_type, info.row_len() as usize) else { continue };
        let rows = info.n_rows() as usize;
        let x: Vec<f32> = (0..k.row_len()).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = vec![0f32; rows];
        let n = 200;
        let macs = (rows * k.row_len() * n) as f64;
        let t = cpu_ns();
        for _ in 0..n {
            k.dot_rows(data, &x, &mut out);
        }
        let exact = macs / (cpu_ns() - t).max(1) as f64;
        // Decode with quantized activations and integer dot products (what the CPU backend runs
        // for Q4_0/Q4_1/Q8_0).
        let int = if qdot::supports(k.ty()) {
            let mut xq = QActivations::new();
            // Repeat until 0.2 s of CPU time: schedstat's clock can be coarse on VMs.
            let (t, mut reps) = (cpu_ns(), 0);
            while cpu_ns() - t < 200_000_000 {
                for _ in 0..n {
                    xq.quantize(&x);
                    qdot::dot_rows_q(isa, k.ty(), data, k.row_bytes(), &xq, &mut out);
                }
                reps += 1;
            }
            format!("{:5.2}", macs * f64::from(reps) / (cpu_ns() - t).max(1) as f64)
        } else {
            "  -  ".to_owned()
        };
        // Prefill: 64 tokens against every row.
        let tokens = 64;
        let xs: Vec<f32> = (0..tokens * k.row_len()).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut scratch = vec![0f32; 4 * k.row_len()];
        let mut outs = vec![0f32; rows * tokens];
        let t = cpu_ns();
        for _ in 0..n / 20 {
            k.dot_rows_tokens(data, &xs, &mut scratch, &mut outs);
        }
        let prefill =
            (rows * k.row_len() * tokens * (n / 20)) as f64 / (cpu_ns() - t).max(1) as f64;
        let prefill_int = if qdot::supports(k.ty()) {
            let mut xq = QActivations::new();
            let t = cpu_ns();
            for _ in 0..n / 20 {
                xq.quantize_rows(&xs, tokens);
                qdot::dot_rows_tokens_q(isa, k.ty(), data, k.row_bytes(), &xq, &mut outs);
            }
            let r = (rows * k.row_len() * tokens * (n / 20)) as f64 / (cpu_ns() - t).max(1) as f64;
            format!("{r:5.2}")
        } else {
            "  -  ".to_owned()
        };
        println!(
            "{:28} {:5} {rows:6}x{:<5} decode f32 {exact:5.2}, int {int} GMAC/s, prefill f32 {prefill:5.2}, int {prefill_int} GMAC/s",
            info.name,
            info.ggml_type.name(),
            k.row_len()
        );
    }
}
