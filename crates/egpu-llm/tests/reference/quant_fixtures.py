#!/usr/bin/env python3
"""Writes a GGUF file with one tensor per quant type plus metadata of every value type, using the
PyPI `gguf` package's writer, and the values that `gguf.quants.dequantize` decodes from it.

Usage: quant_fixtures.py OUT_DIR [SEED]

OUT_DIR/fixtures.gguf        the file (written by gguf.GGUFWriter, not by egpu)
OUT_DIR/<tensor>.f32         little-endian f32 values from gguf.quants.dequantize
OUT_DIR/manifest.txt         one line per tensor: name type_name n_elements rows
OUT_DIR/sizes.txt            one line per type known to gguf-py: id name block_size type_size

Block bytes are random, except the f16/f32 scale fields, which get finite random values so that
the oracle and egpu compare real numbers rather than NaNs.
"""
import sys, os
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

out = sys.argv[1]
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1234
rng = np.random.default_rng(seed)
os.makedirs(out, exist_ok=True)

# Byte offsets of the f16 scale fields inside each block (ggml-common.h layouts).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}

def random_blocks(qtype, n_blocks):
    _, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS.get(qtype, []):
        scale = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw

writer = gguf.GGUFWriter(os.path.join(out, "fixtures.gguf"), arch="llama")
# Metadata of every GGUF value type (the writer also adds general.architecture).
writer.add_uint8("test.u8", 200)
writer.add_int8("test.i8", -100)
writer.add_uint16("test.u16", 60000)
writer.add_int16("test.i16", -30000)
writer.add_uint32("test.u32", 4000000000)
writer.add_int32("test.i32", -2000000000)
writer.add_float32("test.f32", 1.5)
writer.add_bool("test.bool", True)
writer.add_string("test.string", "héllo wörld ✓")
writer.add_uint64("test.u64", 18000000000000000000)
writer.add_int64("test.i64", -9000000000000000000)
writer.add_float64("test.f64", -2.25)
writer.add_array("test.array_i32", [1, -2, 3])
writer.add_array("test.array_str", ["a", "bc", ""])

manifest = []
rows = 3
for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
    block, type_size = GGML_QUANT_SIZES[qtype]
    row_len = block * 2 if block == 256 else block * 4
    raw = random_blocks(qtype, rows * row_len // block).reshape(rows, row_len // block * type_size)
    name = f"t_{qtype.name.lower()}"
    writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
    values = dequantize(raw, qtype).astype(np.float32)
    assert values.shape == (rows, row_len), values.shape
    values.astype("<f4").tofile(os.path.join(out, name + ".f32"))
    manifest.append((name, qtype.name, rows * row_len, rows))

dense = {
    T.F32: rng.standard_normal((rows, 40)).astype(np.float32),
    T.F16: rng.standard_normal((rows, 40)).astype(np.float16),
}
for qtype, arr in dense.items():
    name = f"t_{qtype.name.lower()}"
    writer.add_tensor(name, arr)
    arr.astype("<f4").tofile(os.path.join(out, name + ".f32"))
    manifest.append((name, qtype.name, arr.size, rows))
# BF16: random finite bf16 bit patterns (top halves of f32 values).
bf = (rng.standard_normal((rows, 40)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
writer.add_tensor("t_bf16", bf.view(np.uint8).reshape(rows, 80), raw_shape=bf.view(np.uint8).reshape(rows, 80).shape, raw_dtype=T.BF16)
dequantize(bf.view(np.uint8).reshape(rows, 80), T.BF16).astype("<f4").tofile(os.path.join(out, "t_bf16.f32"))
manifest.append(("t_bf16", "BF16", bf.size, rows))

writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

with open(os.path.join(out, "manifest.txt"), "w") as f:
    for m in manifest:
        f.write(" ".join(str(x) for x in m) + "\n")
with open(os.path.join(out, "sizes.txt"), "w") as f:
    for t, (block, size) in GGML_QUANT_SIZES.items():
        f.write(f"{int(t)} {t.name} {block} {size}\n")
