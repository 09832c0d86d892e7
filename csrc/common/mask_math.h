// Mask arithmetic shared by the CPU and CUDA kernels: the linear combination of
// prototypes, the sigmoid, and the bilinear source indices/weights of PyTorch's
// upsample_bilinear2d with align_corners=False (same float operations, same order).
#pragma once

#include <cmath>

#include "macros.h"

namespace yf {

YF_HD inline float exp_(float x) { return expf(x); }
YF_HD inline double exp_(double x) { return exp(x); }

template <class T>
YF_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// sum_j proto_px[j] * coeffs[j] with four interleaved partial sums (vectorizes on the
// host, fixed order on every device).
template <class T>
YF_HD inline T lincomb(const T* proto_px, const T* coeffs, int64_t k) {
  T acc[4] = {T(0), T(0), T(0), T(0)};
  int64_t j = 0;
  for (; j + 4 <= k; j += 4) {
    acc[0] += proto_px[j] * coeffs[j];
    acc[1] += proto_px[j + 1] * coeffs[j + 1];
    acc[2] += proto_px[j + 2] * coeffs[j + 2];
    acc[3] += proto_px[j + 3] * coeffs[j + 3];
  }
  for (; j < k; ++j) acc[0] += proto_px[j] * coeffs[j];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

// Source taps of one output pixel along one axis: value = v[i0] * w0 + v[i0 + step] * w1.
template <class T>
struct LinearTap {
  int64_t i0;
  int64_t step;  // 1, or 0 at the last input pixel
  T w0, w1;
};

// PyTorch's area_pixel_compute_source_index + guard_index_and_lambda (opmath T).
template <class T>
YF_HD inline LinearTap<T> linear_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  const T scale = static_cast<T>(in_size) / static_cast<T>(out_size);
  T src = scale * (static_cast<T>(dst) + T(0.5)) - T(0.5);
  if (src < T(0)) src = T(0);
  int64_t i0 = static_cast<int64_t>(floor(static_cast<double>(src)));
  if (i0 > in_size - 1) i0 = in_size - 1;
  T w1 = src - static_cast<T>(i0);
  w1 = w1 < T(0) ? T(0) : (w1 > T(1) ? T(1) : w1);
  return {i0, i0 < in_size - 1 ? 1 : 0, T(1) - w1, w1};
}

}  // namespace yf
