// The CUDA launch logic and kernels (csrc/cuda/launch.h, kernels.cuh) run on CPU tensors
// under the host emulation of csrc/emulation/emulation.h: yolact_fast.testing.emulated_cuda.
#include "emulated_cuda.h"

#include "../cuda/launch.h"
#include "../cuda/nms_launch.h"

namespace yf {
namespace emulated_cuda {
namespace {

constexpr emulation::HostLaunch kHost{};

// After the argument checks (which compare devices): the first tensor's device is all.
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
  check_decode_args(loc, priors, variance_xy, variance_wh);
  check_cpu(loc, "loc");
  return launch::decode_boxes(kHost, loc, priors, variance_xy, variance_wh);
}

NmsResult fast_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                   double iou_threshold, int64_t top_k, double score_threshold,
                   int64_t max_detections, std::string method) {
  check_nms_args(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections);
  check_cpu(boxes, "boxes");
  return launch::fast_nms(kHost, boxes, scores, coeffs, iou_threshold, top_k, score_threshold,
                          max_detections, method);
}

NmsResult detect(const at::Tensor& loc, const at::Tensor& conf_logits, const at::Tensor& coeffs,
                 const at::Tensor& priors, double variance_xy, double variance_wh,
                 double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, std::string method) {
  check_detect_args(loc, conf_logits, coeffs, priors, variance_xy, variance_wh, iou_threshold,
                    top_k, score_threshold, max_detections);
  check_cpu(loc, "loc");
  return launch::detect(kHost, loc, conf_logits, coeffs, priors, variance_xy, variance_wh,
                        iou_threshold, top_k, score_threshold, max_detections, method);
}

at::Tensor assemble_masks(const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  check_mask_args(proto, coeffs, boxes, crop_padding);
  check_cpu(proto, "proto");
  return launch::assemble_masks(kHost, proto, coeffs, boxes, crop_padding);
}

at::Tensor paste_masks(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                       at::IntArrayRef size, double threshold, double crop_padding) {
  check_paste_args(proto, coeffs, boxes, size, threshold, crop_padding);
  check_cpu(proto, "proto");
  return launch::paste_masks(kHost, proto, coeffs, boxes, size, threshold, crop_padding);
}

at::Tensor bits_checksum(at::TensorList tensors) {
  check_checksum_args(tensors);
  check_cpu(tensors[0], "tensors[0]");
  return launch::bits_checksum(kHost, tensors);
}

std::map<std::string, int64_t> kernel_constants() {
  return {
      {"select_static_bytes", int64_t(launch::kSelectStaticBytes)},
      {"select_threads", kernels::kSelectThreads},
      {"scan_batch", kernels::kScanBatch},
      {"cached_logits_float", kernels::kCachedLogits<float>},
      {"cached_logits_double", kernels::kCachedLogits<double>},
      {"iou_tile", kernels::kTile},
      {"iou_split", kernels::kIouSplit},
  };
}

int lanes_per_column(int columns) { return kernels::lanes_per_column(columns); }

}  // namespace emulated_cuda
}  // namespace yf
