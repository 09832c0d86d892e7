// The CUDA launchers and kernels (csrc/cuda/) run on CPU tensors under the host emulation
// (tests only): the ops' signatures, and the kernels' tuning constants that the SASS and
// roofline checks compare against.
#pragma once

#include <map>
#include <string>

#include "../ops.h"

namespace yf {
namespace emulated_cuda {
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

// Constants of csrc/cuda/ by name (kScanBatch -> "scan_batch", ...).
std::map<std::string, int64_t> kernel_constants();
// kernels::lanes_per_column of csrc/cuda/nms_kernels.cuh.
int lanes_per_column(int columns);
}  // namespace emulated_cuda

}  // namespace yf
