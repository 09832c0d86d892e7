// The Python module yolact_fast._emulation (tests only, not part of yolact_fast._C): the
// CUDA launchers run on CPU tensors under the host emulation
// (yolact_fast.testing.emulated_cuda), the emulation's settings and launch log (per calling
// thread) and the kernels with planted bugs that show what the emulation catches.
#include <torch/extension.h>

#include "emulated_cuda.h"
#include "emulation.h"

namespace yf {
namespace selftest {
void register_module(pybind11::module& m);
}
}  // namespace yf

namespace {

pybind11::tuple as_tuple(const dim3& d) { return pybind11::make_tuple(d.x, d.y, d.z); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace emu = yf::emulation;
  m.doc() = "The host emulation of CUDA blocks and the CUDA kernels run under it (tests only)";
  auto emulated =
      m.def_submodule("emulated_cuda",
                      "The CUDA launchers and kernels run on CPU tensors under the host "
                      "emulation of CUDA blocks (for tests; slow)");
  emulated.def("make_priors", &yf::emulated_cuda::make_priors);
  emulated.def("decode_boxes", &yf::emulated_cuda::decode_boxes);
  emulated.def("fast_nms", &yf::emulated_cuda::fast_nms);
  emulated.def("detect", &yf::emulated_cuda::detect);
  emulated.def("assemble_masks", &yf::emulated_cuda::assemble_masks);
  emulated.def("paste_masks", &yf::emulated_cuda::paste_masks);
  emulated.def("bits_checksum", [](const std::vector<at::Tensor>& tensors) {
    return yf::emulated_cuda::bits_checksum(tensors);
  });
  emulated.attr("kernel_constants") = yf::emulated_cuda::kernel_constants();
  emulated.def("lanes_per_column", &yf::emulated_cuda::lanes_per_column,
               "Lanes per column of an IoU warp whose half tile holds `columns` boxes");

  m.def("options", [] {
    const emu::Options o = emu::options();
    return pybind11::make_tuple(o.seed, o.check_races, o.opt_in_shared_bytes);
  });
  m.def("set_options", [](uint64_t seed, bool check_races, size_t opt_in_shared_bytes) {
    TORCH_CHECK_VALUE(
        opt_in_shared_bytes >= 64 * 1024 && opt_in_shared_bytes <= emu::kOptInSharedBytes,
        "opt_in_shared_bytes must be in [64 KiB, 227 KiB], got ", opt_in_shared_bytes);
    emu::set_options(emu::Options{seed, check_races, opt_in_shared_bytes});
  });
  m.def("begin_recording", &emu::begin_recording);
  m.def("end_recording", [](size_t start) {
    pybind11::list records;
    for (const emu::LaunchRecord& r : emu::end_recording(start))
      records.append(pybind11::make_tuple(r.kernel, as_tuple(r.grid), as_tuple(r.block),
                                          r.shared_bytes,
                                          pybind11::tuple(pybind11::cast(r.paths))));
    return records;
  });
  auto selftest = m.def_submodule("selftest", "Kernels with planted bugs (tests only)");
  yf::selftest::register_module(selftest);
}
