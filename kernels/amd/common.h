// Minimal HIP-style declarations for clang's -nogpuinc mode: the corpus needs no ROCm headers.
#pragma once
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
typedef unsigned int u32;
typedef signed char i8;

__device__ static inline u32 tid_x() { return __builtin_amdgcn_workitem_id_x(); }
__device__ static inline u32 tid_y() { return __builtin_amdgcn_workitem_id_y(); }
__device__ static inline u32 bid_x() { return __builtin_amdgcn_workgroup_id_x(); }
__device__ static inline u32 bid_y() { return __builtin_amdgcn_workgroup_id_y(); }
__device__ static inline u32 bdim_x() { return __builtin_amdgcn_workgroup_size_x(); }
__device__ static inline void sync_threads() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
// __shfl_xor for wave32: ds_bpermute takes a byte address of the source lane.
__device__ static inline float shfl_xor(float v, int mask) {
  int lane = __builtin_amdgcn_mbcnt_lo(~0u, 0u);
  int src = lane ^ mask;
  return __builtin_bit_cast(float, __builtin_amdgcn_ds_bpermute(src << 2, __builtin_bit_cast(int, v)));
}
