// Branch-free float math for the CPU kernels' hot loops: written so that the compiler
// vectorizes it (no libm calls, selects instead of branches).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Always inlined: a loop that calls a function vectorizes only if it is inlined (an
// out-of-line exp_nonpositive, called through the PLT, made the softmax four times slower).
#define YF_INLINE inline __attribute__((always_inline))

namespace yf {
namespace cpu {

// Eight values of T as one GCC vector: for reductions, which GCC does not vectorize by
// itself. The caller's target (see YF_VECTOR_CLONES) picks the instructions: one AVX
// register, or two SSE ones. Lane l of a reduction over v[i] sees v[i] with i % 8 == l.
// Filled through an out-parameter: a vector passed or returned by value draws GCC's
// -Wpsabi note (its calling convention depends on -mavx), moot for inlined code.
template <class T>
struct Lanes8 {
  typedef T type __attribute__((vector_size(8 * sizeof(T))));
};

template <class T>
YF_INLINE void load8(const T* values, typename Lanes8<T>::type& lanes) {
  std::memcpy(&lanes, values, sizeof lanes);
}

YF_INLINE float float_from_bits(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// exp(x) for x <= 0 or NaN (what softmax needs): Cephes' expf range reduction and
// polynomial, within ~1 ulp of the correctly rounded value; denormal results are scaled
// in two steps so that they round once. NaN stays NaN, -inf gives 0.
YF_INLINE float exp_nonpositive(float x) {
  const float clamped = x < -104.0f ? -104.0f : x;
  // Round x * log2(e) to the nearest integer without a libm call: adding 1.5 * 2^23
  // leaves the integer part in the mantissa.
  const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = clamped - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const float r2 = r * r;
  float poly = 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  const float y = poly * r2 + r + 1.0f;
  const int32_t e = static_cast<int32_t>(n);  // in [-150, 0]
  const bool tiny = e < -126;
  const float scaled = y * float_from_bits(((tiny ? e + 126 : e) + 127) << 23);
  const float result = tiny ? scaled * 1.17549435e-38f : scaled;  // * 2^-126
  return x != x ? x : (x < -104.0f ? 0.0f : result);
}

YF_INLINE double exp_nonpositive(double x) { return std::exp(x); }

}  // namespace cpu
}  // namespace yf
