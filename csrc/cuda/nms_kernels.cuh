// CUDA kernels of fast_nms / detect (launch logic: nms_launch.h). Cooperative blocks:
// they compile under nvcc and, for tests, under the fiber emulation of
// csrc/emulation/emulation.h (shared memory only through YF_SHARED / YF_DYNAMIC_SHARED).
//
//   scores:     candidate_flags (fast_nms) | detect_scores (decode + softmax, detect)
//   per class:  class_nms, one block of 1024 threads per class: the top k by a radix
//               select on unique (score, index) keys (float keys packed into shared memory
//               by the first pass, narrowed to the k-th key's bucket by the second) and a
//               bitonic sort in shared memory; the IoUs of the ranked pairs in 64 x 64
//               tiles (lower-triangle tiles skipped); the survivors (Fast NMS: OR of the
//               columns; greedy: a warp walks the rows); the first survivors compacted;
//               the last class block to finish then merges: select_top_k_block over
//               all classes' survivors, their rows gathered into the outputs
#pragma once

#include <cstring>

#include "../common/box_math.h"
#include "../common/macros.h"
#include "../common/mask_math.h"

namespace yf {
namespace kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kTile = 64;  // boxes per IoU tile: one 64-bit word of the bitmask

// Monotone unsigned image of a non-NaN float: a < b <=> order_bits(a) < order_bits(b), and
// a == b <=> order_bits(a) == order_bits(b) (-0.0 is keyed as +0.0: the two compare equal,
// so ties between them go to the lower index, as in the bitonic sort and the reference).
YF_HD inline unsigned long long order_bits(float x) {
  if (x == 0.0f) x = 0.0f;
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
YF_HD inline unsigned long long order_bits(double x) {
  if (x == 0.0) x = 0.0;
  unsigned long long u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

// A (score, index) item; ranks first: higher score, then lower index.
template <class T>
struct Item {
  T score;
  int64_t index;
};

template <class T>
YF_HD inline bool ranks_before(const Item<T>& a, const Item<T>& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

// Kernels take their inputs in the caller's dtype T (float16/bfloat16 read as such: no cast
// launches) and compute in A = at::opmath_type<T> (float for them, else T).

// One prior per thread: is_candidate[p] = best class score > threshold (NaN never) and a
// finite box.
// Both kernels also zero class_nms's count of finished classes (*classes_done), which it
// reads after them in stream order.
template <class T, class A>
YF_GLOBAL void candidate_flags(const T* boxes, const T* scores, int64_t C, int64_t P, A threshold,
                               uint8_t* is_candidate, unsigned* classes_done) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *classes_done = 0;
  YF_KERNEL_LOOP(p, P) {
    A best = -INFINITY;
    for (int64_t c = 0; c < C; ++c) best = nan_max(best, A(scores[c * P + p]));
    is_candidate[p] = best > threshold && box_is_finite(BoxValues<A>(boxes + 4 * p).v);
  }
}

// detect's pass over the raw outputs for kScorePriors priors per block (of kScoreThreads
// threads): their decoded boxes (a thread per prior), their foreground probabilities
// probs[c, p] (softmax over the C + 1 logits, background dropped) and whether each is a
// candidate. A warp per prior row reads its logits (coalesced) and reduces the softmax max
// and sum with shuffles (the sum in the CPU kernel's order); the probabilities go through shared
// memory, kScoreClasses classes at a time, so that they are written class-major with coalesced
// stores.
constexpr int kScoreThreads = 256, kScoreWarps = kScoreThreads / kWarp;
constexpr int kScorePriors = 32, kScoreClasses = 64;
constexpr int kSumLanes = 8;  // partial sums of the softmax denominator
// exp(logit - max) of each row is kept in shared memory (24-32 KiB, within the 48 KiB of
// static shared memory beside the tile) when a row's C + 1 logits fit: each logit is read
// once and each exp computed once, by all 32 lanes, instead of once for the sum (on 8 lanes,
// in the CPU's order) and again for the probabilities: the kernel is bound by instruction
// issue, not by memory.
template <class A>
constexpr int kCachedLogits = sizeof(A) == 4 ? 256 : 96;  // float: 32 KiB; double: 24 KiB

template <class T>
YF_DEVICE inline T warp_max(T x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    x = nan_max(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

template <class T, class A>
YF_GLOBAL void detect_scores(const T* loc, const T* priors, const T* logits, int64_t C, int64_t P,
                             A v0, A v1, A threshold, A* boxes, A* probs, uint8_t* is_candidate,
                             unsigned* classes_done) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *classes_done = 0;
  YF_SHARED(A, row_max, kScorePriors);
  YF_SHARED(A, row_inv, kScorePriors);  // 1 / sum of exp(logit - max)
  YF_SHARED(A, best, kScorePriors);     // best foreground probability
  YF_SHARED(A, tile, kScoreClasses * (kScorePriors + 1));
  YF_SHARED(A, exps, kScorePriors * kCachedLogits<A>);
  const bool cached = C + 1 <= kCachedLogits<A>;  // block-uniform
  const int64_t p0 = int64_t(blockIdx.x) * kScorePriors;
  const int priors_here = int(min_(int64_t(kScorePriors), P - p0));
  const int t = int(threadIdx.x), lane = t % kWarp, warp = t / kWarp;
  if (t < priors_here) {
    const BoxValues<A> l(loc + 4 * (p0 + t));
    decode_box(BoxValues<A>(priors + 4 * (p0 + t)).v, l.v, exp_(l.v[2] * v1), exp_(l.v[3] * v1), v0,
               boxes + 4 * (p0 + t));
  }
  for (int i = warp; i < priors_here; i += kScoreWarps) {
    const T* row = logits + (p0 + i) * (C + 1);
    const int64_t row_exps = int64_t(i) * kCachedLogits<A>;
    A m = -INFINITY;
    for (int64_t c = lane; c <= C; c += kWarp) {
      const A logit = A(row[c]);
      if (cached) exps[row_exps + c] = logit;  // read once from global memory
      m = nan_max(m, logit);
    }
    m = warp_max(m);
    if (cached) {  // each lane rewrites the logits it stored above: no race
      for (int64_t c = lane; c <= C; c += kWarp)
        exps[row_exps + c] = exp_(A(exps[row_exps + c]) - m);
      __syncwarp();
    }
    // exp(logit c - max), read back or computed (the same value either way)
    const auto shifted_exp = [&](int64_t c) {
      return cached ? A(exps[row_exps + c]) : exp_(A(row[c]) - m);
    };
    // The sum in the order of the CPU kernel (lane_sum in csrc/cpu/nms_kernel.cpp),
    // so that under the emulation (the host's expf) ties and thresholds fall as on the CPU;
    // a GPU's expf may differ by ulps. Lane l < 8 sums the exps of i = l mod 8 over
    // the whole runs of 8, the partial sums are added in lane order, then the tail in order.
    const int64_t whole = (C + 1) - (C + 1) % kSumLanes;
    A partial = A(0);
    if (lane < kSumLanes)
      for (int64_t c = lane; c < whole; c += kSumLanes) partial += shifted_exp(c);
    A sum = A(0);
    for (int l = 0; l < kSumLanes; ++l) sum += __shfl_sync(0xffffffffu, partial, l);
    for (int64_t c = whole; c <= C; ++c) sum += shifted_exp(c);  // every lane alike
    if (lane == 0) {
      row_max[i] = m;
      row_inv[i] = A(1) / sum;
      best[i] = -INFINITY;
    }
  }
  __syncthreads();
  for (int64_t c0 = 0; c0 < C; c0 += kScoreClasses) {
    const int classes = int(min_(int64_t(kScoreClasses), C - c0));
    for (int i = warp; i < priors_here; i += kScoreWarps) {  // the warp that owns row i above
      const T* row = logits + (p0 + i) * (C + 1) + 1 + c0;
      const A m = row_max[i], inv = row_inv[i];
      const int64_t row_exps = i * kCachedLogits<A> + 1 + c0;
      A row_best = -INFINITY;
      for (int c = lane; c < classes; c += kWarp) {
        const A prob = (cached ? A(exps[row_exps + c]) : exp_(A(row[c]) - m)) * inv;
        tile[c * (kScorePriors + 1) + i] = prob;
        row_best = nan_max(row_best, prob);
      }
      row_best = warp_max(row_best);
      if (lane == 0) best[i] = nan_max(A(best[i]), row_best);
    }
    __syncthreads();
    for (int e = t; e < classes * kScorePriors; e += kScoreThreads) {
      const int c = e / kScorePriors, i = e % kScorePriors;
      if (i < priors_here) probs[(c0 + c) * P + p0 + i] = tile[c * (kScorePriors + 1) + i];
    }
    __syncthreads();
  }
  if (t < priors_here)
    is_candidate[p0 + t] = A(best[t]) > threshold && box_is_finite(boxes + 4 * (p0 + t));
}

// Key byte `digit` (0 = most significant) of item p: its score's order bits, then the
// bitwise complement of its index (so that lower indices rank first). Keys are unique.
template <class T>
YF_HD inline unsigned key_byte(unsigned long long score_bits, uint32_t index, int digit) {
  constexpr int kScoreBytes = int(sizeof(T));
  if (digit < kScoreBytes) return unsigned(score_bits >> (8 * (kScoreBytes - 1 - digit))) & 255u;
  return (~index >> (8 * (3 - (digit - kScoreBytes)))) & 255u;
}

// The calling block (of kSelectThreads threads) calls f(i, s[i]) for each i < n with ok[i]
// (and skip(i) for each i < n without), the thread's items kScanBatch at a time: the
// batch's flags and scores are loaded before any branch (predicated loads at offsets
// u x kSelectThreads from the batch's first item, immediates in the SASS), so that a warp
// has kScanBatch load pairs in flight instead of one dependent pair per iteration. Indices
// are 32-bit (n < 2^31: the launcher checks it; unsigned, as i passes n by up to a batch):
// with 64-bit ones and loads at clamped indices, the index arithmetic and the addresses took
// ~10 of the ~40 SASS instructions per item (sm_90).
constexpr int kSelectThreads = 1024;  // <= 64 registers per thread: 1 block per SM
constexpr int kScanBatch = 8;

template <class S, class F, class Skip>
YF_DEVICE inline void for_each_eligible(const S* s, const uint8_t* ok, int64_t n, const F& f,
                                        const Skip& skip) {
  constexpr unsigned threads = kSelectThreads;
  const unsigned count = unsigned(n);
  for (unsigned base = threadIdx.x; base < count; base += kScanBatch * threads) {
    const S* batch_scores = s + base;
    const uint8_t* batch_flags = ok + base;
    uint8_t flags[kScanBatch];
    S scores[kScanBatch];
    YF_UNROLL
    for (int u = 0; u < kScanBatch; ++u) {
      const bool in_range = base + u * threads < count;
      flags[u] = in_range ? batch_flags[u * threads] : uint8_t(0);
      scores[u] = in_range ? batch_scores[u * threads] : S(0);
    }
    YF_UNROLL
    for (int u = 0; u < kScanBatch; ++u) {
      const unsigned i = base + u * threads;
      if (i >= count) continue;
      if (flags[u])
        f(i, scores[u]);
      else
        skip(i);
    }
  }
}

// The calling block ranks the top k of the eligible items (score A(s[i]), eligible ok[i],
// i < n): rank_top_k_block leaves them in rank order in items[0, count) of the dynamic shared
// memory (padding up to k_pad after them) and returns their number, count <= k, to every
// thread after a barrier; select_top_k_block then calls emit(r, item, count) for each rank
// r in [0, k) (one thread each; items past count are padding). MSD radix
// select over the unique keys, one byte per pass (stopping at the first byte whose bucket
// holds exactly the remaining rank), then a bitonic sort of the selected items in dynamic
// shared memory (k_pad items, k_pad a power of two >= k). shared_keys (float keys only:
// 8 bytes): the dynamic shared memory also holds n keys after the items; pass 0 stores item
// i's key at slot i (kNoKey for an ineligible item: no slot atomics), pass 1 narrows them to
// the k-th key's first-byte bucket (narrow_packed_keys), and the later passes and the
// collection read them instead of s and ok.
template <class T>
constexpr bool kPackedKeys = sizeof(T) == 4;  // score order bits << 32 | ~index

// Called by the 32 lanes of warp 0 after pass `digit` of select_top_k_block: finds the
// bucket, scanning from 255 down, at which the running count of histogram[255..b] first
// reaches the remaining rank state[0]; stores it in prefix[digit] and the rank left inside
// it in state[0]; state[1] = 1 when pass 0 finds every eligible item selected, 2 when the
// bucket's items are all selected; state[2] = total eligible (pass 0). Lane l sums buckets
// 255 - 8l down to 248 - 8l, a shuffle scan gives each lane the count above its buckets, and
// the lane where the count crosses the rank walks its 8: a few hundred cycles per pass where
// a single thread's walk takes 2-5 thousand (SASS), with 1023 threads waiting at the barrier.
constexpr int kBucketsPerLane = 256 / kWarp;

template <class Histogram, class State, class Prefix>  // shared arrays (emulation: SharedArray)
YF_DEVICE inline void find_bucket(const Histogram& histogram, int digit, State& state,
                                  Prefix& prefix) {
  const unsigned lane = threadIdx.x % kWarp;
  const int first = 255 - kBucketsPerLane * int(lane);
  unsigned counts[kBucketsPerLane];
  unsigned long long lane_total = 0;
  YF_UNROLL
  for (int j = 0; j < kBucketsPerLane; ++j) {
    counts[j] = histogram[first - j];
    lane_total += counts[j];
  }
  unsigned long long through = lane_total;  // buckets 255 .. first - 7
  for (int offset = 1; offset < kWarp; offset *= 2) {
    const unsigned long long before = __shfl_up_sync(0xffffffffu, through, unsigned(offset));
    if (int(lane) >= offset) through += before;
  }
  const unsigned long long total = __shfl_sync(0xffffffffu, through, kWarp - 1);
  const unsigned long long remaining = state[0];
  __syncwarp();  // every lane has read state[0] before one writes it
  if (digit == 0 && lane == 0) state[2] = total;
  if (digit == 0 && total <= remaining) {
    if (lane == 0) state[1] = 1;  // every eligible item is selected
    return;
  }
  unsigned long long above = through - lane_total;
  if (through < remaining || (lane > 0 && above >= remaining)) return;  // not the crossing lane
  YF_UNROLL
  for (int j = 0; j < kBucketsPerLane; ++j) {
    if (above + counts[j] >= remaining) {
      prefix[digit] = unsigned(first - j);
      state[0] = remaining - above;
      if (above + counts[j] == remaining) state[1] = 2;  // the whole bucket is selected
      return;
    }
    above += counts[j];
  }
}

// Pass 1 of select_top_k_block over packed keys, which pass 0 left in keys[key_base,
// + slots[1]) (item i's at i, kNoKey for an ineligible one) with prefix[0] = the first byte
// of the k-th key: keys whose first byte is above it are selected (to items, at slots[0]),
// keys in its bucket are moved to the front
// of the array (count: slots[2]; then slots[1]) and counted by count_key, and the rest are
// dropped, so that the later passes and the collection scan only the k-th key's bucket:
// on the golden yolact_base head, 1/6 of the 17,907 keys of a class on average. In place:
// a batch of kNarrowBatch keys per thread is read whole before a barrier and only then
// written, each to a slot below the batch's end.
constexpr int kNarrowBatch = 4;
// The packed key of no item: no real key is 0, as its low word ~uint32(i) is at least 2^31
// for every index i < 2^31 (its order bits may be 0: a NaN with all bits set).
constexpr unsigned long long kNoKey = 0;

template <class T, class S, class Keys, class Items, class Slots, class Prefix, class Count>
YF_DEVICE inline void narrow_packed_keys(const S* s, const Keys& keys, unsigned key_base,
                                         const Items& items, Slots& slots, const Prefix& prefix,
                                         const Count& count_key) {
  const unsigned tid = threadIdx.x, threads = blockDim.x;
  const unsigned stored = slots[1];
  const unsigned bucket = prefix[0];
  for (unsigned base = 0; base < stored; base += threads * kNarrowBatch) {  // block-uniform
    unsigned long long batch[kNarrowBatch];
    YF_UNROLL
    for (int u = 0; u < kNarrowBatch; ++u) {
      const unsigned j = base + u * threads + tid;
      batch[u] = j < stored ? (unsigned long long)keys[key_base + j] : 0ull;
    }
    __syncthreads();
    YF_UNROLL
    for (int u = 0; u < kNarrowBatch; ++u) {
      if (base + u * threads + tid >= stored || batch[u] == kNoKey) continue;
      const unsigned long long bits = batch[u] >> 32;
      const uint32_t i = ~uint32_t(batch[u]);
      const unsigned first = key_byte<T>(bits, i, 0);
      if (first > bucket) {
        items[atomicAdd(&slots[0], 1u)] =
            Item<T>{T(s[i]), int64_t(i)};  // s, not the key: -0.0 keeps its sign
      } else if (first == bucket) {
        keys[key_base + atomicAdd(&slots[2], 1u)] = batch[u];
        count_key(bits, i);
      }
    }
    __syncthreads();
  }
  if (tid == 0) slots[1] = slots[2];  // read after the caller's barrier
}

template <class A, class S>
YF_DEVICE inline int64_t rank_top_k_block(const S* s, const uint8_t* ok, int64_t n, int64_t k,
                                          int64_t k_pad, bool shared_keys) {
  using T = A;  // items and keys in the arithmetic type
  constexpr int kDigits = int(sizeof(T)) + 4;
  YF_SHARED(unsigned, histogram, 256);
  YF_SHARED(unsigned long long, state, 3);  // remaining rank, stop (1 all, 2 prefix), total
  YF_SHARED(unsigned, slots, 3);            // items collected, keys packed, keys kept by pass 1
                                            // (32-bit: a 64-bit shared atomicAdd is a CAS loop)
  YF_SHARED(unsigned, prefix, kDigits);
  YF_DYNAMIC_SHARED(Item<T>, items);
  YF_DYNAMIC_SHARED(unsigned long long, keys);  // from keys[key_base]: after the items
  const unsigned key_base =
      unsigned(k_pad) * unsigned(sizeof(Item<T>) / sizeof(unsigned long long));
  const bool packed = kPackedKeys<T> && shared_keys;
  const unsigned tid = threadIdx.x, threads = blockDim.x;

  // f(score order bits, i) for each eligible item i: from s and ok, or from the packed keys.
  const auto for_each_key = [&](bool from_packed, const auto& f) {
    if (!from_packed) {
      for_each_eligible(
          s, ok, n, [&](uint32_t i, S score) { f(order_bits(T(score)), i); }, [](uint32_t) {});
      return;
    }
    const unsigned stored = slots[1];
    for (unsigned j = tid; j < stored; j += threads) {
      const unsigned long long key = keys[key_base + j];
      if (key != kNoKey) f(key >> 32, ~uint32_t(key));
    }
  };

  if (tid == 0) {
    state[0] = (unsigned long long)k;  // rank of the k-th key among those still matching
    state[1] = 0;
    state[2] = 0;
    slots[0] = 0;
    slots[1] = packed ? unsigned(n) : 0u;  // pass 0 stores item i's key at i
    slots[2] = 0;
  }
  __syncthreads();
  // Radix passes: after pass d, prefix[0..d] holds the k-th largest key's first bytes.
  bool take_all = false;
  int digits = kDigits;  // key bytes in prefix: the selected keys are those >= prefix
  for (int digit = 0; digit < kDigits; ++digit) {
    for (unsigned b = tid; b < 256; b += threads) histogram[b] = 0;
    __syncthreads();
    const auto count_key = [&](unsigned long long bits, uint32_t i) {
      bool match = true;
      for (int d = 0; d < digit && match; ++d) {
        const unsigned expected = prefix[d];
        match = key_byte<T>(bits, i, d) == expected;
      }
      if (match) atomicAdd(&histogram[key_byte<T>(bits, i, digit)], 1u);
    };
    // The packed passes 0 and 1 count with the digit known: no prefix to match in pass 0,
    // and pass 1 counts only keys whose first byte is prefix[0].
    if (packed && digit == 0) {  // keys at fixed slots: no slot atomics
      for_each_eligible(
          s, ok, n,
          [&](uint32_t i, S score) {
            const unsigned long long bits = order_bits(T(score));
            keys[key_base + i] = (bits << 32) | ~uint32_t(i);
            atomicAdd(&histogram[key_byte<T>(bits, i, 0)], 1u);
          },
          [&](uint32_t i) { keys[key_base + i] = kNoKey; });
    } else if (packed && digit == 1) {
      narrow_packed_keys<T>(s, keys, key_base, items, slots, prefix,
                            [&](unsigned long long bits, uint32_t i) {
                              atomicAdd(&histogram[key_byte<T>(bits, i, 1)], 1u);
                            });
    } else {
      for_each_key(packed && digit > 0, count_key);
    }
    __syncthreads();
    if (tid < kWarp) find_bucket(histogram, digit, state, prefix);
    __syncthreads();
    const unsigned long long stop = state[1];
    take_all = stop == 1;
    if (stop != 0) {
      digits = digit + 1;
      break;
    }
  }
  const unsigned long long total_eligible = state[2];
  const int64_t count = take_all ? int64_t(total_eligible) : k;
  // Collect the items whose key's first `digits` bytes are >= prefix (all eligible ones
  // with take_all).
  for_each_key(packed, [&](unsigned long long bits, uint32_t i) {
    bool selected = take_all;
    for (int d = 0; d < digits && !selected; ++d) {
      const unsigned byte = key_byte<T>(bits, i, d), expected = prefix[d];
      if (byte != expected) {
        selected = byte > expected;
        break;
      }
      if (d == digits - 1) selected = true;  // in the k-th key's bucket
    }
    if (selected) {
      const unsigned slot = atomicAdd(&slots[0], 1u);
      items[slot] = Item<T>{T(s[i]), i};  // s, not the key: -0.0 keeps its sign
    }
  });
  for (int64_t i = count + tid; i < k_pad; i += threads)
    items[i] = Item<T>{T(-INFINITY), int64_t(1) << 62};  // ranks after every real item
  __syncthreads();
  // Bitonic sort into rank order. Pair t of a stage is items i = 2t - t % stride and
  // i + stride, so with stride <= 32 the pairs 32q .. 32q + 31, which one warp takes (the
  // block is whole warps), stay within items 64q .. 64q + 63: between such stages the warp
  // alone synchronises, and block barriers frame only the wider stages (k_pad = 256: 6
  // barriers instead of 36, each waited at by all 1024 threads).
  for (int64_t size = 2; size <= k_pad; size <<= 1) {
    for (int64_t stride = size / 2; stride > 0; stride >>= 1) {
      const bool block_wide = stride > kWarp;
      if (block_wide && stride == size / 2) __syncthreads();  // after the warps' last stages
      for (int64_t t = tid; t < k_pad / 2; t += threads) {
        const int64_t i = 2 * t - (t & (stride - 1)), j = i + stride;
        const Item<T> a = items[i], b = items[j];
        const bool first_half = (i & size) == 0;
        if (first_half ? ranks_before(b, a) : ranks_before(a, b)) {
          items[i] = b;
          items[j] = a;
        }
      }
      if (block_wide)
        __syncthreads();
      else
        __syncwarp();
    }
  }
  __syncthreads();
  return count;
}

template <class A, class S, class Emit>
YF_DEVICE inline void select_top_k_block(const S* s, const uint8_t* ok, int64_t n, int64_t k,
                                         int64_t k_pad, bool shared_keys, const Emit& emit) {
  const int64_t count = rank_top_k_block<A>(s, ok, n, k, k_pad, shared_keys);
  YF_DYNAMIC_SHARED(Item<A>, items);
  for (int64_t r = threadIdx.x; r < k; r += blockDim.x) {
    const Item<A> item = items[r];
    emit(r, item, count);
  }
}

// The first L survivors of each class in rank order, [C, L] row-major: score, prior index,
// and whether slot j holds one (j < the class's survivors).
template <class A>
struct ClassSurvivors {
  A* score;
  int64_t* index;
  uint8_t* ok;
  int64_t L;
};

// The padded outputs of fast_nms / detect: boxes [M, 4], coeffs [M, k], labels [M],
// scores [M] (zeros past the count) and the count.
template <class T>
struct Detections {
  T* boxes;
  T* coeffs;
  int64_t* labels;
  T* scores;
  int64_t* count;
  int64_t M, k;
};

// Per-class NMS and the merge, one block of kSelectThreads threads per class c =
// blockIdx.x, in one launch: the class's top K eligible priors ranked (rank_top_k_block over
// scores[c, 0:P)), the IoU of every ranked pair i < j, the survivors ("fast": j is removed
// iff any higher-ranked box suppresses it; "greedy": iff a kept one does), and the first L
// survivors in rank order to `kept` (padding past them: score 0, index 0, written so that
// the merge's batched loads read only written memory). The last block to finish (counted
// in *classes_done, zeroed by the launch before) then merges: merge_detections. No ranked
// boxes or [C, K, K / 64] bitmask go through global memory.
//
// Dynamic shared memory, after the k_pad ranked items: the select's packed keys
// (shared_keys), then, once the items are ranked and the keys dead, the ranked boxes and
// their areas (shared_boxes; else read through the items' indices from global memory) and,
// for greedy, a band of kTile bitmask rows (kTile x words words, words = ceil(K / 64) <=
// kMaxWords); in the last block, the merge's m_pad items and packed keys (merge_keys) reuse
// it all.
// Tiles of 64 x 64 ranked pairs left of the diagonal hold no pair i < j and are skipped; a
// tile is a task of kIouThreads threads: warp w of a task holds, one per lane, the 32
// columns of half w % 2 of the column tile (box and area in registers) and tests them
// against the rows part, part + kIouSplit, ... of the row tile (part = w / 2), each row a
// broadcast shared load of its box and staged area; in a half of c <= 16 columns (the
// last tile's) each column has lanes_per_column(c) lanes that split its rows. "fast" stops
// a column at its first suppressing row, ORs its lanes' flags (shuffles) and a ballot gives
// the warp's removed bits, ORed into the removed set with one shared atomic; "greedy"
// ballots each row step, so that lane m keeps row part + m kIouSplit's bits over the warp's
// columns, and computes the tiles of one row band at a time into the band; warp 0 then
// walks the band's rows in rank order with word w of the removed set in lane w. A column
// per lane keeps its box and area in registers, places a bit with a ballot (no 64-bit shifts
// and selects) and uses min/max instructions.
static_assert(kSelectThreads % kWarp == 0, "find_bucket needs warp 0 whole");
constexpr int kIouSplit = 4;                    // row parts of a tile
constexpr int kIouThreads = kTile * kIouSplit;  // a warp per (half of the columns, part)
constexpr int kMaxWords = 32;  // bitmask words of a class: K <= 2048 (launch::kMaxRanked)
static_assert(kTile == 2 * kWarp, "a column tile is two warps' lanes");
static_assert(kSelectThreads % kIouThreads == 0, "a round of tasks is whole tiles");
static_assert(kTile / kIouSplit <= kWarp, "greedy: a lane keeps each row of its part");

// Bytes of class_nms's staged ranked boxes: K boxes (4 coordinates of A), then their K
// areas, rounded up to 8 (the greedy band follows).
template <class A>
YF_HD constexpr int64_t staged_boxes_bytes(int64_t K) {
  return (5 * K * int64_t(sizeof(A)) + 7) / 8 * 8;
}

// min / max of finite values (ranked boxes are: candidates need box_is_finite) as one
// FMNMX each. They can differ from compare-and-select only in the sign of a zero result. That
// cannot change the decision: a side's difference is then the same or its negated zero, the
// clamps (which nvcc also makes FMNMX: iw may be -0) leave +-0 unless positive, and +-0 /
// union compares with the threshold as 0 does (+-0 / +-0 is NaN either way).
YF_HD inline float finite_min(float a, float b) { return fminf(a, b); }
YF_HD inline float finite_max(float a, float b) { return fmaxf(a, b); }
YF_HD inline double finite_min(double a, double b) { return fmin(a, b); }
YF_HD inline double finite_max(double a, double b) { return fmax(a, b); }

// A ranked box with its area, (x2 - x1) * (y2 - y1).
template <class A>
struct AreaBox {
  A x1, y1, x2, y2, area;
};

// Box p of boxes [P, 4] (of B) in A, with its area: what class_nms stages and what it reads
// when the boxes are not staged.
template <class A, class B>
YF_DEVICE inline AreaBox<A> area_box_at(const B* boxes, int64_t p) {
  AreaBox<A> b{A(boxes[4 * p]), A(boxes[4 * p + 1]), A(boxes[4 * p + 2]), A(boxes[4 * p + 3]),
               A(0)};
  b.area = (b.x2 - b.x1) * (b.y2 - b.y1);
  return b;
}

// Ranked boxes row, row + step, ... of class_nms with their areas: staged ones through
// shared cursors, which next() steps (under nvcc pointers, kept in registers: indexing the
// array made the compiler re-form the shared window's address for each row after the
// division's slow-path call site, 6 more instructions per pair); else read through the
// items' indices from global memory (area_box_at, as staged).
template <class A, class B, class Items, class Cursor>
struct RankedRows {
  Cursor box, area;
  Items items;
  const B* boxes;
  int row, step;
  bool staged;

  // The m-th row from here (the cursors do not move).
  YF_DEVICE AreaBox<A> at(int m) const {
    if (staged) {
      const int b = 4 * step * m;
      return {box[b], box[b + 1], box[b + 2], box[b + 3], area[step * m]};
    }
    const Item<A> item = items[row + step * m];
    return area_box_at<A>(boxes, item.index);
  }
  // This row; then step to the next.
  YF_DEVICE AreaBox<A> next() {
    const AreaBox<A> r = at(0);
    box += 4 * step;
    area += step;
    row += step;
    return r;
  }
};

// Lanes per column of a warp whose half of a column tile holds `columns` ranked boxes: 1
// for 17 to 32; for a narrower half (the last tile's), a power of two up to 16 with
// columns x lanes <= 32, the lanes of a column splitting its rows, so that the warp takes
// 16 / lanes row steps instead of 16 with most lanes idle. An empty half (columns <= 0)
// gets 16: its greedy warps take one step of empty ballots.
YF_HD inline int lanes_per_column(int columns) {
  int lanes = 1;
  while (lanes < kTile / kIouSplit && columns * 2 * lanes <= kWarp) lanes *= 2;
  return lanes;
}

// The low `count` (1 to 32) bits set.
YF_HD inline unsigned low_bits(int count) { return count >= 32 ? ~0u : (1u << count) - 1u; }

// Whether ranked box a (the higher ranked) suppresses b, for finite boxes: the decision of
// finite_box_suppresses (and so of suppresses()), bit for bit.
template <class A>
YF_DEVICE inline bool area_box_suppresses(const AreaBox<A>& a, const AreaBox<A>& b,
                                          A iou_threshold) {
  const A w = finite_min(a.x2, b.x2) - finite_max(a.x1, b.x1);
  const A h = finite_min(a.y2, b.y2) - finite_max(a.y1, b.y1);
  const A iw = w > A(0) ? w : A(0), ih = h > A(0) ? h : A(0);
  const A inter = iw * ih;
  return !(inter / (a.area + b.area - inter) <= iou_threshold);
}

// Word w of the ranked boxes [0, n) that survive: the removed bits (word w of the removed
// set in halves 2w, 2w + 1) cleared.
template <class Halves>
YF_DEVICE inline uint64_t survivor_word(const Halves& removed, int64_t n, int64_t w) {
  const int64_t valid = n - kTile * w;
  if (valid <= 0) return 0;
  const uint64_t in_range = valid >= kTile ? ~uint64_t(0) : (uint64_t(1) << valid) - 1;
  const uint64_t word = uint64_t(unsigned(removed[2 * w])) | uint64_t(unsigned(removed[2 * w + 1]))
                                                                 << 32;
  return ~word & in_range;
}

// Survivors among ranked boxes [0, 64 w).
template <class Halves>
YF_DEVICE inline int64_t survivors_before(const Halves& removed, int64_t n, int64_t w) {
  int64_t count = 0;
  for (int64_t v = 0; v < w; ++v) count += __popcll(survivor_word(removed, n, v));
  return count;
}

// One block, after every class's survivors are written: the top M survivors of all classes
// (kept.ok[c * L + j], ranked by kept.score[c * L + j], ties by the flat index c * L + j:
// class-major, then rank, as j follows the rank within a class), gathered in rank order
// into the padded outputs with their number in *out.count. Boxes of B and scores of A are
// rounded once to the output dtype T.
template <class A, class B, class T>
YF_DEVICE inline void merge_detections(const ClassSurvivors<A>& kept, int64_t C, int64_t m_pad,
                                       bool shared_keys, const B* boxes, const T* coeffs,
                                       const Detections<T>& out) {
  if (kPackedKeys<A> && shared_keys && threadIdx.x == 0)
    YF_TAKE_PATH(kMergeKeysInShared, nullptr, 0);
  const T zero = T(A(0));
  const int64_t L = kept.L, k = out.k;
  select_top_k_block<A>(kept.score, kept.ok, C * L, out.M, m_pad, shared_keys,
                        [&](int64_t m, const Item<A>& item, int64_t count) {
                          const bool valid = m < count;
                          const int64_t flat = valid ? item.index : 0;
                          const int64_t p = valid ? kept.index[flat] : 0;
                          for (int64_t d = 0; d < 4; ++d)
                            out.boxes[4 * m + d] = valid ? T(boxes[4 * p + d]) : zero;
                          for (int64_t d = 0; d < k; ++d)
                            out.coeffs[k * m + d] = valid ? coeffs[k * p + d] : zero;
                          out.labels[m] = valid ? flat / L : 0;
                          out.scores[m] = valid ? T(item.score) : zero;
                          if (m == 0) *out.count = count;
                        });
}

template <class S, class B, class A, class T>
YF_GLOBAL void YF_LAUNCH_BOUNDS(kSelectThreads, 1)
    class_nms(const S* scores, const uint8_t* eligible, int64_t P, const B* boxes, int64_t K,
              int64_t k_pad, bool shared_keys, bool shared_boxes, A iou_threshold, bool greedy,
              ClassSurvivors<A> kept, unsigned* classes_done, const T* coeffs, int64_t m_pad,
              bool merge_keys, Detections<T> out) {
  YF_REQUIRE(blockDim.x == kSelectThreads);  // for_each_eligible's stride
  const int64_t c = blockIdx.x, L = kept.L;
  const int64_t n = rank_top_k_block<A>(scores + c * P, eligible, P, K, k_pad, shared_keys);
  YF_DYNAMIC_SHARED(Item<A>, items);
  YF_DYNAMIC_SHARED(A, ranked_boxes);        // from box_base: after the items; then the areas
  YF_DYNAMIC_SHARED(uint64_t, band);         // from band_base: after the boxes and areas
  YF_DYNAMIC_SHARED(unsigned, band_halves);  // the band as 32-bit halves (little-endian)
  // The removed set in 32-bit halves: a shared 32-bit atomicOr is one ATOMS.OR, a 64-bit one
  // a compare-and-swap loop (ATOMS.CAST.SPIN.64) on sm_90.
  YF_SHARED(unsigned, removed, 2 * kMaxWords);
  const int64_t item_bytes = k_pad * int64_t(sizeof(Item<A>));
  const int64_t box_base = item_bytes / int64_t(sizeof(A)), area_base = box_base + 4 * K;
  const int64_t band_base = (item_bytes + (shared_boxes ? staged_boxes_bytes<A>(K) : 0)) / 8;
  const int64_t words = (n + kTile - 1) / kTile;
  const unsigned tid = threadIdx.x, threads = blockDim.x, lane = tid % kWarp;

  if (shared_boxes)
    for (int64_t r = tid; r < n; r += threads) {
      const Item<A> item = items[r];
      const AreaBox<A> b = area_box_at<A>(boxes, item.index);
      ranked_boxes[box_base + 4 * r] = b.x1;
      ranked_boxes[box_base + 4 * r + 1] = b.y1;
      ranked_boxes[box_base + 4 * r + 2] = b.x2;
      ranked_boxes[box_base + 4 * r + 3] = b.y2;
      ranked_boxes[area_base + r] = b.area;
    }
  if (kPackedKeys<A> && shared_keys && tid == 0) YF_TAKE_PATH(kKeysInShared, nullptr, 0);
  if (shared_boxes && tid == 0) YF_TAKE_PATH(kBoxesInShared, nullptr, 0);
  if (tid < 2 * kMaxWords) removed[tid] = 0;
  __syncthreads();
  // Ranked boxes first, first + step, ... (< n) with their areas, in turn (RankedRows);
  // rows_from(j, 1).next() is box j.
  const int boxes_at = int(box_base), areas_at = int(area_base);
  const auto rows_from = [&](int first, int step) {
    return RankedRows<A, B, decltype(items), decltype(shared_cursor(ranked_boxes, 0))>{
        shared_cursor(ranked_boxes, boxes_at + 4 * first),
        shared_cursor(ranked_boxes, areas_at + first),
        items,
        boxes,
        first,
        step,
        shared_boxes};
  };
  // Task `task` of tile (row_tile, col): its part of the row tile and half of the column
  // tile, the lanes per column of that half (lanes_per_column; a column's lanes are those
  // `columns` apart), this lane's rows (first, first + step, ...: the part's rows of its lane
  // group) and its column j (>= n: none).
  struct IouTask {
    int part, half, lanes, columns, first, step, j;
  };
  const auto task_of = [&](int64_t task, int64_t row_tile, int64_t col) {
    IouTask t;
    const int within = int(task % kIouThreads);
    t.part = within / kTile;
    t.half = (within / kWarp) % 2;
    const int first_column = int(col) * kTile + t.half * kWarp;
    // warp-uniform; float64 keeps a lane per column (its registers are at the 64 of
    // 1024-thread blocks: the lane groups' state made it spill)
    t.lanes = sizeof(A) > 4 ? 1 : lanes_per_column(int(n) - first_column);
    t.columns = kWarp / t.lanes;
    t.first = int(row_tile) * kTile + t.part + kIouSplit * (int(lane) / t.columns);
    t.step = kIouSplit * t.lanes;
    t.j = first_column + int(lane) % t.columns;
    return t;
  };

  if (!greedy) {
    // All tiles (row tile <= column tile) in one sweep, kIouThreads tasks per tile.
    const int64_t tasks = words * (words + 1) / 2 * kIouThreads;  // whole warps: uniform
    for (int64_t task = tid; task < tasks; task += threads) {
      int64_t tile = task / kIouThreads, row_tile = 0;  // tile-th of the upper triangle, by rows
      while (tile >= words - row_tile) {
        tile -= words - row_tile;
        ++row_tile;
      }
      const int64_t col = row_tile + tile;
      const IouTask t = task_of(task, row_tile, col);
      bool is_removed = false;
      if (t.j < n) {
        const AreaBox<A> b = rows_from(t.j, 1).next();
        const int end = min_(t.j, int(row_tile + 1) * kTile);  // rows i < j of the row tile
        auto rows = rows_from(t.first, t.step);
        for (int i = t.first; i < end && !is_removed; i += t.step)
          is_removed = area_box_suppresses(rows.next(), b, iou_threshold);
      }
      for (int offset = t.columns; offset < kWarp; offset *= 2)  // OR over a column's lanes
        is_removed |= bool(__shfl_xor_sync(0xffffffffu, int(is_removed), offset));
      const unsigned bits = __ballot_sync(0xffffffffu, is_removed) & low_bits(t.columns);
      if (lane == 0 && bits) atomicOr(&removed[2 * col + t.half], bits);
    }
  } else {
    uint64_t walked = 0;  // warp 0: word `lane` of the removed set
    for (int64_t row_tile = 0; row_tile < words; ++row_tile) {
      const int64_t tasks = (words - row_tile) * kIouThreads;
      for (int64_t task = tid; task < tasks; task += threads) {
        const int64_t col = row_tile + task / kIouThreads;
        const IouTask t = task_of(task, row_tile, col);
        const AreaBox<A> b = t.j < n ? rows_from(t.j, 1).next() : AreaBox<A>{};
        auto rows = rows_from(t.first, t.step);
        // Lane r keeps row part + kIouSplit r's bits over the warp's columns: group g of the
        // ballot of step m (its `columns` bits from g x columns) is row part + kIouSplit (g +
        // lanes m).
        unsigned row_bits = 0;
        const int steps = kTile / kIouSplit / t.lanes;
        YF_UNROLL
        for (int m = 0; m < kTile / kIouSplit; ++m) {  // warp-uniform
          if (m == steps) break;
          const int i = t.first + t.step * m;
          const bool suppressed =
              t.j < n && i < t.j && area_box_suppresses(rows.at(m), b, iou_threshold);
          const unsigned bits = __ballot_sync(0xffffffffu, suppressed);
          const int group = int(lane) - t.lanes * m;
          if (group >= 0 && group < t.lanes)
            row_bits = (bits >> (group * t.columns)) & low_bits(t.columns);
        }
        if (int(lane) < kTile / kIouSplit) {
          const int64_t row = t.part + int64_t(lane) * kIouSplit;
          band_halves[2 * (band_base + row * words + col) + t.half] = row_bits;
        }
      }
      __syncthreads();
      if (tid < kWarp) {
        const int64_t last = min_(n, (row_tile + 1) * kTile);
        for (int64_t i = row_tile * kTile; i < last; ++i) {
          const uint64_t word = __shfl_sync(0xffffffffu, walked, int(row_tile));
          if ((word >> (i % kTile)) & 1) continue;  // warp-uniform
          if (int64_t(lane) >= row_tile && int64_t(lane) < words)
            walked |= uint64_t(band[band_base + (i - row_tile * kTile) * words + lane]);
        }
      }
      __syncthreads();  // the band is rewritten by the next row tile
    }
    if (tid < words) {
      removed[2 * tid] = unsigned(walked);
      removed[2 * tid + 1] = unsigned(walked >> 32);
    }
  }
  __syncthreads();

  // Survivor r's slot = survivors ranked before it.
  const int64_t survivors = survivors_before(removed, n, words);
  for (int64_t r = tid; r < K; r += threads) {
    if (r < n) {
      const int64_t w = r / kTile;
      const uint64_t word = survivor_word(removed, n, w), below = (uint64_t(1) << (r % kTile)) - 1;
      if ((word >> (r % kTile)) & 1) {
        const int64_t slot = survivors_before(removed, n, w) + __popcll(word & below);
        if (slot < L) {
          const Item<A> item = items[r];
          kept.score[c * L + slot] = item.score;
          kept.index[c * L + slot] = item.index;
        }
      }
    }
    if (r < L) {
      kept.ok[c * L + r] = r < survivors;
      if (r >= survivors) {
        kept.score[c * L + r] = A(0);
        kept.index[c * L + r] = 0;
      }
    }
  }

  // The last block to finish merges (a launch of its own before), with the handshake of
  // cooperative groups' grid sync: after a barrier (the block's stores above happen before
  // it), thread 0 fences (cumulative: the block's stores become visible device-wide) and
  // counts the block done; in the last block it fences again before the barrier after
  // which every thread reads the other blocks' survivors.
  YF_SHARED(unsigned, last_block, 1);
  __syncthreads();
  if (tid == 0) {
    __threadfence();
    const bool last = atomicAdd(classes_done, 1u) == gridDim.x - 1;
    if (last) __threadfence();
    last_block[0] = last;
  }
  __syncthreads();
  if (!last_block[0]) return;
  merge_detections<A>(kept, int64_t(gridDim.x), m_pad, merge_keys, boxes, coeffs, out);
}

}  // namespace
}  // namespace kernels
}  // namespace yf
