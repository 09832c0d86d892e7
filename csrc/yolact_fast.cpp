// Op schemas (one per op), their CPU implementations, and the Python module that
// exposes build information and the host-emulated CUDA launchers to the tests.
#include <torch/extension.h>
#include <torch/library.h>

#include "ops.h"

TORCH_LIBRARY(yolact_fast, m) {
  m.def("make_priors(Tensor anchor_wh, int[] feature_sizes, int[] anchors_per_level) -> Tensor");
  m.def("decode_boxes(Tensor loc, Tensor priors, float variance_xy, float variance_wh) -> Tensor");
  m.def(
      "fast_nms(Tensor boxes, Tensor scores, Tensor coeffs, float iou_threshold, int top_k, "
      "float score_threshold, int max_detections, str method) -> "
      "(Tensor boxes, Tensor coeffs, Tensor labels, Tensor scores, Tensor num_detections)");
  m.def("assemble_masks(Tensor proto, Tensor coeffs, Tensor boxes, float crop_padding) -> Tensor");
  m.def(
      "paste_masks(Tensor proto, Tensor coeffs, Tensor boxes, int[2] size, float threshold, "
      "float crop_padding) -> Tensor");
}

TORCH_LIBRARY_IMPL(yolact_fast, CPU, m) {
  m.impl("make_priors", &yf::cpu::make_priors);
  m.impl("decode_boxes", &yf::cpu::decode_boxes);
  m.impl("fast_nms", &yf::cpu::fast_nms);
  m.impl("assemble_masks", &yf::cpu::assemble_masks);
  m.impl("paste_masks", &yf::cpu::paste_masks);
}

namespace {

bool built_with_cuda() {
#ifdef YF_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "yolact_fast kernels (ops are registered under torch.ops.yolact_fast)";
  m.def("built_with_cuda", &built_with_cuda, "Whether the CUDA kernels were compiled in");

  auto emulated = m.def_submodule(
      "emulated_cuda", "The CUDA launchers and kernels run on CPU tensors under a host emulation "
                       "of the launch grid (for tests; slow)");
  emulated.def("make_priors", &yf::emulated_cuda::make_priors);
  emulated.def("decode_boxes", &yf::emulated_cuda::decode_boxes);
  emulated.def("fast_nms", &yf::emulated_cuda::fast_nms);
  emulated.def("assemble_masks", &yf::emulated_cuda::assemble_masks);
  emulated.def("paste_masks", &yf::emulated_cuda::paste_masks);
}
