// CUDA kernels. They compile under nvcc and, for tests, under a host compiler where
// csrc/emulation/emulation.h runs each block's threads as fibers (shared memory through
// YF_SHARED / YF_DYNAMIC_SHARED only: see macros.h).
#pragma once

#if !defined(__CUDACC__)
#include "../emulation/emulation.h"
#endif

#include "../common/box_math.h"
#include "../common/checksum_math.h"
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
    const int64_t a = i % A;
    const PriorCentre centre = prior_centre(i / A, conv_h, conv_w);
    out[4 * i] = float(centre.x);
    out[4 * i + 1] = float(centre.y);
    out[4 * i + 2] = float(anchor_wh[2 * a]);
    out[4 * i + 3] = float(anchor_wh[2 * a + 1]);
  }
}

// loc, out [batch, P, 4]: priors along grid.x, images along grid.y (no per-element
// division by P). Inputs of T, arithmetic in A, each output rounded once to T.
template <class T, class A>
YF_GLOBAL void decode(const T* loc, const T* priors, T* out, int64_t batch, int64_t P, A v0, A v1) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* image_loc = loc + 4 * b * P;
    T* image_out = out + 4 * b * P;
    YF_KERNEL_LOOP(p, P) {
      const BoxValues<A> l(image_loc + 4 * p);
      A box[4];
      decode_box(BoxValues<A>(priors + 4 * p).v, l.v, exp_(l.v[2] * v1), exp_(l.v[3] * v1), v0,
                 box);
      for (int d = 0; d < 4; ++d) image_out[4 * p + d] = T(box[d]);
    }
  }
}

// --- masks -----------------------------------------------------------------------------
// assemble_masks: a block works on one tile of one detection's output and returns at once
// when the tile misses the detection's crop (the output was zeroed by one memset).
// paste_masks: a block loops over tiles of any detection, zeroing those off the footprint
// itself. Coefficients are staged in dynamic shared memory (k values of the
// arithmetic type A).

constexpr int kMaskThreads = 256;  // 8 warps
constexpr int kMaskWarps = kMaskThreads / 32;
constexpr int kAssembleTile = 32;  // assemble_masks: 32 x 32 proto pixels per block
// paste_masks: a tile of at most kPasteTileH x kPasteTileW output pixels, whose bilinear
// taps need at most kPatchH x kPatchW proto pixels (the launcher sizes tiles so; +2 slack
// for float rounding of the source positions).
constexpr int kPasteTileH = 32, kPasteTileW = 128;
constexpr int kPatchH = 24, kPatchW = 48;
constexpr int kPatchRows = kPatchH + 2, kPatchCols = kPatchW + 2;

// Proto staging: a warp combines the channels of up to 32 consecutive pixels of a proto row
// (lane i: pixel i) through shared memory, kStageChannels channels at a time. The warp
// copies a run with coalesced loads (each pixel's run is one 32-byte sector for float32;
// 16-byte vector loads when proto's rows allow), then each lane combines its pixel's run
// from shared memory (odd pixel stride: no bank conflicts).
constexpr int kStageChannels = 8;
constexpr int kStageStride = kStageChannels + 1;
constexpr int kStageElements = 32 * kStageStride;  // one warp's

// 16 bytes of T, loaded with one vector load.
template <class T>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / int(sizeof(T));
  T v[kSize];
};

// array[base + j]: a run inside a shared (or any indexable) array.
template <class Array>
struct Shifted {
  Array array;
  int64_t base;
  YF_HD auto operator[](int64_t j) const -> decltype(array[base + j]) { return array[base + j]; }
};

// Lane i of the calling warp gets lincomb(px + i * k, coef, k) for i < pixels (<= 32),
// with the arithmetic (and rounding) of lincomb. Called by all 32 lanes of a warp (it
// synchronises the warp); stage[stage_base, stage_base + kStageElements) is the warp's.
// vector_loads: px and k * sizeof(T) are multiples of 16 bytes and k of kStageChannels.
template <class A, class T, class Coef, class Stage>
YF_DEVICE inline A warp_lincomb(const T* px, int pixels, int k, Coef coef, Stage stage,
                                int stage_base, bool vector_loads) {
  constexpr int kVector = Vec16<T>::kSize, kVectorsPerRun = kStageChannels / kVector;
  static_assert(kStageChannels % kVector == 0, "a run is whole vectors");
  const int lane = int(threadIdx.x) % 32;
  LincombSum<A> sum;
  for (int j0 = 0; j0 < k; j0 += kStageChannels) {
    const int channels = min_(kStageChannels, k - j0);
    if (vector_loads) {
      for (int q = lane; q < pixels * kVectorsPerRun; q += 32) {
        const int p = q / kVectorsPerRun, j = (q % kVectorsPerRun) * kVector;
        const T* src = px + int64_t(p) * k + j0 + j;
        YF_TAKE_PATH(kVectorLoads, src, sizeof(Vec16<T>));
        const Vec16<T> v = *reinterpret_cast<const Vec16<T>*>(src);
        for (int e = 0; e < kVector; ++e) stage[stage_base + p * kStageStride + j + e] = A(v.v[e]);
      }
    } else {
      YF_TAKE_PATH(kElementLoads, nullptr, 0);
      for (int q = lane; q < pixels * kStageChannels; q += 32) {
        const int p = q / kStageChannels, j = q % kStageChannels;
        if (j < channels) stage[stage_base + p * kStageStride + j] = A(px[int64_t(p) * k + j0 + j]);
      }
    }
    __syncwarp();
    if (lane < pixels)
      sum.add(Shifted<Stage>{stage, stage_base + lane * kStageStride}, Shifted<Coef>{coef, j0},
              channels);
    __syncwarp();
  }
  return sum.total();
}

template <class T, class A>
YF_HD inline CropBox detection_crop(const T* boxes, int n, int H, int W, A padding) {
  const T* box_n = boxes + 4 * int64_t(n);
  const A box[4] = {A(box_n[0]), A(box_n[1]), A(box_n[2]), A(box_n[3])};
  return crop_box(box, H, W, padding);
}

// Cropped sigmoid masks at proto resolution, out [N, H, W] (zeroed): grid (ceil(W / 32),
// ceil(H / 32), detections of this launch), detection = first + blockIdx.z. A warp per
// row of the tile, a lane per pixel.
template <class T, class A>
YF_GLOBAL void assemble_masks(int first, const T* proto, const T* coeffs, const T* boxes, int H,
                              int W, int k, A padding, bool vector_loads, T* out) {
  const int n = first + int(blockIdx.z);
  const CropBox crop = detection_crop(boxes, n, H, W, padding);
  const int y0 = int(blockIdx.y) * kAssembleTile, x0 = int(blockIdx.x) * kAssembleTile;
  const int y_begin = max_(y0, int(crop.rows.begin)),
            y_end = min_(y0 + kAssembleTile, int(crop.rows.end));
  const int x_begin = max_(x0, int(crop.cols.begin)),
            x_end = min_(x0 + kAssembleTile, int(crop.cols.end));
  if (y_begin >= y_end || x_begin >= x_end) return;  // the whole block: nothing to do

  YF_DYNAMIC_SHARED(A, coef);
  YF_SHARED(A, stage, kMaskWarps * kStageElements);
  for (int j = int(threadIdx.x); j < k; j += kMaskThreads) coef[j] = A(coeffs[int64_t(n) * k + j]);
  __syncthreads();
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  T* plane = out + int64_t(n) * H * W;
  for (int y = y_begin + warp; y < y_end; y += kMaskWarps) {
    const int pixel = y * W + x_begin;
    const A value = warp_lincomb<A>(proto + int64_t(pixel) * k, x_end - x_begin, k, coef, stage,
                                    warp * kStageElements, vector_loads);
    if (lane < x_end - x_begin) plane[pixel + lane] = T(sigmoid(value));
  }
}

// Pixels [4 quad, 4 quad + 4) of an output row (those < width), one byte of bits each;
// quad_stores: width is a multiple of 4 and dst 4-byte aligned, so one 4-byte store.
YF_HD inline void store_quad(bool* dst, int quad, uint32_t bits, int width, bool quad_stores) {
  if (quad_stores) {
    YF_TAKE_PATH(kQuadStores, dst + 4 * quad, sizeof(uint32_t));
    *reinterpret_cast<uint32_t*>(dst + 4 * quad) = bits;
    return;
  }
  YF_TAKE_PATH(kByteStores, nullptr, 0);
  for (int j = 0; j < 4 && 4 * quad + j < width; ++j) dst[4 * quad + j] = (bits >> (8 * j)) & 1u;
}

// Zeros of a th x tw output tile whose rows start out_w bytes apart. wide_stores (tw and
// out_w multiples of 16, the tile 16-byte aligned, tw <= kPasteTileW): thread t stores
// bytes [16 (t % 8), +16) of rows t / 8, t / 8 + 32, ..., one 16-byte store for a whole
// 128 x 32 tile; else a warp per row, 4 pixels (or bytes) per lane.
constexpr int kWideChunksPerRow = kPasteTileW / 16;
static_assert(kMaskThreads % kWideChunksPerRow == 0, "a whole number of rows per pass");

YF_DEVICE inline void zero_tile(bool* tile, int th, int tw, int out_w, bool quad_stores,
                                bool wide_stores) {
  const int t = int(threadIdx.x);
  if (wide_stores) {
    const int chunk = t % kWideChunksPerRow;
    if (16 * chunk >= tw) return;
    for (int row = t / kWideChunksPerRow; row < th; row += kMaskThreads / kWideChunksPerRow) {
      bool* dst = tile + int64_t(row) * out_w + 16 * chunk;
      YF_TAKE_PATH(kWideStores, dst, sizeof(Vec16<uint32_t>));
      *reinterpret_cast<Vec16<uint32_t>*>(dst) = Vec16<uint32_t>{};
    }
    return;
  }
  const int lane = t % 32, warp = t / 32, quads = (tw + 3) / 4;
  for (int row = warp; row < th; row += kMaskWarps)
    for (int quad = lane; quad < quads; quad += 32)
      store_quad(tile + int64_t(row) * out_w, quad, 0, tw, quad_stores);
}

// Tile g of a paste_masks launch: tile g % tiles (row-major, tiles_x per row) of detection
// first + g / tiles, rows [ty0, ty0 + th) and columns [tx0, tx0 + tw) of its output.
struct PasteTile {
  int n, ty0, tx0, th, tw;
};

YF_HD inline PasteTile paste_tile(int g, int first, int tiles, int tiles_x, int tile_h, int tile_w,
                                  int out_h, int out_w) {
  const int tile = g % tiles, ty0 = (tile / tiles_x) * tile_h, tx0 = (tile % tiles_x) * tile_w;
  return {first + g / tiles, ty0, tx0, min_(tile_h, out_h - ty0), min_(tile_w, out_w - tx0)};
}

// Whether the bilinear taps of the tile's pixels read any proto pixel of the crop.
template <class A>
YF_HD inline bool tile_reaches_crop(const PasteTile& tile, const CropBox& crop, int H, int W,
                                    int out_h, int out_w) {
  const LinearTap<A> top = linear_tap<A>(tile.ty0, H, out_h),
                     bottom = linear_tap<A>(tile.ty0 + tile.th - 1, H, out_h);
  const LinearTap<A> left = linear_tap<A>(tile.tx0, W, out_w),
                     right = linear_tap<A>(tile.tx0 + tile.tw - 1, W, out_w);
  return taps_reach(top, bottom, crop.rows) && taps_reach(left, right, crop.cols);
}

// Bilinear resize (align_corners=False) of the cropped sigmoid masks and threshold, fused:
// out [N, out_h, out_w] bool, every pixel written (0 off each box's footprint: no memset).
// Block b takes the launch's tiles (paste_tile) b, b + gridDim.x, ... (grid (blocks, 1,
// 1)) in rounds of 32: lane i of warp 0 tests whether tile i of the round reaches its
// detection's crop and leaves the tile and the ballot of answers in shared memory, so that
// a tile off the footprint (96% of them on the golden case) costs a lane's test and its
// stores, not a test on every warp (ptxas spilled the tiles kept in registers) or a block.
// Such a tile is zeroed at once (one 16-byte store per thread for a whole tile with
// wide_stores). quad_stores: tile_w and out_w are multiples of 4, so each thread stores 4
// footprint pixels with one 4-byte store. vector_loads: see warp_lincomb.
// __launch_bounds__(256, 3): 80 registers, 3 blocks per SM; capped at 64 (4 blocks per
// SM), ptxas moved values to a 24-byte stack frame (local loads and stores in the kernel).
constexpr int kPasteBlocksPerSm = 3;

template <class T, class A>
YF_GLOBAL void YF_LAUNCH_BOUNDS(kMaskThreads, kPasteBlocksPerSm)
    paste_masks(int first, int detections, int tiles, int tiles_x, const T* proto, const T* coeffs,
                const T* boxes, int H, int W, int k, int out_h, int out_w, int tile_h, int tile_w,
                A padding, A threshold, bool vector_loads, bool quad_stores, bool wide_stores,
                bool* out) {
  const int t = int(threadIdx.x), lane = t % 32, warp = t / 32;
  YF_SHARED(LinearTap<A>, row_taps, kPasteTileH);
  YF_SHARED(LinearTap<A>, col_taps, kPasteTileW);
  YF_SHARED(int, footprint, 4);  // rows [0], [1); columns [2], [3) of the tile
  YF_SHARED(A, patch, kPatchRows * kPatchCols);
  YF_SHARED(A, scratch, kPatchRows * kPasteTileW);
  static_assert(kMaskWarps * kStageElements <= kPatchRows * kPasteTileW, "staging fits in scratch");
  YF_DYNAMIC_SHARED(A, coef);
  YF_SHARED(PasteTile, round_tiles, 32);
  YF_SHARED(unsigned, round_reaching, 1);  // bit i: round_tiles[i] reaches its crop

  // launch_tiles + 32 x gridDim.x < 2^31: the launcher's chunks and grid
  const int launch_tiles = detections * tiles, stride = int(gridDim.x);
  for (int g0 = int(blockIdx.x); g0 < launch_tiles; g0 += 32 * stride) {  // block-uniform
    if (warp == 0) {
      bool reaches = false;
      if (g0 + lane * stride < launch_tiles) {
        const PasteTile mine =
            paste_tile(g0 + lane * stride, first, tiles, tiles_x, tile_h, tile_w, out_h, out_w);
        reaches = tile_reaches_crop<A>(mine, detection_crop(boxes, mine.n, H, W, padding), H, W,
                                       out_h, out_w);
        round_tiles[lane] = mine;
      }
      const unsigned reaching = __ballot_sync(0xffffffffu, reaches);
      if (lane == 0) round_reaching[0] = reaching;
    }
    __syncthreads();
    const unsigned reaching = round_reaching[0];
    for (int i = 0; i < 32 && g0 + i * stride < launch_tiles; ++i) {  // block-uniform
      const PasteTile tile = round_tiles[i];
      const int n = tile.n, ty0 = tile.ty0, tx0 = tile.tx0, th = tile.th, tw = tile.tw;
      bool* tile_out = out + (int64_t(n) * out_h + ty0) * out_w + tx0;
      if (!((reaching >> i) & 1u)) {
        zero_tile(tile_out, th, tw, out_w, quad_stores, wide_stores);
        continue;
      }
      const CropBox crop = detection_crop(boxes, n, H, W, padding);

      // 1. Taps of the tile's rows and columns, the footprint in the tile, coefficients.
      for (int j = t; j < k; j += kMaskThreads) coef[j] = A(coeffs[int64_t(n) * k + j]);
      if (t < th) row_taps[t] = linear_tap<A>(ty0 + t, H, out_h);
      if (t < tw) col_taps[t] = linear_tap<A>(tx0 + t, W, out_w);
      if (t == 0) {
        const auto row_tap = [&](int64_t i) { return linear_tap<A>(ty0 + i, H, out_h); };
        const auto col_tap = [&](int64_t i) { return linear_tap<A>(tx0 + i, W, out_w); };
        const PixelRange rows = tap_footprint(row_tap, th, crop.rows);
        const PixelRange cols = tap_footprint(col_tap, tw, crop.cols);
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

      // 2. The proto patch the footprint's taps read: cropped sigmoid masks (0 off the crop),
      // a warp per patch row. `scratch` stages proto here and holds the resized rows in step 3.
      const int crop_c0 = max_(pc0, int(crop.cols.begin)),
                crop_c1 = min_(pc0 + pw, int(crop.cols.end));
      for (int r = warp; r < ph; r += kMaskWarps) {
        const int y = pr0 + r;
        const bool row_in_crop = y >= crop.rows.begin && y < crop.rows.end;
        for (int c = lane; c < pw; c += 32)
          if (!row_in_crop || pc0 + c < crop_c0 || pc0 + c >= crop_c1)
            patch[r * kPatchCols + c] = A(0);
        if (!row_in_crop) continue;  // warp-uniform
        for (int x0 = crop_c0; x0 < crop_c1; x0 += 32) {
          const int pixels = min_(32, crop_c1 - x0);
          const A value = warp_lincomb<A>(proto + (int64_t(y) * W + x0) * k, pixels, k, coef,
                                          scratch, warp * kStageElements, vector_loads);
          if (lane < pixels) patch[r * kPatchCols + x0 - pc0 + lane] = sigmoid(value);
        }
      }
      __syncthreads();

      // 3. Each patch row resized along x to the footprint's columns, and 0 in the rest of the
      // quads they overlap, so that step 4 reads whole quads without bounds checks.
      const int sx0 = fx0 & ~3, sx1 = (fx1 + 3) & ~3;  // <= kPasteTileW
      for (int r = t / kPasteTileW; r < ph; r += kMaskThreads / kPasteTileW)
        for (int x = sx0 + t % kPasteTileW; x < sx1; x += kPasteTileW) {
          A value = A(0);
          if (x >= fx0 && x < fx1) {
            const LinearTap<A> tap = col_taps[x];
            const int c = r * kPatchCols + tap.i0 - pc0;
            value = interpolate(tap, A(patch[c]), A(patch[c + tap.step]));
          }
          scratch[r * kPasteTileW + x] = value;
        }
      __syncthreads();

      // 4. Every pixel of the tile: resized along y and thresholded in the footprint, 0
      // elsewhere. A warp per row, 4 pixels per thread.
      const int quads = (tw + 3) / 4;
      for (int row = warp; row < th; row += kMaskWarps) {
        const bool in_footprint = row >= fy0 && row < fy1;  // warp-uniform
        const LinearTap<A> tap = row_taps[row];
        const int top = (tap.i0 - pr0) * kPasteTileW, bottom = top + tap.step * kPasteTileW;
        bool* dst = tile_out + int64_t(row) * out_w;
        for (int quad = lane; quad < quads; quad += 32) {
          const int x0 = 4 * quad;
          uint32_t bits = 0;
          if (in_footprint && x0 + 3 >= fx0 && x0 < fx1) {
            for (int j = 0; j < 4; ++j) {  // branch-free: pixels off the footprint masked out
              const int x = x0 + j;
              const bool set =
                  interpolate(tap, A(scratch[top + x]), A(scratch[bottom + x])) > threshold;
              bits |= uint32_t((x >= fx0) & (x < fx1) & set) << (8 * j);
            }
          }
          store_quad(dst, quad, bits, tw, quad_stores);
        }
      }
      __syncthreads();  // the next tile rewrites the taps, the coefficients, the patch and scratch
    }
    __syncthreads();  // every warp has read the round before warp 0 writes the next one
  }
}

// bits_checksum: each block takes chunks c = blockIdx.x, + gridDim.x, ... of the call's
// tensors (table[t], found by a binary search of first_chunk: empty tensors own none),
// sums word x weight over the chunk (the threads' partial sums reduced by shuffles, then
// across warps in shared memory) and adds it to sums[t] with one 64-bit atomic. Additions
// modulo 2^64 commute, so the result is the CPU kernel's bit for bit in any block order.
constexpr int kChecksumThreads = 256;
constexpr int kChecksumBlockWords = 1 << kChecksumBlockBits;
constexpr int kChecksumRounds = kChecksumBlockWords / kChecksumThreads;  // per block of words
static_assert(kChecksumChunkWords % kChecksumBlockWords == 0, "chunks are whole blocks of words");

// The calling thread's share of the words [first, last) of a chunk (first: a multiple of
// kChecksumChunkWords): words first + threadIdx.x + kChecksumThreads r. The block weight is
// computed once per block of words, the loads of a block's rounds issued together
// (unrolled), the index within the chunk 32-bit.
template <class Word>
YF_DEVICE inline uint64_t checksum_share(const Word* words, int64_t first, int64_t last) {
  const Word* chunk = words + first;
  const int count = int(last - first);  // <= kChecksumChunkWords
  uint64_t sum = 0;
  for (int block = 0; block * kChecksumBlockWords < count; ++block) {
    const uint32_t block_weight =
        checksum_block_weight(uint64_t((first >> kChecksumBlockBits) + block));
    YF_UNROLL
    for (int r = 0; r < kChecksumRounds; ++r) {
      const int position = r * kChecksumThreads + int(threadIdx.x);
      const int j = block * kChecksumBlockWords + position;
      if (j < count)
        sum += uint64_t(__ldg(chunk + j)) *
               (checksum_position_weight(uint32_t(position)) ^ block_weight);
    }
  }
  return sum;
}

YF_GLOBAL void bits_checksum(const ChecksumTensor* table, int64_t count, int64_t chunks,
                             unsigned long long* sums) {
  YF_SHARED(unsigned long long, warp_sums, kChecksumThreads / 32);
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    int64_t lo = 0, hi = count - 1;  // the last tensor whose first chunk is <= c
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (table[mid].first_chunk <= c)
        lo = mid;
      else
        hi = mid - 1;
    }
    const ChecksumTensor t = table[lo];
    const int64_t first = (c - t.first_chunk) * kChecksumChunkWords;
    const int64_t last = min_(first + kChecksumChunkWords, t.words);
    unsigned long long sum =  // the width is block-uniform
        with_checksum_words(t,
                            [&](const auto* words) { return checksum_share(words, first, last); });
    for (int offset = 16; offset > 0; offset /= 2)
      sum += __shfl_down_sync(0xffffffffu, sum, offset);
    if (lane == 0) warp_sums[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long total = 0;
      for (int w = 0; w < kChecksumThreads / 32; ++w) total += warp_sums[w];
      atomicAdd(&sums[lo], total);
    }
    __syncthreads();  // warp_sums is rewritten for the next chunk
  }
}

}  // namespace
}  // namespace kernels
}  // namespace yf
