// Host side of bits_checksum, shared by the CPU kernel and the CUDA launch logic: the
// table of the tensors' words and chunks (checksum_math.h).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "checksum_math.h"

namespace yf {

struct ChecksumPlan {
  std::vector<at::Tensor> dense;  // the tensors, contiguous (copies where they were not)
  std::vector<ChecksumTensor> table;
  int64_t chunks = 0;
};

// Words of min(element size, 8) bytes (complex128: two per element), of the tensors'
// values: conjugate and negative views resolved.
inline ChecksumPlan checksum_plan(at::TensorList tensors) {
  ChecksumPlan plan;
  plan.dense.reserve(tensors.size());
  plan.table.reserve(tensors.size());
  for (const at::Tensor& t : tensors) {
    plan.dense.push_back(t.resolve_conj().resolve_neg().contiguous());
    const at::Tensor& d = plan.dense.back();
    const int64_t width = std::min<int64_t>(int64_t(d.element_size()), 8);
    const int64_t words = d.numel() * int64_t(d.element_size()) / width;
    plan.table.push_back(
        {static_cast<const unsigned char*>(d.data_ptr()), words, plan.chunks, width});
    plan.chunks += (words + kChecksumChunkWords - 1) / kChecksumChunkWords;
  }
  return plan;
}

}  // namespace yf
