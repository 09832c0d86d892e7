// Launch logic of the CUDA ops, written once for any Launch policy, called as
//   launch("kernel_name", grid, block, dynamic_shared_bytes, &kernels::fn<T>, args...)
// (dynamic_shared_bytes a size_t, or LargeSharedBytes to opt in above 48 KiB): the real
// policy (csrc/cuda/yolact_fast_cuda.cu) launches fn<<<grid, block, bytes, stream>>>, the
// host policy (emulation::HostLaunch) runs the same kernels on CPU tensors under the
// emulation. Only ATen ops and kernel launches: nothing here waits on the device. The
// callers check the arguments first (before any device guard), with csrc/checks.h.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <cstring>
#include <limits>
#include <type_traits>

#include "../checks.h"
#include "../common/checksum_table.h"
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
             priors.data_ptr<float>() + 4 * offset, wh.data_ptr<double>() + 2 * anchor_offset, h, w,
             A);
    offset += count;
    anchor_offset += A;
  }
  return priors;
}

template <class Launch>
at::Tensor decode_boxes(const Launch& launch, const at::Tensor& loc, const at::Tensor& priors,
                        double variance_xy, double variance_wh) {
  const auto loc_c = loc.contiguous();
  const auto priors_c = priors.contiguous();
  auto out = at::empty_like(loc_c);
  const int64_t P = priors.size(0), batch = P == 0 ? 0 : loc_c.numel() / (4 * P);
  if (batch == 0) return out;
  const dim3 grid(blocks_for(P).x, unsigned(std::min<int64_t>(batch, 65535)));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, loc.scalar_type(), "decode_boxes_cuda", [&] {
        using A = at::opmath_type<scalar_t>;  // float32 inside for float16/bfloat16, rounded once
        launch("decode", grid, dim3(kThreads), 0, &kernels::decode<scalar_t, A>,
               loc_c.data_ptr<scalar_t>(), priors_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
               batch, P, static_cast<A>(variance_xy), static_cast<A>(variance_wh));
      });
  return out;
}

// Dynamic shared memory of the mask kernels: the coefficients in the arithmetic type A,
// opted in above 48 KiB (with the static arrays) for very large k, up to the device's
// opt-in limit (launch.max_opt_in_shared_bytes()).
template <class A, class Launch>
size_t coefficient_bytes(const Launch& launch, const char* name, int64_t k, size_t static_bytes) {
  const size_t bytes = size_t(k) * sizeof(A), limit = launch.max_opt_in_shared_bytes();
  TORCH_CHECK_VALUE(bytes + static_bytes <= limit, name, " on CUDA stages the ", k,
                    " coefficients of a detection in shared memory (", bytes + static_bytes,
                    " bytes with the kernel's own arrays, the device allows ", limit,
                    "): proto's k is too large");
  return bytes;
}

template <class Launch, class... KernelArgs, class... Args>
void launch_mask_block(const Launch& launch, const char* name, dim3 grid, size_t bytes,
                       size_t static_bytes, void (*kernel)(KernelArgs...), Args&&... args) {
  if (bytes + static_bytes > 48 * 1024)
    launch(name, grid, dim3(kernels::kMaskThreads), LargeSharedBytes{bytes}, kernel,
           std::forward<Args>(args)...);
  else
    launch(name, grid, dim3(kernels::kMaskThreads), bytes, kernel, std::forward<Args>(args)...);
}

// grid.z = detections; those beyond grid.z's limit go to further launches.
template <class Launch, class A, class... KernelArgs, class... Args>
void launch_mask_kernel(const Launch& launch, const char* name, dim3 grid, int64_t k,
                        size_t static_bytes, void (*kernel)(KernelArgs...), Args&&... args) {
  const size_t bytes = coefficient_bytes<A>(launch, name, k, static_bytes);
  const int64_t detections = grid.z;
  for (int64_t first = 0; first < detections; first += 65535) {
    grid.z = unsigned(std::min<int64_t>(65535, detections - first));
    launch_mask_block(launch, name, grid, bytes, static_bytes, kernel, int(first), args...);
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Whether the mask kernels may stage proto with 16-byte vector loads (warp_lincomb).
inline bool proto_vector_loads(const at::Tensor& proto_c) {
  return proto_c.size(2) % kernels::kStageChannels == 0 &&
         reinterpret_cast<uintptr_t>(proto_c.data_ptr()) % 16 == 0;
}

// An output that a kernel writes wholly (no memset before it): under the emulation it starts
// as 0x01 bytes, not zeros, so that an element the kernel leaves unwritten shows in tests
// (a raw memset, invisible to the profiler that counts device work in cuda_report.py).
template <class Launch>
at::Tensor written_wholly(const Launch&, at::Tensor out) {
#if !defined(__CUDACC__)
  if constexpr (std::is_same<Launch, emulation::HostLaunch>::value)
    if (out.numel() > 0) std::memset(out.data_ptr(), 1, out.nbytes());
#endif
  return out;
}

// The mask kernels index a proto plane with 32-bit y * W + x.
inline void check_proto_plane(const at::Tensor& proto, const char* op) {
  TORCH_CHECK_VALUE(proto.size(0) * proto.size(1) < (int64_t(1) << 31), op,
                    " on CUDA: proto [H, W, k] must have H * W < 2^31, got shape ",
                    shape_str(proto));
}

template <class Launch>
at::Tensor assemble_masks(const Launch& launch, const at::Tensor& proto, const at::Tensor& coeffs,
                          const at::Tensor& boxes, double crop_padding) {
  check_proto_plane(proto, "assemble_masks");
  const auto proto_c = proto.contiguous();
  const auto coeffs_c = coeffs.contiguous();
  const auto boxes_c = boxes.contiguous();
  const int64_t H = proto.size(0), W = proto.size(1), k = proto.size(2), N = coeffs.size(0);
  auto out = at::zeros({N, H, W}, proto.options());
  if (out.numel() == 0) return out;
  TORCH_CHECK_VALUE(ceil_div(H, kernels::kAssembleTile) <= 65535,
                    "assemble_masks on CUDA supports proto heights up to ", 65535 * 32);
  const dim3 grid(unsigned(ceil_div(W, kernels::kAssembleTile)),
                  unsigned(ceil_div(H, kernels::kAssembleTile)), unsigned(N));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, proto.scalar_type(), "assemble_masks_cuda", [&] {
        using A = at::opmath_type<scalar_t>;
        constexpr size_t static_bytes = sizeof(A) * kernels::kMaskWarps * kernels::kStageElements;
        launch_mask_kernel<Launch, A>(
            launch, "assemble_masks", grid, k, static_bytes, &kernels::assemble_masks<scalar_t, A>,
            proto_c.data_ptr<scalar_t>(), coeffs_c.data_ptr<scalar_t>(),
            boxes_c.data_ptr<scalar_t>(), int(H), int(W), int(k), static_cast<A>(crop_padding),
            proto_vector_loads(proto_c), out.data_ptr<scalar_t>());
      });
  return out;
}

// Output rows (or columns) per paste tile: as many as keep the proto pixels their taps
// read within `patch` - 2 (src advances in_size / out_size per output pixel).
inline int paste_tile_extent(int64_t in_size, int64_t out_size, int max_tile, int patch) {
  const int64_t fit = (patch - 2) * out_size / in_size + 1;
  return int(std::min<int64_t>(max_tile, std::max<int64_t>(fit, 1)));
}

// paste_masks: at most kPasteBlocks blocks (a few waves of an H100's resident blocks) share
// the tiles of all detections, block b taking tiles b, b + blocks, ...: a prime count, so
// that a block does not keep one tile position across detections when the tiles per
// detection divide it (centred boxes would load the same blocks). A launch takes whole
// detections, fewer than 2^31 - 65536 tiles (32-bit tile indices in the kernel, which
// looks 32 strides ahead).
constexpr int64_t kPasteBlocks = 1021;
constexpr int64_t kPasteLaunchTiles = (int64_t(1) << 31) - 65536;
static_assert(32 * kPasteBlocks < 65536, "the kernel's look-ahead stays below 2^31");

template <class Launch>
at::Tensor paste_masks(const Launch& launch, const at::Tensor& proto, const at::Tensor& coeffs,
                       const at::Tensor& boxes, at::IntArrayRef size, double threshold,
                       double crop_padding) {
  check_proto_plane(proto, "paste_masks");
  const int64_t H = proto.size(0), W = proto.size(1), k = proto.size(2), N = coeffs.size(0);
  const int64_t out_h = size[0], out_w = size[1];
  at::Tensor out =
      written_wholly(launch, at::empty({N, out_h, out_w}, proto.options().dtype(at::kBool)));
  if (out.numel() == 0) return out;
  const auto proto_c = proto.contiguous();
  const auto coeffs_c = coeffs.contiguous();
  const auto boxes_c = boxes.contiguous();
  const int tile_h = paste_tile_extent(H, out_h, kernels::kPasteTileH, kernels::kPatchH);
  int tile_w = paste_tile_extent(W, out_w, kernels::kPasteTileW, kernels::kPatchW);
  // out is allocated above (aligned to 64 bytes or more): its rows are 4- and 16-byte
  // aligned whenever out_w is a multiple of 4 or 16
  const bool quad_stores = out_w % 4 == 0 && tile_w >= 4;
  const bool wide_stores = out_w % 16 == 0 && tile_w >= 16;
  tile_w -= tile_w % (wide_stores ? 16 : quad_stores ? 4 : 1);
  const int64_t tiles_x = ceil_div(out_w, tile_w), tiles = ceil_div(out_h, tile_h) * tiles_x;
  TORCH_CHECK_VALUE(
      out_h < (int64_t(1) << 31) && out_w < (int64_t(1) << 31) && tiles < kPasteLaunchTiles,
      "paste_masks on CUDA: size ", size, " is too large");
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, proto.scalar_type(), "paste_masks_cuda", [&] {
        using A = at::opmath_type<scalar_t>;
        constexpr size_t static_bytes =
            sizeof(A) * kernels::kPatchRows * (kernels::kPatchCols + kernels::kPasteTileW) +
            sizeof(LinearTap<A>) * (kernels::kPasteTileH + kernels::kPasteTileW) +
            sizeof(kernels::PasteTile) * 32 + 64;
        const size_t bytes = coefficient_bytes<A>(launch, "paste_masks", k, static_bytes);
        const int64_t per_launch = std::max<int64_t>(1, (kPasteLaunchTiles - 1) / tiles);
        for (int64_t first = 0; first < N; first += per_launch) {
          const int64_t detections = std::min(per_launch, N - first);
          const dim3 grid(unsigned(std::min(detections * tiles, kPasteBlocks)));
          launch_mask_block(
              launch, "paste_masks", grid, bytes, static_bytes, &kernels::paste_masks<scalar_t, A>,
              int(first), int(detections), int(tiles), int(tiles_x), proto_c.data_ptr<scalar_t>(),
              coeffs_c.data_ptr<scalar_t>(), boxes_c.data_ptr<scalar_t>(), int(H), int(W), int(k),
              int(out_h), int(out_w), tile_h, tile_w, static_cast<A>(crop_padding),
              static_cast<A>(threshold), proto_vector_loads(proto_c), quad_stores, wide_stores,
              out.data_ptr<bool>());
        }
      });
  return out;
}

// bits_checksum of tensors on one device: [n] int64 (uint64 sums, bit-cast) in one kernel
// launch for any number of tensors, after the sums are zeroed (a fill) and the table is
// copied onto the device (from pinned host memory, asynchronously): at most
// kChecksumBlocks blocks, each looping over chunks. The callers check the arguments.
constexpr int64_t kChecksumBlocks = 1024;  // 8 resident blocks of 256 threads x 128 SMs
template <class Launch>
at::Tensor bits_checksum(const Launch& launch, at::TensorList tensors) {
  const ChecksumPlan plan = checksum_plan(tensors);
  const auto device = tensors[0].device();
  auto sums = at::zeros({int64_t(tensors.size())}, tensors[0].options().dtype(at::kLong));
  if (plan.chunks == 0) return sums;
  const int64_t table_bytes = int64_t(plan.table.size() * sizeof(ChecksumTensor));
  at::Tensor table = at::empty({table_bytes}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(table.data_ptr(), plan.table.data(), size_t(table_bytes));
  if (!device.is_cpu()) table = table.pin_memory().to(device, /*non_blocking=*/true);
  const dim3 grid(unsigned(std::min(plan.chunks, kChecksumBlocks)));
  launch("bits_checksum", grid, dim3(kernels::kChecksumThreads), 0, &kernels::bits_checksum,
         reinterpret_cast<const ChecksumTensor*>(table.data_ptr()), int64_t(plan.table.size()),
         plan.chunks, reinterpret_cast<unsigned long long*>(sums.data_ptr<int64_t>()));
  return sums;
}

}  // namespace launch
}  // namespace yf
