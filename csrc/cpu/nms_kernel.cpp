// CPU Fast NMS / Cluster NMS, and detect (decode + softmax + NMS from the raw head outputs).
//
// Per class: candidates (priors whose best class score passes the threshold and whose
// box is finite) are ranked by score (ties by prior index), the top_k are kept, and box
// j survives if no higher-ranked box i suppresses it: every i < j for "fast" (suppressed
// boxes still suppress), only surviving i for "cluster" (= greedy NMS). Survivors of all
// classes are ranked by score (ties class-major) and cut to max_detections. Outputs are
// padded to nms_output_size() rows; the fifth output holds the number of valid rows.
//
// The hot loops (softmax, IoU tests) are compiled for AVX-512, AVX2 and baseline x86-64
// (target_clones) and picked at load time for the CPU at hand.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../common/box_math.h"
#include "../ops.h"
#include "vec_math.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(YF_SANITIZE)
#define YF_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define YF_VECTOR_CLONES
#endif

namespace yf {
namespace cpu {
namespace {

template <class T>
struct Ranked {
  T score;
  int64_t index;  // prior index (per class) or flat class-major index (global)
};

// Descending score, ascending index: a strict weak order for non-NaN scores. A function
// object, so that std::sort and std::nth_element inline it.
struct RanksBefore {
  template <class T>
  bool operator()(const Ranked<T>& a, const Ranked<T>& b) const {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
  }
};

// Runs job(c) for every c in [0, n) on all threads, each thread taking the next c as it
// finishes one: classes differ in cost, so a static split leaves threads idle.
template <class Job>
void for_each_class(int64_t n, const Job& job) {
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(n, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    for (int64_t c = next++; c < n; c = next++) job(c);
  });
}

template <class T>
void top_k_in_place(std::vector<Ranked<T>>& items, int64_t k) {
  if (int64_t(items.size()) > k) {
    std::nth_element(items.begin(), items.begin() + k, items.end(), RanksBefore());
    items.resize(k);
  }
  std::sort(items.begin(), items.end(), RanksBefore());
}

// A float score and an index below 2^32 packed into one integer whose ascending order is
// RanksBefore's (higher score first, then lower index), so that sorting compares integers.
// Scores map to their bits made monotone (negative ones inverted, positive ones with the
// sign set); -0.0 would rank below +0.0, which RanksBefore ties, so it is not packed.
inline bool packable(const Ranked<float>& item) {
  uint32_t bits;
  std::memcpy(&bits, &item.score, sizeof bits);
  return bits != 0x80000000u && uint64_t(item.index) <= 0xFFFFFFFFu;
}

inline uint64_t rank_key(const Ranked<float>& item) {
  uint32_t bits;
  std::memcpy(&bits, &item.score, sizeof bits);
  const uint32_t monotone = (bits >> 31) ? ~bits : bits | 0x80000000u;
  return (uint64_t(~monotone) << 32) | uint64_t(item.index);
}

inline Ranked<float> from_rank_key(uint64_t key) {
  const uint32_t monotone = ~uint32_t(key >> 32);
  const uint32_t bits = (monotone >> 31) ? monotone & 0x7FFFFFFFu : ~monotone;
  float score;
  std::memcpy(&score, &bits, sizeof score);
  return {score, int64_t(key & 0xFFFFFFFFu)};
}

// float: the same order on packed keys, three to four times faster than RanksBefore.
void top_k_in_place(std::vector<Ranked<float>>& items, int64_t k) {
  if (!std::all_of(items.begin(), items.end(), packable)) return top_k_in_place<float>(items, k);
  std::vector<uint64_t> keys(items.size());
  std::transform(items.begin(), items.end(), keys.begin(), rank_key);
  if (int64_t(keys.size()) > k) {
    std::nth_element(keys.begin(), keys.begin() + k, keys.end());
    keys.resize(k);
  }
  std::sort(keys.begin(), keys.end());
  items.resize(keys.size());
  std::transform(keys.begin(), keys.end(), items.begin(), from_rank_key);
}

// The top k (score, prior) pairs of one class, offered one at a time in any order. A
// buffer of up to 4 k items is cut back to its best k whenever it fills; the k-th best
// score then bounds what may still enter (ties enter: the final cut orders them by index).
template <class T>
struct TopK {
  int64_t k = 0;
  T bound = -std::numeric_limits<T>::infinity();  // offers below this cannot make the top k
  std::vector<Ranked<T>> items;

  explicit TopK(int64_t k_ = 0) : k(k_) {}

  void offer(T score, int64_t index) {
    if (score >= bound) push(score, index);
  }
  void push(T score, int64_t index) {
    if (items.empty()) items.reserve(size_t(4 * k));
    items.push_back({score, index});
    if (int64_t(items.size()) == 4 * k) {
      std::nth_element(items.begin(), items.begin() + (k - 1), items.end(), RanksBefore());
      items.resize(size_t(k));
      bound = items.back().score;
    }
  }
  void absorb(const TopK& other) {
    items.insert(items.end(), other.items.begin(), other.items.end());
  }
  // The top k in rank order.
  std::vector<Ranked<T>> ranked() {
    top_k_in_place(items, k);
    return std::move(items);
  }
};

// --- candidates and per-class top-k from foreground scores [C, P] -------------------

// Priors whose best class score is > score_threshold (a NaN score anywhere disqualifies,
// as torch.max propagates NaN) and whose box is finite.
template <class T>
std::vector<uint8_t> find_candidates(const T* boxes, const T* scores, int64_t C, int64_t P,
                                     T score_threshold) {
  std::vector<T> best(P, -std::numeric_limits<T>::infinity());
  std::vector<uint8_t> has_nan(P, 0), candidate(P, 0);
  at::parallel_for(0, P, 4096, [&](int64_t begin, int64_t end) {
    T* b = best.data();
    uint8_t* n = has_nan.data();
    for (int64_t c = 0; c < C; ++c) {
      const T* row = scores + c * P;
      for (int64_t p = begin; p < end; ++p) {  // branch-free: vectorizes
        b[p] = row[p] > b[p] ? row[p] : b[p];
        n[p] |= row[p] != row[p];
      }
    }
    for (int64_t p = begin; p < end; ++p)
      candidate[p] = !has_nan[p] && best[p] > score_threshold && box_is_finite(boxes + 4 * p);
  });
  return candidate;
}

template <class T>
std::vector<std::vector<Ranked<T>>> top_k_per_class(const T* scores, const uint8_t* candidate,
                                                    int64_t C, int64_t P, int64_t k) {
  std::vector<std::vector<Ranked<T>>> ranked(C);
  if (k == 0) return ranked;
  for_each_class(C, [&](int64_t c) {
    TopK<T> top(k);
    const T* row = scores + c * P;
    for (int64_t p = 0; p < P; ++p)
      if (candidate[p] && row[p] >= top.bound) top.push(row[p], p);
    ranked[c] = top.ranked();
  });
  return ranked;
}

// --- suppression -----------------------------------------------------------------------

// Boxes in structure-of-arrays form with their areas, for vectorized IoU tests.
template <class T>
struct BoxColumns {
  std::vector<T> x1, y1, x2, y2, area;

  void clear() { x1.clear(), y1.clear(), x2.clear(), y2.clear(), area.clear(); }
  void push(const T* box) {
    x1.push_back(box[0]);
    y1.push_back(box[1]);
    x2.push_back(box[2]);
    y2.push_back(box[3]);
    area.push_back((box[2] - box[0]) * (box[3] - box[1]));
  }
};

// Whether any of boxes [begin, end) suppresses box b (candidate boxes are finite).
// Branch-free so that the loop vectorizes.
template <class T>
YF_INLINE bool any_suppresses(const T* x1, const T* y1, const T* x2, const T* y2, const T* area,
                              int64_t begin, int64_t end, const T* b, T area_b, T iou_threshold) {
  int hit = 0;
  for (int64_t i = begin; i < end; ++i)
    hit |= finite_box_suppresses(x1[i], y1[i], x2[i], y2[i], area[i], b, area_b, iou_threshold);
  return hit != 0;
}

// Whether box b is suppressed by boxes [0, count): chunks keep the loop vectorized while
// still stopping early once a chunk suppresses.
template <class T>
YF_INLINE bool suppressed_by(const BoxColumns<T>& a, int64_t count, const T* b, T iou_threshold) {
  constexpr int64_t kChunk = 32;
  const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
  for (int64_t begin = 0; begin < count; begin += kChunk)
    if (any_suppresses(a.x1.data(), a.y1.data(), a.x2.data(), a.y2.data(), a.area.data(), begin,
                       std::min(begin + kChunk, count), b, area_b, iou_threshold))
      return true;
  return false;
}

// Survivors of one class's ranked boxes, in rank order. "fast": every higher-ranked box
// suppresses; "cluster" (greedy): only kept ones.
template <class T>
YF_INLINE void survivors(const T* boxes, const std::vector<Ranked<T>>& ranked, T iou_threshold,
                         bool greedy, std::vector<Ranked<T>>& kept) {
  BoxColumns<T> suppressors;
  int64_t count = 0;
  for (const Ranked<T>& item : ranked) {
    const T* box = boxes + 4 * item.index;
    const bool suppressed = suppressed_by(suppressors, count, box, iou_threshold);
    if (!suppressed) kept.push_back(item);
    if (!suppressed || !greedy) {
      suppressors.push(box);
      ++count;
    }
  }
}

YF_VECTOR_CLONES void class_survivors(const float* boxes, const std::vector<Ranked<float>>& ranked,
                                      float iou_threshold, bool greedy,
                                      std::vector<Ranked<float>>& kept) {
  survivors(boxes, ranked, iou_threshold, greedy, kept);
}

YF_VECTOR_CLONES void class_survivors(const double* boxes,
                                      const std::vector<Ranked<double>>& ranked,
                                      double iou_threshold, bool greedy,
                                      std::vector<Ranked<double>>& kept) {
  survivors(boxes, ranked, iou_threshold, greedy, kept);
}

// Runs NMS on each class's ranked candidates and writes the padded outputs.
template <class T>
void nms_and_write(const T* boxes, const T* coeffs, int64_t num_coeffs,
                   const std::vector<std::vector<Ranked<T>>>& ranked, T iou_threshold,
                   NmsMethod method, at::Tensor& out_boxes, at::Tensor& out_coeffs,
                   at::Tensor& out_labels, at::Tensor& out_scores, at::Tensor& out_count) {
  const int64_t C = int64_t(ranked.size()), M = out_boxes.size(0);
  std::vector<std::vector<Ranked<T>>> kept(C);
  for_each_class(C, [&](int64_t c) {
    class_survivors(boxes, ranked[c], iou_threshold, method == NmsMethod::kCluster, kept[c]);
  });

  // Flat class-major index c * top_k + rank breaks score ties like the reference.
  std::vector<Ranked<T>> all;
  std::vector<int64_t> prior_of, class_of;
  for (int64_t c = 0; c < C; ++c) {
    for (size_t r = 0; r < kept[c].size(); ++r) {
      all.push_back({kept[c][r].score, int64_t(prior_of.size())});
      prior_of.push_back(kept[c][r].index);
      class_of.push_back(c);
    }
  }
  top_k_in_place(all, M);

  const int64_t count = int64_t(all.size());
  T* ob = out_boxes.data_ptr<T>();
  T* oc = out_coeffs.data_ptr<T>();
  int64_t* ol = out_labels.data_ptr<int64_t>();
  T* os = out_scores.data_ptr<T>();
  for (int64_t m = 0; m < count; ++m) {
    const int64_t p = prior_of[all[m].index];
    std::copy(boxes + 4 * p, boxes + 4 * p + 4, ob + 4 * m);
    std::copy(coeffs + num_coeffs * p, coeffs + num_coeffs * (p + 1), oc + num_coeffs * m);
    ol[m] = class_of[all[m].index];
    os[m] = all[m].score;
  }
  out_count.fill_(count);
}

struct PaddedOutputs {
  at::Tensor boxes, coeffs, labels, scores, count;

  PaddedOutputs(int64_t M, int64_t k, const at::TensorOptions& options)
      : boxes(at::zeros({M, 4}, options)),
        coeffs(at::zeros({M, k}, options)),
        labels(at::zeros({M}, options.dtype(at::kLong))),
        scores(at::zeros({M}, options)),
        count(at::zeros({}, options.dtype(at::kLong))) {}

  // In the dtype of the inputs (float16/bfloat16 are computed in float32).
  NmsResult result(at::ScalarType dtype) const {
    return {boxes.to(dtype), coeffs.to(dtype), labels, scores.to(dtype), count};
  }
};

inline at::ScalarType compute_type(const at::Tensor& t) {
  return is_reduced_float(t) ? at::kFloat : t.scalar_type();
}

// --- detect: softmax + candidates + per-class top-k from the raw logits -----------------
//
// (1) Every kSampleStride-th prior gives each class a starting bound: a score that about
// 3 top_k candidates of all priors are expected to reach. (2) One pass over the priors,
// a range per thread: the softmax of each prior that can be a candidate, its scores
// offered to the range's TopK of each class, which skip those under the bound. (3) Per
// class, the ranges' items merged; a class whose bound was too high (fewer than top_k
// items reached it) is ranked again from every candidate. The bound only saves work:
// the results are those of ranking every candidate.

// Largest of n values, NaN ignored (-inf if all are NaN): a NaN logit is caught later, by
// the sum of exps.
template <class T>
YF_INLINE T max_of(const T* values, int64_t n) {
  constexpr T kLowest = -std::numeric_limits<T>::infinity();
  typename Lanes8<T>::type lane_max = kLowest - typename Lanes8<T>::type{}, v;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    load8(values + i, v);
    lane_max = v > lane_max ? v : lane_max;
  }
  T result = kLowest;
  for (; i < n; ++i) result = values[i] > result ? values[i] : result;
  for (int l = 0; l < 8; ++l) result = lane_max[l] > result ? lane_max[l] : result;
  return result;
}

// Sum of n values as eight partial sums (lanes) and then the tail: the order fixes the
// rounding of the probabilities, keep it.
template <class T>
YF_INLINE T lane_sum(const T* values, int64_t n) {
  typename Lanes8<T>::type lanes = {}, v;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    load8(values + i, v);
    lanes += v;
  }
  T sum = T(0);
  for (int l = 0; l < 8; ++l) sum += lanes[l];
  for (; i < n; ++i) sum += values[i];
  return sum;
}

// One prior's softmax: the probability of class c is exp(logits[c + 1] - row_max) * inv_sum.
template <class T>
struct Softmax {
  T row_max = T(0), inv_sum = T(0);
};

// Below this gap between a prior's best foreground logit and its largest logit, no
// foreground probability exceeds score_threshold: each is <= exp(gap), as the sum of exps
// is >= 1; the margin covers the rounding of exp. -inf (nothing skipped) for thresholds
// at which exp's relative error is not small (<= 1e-20 reaches float denormals).
template <class T>
T min_logit_gap(double score_threshold) {
  if (!(score_threshold > 1e-20)) return -std::numeric_limits<T>::infinity();
  return static_cast<T>(std::log(score_threshold) - 1e-3);
}

constexpr int64_t kBlockPriors = 16;

// The priors of [begin, end) (at most kBlockPriors) that may be candidates: a finite box
// and a best foreground logit within min_gap of the row maximum. Writes them to priors[],
// their row maxima, and exp(logit - row maximum) of their C + 1 logits to exps (row-major);
// returns how many. One exp loop over the block keeps the vector units busy.
template <class T>
YF_INLINE int64_t block_exps(const T* boxes, const T* logits, int64_t C, int64_t begin, int64_t end,
                             T min_gap, int64_t* priors, T* row_max, T* exps) {
  const int64_t n = C + 1;
  int64_t rows = 0;
  for (int64_t p = begin; p < end; ++p) {
    const T* row = logits + p * n;
    const T foreground_max = max_of(row + 1, C);
    const T m = row[0] > foreground_max ? row[0] : foreground_max;
    if (!box_is_finite(boxes + 4 * p) || foreground_max - m < min_gap) continue;
    T* shifted = exps + rows * n;
    for (int64_t j = 0; j < n; ++j) shifted[j] = row[j] - m;
    priors[rows] = p;
    row_max[rows] = m;
    ++rows;
  }
  for (int64_t i = 0; i < rows * n; ++i) exps[i] = exp_nonpositive(exps[i]);
  return rows;
}

// Whether a prior with these C + 1 exps is a candidate (best foreground probability >
// score_threshold; a NaN or +inf logit makes the sum NaN), with its foreground
// probabilities in probs[0, C) and 1 / sum of exps in inv_sum when it is.
template <class T>
YF_INLINE bool foreground_probs(const T* exps, int64_t C, T score_threshold, T* probs, T& inv_sum) {
  const T sum = lane_sum(exps, C + 1);
  if (!(sum == sum)) return false;
  inv_sum = T(1) / sum;
  for (int64_t c = 0; c < C; ++c) probs[c] = exps[c + 1] * inv_sum;
  return max_of(probs, C) > score_threshold;
}

// The candidates' probabilities of every stride-th prior, prior-major [n, C].
template <class T>
YF_INLINE void sample_probs(const T* boxes, const T* logits, int64_t C, int64_t P, T min_gap,
                            T score_threshold, int64_t stride, std::vector<T>& rows) {
  std::vector<T> exps(C + 1), probs(C);
  int64_t prior;
  T row_max, inv_sum;
  for (int64_t p = 0; p < P; p += stride)
    if (block_exps(boxes, logits, C, p, p + 1, min_gap, &prior, &row_max, exps.data()) == 1 &&
        foreground_probs(exps.data(), C, score_threshold, probs.data(), inv_sum))
      rows.insert(rows.end(), probs.begin(), probs.end());
}

// The priors of [begin, end): their softmax and candidate flags, and the candidates'
// scores offered to one TopK per class. The classes whose bound a prior reaches are found
// with a vectorized compare against a copy of the bounds; most priors reach none.
template <class T>
YF_INLINE void select_range(const T* boxes, const T* logits, int64_t C, int64_t begin, int64_t end,
                            T min_gap, T score_threshold, std::vector<TopK<T>>& tops,
                            Softmax<T>* softmax, uint8_t* is_candidate) {
  const int64_t padded = (C + 7) / 8 * 8;
  std::vector<T> exps(kBlockPriors * (C + 1)), row_max(kBlockPriors), probs(padded, T(0)),
      bounds(padded, std::numeric_limits<T>::infinity());
  std::vector<int64_t> priors(kBlockPriors);
  std::vector<uint8_t> passes(padded, 0);
  for (int64_t c = 0; c < C; ++c) bounds[c] = tops[c].bound;
  for (int64_t block = begin; block < end; block += kBlockPriors) {
    const int64_t rows = block_exps(boxes, logits, C, block, std::min(block + kBlockPriors, end),
                                    min_gap, priors.data(), row_max.data(), exps.data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t p = priors[r];
      T inv_sum;
      if (!foreground_probs(exps.data() + r * (C + 1), C, score_threshold, probs.data(), inv_sum))
        continue;
      is_candidate[p] = 1;
      softmax[p] = {row_max[r], inv_sum};
      for (int64_t c = 0; c < padded; ++c) passes[c] = probs[c] >= bounds[c];
      for (int64_t word = 0; word < padded; word += 8) {
        uint64_t bits;
        std::memcpy(&bits, passes.data() + word, sizeof bits);
        if (bits == 0) continue;
        for (int64_t c = word; c < word + 8; ++c) {
          if (!passes[c]) continue;
          tops[c].push(probs[c], p);
          bounds[c] = tops[c].bound;
        }
      }
    }
  }
}

YF_VECTOR_CLONES void sample_candidates(const float* boxes, const float* logits, int64_t C,
                                        int64_t P, float min_gap, float score_threshold,
                                        int64_t stride, std::vector<float>& rows) {
  sample_probs(boxes, logits, C, P, min_gap, score_threshold, stride, rows);
}

YF_VECTOR_CLONES void sample_candidates(const double* boxes, const double* logits, int64_t C,
                                        int64_t P, double min_gap, double score_threshold,
                                        int64_t stride, std::vector<double>& rows) {
  sample_probs(boxes, logits, C, P, min_gap, score_threshold, stride, rows);
}

YF_VECTOR_CLONES void select_candidates(const float* boxes, const float* logits, int64_t C,
                                        int64_t begin, int64_t end, float min_gap,
                                        float score_threshold, std::vector<TopK<float>>& tops,
                                        Softmax<float>* softmax, uint8_t* is_candidate) {
  select_range(boxes, logits, C, begin, end, min_gap, score_threshold, tops, softmax, is_candidate);
}

YF_VECTOR_CLONES void select_candidates(const double* boxes, const double* logits, int64_t C,
                                        int64_t begin, int64_t end, double min_gap,
                                        double score_threshold, std::vector<TopK<double>>& tops,
                                        Softmax<double>* softmax, uint8_t* is_candidate) {
  select_range(boxes, logits, C, begin, end, min_gap, score_threshold, tops, softmax, is_candidate);
}

// Per class, a starting bound for its top k: the score of rank 3 k / P of the sampled
// candidates, which about 3 k candidates of all P priors reach; -inf where the sample is
// too small to tell.
template <class T>
std::vector<T> starting_bounds(const T* boxes, const T* logits, int64_t C, int64_t P, int64_t k,
                               T min_gap, T score_threshold) {
  constexpr int64_t kSampleStride = 32;
  std::vector<T> bounds(C, -std::numeric_limits<T>::infinity());
  const int64_t sampled = (P + kSampleStride - 1) / kSampleStride;
  const int64_t rank = 3 * k * sampled / P;
  if (rank < 1) return bounds;
  std::vector<T> rows;  // [n, C]
  sample_candidates(boxes, logits, C, P, min_gap, score_threshold, kSampleStride, rows);
  const int64_t n = int64_t(rows.size()) / C;
  if (n < rank) return bounds;
  at::parallel_for(0, C, 8, [&](int64_t begin, int64_t end) {
    std::vector<T> column(n);
    for (int64_t c = begin; c < end; ++c) {
      for (int64_t i = 0; i < n; ++i) column[i] = rows[i * C + c];
      std::nth_element(column.begin(), column.begin() + (rank - 1), column.end(),
                       std::greater<T>());
      bounds[c] = column[rank - 1];
    }
  });
  return bounds;
}

// The top k of class c from every candidate prior.
template <class T>
std::vector<Ranked<T>> rank_class(const T* logits, int64_t C, int64_t P, int64_t c, int64_t k,
                                  const Softmax<T>* softmax, const uint8_t* is_candidate) {
  TopK<T> top(k);
  for (int64_t p = 0; p < P; ++p)
    if (is_candidate[p])
      top.offer(
          exp_nonpositive(logits[p * (C + 1) + c + 1] - softmax[p].row_max) * softmax[p].inv_sum,
          p);
  return top.ranked();
}

// Per class, the top k candidates in rank order.
template <class T>
std::vector<std::vector<Ranked<T>>> detect_top_k(const T* boxes, const T* logits, int64_t C,
                                                 int64_t P, int64_t k, double score_threshold) {
  std::vector<std::vector<Ranked<T>>> ranked(C);
  if (k == 0 || C == 0 || P == 0) return ranked;
  const T min_gap = min_logit_gap<T>(score_threshold);
  const T threshold = static_cast<T>(score_threshold);
  const std::vector<T> start = starting_bounds(boxes, logits, C, P, k, min_gap, threshold);

  constexpr int64_t kMinPriorsPerRange = 1024;
  const int64_t ranges =
      std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), P / kMinPriorsPerRange));
  std::vector<std::vector<TopK<T>>> tops(ranges, std::vector<TopK<T>>(C, TopK<T>(k)));
  for (auto& range_tops : tops)
    for (int64_t c = 0; c < C; ++c) range_tops[c].bound = start[c];
  std::vector<Softmax<T>> softmax(P);
  std::vector<uint8_t> is_candidate(P);
  at::parallel_for(0, ranges, 1, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r)
      select_candidates(boxes, logits, C, P * r / ranges, P * (r + 1) / ranges, min_gap, threshold,
                        tops[r], softmax.data(), is_candidate.data());
  });

  for_each_class(C, [&](int64_t c) {
    for (int64_t r = 1; r < ranges; ++r) tops[0][c].absorb(tops[r][c]);
    const bool bound_too_high =
        int64_t(tops[0][c].items.size()) < k && start[c] > -std::numeric_limits<T>::infinity();
    ranked[c] = bound_too_high ? rank_class(logits, C, P, c, k, softmax.data(), is_candidate.data())
                               : tops[0][c].ranked();
  });
  return ranked;
}

}  // namespace

NmsResult fast_nms(const at::Tensor& boxes_in, const at::Tensor& scores_in,
                   const at::Tensor& coeffs_in, double iou_threshold, int64_t top_k,
                   double score_threshold, int64_t max_detections, std::string method) {
  check_nms_args(boxes_in, scores_in, coeffs_in, iou_threshold, top_k, score_threshold,
                 max_detections);
  const NmsMethod nms_method = parse_nms_method(method);
  const at::ScalarType dtype = compute_type(boxes_in);
  const auto boxes = boxes_in.to(dtype).contiguous();
  const auto scores = scores_in.to(dtype).contiguous();
  const auto coeffs = coeffs_in.to(dtype).contiguous();
  const int64_t C = scores.size(0), P = boxes.size(0);
  PaddedOutputs out(nms_output_size(C, P, top_k, max_detections), coeffs.size(1), boxes.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "fast_nms_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const scalar_t* s = scores.data_ptr<scalar_t>();
    const auto candidate = find_candidates(b, s, C, P, static_cast<scalar_t>(score_threshold));
    const auto ranked = top_k_per_class(s, candidate.data(), C, P, std::min(top_k, P));
    nms_and_write(b, coeffs.data_ptr<scalar_t>(), coeffs.size(1), ranked,
                  static_cast<scalar_t>(iou_threshold), nms_method, out.boxes, out.coeffs,
                  out.labels, out.scores, out.count);
  });
  return out.result(boxes_in.scalar_type());
}

NmsResult detect(const at::Tensor& loc, const at::Tensor& conf_logits_in,
                 const at::Tensor& coeffs_in, const at::Tensor& priors, double variance_xy,
                 double variance_wh, double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, std::string method) {
  const int64_t C =
      check_detect_args(loc, conf_logits_in, coeffs_in, priors, variance_xy, variance_wh,
                        iou_threshold, top_k, score_threshold, max_detections);
  const NmsMethod nms_method = parse_nms_method(method);
  const at::ScalarType dtype = compute_type(loc);
  // Decoding is cheap next to the softmax; the decode kernel's boxes are bit-identical to
  // the official ones (its exp is ATen's).
  const auto boxes = decode_boxes(loc.to(dtype), priors.to(dtype), variance_xy, variance_wh);
  const auto conf_logits = conf_logits_in.to(dtype).contiguous();
  const auto coeffs = coeffs_in.to(dtype).contiguous();
  const int64_t P = loc.size(0);
  PaddedOutputs out(nms_output_size(C, P, top_k, max_detections), coeffs.size(1), boxes.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "detect_cpu", [&] {
    const scalar_t* b = boxes.data_ptr<scalar_t>();
    const auto ranked = detect_top_k(b, conf_logits.data_ptr<scalar_t>(), C, P, std::min(top_k, P),
                                     score_threshold);
    nms_and_write(b, coeffs.data_ptr<scalar_t>(), coeffs.size(1), ranked,
                  static_cast<scalar_t>(iou_threshold), nms_method, out.boxes, out.coeffs,
                  out.labels, out.scores, out.count);
  });
  return out.result(loc.scalar_type());
}

}  // namespace cpu
}  // namespace yf
