// CPU kernel of bits_checksum (a fingerprint of the bits of many tensors).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../checks.h"
#include "../common/checksum_table.h"
#include "../ops.h"

namespace yf {
namespace cpu {
namespace {

constexpr int64_t kBlockWords = int64_t(1) << kChecksumBlockBits;

const uint32_t* position_weights() {
  static const auto table = [] {
    std::vector<uint32_t> weights(static_cast<size_t>(kBlockWords));
    for (uint32_t j = 0; j < uint32_t(kBlockWords); ++j) weights[j] = checksum_position_weight(j);
    return weights;
  }();
  return table.data();
}

// Sum over words [begin, end) of word x weight modulo 2^64, one block of 2^12 words at a
// time: the position weights from the table, the block's weight hoisted (a loop the
// compiler vectorizes).
template <class Word>
uint64_t checksum_blocks(const Word* words, int64_t begin, int64_t end) {
  const uint32_t* table = position_weights();
  uint64_t sum = 0;
  for (int64_t start = begin; start < end;) {
    const int64_t block = start >> kChecksumBlockBits;
    const int64_t stop = std::min(end, (block + 1) * kBlockWords);
    const uint32_t block_weight = checksum_block_weight(uint64_t(block));
    const Word* w = words + block * kBlockWords;
    uint64_t partial = 0;
    for (int64_t j = start - block * kBlockWords; j < stop - block * kBlockWords; ++j)
      partial += uint64_t(w[j]) * uint64_t(table[j] ^ block_weight);
    sum += partial;
    start = stop;
  }
  return sum;
}

}  // namespace

at::Tensor bits_checksum(at::TensorList tensors) {
  check_checksum_args(tensors);
  const ChecksumPlan plan = checksum_plan(tensors);
  auto out = at::zeros({int64_t(tensors.size())}, tensors[0].options().dtype(at::kLong));
  auto* sums = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  const auto& table = plan.table;
  // Chunk c belongs to the last tensor whose first chunk is <= c (empty tensors have none).
  at::parallel_for(0, plan.chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const auto it = std::upper_bound(
          table.begin(), table.end(), c,
          [](int64_t chunk, const ChecksumTensor& t) { return chunk < t.first_chunk; });
      const ChecksumTensor& t = *(it - 1);
      const int64_t first = (c - t.first_chunk) * kChecksumChunkWords;
      const int64_t last = std::min(first + kChecksumChunkWords, t.words);
      const uint64_t sum = with_checksum_words(
          t, [&](const auto* words) { return checksum_blocks(words, first, last); });
      __atomic_fetch_add(&sums[it - 1 - table.begin()], sum, __ATOMIC_RELAXED);
    }
  });
  return out;
}

}  // namespace cpu
}  // namespace yf
