// Argument checks shared by every device's kernels. Messages name the argument, what
// was expected and what came; TORCH_CHECK_VALUE/TYPE surface in Python as
// ValueError/TypeError.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>
#include <string>

namespace yf {

inline std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   " must be float32 or float64, got ", t.scalar_type());
}

// float16 and bfloat16 too (computed in float32 inside).
inline void check_floating_or_reduced(const at::Tensor& t, const char* name) {
  const auto type = t.scalar_type();
  TORCH_CHECK_TYPE(
      type == at::kFloat || type == at::kDouble || type == at::kHalf || type == at::kBFloat16, name,
      " must be float16, bfloat16, float32 or float64, got ", type);
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must be ", layout, " (", dim, " dims), got shape ",
                    shape_str(t));
}

inline void check_last_dim(const at::Tensor& t, int64_t size, const char* name,
                           const char* layout) {
  TORCH_CHECK_VALUE(t.dim() >= 1 && t.size(-1) == size, name, " must be ", layout, ", got shape ",
                    shape_str(t));
}

inline bool is_reduced_float(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                             const char* b_name) {
  TORCH_CHECK_TYPE(a.scalar_type() == b.scalar_type(), b_name, " must have the dtype of ", a_name,
                   " (", a.scalar_type(), "), got ", b.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  TORCH_CHECK_VALUE(a.device() == b.device(), b_name, " must be on the device of ", a_name, " (",
                    a.device(), "), got ", b.device());
}

inline void check_finite_number(double x, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(x), name, " must be a finite number, got ", x);
}

// Largest tensor one op call allocates (each output, and each workspace that can outgrow
// the inputs): 16 GiB. Real uses stay far below (100 masks of 4000 x 6000 pixels are
// 2.4 GB); a request beyond it comes from an absurd argument and is refused before anything
// is allocated, instead of touching memory until the process is killed.
constexpr int64_t kMaxAllocationBytes = int64_t(1) << 34;

// a * b; a ValueError naming `name` if the product overflows int64.
int64_t checked_mul(int64_t a, int64_t b, const char* name);

// The bytes of a tensor of `shape` with elements of `element_size` bytes; a ValueError
// naming `name` (the argument that sets the size) if they exceed kMaxAllocationBytes.
int64_t check_allocation(at::IntArrayRef shape, int64_t element_size, const char* op,
                         const char* name);

// The rule of the NMS options, shared by fast_nms and detect (and exposed to Python as
// yolact_fast._C.check_nms_options): score_threshold not NaN, iou_threshold >= 0 (> 1
// suppresses nothing), top_k and max_detections >= 0, method "fast" or "cluster".
void check_nms_options(double score_threshold, double iou_threshold, int64_t top_k,
                       int64_t max_detections, const std::string& method);

// Returns the number of priors the arguments describe.
int64_t check_make_priors_args(const at::Tensor& anchor_wh, at::IntArrayRef feature_sizes,
                               at::IntArrayRef anchors_per_level);
void check_decode_args(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                       double variance_wh);
void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& coeffs,
                    double iou_threshold, int64_t top_k, double score_threshold,
                    int64_t max_detections);
// Returns the number of foreground classes (conf_logits.shape[1] - 1).
int64_t check_detect_args(const at::Tensor& loc, const at::Tensor& conf_logits,
                          const at::Tensor& coeffs, const at::Tensor& priors, double variance_xy,
                          double variance_wh, double iou_threshold, int64_t top_k,
                          double score_threshold, int64_t max_detections);
// assemble_masks's arguments.
void check_mask_args(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                     double crop_padding);
void check_paste_args(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                      at::IntArrayRef size, double threshold, double crop_padding);
// bits_checksum's: one tensor at least, all on one device, elements of 1-16 bytes.
void check_checksum_args(at::TensorList tensors);

}  // namespace yf
