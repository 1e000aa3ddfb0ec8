#include "common.h"
// Row softmax, one wave32 per row (workgroup of 32): max and sum with xor shuffles.
extern "C" __global__ void softmax(const float* in, float* out, int cols) {
  u32 lane = tid_x();
  const float* x = in + (long)bid_x() * cols;
  float* y = out + (long)bid_x() * cols;
  float m = -__builtin_inff();
  for (int c = lane; c < cols; c += 32) m = __builtin_fmaxf(m, x[c]);
  for (int o = 16; o > 0; o >>= 1) m = __builtin_fmaxf(m, shfl_xor(m, o));
  float s = 0.0f;
  for (int c = lane; c < cols; c += 32) s += __builtin_expf(x[c] - m);
  for (int o = 16; o > 0; o >>= 1) s += shfl_xor(s, o);
  float inv = 1.0f / s;
  for (int c = lane; c < cols; c += 32) y[c] = __builtin_expf(x[c] - m) * inv;
}
