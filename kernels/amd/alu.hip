#include "common.h"
// ALU-bound loop (xorshift hash, multiply-add, f32 fma) for the interpreter's speed figure.
extern "C" __global__ void alu_loop(const u32* seed, u32* out, float* fout, int iters) {
  u32 i = bid_x() * bdim_x() + tid_x();
  u32 h = seed[i];
  float f = (float)(h & 0xffff) * (1.0f / 65536.0f);
  for (int k = 0; k < iters; ++k) {
    h ^= h << 13;
    h ^= h >> 17;
    h ^= h << 5;
    h = h * 0x9E3779B1u + (u32)k;
    f = __builtin_fmaf(f, 0.999f, 0.001f);
  }
  out[i] = h;
  fout[i] = f;
}
