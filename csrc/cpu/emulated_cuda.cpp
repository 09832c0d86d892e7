// The CUDA launch logic and kernels (csrc/cuda/launch.h, kernels.cuh) instantiated with
// a host emulation of the grid, on CPU tensors. Tests compare these with the reference,
// so the CUDA index arithmetic is exercised on machines without a GPU.
#include "../common/emulation.h"
#include "../cuda/launch.h"
#include "../ops.h"

namespace yf {
namespace emulated_cuda {
namespace {

constexpr emulation::HostLaunch kHost{};

void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "emulated CUDA kernels take CPU tensors; ", name,
                    " is on ", t.device());
}

}  // namespace

at::Tensor make_priors(const at::Tensor& anchor_wh, at::IntArrayRef feature_sizes,
                       at::IntArrayRef anchors_per_level) {
  check_cpu(anchor_wh, "anchor_wh");
  return launch::make_priors(kHost, anchor_wh, feature_sizes, anchors_per_level);
}

at::Tensor decode_boxes(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                        double variance_wh) {
  check_cpu(loc, "loc");
  return launch::decode_boxes(kHost, loc, priors, variance_xy, variance_wh);
}

NmsResult fast_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                   double iou_threshold, int64_t top_k, double score_threshold,
                   int64_t max_detections, std::string method) {
  check_cpu(boxes, "boxes");
  return launch::fast_nms(kHost, boxes, scores, coeffs, iou_threshold, top_k, score_threshold,
                          max_detections, method);
}

NmsResult detect(const at::Tensor& loc, const at::Tensor& conf_logits, const at::Tensor& coeffs,
                 const at::Tensor& priors, double variance_xy, double variance_wh,
                 double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, std::string method) {
  check_cpu(loc, "loc");
  return launch::detect(kHost, loc, conf_logits, coeffs, priors, variance_xy, variance_wh,
                        iou_threshold, top_k, score_threshold, max_detections, method);
}

at::Tensor assemble_masks(const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  check_cpu(proto, "proto");
  return launch::assemble_masks(kHost, proto, coeffs, boxes, crop_padding);
}

at::Tensor paste_masks(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                       at::IntArrayRef size, double threshold, double crop_padding) {
  check_cpu(proto, "proto");
  return launch::paste_masks(kHost, proto, coeffs, boxes, size, threshold, crop_padding);
}

}  // namespace emulated_cuda
}  // namespace yf
