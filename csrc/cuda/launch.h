// Launch logic of the CUDA ops, written once for any Launch policy: the real one
// (csrc/cuda/yolact_fast_cuda.cu: kernel<<<grid, block, 0, stream>>>) and the host
// emulation (csrc/cpu/emulated_cuda.cpp) that runs the same kernels on CPU tensors in
// tests. Only ATen ops and kernel launches: nothing here waits on the device.
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
      launch(blocks_for(count), dim3(kThreads), &kernels::priors_level,
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
  check_decode_args(loc, priors, variance_xy, variance_wh);
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
    launch(blocks_for(total), dim3(kThreads), &kernels::decode<scalar_t>,
           loc_c.data_ptr<scalar_t>(), priors_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
           total, priors.size(0), static_cast<scalar_t>(variance_xy),
           static_cast<scalar_t>(variance_wh));
  });
  return out;
}

// Padded outputs of fast_nms / detect.
struct NmsOutputs {
  at::Tensor boxes, coeffs, labels, scores, count;
  NmsOutputs(int64_t M, int64_t k, const at::TensorOptions& options)
      : boxes(at::zeros({M, 4}, options)),
        coeffs(at::zeros({M, k}, options)),
        labels(at::zeros({M}, options.dtype(at::kLong))),
        scores(at::zeros({M}, options)),
        count(at::zeros({}, options.dtype(at::kLong))) {}
  // In the dtype of the inputs (float16/bfloat16 are computed in float32).
  NmsResult result(at::ScalarType dtype) const {
    return {boxes.to(dtype), coeffs.to(dtype), labels, scores.to(dtype), count};
  }
};

inline at::ScalarType compute_type(const at::Tensor& t) {
  return is_reduced_float(t) ? at::kFloat : t.scalar_type();
}

inline void check_bitmask_size(int64_t C, int64_t K, int64_t top_k) {
  const int64_t words = (K + 63) / 64;
  TORCH_CHECK_VALUE(double(C) * K * words * 8 <= double(std::numeric_limits<int32_t>::max()),
                    "NMS on this device keeps a ", C, " x ", K, " x ", K,
                    " suppression bitmask, which is too large: lower top_k (", top_k, ")");
}

// Per class NMS from keys [C, P] (-score for candidates, NaN otherwise) and the candidate
// flags, into out (already zeroed).
template <class scalar_t, class Launch>
void nms_from_keys(const Launch& launch, const at::Tensor& boxes, const at::Tensor& coeffs,
                   const at::Tensor& keys, const at::Tensor& is_candidate, int64_t K,
                   double iou_threshold, int64_t max_detections, bool greedy, NmsOutputs& out) {
  const int64_t C = keys.size(0), M = out.boxes.size(0), k = coeffs.size(1);
  const int64_t words = (K + 63) / 64;
  const auto options = boxes.options();
  const auto num_candidates = is_candidate.sum(at::kLong);
  const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  const auto ranked_keys = std::get<0>(sorted).narrow(1, 0, K).contiguous();
  const auto ranked_prior = std::get<1>(sorted).narrow(1, 0, K).contiguous();

  auto mask = at::empty({C, K, words}, options.dtype(at::kLong));
  auto removed = at::empty({C, words}, options.dtype(at::kLong));
  auto keep = at::empty({C, K}, options.dtype(at::kBool));
  auto mask_bits = reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>());
  launch(blocks_for(C * K * words), dim3(kThreads), &kernels::suppression_mask<scalar_t>,
         boxes.data_ptr<scalar_t>(), ranked_prior.data_ptr<int64_t>(),
         num_candidates.data_ptr<int64_t>(), C, K, words, static_cast<scalar_t>(iou_threshold),
         mask_bits);
  launch(blocks_for(C), dim3(kThreads), &kernels::scan_suppression, mask_bits,
         num_candidates.data_ptr<int64_t>(), C, K, words, greedy,
         reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()), keep.data_ptr<bool>());

  const auto survivor_keys = at::where(
      keep, ranked_keys, at::full({}, std::numeric_limits<double>::quiet_NaN(), options));
  const auto global_order =
      std::get<1>(at::sort(survivor_keys.view({-1}), /*stable=*/true, /*dim=*/0, false))
          .narrow(0, 0, M)
          .contiguous();
  out.count = at::clamp_max(keep.sum(at::kLong), max_detections);
  launch(blocks_for(M), dim3(kThreads), &kernels::gather_detections<scalar_t>,
         boxes.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), ranked_prior.data_ptr<int64_t>(),
         ranked_keys.data_ptr<scalar_t>(), global_order.data_ptr<int64_t>(),
         out.count.data_ptr<int64_t>(), M, K, k, out.boxes.data_ptr<scalar_t>(),
         out.coeffs.data_ptr<scalar_t>(), out.labels.data_ptr<int64_t>(),
         out.scores.data_ptr<scalar_t>());
}

template <class Launch>
NmsResult fast_nms(const Launch& launch, const at::Tensor& boxes_in, const at::Tensor& scores_in,
                   const at::Tensor& coeffs_in, double iou_threshold, int64_t top_k,
                   double score_threshold, int64_t max_detections, const std::string& method) {
  check_nms_args(boxes_in, scores_in, coeffs_in, iou_threshold, top_k, score_threshold,
                 max_detections);
  const bool greedy = parse_nms_method(method) == NmsMethod::kCluster;
  const at::ScalarType dtype = compute_type(boxes_in);
  const auto boxes = boxes_in.to(dtype).contiguous();
  const auto scores = scores_in.to(dtype).contiguous();
  const auto coeffs = coeffs_in.to(dtype).contiguous();
  const int64_t C = scores.size(0), P = boxes.size(0);
  const int64_t K = std::min(top_k, P);
  check_bitmask_size(C, K, top_k);
  NmsOutputs out(nms_output_size(C, P, top_k, max_detections), coeffs.size(1), boxes.options());
  if (out.boxes.size(0) == 0) return out.result(boxes_in.scalar_type());

  AT_DISPATCH_FLOATING_TYPES(dtype, "fast_nms_cuda", [&] {
    auto keys = at::empty({C, P}, boxes.options());
    auto is_candidate = at::empty({P}, boxes.options().dtype(at::kBool));
    launch(blocks_for(P), dim3(kThreads), &kernels::candidate_keys<scalar_t>,
           boxes.data_ptr<scalar_t>(), scores.data_ptr<scalar_t>(), C, P,
           static_cast<scalar_t>(score_threshold), keys.data_ptr<scalar_t>(),
           is_candidate.data_ptr<bool>());
    nms_from_keys<scalar_t>(launch, boxes, coeffs, keys, is_candidate, K, iou_threshold,
                            max_detections, greedy, out);
  });
  return out.result(boxes_in.scalar_type());
}

template <class Launch>
NmsResult detect(const Launch& launch, const at::Tensor& loc_in, const at::Tensor& logits_in,
                 const at::Tensor& coeffs_in, const at::Tensor& priors_in, double variance_xy,
                 double variance_wh, double iou_threshold, int64_t top_k, double score_threshold,
                 int64_t max_detections, const std::string& method) {
  const int64_t C = check_detect_args(loc_in, logits_in, coeffs_in, priors_in, variance_xy,
                                      variance_wh, iou_threshold, top_k, score_threshold,
                                      max_detections);
  const bool greedy = parse_nms_method(method) == NmsMethod::kCluster;
  const at::ScalarType dtype = compute_type(loc_in);
  const auto loc = loc_in.to(dtype).contiguous();
  const auto logits = logits_in.to(dtype).contiguous();
  const auto coeffs = coeffs_in.to(dtype).contiguous();
  const auto priors = priors_in.to(dtype).contiguous();
  const int64_t P = loc.size(0);
  const int64_t K = std::min(top_k, P);
  check_bitmask_size(C, K, top_k);
  NmsOutputs out(nms_output_size(C, P, top_k, max_detections), coeffs.size(1), loc.options());
  if (out.boxes.size(0) == 0) return out.result(loc_in.scalar_type());

  AT_DISPATCH_FLOATING_TYPES(dtype, "detect_cuda", [&] {
    auto boxes = at::empty({P, 4}, loc.options());
    auto keys = at::empty({C, P}, loc.options());
    auto is_candidate = at::empty({P}, loc.options().dtype(at::kBool));
    launch(blocks_for(P), dim3(kThreads), &kernels::detect_keys<scalar_t>,
           loc.data_ptr<scalar_t>(), priors.data_ptr<scalar_t>(), logits.data_ptr<scalar_t>(), C,
           P, static_cast<scalar_t>(variance_xy), static_cast<scalar_t>(variance_wh),
           static_cast<scalar_t>(score_threshold), boxes.data_ptr<scalar_t>(),
           keys.data_ptr<scalar_t>(), is_candidate.data_ptr<bool>());
    nms_from_keys<scalar_t>(launch, boxes, coeffs, keys, is_candidate, K, iou_threshold,
                            max_detections, greedy, out);
  });
  return out.result(loc_in.scalar_type());
}

template <class Launch>
at::Tensor assemble_masks(const Launch& launch, const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  check_mask_args(proto, coeffs, boxes, crop_padding);
  const auto proto_c = proto.contiguous();
  const auto coeffs_c = coeffs.contiguous();
  const auto boxes_c = boxes.contiguous();
  const int64_t H = proto.size(0), W = proto.size(1), k = proto.size(2), N = coeffs.size(0);
  auto out = at::empty({N, H, W}, proto.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(proto.scalar_type(), "assemble_masks_cuda", [&] {
    launch(blocks_for(N * H * W), dim3(kThreads), &kernels::assemble_masks<scalar_t>,
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
  check_paste_args(proto, coeffs, boxes, size, threshold, crop_padding);
  const int64_t H = proto.size(0), W = proto.size(1), N = coeffs.size(0);
  const int64_t out_h = size[0], out_w = size[1];
  auto out = at::empty({N, out_h, out_w}, proto.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  const at::Tensor masks = assemble_masks(launch, proto, coeffs, boxes, crop_padding);
  const auto boxes_c = boxes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(proto.scalar_type(), "paste_masks_cuda", [&] {
    launch(blocks_for(out.numel()), dim3(kThreads), &kernels::paste_masks<scalar_t>,
           masks.data_ptr<scalar_t>(), boxes_c.data_ptr<scalar_t>(), N, H, W, out_h, out_w,
           static_cast<scalar_t>(crop_padding), static_cast<scalar_t>(threshold),
           out.data_ptr<bool>());
  });
  return out;
}

}  // namespace launch
}  // namespace yf
