// Mask arithmetic shared by the CPU and CUDA kernels: the linear combination of
// prototypes, the sigmoid, and the bilinear source indices/weights of PyTorch's
// upsample_bilinear2d with align_corners=False (same float operations, same order).
#pragma once

#include <cmath>

#include "box_math.h"
#include "macros.h"

namespace yf {

YF_HD inline float exp_(float x) { return expf(x); }
YF_HD inline double exp_(double x) { return exp(x); }

template <class T>
YF_HD inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// sum_j proto_px[j] * coeffs[j] in the accumulator type A with four interleaved partial
// sums (vectorizes on the host, fixed order on every device). proto_px and coeffs are
// anything indexable: pointers, or shared arrays in kernels.
template <class A, class Proto, class Coeffs>
YF_HD inline A lincomb(Proto proto_px, Coeffs coeffs, int64_t k) {
  A acc[4] = {A(0), A(0), A(0), A(0)};
  int64_t j = 0;
  for (; j + 4 <= k; j += 4) {
    acc[0] += A(proto_px[j]) * A(coeffs[j]);
    acc[1] += A(proto_px[j + 1]) * A(coeffs[j + 1]);
    acc[2] += A(proto_px[j + 2]) * A(coeffs[j + 2]);
    acc[3] += A(proto_px[j + 3]) * A(coeffs[j + 3]);
  }
  for (; j < k; ++j) acc[0] += A(proto_px[j]) * A(coeffs[j]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

// Source taps of one output pixel along one axis: value = v[i0] * w0 + v[i0 + step] * w1.
// Input sizes are < 2^31 (checked with the arguments).
template <class T>
struct LinearTap {
  int32_t i0;
  int32_t step;  // 1, or 0 at the last input pixel
  T w0, w1;
};

// PyTorch's area_pixel_compute_source_index + guard_index_and_lambda with opmath T
// (float for float, half and bfloat16 inputs): the same float operations in the same order.
template <class T>
YF_HD inline LinearTap<T> linear_tap(int64_t dst, int64_t in_size, int64_t out_size) {
  const T scale = static_cast<T>(in_size) / static_cast<T>(out_size);
  T src = scale * (static_cast<T>(dst) + T(0.5)) - T(0.5);
  if (src < T(0)) src = T(0);
  int32_t i0 = static_cast<int32_t>(floor_(src));
  if (i0 > in_size - 1) i0 = int32_t(in_size - 1);
  T w1 = src - static_cast<T>(i0);
  w1 = w1 < T(0) ? T(0) : (w1 > T(1) ? T(1) : w1);
  return {i0, i0 < in_size - 1 ? 1 : 0, T(1) - w1, w1};
}

// The range of outputs [begin, end) of taps[0, n) whose taps reach inputs [in.begin, in.end):
// those with i0 + step >= in.begin and i0 < in.end (both monotone in the output index).
template <class Taps>
YF_HD inline PixelRange tap_footprint(const Taps& taps, int64_t n, PixelRange in) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {  // first output reaching in.begin
    const int64_t mid = (lo + hi) / 2;
    const auto t = taps(mid);
    if (t.i0 + t.step < in.begin) lo = mid + 1; else hi = mid;
  }
  const int64_t begin = lo;
  hi = n;
  while (lo < hi) {  // first output starting at or past in.end
    const int64_t mid = (lo + hi) / 2;
    const auto t = taps(mid);
    if (t.i0 < in.end) lo = mid + 1; else hi = mid;
  }
  return {begin, lo};
}

}  // namespace yf
