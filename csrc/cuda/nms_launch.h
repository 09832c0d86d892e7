// Launch logic of fast_nms and detect on the device (kernels: nms_kernels.cuh), for any
// Launch policy (real launches or the host emulation; see launch.h). Two kernel launches
// per call for every dtype (float16/bfloat16 read as such), no ATen kernels besides copies
// of non-contiguous inputs,
// no host synchronisation, padded static outputs: the path can be captured in a CUDA
// graph. The callers check the arguments first (csrc/checks.h).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "../checks.h"
#include "../ops.h"
#include "launch.h"
#include "nms_kernels.cuh"

namespace yf {
namespace launch {

// Largest top_k and output length: sorted in shared memory, bits of one class in a warp.
constexpr int64_t kMaxRanked = 2048;
static_assert(kMaxRanked <= kernels::kMaxWords * kernels::kTile,
              "class_nms holds K / 64 removed words");

inline int64_t next_power_of_two(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// Tensor options of the element type A (the arithmetic type of the kernels' buffers).
template <class A>
at::TensorOptions options_of(const at::Tensor& like) {
  return like.options().dtype(c10::CppTypeToScalarType<A>::value);
}

struct DeviceNmsOutputs {
  at::Tensor boxes, coeffs, labels, scores, count;
  DeviceNmsOutputs(int64_t M, int64_t k, const at::TensorOptions& options)
      : boxes(at::empty({M, 4}, options)),
        coeffs(at::empty({M, k}, options)),
        labels(at::empty({M}, options.dtype(at::kLong))),
        scores(at::empty({M}, options)),
        count(at::empty({}, options.dtype(at::kLong))) {}
  NmsResult result() const { return {boxes, coeffs, labels, scores, count}; }
};

// Dynamic shared memory of a select_top_k_block over n items, k_pad of them selected, in a
// kernel that needs `after_select` bytes after the items once the select is done: the k_pad
// items, then the larger of the n packed float keys (when they fit under the opt-in limit
// with the static arrays) and after_select.
struct SelectShared {
  size_t bytes;
  bool keys;
};
// class_nms's static arrays: the select's histogram, state, slots and prefix (twice when the
// scores are float16/bfloat16: the merge's select reads float), the removed words; sm_90's
// 1 KiB reserve (ptxas: 2384 bytes for float, 3488 for float16; checked in test_sass.py)
constexpr size_t kSelectStaticBytes = 4096;

template <class A, class Launch>
SelectShared select_shared(const Launch& launch, int64_t n, int64_t k_pad,
                           size_t after_select = 0) {
  const size_t limit = launch.max_opt_in_shared_bytes() - kSelectStaticBytes;
  const size_t items = size_t(k_pad) * sizeof(kernels::Item<A>);
  const size_t keys = size_t(n) * sizeof(unsigned long long);
  const bool packed = kernels::kPackedKeys<A> && items + std::max(keys, after_select) <= limit;
  return {items + std::max(packed ? keys : 0, after_select), packed};
}

// A launch of class_nms (static shared memory <= kSelectStaticBytes)
// with `bytes` of dynamic shared memory, opted in when static plus dynamic exceed the
// default 48 KiB.
template <class Launch, class... KernelArgs, class... Args>
void launch_with_shared(const Launch& launch, const char* name, dim3 grid, dim3 block, size_t bytes,
                        void (*kernel)(KernelArgs...), Args&&... args) {
  if (bytes + kSelectStaticBytes > 48 * 1024)
    launch(name, grid, block, LargeSharedBytes{bytes}, kernel, std::forward<Args>(args)...);
  else
    launch(name, grid, block, bytes, kernel, std::forward<Args>(args)...);
}

// Grids: class_nms puts the C classes on grid.x, whose limit is 2^31 - 1; the merge's radix
// keys hold 32 bits of the index among the C * min(K, M) survivors it ranks.
inline void check_ranked_sizes(int64_t C, int64_t P, int64_t K, int64_t M, int64_t top_k,
                               int64_t max_detections, const char* scores_name) {
  TORCH_CHECK_VALUE(P < (int64_t(1) << 31), scores_name, " on CUDA: at most 2^31 - 1 priors, got ",
                    P);
  TORCH_CHECK_VALUE(K <= kMaxRanked, "top_k on CUDA must be <= ", kMaxRanked,
                    " (or the number of priors), got ", top_k);
  TORCH_CHECK_VALUE(M <= kMaxRanked, "max_detections on CUDA must be <= ", kMaxRanked,
                    " (or classes x top_k), got ", max_detections);
  TORCH_CHECK_VALUE(C * K < (int64_t(1) << 31), scores_name,
                    " on CUDA: classes x min(top_k, priors) must be < 2^31, got ", C, " x ", K);
  check_allocation({C, std::min(K, M)}, sizeof(int64_t), "NMS on CUDA (survivors)", "top_k");
}

// Dynamic shared memory of class_nms: select_shared's, with what follows the select: the
// ranked boxes and their areas (when they fit beside the items) and, for greedy, a band of
// 64 bitmask rows.
struct ClassNmsShared {
  SelectShared select;
  bool boxes;
};

template <class A, class Launch>
ClassNmsShared class_nms_shared(const Launch& launch, int64_t P, int64_t K, int64_t k_pad,
                                bool greedy) {
  const size_t limit = launch.max_opt_in_shared_bytes() - kSelectStaticBytes;
  const size_t items = size_t(k_pad) * sizeof(kernels::Item<A>);
  const size_t words = size_t((K + kernels::kTile - 1) / kernels::kTile);
  const size_t band = greedy ? kernels::kTile * words * sizeof(uint64_t) : 0;
  const size_t boxes = size_t(kernels::staged_boxes_bytes<A>(K));
  const bool shared_boxes = items + boxes + band <= limit;
  return {select_shared<A>(launch, P, k_pad, (shared_boxes ? boxes : 0) + band), shared_boxes};
}

// class_nms's count of finished class blocks, which the launch before it zeroes
// (candidate_flags / detect_scores); the emulation starts it at a count that is not zero.
template <class Launch>
at::Tensor classes_done_counter(const Launch& launch, const at::TensorOptions& options) {
  auto counter = at::empty({}, options.dtype(at::kUInt32));
  launch.prefill(counter, 7);
  return counter;
}

// Per-class NMS of scores [C, P] (row stride P, element type S) over the candidate priors
// with boxes [P, 4] of B, into out (coefficients and outputs of T); A: arithmetic type.
// One launch: class_nms, whose last block to finish merges the classes (classes_done: its
// count of finished blocks, zeroed by the launch before).
template <class A, class B, class S, class T, class Launch>
void nms_from_scores(const Launch& launch, const at::Tensor& boxes, const at::Tensor& scores,
                     const at::Tensor& is_candidate, unsigned* classes_done,
                     const at::Tensor& coeffs, int64_t K, A iou_threshold, bool greedy,
                     DeviceNmsOutputs& out) {
  const int64_t C = scores.size(0), P = scores.size(1), M = out.boxes.size(0);
  const int64_t L = std::min(M, K);  // survivors per class the merge can take
  const auto options = boxes.options();
  at::Tensor kept_score = at::empty({C, L}, options_of<A>(boxes));
  auto kept_index = at::empty({C, L}, options.dtype(at::kLong));
  auto kept_ok = at::empty({C, L}, options.dtype(at::kByte));
  // Under the emulation, survivors that no block wrote rank first in the merge (a merge
  // before every class is done gives wrong detections, not ones the allocator left right).
  launch.prefill(kept_score, INFINITY);
  launch.prefill(kept_index, 0);
  launch.prefill(kept_ok, 1);
  const int64_t k_pad = next_power_of_two(K), m_pad = next_power_of_two(M);
  const ClassNmsShared shared = class_nms_shared<A>(launch, P, K, k_pad, greedy);
  // The merge ranks all survivors, ties by flat index c * L + slot (class-major).
  const SelectShared merge = select_shared<A>(launch, C * L, m_pad);
  const kernels::ClassSurvivors<A> kept{kept_score.data_ptr<A>(), kept_index.data_ptr<int64_t>(),
                                        kept_ok.data_ptr<uint8_t>(), L};
  const kernels::Detections<T> detections{out.boxes.data_ptr<T>(),
                                          out.coeffs.data_ptr<T>(),
                                          out.labels.data_ptr<int64_t>(),
                                          out.scores.data_ptr<T>(),
                                          out.count.data_ptr<int64_t>(),
                                          M,
                                          coeffs.size(1)};
  launch_with_shared(launch, "class_nms", dim3(unsigned(C)), dim3(kernels::kSelectThreads),
                     std::max(shared.select.bytes, merge.bytes), &kernels::class_nms<S, B, A, T>,
                     scores.data_ptr<S>(), is_candidate.data_ptr<uint8_t>(), P, boxes.data_ptr<B>(),
                     K, k_pad, shared.select.keys, shared.boxes, iou_threshold, greedy, kept,
                     classes_done, coeffs.data_ptr<T>(), m_pad, merge.keys, detections);
}

template <class Launch>
NmsResult fast_nms(const Launch& launch, const at::Tensor& boxes_in, const at::Tensor& scores_in,
                   const at::Tensor& coeffs_in, double iou_threshold, int64_t top_k,
                   double score_threshold, int64_t max_detections, const std::string& method) {
  const bool greedy = parse_nms_method(method) == NmsMethod::kCluster;
  const int64_t C = scores_in.size(0), P = boxes_in.size(0), K = std::min(top_k, P);
  const int64_t M = nms_output_size(C, P, top_k, max_detections);
  check_ranked_sizes(C, P, K, M, top_k, max_detections, "scores");
  const auto boxes = boxes_in.contiguous();
  const auto scores = scores_in.contiguous();
  const auto coeffs = coeffs_in.contiguous();
  DeviceNmsOutputs out(M, coeffs.size(1), boxes.options());
  if (M == 0) {
    out.count.zero_();
    return out.result();
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, boxes.scalar_type(), "fast_nms_cuda", [&] {
        using A = at::opmath_type<scalar_t>;
        auto is_candidate = at::empty({P}, boxes.options().dtype(at::kByte));
        const at::Tensor classes_done = classes_done_counter(launch, boxes.options());
        launch("candidate_flags", blocks_for(P), dim3(kThreads), 0,
               &kernels::candidate_flags<scalar_t, A>, boxes.data_ptr<scalar_t>(),
               scores.data_ptr<scalar_t>(), C, P, static_cast<A>(score_threshold),
               is_candidate.data_ptr<uint8_t>(), classes_done.data_ptr<uint32_t>());
        nms_from_scores<A, scalar_t, scalar_t, scalar_t>(
            launch, boxes, scores, is_candidate, classes_done.data_ptr<uint32_t>(), coeffs, K,
            static_cast<A>(iou_threshold), greedy, out);
      });
  return out.result();
}

template <class Launch>
NmsResult detect(const Launch& launch, const at::Tensor& loc_in, const at::Tensor& logits_in,
                 const at::Tensor& coeffs_in, const at::Tensor& priors_in, double variance_xy,
                 double variance_wh, double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, const std::string& method) {
  const int64_t C = logits_in.size(1) - 1;
  const bool greedy = parse_nms_method(method) == NmsMethod::kCluster;
  const int64_t P = loc_in.size(0), K = std::min(top_k, P);
  const int64_t M = nms_output_size(C, P, top_k, max_detections);
  check_ranked_sizes(C, P, K, M, top_k, max_detections, "conf_logits");
  const auto loc = loc_in.contiguous();
  const auto logits = logits_in.contiguous();
  const auto coeffs = coeffs_in.contiguous();
  const auto priors = priors_in.contiguous();
  DeviceNmsOutputs out(M, coeffs.size(1), loc.options());
  if (M == 0) {
    out.count.zero_();
    return out.result();
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, loc.scalar_type(), "detect_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    at::Tensor boxes = at::empty({P, 4}, options_of<A>(loc));
    at::Tensor probs = at::empty({C, P}, options_of<A>(loc));
    auto is_candidate = at::empty({P}, loc.options().dtype(at::kByte));
    const at::Tensor classes_done = classes_done_counter(launch, loc.options());
    const dim3 score_blocks(
        unsigned(std::max<int64_t>(1, (P + kernels::kScorePriors - 1) / kernels::kScorePriors)));
    launch("detect_scores", score_blocks, dim3(kernels::kScoreThreads), 0,
           &kernels::detect_scores<scalar_t, A>, loc.data_ptr<scalar_t>(),
           priors.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(), C, P,
           static_cast<A>(variance_xy), static_cast<A>(variance_wh),
           static_cast<A>(score_threshold), boxes.data_ptr<A>(), probs.data_ptr<A>(),
           is_candidate.data_ptr<uint8_t>(), classes_done.data_ptr<uint32_t>());
    nms_from_scores<A, A, A, scalar_t>(launch, boxes, probs, is_candidate,
                                       classes_done.data_ptr<uint32_t>(), coeffs, K,
                                       static_cast<A>(iou_threshold), greedy, out);
  });
  return out.result();
}

}  // namespace launch
}  // namespace yf
