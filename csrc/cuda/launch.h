// Launch logic of the CUDA ops, written once for any Launch policy, called as
//   launch("kernel_name", grid, block, dynamic_shared_bytes, &kernels::fn<T>, args...)
// (dynamic_shared_bytes a size_t, or LargeSharedBytes to opt in above 48 KiB): the real
// policy (csrc/cuda/yolact_fast_cuda.cu) launches fn<<<grid, block, bytes, stream>>>, the
// host policy (emulation::HostLaunch) runs the same kernels on CPU tensors under the
// emulation. Only ATen ops and kernel launches: nothing here waits on the device. The
// callers check the arguments first (before any device guard), with csrc/checks.h.
#pragma once

#include <ATen/ATen.h>

#include <limits>

#include "../checks.h"
#include "../ops.h"
#include "kernels.cuh"

namespace yf {
namespace launch {

constexpr int kThreads = 256;

inline dim3 blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return dim3(static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 1 << 16)));
}

template <class Launch>
at::Tensor make_priors(const Launch& launch, const at::Tensor& anchor_wh,
                       at::IntArrayRef feature_sizes, at::IntArrayRef anchors_per_level) {
  const int64_t total = check_make_priors_args(anchor_wh, feature_sizes, anchors_per_level);
  const auto wh = anchor_wh.to(at::kDouble).contiguous();
  auto priors = at::empty({total, 4}, anchor_wh.options().dtype(at::kFloat));
  int64_t offset = 0, anchor_offset = 0;
  for (size_t l = 0; l < anchors_per_level.size(); ++l) {
    const int64_t h = feature_sizes[2 * l], w = feature_sizes[2 * l + 1];
    const int64_t A = anchors_per_level[l], count = h * w * A;
    if (count > 0)
      launch("priors_level", blocks_for(count), dim3(kThreads), 0, &kernels::priors_level,
             priors.data_ptr<float>() + 4 * offset, wh.data_ptr<double>() + 2 * anchor_offset, h,
             w, A);
    offset += count;
    anchor_offset += A;
  }
  return priors;
}

template <class Launch>
at::Tensor decode_boxes(const Launch& launch, const at::Tensor& loc, const at::Tensor& priors,
                        double variance_xy, double variance_wh) {
  if (is_reduced_float(loc))  // float32 inside, rounded once at the end
    return decode_boxes(launch, loc.to(at::kFloat), priors.to(at::kFloat), variance_xy,
                        variance_wh)
        .to(loc.scalar_type());
  const auto loc_c = loc.contiguous();
  const auto priors_c = priors.contiguous();
  auto out = at::empty_like(loc_c);
  const int64_t total = loc_c.numel() / 4;
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(loc.scalar_type(), "decode_boxes_cuda", [&] {
    launch("decode", blocks_for(total), dim3(kThreads), 0, &kernels::decode<scalar_t>,
           loc_c.data_ptr<scalar_t>(), priors_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
           total, priors.size(0), static_cast<scalar_t>(variance_xy),
           static_cast<scalar_t>(variance_wh));
  });
  return out;
}

template <class Launch>
at::Tensor assemble_masks(const Launch& launch, const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  const auto proto_c = proto.contiguous();
  const auto coeffs_c = coeffs.contiguous();
  const auto boxes_c = boxes.contiguous();
  const int64_t H = proto.size(0), W = proto.size(1), k = proto.size(2), N = coeffs.size(0);
  auto out = at::empty({N, H, W}, proto.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(proto.scalar_type(), "assemble_masks_cuda", [&] {
    launch("assemble_masks", blocks_for(N * H * W), dim3(kThreads), 0,
           &kernels::assemble_masks<scalar_t>,
           proto_c.data_ptr<scalar_t>(), coeffs_c.data_ptr<scalar_t>(),
           boxes_c.data_ptr<scalar_t>(), N, H, W, k, static_cast<scalar_t>(crop_padding),
           out.data_ptr<scalar_t>());
  });
  return out;
}

template <class Launch>
at::Tensor paste_masks(const Launch& launch, const at::Tensor& proto, const at::Tensor& coeffs,
                       const at::Tensor& boxes, at::IntArrayRef size, double threshold,
                       double crop_padding) {
  const int64_t H = proto.size(0), W = proto.size(1), N = coeffs.size(0);
  const int64_t out_h = size[0], out_w = size[1];
  auto out = at::empty({N, out_h, out_w}, proto.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  const at::Tensor masks = assemble_masks(launch, proto, coeffs, boxes, crop_padding);
  const auto boxes_c = boxes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(proto.scalar_type(), "paste_masks_cuda", [&] {
    launch("paste_masks", blocks_for(out.numel()), dim3(kThreads), 0,
           &kernels::paste_masks<scalar_t>,
           masks.data_ptr<scalar_t>(), boxes_c.data_ptr<scalar_t>(), N, H, W, out_h, out_w,
           static_cast<scalar_t>(crop_padding), static_cast<scalar_t>(threshold),
           out.data_ptr<bool>());
  });
  return out;
}

}  // namespace launch
}  // namespace yf
