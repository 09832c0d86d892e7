// CPU kernels for prior generation and box decoding.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "../checks.h"
#include "../common/box_math.h"
#include "../ops.h"

namespace yf {
namespace cpu {

at::Tensor make_priors(const at::Tensor& anchor_wh, at::IntArrayRef feature_sizes,
                       at::IntArrayRef anchors_per_level) {
  const int64_t total = check_make_priors_args(anchor_wh, feature_sizes, anchors_per_level);
  const auto wh = anchor_wh.to(at::kDouble).contiguous();
  auto priors = at::empty({total, 4}, anchor_wh.options().dtype(at::kFloat));
  float* out = priors.data_ptr<float>();
  const double* sizes = wh.data_ptr<double>();
  for (size_t l = 0; l < anchors_per_level.size(); ++l) {
    const int64_t conv_h = feature_sizes[2 * l], conv_w = feature_sizes[2 * l + 1];
    const int64_t A = anchors_per_level[l];
    at::parallel_for(0, conv_h * conv_w, 256, [&](int64_t begin, int64_t end) {
      for (int64_t cell = begin; cell < end; ++cell) {
        const PriorCentre centre = prior_centre(cell, conv_h, conv_w);
        for (int64_t a = 0; a < A; ++a) {
          float* p = out + (cell * A + a) * 4;
          p[0] = float(centre.x);
          p[1] = float(centre.y);
          p[2] = float(sizes[2 * a]);
          p[3] = float(sizes[2 * a + 1]);
        }
      }
    });
    out += conv_h * conv_w * A * 4;
    sizes += A * 2;
  }
  return priors;
}

at::Tensor decode_boxes(const at::Tensor& loc, const at::Tensor& priors, double variance_xy,
                        double variance_wh) {
  check_decode_args(loc, priors, variance_xy, variance_wh);
  if (is_reduced_float(loc))  // float32 inside, rounded once at the end
    return decode_boxes(loc.to(at::kFloat), priors.to(at::kFloat), variance_xy, variance_wh)
        .to(loc.scalar_type());
  const auto loc_c = loc.contiguous();
  const auto priors_c = priors.contiguous();
  const int64_t P = priors.size(0);
  const int64_t total = loc_c.numel() / 4;
  // The exponentials come from ATen so that decoding is bit-identical to torch.exp on
  // this CPU (its vectorized exp differs from libm's in the last bit for ~1% of inputs).
  const auto exp_wh = at::exp(loc_c.narrow(-1, 2, 2) * variance_wh).contiguous();
  auto out = at::empty_like(loc_c);
  AT_DISPATCH_FLOATING_TYPES(loc.scalar_type(), "decode_boxes_cpu", [&] {
    const scalar_t* l = loc_c.data_ptr<scalar_t>();
    const scalar_t* p = priors_c.data_ptr<scalar_t>();
    const scalar_t* e = exp_wh.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t v0 = static_cast<scalar_t>(variance_xy);
    at::parallel_for(0, total, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        decode_box(p + (i % P) * 4, l + i * 4, e[2 * i], e[2 * i + 1], v0, o + i * 4);
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace yf
