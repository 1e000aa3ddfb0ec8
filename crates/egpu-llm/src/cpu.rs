//! The CPU reference backend: multi-threaded (rayon) matrix-vector products on the packed GGUF
//! blocks, read straight from the memory-mapped file.

use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;

use crate::backend::{Backend, BackendError, Rope, RopeStyle};
use crate::gguf::{GgufFile, TensorInfo};
use crate::qdot::{self, QActivations};
use crate::quant::{dot_f32, RowKernel};

/// Output rows per parallel task: large enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// Tasks per thread of a matrix-vector product (the decode path), whose tasks are short, so
/// that the dispatch cost counts: two per thread leaves some room to balance a thread that
/// another process delays.
const DECODE_TASKS_PER_THREAD: usize = 2;

fn decode_rows_per_task(n_out: usize, threads: usize) -> usize {
    n_out.div_ceil(threads * DECODE_TASKS_PER_THREAD).max(ROWS_PER_TASK)
}

/// The CPU backend.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    /// The quantized activation vector of the decode path, reused across calls.
    xq: Mutex<QActivations>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend").field("threads", &self.threads).finish()
    }
}

impl CpuBackend {
    /// A backend using `threads` threads (0: one per available core).
    pub fn new(threads: usize) -> Result<Self, BackendError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("egpu-cpu-{i}"))
            .build()
            .map_err(|e| {
                BackendError::Device(format!("starting {threads} CPU worker threads: {e}"))
            })?;
        Ok(Self { pool, threads, xq: Mutex::new(QActivations::new()) })
    }
}

/// A weight that stays packed inside the mapped GGUF file.
pub struct CpuWeight {
    file: Arc<GgufFile>,
    start: usize,
    rows: usize,
    kernel: RowKernel,
}

impl CpuWeight {
    fn bytes(&self) -> &[u8] {
        let len = self.rows * self.kernel.row_bytes();
        &self.file.bytes()[self.start..self.start + len]
    }

    fn row(&self, r: usize) -> &[u8] {
        let rb = self.kernel.row_bytes();
        &self.bytes()[r * rb..(r + 1) * rb]
    }
}

/// Keys and values for every layer, `capacity × width` each.
pub struct CpuKvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    capacity: usize,
    width: usize,
}

fn shape_err(op: &'static str, problem: String) -> BackendError {
    BackendError::Shape { op, problem }
}

fn need(op: &'static str, what: &str, have: usize, want: usize) -> Result<(), BackendError> {
    if have < want {
        return Err(shape_err(op, format!("{what} holds {have} floats, needs {want}")));
    }
    Ok(())
}

impl Backend for CpuBackend {
    type Buffer = Vec<f32>;
    type Weight = CpuWeight;
    type KvCache = CpuKvCache;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    fn upload_weight(
        &self,
        file: &Arc<GgufFile>,
        info: &TensorInfo,
    ) -> Result<CpuWeight, BackendError> {
        let cols = info.row_len() as usize;
        let rows = info.n_rows() as usize;
        let kernel =
            RowKernel::new(info.ggml_type, cols).map_err(|e| BackendError::UnsupportedWeight {
                backend: "cpu".into(),
                tensor: info.name.clone(),
                ty: info.ggml_type,
                hint: e.to_string(),
            })?;
        let data = file.data_of(info).map_err(|e| shape_err("upload_weight", e.to_string()))?;
        if data.len() != rows * kernel.row_bytes() {
            return Err(shape_err(
                "upload_weight",
                format!("{}: {} bytes for {rows} rows", info.name, data.len()),
            ));
        }
        // Touch one byte per page so that the weights are read now (the loading bar) and not
        // during the first token.
        let checksum = data.iter().step_by(4096).fold(0u8, |a, &b| a ^ b);
        std::hint::black_box(checksum);
        let start = (file.data_offset + info.offset) as usize;
        Ok(CpuWeight { file: Arc::clone(file), start, rows, kernel })
    }

    fn upload(&self, data: &[f32]) -> Result<Vec<f32>, BackendError> {
        Ok(data.to_vec())
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>, BackendError> {
        Ok(vec![0.0; len])
    }

    fn read(&self, buf: &Vec<f32>, out: &mut [f32]) -> Result<(), BackendError> {
        need("read", "buffer", buf.len(), out.len())?;
        out.copy_from_slice(&buf[..out.len()]);
        Ok(())
    }

    fn alloc_kv(
        &self,
        layers: usize,
        capacity: usize,
        width: usize,
    ) -> Result<CpuKvCache, BackendError> {
        let len = capacity
            .checked_mul(width)
            .ok_or_else(|| shape_err("alloc_kv", format!("{capacity} × {width} overflows")))?;
        Ok(CpuKvCache {
            k: vec![vec![0.0; len]; layers],
            v: vec![vec![0.0; len]; layers],
            capacity,
            width,
        })
    }

    fn embed(
        &self,
        table: &CpuWeight,
        ids: &[u32],
        out: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        let width = table.kernel.row_len();
        need("embed", "output", out.len(), ids.len() * width)?;
        for (t, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id >= table.rows {
                return Err(shape_err(
                    "embed",
                    format!("token id {id} is outside the vocabulary of {}", table.rows),
                ));
            }
            table.kernel.dequantize_row(table.row(id), &mut out[t * width..(t + 1) * width]);
        }
        Ok(())
    }

    fn rms_norm(
        &self,
        x: &Vec<f32>,
        weight: &Vec<f32>,
        eps: f32,
        rows: usize,
        width: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        need("rms_norm", "input", x.len(), rows * width)?;
        need("rms_norm", "output", out.len(), rows * width)?;
        need("rms_norm", "weight", weight.len(), width)?;
        for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)).take(rows) {
            let scale = rms_scale(xr, eps);
            for ((o, &xv), &w) in or.iter_mut().zip(xr).zip(weight) {
                *o = xv * scale * w;
            }
        }
        Ok(())
    }

    fn rms_norm_in_place(
        &self,
        x: &mut Vec<f32>,
        weight: &Vec<f32>,
        eps: f32,
        rows: usize,
        width: usize,
    ) -> Result<(), BackendError> {
        need("rms_norm_in_place", "input", x.len(), rows * width)?;
        need("rms_norm_in_place", "weight", weight.len(), width)?;
        for xr in x.chunks_exact_mut(width).take(rows) {
            let scale = rms_scale(xr, eps);
            for (v, &w) in xr.iter_mut().zip(weight) {
                *v *= scale * w;
            }
        }
        Ok(())
    }

    fn matmul(
        &self,
        w: &CpuWeight,
        x: &Vec<f32>,
        rows: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        let (n_out, n_in) = (w.rows, w.kernel.row_len());
        need("matmul", "input", x.len(), rows * n_in)?;
        need("matmul", "output", out.len(), rows * n_out)?;
        let kernel = w.kernel;
        let rb = kernel.row_bytes();
        let bytes = w.bytes();
        if rows == 1 && qdot::supports(kernel.ty()) {
            // Decode: quantize the activations once, then integer dot products.
            // The buffer is taken out rather than locked through the parallel section: a worker
            // waiting in it may pick up another caller's forward pass, which must not block.
            let mut xq =
                std::mem::take(&mut *self.xq.lock().unwrap_or_else(PoisonError::into_inner));
            xq.quantize(&x[..n_in]);
            let xq_ref = &xq;
            let ty = kernel.ty();
            let per_task = decode_rows_per_task(n_out, self.threads);
            self.pool.install(|| {
                out[..n_out].par_chunks_mut(per_task).enumerate().for_each(|(chunk, o)| {
                    let first = chunk * per_task;
                    let w = &bytes[first * rb..(first + o.len()) * rb];
                    qdot::dot_rows_q(ty, w, rb, xq_ref, o);
                });
            });
            *self.xq.lock().unwrap_or_else(PoisonError::into_inner) = xq;
            return Ok(());
        }
        if rows == 1 {
            let per_task = decode_rows_per_task(n_out, self.threads);
            self.pool.install(|| {
                out[..n_out].par_chunks_mut(per_task).enumerate().for_each(|(chunk, o)| {
                    let first = chunk * per_task;
                    kernel.dot_rows(&bytes[first * rb..(first + o.len()) * rb], &x[..n_in], o);
                });
            });
            return Ok(());
        }
        // Prefill: each weight row is decoded from the packed blocks once per task and used
        // for every token, so the weights stream through the cache once per call.
        let mut transposed = vec![0f32; n_out * rows];
        self.pool.install(|| {
            transposed.par_chunks_mut(ROWS_PER_TASK * rows).enumerate().for_each(|(chunk, o)| {
                let mut scratch = vec![0f32; 4 * n_in];
                let first = chunk * ROWS_PER_TASK;
                let n = o.len() / rows;
                kernel.dot_rows_tokens(
                    &bytes[first * rb..(first + n) * rb],
                    &x[..rows * n_in],
                    &mut scratch,
                    o,
                );
            });
        });
        for r in 0..n_out {
            for t in 0..rows {
                out[t * n_out + r] = transposed[r * rows + t];
            }
        }
        Ok(())
    }

    fn add_bias(
        &self,
        x: &mut Vec<f32>,
        bias: &Vec<f32>,
        rows: usize,
        width: usize,
    ) -> Result<(), BackendError> {
        need("add_bias", "input", x.len(), rows * width)?;
        need("add_bias", "bias", bias.len(), width)?;
        for xr in x.chunks_exact_mut(width).take(rows) {
            for (v, b) in xr.iter_mut().zip(bias) {
                *v += b;
            }
        }
        Ok(())
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        heads: usize,
        head_dim: usize,
        positions: &[usize],
        rope: &Rope,
    ) -> Result<(), BackendError> {
        let width = heads * head_dim;
        need("rope", "input", x.len(), positions.len() * width)?;
        if rope.n_rot > head_dim
            || !rope.n_rot.is_multiple_of(2)
            || rope.inv_freq.len() < rope.n_rot / 2
        {
            return Err(shape_err("rope", format!("n_rot {} for head_dim {head_dim}", rope.n_rot)));
        }
        let half = rope.n_rot / 2;
        let mut cos_sin = vec![(0f32, 0f32); half];
        for (t, &pos) in positions.iter().enumerate() {
            for (cs, &f) in cos_sin.iter_mut().zip(&rope.inv_freq) {
                // f64 angle: positions × frequencies lose precision in f32 at long contexts.
                let angle = pos as f64 * f64::from(f);
                *cs = (angle.cos() as f32, angle.sin() as f32);
            }
            for head in x[t * width..(t + 1) * width].chunks_exact_mut(head_dim) {
                for (i, &(c, s)) in cos_sin.iter().enumerate() {
                    let (a, b) = match rope.style {
                        RopeStyle::Normal => (2 * i, 2 * i + 1),
                        RopeStyle::Neox => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        }
        Ok(())
    }

    fn attention(
        &self,
        cache: &mut CpuKvCache,
        layer: usize,
        q: &Vec<f32>,
        k: &Vec<f32>,
        v: &Vec<f32>,
        start: usize,
        rows: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        let kv_width = kv_heads * head_dim;
        let q_width = heads * head_dim;
        if kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || kv_width != cache.width
            || layer >= cache.k.len()
        {
            return Err(shape_err(
                "attention",
                format!("{heads} heads / {kv_heads} KV heads × {head_dim} for a cache of width {} (layer {layer})", cache.width),
            ));
        }
        if start + rows > cache.capacity {
            return Err(BackendError::ContextFull { pos: start, rows, capacity: cache.capacity });
        }
        need("attention", "q", q.len(), rows * q_width)?;
        need("attention", "k", k.len(), rows * kv_width)?;
        need("attention", "v", v.len(), rows * kv_width)?;
        need("attention", "output", out.len(), rows * q_width)?;
        let (kc, vc) = (&mut cache.k[layer], &mut cache.v[layer]);
        kc[start * kv_width..(start + rows) * kv_width].copy_from_slice(&k[..rows * kv_width]);
        vc[start * kv_width..(start + rows) * kv_width].copy_from_slice(&v[..rows * kv_width]);
        let (kc, vc) = (&*kc, &*vc);
        let group = heads / kv_heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        // One task per (token, head): each writes its own head_dim slice of `out`.
        self.pool.install(|| {
            out[..rows * q_width].par_chunks_mut(head_dim).enumerate().for_each(|(task, o)| {
                let (t, h) = (task / heads, task % heads);
                let kvh = h / group;
                let qh = &q[t * q_width + h * head_dim..][..head_dim];
                let n_ctx = start + t + 1;
                attend(qh, kc, vc, kv_width, kvh * head_dim, n_ctx, scale, o);
            });
        });
        Ok(())
    }

    fn swiglu(&self, gate: &mut Vec<f32>, up: &Vec<f32>, len: usize) -> Result<(), BackendError> {
        need("swiglu", "gate", gate.len(), len)?;
        need("swiglu", "up", up.len(), len)?;
        for (g, &u) in gate[..len].iter_mut().zip(&up[..len]) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
        Ok(())
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>, len: usize) -> Result<(), BackendError> {
        need("add", "x", x.len(), len)?;
        need("add", "y", y.len(), len)?;
        for (a, &b) in x[..len].iter_mut().zip(&y[..len]) {
            *a += b;
        }
        Ok(())
    }

    fn copy_row(
        &self,
        src: &Vec<f32>,
        row: usize,
        width: usize,
        dst: &mut Vec<f32>,
    ) -> Result<(), BackendError> {
        need("copy_row", "source", src.len(), (row + 1) * width)?;
        need("copy_row", "destination", dst.len(), width)?;
        dst[..width].copy_from_slice(&src[row * width..(row + 1) * width]);
        Ok(())
    }

    fn weight_shape(&self, w: &CpuWeight) -> (usize, usize) {
        (w.rows, w.kernel.row_len())
    }
}

/// One query head over `n_ctx` cached positions: `o = softmax(q·K^T · scale) · V`, where the
/// head's keys and values sit at `offset` in each `kv_width`-float row of `kc` and `vc`.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    kv_width: usize,
    offset: usize,
    n_ctx: usize,
    scale: f32,
    o: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: `attend_avx2` only requires AVX2 and FMA, which the CPU was just checked to
        // have.
        unsafe { attend_avx2(q, kc, vc, kv_width, offset, n_ctx, scale, o) };
        return;
    }
    attend_body(q, kc, vc, kv_width, offset, n_ctx, scale, o);
}

/// `attend_body` compiled for 8-wide vectors (the same code and the same results: the loops
/// have fixed lane counts and no fused multiply-adds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn attend_avx2(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    kv_width: usize,
    offset: usize,
    n_ctx: usize,
    scale: f32,
    o: &mut [f32],
) {
    attend_body(q, kc, vc, kv_width, offset, n_ctx, scale, o);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_body(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    kv_width: usize,
    offset: usize,
    n_ctx: usize,
    scale: f32,
    o: &mut [f32],
) {
    let head_dim = o.len();
    let mut scores: Vec<f32> =
        (0..n_ctx).map(|s| dot_f32(q, &kc[s * kv_width + offset..][..head_dim]) * scale).collect();
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for sc in &mut scores {
        *sc = (*sc - max).exp();
        sum += *sc;
    }
    o.fill(0.0);
    for (s, &w) in scores.iter().enumerate() {
        let vs = &vc[s * kv_width + offset..][..head_dim];
        let w = w / sum;
        for (ov, &vv) in o.iter_mut().zip(vs) {
            *ov += w * vv;
        }
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}
