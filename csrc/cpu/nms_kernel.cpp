// CPU Fast NMS / Cluster NMS.
//
// Per class: candidates (priors whose best class score passes the threshold and whose
// box is finite) are ranked by score (ties by prior index), the top_k are kept, and box
// j survives if no higher-ranked box i suppresses it: every i < j for "fast" (suppressed
// boxes still suppress), only surviving i for "cluster" (= greedy NMS). Survivors of all
// classes are ranked by score (ties class-major) and cut to max_detections. Outputs are
// padded to nms_output_size() rows; the fifth output holds the number of valid rows.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../common/box_math.h"
#include "../ops.h"

namespace yf {
namespace cpu {
namespace {

template <class T>
struct Ranked {
  T score;
  int64_t index;  // prior index (per class) or flat class-major index (global)
};

// Descending score, ascending index: a strict weak order for non-NaN scores.
template <class T>
bool ranks_before(const Ranked<T>& a, const Ranked<T>& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

template <class T>
void top_k_in_place(std::vector<Ranked<T>>& items, int64_t k) {
  if (int64_t(items.size()) > k) {
    std::nth_element(items.begin(), items.begin() + k, items.end(), ranks_before<T>);
    items.resize(k);
  }
  std::sort(items.begin(), items.end(), ranks_before<T>);
}

// The top_k candidates of one class in rank order, in one pass: a buffer of up to 4 top_k
// items is cut back to its top_k whenever it fills, and its k-th best score then bounds
// what can still enter (ties enter too; the final selection orders them by index).
template <class T>
std::vector<Ranked<T>> top_candidates(const T* class_scores, const std::vector<int64_t>& candidates,
                                      int64_t top_k) {
  std::vector<Ranked<T>> ranked;
  const int64_t k = std::min<int64_t>(top_k, int64_t(candidates.size()));
  if (k == 0) return ranked;
  const size_t capacity = size_t(4 * k);
  ranked.reserve(std::min(capacity, candidates.size()));
  bool bounded = false;
  T bound = T(0);
  for (const int64_t p : candidates) {
    const T score = class_scores[p];
    if (bounded && score < bound) continue;
    ranked.push_back({score, p});
    if (ranked.size() == capacity) {
      std::nth_element(ranked.begin(), ranked.begin() + (k - 1), ranked.end(), ranks_before<T>);
      ranked.resize(k);
      bound = ranked[k - 1].score;  // the k-th best so far
      bounded = true;
    }
  }
  top_k_in_place(ranked, k);
  return ranked;
}

// Priors whose best class score is > score_threshold (a NaN score anywhere disqualifies,
// as torch.max propagates NaN) and whose box is finite, in ascending order.
template <class T>
std::vector<int64_t> find_candidates(const T* boxes, const T* scores, int64_t C, int64_t P,
                                     T score_threshold) {
  std::vector<T> best(P, -std::numeric_limits<T>::infinity());
  std::vector<uint8_t> has_nan(P, 0);
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
  });
  std::vector<int64_t> candidates;
  for (int64_t p = 0; p < P; ++p)
    if (!has_nan[p] && best[p] > score_threshold && box_is_finite(boxes + 4 * p))
      candidates.push_back(p);
  return candidates;
}

// Boxes in structure-of-arrays form with their areas, for vectorized IoU tests.
template <class T>
struct BoxColumns {
  std::vector<T> x1, y1, x2, y2, area;

  void push(const T* box) {
    x1.push_back(box[0]);
    y1.push_back(box[1]);
    x2.push_back(box[2]);
    y2.push_back(box[3]);
    area.push_back((box[2] - box[0]) * (box[3] - box[1]));
  }
  int64_t size() const { return int64_t(x1.size()); }
};

// Whether any of boxes [begin, end) suppresses box b. Same arithmetic as box_iou(); the
// plain min/max equal its NaN-propagating ones because candidate boxes are finite.
// Branch-free so that the loop vectorizes.
template <class T>
bool any_suppresses(const BoxColumns<T>& a, int64_t begin, int64_t end, const T* b, T area_b,
                    T iou_threshold) {
  bool hit = false;
  for (int64_t i = begin; i < end; ++i) {
    const T right = a.x2[i] < b[2] ? a.x2[i] : b[2];
    const T left = a.x1[i] > b[0] ? a.x1[i] : b[0];
    const T bottom = a.y2[i] < b[3] ? a.y2[i] : b[3];
    const T top = a.y1[i] > b[1] ? a.y1[i] : b[1];
    const T iw = right - left > T(0) ? right - left : T(0);
    const T ih = bottom - top > T(0) ? bottom - top : T(0);
    const T inter = iw * ih;
    hit |= !(inter / (a.area[i] + area_b - inter) <= iou_threshold);
  }
  return hit;
}

// Whether box b is suppressed by boxes [0, count): chunks keep the loop vectorized while
// still stopping early once a chunk suppresses.
template <class T>
bool suppressed_by(const BoxColumns<T>& a, int64_t count, const T* b, T iou_threshold) {
  constexpr int64_t kChunk = 32;
  const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
  for (int64_t begin = 0; begin < count; begin += kChunk)
    if (any_suppresses(a, begin, std::min(begin + kChunk, count), b, area_b, iou_threshold))
      return true;
  return false;
}

// Survivors of one class, as ranked (score, prior) pairs in rank order.
template <class T>
std::vector<Ranked<T>> nms_one_class(const T* boxes, const T* class_scores,
                                     const std::vector<int64_t>& candidates, int64_t top_k,
                                     T iou_threshold, NmsMethod method) {
  const std::vector<Ranked<T>> ranked = top_candidates(class_scores, candidates, top_k);
  // "fast": every higher-ranked box suppresses; "cluster" (greedy): only kept ones.
  BoxColumns<T> suppressors;
  std::vector<Ranked<T>> kept;
  for (const Ranked<T>& item : ranked) {
    const T* box = boxes + 4 * item.index;
    const bool suppressed = suppressed_by(suppressors, suppressors.size(), box, iou_threshold);
    if (!suppressed) kept.push_back(item);
    if (!suppressed || method == NmsMethod::kFast) suppressors.push(box);
  }
  return kept;
}

template <class T>
void fast_nms_impl(const at::Tensor& boxes_t, const at::Tensor& scores_t, const at::Tensor& coeffs_t,
                   T iou_threshold, int64_t top_k, T score_threshold, NmsMethod method,
                   at::Tensor& out_boxes, at::Tensor& out_coeffs, at::Tensor& out_labels,
                   at::Tensor& out_scores, at::Tensor& out_count) {
  const int64_t C = scores_t.size(0), P = scores_t.size(1), K = coeffs_t.size(1);
  const int64_t M = out_boxes.size(0);
  const T* boxes = boxes_t.data_ptr<T>();
  const T* scores = scores_t.data_ptr<T>();
  const std::vector<int64_t> candidates = find_candidates(boxes, scores, C, P, score_threshold);

  std::vector<std::vector<Ranked<T>>> kept(C);
  at::parallel_for(0, C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      kept[c] = nms_one_class(boxes, scores + c * P, candidates, top_k, iou_threshold, method);
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
  const T* coeffs = coeffs_t.data_ptr<T>();
  for (int64_t m = 0; m < count; ++m) {
    const int64_t p = prior_of[all[m].index];
    std::copy(boxes + 4 * p, boxes + 4 * p + 4, ob + 4 * m);
    std::copy(coeffs + K * p, coeffs + K * (p + 1), oc + K * m);
    ol[m] = class_of[all[m].index];
    os[m] = all[m].score;
  }
  out_count.fill_(count);
}

}  // namespace

NmsResult fast_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                   double iou_threshold, int64_t top_k, double score_threshold,
                   int64_t max_detections, std::string method) {
  check_nms_args(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections);
  const NmsMethod nms_method = parse_nms_method(method);
  const int64_t M = nms_output_size(scores.size(0), boxes.size(0), top_k, max_detections);
  auto out_boxes = at::zeros({M, 4}, boxes.options());
  auto out_coeffs = at::zeros({M, coeffs.size(1)}, coeffs.options());
  auto out_labels = at::zeros({M}, boxes.options().dtype(at::kLong));
  auto out_scores = at::zeros({M}, boxes.options());
  auto out_count = at::zeros({}, boxes.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "fast_nms_cpu", [&] {
    fast_nms_impl<scalar_t>(boxes.contiguous(), scores.contiguous(), coeffs.contiguous(),
                            static_cast<scalar_t>(iou_threshold), top_k,
                            static_cast<scalar_t>(score_threshold), nms_method, out_boxes,
                            out_coeffs, out_labels, out_scores, out_count);
  });
  return {out_boxes, out_coeffs, out_labels, out_scores, out_count};
}

}  // namespace cpu
}  // namespace yf
