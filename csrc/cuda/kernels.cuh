// CUDA kernels. They compile under nvcc and, for tests, under a host compiler where
// csrc/common/emulation.h runs each block's threads as fibers (shared memory through
// YF_SHARED / YF_DYNAMIC_SHARED only: see macros.h).
#pragma once

#if !defined(__CUDACC__)
#include "../common/emulation.h"
#endif

#include "../common/box_math.h"
#include "../common/macros.h"
#include "../common/mask_math.h"

namespace yf {
namespace kernels {
// Internal linkage: the CUDA build and the host emulation each compile their own copy,
// and both copies end up in the same shared library.
namespace {

// Priors of one level: index i = (row * conv_w + col) * A + anchor.
YF_GLOBAL void priors_level(float* out, const double* anchor_wh, int64_t conv_h, int64_t conv_w,
                            int64_t A) {
  YF_KERNEL_LOOP(i, conv_h * conv_w * A) {
    const int64_t a = i % A, cell = i / A;
    const double x = (double(cell % conv_w) + 0.5) / double(conv_w);
    const double y = (double(cell / conv_w) + 0.5) / double(conv_h);
    out[4 * i] = float(x);
    out[4 * i + 1] = float(y);
    out[4 * i + 2] = float(anchor_wh[2 * a]);
    out[4 * i + 3] = float(anchor_wh[2 * a + 1]);
  }
}

template <class T>
YF_GLOBAL void decode(const T* loc, const T* priors, T* out, int64_t total, int64_t P, T v0, T v1) {
  YF_KERNEL_LOOP(i, total) {
    const T* l = loc + 4 * i;
    decode_box(priors + 4 * (i % P), l, exp_(l[2] * v1), exp_(l[3] * v1), v0, out + 4 * i);
  }
}

// Cropped sigmoid masks at proto resolution: out [N, H, W].
template <class T>
YF_GLOBAL void assemble_masks(const T* proto, const T* coeffs, const T* boxes, int64_t N,
                              int64_t H, int64_t W, int64_t k, T padding, T* out) {
  YF_KERNEL_LOOP(t, N * H * W) {
    const int64_t x = t % W, y = (t / W) % H, n = t / (W * H);
    const bool inside = crop_box(boxes + 4 * n, H, W, padding).contains(y, x);
    out[t] = inside ? sigmoid(lincomb(proto + (y * W + x) * k, coeffs + n * k, k)) : T(0);
  }
}

// Bilinear resize (align_corners=False) of assembled masks [N, H, W] and threshold:
// out [N, out_h, out_w]. Pixels whose taps miss the crop are false without reads.
template <class T>
YF_GLOBAL void paste_masks(const T* masks, const T* boxes, int64_t N, int64_t H, int64_t W,
                           int64_t out_h, int64_t out_w, T padding, T threshold, bool* out) {
  YF_KERNEL_LOOP(t, N * out_h * out_w) {
    const int64_t ox = t % out_w, oy = (t / out_w) % out_h, n = t / (out_w * out_h);
    const CropBox crop = crop_box(boxes + 4 * n, H, W, padding);
    const LinearTap<T> ty = linear_tap<T>(oy, H, out_h);
    const LinearTap<T> tx = linear_tap<T>(ox, W, out_w);
    const bool reaches = ty.i0 + ty.step >= crop.rows.begin && ty.i0 < crop.rows.end &&
                         tx.i0 + tx.step >= crop.cols.begin && tx.i0 < crop.cols.end;
    bool value = false;
    if (reaches) {
      const T* plane = masks + n * H * W;
      const T* top = plane + ty.i0 * W;
      const T* bottom = plane + (ty.i0 + ty.step) * W;
      const T upper = top[tx.i0] * tx.w0 + top[tx.i0 + tx.step] * tx.w1;
      const T lower = bottom[tx.i0] * tx.w0 + bottom[tx.i0 + tx.step] * tx.w1;
      value = (upper * ty.w0 + lower * ty.w1) > threshold;
    }
    out[t] = value;
  }
}

}  // namespace
}  // namespace kernels
}  // namespace yf
