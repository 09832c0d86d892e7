// The Python module yolact_fast._C: build information and the ops' option rule. Importing
// it also loads the op registrations of this library (torch.ops.yolact_fast).
#include <torch/extension.h>

#include "checks.h"
#include "ops.h"

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
  // The ops check their options themselves; this is the same rule for callers that hold
  // options before they hold tensors (yolact_fast.ops.check_nms_options).
  m.def("check_nms_options", &yf::check_nms_options,
        "ValueError naming the first NMS option that breaks the ops' rule",
        pybind11::arg("score_threshold"), pybind11::arg("iou_threshold"), pybind11::arg("top_k"),
        pybind11::arg("max_detections"), pybind11::arg("method"));
  m.attr("max_allocation_bytes") = yf::kMaxAllocationBytes;
}
