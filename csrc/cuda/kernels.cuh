// CUDA kernels. They compile under nvcc and, for tests, under a host compiler where
// csrc/common/emulation.h runs them over the whole grid; so they use grid-stride loops
// only (no shared memory, no __syncthreads, no atomics).
#pragma once

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

// keys[c, p] = -scores[c, p] for candidate priors, NaN otherwise, so that an ascending
// stable sort ranks each class's candidates by descending score, ties by prior index.
template <class T>
YF_GLOBAL void candidate_keys(const T* boxes, const T* scores, int64_t C, int64_t P, T threshold,
                              T* keys, bool* is_candidate) {
  YF_KERNEL_LOOP(p, P) {
    T best = -INFINITY;
    for (int64_t c = 0; c < C; ++c) best = nan_max(best, scores[c * P + p]);
    const bool candidate = best > threshold && box_is_finite(boxes + 4 * p);
    is_candidate[p] = candidate;
    for (int64_t c = 0; c < C; ++c) keys[c * P + p] = candidate ? -scores[c * P + p] : T(NAN);
  }
}

// detect's first pass, one prior per thread: decodes its box, takes the softmax over its
// C + 1 logits and writes keys as candidate_keys() does for the foreground probabilities.
template <class T>
YF_GLOBAL void detect_keys(const T* loc, const T* priors, const T* logits, int64_t C, int64_t P,
                           T v0, T v1, T threshold, T* boxes, T* keys, bool* is_candidate) {
  YF_KERNEL_LOOP(p, P) {
    const T* l = loc + 4 * p;
    decode_box(priors + 4 * p, l, exp_(l[2] * v1), exp_(l[3] * v1), v0, boxes + 4 * p);
    const T* row = logits + p * (C + 1);
    T row_max = -INFINITY;
    for (int64_t c = 0; c <= C; ++c) row_max = nan_max(row_max, row[c]);
    T sum = T(0);
    for (int64_t c = 0; c <= C; ++c) sum += exp_(row[c] - row_max);
    const T inv = T(1) / sum;
    T best = -INFINITY;
    for (int64_t c = 1; c <= C; ++c) best = nan_max(best, exp_(row[c] - row_max) * inv);
    const bool candidate = best > threshold && box_is_finite(boxes + 4 * p);
    is_candidate[p] = candidate;
    for (int64_t c = 0; c < C; ++c)
      keys[c * P + p] = candidate ? -(exp_(row[c + 1] - row_max) * inv) : T(NAN);
  }
}

// mask[c, i, w] bit b: ranked box i suppresses ranked box j = 64 w + b (j > i), both
// among the first n = min(K, num_candidates) of class c.
template <class T>
YF_GLOBAL void suppression_mask(const T* boxes, const int64_t* ranked_prior,
                                const int64_t* num_candidates, int64_t C, int64_t K,
                                int64_t words, T iou_threshold, uint64_t* mask) {
  YF_KERNEL_LOOP(t, C * K * words) {
    const int64_t w = t % words, i = (t / words) % K, c = t / (words * K);
    const int64_t n = *num_candidates < K ? *num_candidates : K;
    uint64_t bits = 0;
    if (i < n) {
      const T* box_i = boxes + 4 * ranked_prior[c * K + i];
      for (int64_t b = 0; b < 64; ++b) {
        const int64_t j = 64 * w + b;
        if (j > i && j < n && suppresses(box_i, boxes + 4 * ranked_prior[c * K + j], iou_threshold))
          bits |= uint64_t(1) << b;
      }
    }
    mask[t] = bits;
  }
}

// One thread per class walks its ranked boxes in order. "fast": a box is kept unless any
// earlier box suppresses it; "cluster" (greedy): unless an earlier *kept* box does.
YF_GLOBAL void scan_suppression(const uint64_t* mask, const int64_t* num_candidates, int64_t C,
                                int64_t K, int64_t words, bool only_kept_suppress,
                                uint64_t* removed, bool* keep) {
  YF_KERNEL_LOOP(c, C) {
    const int64_t n = *num_candidates < K ? *num_candidates : K;
    uint64_t* gone = removed + c * words;
    for (int64_t w = 0; w < words; ++w) gone[w] = 0;
    for (int64_t j = 0; j < K; ++j) {
      const bool kept = j < n && !((gone[j / 64] >> (j % 64)) & 1);
      keep[c * K + j] = kept;
      if (j < n && (kept || !only_kept_suppress)) {
        const uint64_t* row = mask + (c * K + j) * words;
        for (int64_t w = 0; w < words; ++w) gone[w] |= row[w];
      }
    }
  }
}

// Row m of the output: the m-th survivor in global rank order, or zeros past the count.
template <class T>
YF_GLOBAL void gather_detections(const T* boxes, const T* coeffs, const int64_t* ranked_prior,
                                 const T* ranked_keys, const int64_t* global_order,
                                 const int64_t* count, int64_t M, int64_t K, int64_t k,
                                 T* out_boxes, T* out_coeffs, int64_t* out_labels,
                                 T* out_scores) {
  YF_KERNEL_LOOP(m, M) {
    const bool valid = m < *count;
    const int64_t flat = valid ? global_order[m] : 0;
    const int64_t p = valid ? ranked_prior[flat] : 0;
    for (int64_t d = 0; d < 4; ++d) out_boxes[4 * m + d] = valid ? boxes[4 * p + d] : T(0);
    for (int64_t d = 0; d < k; ++d) out_coeffs[k * m + d] = valid ? coeffs[k * p + d] : T(0);
    out_labels[m] = valid ? flat / K : 0;
    out_scores[m] = valid ? -ranked_keys[flat] : T(0);
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
