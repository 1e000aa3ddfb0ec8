//! The op-level interface the model is written against. The CPU backend ([`crate::cpu`]) is the
//! reference; GPU backends implement the same ops and are compared with it.
//!
//! Activations are row-major `rows × width` f32 buffers owned by the backend. Weights are
//! uploaded once, in their packed GGUF form, so a backend can keep them quantized.

use std::sync::Arc;

use crate::gguf::{GgufFile, TensorInfo};

/// Errors from a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A weight's element type has no kernel in this backend.
    #[error(
        "{backend} backend: tensor {tensor:?} has type {ty}, which it cannot multiply; {hint}"
    )]
    UnsupportedWeight {
        /// Backend name.
        backend: String,
        /// Tensor name.
        tensor: String,
        /// The element type found.
        ty: crate::quant::GgmlType,
        /// What to try.
        hint: String,
    },
    /// A weight or buffer does not have the shape an op needs.
    #[error("{op}: {problem}")]
    Shape {
        /// The op that failed.
        op: &'static str,
        /// What did not fit.
        problem: String,
    },
    /// The KV cache is full.
    #[error("context full: position {pos} + {rows} tokens exceeds the KV cache of {capacity} positions (use a larger --ctx)")]
    ContextFull {
        /// First position being written.
        pos: usize,
        /// Tokens being written.
        rows: usize,
        /// Positions in the cache.
        capacity: usize,
    },
    /// The CPU backend could not start its worker threads.
    #[error("starting {threads} CPU worker threads")]
    Threads {
        /// Threads asked for.
        threads: usize,
        /// rayon's error.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// The GPU device failed (GPU backends); the runtime's typed error is the source.
    #[error("{operation} on the GPU")]
    Device {
        /// What the backend was doing.
        operation: &'static str,
        /// The runtime's error.
        #[source]
        source: egpu::Error,
    },
}

/// How RoPE pairs dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)`: GGUF `llama` (its converter permutes Q/K to this layout).
    Normal,
    /// Split halves `(i, i + n/2)`: GPT-NeoX, Qwen2, Qwen3.
    Neox,
}

/// Rotary embedding tables, computed once from the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Pairing style.
    pub style: RopeStyle,
    /// Rotated dimensions per head (the rest pass through).
    pub n_rot: usize,
    /// Inverse frequency per pair, with scaling and per-dimension factors applied.
    pub inv_freq: Vec<f32>,
}

/// The op set a model runs on.
pub trait Backend: Send + Sync {
    /// An activation buffer.
    type Buffer: Send + Sync;
    /// A weight matrix (`rows × cols`, rows of `cols` elements) in the backend's chosen form.
    type Weight: Send + Sync;
    /// Per-layer key/value storage.
    type KvCache: Send;

    /// Runs `f`, a sequence of calls to this backend's ops (one forward pass), in the backend's
    /// execution context. The CPU backend runs it on one of its worker threads, so that each
    /// parallel op inside hands work to the other workers directly instead of waking the
    /// caller's thread after every op.
    fn scope<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }

    /// Human-readable name, e.g. `cpu (2 threads)`.
    fn name(&self) -> String;

    /// Makes a matrix tensor available; `info.dims[0]` is the row length.
    fn upload_weight(
        &self,
        file: &Arc<GgufFile>,
        info: &TensorInfo,
    ) -> Result<Self::Weight, BackendError>;
    /// A buffer holding `data` (norm weights, biases).
    fn upload(&self, data: &[f32]) -> Result<Self::Buffer, BackendError>;
    /// A zeroed buffer of `len` floats.
    fn alloc(&self, len: usize) -> Result<Self::Buffer, BackendError>;
    /// Copies `buf[..out.len()]` to the host.
    fn read(&self, buf: &Self::Buffer, out: &mut [f32]) -> Result<(), BackendError>;
    /// A cache for `layers` layers of `capacity` positions of `kv_width` floats each for K and V.
    fn alloc_kv(
        &self,
        layers: usize,
        capacity: usize,
        kv_width: usize,
    ) -> Result<Self::KvCache, BackendError>;

    /// `out[t] = table[ids[t]]` (dequantized).
    fn embed(
        &self,
        table: &Self::Weight,
        ids: &[u32],
        out: &mut Self::Buffer,
    ) -> Result<(), BackendError>;
    /// Row-wise RMS norm of `rows × width` `x`, times `weight` (length `width`).
    fn rms_norm(
        &self,
        x: &Self::Buffer,
        weight: &Self::Buffer,
        eps: f32,
        rows: usize,
        width: usize,
        out: &mut Self::Buffer,
    ) -> Result<(), BackendError>;
    /// In-place row-wise RMS norm (Qwen3's per-head q/k norm: `rows` = tokens × heads).
    fn rms_norm_in_place(
        &self,
        x: &mut Self::Buffer,
        weight: &Self::Buffer,
        eps: f32,
        rows: usize,
        width: usize,
    ) -> Result<(), BackendError>;
    /// `out[t] = W · x[t]` for `rows` rows; `x` is `rows × W.cols`, `out` `rows × W.rows`.
    fn matmul(
        &self,
        w: &Self::Weight,
        x: &Self::Buffer,
        rows: usize,
        out: &mut Self::Buffer,
    ) -> Result<(), BackendError>;
    /// Adds `bias` (length `width`) to each of `rows` rows.
    fn add_bias(
        &self,
        x: &mut Self::Buffer,
        bias: &Self::Buffer,
        rows: usize,
        width: usize,
    ) -> Result<(), BackendError>;
    /// Rotates each of `heads` heads of `head_dim` in each row; row `t` is at `positions[t]`.
    fn rope(
        &self,
        x: &mut Self::Buffer,
        heads: usize,
        head_dim: usize,
        positions: &[usize],
        rope: &Rope,
    ) -> Result<(), BackendError>;
    /// Causal grouped-query attention for `rows` new tokens at positions `start..start + rows`:
    /// stores `k`, `v` (`rows × kv_heads·head_dim`) into the cache of `layer`, then attends
    /// every query head (`rows × heads·head_dim`) over positions `0..=its own`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        cache: &mut Self::KvCache,
        layer: usize,
        q: &Self::Buffer,
        k: &Self::Buffer,
        v: &Self::Buffer,
        start: usize,
        rows: usize,
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        out: &mut Self::Buffer,
    ) -> Result<(), BackendError>;
    /// `gate = silu(gate) * up`, elementwise over `len` floats.
    fn swiglu(
        &self,
        gate: &mut Self::Buffer,
        up: &Self::Buffer,
        len: usize,
    ) -> Result<(), BackendError>;
    /// `x += y`, elementwise over `len` floats.
    fn add(&self, x: &mut Self::Buffer, y: &Self::Buffer, len: usize) -> Result<(), BackendError>;
    /// Copies row `row` (of `width` floats) of `src` to row 0 of `dst`.
    fn copy_row(
        &self,
        src: &Self::Buffer,
        row: usize,
        width: usize,
        dst: &mut Self::Buffer,
    ) -> Result<(), BackendError>;
    /// Rows and columns of a weight.
    fn weight_shape(&self, w: &Self::Weight) -> (usize, usize);
}
