// The Python module yolact_fast._C: build information and the host-emulated CUDA
// launchers for tests. Importing it also loads the op registrations of this library.
#include <torch/extension.h>

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

  auto emulated = m.def_submodule(
      "emulated_cuda", "The CUDA launchers and kernels run on CPU tensors under a host emulation "
                       "of the launch grid (for tests; slow)");
  emulated.def("make_priors", &yf::emulated_cuda::make_priors);
  emulated.def("decode_boxes", &yf::emulated_cuda::decode_boxes);
  emulated.def("fast_nms", &yf::emulated_cuda::fast_nms);
  emulated.def("detect", &yf::emulated_cuda::detect);
  emulated.def("assemble_masks", &yf::emulated_cuda::assemble_masks);
  emulated.def("paste_masks", &yf::emulated_cuda::paste_masks);
}
