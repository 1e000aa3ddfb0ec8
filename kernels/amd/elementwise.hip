#include "common.h"
// y[i] = a * x[i] + y[i] for i < n (SAXPY): one work-item per element, partial last workgroup.
extern "C" __global__ void saxpy(float a, const float* x, float* y, int n) {
  u32 i = bid_x() * bdim_x() + tid_x();
  if ((int)i < n) y[i] = a * x[i] + y[i];
}
