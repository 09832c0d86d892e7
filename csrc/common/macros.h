// Portability layer for code shared by the CPU and CUDA builds.
//
// YF_HD marks math that runs on both host and device. Under nvcc, YF_GLOBAL is
// __global__; under a host compiler it is empty and blockIdx/threadIdx/blockDim/
// gridDim are thread-local variables that yf::emulation::launch sets before calling
// the kernel body once per (block, thread). Kernels therefore must not use
// __syncthreads or __shared__: every kernel here is a grid-stride loop.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define YF_HD __host__ __device__
#define YF_GLOBAL __global__
#else
#define YF_HD
#define YF_GLOBAL

struct uint3 {
  unsigned int x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};
inline thread_local uint3 blockIdx;
inline thread_local uint3 threadIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
#endif

namespace yf {

// Linear index of this thread and total thread count of a 1-D grid (grid-stride loops).
#define YF_KERNEL_LOOP(i, n)                                                            \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < int64_t(n);      \
       i += int64_t(blockDim.x) * gridDim.x)

}  // namespace yf
