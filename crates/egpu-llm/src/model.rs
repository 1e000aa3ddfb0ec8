//! The llama-family transformer (Llama 2/3, Qwen2, Qwen3, SmolLM), written once against
//! [`Backend`]: RMSNorm, RoPE (normal or NeoX pairing, linear scaling, per-dimension frequency
//! factors), grouped-query attention with a KV cache, SwiGLU, tied embeddings, Qwen2 q/k/v biases
//! and Qwen3 q/k norms.

use std::sync::Arc;

use crate::backend::{Backend, BackendError, Rope, RopeStyle};
use crate::gguf::{GgufError, GgufFile};
use crate::quant::{dequantize_to_vec, GgmlType};

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Metadata or tensor lookup failed.
    #[error("loading the model: {0}")]
    Gguf(#[from] GgufError),
    /// The architecture is not in the llama family egpu runs.
    #[error(
        "general.architecture is {0:?}: egpu runs llama, qwen2 and qwen3 (SmolLM, Llama 2/3 and Mistral \
         files use \"llama\")"
    )]
    UnsupportedArchitecture(String),
    /// A metadata value is out of range or inconsistent.
    #[error("model metadata: {0}")]
    BadConfig(String),
    /// A tensor has an unexpected shape or type.
    #[error("tensor {name:?}: {problem}")]
    BadTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The backend failed.
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
}

/// Architectures this model code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `llama` (also SmolLM, Mistral dense).
    Llama,
    /// `qwen2`: q/k/v biases, NeoX RoPE.
    Qwen2,
    /// `qwen3`: per-head q/k RMS norms, NeoX RoPE.
    Qwen3,
}

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture.
    pub arch: Arch,
    /// `{arch}` prefix of the metadata keys.
    pub arch_name: String,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Embedding width.
    pub dim: usize,
    /// Feed-forward hidden width.
    pub ffn_dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Training context length.
    pub context_length: usize,
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: usize,
    /// RoPE tables.
    pub rope: Rope,
}

impl ModelConfig {
    /// Reads the configuration from `file`'s metadata (and `rope_freqs.weight`, if present).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let arch_name = file.get_str("general.architecture")?.to_owned();
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "qwen3" => Arch::Qwen3,
            other => return Err(ModelError::UnsupportedArchitecture(other.into())),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let usize_of = |k: &str| -> Result<usize, ModelError> {
            let v = file.get_u64(&key(k))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0 && v < (1 << 24))
                .ok_or_else(|| ModelError::BadConfig(format!("{} = {v} is out of range", key(k))))
        };
        let n_layers = usize_of("block_count")?;
        let dim = usize_of("embedding_length")?;
        let ffn_dim = usize_of("feed_forward_length")?;
        let n_heads = usize_of("attention.head_count")?;
        let n_kv_heads = if file.get(&key("attention.head_count_kv")).is_some() {
            usize_of("attention.head_count_kv")?
        } else {
            n_heads
        };
        if n_heads % n_kv_heads != 0 {
            return Err(ModelError::BadConfig(format!(
                "{n_heads} query heads are not a multiple of {n_kv_heads} KV heads"
            )));
        }
        let head_dim = if file.get(&key("attention.key_length")).is_some() {
            usize_of("attention.key_length")?
        } else {
            if dim % n_heads != 0 {
                return Err(ModelError::BadConfig(format!(
                    "embedding {dim} is not divisible by {n_heads} heads"
                )));
            }
            dim / n_heads
        };
        if file.get(&key("attention.value_length")).is_some()
            && usize_of("attention.value_length")? != head_dim
        {
            return Err(ModelError::BadConfig(
                "key_length != value_length is not supported".into(),
            ));
        }
        let rms_eps = file.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32;
        let context_length = usize_of("context_length")?;
        let vocab_size = match file.tensor("token_embd.weight") {
            Some(t) => t.n_rows() as usize,
            None => {
                return Err(GgufError::MissingTensor { name: "token_embd.weight".into() }.into())
            }
        };

        let n_rot = if file.get(&key("rope.dimension_count")).is_some() {
            usize_of("rope.dimension_count")?
        } else {
            head_dim
        };
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::BadConfig(format!(
                "rope.dimension_count {n_rot} for head width {head_dim}"
            )));
        }
        let theta = match file.get(&key("rope.freq_base")) {
            Some(v) => {
                v.as_f64().ok_or_else(|| ModelError::BadConfig(format!("rope.freq_base is {v}")))?
            }
            None => 10_000.0,
        };
        let scaling = file.get_str_opt(&key("rope.scaling.type"))?.unwrap_or("none");
        let factor = file.get_f64_opt(&key("rope.scaling.factor"))?.unwrap_or(1.0);
        let freq_scale = match scaling {
            "none" => 1.0,
            "linear" if factor > 0.0 => 1.0 / factor,
            other => {
                return Err(ModelError::BadConfig(format!(
                    "rope.scaling.type {other:?} (factor {factor}) is not supported; egpu implements none and linear \
                     (and Llama 3 frequency factors via rope_freqs.weight)"
                )))
            }
        };
        let factors = match file.tensor("rope_freqs.weight") {
            Some(info) => {
                let data = file.data_of(info)?;
                let f = dequantize_to_vec(info.ggml_type, data, info.n_elements() as usize)
                    .map_err(|e| ModelError::BadTensor {
                        name: info.name.clone(),
                        problem: e.to_string(),
                    })?;
                if f.len() != n_rot / 2 {
                    return Err(ModelError::BadTensor {
                        name: info.name.clone(),
                        problem: format!("{} factors for {} rotated pairs", f.len(), n_rot / 2),
                    });
                }
                Some(f)
            }
            None => None,
        };
        let inv_freq = (0..n_rot / 2)
            .map(|i| {
                let base = theta.powf(-(2.0 * i as f64) / n_rot as f64) * freq_scale;
                let f = factors.as_ref().map_or(1.0, |f| f64::from(f[i]));
                (base / f) as f32
            })
            .collect();
        let style = match arch {
            Arch::Llama => RopeStyle::Normal,
            Arch::Qwen2 | Arch::Qwen3 => RopeStyle::Neox,
        };
        Ok(Self {
            arch,
            arch_name,
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_eps,
            context_length,
            vocab_size,
            rope: Rope { style, n_rot, inv_freq },
        })
    }
}

struct Layer<B: Backend> {
    attn_norm: B::Buffer,
    wq: B::Weight,
    wk: B::Weight,
    wv: B::Weight,
    wo: B::Weight,
    q_bias: Option<B::Buffer>,
    k_bias: Option<B::Buffer>,
    v_bias: Option<B::Buffer>,
    q_norm: Option<B::Buffer>,
    k_norm: Option<B::Buffer>,
    ffn_norm: B::Buffer,
    w_gate: B::Weight,
    w_up: B::Weight,
    w_down: B::Weight,
}

/// A loaded model: configuration plus weights on a backend.
pub struct Model<B: Backend> {
    /// Hyper-parameters.
    pub config: ModelConfig,
    backend: B,
    tok_embd: B::Weight,
    output: Option<B::Weight>,
    output_norm: B::Buffer,
    layers: Vec<Layer<B>>,
}

impl<B: Backend> std::fmt::Debug for Model<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl<B: Backend> Model<B> {
    /// Loads every weight onto `backend`. `progress(done_bytes, total_bytes)` is called after
    /// each tensor.
    pub fn load(
        file: &Arc<GgufFile>,
        backend: B,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, ModelError> {
        let config = ModelConfig::from_gguf(file)?;
        let total: u64 = file.tensors.iter().map(|t| t.size).sum();
        let mut done = 0u64;
        let c = &config;
        let mut weight = |name: &str, cols: usize, rows: usize| -> Result<B::Weight, ModelError> {
            let info =
                file.tensor(name).ok_or_else(|| GgufError::MissingTensor { name: name.into() })?;
            if info.dims.len() != 2
                || info.dims[0] as usize != cols
                || info.dims[1] as usize != rows
            {
                return Err(ModelError::BadTensor {
                    name: name.into(),
                    problem: format!("shape {:?}, expected [{cols}, {rows}]", info.dims),
                });
            }
            let w = backend.upload_weight(file, info)?;
            done += info.size;
            progress(done, total);
            Ok(w)
        };
        let tok_embd = weight("token_embd.weight", c.dim, c.vocab_size)?;
        let output = match file.tensor("output.weight") {
            Some(_) => Some(weight("output.weight", c.dim, c.vocab_size)?),
            None => None, // tied to the embedding table
        };
        let q_width = c.n_heads * c.head_dim;
        let kv_width = c.n_kv_heads * c.head_dim;
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let p = |n: &str| format!("blk.{l}.{n}");
            layers.push(Layer {
                attn_norm: vector(file, &backend, &p("attn_norm.weight"), c.dim)?,
                wq: weight(&p("attn_q.weight"), c.dim, q_width)?,
                wk: weight(&p("attn_k.weight"), c.dim, kv_width)?,
                wv: weight(&p("attn_v.weight"), c.dim, kv_width)?,
                wo: weight(&p("attn_output.weight"), q_width, c.dim)?,
                q_bias: optional_vector(file, &backend, &p("attn_q.bias"), q_width)?,
                k_bias: optional_vector(file, &backend, &p("attn_k.bias"), kv_width)?,
                v_bias: optional_vector(file, &backend, &p("attn_v.bias"), kv_width)?,
                q_norm: optional_vector(file, &backend, &p("attn_q_norm.weight"), c.head_dim)?,
                k_norm: optional_vector(file, &backend, &p("attn_k_norm.weight"), c.head_dim)?,
                ffn_norm: vector(file, &backend, &p("ffn_norm.weight"), c.dim)?,
                w_gate: weight(&p("ffn_gate.weight"), c.dim, c.ffn_dim)?,
                w_up: weight(&p("ffn_up.weight"), c.dim, c.ffn_dim)?,
                w_down: weight(&p("ffn_down.weight"), c.ffn_dim, c.dim)?,
            });
        }
        let output_norm = vector(file, &backend, "output_norm.weight", c.dim)?;
        progress(total, total);
        Ok(Self { config, backend, tok_embd, output, output_norm, layers })
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// A fresh session (empty KV cache) holding up to `capacity` positions.
    pub fn session(&self, capacity: usize) -> Result<Session<B>, ModelError> {
        let c = &self.config;
        let kv = self.backend.alloc_kv(c.n_layers, capacity, c.n_kv_heads * c.head_dim)?;
        Ok(Session { kv, pos: 0, capacity, act: None })
    }

    /// Runs `ids` at the session's next positions and returns the logits of the last one.
    /// Prompts go through in chunks of `chunk` tokens (the prefill path); decoding passes one
    /// token at a time.
    pub fn forward(
        &self,
        session: &mut Session<B>,
        ids: &[u32],
        chunk: usize,
    ) -> Result<Vec<f32>, ModelError> {
        self.forward_logits(session, ids, chunk).map(<[f32]>::to_vec)
    }

    /// [`Model::forward`] returning the logits in the session's own buffer: once the session's
    /// buffers have grown to the largest chunk, a call allocates nothing.
    pub fn forward_logits<'s>(
        &self,
        session: &'s mut Session<B>,
        ids: &[u32],
        chunk: usize,
    ) -> Result<&'s [f32], ModelError> {
        if ids.is_empty() {
            return Err(ModelError::BadConfig("forward called with no tokens".into()));
        }
        let rows = ids.len().min(chunk.max(1));
        let mut act = match session.act.take() {
            Some(a) if a.rows >= rows => a,
            _ => self.activations(rows)?,
        };
        let result = self.backend.scope(|| {
            for part in ids.chunks(chunk.max(1)) {
                self.forward_chunk(
                    &mut session.kv,
                    &mut session.pos,
                    session.capacity,
                    &mut act,
                    part,
                )?;
            }
            Ok::<(), ModelError>(())
        });
        let act = session.act.insert(act);
        result?;
        Ok(&act.logits)
    }

    /// Activation buffers for chunks of up to `rows` tokens.
    fn activations(&self, rows: usize) -> Result<Activations<B>, ModelError> {
        let c = &self.config;
        let be = &self.backend;
        let (q_width, kv_width) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        Ok(Activations {
            rows,
            x: be.alloc(rows * c.dim)?,
            h: be.alloc(rows * c.dim)?,
            q: be.alloc(rows * q_width)?,
            k: be.alloc(rows * kv_width)?,
            v: be.alloc(rows * kv_width)?,
            att: be.alloc(rows * q_width)?,
            gate: be.alloc(rows * c.ffn_dim)?,
            up: be.alloc(rows * c.ffn_dim)?,
            last: be.alloc(c.dim)?,
            normed: be.alloc(c.dim)?,
            logits_buf: be.alloc(c.vocab_size)?,
            logits: vec![0.0; c.vocab_size],
            positions: Vec::with_capacity(rows),
        })
    }

    fn forward_chunk(
        &self,
        kv: &mut B::KvCache,
        pos: &mut usize,
        capacity: usize,
        a: &mut Activations<B>,
        ids: &[u32],
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let be = &self.backend;
        let t = ids.len();
        if *pos + t > capacity {
            return Err(BackendError::ContextFull { pos: *pos, rows: t, capacity }.into());
        }
        let (q_width, kv_width) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        a.positions.clear();
        a.positions.extend(*pos..*pos + t);
        be.embed(&self.tok_embd, ids, &mut a.x)?;
        for (l, layer) in self.layers.iter().enumerate() {
            be.rms_norm(&a.x, &layer.attn_norm, c.rms_eps, t, c.dim, &mut a.h)?;
            be.matmul(&layer.wq, &a.h, t, &mut a.q)?;
            be.matmul(&layer.wk, &a.h, t, &mut a.k)?;
            be.matmul(&layer.wv, &a.h, t, &mut a.v)?;
            if let Some(b) = &layer.q_bias {
                be.add_bias(&mut a.q, b, t, q_width)?;
            }
            if let Some(b) = &layer.k_bias {
                be.add_bias(&mut a.k, b, t, kv_width)?;
            }
            if let Some(b) = &layer.v_bias {
                be.add_bias(&mut a.v, b, t, kv_width)?;
            }
            if let Some(n) = &layer.q_norm {
                be.rms_norm_in_place(&mut a.q, n, c.rms_eps, t * c.n_heads, c.head_dim)?;
            }
            if let Some(n) = &layer.k_norm {
                be.rms_norm_in_place(&mut a.k, n, c.rms_eps, t * c.n_kv_heads, c.head_dim)?;
            }
            be.rope(&mut a.q, c.n_heads, c.head_dim, &a.positions, &c.rope)?;
            be.rope(&mut a.k, c.n_kv_heads, c.head_dim, &a.positions, &c.rope)?;
            be.attention(
                kv,
                l,
                &a.q,
                &a.k,
                &a.v,
                *pos,
                t,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                &mut a.att,
            )?;
            be.matmul(&layer.wo, &a.att, t, &mut a.h)?;
            be.add(&mut a.x, &a.h, t * c.dim)?;

            be.rms_norm(&a.x, &layer.ffn_norm, c.rms_eps, t, c.dim, &mut a.h)?;
            be.matmul(&layer.w_gate, &a.h, t, &mut a.gate)?;
            be.matmul(&layer.w_up, &a.h, t, &mut a.up)?;
            be.swiglu(&mut a.gate, &a.up, t * c.ffn_dim)?;
            be.matmul(&layer.w_down, &a.gate, t, &mut a.h)?;
            be.add(&mut a.x, &a.h, t * c.dim)?;
        }
        *pos += t;
        // Only the last position's logits are needed.
        be.copy_row(&a.x, t - 1, c.dim, &mut a.last)?;
        be.rms_norm(&a.last, &self.output_norm, c.rms_eps, 1, c.dim, &mut a.normed)?;
        let out_w = self.output.as_ref().unwrap_or(&self.tok_embd);
        be.matmul(out_w, &a.normed, 1, &mut a.logits_buf)?;
        be.read(&a.logits_buf, &mut a.logits)?;
        Ok(())
    }
}

/// The activation buffers of a session, sized for chunks of up to `rows` tokens.
struct Activations<B: Backend> {
    rows: usize,
    x: B::Buffer,
    h: B::Buffer,
    q: B::Buffer,
    k: B::Buffer,
    v: B::Buffer,
    att: B::Buffer,
    gate: B::Buffer,
    up: B::Buffer,
    last: B::Buffer,
    normed: B::Buffer,
    logits_buf: B::Buffer,
    logits: Vec<f32>,
    positions: Vec<usize>,
}

/// A generation in progress: the KV cache, the next position, and every activation buffer of
/// the forward pass (made on the first call, then reused).
pub struct Session<B: Backend> {
    kv: B::KvCache,
    pos: usize,
    capacity: usize,
    act: Option<Activations<B>>,
}

impl<B: Backend> Session<B> {
    /// Positions used so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Positions the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position from `pos` on, so that a conversation can resume from a shared
    /// prefix (the cache rows there are overwritten by the next forward).
    pub fn truncate(&mut self, pos: usize) {
        self.pos = self.pos.min(pos);
    }
}

fn vector<B: Backend>(
    file: &GgufFile,
    be: &B,
    name: &str,
    len: usize,
) -> Result<B::Buffer, ModelError> {
    let (info, data) = file.tensor_data(name)?;
    if info.n_elements() as usize != len {
        return Err(ModelError::BadTensor {
            name: name.into(),
            problem: format!("{} elements, expected {len}", info.n_elements()),
        });
    }
    if !matches!(info.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return Err(ModelError::BadTensor {
            name: name.into(),
            problem: format!("type {} for a norm/bias vector", info.ggml_type),
        });
    }
    let values = dequantize_to_vec(info.ggml_type, data, len)
        .map_err(|e| ModelError::BadTensor { name: name.into(), problem: e.to_string() })?;
    Ok(be.upload(&values)?)
}

fn optional_vector<B: Backend>(
    file: &GgufFile,
    be: &B,
    name: &str,
    len: usize,
) -> Result<Option<B::Buffer>, ModelError> {
    if file.tensor(name).is_none() {
        return Ok(None);
    }
    vector(file, be, name, len).map(Some)
}
