// Host emulation of a CUDA launch: runs a kernel body for every (block, thread) of the
// grid, sequentially, with blockIdx/threadIdx/blockDim/gridDim set as the GPU would.
// Used in tests so that the CUDA kernels' index and launch logic runs without a GPU.
#pragma once

#if defined(__CUDACC__)
#error "emulation.h is for host compilers only"
#endif

#include <utility>

#include "macros.h"

namespace yf {
namespace emulation {

struct HostLaunch {
  template <class... KernelArgs, class... Args>
  void operator()(dim3 grid, dim3 block, void (*kernel)(KernelArgs...), Args&&... args) const {
    gridDim = grid;
    blockDim = block;
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx)
          for (unsigned tz = 0; tz < block.z; ++tz)
            for (unsigned ty = 0; ty < block.y; ++ty)
              for (unsigned tx = 0; tx < block.x; ++tx) {
                blockIdx.x = bx, blockIdx.y = by, blockIdx.z = bz;
                threadIdx.x = tx, threadIdx.y = ty, threadIdx.z = tz;
                kernel(static_cast<KernelArgs>(args)...);
              }
  }
};

}  // namespace emulation
}  // namespace yf
