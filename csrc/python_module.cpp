// The Python module yolact_fast._C: build information, the CUDA launchers run under the
// host emulation (yolact_fast.testing.emulated_cuda) and the emulation's settings and
// launch log. Importing it also loads the op registrations of this library.
#include <torch/extension.h>

#include "checks.h"
#include "common/emulation.h"
#include "ops.h"

namespace yf {
namespace selftest {
void register_module(pybind11::module& m);
}
}  // namespace yf

namespace {

bool built_with_cuda() {
#ifdef YF_WITH_CUDA
  return true;
#else
  return false;
#endif
}

pybind11::tuple as_tuple(const dim3& d) { return pybind11::make_tuple(d.x, d.y, d.z); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace emu = yf::emulation;
  m.doc() = "yolact_fast kernels (ops are registered under torch.ops.yolact_fast)";
  m.def("built_with_cuda", &built_with_cuda, "Whether the CUDA kernels were compiled in");
  // The ops check their options themselves; this is the same rule for callers that hold
  // options before they hold tensors (yolact_fast.ops.check_nms_options).
  m.def("check_nms_options", &yf::check_nms_options,
        "ValueError naming the first NMS option that breaks the ops' rule",
        pybind11::arg("score_threshold"), pybind11::arg("iou_threshold"), pybind11::arg("top_k"),
        pybind11::arg("max_detections"), pybind11::arg("method"));
  m.attr("max_allocation_bytes") = yf::kMaxAllocationBytes;

  auto emulated = m.def_submodule(
      "emulated_cuda", "The CUDA launchers and kernels run on CPU tensors under the host "
                       "emulation of CUDA blocks (for tests; slow)");
  emulated.def("make_priors", &yf::emulated_cuda::make_priors);
  emulated.def("decode_boxes", &yf::emulated_cuda::decode_boxes);
  emulated.def("fast_nms", &yf::emulated_cuda::fast_nms);
  emulated.def("detect", &yf::emulated_cuda::detect);
  emulated.def("assemble_masks", &yf::emulated_cuda::assemble_masks);
  emulated.def("paste_masks", &yf::emulated_cuda::paste_masks);
  emulated.def("bits_checksum",
               [](const std::vector<at::Tensor>& tensors) { return yf::emulated_cuda::bits_checksum(tensors); });

  auto emulation = m.def_submodule("emulation", "Settings and launch log of the host emulation "
                                                "(per calling thread)");
  emulation.def("options", [] {
    const emu::Options o = emu::options();
    return pybind11::make_tuple(o.seed, o.check_races, o.opt_in_shared_bytes);
  });
  emulation.def("set_options", [](uint64_t seed, bool check_races, size_t opt_in_shared_bytes) {
    TORCH_CHECK_VALUE(opt_in_shared_bytes >= 64 * 1024 && opt_in_shared_bytes <= emu::kOptInSharedBytes,
                      "opt_in_shared_bytes must be in [64 KiB, 227 KiB], got ", opt_in_shared_bytes);
    emu::set_options(emu::Options{seed, check_races, opt_in_shared_bytes});
  });
  emulation.def("begin_recording", &emu::begin_recording);
  emulation.def("end_recording", [](size_t start) {
    pybind11::list records;
    for (const emu::LaunchRecord& r : emu::end_recording(start))
      records.append(pybind11::make_tuple(r.kernel, as_tuple(r.grid), as_tuple(r.block),
                                          r.shared_bytes, pybind11::tuple(pybind11::cast(r.paths))));
    return records;
  });
  auto selftest = emulation.def_submodule("selftest", "Kernels with planted bugs (tests only)");
  yf::selftest::register_module(selftest);
}
