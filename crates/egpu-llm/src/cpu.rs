//! The CPU reference backend: multi-threaded (rayon) matrix-vector products on the packed GGUF
//! blocks, read straight from the memory-mapped file.

use std::sync::{Arc, Mutex, PoisonError};

use rayon::prelude::*;

use crate::backend::{Backend, BackendError, Rope, RopeStyle};
use crate::gguf::{GgufFile, TensorInfo};
use crate::qdot::{self, Isa, QActivations};
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

/// Tokens per prefill matrix product pass (see `matmul`).
const PREFILL_TOKEN_TILE: usize = 64;

/// Weight rows per prefill task: a multiple of the kernel's four-row blocks, at least four
/// tasks per thread so that the causal and ragged work balances.
fn prefill_rows_per_task(n_out: usize, threads: usize) -> usize {
    n_out.div_ceil(threads * 4).next_multiple_of(4).clamp(4, 64)
}

/// The CPU backend.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    /// The instruction set of the kernels, detected once.
    isa: Isa,
    /// The quantized activations of a matrix product, reused across calls.
    xq: Mutex<QActivations>,
    /// The transposed result of a prefill matrix product, reused across calls.
    transposed: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("threads", &self.threads)
            .field("isa", &self.isa.name())
            .finish()
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
            .map_err(|source| BackendError::Threads { threads, source })?;
        Ok(Self {
            pool,
            threads,
            isa: Isa::host(),
            xq: Mutex::new(QActivations::new()),
            transposed: Mutex::new(Vec::new()),
        })
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
        format!("cpu ({} threads, {})", self.threads, self.isa.name())
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
        let ty = kernel.ty();
        let isa = self.isa;
        if rows == 1 && qdot::supports(ty) {
            // Decode: quantize the activations once, then integer dot products. The buffer is
            // taken out rather than locked through the parallel section: a worker waiting in
            // it may pick up another caller's forward pass, which must not block.
            let mut xq = take(&self.xq);
            xq.quantize(&x[..n_in]);
            let xq_ref = &xq;
            let per_task = decode_rows_per_task(n_out, self.threads);
            self.pool.install(|| {
                out[..n_out].par_chunks_mut(per_task).enumerate().for_each(|(chunk, o)| {
                    let first = chunk * per_task;
                    let w = &bytes[first * rb..(first + o.len()) * rb];
                    qdot::dot_rows_q(isa, ty, w, rb, xq_ref, o);
                });
            });
            put(&self.xq, xq);
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
        // Prefill: each weight row is decoded to f32 once per task and used for every token,
        // so that the weights stream through the cache once per call. (The integer kernel
        // `qdot::dot_rows_tokens_q` computes the same; on AVX2/AVX-512 machines the f32 FMA
        // loop over decoded rows measured faster: 18-26 against 9-18 GMAC/s per core.)
        // Tokens go in tiles so that a tile's activations stay in the L2 cache while four
        // decoded weight rows are multiplied with each of them.
        let mut transposed = take(&self.transposed);
        let per_task = prefill_rows_per_task(n_out, self.threads);
        for t0 in (0..rows).step_by(PREFILL_TOKEN_TILE) {
            let tt = PREFILL_TOKEN_TILE.min(rows - t0);
            let xs = &x[t0 * n_in..(t0 + tt) * n_in];
            transposed.resize(n_out * tt, 0.0);
            self.pool.install(|| {
                transposed.par_chunks_mut(per_task * tt).enumerate().for_each(|(chunk, o)| {
                    with_scratch(4 * n_in, |scratch| {
                        let first = chunk * per_task;
                        let n = o.len() / tt;
                        kernel.dot_rows_tokens(
                            &bytes[first * rb..(first + n) * rb],
                            xs,
                            scratch,
                            o,
                        );
                    });
                });
            });
            transpose_into(&transposed[..n_out * tt], n_out, tt, &mut out[t0 * n_out..]);
        }
        put(&self.transposed, transposed);
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
        with_scratch(2 * half, |cs| {
            let (cos, sin) = cs.split_at_mut(half);
            for (t, &pos) in positions.iter().enumerate() {
                for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(&rope.inv_freq) {
                    // f64 angle: positions × frequencies lose precision in f32 at long contexts.
                    let angle = pos as f64 * f64::from(f);
                    (*c, *s) = (angle.cos() as f32, angle.sin() as f32);
                }
                for head in x[t * width..(t + 1) * width].chunks_exact_mut(head_dim) {
                    for (i, (&c, &s)) in cos.iter().zip(sin.iter()).enumerate() {
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
        });
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
        let capacity = cache.capacity;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let isa = self.isa;
        let shape = AttnShape { heads, kv_heads, head_dim, kv_width, q_width, scale };
        if rows == 1 {
            // Decode: one task per head, each reading its KV head's cache once.
            let group = heads / kv_heads;
            self.pool.install(|| {
                out[..q_width].par_chunks_mut(head_dim).enumerate().for_each(|(h, o)| {
                    let qh = &q[h * head_dim..(h + 1) * head_dim];
                    let n_ctx = start + 1;
                    with_scratch_reserve(n_ctx, capacity, |scores| {
                        attend(isa, qh, kc, vc, kv_width, (h / group) * head_dim, scale, scores, o);
                    });
                });
            });
            return Ok(());
        }
        // Prefill: one task per tile of query tokens; each reads every cached key and value of
        // a KV head once for all the tile's queries of that head group, instead of once per
        // query.
        self.pool.install(|| {
            out[..rows * q_width].par_chunks_mut(QUERY_TILE * q_width).enumerate().for_each(
                |(tile, o)| {
                    let t0 = tile * QUERY_TILE;
                    let nt = o.len() / q_width;
                    let q_tile = &q[t0 * q_width..(t0 + nt) * q_width];
                    let n_max = start + t0 + nt;
                    let group = heads / kv_heads;
                    with_scratch_reserve(
                        group * nt * n_max,
                        group * QUERY_TILE * capacity,
                        |scores| {
                            attend_tile(isa, &shape, q_tile, kc, vc, start + t0, scores, o);
                        },
                    );
                },
            );
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

/// Query tokens per prefill attention task.
const QUERY_TILE: usize = 16;

/// Head geometry of an attention call.
struct AttnShape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    kv_width: usize,
    q_width: usize,
    scale: f32,
}

thread_local! {
    /// Per-worker scratch floats (attention scores, decoded weight rows): grown once, then
    /// reused, so that a forward pass allocates nothing.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch. `f` must not start parallel work (a
/// stolen task on this thread would find the scratch borrowed).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch_reserve(len, len, f)
}

/// [`with_scratch`], growing the scratch to at least `reserve` floats when it grows at all (the
/// size a growing context will need, so that it grows once rather than at every position).
fn with_scratch_reserve<R>(len: usize, reserve: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with_borrow_mut(|v| {
        if v.len() < len {
            v.resize(len.max(reserve), 0.0);
        }
        f(&mut v[..len])
    })
}

/// Takes a reusable buffer out of its mutex (see `matmul`).
fn take<T: Default>(m: &Mutex<T>) -> T {
    std::mem::take(&mut *m.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Puts a reusable buffer back.
fn put<T>(m: &Mutex<T>, v: T) {
    *m.lock().unwrap_or_else(PoisonError::into_inner) = v;
}

/// `out[t * n_out + r] = transposed[r * rows + t]`.
fn transpose_into(transposed: &[f32], n_out: usize, rows: usize, out: &mut [f32]) {
    for (r, col) in transposed.chunks_exact(rows).enumerate().take(n_out) {
        for (t, &v) in col.iter().enumerate() {
            out[t * n_out + r] = v;
        }
    }
}

/// One query head over the `scores.len()` cached positions: `o = softmax(q·K^T · scale) · V`,
/// where the head's keys and values sit at `offset` in each `kv_width`-float row of `kc`/`vc`.
#[allow(clippy::too_many_arguments)]
fn attend(
    isa: Isa,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    kv_width: usize,
    offset: usize,
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: `attend_avx2` only requires AVX2 and FMA, which `Isa` found on this CPU.
        unsafe { attend_avx2(q, kc, vc, kv_width, offset, scale, scores, o) };
        return;
    }
    let _ = isa;
    attend_body(q, kc, vc, kv_width, offset, scale, scores, o);
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
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    attend_body(q, kc, vc, kv_width, offset, scale, scores, o);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_body(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    kv_width: usize,
    offset: usize,
    scale: f32,
    scores: &mut [f32],
    o: &mut [f32],
) {
    let head_dim = o.len();
    for (s, sc) in scores.iter_mut().enumerate() {
        *sc = dot_f32(q, &kc[s * kv_width + offset..][..head_dim]) * scale;
    }
    softmax(scores);
    o.fill(0.0);
    for (s, &w) in scores.iter().enumerate() {
        let vs = &vc[s * kv_width + offset..][..head_dim];
        for (ov, &vv) in o.iter_mut().zip(vs) {
            *ov += w * vv;
        }
    }
}

#[inline(always)]
fn softmax(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        sum += *sc;
    }
    for sc in scores.iter_mut() {
        *sc /= sum;
    }
}

/// Causal attention of a tile of query tokens (rows of `q`, the first at position `pos0`) over
/// the cache, writing the tile's rows of `o`. `scores` holds `group × tokens × (pos0 + tokens)`
/// floats.
#[allow(clippy::too_many_arguments)]
fn attend_tile(
    isa: Isa,
    shape: &AttnShape,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos0: usize,
    scores: &mut [f32],
    o: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: `attend_tile_avx2` only requires AVX2 and FMA, which `Isa` found on this CPU.
        unsafe { attend_tile_avx2(shape, q, kc, vc, pos0, scores, o) };
        return;
    }
    let _ = isa;
    attend_tile_body(shape, q, kc, vc, pos0, scores, o);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn attend_tile_avx2(
    shape: &AttnShape,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos0: usize,
    scores: &mut [f32],
    o: &mut [f32],
) {
    attend_tile_body(shape, q, kc, vc, pos0, scores, o);
}

#[inline(always)]
fn attend_tile_body(
    shape: &AttnShape,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos0: usize,
    scores: &mut [f32],
    o: &mut [f32],
) {
    let AttnShape { heads, kv_heads, head_dim: hd, kv_width, q_width, scale } = *shape;
    let group = heads / kv_heads;
    let nt = o.len() / q_width;
    let n_max = pos0 + nt;
    o.fill(0.0);
    for kvh in 0..kv_heads {
        // Row (t, g) of `scores` holds query token t, head kvh·group + g.
        for s in 0..n_max {
            let k = &kc[s * kv_width + kvh * hd..][..hd];
            // Token t sees positions 0..=pos0 + t.
            for t in s.saturating_sub(pos0)..nt {
                for g in 0..group {
                    let h = kvh * group + g;
                    let qv = &q[t * q_width + h * hd..][..hd];
                    scores[(t * group + g) * n_max + s] = dot_f32(qv, k) * scale;
                }
            }
        }
        for t in 0..nt {
            for g in 0..group {
                let row = &mut scores[(t * group + g) * n_max..][..pos0 + t + 1];
                softmax(row);
            }
        }
        for s in 0..n_max {
            let v = &vc[s * kv_width + kvh * hd..][..hd];
            for t in s.saturating_sub(pos0)..nt {
                for g in 0..group {
                    let h = kvh * group + g;
                    let w = scores[(t * group + g) * n_max + s];
                    let ov = &mut o[t * q_width + h * hd..][..hd];
                    for (a, &b) in ov.iter_mut().zip(v) {
                        *a += w * b;
                    }
                }
            }
        }
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}
