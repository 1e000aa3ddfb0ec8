#include "common.h"
// Per-workgroup sum of 256 floats with an LDS tree (8 waves meet at barriers).
extern "C" __global__ void reduce_sum(const float* in, float* out, int n) {
  __shared__ float part[256];
  u32 t = tid_x();
  u32 i = bid_x() * 256 + t;
  part[t] = (int)i < n ? in[i] : 0.0f;
  sync_threads();
  for (u32 s = 128; s > 0; s >>= 1) {
    if (t < s) part[t] += part[t + s];
    sync_threads();
  }
  if (t == 0) out[bid_x()] = part[0];
}
