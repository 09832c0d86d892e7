// The bits checksum of bits_checksum (CPU kernel, CUDA kernel and the reference in
// yolact_fast/ops/reference.py): a tensor's bytes read as words of min(element size, 8) bytes,
// word i (zero-extended) times a 32-bit odd weight drawn from i, summed modulo 2^64. An odd
// weight is invertible modulo 2^64, so any change of one word (one element, but for
// complex128's two) changes the sum; sums of partial sums are the same in any order, so
// every device and schedule agrees. Products of words of <= 4 bytes are 32 x 32 -> 64-bit
// (PMULUDQ on CPUs, one IMAD.WIDE.U32 on GPUs).
#pragma once

#include <cstdint>
#include <cstring>

#include "macros.h"

namespace yf {

// murmur3's 32-bit finalizer.
YF_HD inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

// Word i's 32-bit odd weight is checksum_position_weight(i mod 2^12) xor
// checksum_block_weight(i >> 12): a hash of its position in its block of 2^12 words (made
// odd) xor an even hash of the block (the halves of the block index folded: 2^44 words are
// 64 TiB). A CPU takes the first from a table and hoists the second out of the block's
// loop, so that the loop vectorizes; a GPU computes both.
constexpr int kChecksumBlockBits = 12;
YF_HD inline uint32_t checksum_position_weight(uint32_t position) {
  return fmix32(position + 0x9e3779b9u) | 1u;
}
YF_HD inline uint32_t checksum_block_weight(uint64_t block) {
  return fmix32(uint32_t(block) ^ uint32_t(block >> 32) * 0x9e3779b1u) & ~1u;
}

// One tensor of a bits_checksum call, contiguous: `words` words of `width` bytes at data;
// its chunks of kChecksumChunkWords words are chunks first_chunk, first_chunk + 1, ... of
// the call (the CUDA kernel gives one to a block at a time).
struct ChecksumTensor {
  const unsigned char* data;
  int64_t words;
  int64_t first_chunk;
  int64_t width;
};
constexpr int64_t kChecksumChunkWords = int64_t(1) << 16;

// f(words) with the tensor's words typed by their width: 1, 2, 4 or 8 bytes (unsigned).
template <class F>
YF_HD inline uint64_t with_checksum_words(const ChecksumTensor& t, const F& f) {
  switch (t.width) {
    case 1:
      return f(t.data);
    case 2:
      return f(reinterpret_cast<const unsigned short*>(t.data));
    case 4:
      return f(reinterpret_cast<const unsigned int*>(t.data));
    default:
      return f(reinterpret_cast<const unsigned long long*>(t.data));
  }
}

}  // namespace yf
