// CPU mask assembly: sigmoid(proto @ coeffs) cropped to each box, and the fused paste
// (assembly, crop, bilinear resize with align_corners=False, threshold) that works only
// inside each box's footprint in the output.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "../checks.h"
#include "../common/box_math.h"
#include "../common/mask_math.h"
#include "../ops.h"

namespace yf {
namespace cpu {
namespace {

// Runs work(n) for n in [0, count), handing items to threads one at a time so that
// detections of very different sizes balance across threads.
template <class F>
void parallel_items(int64_t count, const F& work) {
  std::atomic<int64_t> next{0};
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), count);
  at::parallel_for(0, std::max<int64_t>(threads, 1), 1, [&](int64_t, int64_t) {
    for (int64_t n = next++; n < count; n = next++) work(n);
  });
}

// Arithmetic type of T: float for half, bfloat16 and float; double for double.
template <class T>
using Acc = at::opmath_type<T>;

// The box of detection n in the arithmetic type.
template <class T>
CropBox detection_crop(const T* boxes, int64_t n, int64_t H, int64_t W, Acc<T> padding) {
  const Acc<T> box[4] = {Acc<T>(boxes[4 * n]), Acc<T>(boxes[4 * n + 1]), Acc<T>(boxes[4 * n + 2]),
                         Acc<T>(boxes[4 * n + 3])};
  return crop_box(box, H, W, padding);
}

// Cropped sigmoid mask of one detection at proto resolution, written into out (row
// stride out_stride, origin at (rows.begin, cols.begin)).
template <class T, class O>
void assemble_one(const T* proto, int64_t W, int64_t k, const Acc<T>* coeffs, const CropBox& crop,
                  O* out, int64_t out_stride) {
  for (int64_t y = crop.rows.begin; y < crop.rows.end; ++y) {
    O* row = out + (y - crop.rows.begin) * out_stride;
    const T* src = proto + (y * W + crop.cols.begin) * k;
    for (int64_t x = 0; x < crop.cols.end - crop.cols.begin; ++x)
      row[x] = O(sigmoid(lincomb<Acc<T>>(src + x * k, coeffs, k)));
  }
}

// The coefficients of detection n in the arithmetic type.
template <class T>
const Acc<T>* detection_coeffs(const T* coeffs, int64_t n, int64_t k, std::vector<Acc<T>>& buffer) {
  if constexpr (std::is_same<T, Acc<T>>::value) {
    return coeffs + n * k;
  } else {
    buffer.assign(coeffs + n * k, coeffs + (n + 1) * k);
    return buffer.data();
  }
}

template <class T>
std::vector<LinearTap<T>> axis_taps(int64_t in_size, int64_t out_size) {
  std::vector<LinearTap<T>> taps(out_size);
  for (int64_t o = 0; o < out_size; ++o) taps[o] = linear_tap<T>(o, in_size, out_size);
  return taps;
}

template <class T>
PixelRange output_footprint(const std::vector<LinearTap<T>>& taps, PixelRange in) {
  return tap_footprint([&](int64_t o) { return taps[o]; }, int64_t(taps.size()), in);
}

template <class T, class A = Acc<T>>
void paste_one(const T* proto, int64_t H, int64_t W, int64_t k, const A* coeffs,
               const CropBox& crop, A threshold, const std::vector<LinearTap<A>>& row_taps,
               const std::vector<LinearTap<A>>& col_taps, bool* out, std::vector<A>& scratch) {
  const int64_t out_w = int64_t(col_taps.size());
  std::memset(out, 0, sizeof(bool) * row_taps.size() * out_w);
  if (crop.empty()) return;
  const PixelRange out_rows = output_footprint(row_taps, crop.rows);
  const PixelRange out_cols = output_footprint(col_taps, crop.cols);
  if (out_rows.empty() || out_cols.empty()) return;

  // mask: crop at proto resolution with a zero border of one pixel on every side, so the
  // taps of the footprint (which reach one pixel outside the crop) need no bounds checks.
  const int64_t mask_h = crop.rows.end - crop.rows.begin + 2;
  const int64_t mask_w = crop.cols.end - crop.cols.begin + 2;
  const int64_t span = out_cols.end - out_cols.begin;
  scratch.assign(mask_h * mask_w + mask_h * span, A(0));
  A* mask = scratch.data();
  A* rows_resized = mask + mask_h * mask_w;  // each mask row resized along x
  assemble_one(proto, W, k, coeffs, crop, mask + mask_w + 1, mask_w);

  const int64_t col0 = crop.cols.begin - 1, row0 = crop.rows.begin - 1;  // mask origin
  for (int64_t my = 1; my < mask_h - 1; ++my) {
    const A* src = mask + my * mask_w;
    A* dst = rows_resized + my * span;
    for (int64_t x = 0; x < span; ++x) {
      const LinearTap<A>& t = col_taps[out_cols.begin + x];
      dst[x] = interpolate(t, src[t.i0 - col0], src[t.i0 + t.step - col0]);
    }
  }
  for (int64_t oy = out_rows.begin; oy < out_rows.end; ++oy) {
    const LinearTap<A>& t = row_taps[oy];
    const A* top = rows_resized + (t.i0 - row0) * span;
    const A* bottom = rows_resized + (t.i0 + t.step - row0) * span;
    bool* dst = out + oy * out_w + out_cols.begin;
    for (int64_t x = 0; x < span; ++x) dst[x] = interpolate(t, top[x], bottom[x]) > threshold;
  }
}

}  // namespace

at::Tensor assemble_masks(const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  check_mask_args(proto, coeffs, boxes, crop_padding);
  const auto proto_c = proto.contiguous();
  const auto coeffs_c = coeffs.contiguous();
  const auto boxes_c = boxes.contiguous();
  const int64_t H = proto.size(0), W = proto.size(1), k = proto.size(2), N = coeffs.size(0);
  auto out = at::zeros({N, H, W}, proto.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, proto.scalar_type(), "assemble_masks_cpu", [&] {
        const scalar_t* p = proto_c.data_ptr<scalar_t>();
        const scalar_t* c = coeffs_c.data_ptr<scalar_t>();
        const scalar_t* b = boxes_c.data_ptr<scalar_t>();
        scalar_t* o = out.data_ptr<scalar_t>();
        const auto padding = static_cast<Acc<scalar_t>>(crop_padding);
        parallel_items(N, [&](int64_t n) {
          const CropBox crop = detection_crop(b, n, H, W, padding);
          if (crop.empty()) return;
          thread_local std::vector<Acc<scalar_t>> coeff_buffer;
          scalar_t* plane = o + n * H * W + crop.rows.begin * W + crop.cols.begin;
          assemble_one(p, W, k, detection_coeffs(c, n, k, coeff_buffer), crop, plane, W);
        });
      });
  return out;
}

at::Tensor paste_masks(const at::Tensor& proto, const at::Tensor& coeffs, const at::Tensor& boxes,
                       at::IntArrayRef size, double threshold, double crop_padding) {
  check_paste_args(proto, coeffs, boxes, size, threshold, crop_padding);
  const auto proto_c = proto.contiguous();
  const auto coeffs_c = coeffs.contiguous();
  const auto boxes_c = boxes.contiguous();
  const int64_t H = proto.size(0), W = proto.size(1), k = proto.size(2), N = coeffs.size(0);
  const int64_t out_h = size[0], out_w = size[1];
  auto out = at::empty({N, out_h, out_w}, proto.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, proto.scalar_type(), "paste_masks_cpu", [&] {
        using A = Acc<scalar_t>;
        const auto row_taps = axis_taps<A>(H, out_h);
        const auto col_taps = axis_taps<A>(W, out_w);
        const scalar_t* p = proto_c.data_ptr<scalar_t>();
        const scalar_t* c = coeffs_c.data_ptr<scalar_t>();
        const scalar_t* b = boxes_c.data_ptr<scalar_t>();
        bool* o = out.data_ptr<bool>();
        parallel_items(N, [&](int64_t n) {
          thread_local std::vector<A> scratch, coeff_buffer;
          paste_one(p, H, W, k, detection_coeffs(c, n, k, coeff_buffer),
                    detection_crop(b, n, H, W, static_cast<A>(crop_padding)),
                    static_cast<A>(threshold), row_taps, col_taps, o + n * out_h * out_w, scratch);
        });
      });
  return out;
}

}  // namespace cpu
}  // namespace yf
