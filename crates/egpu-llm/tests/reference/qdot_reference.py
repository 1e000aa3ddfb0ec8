#!/usr/bin/env python3
"""Reference dot products for egpu's integer kernels, from the PyPI `gguf` package's
dequantizer.

Usage: qdot_reference.py OUT_DIR [SEED]

For each quant type T (Q4_0 ... Q6_K) writes, with ROWS weight rows of COLS elements and
TOKENS activation rows:
  OUT_DIR/T.w     the packed rows (random bytes, finite random f16 scales)
  OUT_DIR/T.x     TOKENS x COLS float32 activations (uniform, with one outlier per row)
  OUT_DIR/T.dot   ROWS x TOKENS float64: dequantize(w) @ x.T, computed in float64
  OUT_DIR/T.mag   ROWS x TOKENS float64: |dequantize(w)| @ |x|.T (for the relative tolerance)
and OUT_DIR/manifest.txt: one line per type, `T ROWS COLS TOKENS`.
"""
import os, sys
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

out = sys.argv[1]
rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 7)
os.makedirs(out, exist_ok=True)

F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
# Row lengths: 32-element types get a length that is not a multiple of 256 (a partial chunk),
# K types two super-blocks. Rows: not a multiple of four (the kernels' remainder path).
SHAPES = {t: (7, 576 if GGML_QUANT_SIZES[t][0] == 32 else 512) for t in F16_FIELDS}
TOKENS = 5

with open(os.path.join(out, "manifest.txt"), "w") as manifest:
    for qtype, (rows, cols) in SHAPES.items():
        block, size = GGML_QUANT_SIZES[qtype]
        n_blocks = rows * cols // block
        raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
        for off in F16_FIELDS[qtype]:
            scale = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
            raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
        w = dequantize(raw.reshape(rows, -1), qtype).astype(np.float64).reshape(rows, cols)
        x = rng.uniform(-3, 3, size=(TOKENS, cols)).astype(np.float32)
        x[np.arange(TOKENS), rng.integers(0, cols, TOKENS)] = 40.0
        name = qtype.name
        raw.tofile(os.path.join(out, f"{name}.w"))
        x.astype("<f4").tofile(os.path.join(out, f"{name}.x"))
        (w @ x.astype(np.float64).T).astype("<f8").tofile(os.path.join(out, f"{name}.dot"))
        (np.abs(w) @ np.abs(x.astype(np.float64)).T).astype("<f8").tofile(os.path.join(out, f"{name}.mag"))
        manifest.write(f"{name} {rows} {cols} {TOKENS}\n")
