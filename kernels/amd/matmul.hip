#include "common.h"
// C[m x n] = A[m x k] * B[k x n], row-major, 16x16 tiles through LDS; edges padded with zeros.
#define TILE 16
extern "C" __global__ void matmul(const float* A, const float* B, float* C, int m, int n, int k) {
  __shared__ float ta[TILE][TILE];
  __shared__ float tb[TILE][TILE];
  u32 tx = tid_x(), ty = tid_y();
  int row = bid_y() * TILE + ty, col = bid_x() * TILE + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < k; k0 += TILE) {
    ta[ty][tx] = (row < m && k0 + (int)tx < k) ? A[row * k + k0 + tx] : 0.0f;
    tb[ty][tx] = (col < n && k0 + (int)ty < k) ? B[(k0 + ty) * n + col] : 0.0f;
    sync_threads();
    for (int j = 0; j < TILE; ++j) acc = __builtin_fmaf(ta[ty][j], tb[j][tx], acc);
    sync_threads();
  }
  if (row < m && col < n) C[row * n + col] = acc;
}
