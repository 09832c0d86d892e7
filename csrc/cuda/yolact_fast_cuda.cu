// CUDA implementations of the yolact_fast ops: the launch logic of launch.h with real
// kernel launches on the current stream. Arguments are checked before the device guard is
// built, so mixed devices raise the documented ValueError. Compiled with --fmad=false, so
// products and sums round like the CPU kernels (device expf may still differ by ulps).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <mutex>
#include <set>
#include <utility>

#include "launch.h"
#include "nms_launch.h"

namespace yf {
namespace {

struct DeviceLaunch {
  cudaStream_t stream;
  int device;
  template <class Tensor>
  void prefill(Tensor&, double) const {}  // the emulation's check only (emulation::HostLaunch)
  size_t max_opt_in_shared_bytes() const {
    int bytes = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return size_t(bytes);
  }
  template <class... KernelArgs, class... Args>
  void operator()(const char*, dim3 grid, dim3 block, size_t shared_bytes,
                  void (*kernel)(KernelArgs...), Args&&... args) const {
    kernel<<<grid, block, shared_bytes, stream>>>(static_cast<KernelArgs>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  template <class... KernelArgs, class... Args>
  void operator()(const char* name, dim3 grid, dim3 block, LargeSharedBytes shared,
                  void (*kernel)(KernelArgs...), Args&&... args) const {
    allow_opt_in_shared(reinterpret_cast<const void*>(kernel));
    (*this)(name, grid, block, shared.bytes, kernel, std::forward<Args>(args)...);
  }

 private:
  // Raises the kernel's dynamic shared memory limit on this device to all the opt-in allows
  // beside its static shared memory, once per (kernel, device): one limit valid for every
  // launch size, so that host threads launching the same kernel with different sizes never
  // lower it under each other (as setting it to each launch's size before the launch would).
  void allow_opt_in_shared(const void* kernel) const {
    static std::mutex mutex;
    static std::set<std::pair<const void*, int>> allowed;
    std::lock_guard<std::mutex> lock(mutex);
    if (allowed.count({kernel, device})) return;
    cudaFuncAttributes attributes;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
    const size_t limit = max_opt_in_shared_bytes() - attributes.sharedSizeBytes;
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(limit)));
    allowed.insert({kernel, device});
  }
};

DeviceLaunch on(const at::Tensor& t) {
  const int device = t.device().index();
  return DeviceLaunch{at::cuda::getCurrentCUDAStream(device).stream(), device};
}

at::Tensor make_priors(const at::Tensor& anchor_wh, at::IntArrayRef feature_sizes,
                       at::IntArrayRef anchors_per_level) {
  c10::cuda::CUDAGuard guard(anchor_wh.device());
  return launch::make_priors(on(anchor_wh), anchor_wh, feature_sizes, anchors_per_level);
}

at::Tensor decode_boxes(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                        double variance_wh) {
  check_decode_args(loc, priors, variance_xy, variance_wh);
  c10::cuda::CUDAGuard guard(loc.device());
  return launch::decode_boxes(on(loc), loc, priors, variance_xy, variance_wh);
}

NmsResult fast_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                   double iou_threshold, int64_t top_k, double score_threshold,
                   int64_t max_detections, std::string method) {
  check_nms_args(boxes, scores, coeffs, iou_threshold, top_k, score_threshold, max_detections);
  c10::cuda::CUDAGuard guard(boxes.device());
  return launch::fast_nms(on(boxes), boxes, scores, coeffs, iou_threshold, top_k, score_threshold,
                          max_detections, method);
}

NmsResult detect(const at::Tensor& loc, const at::Tensor& conf_logits, const at::Tensor& coeffs,
                 const at::Tensor& priors, double variance_xy, double variance_wh,
                 double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, std::string method) {
  check_detect_args(loc, conf_logits, coeffs, priors, variance_xy, variance_wh, iou_threshold,
                    top_k, score_threshold, max_detections);
  c10::cuda::CUDAGuard guard(loc.device());
  return launch::detect(on(loc), loc, conf_logits, coeffs, priors, variance_xy, variance_wh,
                        iou_threshold, top_k, score_threshold, max_detections, method);
}

at::Tensor assemble_masks(const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  check_mask_args(proto, coeffs, boxes, crop_padding);
  c10::cuda::CUDAGuard guard(proto.device());
  return launch::assemble_masks(on(proto), proto, coeffs, boxes, crop_padding);
}

at::Tensor paste_masks(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                       at::IntArrayRef size, double threshold, double crop_padding) {
  check_paste_args(proto, coeffs, boxes, size, threshold, crop_padding);
  c10::cuda::CUDAGuard guard(proto.device());
  return launch::paste_masks(on(proto), proto, coeffs, boxes, size, threshold, crop_padding);
}

at::Tensor bits_checksum(at::TensorList tensors) {
  check_checksum_args(tensors);
  c10::cuda::CUDAGuard guard(tensors[0].device());
  return launch::bits_checksum(on(tensors[0]), tensors);
}

}  // namespace
}  // namespace yf

TORCH_LIBRARY_IMPL(yolact_fast, CUDA, m) {
  m.impl("make_priors", &yf::make_priors);
  m.impl("decode_boxes", &yf::decode_boxes);
  m.impl("fast_nms", &yf::fast_nms);
  m.impl("detect", &yf::detect);
  m.impl("assemble_masks", &yf::assemble_masks);
  m.impl("paste_masks", &yf::paste_masks);
  m.impl("bits_checksum", &yf::bits_checksum);
}
