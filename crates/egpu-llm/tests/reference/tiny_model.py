#!/usr/bin/env python3
"""Writes a tiny random llama-family model as GGUF (PyPI `gguf` writer) and its logits from an
independent NumPy forward, to check the architecture variants that no small real model in PyPI
covers: qwen2 (q/k/v biases, NeoX RoPE, untied output), qwen3 (per-head q/k RMS norm, head
width != embedding/heads) and llama with partial rotation, linear RoPE scaling and per-pair
frequency factors (rope_freqs.weight, as Llama 3.1 files carry).

Usage: tiny_model.py OUT_DIR ARCH IDS...
  OUT_DIR/tiny.gguf      the model
  OUT_DIR/logits.f32     little-endian f32, one row of vocabulary logits per input position

RoPE facts used: GGUF `llama` pairs dimensions (2i, 2i+1); `qwen2`/`qwen3` pair (i, i + n_rot/2)
(llama.cpp's LLAMA_ROPE_TYPE_NEOX); only the first n_rot dimensions of a head rotate;
theta_i = pos * base^(-2i/n_rot) * freq_scale / factor_i.
"""
import os, sys
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize, dequantize

out, arch, ids = sys.argv[1], sys.argv[2], [int(v) for v in sys.argv[3:]]
rng = np.random.default_rng({"llama": 1, "qwen2": 2, "qwen3": 3}[arch])
V, D, F, L, H, KV = 96, 64, 96, 2, 4, 2
HD = 32 if arch == "qwen3" else D // H
NROT = HD // 2 if arch == "llama" else HD
theta, eps = 10000.0, 1e-6
scale_factor = 2.0 if arch == "llama" else None
neox = arch != "llama"

def mat(rows, cols, s=0.2): return (rng.standard_normal((rows, cols)) * s).astype(np.float32)
def vec(n, base=1.0, s=0.1): return (base + rng.standard_normal(n) * s).astype(np.float32)

w = gguf.GGUFWriter(os.path.join(out, "tiny.gguf"), arch=arch)
for key, val in [("block_count", L), ("context_length", 128), ("embedding_length", D), ("feed_forward_length", F),
                 ("attention.head_count", H), ("attention.head_count_kv", KV), ("rope.dimension_count", NROT)]:
    w.add_uint32(f"{arch}.{key}", val)
if arch == "qwen3":
    w.add_uint32(f"{arch}.attention.key_length", HD); w.add_uint32(f"{arch}.attention.value_length", HD)
w.add_float32(f"{arch}.rope.freq_base", theta)
w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", eps)
if scale_factor:
    w.add_string(f"{arch}.rope.scaling.type", "linear"); w.add_float32(f"{arch}.rope.scaling.factor", scale_factor)

W = {}
def add(name, arr, qtype=None):
    # Quantized tensors: the reference uses exactly the values the file holds.
    if qtype is not None:
        raw = quantize(arr, qtype); w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        arr = dequantize(raw, qtype).astype(np.float32)
    else:
        w.add_tensor(name, arr)
    W[name] = arr

add("token_embd.weight", mat(V, D, 1.0), T.Q8_0)
for l in range(L):
    p = f"blk.{l}."
    add(p + "attn_norm.weight", vec(D)); add(p + "ffn_norm.weight", vec(D))
    add(p + "attn_q.weight", mat(H * HD, D), T.Q8_0); add(p + "attn_k.weight", mat(KV * HD, D))
    add(p + "attn_v.weight", mat(KV * HD, D)); add(p + "attn_output.weight", mat(D, H * HD), T.Q4_0)
    add(p + "ffn_gate.weight", mat(F, D)); add(p + "ffn_up.weight", mat(F, D), T.Q5_1)
    add(p + "ffn_down.weight", mat(D, F, 0.1))
    if arch == "qwen2":
        add(p + "attn_q.bias", vec(H * HD, 0.0, 0.5)); add(p + "attn_k.bias", vec(KV * HD, 0.0, 0.5))
        add(p + "attn_v.bias", vec(KV * HD, 0.0, 0.5))
    if arch == "qwen3":
        add(p + "attn_q_norm.weight", vec(HD)); add(p + "attn_k_norm.weight", vec(HD))
add("output_norm.weight", vec(D))
if arch == "qwen2":
    add("output.weight", mat(V, D))
if arch == "llama":
    add("rope_freqs.weight", (1.0 + rng.random(NROT // 2) * 3.0).astype(np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

def rms(x, g): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g
inv = theta ** (-np.arange(0, NROT, 2) / NROT)
if scale_factor: inv = inv / scale_factor
if "rope_freqs.weight" in W: inv = inv / W["rope_freqs.weight"]

def rope(x, pos):
    a = np.outer(pos, inv)[:, None, :]; c, s = np.cos(a), np.sin(a); o = x.copy()
    if neox: i0, i1 = np.arange(NROT // 2), np.arange(NROT // 2) + NROT // 2
    else: i0, i1 = np.arange(0, NROT, 2), np.arange(1, NROT, 2)
    o[..., i0] = x[..., i0] * c - x[..., i1] * s; o[..., i1] = x[..., i0] * s + x[..., i1] * c
    return o

n = len(ids); pos = np.arange(n)
x = W["token_embd.weight"][ids]
for l in range(L):
    p = f"blk.{l}."; h = rms(x, W[p + "attn_norm.weight"])
    q, k, v = (h @ W[p + f"attn_{t}.weight"].T + W.get(p + f"attn_{t}.bias", 0) for t in "qkv")
    q, k, v = q.reshape(n, H, HD), k.reshape(n, KV, HD), v.reshape(n, KV, HD)
    if arch == "qwen3":
        q = rms(q, W[p + "attn_q_norm.weight"]); k = rms(k, W[p + "attn_k_norm.weight"])
    q, k = rope(q, pos), rope(k, pos)
    K, Vv = np.repeat(k, H // KV, 1), np.repeat(v, H // KV, 1)
    s = np.einsum("thd,shd->hts", q, K) / np.sqrt(HD)
    s = np.where((pos[None, :] > pos[:, None])[None], -np.inf, s)
    s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
    x = x + np.einsum("hts,shd->thd", s, Vv).reshape(n, H * HD) @ W[p + "attn_output.weight"].T
    h = rms(x, W[p + "ffn_norm.weight"]); g = h @ W[p + "ffn_gate.weight"].T
    x = x + ((g / (1 + np.exp(-g))) * (h @ W[p + "ffn_up.weight"].T)) @ W[p + "ffn_down.weight"].T
logits = rms(x, W["output_norm.weight"]) @ W.get("output.weight", W["token_embd.weight"]).T
logits.astype("<f4").tofile(os.path.join(out, "logits.f32"))
