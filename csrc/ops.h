// Declarations of the kernels behind the yolact_fast ops (one per device) and of the
// host-emulated CUDA launchers used in tests.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace yf {

using NmsResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Method of fast_nms: "fast" (YOLACT's matrix NMS) or "cluster" (equals greedy NMS).
enum class NmsMethod { kFast, kCluster };
NmsMethod parse_nms_method(const std::string& method);

// Padded output length of fast_nms: min(max_detections, classes * min(top_k, priors)).
int64_t nms_output_size(int64_t num_classes, int64_t num_priors, int64_t top_k,
                        int64_t max_detections);

namespace cpu {
at::Tensor make_priors(const at::Tensor& anchor_wh, at::IntArrayRef feature_sizes,
                       at::IntArrayRef anchors_per_level);
at::Tensor decode_boxes(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                        double variance_wh);
NmsResult fast_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                   double iou_threshold, int64_t top_k, double score_threshold,
                   int64_t max_detections, std::string method);
NmsResult detect(const at::Tensor& loc, const at::Tensor& conf_logits, const at::Tensor& coeffs,
                 const at::Tensor& priors, double variance_xy, double variance_wh,
                 double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, std::string method);
at::Tensor assemble_masks(const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding);
at::Tensor paste_masks(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                       at::IntArrayRef size, double threshold, double crop_padding);
at::Tensor bits_checksum(at::TensorList tensors);
}  // namespace cpu

}  // namespace yf
