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
// sums (vectorizes on the host, fixed order on every device), accumulated in runs of
// channels: add(px, coeffs, n) takes the next n channels (px[0] and coeffs[0] the first of
// them); every run but the last has n % 4 == 0, so the order, and hence the rounding, is
// that of one run over all k channels. px and coeffs are anything indexable: pointers, or
// shared arrays in kernels.
template <class A>
struct LincombSum {
  A acc[4] = {A(0), A(0), A(0), A(0)};

  template <class Proto, class Coeffs>
  YF_HD void add(Proto proto_px, Coeffs coeffs, int64_t n) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      acc[0] += A(proto_px[j]) * A(coeffs[j]);
      acc[1] += A(proto_px[j + 1]) * A(coeffs[j + 1]);
      acc[2] += A(proto_px[j + 2]) * A(coeffs[j + 2]);
      acc[3] += A(proto_px[j + 3]) * A(coeffs[j + 3]);
    }
    for (; j < n; ++j) acc[0] += A(proto_px[j]) * A(coeffs[j]);
  }
  YF_HD A total() const { return (acc[0] + acc[1]) + (acc[2] + acc[3]); }
};

template <class A, class Proto, class Coeffs>
YF_HD inline A lincomb(Proto proto_px, Coeffs coeffs, int64_t k) {
  LincombSum<A> sum;
  sum.add(proto_px, coeffs, k);
  return sum.total();
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

// The tap applied to its two source values: v[i0] * w0 + v[i0 + step] * w1.
template <class T>
YF_HD inline T interpolate(const LinearTap<T>& tap, T at_i0, T at_i0_plus_step) {
  return at_i0 * tap.w0 + at_i0_plus_step * tap.w1;
}

// Where a tap's sources [i0, i0 + step] lie against inputs [in.begin, in.end): wholly
// before them, or wholly after (else it reads at least one of them).
template <class T>
YF_HD inline bool tap_precedes(const LinearTap<T>& tap, PixelRange in) {
  return tap.i0 + tap.step < in.begin;
}
template <class T>
YF_HD inline bool tap_follows(const LinearTap<T>& tap, PixelRange in) {
  return tap.i0 >= in.end;
}

// Whether any of a run of outputs reads inputs [in.begin, in.end), from the taps of its
// first and last output (taps are monotone in the output index).
template <class T>
YF_HD inline bool taps_reach(const LinearTap<T>& first, const LinearTap<T>& last, PixelRange in) {
  return !in.empty() && !tap_precedes(last, in) && !tap_follows(first, in);
}

// The range of outputs [begin, end) of taps[0, n) whose taps reach inputs [in.begin, in.end).
template <class Taps>
YF_HD inline PixelRange tap_footprint(const Taps& taps, int64_t n, PixelRange in) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {  // first output not wholly before in.begin
    const int64_t mid = (lo + hi) / 2;
    if (tap_precedes(taps(mid), in))
      lo = mid + 1;
    else
      hi = mid;
  }
  const int64_t begin = lo;
  hi = n;
  while (lo < hi) {  // first output wholly at or past in.end
    const int64_t mid = (lo + hi) / 2;
    if (!tap_follows(taps(mid), in))
      lo = mid + 1;
    else
      hi = mid;
  }
  return {begin, lo};
}

}  // namespace yf
