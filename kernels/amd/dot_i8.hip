#include "common.h"
// out[r] = sum_k a[r*k_len + k] * b[k] over signed bytes, one work-item per row; k_len % 4 == 0.
extern "C" __global__ void dot_i8(const i8* a, const i8* b, int* out, int rows, int k_len) {
  u32 r = bid_x() * bdim_x() + tid_x();
  if ((int)r >= rows) return;
  const int* a4 = (const int*)(a + (long)r * k_len);
  const int* b4 = (const int*)b;
  int acc = 0;
  for (int k = 0; k < k_len / 4; ++k) {
    int x = a4[k], y = b4[k];
    for (int j = 0; j < 4; ++j)
      acc += (int)(i8)(x >> (8 * j)) * (int)(i8)(y >> (8 * j));
  }
  out[r] = acc;
}
