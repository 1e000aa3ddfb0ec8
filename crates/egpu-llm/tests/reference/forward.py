#!/usr/bin/env python3
"""NumPy reference forward for llama-architecture GGUF models (compute-ml.md, appendix A),
extended to several prompts and to saving the logits of every step.

Usage: forward.py GGUF OUT_DIR N_GEN PROMPT [PROMPT ...]

Weights are dequantized with the PyPI `gguf` package and the whole forward runs in float32
NumPy (RMSNorm, adjacent-pair RoPE, GQA attention with a KV cache, SwiGLU, tied output).
Prompts are encoded with a hand-written GPT-2 byte-level BPE that is exact for ASCII prompts
without digits, splitting <|im_start|>/<|im_end|> first.

Writes, for prompt i: OUT_DIR/<i>.ids (prompt ids, then a line with the greedy ids) and
OUT_DIR/<i>.logits (float32 little-endian, one row of vocab logits per step: the logits after
the prompt, then after each generated token that was fed back).
"""
import os, re, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

path, out_dir, n_gen, prompts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
r = GGUFReader(path)
big = ('tokenizer.ggml.tokens', 'tokenizer.ggml.merges', 'tokenizer.ggml.token_type')
kv = {k: f.contents() for k, f in r.fields.items() if k not in big}
assert kv['general.architecture'] == 'llama', kv['general.architecture']
toks, merges = r.fields['tokenizer.ggml.tokens'].contents(), r.fields['tokenizer.ggml.merges'].contents()
W = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
     for t in r.tensors}
L, D, H, KV = kv['llama.block_count'], kv['llama.embedding_length'], kv['llama.attention.head_count'], kv['llama.attention.head_count_kv']
HD, eps, theta = D // H, kv['llama.attention.layer_norm_rms_epsilon'], kv['llama.rope.freq_base']
eos = kv['tokenizer.ggml.eos_token_id']

bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256)); cs = bs[:]; n = 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
b2u = {b: chr(c) for b, c in zip(bs, cs)}; tok2id = {t: i for i, t in enumerate(toks)}
rank = {tuple(m.split(' ')): i for i, m in enumerate(merges)}

def bpe(w):
    p = [b2u[b] for b in w.encode()]
    while len(p) > 1:
        rnk, i = min((rank.get((p[i], p[i + 1]), 1e18), i) for i in range(len(p) - 1))
        if rnk == 1e18: break
        p[i:i + 2] = [p[i] + p[i + 1]]
    return [tok2id[x] for x in p]

def encode(text):
    assert text.isascii() and not any(c.isdigit() for c in text), "reference BPE: ASCII without digits only"
    out = []
    for piece in re.split(r"(<\|im_start\|>|<\|im_end\|>)", text):
        if piece in ('<|im_start|>', '<|im_end|>'): out.append(tok2id[piece]); continue
        for m in re.finditer(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+", piece):
            out += bpe(m.group(0))
    return out

def rms(x, w): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
inv = 1.0 / theta ** (np.arange(0, HD, 2) / HD)

def rope(x, pos):  # GGUF 'llama' arch: adjacent pairs (2i, 2i+1)
    a = np.outer(pos, inv)[:, None, :]; c, s = np.cos(a), np.sin(a); o = np.empty_like(x)
    o[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s; o[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
    return o

out_w = W.get('output.weight', W['token_embd.weight'])  # tied

def forward(ids, start, kc, vc):
    x = W['token_embd.weight'][ids]; T = len(ids); pos = np.arange(start, start + T)
    for l in range(L):
        p = f'blk.{l}.'; h = rms(x, W[p + 'attn_norm.weight'])
        q = rope((h @ W[p + 'attn_q.weight'].T).reshape(T, H, HD), pos)
        k = rope((h @ W[p + 'attn_k.weight'].T).reshape(T, KV, HD), pos)
        v = (h @ W[p + 'attn_v.weight'].T).reshape(T, KV, HD)
        kc[l] = np.concatenate([kc[l], k]); vc[l] = np.concatenate([vc[l], v])
        K, V = np.repeat(kc[l], H // KV, 1), np.repeat(vc[l], H // KV, 1)
        s = np.einsum('thd,shd->hts', q, K) / np.sqrt(HD)
        s = np.where((np.arange(K.shape[0])[None] > pos[:, None])[None], -np.inf, s)
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        x = x + np.einsum('hts,shd->thd', s, V).reshape(T, D) @ W[p + 'attn_output.weight'].T
        h = rms(x, W[p + 'ffn_norm.weight']); g = h @ W[p + 'ffn_gate.weight'].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ W[p + 'ffn_up.weight'].T)) @ W[p + 'ffn_down.weight'].T
    return rms(x[-1], W['output_norm.weight']) @ out_w.T

os.makedirs(out_dir, exist_ok=True)
for i, prompt in enumerate(prompts):
    kc = [np.zeros((0, KV, HD), np.float32)] * L; vc = [np.zeros((0, KV, HD), np.float32)] * L
    ids = encode(prompt)
    logits = forward(np.array(ids), 0, kc, vc); rows, gen = [logits], []
    for step in range(n_gen):
        t = int(np.argmax(logits)); gen.append(t)
        if t == eos or step == n_gen - 1: break
        logits = forward(np.array([t]), len(ids) + step, kc, vc); rows.append(logits)
    np.array(rows, dtype='<f4').tofile(os.path.join(out_dir, f'{i}.logits'))
    with open(os.path.join(out_dir, f'{i}.ids'), 'w') as f:
        f.write(' '.join(map(str, ids)) + '\n' + ' '.join(map(str, gen)) + '\n')
