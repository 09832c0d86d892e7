// Op schemas (one per op) and their CPU implementations. The CUDA implementations
// register in csrc/cuda/yolact_fast_cuda.cu; the Python module is csrc/python_module.cpp.
#include <torch/library.h>

#include "ops.h"

namespace {

// Sparse, mkldnn, quantized and nested tensors dispatch to their own keys, where no kernel
// reads them: this boxed kernel names the first such argument instead of the dispatcher's
// "Could not run ... with arguments from the 'SparseCPU' backend".
void reject_layout(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const auto inputs = torch::jit::last(*stack, schema.arguments().size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].isTensor()) continue;
    const at::Tensor& t = inputs[i].toTensor();
    const char* kind = t.is_nested()                ? "a nested tensor"
                       : t.is_quantized()           ? "a quantized tensor"
                       : t.layout() != at::kStrided ? "a tensor of another layout"
                                                    : nullptr;
    TORCH_CHECK_TYPE(kind == nullptr, schema.arguments()[i].name(),
                     " must be a dense (strided) tensor, got ", kind, " (layout ", t.layout(),
                     ", dtype ", t.scalar_type(), ")");
  }
  TORCH_CHECK_TYPE(false, schema.name(), " takes dense (strided) tensors only");
}

void register_layout_rejections(torch::Library& m) {
  for (const char* op : {"make_priors", "decode_boxes", "fast_nms", "detect", "assemble_masks",
                         "paste_masks", "bits_checksum"})
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&reject_layout>());
}

}  // namespace

TORCH_LIBRARY(yolact_fast, m) {
  m.def("make_priors(Tensor anchor_wh, int[] feature_sizes, int[] anchors_per_level) -> Tensor");
  m.def("decode_boxes(Tensor loc, Tensor priors, float variance_xy, float variance_wh) -> Tensor");
  m.def(
      "fast_nms(Tensor boxes, Tensor scores, Tensor coeffs, float iou_threshold, int top_k, "
      "float score_threshold, int max_detections, str method) -> "
      "(Tensor boxes, Tensor coeffs, Tensor labels, Tensor scores, Tensor num_detections)");
  m.def(
      "detect(Tensor loc, Tensor conf_logits, Tensor coeffs, Tensor priors, float variance_xy, "
      "float variance_wh, float iou_threshold, int top_k, float score_threshold, "
      "int max_detections, str method) -> "
      "(Tensor boxes, Tensor coeffs, Tensor labels, Tensor scores, Tensor num_detections)");
  m.def("assemble_masks(Tensor proto, Tensor coeffs, Tensor boxes, float crop_padding) -> Tensor");
  m.def(
      "paste_masks(Tensor proto, Tensor coeffs, Tensor boxes, int[2] size, float threshold, "
      "float crop_padding) -> Tensor");
  m.def("bits_checksum(Tensor[] tensors) -> Tensor");
}

TORCH_LIBRARY_IMPL(yolact_fast, CPU, m) {
  m.impl("make_priors", &yf::cpu::make_priors);
  m.impl("decode_boxes", &yf::cpu::decode_boxes);
  m.impl("fast_nms", &yf::cpu::fast_nms);
  m.impl("detect", &yf::cpu::detect);
  m.impl("assemble_masks", &yf::cpu::assemble_masks);
  m.impl("paste_masks", &yf::cpu::paste_masks);
  m.impl("bits_checksum", &yf::cpu::bits_checksum);
}

#define YF_REJECT_LAYOUTS(key) \
  TORCH_LIBRARY_IMPL(yolact_fast, key, m) { register_layout_rejections(m); }
YF_REJECT_LAYOUTS(SparseCPU)
YF_REJECT_LAYOUTS(SparseCUDA)
YF_REJECT_LAYOUTS(SparseCsrCPU)
YF_REJECT_LAYOUTS(SparseCsrCUDA)
YF_REJECT_LAYOUTS(MkldnnCPU)
YF_REJECT_LAYOUTS(QuantizedCPU)
YF_REJECT_LAYOUTS(QuantizedCUDA)
YF_REJECT_LAYOUTS(NestedTensorCPU)
YF_REJECT_LAYOUTS(NestedTensorCUDA)
YF_REJECT_LAYOUTS(AutogradNestedTensor)
