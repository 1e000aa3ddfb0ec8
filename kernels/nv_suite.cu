// Kernels for the NVIDIA GPU test suite and benchmark (crates/egpu/examples/nv_suite.rs).
// Compiled at run time by NVRTC for the device's sm; extern "C" keeps the names plain.

extern "C" __global__ void empty() {}

extern "C" __global__ void vadd(const float* a, const float* b, float* c, unsigned n) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

// One partial sum per block, through shared memory (dynamic shared: blockDim.x floats).
extern "C" __global__ void reduce_sum(const float* in, float* partial, unsigned n) {
    extern __shared__ float tile[];
    unsigned t = threadIdx.x;
    unsigned i = blockIdx.x * blockDim.x + t;
    tile[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) tile[t] += tile[t + s];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = tile[0];
}

// Adds 1 to *counter (single thread); 10,000 of these in a row must leave exactly 10,000.
extern "C" __global__ void bump(unsigned* counter) { *counter += 1; }

// Spins until the CPU writes a non-zero flag (host memory), then records that it saw it (1),
// or that it gave up after `limit` polls (2), so a broken test cannot hang the GPU.
// Used to prove a copy completes while a kernel is still running.
extern "C" __global__ void wait_flag(volatile unsigned* flag, unsigned* seen,
                                     unsigned long long limit) {
    unsigned long long polls = 0;
    while (*flag == 0 && polls < limit) { polls++; }
    *seen = *flag != 0 ? 1 : 2;
}

// Needs local memory (a per-thread array indexed at run time): out[t] = 64*31*t + 2016*salt.
extern "C" __global__ void local_scratch(unsigned* out, unsigned salt) {
    volatile unsigned scratch[64];
    unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    for (unsigned i = 0; i < 64; i++) scratch[i] = t * 31u + i * salt;
    unsigned sum = 0;
    for (unsigned i = 0; i < 64; i++) sum += scratch[(i * 7u + t) & 63u];
    out[t] = sum;
}

// Streaming copy for memory bandwidth.
extern "C" __global__ void stream_copy(const float4* in, float4* out, unsigned long long n) {
    unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) out[i] = in[i];
}
