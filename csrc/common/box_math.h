// Box arithmetic shared by the CPU and CUDA kernels. Every expression keeps the
// operation order of the official YOLACT code, so float results match it bit for bit
// (the CUDA build is compiled with --fmad=false so nothing is contracted into FMAs).
#pragma once

#include <cmath>

#include "macros.h"

namespace yf {

// floor and ceil of a float are exact in its own precision: no double on the device.
YF_HD inline float floor_(float x) { return floorf(x); }
YF_HD inline double floor_(double x) { return floor(x); }
YF_HD inline float ceil_(float x) { return ceilf(x); }
YF_HD inline double ceil_(double x) { return ceil(x); }

template <class T>
YF_HD inline T min_(T a, T b) {
  return b < a ? b : a;
}
template <class T>
YF_HD inline T max_(T a, T b) {
  return a < b ? b : a;
}

// NaN-propagating min/max, like torch.min/torch.max of two tensors.
template <class T>
YF_HD inline T nan_min(T a, T b) {
  return (a != a || a < b) ? a : b;
}
template <class T>
YF_HD inline T nan_max(T a, T b) {
  return (a != a || a > b) ? a : b;
}

// torch.clamp(x, min=lo): NaN stays NaN.
template <class T>
YF_HD inline T clamp_min(T x, T lo) {
  return x < lo ? lo : x;
}
template <class T>
YF_HD inline T clamp_max(T x, T hi) {
  return x > hi ? hi : x;
}

// Centre of cell `cell` (row-major) of a conv_h x conv_w grid, relative to the image:
// ((col + 0.5) / conv_w, (row + 0.5) / conv_h) in float64 like the official Python code
// (callers round it once to float32).
struct PriorCentre {
  double x, y;
};
YF_HD inline PriorCentre prior_centre(int64_t cell, int64_t conv_h, int64_t conv_w) {
  return {(double(cell % conv_w) + 0.5) / double(conv_w),
          (double(cell / conv_w) + 0.5) / double(conv_h)};
}

// The four values of a box (or prior, or offsets) read from any element type and converted
// to the arithmetic type A (float16/bfloat16 inputs are read as such and computed in float).
template <class A>
struct BoxValues {
  A v[4];
  template <class T>
  YF_HD explicit BoxValues(const T* box) : v{A(box[0]), A(box[1]), A(box[2]), A(box[3])} {}
};

// One box from its prior (cx, cy, w, h), offsets and the two exponentials
// exp(loc_w * v1), exp(loc_h * v1), computed by the caller:
//   c = p_xy + loc_xy * v0 * p_wh;  wh = p_wh * e;  x1 = c - wh / 2;  x2 = wh + x1.
template <class T>
YF_HD inline void decode_box(const T* prior, const T* loc, T exp_w, T exp_h, T v0, T* out) {
  const T cx = prior[0] + loc[0] * v0 * prior[2];
  const T cy = prior[1] + loc[1] * v0 * prior[3];
  const T w = prior[2] * exp_w;
  const T h = prior[3] * exp_h;
  const T x1 = cx - w / T(2);
  const T y1 = cy - h / T(2);
  out[0] = x1;
  out[1] = y1;
  out[2] = w + x1;
  out[3] = h + y1;
}

// IoU of a (the higher-scoring box) and b, as official jaccard():
// inter = clamp(min(x2) - max(x1), 0) * clamp(min(y2) - max(y1), 0);
// iou = inter / (area_a + area_b - inter).
template <class T>
YF_HD inline T box_iou(const T* a, const T* b) {
  const T iw = clamp_min(nan_min(a[2], b[2]) - nan_max(a[0], b[0]), T(0));
  const T ih = clamp_min(nan_min(a[3], b[3]) - nan_max(a[1], b[1]), T(0));
  const T inter = iw * ih;
  const T area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
  return inter / (area_a + area_b - inter);
}

// Whether b is suppressed by a: iou > threshold, or iou is NaN (official: keep iff <=).
template <class T>
YF_HD inline bool suppresses(const T* a, const T* b, T iou_threshold) {
  return !(box_iou(a, b) <= iou_threshold);
}

// suppresses() for finite boxes with their areas computed once by the caller: plain
// min/max equal the NaN-propagating ones there, and the branch-free form lets a loop over
// many a-boxes vectorize (the CPU NMS inner loop).
template <class T>
YF_HD inline bool finite_box_suppresses(T ax1, T ay1, T ax2, T ay2, T area_a, const T* b, T area_b,
                                        T iou_threshold) {
  const T right = ax2 < b[2] ? ax2 : b[2];
  const T left = ax1 > b[0] ? ax1 : b[0];
  const T bottom = ay2 < b[3] ? ay2 : b[3];
  const T top = ay1 > b[1] ? ay1 : b[1];
  const T iw = right - left > T(0) ? right - left : T(0);
  const T ih = bottom - top > T(0) ? bottom - top : T(0);
  const T inter = iw * ih;
  return !(inter / (area_a + area_b - inter) <= iou_threshold);
}

template <class T>
YF_HD inline bool box_is_finite(const T* box) {
  // x - x is 0 for finite x and NaN for NaN or +-Inf.
  return (box[0] - box[0]) == T(0) && (box[1] - box[1]) == T(0) && (box[2] - box[2]) == T(0) &&
         (box[3] - box[3]) == T(0);
}

// Half-open integer range [begin, end) of pixels kept by the official crop along one
// axis: lo, hi relative, size pixels; kept iff clamp(min*size - pad, 0) <= c <
// clamp(max*size + pad, size). NaN bounds give an empty range.
struct PixelRange {
  int64_t begin, end;
  YF_HD bool empty() const { return end <= begin; }
};

template <class T>
YF_HD inline PixelRange crop_range(T lo, T hi, int64_t size, T padding) {
  const T a = lo * T(size);
  const T b = hi * T(size);
  const T first = clamp_min(nan_min(a, b) - padding, T(0));
  const T last = clamp_max(nan_max(a, b) + padding, T(size));
  if (!(first <= last)) return {0, 0};  // also catches NaN
  // c >= first <=> c >= ceil(first); c < last <=> c < ceil(last), for integer c.
  int64_t begin = first <= T(0) ? 0 : static_cast<int64_t>(ceil_(first));
  int64_t end = last <= T(0) ? 0 : static_cast<int64_t>(ceil_(last));
  if (begin > size) begin = size;
  if (end > size) end = size;
  return {begin, end};
}

// The pixels of an H x W image kept by the official crop of one relative box
// (x1, y1, x2, y2), as row and column ranges.
struct CropBox {
  PixelRange rows, cols;
  YF_HD bool empty() const { return rows.empty() || cols.empty(); }
  YF_HD bool contains(int64_t y, int64_t x) const {
    return y >= rows.begin && y < rows.end && x >= cols.begin && x < cols.end;
  }
};

template <class T>
YF_HD inline CropBox crop_box(const T* box, int64_t H, int64_t W, T padding) {
  return {crop_range(box[1], box[3], H, padding), crop_range(box[0], box[2], W, padding)};
}

}  // namespace yf
