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

// loc, out [batch, P, 4]: priors along grid.x, images along grid.y (no per-element
// division by P).
template <class T>
YF_GLOBAL void decode(const T* loc, const T* priors, T* out, int64_t batch, int64_t P, T v0, T v1) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* image_loc = loc + 4 * b * P;
    T* image_out = out + 4 * b * P;
    YF_KERNEL_LOOP(p, P) {
      const T* l = image_loc + 4 * p;
      decode_box(priors + 4 * p, l, exp_(l[2] * v1), exp_(l[3] * v1), v0, image_out + 4 * p);
    }
  }
}

// --- masks -----------------------------------------------------------------------------
// A block works on one tile of one detection's output and returns at once when the tile
// misses the detection's footprint (the output was zeroed by one memset). Coefficients are
// staged in dynamic shared memory (k values of the arithmetic type A).

constexpr int kMaskThreads = 256;  // 8 warps
constexpr int kAssembleTile = 32;  // assemble_masks: 32 x 32 proto pixels per block
// paste_masks: a tile of at most kPasteTileH x kPasteTileW output pixels, whose bilinear
// taps need at most kPatchH x kPatchW proto pixels (the launcher sizes tiles so; +2 slack
// for float rounding of the source positions).
constexpr int kPasteTileH = 32, kPasteTileW = 128;
constexpr int kPatchH = 24, kPatchW = 48;
constexpr int kPatchRows = kPatchH + 2, kPatchCols = kPatchW + 2;

template <class T, class A>
YF_HD inline CropBox detection_crop(const T* boxes, int n, int H, int W, A padding) {
  const A box[4] = {A(boxes[4 * n]), A(boxes[4 * n + 1]), A(boxes[4 * n + 2]), A(boxes[4 * n + 3])};
  return crop_box(box, H, W, padding);
}

// Cropped sigmoid masks at proto resolution, out [N, H, W] (zeroed): grid (ceil(W / 32),
// ceil(H / 32), detections of this launch), detection = first + blockIdx.z.
template <class T, class A>
YF_GLOBAL void assemble_masks(int first, const T* proto, const T* coeffs, const T* boxes, int H,
                              int W, int k, A padding, T* out) {
  const int n = first + int(blockIdx.z);
  const CropBox crop = detection_crop(boxes, n, H, W, padding);
  const int y0 = int(blockIdx.y) * kAssembleTile, x0 = int(blockIdx.x) * kAssembleTile;
  const int y_begin = max_(y0, int(crop.rows.begin)), y_end = min_(y0 + kAssembleTile, int(crop.rows.end));
  const int x_begin = max_(x0, int(crop.cols.begin)), x_end = min_(x0 + kAssembleTile, int(crop.cols.end));
  if (y_begin >= y_end || x_begin >= x_end) return;  // the whole block: nothing to do

  YF_DYNAMIC_SHARED(A, coef);
  for (int j = int(threadIdx.x); j < k; j += kMaskThreads) coef[j] = A(coeffs[int64_t(n) * k + j]);
  __syncthreads();
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  T* plane = out + int64_t(n) * H * W;
  for (int y = y_begin + warp; y < y_end; y += kMaskThreads / 32)
    for (int x = x_begin + lane; x < x_end; x += 32) {
      const int pixel = y * W + x;
      plane[pixel] = T(sigmoid(lincomb<A>(proto + int64_t(pixel) * k, coef, k)));
    }
}

// Bilinear resize (align_corners=False) of the cropped sigmoid masks and threshold, fused:
// out [N, out_h, out_w] bool (zeroed). grid (ceil(out_w / tile_w), ceil(out_h / tile_h),
// detections of this launch). quad_stores: tile_w and out_w are multiples of 4, so each
// thread stores 4 pixels with one 4-byte store.
template <class T, class A>
YF_GLOBAL void paste_masks(int first, const T* proto, const T* coeffs, const T* boxes, int H,
                           int W, int k, int out_h, int out_w, int tile_h, int tile_w,
                           A padding, A threshold, bool quad_stores, bool* out) {
  const int n = first + int(blockIdx.z);
  const CropBox crop = detection_crop(boxes, n, H, W, padding);
  const int ty0 = int(blockIdx.y) * tile_h, tx0 = int(blockIdx.x) * tile_w;
  const int th = min_(tile_h, out_h - ty0), tw = min_(tile_w, out_w - tx0);
  // Taps are monotone in the output index: the tile reaches the crop iff its last taps
  // reach the crop's start and its first taps start before the crop's end.
  {
    const LinearTap<A> top = linear_tap<A>(ty0, H, out_h), bottom = linear_tap<A>(ty0 + th - 1, H, out_h);
    const LinearTap<A> left = linear_tap<A>(tx0, W, out_w), right = linear_tap<A>(tx0 + tw - 1, W, out_w);
    if (crop.empty() || bottom.i0 + bottom.step < crop.rows.begin || top.i0 >= crop.rows.end ||
        right.i0 + right.step < crop.cols.begin || left.i0 >= crop.cols.end)
      return;  // the whole block
  }
  const int t = int(threadIdx.x), lane = t % 32, warp = t / 32;

  // 1. Taps of the tile's rows and columns, the footprint in the tile, coefficients.
  YF_SHARED(LinearTap<A>, row_taps, kPasteTileH);
  YF_SHARED(LinearTap<A>, col_taps, kPasteTileW);
  YF_SHARED(int, footprint, 4);  // rows [0], [1); columns [2], [3) of the tile
  YF_DYNAMIC_SHARED(A, coef);
  if (t < th) row_taps[t] = linear_tap<A>(ty0 + t, H, out_h);
  if (t < tw) col_taps[t] = linear_tap<A>(tx0 + t, W, out_w);
  for (int j = t; j < k; j += kMaskThreads) coef[j] = A(coeffs[int64_t(n) * k + j]);
  if (t == 0) {
    const PixelRange rows = tap_footprint([&](int64_t i) { return linear_tap<A>(ty0 + i, H, out_h); }, th, crop.rows);
    const PixelRange cols = tap_footprint([&](int64_t i) { return linear_tap<A>(tx0 + i, W, out_w); }, tw, crop.cols);
    footprint[0] = int(rows.begin);
    footprint[1] = int(rows.end);
    footprint[2] = int(cols.begin);
    footprint[3] = int(cols.end);
  }
  __syncthreads();
  const int fy0 = footprint[0], fy1 = footprint[1], fx0 = footprint[2], fx1 = footprint[3];
  const LinearTap<A> first_row = row_taps[fy0], last_row = row_taps[fy1 - 1];
  const LinearTap<A> first_col = col_taps[fx0], last_col = col_taps[fx1 - 1];
  const int pr0 = first_row.i0, ph = last_row.i0 + last_row.step - pr0 + 1;
  const int pc0 = first_col.i0, pw = last_col.i0 + last_col.step - pc0 + 1;

  // 2. The proto patch the footprint's taps read: cropped sigmoid masks (0 off the crop).
  YF_SHARED(A, patch, kPatchRows * kPatchCols);
  for (int r = warp; r < ph; r += kMaskThreads / 32)
    for (int c = lane; c < pw; c += 32) {
      const int y = pr0 + r, x = pc0 + c;
      A value = A(0);
      if (crop.contains(y, x)) value = sigmoid(lincomb<A>(proto + int64_t(y * W + x) * k, coef, k));
      patch[r * kPatchCols + c] = value;
    }
  __syncthreads();

  // 3. Each patch row resized along x to the footprint's columns.
  YF_SHARED(A, resized, kPatchRows * kPasteTileW);
  for (int r = t / kPasteTileW; r < ph; r += kMaskThreads / kPasteTileW)
    for (int x = fx0 + t % kPasteTileW; x < fx1; x += kPasteTileW) {
      const LinearTap<A> tap = col_taps[x];
      const int c = r * kPatchCols + tap.i0 - pc0;
      const A left = patch[c], right = patch[c + tap.step];
      resized[r * kPasteTileW + x] = left * tap.w0 + right * tap.w1;
    }
  __syncthreads();

  // 4. Resize along y, threshold, store: a warp per row, 4 pixels per thread.
  const int quad0 = fx0 / 4, quad1 = (fx1 + 3) / 4;
  for (int row = fy0 + warp; row < fy1; row += kMaskThreads / 32) {
    const LinearTap<A> tap = row_taps[row];
    const int top = (tap.i0 - pr0) * kPasteTileW, bottom = top + tap.step * kPasteTileW;
    bool* dst = out + (int64_t(n) * out_h + ty0 + row) * out_w + tx0;
    for (int quad = quad0 + lane; quad < quad1; quad += 32) {
      uint32_t bits = 0;
      for (int j = 0; j < 4; ++j) {
        const int x = 4 * quad + j;
        if (x < fx0 || x >= fx1) continue;
        const A upper = resized[top + x], lower = resized[bottom + x];
        bits |= uint32_t(upper * tap.w0 + lower * tap.w1 > threshold) << (8 * j);
      }
      if (quad_stores) {
        *reinterpret_cast<uint32_t*>(dst + 4 * quad) = bits;
      } else {
        for (int j = 0; j < 4; ++j) {
          const int x = 4 * quad + j;
          if (x >= fx0 && x < fx1) dst[x] = (bits >> (8 * j)) & 1u;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace yf
