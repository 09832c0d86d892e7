// Op schemas (one per op) and their CPU implementations. The CUDA implementations
// register in csrc/cuda/yolact_fast_cuda.cu; the Python module is csrc/python_module.cpp.
#include <torch/library.h>

#include "ops.h"

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
}

TORCH_LIBRARY_IMPL(yolact_fast, CPU, m) {
  m.impl("make_priors", &yf::cpu::make_priors);
  m.impl("decode_boxes", &yf::cpu::decode_boxes);
  m.impl("fast_nms", &yf::cpu::fast_nms);
  m.impl("detect", &yf::cpu::detect);
  m.impl("assemble_masks", &yf::cpu::assemble_masks);
  m.impl("paste_masks", &yf::cpu::paste_masks);
}
