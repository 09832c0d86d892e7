// Portability layer for code shared by the CPU and CUDA builds.
//
// YF_HD marks math that runs on both host and device; YF_DEVICE, helpers of kernels that
// use block or warp primitives (__syncthreads, shuffles, shared memory): device-only under
// nvcc, plain functions under the emulation. Kernels (YF_GLOBAL) are written
// once: nvcc compiles them for the GPU, and a host compiler compiles them against the
// emulation of csrc/emulation/emulation.h, which runs each block's threads as fibers. There
// blockIdx/threadIdx/blockDim/gridDim are thread-local variables the emulation sets, and
// shared memory is declared only through
//   YF_SHARED(T, name, N)       a static __shared__ T name[N]
//   YF_DYNAMIC_SHARED(T, name)  the launch's dynamic shared bytes viewed as T
// and indexed only as name[i] (read, write, compound assignment, atomicAdd(&name[i], v)),
// so that the emulation can bounds-check and race-check every access. Under the emulation
// `auto v = name[i]` binds a reference proxy: write `T v = name[i]`. A loop that walks a
// shared array takes a cursor, yf::shared_cursor(name, i): cursor[d] is name[i + d] and
// cursor += k moves it (a pointer under nvcc, so that the loop steps an address instead of
// forming one per access).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define YF_HD __host__ __device__
#define YF_DEVICE __device__
#define YF_GLOBAL __global__
// Most threads per block and least resident blocks per SM the registers are budgeted for.
#define YF_LAUNCH_BOUNDS(threads, blocks) __launch_bounds__(threads, blocks)
#define YF_UNROLL _Pragma("unroll")
#define YF_SHARED(T, name, N) __shared__ T name[N]
#define YF_DYNAMIC_SHARED(T, name)                                    \
  extern __shared__ __align__(16) unsigned char yf_dynamic_shared_[]; \
  T* name = reinterpret_cast<T*>(yf_dynamic_shared_)
#else
#define YF_HD
#define YF_DEVICE
#define YF_GLOBAL
#define YF_LAUNCH_BOUNDS(threads, blocks)
#define YF_UNROLL

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

#if defined(__CUDACC__)
template <class T>
__device__ inline T* shared_cursor(T* array, int64_t index) {
  return array + index;
}
#endif

// Dynamic shared memory above the default 48 KiB limit: passing this instead of a byte
// count to a launch opts the kernel in (cudaFuncAttributeMaxDynamicSharedMemorySize).
struct LargeSharedBytes {
  size_t bytes;
};

// A global-memory access path (emulation::Path) taken by the calling thread: recorded in
// the emulation's launch log, where an access of `bytes` > 0 bytes at `address` must also
// be aligned to `bytes`; nothing under nvcc.
#if defined(__CUDACC__)
#define YF_TAKE_PATH(path, address, bytes) ((void)0)
#else
#define YF_TAKE_PATH(path, address, bytes) \
  ::yf::emulation::take_path(::yf::emulation::path, address, bytes)
#endif

// A condition a kernel's code relies on (say its block size): a GPU traps when it does not
// hold (the launch fails with an unspecified launch failure), the emulation fails the
// launch with the condition's text.
#if defined(__CUDACC__)
#define YF_REQUIRE(condition)   \
  do {                          \
    if (!(condition)) __trap(); \
  } while (0)
#else
#define YF_REQUIRE(condition)                                          \
  do {                                                                 \
    if (!(condition)) ::yf::emulation::requirement_failed(#condition); \
  } while (0)
#endif

// Linear index of this thread and total thread count of a 1-D grid (grid-stride loops).
#define YF_KERNEL_LOOP(i, n)                                                       \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < int64_t(n); \
       i += int64_t(blockDim.x) * gridDim.x)

}  // namespace yf
