// CUDA kernels of fast_nms / detect (launch logic: nms_launch.h). Cooperative blocks:
// they compile under nvcc and, for tests, under the fiber emulation of
// csrc/common/emulation.h (shared memory only through YF_SHARED / YF_DYNAMIC_SHARED).
//
//   scores:     candidate_flags (fast_nms) | detect_scores (decode + softmax, detect)
//   top-k:      select_top_k, one block of 1024 threads per class: radix select on unique
//               (score, index) keys (float keys packed into shared memory by the first
//               pass, narrowed to the k-th key's bucket by the second), then a bitonic
//               sort of the k selected in shared memory
//   IoU:        iou_tiles, 64 x 64 tiles of the ranked boxes, lower-triangle tiles skipped
//   survivors:  survivors, one warp per class (Fast NMS: column OR; greedy: bits in registers)
//   merge:      merge_detections, one block: select_top_k_block over all survivors, then
//               the survivors' rows gathered into the outputs
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
constexpr int kGreedyRows = 32;  // bitmask rows a greedy warp stages at a time

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
template <class T, class A>
YF_GLOBAL void candidate_flags(const T* boxes, const T* scores, int64_t C, int64_t P, A threshold,
                               uint8_t* is_candidate) {
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
// and sum with shuffles (the sum in the CPU kernel's order); the probabilities go through shared memory, kScoreClasses classes
// at a time, so that they are written class-major with coalesced stores.
constexpr int kScoreThreads = 256, kScoreWarps = kScoreThreads / kWarp;
constexpr int kScorePriors = 32, kScoreClasses = 64;
constexpr int kSumLanes = 8;  // partial sums of the softmax denominator
// exp(logit - max) of each row is kept in shared memory (24-32 KiB, within the 48 KiB of
// static shared memory beside the tile) when a row's C + 1 logits fit: each logit is read
// once and each exp computed once, by all 32 lanes, instead of once for the sum (on 8 lanes,
// in the CPU's order) and again for the probabilities. detect_scores was bound by
// instruction issue on an H100 (IPC 2.8, DRAM 9%; Nsight Compute).
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
                             A v0, A v1, A threshold, A* boxes, A* probs, uint8_t* is_candidate) {
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
      for (int64_t c = lane; c <= C; c += kWarp) exps[row_exps + c] = exp_(A(exps[row_exps + c]) - m);
      __syncwarp();
    }
    // exp(logit c - max), read back or computed (the same value either way)
    const auto shifted_exp = [&](int64_t c) { return cached ? A(exps[row_exps + c]) : exp_(A(row[c]) - m); };
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
YF_HD inline unsigned key_byte(unsigned long long score_bits, int64_t index, int digit) {
  constexpr int kScoreBytes = int(sizeof(T));
  if (digit < kScoreBytes) return unsigned(score_bits >> (8 * (kScoreBytes - 1 - digit))) & 255u;
  return unsigned(~uint32_t(index) >> (8 * (3 - (digit - kScoreBytes)))) & 255u;
}

// The calling block calls f(i, s[i]) for each i < n with ok[i], the thread's items
// kScanBatch at a time: the batch's flags and scores are loaded before any branch (both
// unconditionally, at clamped in-bounds indices), so that a warp has kScanBatch load pairs
// in flight instead of one dependent pair per iteration.
constexpr int kScanBatch = 8;

template <class S, class F>
YF_DEVICE inline void for_each_eligible(const S* s, const uint8_t* ok, int64_t n, const F& f) {
  const int64_t threads = blockDim.x;
  for (int64_t base = threadIdx.x; base < n; base += kScanBatch * threads) {
    uint8_t flags[kScanBatch];
    S scores[kScanBatch];
    YF_UNROLL
    for (int u = 0; u < kScanBatch; ++u) {
      const int64_t i = base + u * threads, j = i < n ? i : n - 1;
      flags[u] = ok[j];
      scores[u] = s[j];
      flags[u] = i < n ? flags[u] : uint8_t(0);
    }
    YF_UNROLL
    for (int u = 0; u < kScanBatch; ++u)
      if (flags[u]) f(base + u * threads, scores[u]);
  }
}

// The calling block selects the top k of the eligible items (score A(s[i]), eligible ok[i],
// i < n) and calls emit(r, item, count) for each rank r in [0, k) (one thread each), the
// items in rank order (count = how many there are; items past it are padding). MSD radix
// select over the unique keys, one byte per pass (stopping at the first byte whose bucket
// holds exactly the remaining rank), then a bitonic sort of the selected items in dynamic
// shared memory (k_pad items, k_pad a power of two >= k). shared_keys (float keys only:
// 8 bytes): the dynamic shared memory also holds n keys after the items; pass 0 packs the
// eligible items' keys there, pass 1 narrows them to the k-th key's first-byte bucket
// (narrow_packed_keys), and the later passes and the collection read them instead of s and
// ok.
template <class T>
constexpr bool kPackedKeys = sizeof(T) == 4;  // score order bits << 32 | ~index

// Called by the 32 lanes of warp 0 after pass `digit` of select_top_k_block: finds the
// bucket, scanning from 255 down, at which the running count of histogram[255..b] first
// reaches the remaining rank state[0]; stores it in prefix[digit] and the rank left inside
// it in state[0]; state[1] = 1 when pass 0 finds every eligible item selected, 2 when the
// bucket's items are all selected; state[2] = total eligible (pass 0). Lane l sums buckets
// 255 - 8l down to 248 - 8l, a shuffle scan gives each lane the count above its buckets, and
// the lane where the count crosses the rank walks its 8: a few hundred cycles per pass where
// a single thread's walk took 2-5 thousand (SASS), with 1023 threads waiting at the barrier.
// Barrier waits were 44% of select_top_k's stall cycles on an H100 (Nsight Compute); that
// walk is one part of them, beside the bitonic sort's barriers and load imbalance.
constexpr int kBucketsPerLane = 256 / kWarp;

template <class Histogram, class State, class Prefix>  // shared arrays (emulation: SharedArray)
YF_DEVICE inline void find_bucket(const Histogram& histogram, int digit, State& state, Prefix& prefix) {
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
// + slots[1]) with prefix[0] = the first byte of the k-th key: keys whose first byte is
// above it are selected (to items, at slots[0]), keys in its bucket are moved to the front
// of the array (count: slots[2]; then slots[1]) and counted by count_key, and the rest are
// dropped, so that the later passes and the collection scan only the k-th key's bucket:
// on the golden yolact_base head, 1/6 of the 17,907 keys of a class on average. In place:
// a batch of kNarrowBatch keys per thread is read whole before a barrier and only then
// written, each to a slot below the batch's end.
constexpr int kNarrowBatch = 4;

template <class T, class S, class Keys, class Items, class Slots, class Prefix, class Count>
YF_DEVICE inline void narrow_packed_keys(const S* s, const Keys& keys, int64_t key_base, const Items& items,
                                         Slots& slots, const Prefix& prefix, const Count& count_key) {
  const unsigned tid = threadIdx.x, threads = blockDim.x;
  const int64_t stored = slots[1];
  const unsigned bucket = prefix[0];
  for (int64_t base = 0; base < stored; base += int64_t(threads) * kNarrowBatch) {  // block-uniform
    unsigned long long batch[kNarrowBatch];
    YF_UNROLL
    for (int u = 0; u < kNarrowBatch; ++u) {
      const int64_t j = base + int64_t(u) * threads + tid;
      batch[u] = j < stored ? (unsigned long long)keys[key_base + j] : 0ull;
    }
    __syncthreads();
    YF_UNROLL
    for (int u = 0; u < kNarrowBatch; ++u) {
      if (base + int64_t(u) * threads + tid >= stored) continue;
      const unsigned long long bits = batch[u] >> 32;
      const int64_t i = int64_t(~uint32_t(batch[u]));
      const unsigned first = key_byte<T>(bits, i, 0);
      if (first > bucket) {
        items[atomicAdd(&slots[0], 1u)] = Item<T>{T(s[i]), i};  // s, not the key: -0.0 keeps its sign
      } else if (first == bucket) {
        keys[key_base + atomicAdd(&slots[2], 1u)] = batch[u];
        count_key(bits, i);
      }
    }
    __syncthreads();
  }
  if (tid == 0) slots[1] = slots[2];  // read after the caller's barrier
}

template <class A, class S, class Emit>
YF_DEVICE inline void select_top_k_block(const S* s, const uint8_t* ok, int64_t n, int64_t k,
                                         int64_t k_pad, bool shared_keys, const Emit& emit) {
  using T = A;  // items and keys in the arithmetic type
  constexpr int kDigits = int(sizeof(T)) + 4;
  YF_SHARED(unsigned, histogram, 256);
  YF_SHARED(unsigned long long, state, 3);  // remaining rank, stop (1 all, 2 prefix), total
  YF_SHARED(unsigned, slots, 3);  // items collected, keys packed, keys kept by pass 1
                                  // (32-bit: a 64-bit shared atomicAdd is a CAS loop)
  YF_SHARED(unsigned, prefix, kDigits);
  YF_DYNAMIC_SHARED(Item<T>, items);
  YF_DYNAMIC_SHARED(unsigned long long, keys);  // from keys[key_base]: after the items
  const int64_t key_base = k_pad * int64_t(sizeof(Item<T>) / sizeof(unsigned long long));
  const bool packed = kPackedKeys<T> && shared_keys;
  const unsigned tid = threadIdx.x, threads = blockDim.x;

  // f(score order bits, i) for each eligible item i: from s and ok, or from the packed keys.
  const auto for_each_key = [&](bool from_packed, const auto& f) {
    if (!from_packed) {
      for_each_eligible(s, ok, n, [&](int64_t i, S score) { f(order_bits(T(score)), i); });
      return;
    }
    const int64_t stored = slots[1];
    for (int64_t j = tid; j < stored; j += threads) {
      const unsigned long long key = keys[key_base + j];
      f(key >> 32, int64_t(~uint32_t(key)));
    }
  };

  if (tid == 0) {
    state[0] = (unsigned long long)k;  // rank of the k-th key among those still matching
    state[1] = 0;
    state[2] = 0;
    slots[0] = 0;
    slots[1] = 0;
    slots[2] = 0;
  }
  __syncthreads();
  // Radix passes: after pass d, prefix[0..d] holds the k-th largest key's first bytes.
  bool take_all = false;
  int digits = kDigits;  // key bytes in prefix: the selected keys are those >= prefix
  for (int digit = 0; digit < kDigits; ++digit) {
    for (unsigned b = tid; b < 256; b += threads) histogram[b] = 0;
    __syncthreads();
    const auto count_key = [&](unsigned long long bits, int64_t i) {
      bool match = true;
      for (int d = 0; d < digit && match; ++d) {
        const unsigned expected = prefix[d];
        match = key_byte<T>(bits, i, d) == expected;
      }
      if (match) atomicAdd(&histogram[key_byte<T>(bits, i, digit)], 1u);
    };
    if (packed && digit == 1) {
      narrow_packed_keys<T>(s, keys, key_base, items, slots, prefix, count_key);
    } else {
      for_each_key(packed && digit > 0, [&](unsigned long long bits, int64_t i) {
        if (packed && digit == 0)
          keys[key_base + atomicAdd(&slots[1], 1u)] = (bits << 32) | ~uint32_t(i);
        count_key(bits, i);
      });
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
  for_each_key(packed, [&](unsigned long long bits, int64_t i) {
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
  for (int64_t r = tid; r < k; r += threads) {
    const Item<T> item = items[r];
    emit(r, item, count);
  }
}

// Block blockIdx.x: the top k of its row (scores[row * score_stride + i], eligible[row *
// eligible_stride + i], i < n) in rank order to out_index/out_score[row, 0:k) (index -1 and
// score 0 past the count) and their number to out_count[row].
constexpr int kSelectThreads = 1024;  // <= 64 registers per thread: 1 block per SM
static_assert(kSelectThreads % kWarp == 0, "find_bucket needs warp 0 whole");

template <class S, class T>
YF_GLOBAL void YF_LAUNCH_BOUNDS(kSelectThreads, 1)
    select_top_k(const S* scores, int64_t score_stride, const uint8_t* eligible,
                 int64_t eligible_stride, int64_t n, int64_t k, int64_t k_pad, bool shared_keys,
                 int64_t* out_index, T* out_score, int64_t* out_count) {
  const int64_t row = blockIdx.x;
  select_top_k_block<T>(scores + row * score_stride, eligible + row * eligible_stride, n, k, k_pad,
                        shared_keys,
                     [&](int64_t r, const Item<T>& item, int64_t count) {
                       out_index[row * k + r] = r < count ? item.index : -1;
                       out_score[row * k + r] = r < count ? item.score : T(0);
                       if (r == 0) out_count[row] = count;
                     });
}

// Block (class * words + column tile, row tile) of the suppression bitmask (the class is
// folded into grid.x, whose limit is 2^31 - 1, not 65535): bit b of
// mask[c, i, col] is set iff ranked box i suppresses ranked box j = 64 col + b (j > i, both
// among the class's first count[c]). Tiles left of the diagonal hold no such pair: they are
// written as zeros without computing (the greedy walk stages whole rows, and compute-sanitizer's
// initcheck flags reads of memory no kernel wrote). The column tile's boxes are staged in
// shared memory. kIouSplit consecutive lanes share a row, lane `part` testing columns
// part, part + kIouSplit, ... (interleaved: the lanes of a row read boxes 16 B apart, no bank
// conflict, and share a partial last tile evenly), and OR their bits with shuffles: a thread
// testing all 64 ran ~7,000 dependent instructions per warp (25 us for 80 classes of 200 on
// an H100, Nsight Compute).
constexpr int kIouSplit = 4;
constexpr int kIouThreads = kTile * kIouSplit;
static_assert(kIouThreads == 4 * kTile,
              "iou_tiles stages coordinate t % 4 of box t / 4 with thread t: change the staging with kIouSplit");
static_assert(kWarp % kIouSplit == 0, "a row's lanes share a warp");

template <class B, class T>
YF_GLOBAL void iou_tiles(const B* boxes, const int64_t* ranked_index, const int64_t* count,
                         int64_t K, int64_t words, T iou_threshold, uint64_t* mask) {
  const unsigned column_tiles = unsigned(words);  // <= 32: a 32-bit division, once per block
  const int64_t col = blockIdx.x % column_tiles, c = blockIdx.x / column_tiles, row = blockIdx.y;
  const int t = int(threadIdx.x), part = t % kIouSplit;
  const int64_t i = row * kTile + t / kIouSplit;
  if (col < row) {
    if (part == 0 && i < K) mask[(c * K + i) * words + col] = 0;
    return;
  }
  YF_SHARED(T, tile, 4 * kTile);
  const int64_t n = count[c];
  {
    const int64_t j = col * kTile + t / 4;  // thread t stages coordinate t % 4 of box t / 4
    if (j < n) tile[t] = T(boxes[4 * ranked_index[c * K + j] + t % 4]);
  }
  __syncthreads();
  uint64_t bits = 0;
  if (i < n) {
    T box_i[4];
    const B* src = boxes + 4 * ranked_index[c * K + i];
    for (int d = 0; d < 4; ++d) box_i[d] = T(src[d]);
    const int64_t last = n - col * kTile < kTile ? n - col * kTile : kTile;
    const int columns = int(last), diagonal = int(i - col * kTile);  // test b > diagonal only
    for (int b = part; b < columns; b += kIouSplit) {
      if (b <= diagonal) continue;
      T box_j[4];
      for (int d = 0; d < 4; ++d) box_j[d] = tile[4 * b + d];
      if (suppresses(box_i, box_j, iou_threshold)) bits |= uint64_t(1) << b;
    }
  }
  for (int offset = 1; offset < kIouSplit; offset *= 2) bits |= __shfl_xor_sync(0xffffffffu, bits, offset);
  if (part == 0 && i < K) mask[(c * K + i) * words + col] = bits;
}

// One warp per class: keep[c, r] for its ranked boxes. "fast": r is removed iff any
// higher-ranked box suppresses it (an OR down each bitmask column, rows split over the
// lanes). "greedy": only kept boxes suppress; lane w holds word w of the removed set
// (words <= 32) and the rows are walked in rank order, staged kGreedyRows at a time in
// dynamic shared memory (kGreedyRows x words words per warp).
YF_GLOBAL void survivors(const uint64_t* mask, const int64_t* count, int64_t C, int64_t K,
                         int64_t words, bool greedy, uint8_t* keep) {
  const int64_t c = int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (c >= C) return;
  const unsigned lane = threadIdx.x % kWarp;
  const int64_t n = count[c];
  const uint64_t* rows = mask + c * K * words;
  if (!greedy) {
    for (int64_t w = 0; w < words; ++w) {
      uint64_t removed = 0;
      const int64_t last_row = n < kTile * (w + 1) ? n : kTile * (w + 1);
      for (int64_t i = lane; i < last_row; i += kWarp) removed |= rows[i * words + w];
      for (int offset = kWarp / 2; offset > 0; offset /= 2)
        removed |= __shfl_xor_sync(0xffffffffu, removed, offset);
      for (int64_t b = lane; b < kTile && kTile * w + b < K; b += kWarp) {
        const int64_t r = kTile * w + b;
        keep[c * K + r] = r < n && !((removed >> b) & 1);
      }
    }
    return;
  }
  // The rows go through shared memory, kGreedyRows at a time (coalesced loads), so that the
  // serial walk waits on shared, not global, memory.
  YF_DYNAMIC_SHARED(uint64_t, staged);
  const int64_t base = int64_t(threadIdx.x / kWarp) * kGreedyRows * words;
  uint64_t removed = 0;  // word `lane` of the removed set
  for (int64_t i0 = 0; i0 < n; i0 += kGreedyRows) {
    const int64_t staged_rows = n - i0 < kGreedyRows ? n - i0 : kGreedyRows;
    for (int64_t e = lane; e < staged_rows * words; e += kWarp) staged[base + e] = rows[i0 * words + e];
    __syncwarp();
    for (int64_t i = i0; i < i0 + staged_rows; ++i) {
      const int owner = int(i / kTile);
      const uint64_t word = __shfl_sync(0xffffffffu, removed, owner);
      if ((word >> (i % kTile)) & 1) continue;  // warp-uniform
      if (int64_t(lane) >= owner && int64_t(lane) < words)
        removed |= uint64_t(staged[base + (i - i0) * words + lane]);
    }
    __syncwarp();
  }
  for (int64_t b = 0; b < kTile; ++b) {
    const int64_t r = kTile * int64_t(lane) + b;
    if (int64_t(lane) < words && r < K) keep[c * K + r] = r < n && !((removed >> b) & 1);
  }
}

// One block: the top M survivors of all classes (keep[c * K + r], ranked by
// ranked_score[c * K + r], ties by the flat index c * K + r), gathered in rank order into
// the padded outputs (zeros past the count) with their number in *out_count. Boxes of B and
// scores of A are rounded once to the output dtype T.
template <class A, class B, class T>
YF_GLOBAL void YF_LAUNCH_BOUNDS(kSelectThreads, 1)
    merge_detections(const A* ranked_score, const uint8_t* keep, int64_t C, int64_t K, int64_t M,
                     int64_t m_pad, bool shared_keys, const B* boxes, const T* coeffs,
                     const int64_t* ranked_index, int64_t k, T* out_boxes, T* out_coeffs,
                     int64_t* out_labels, T* out_scores, int64_t* out_count) {
  const T zero = T(A(0));
  select_top_k_block<A>(ranked_score, keep, C * K, M, m_pad, shared_keys,
                        [&](int64_t m, const Item<A>& item, int64_t count) {
                       const bool valid = m < count;
                       const int64_t flat = valid ? item.index : 0;
                       const int64_t p = valid ? ranked_index[flat] : 0;
                       for (int64_t d = 0; d < 4; ++d) out_boxes[4 * m + d] = valid ? T(boxes[4 * p + d]) : zero;
                       for (int64_t d = 0; d < k; ++d) out_coeffs[k * m + d] = valid ? coeffs[k * p + d] : zero;
                       out_labels[m] = valid ? flat / K : 0;
                       out_scores[m] = valid ? T(item.score) : zero;
                       if (m == 0) *out_count = count;
                     });
}

}  // namespace
}  // namespace kernels
}  // namespace yf
