#include "checks.h"

#include <c10/util/safe_numerics.h>

#include <algorithm>

#include "ops.h"

namespace yf {

NmsMethod parse_nms_method(const std::string& method) {
  if (method == "fast") return NmsMethod::kFast;
  if (method == "cluster") return NmsMethod::kCluster;
  TORCH_CHECK_VALUE(false, "method must be 'fast' or 'cluster', got '", method, "'");
}

int64_t nms_output_size(int64_t num_classes, int64_t num_priors, int64_t top_k,
                        int64_t max_detections) {
  return std::min(max_detections, checked_mul(num_classes, std::min(top_k, num_priors), "scores"));
}

int64_t checked_mul(int64_t a, int64_t b, const char* name) {
  int64_t product = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(a, b, &product), name, ": the size ", a, " x ", b,
                    " overflows int64");
  return product;
}

int64_t check_allocation(at::IntArrayRef shape, int64_t element_size, const char* op,
                         const char* name) {
  uint64_t bytes = uint64_t(element_size);
  bool overflow = false;
  for (const int64_t size : shape) overflow |= c10::mul_overflows(bytes, uint64_t(size), &bytes);
  TORCH_CHECK_VALUE(!overflow && bytes <= uint64_t(kMaxAllocationBytes), name, ": ", op,
                    " would allocate a tensor of shape ", shape, " with ", element_size,
                    "-byte elements, ", overflow ? std::string("over 2^64") : std::to_string(bytes),
                    " bytes: more than the limit of 2^34 bytes (16 GiB) per tensor");
  return int64_t(bytes);
}

namespace {
// Inputs are copied (made contiguous, float16/bfloat16 widened to float32) or give an output
// of their shape; an expanded view may describe far more than the memory behind it.
using NamedTensors = std::initializer_list<std::pair<const at::Tensor*, const char*>>;

void check_input_copies(const char* op, NamedTensors inputs) {
  for (const auto& [tensor, name] : inputs)
    check_allocation(tensor->sizes(), std::max<int64_t>(tensor->element_size(), sizeof(float)), op,
                     name);
}
}  // namespace

int64_t check_make_priors_args(const at::Tensor& anchor_wh, at::IntArrayRef feature_sizes,
                               at::IntArrayRef anchors_per_level) {
  check_floating(anchor_wh, "anchor_wh");
  check_dim(anchor_wh, 2, "anchor_wh", "[A, 2]");
  check_last_dim(anchor_wh, 2, "anchor_wh", "[A, 2]");
  TORCH_CHECK_VALUE(feature_sizes.size() == 2 * anchors_per_level.size(),
                    "feature_sizes must hold (h, w) for each of the ", anchors_per_level.size(),
                    " levels, got ", feature_sizes.size(), " values");
  int64_t anchors = 0, priors = 0;
  for (size_t l = 0; l < anchors_per_level.size(); ++l) {
    const int64_t h = feature_sizes[2 * l], w = feature_sizes[2 * l + 1];
    TORCH_CHECK_VALUE(h >= 0 && w >= 0 && anchors_per_level[l] >= 0,
                      "feature_sizes and anchors_per_level must be >= 0, got level ", l, " (", h,
                      ", ", w, ") with ", anchors_per_level[l], " anchors");
    anchors += anchors_per_level[l];
    const int64_t level_priors =
        checked_mul(checked_mul(h, w, "feature_sizes"), anchors_per_level[l], "feature_sizes");
    TORCH_CHECK_VALUE(!c10::add_overflows(priors, level_priors, &priors),
                      "feature_sizes: the number of priors overflows int64");
  }
  check_allocation({priors, 4}, sizeof(float), "make_priors", "feature_sizes");
  TORCH_CHECK_VALUE(anchor_wh.size(0) == anchors,
                    "anchor_wh must have sum(anchors_per_level) = ", anchors, " rows, got ",
                    anchor_wh.size(0));
  return priors;
}

namespace {
void check_decode_inputs(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                         double variance_wh, const char* op) {
  check_floating_or_reduced(loc, "loc");
  check_same_dtype(loc, "loc", priors, "priors");
  check_same_device(loc, "loc", priors, "priors");
  check_dim(priors, 2, "priors", "[P, 4] (cx, cy, w, h)");
  check_last_dim(priors, 4, "priors", "[P, 4] (cx, cy, w, h)");
  TORCH_CHECK_VALUE(loc.dim() >= 2 && loc.size(-1) == 4 && loc.size(-2) == priors.size(0),
                    "loc must be [..., P, 4] with P = priors.shape[0] = ", priors.size(0),
                    ", got shape ", shape_str(loc));
  check_input_copies(op, {{&loc, "loc"}, {&priors, "priors"}});
  check_finite_number(variance_xy, "variances[0]");
  check_finite_number(variance_wh, "variances[1]");
}
}  // namespace

void check_decode_args(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                       double variance_wh) {
  check_decode_inputs(loc, priors, variance_xy, variance_wh, "decode_boxes");
}

namespace {
void check_nms_numbers(double score_threshold, double iou_threshold, int64_t top_k,
                       int64_t max_detections) {
  TORCH_CHECK_VALUE(!std::isnan(score_threshold), "score_threshold must not be NaN");
  TORCH_CHECK_VALUE(iou_threshold >= 0, "iou_threshold must be >= 0 (not NaN), got ",
                    iou_threshold);
  TORCH_CHECK_VALUE(top_k >= 0, "top_k must be >= 0, got ", top_k);
  TORCH_CHECK_VALUE(max_detections >= 0, "max_detections must be >= 0, got ", max_detections);
}

// The padded outputs of fast_nms and detect (computed in float32 for float16/bfloat16).
void check_nms_outputs(const at::Tensor& scores, int64_t num_classes, int64_t num_priors, int64_t k,
                       int64_t top_k, int64_t max_detections, const char* op) {
  const int64_t rows = nms_output_size(num_classes, num_priors, top_k, max_detections);
  const int64_t element_size = is_reduced_float(scores) ? sizeof(float) : scores.element_size();
  check_allocation({rows, std::max<int64_t>(k, 4)}, element_size, op,
                   "max_detections (with top_k)");
}
}  // namespace

void check_nms_options(double score_threshold, double iou_threshold, int64_t top_k,
                       int64_t max_detections, const std::string& method) {
  check_nms_numbers(score_threshold, iou_threshold, top_k, max_detections);
  parse_nms_method(method);
}

void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                    double iou_threshold, int64_t top_k, double score_threshold,
                    int64_t max_detections) {
  check_floating_or_reduced(boxes, "boxes");
  check_same_dtype(boxes, "boxes", scores, "scores");
  check_same_dtype(boxes, "boxes", coeffs, "coeffs");
  check_same_device(boxes, "boxes", scores, "scores");
  check_same_device(boxes, "boxes", coeffs, "coeffs");
  check_dim(boxes, 2, "boxes", "[P, 4] (x1, y1, x2, y2)");
  check_last_dim(boxes, 4, "boxes", "[P, 4] (x1, y1, x2, y2)");
  const int64_t P = boxes.size(0);
  TORCH_CHECK_VALUE(scores.dim() == 2 && scores.size(1) == P, "scores must be [C, P] with P = ", P,
                    " (boxes.shape[0]), got shape ", shape_str(scores));
  TORCH_CHECK_VALUE(coeffs.dim() == 2 && coeffs.size(0) == P, "coeffs must be [P, k] with P = ", P,
                    " (boxes.shape[0]), got shape ", shape_str(coeffs));
  check_input_copies("fast_nms", {{&boxes, "boxes"}, {&scores, "scores"}, {&coeffs, "coeffs"}});
  check_nms_numbers(score_threshold, iou_threshold, top_k, max_detections);
  check_nms_outputs(scores, scores.size(0), P, coeffs.size(1), top_k, max_detections, "fast_nms");
}

int64_t check_detect_args(const at::Tensor& loc, const at::Tensor& conf_logits,
                          const at::Tensor& coeffs, const at::Tensor& priors, double variance_xy,
                          double variance_wh, double iou_threshold, int64_t top_k,
                          double score_threshold, int64_t max_detections) {
  TORCH_CHECK_VALUE(loc.dim() == 2, "loc must be [P, 4] (one image), got shape ", shape_str(loc));
  check_decode_inputs(loc, priors, variance_xy, variance_wh, "detect");
  check_same_dtype(loc, "loc", conf_logits, "conf_logits");
  check_same_dtype(loc, "loc", coeffs, "coeffs");
  check_same_device(loc, "loc", conf_logits, "conf_logits");
  check_same_device(loc, "loc", coeffs, "coeffs");
  const int64_t P = loc.size(0);
  TORCH_CHECK_VALUE(conf_logits.dim() == 2 && conf_logits.size(0) == P && conf_logits.size(1) >= 1,
                    "conf_logits must be [P, C + 1] (background first) with P = ", P,
                    " (loc.shape[0]), got shape ", shape_str(conf_logits));
  TORCH_CHECK_VALUE(coeffs.dim() == 2 && coeffs.size(0) == P, "coeffs must be [P, k] with P = ", P,
                    " (loc.shape[0]), got shape ", shape_str(coeffs));
  check_input_copies("detect", {{&conf_logits, "conf_logits"}, {&coeffs, "coeffs"}});
  check_nms_numbers(score_threshold, iou_threshold, top_k, max_detections);
  const int64_t num_classes = conf_logits.size(1) - 1;
  check_nms_outputs(conf_logits, num_classes, P, coeffs.size(1), top_k, max_detections, "detect");
  return num_classes;
}

namespace {
// The arguments assemble_masks and paste_masks share.
void check_mask_inputs(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                       double crop_padding, const char* op) {
  check_floating_or_reduced(proto, "proto");
  check_same_dtype(proto, "proto", coeffs, "coeffs");
  check_same_dtype(proto, "proto", boxes, "boxes");
  check_same_device(proto, "proto", coeffs, "coeffs");
  check_same_device(proto, "proto", boxes, "boxes");
  check_dim(proto, 3, "proto", "[H, W, k]");
  TORCH_CHECK_VALUE(proto.size(0) < (int64_t(1) << 31) && proto.size(1) < (int64_t(1) << 31) &&
                        proto.size(2) < (int64_t(1) << 31),
                    "proto must have H, W, k < 2^31, got shape ", shape_str(proto));
  TORCH_CHECK_VALUE(coeffs.dim() == 2 && coeffs.size(1) == proto.size(2),
                    "coeffs must be [N, k] with k = proto.shape[2] = ", proto.size(2),
                    ", got shape ", shape_str(coeffs));
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == coeffs.size(0),
                    "boxes must be [N, 4] with N = coeffs.shape[0] = ", coeffs.size(0),
                    ", got shape ", shape_str(boxes));
  check_input_copies(op, {{&proto, "proto"}, {&coeffs, "coeffs"}, {&boxes, "boxes"}});
  TORCH_CHECK_VALUE(std::isfinite(crop_padding) && crop_padding >= 0,
                    "crop_padding must be a finite number >= 0, got ", crop_padding);
}

}  // namespace

void check_mask_args(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                     double crop_padding) {
  check_mask_inputs(proto, coeffs, boxes, crop_padding, "assemble_masks");
  // One mask at least, so that an empty output's strides cannot overflow either.
  check_allocation({std::max<int64_t>(coeffs.size(0), 1), proto.size(0), proto.size(1)},
                   proto.element_size(), "assemble_masks", "boxes (N masks of proto's H x W)");
}

void check_paste_args(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                      at::IntArrayRef size, double threshold, double crop_padding) {
  check_mask_inputs(proto, coeffs, boxes, crop_padding, "paste_masks");
  TORCH_CHECK_VALUE(size.size() == 2 && size[0] >= 0 && size[1] >= 0,
                    "size must be (h, w) with h, w >= 0, got ", size);
  TORCH_CHECK_VALUE(threshold >= 0 && threshold <= 1,
                    "threshold must be in [0, 1] (masks are probabilities), got ", threshold);
  // One mask at least, so that an empty output's strides cannot overflow either.
  const int64_t N = coeffs.size(0);
  check_allocation({std::max<int64_t>(N, 1), size[0], size[1]}, sizeof(bool), "paste_masks",
                   "size (with N = boxes.shape[0])");
  if (N == 0 || size[0] == 0 || size[1] == 0) return;  // nothing is computed
  TORCH_CHECK_VALUE(proto.size(0) > 0 && proto.size(1) > 0,
                    "proto must have H, W > 0 to paste masks of size ", size, ", got shape ",
                    shape_str(proto));
  // The workspaces that grow with size (counted at 8-byte values): the interpolation taps
  // of each output row and column, and in the CPU kernel's per-thread buffer, one mask's
  // H + 2 rows resized to w columns.
  check_allocation({size[0] + size[1], 3}, sizeof(double), "paste_masks", "size");
  check_allocation({proto.size(0) + 2, size[1]}, sizeof(double), "paste_masks",
                   "size (with proto's H)");
}

void check_checksum_args(at::TensorList tensors) {
  TORCH_CHECK_VALUE(!tensors.empty(), "tensors must hold at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const std::string name = "tensors[" + std::to_string(i) + "]";
    TORCH_CHECK_VALUE(t.defined(), name, " is undefined");
    check_same_device(tensors[0], "tensors[0]", t, name.c_str());
    const int64_t size = int64_t(t.element_size());
    TORCH_CHECK_TYPE(size == 1 || size == 2 || size == 4 || size == 8 || size == 16, "tensors[", i,
                     "] must have elements of 1, 2, 4, 8 or 16 bytes, got ", t.scalar_type());
  }
}

}  // namespace yf
