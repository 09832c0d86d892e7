// C++ checks (run by ctest) of the shared math and of the CPU kernels against the
// host-emulated CUDA kernels, through libyolact_fast_ops without Python.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/box_math.h"
#include "common/mask_math.h"
#include "emulation/emulated_cuda.h"
#include "ops.h"

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

void test_crop_range() {
  // x1 = 0.25 * 8 - 1 = 1, x2 = 0.5 * 8 + 1 = 5: columns 1..4.
  auto r = yf::crop_range(0.25f, 0.5f, 8, 1.0f);
  expect(r.begin == 1 && r.end == 5, "crop_range of an ordinary box");
  r = yf::crop_range(0.5f, 0.25f, 8, 1.0f);
  expect(r.begin == 1 && r.end == 5, "crop_range orders inverted bounds");
  r = yf::crop_range(NAN, 0.25f, 8, 1.0f);
  expect(r.empty(), "crop_range of NaN is empty");
  r = yf::crop_range(-5.0f, 5.0f, 8, 1.0f);
  expect(r.begin == 0 && r.end == 8, "crop_range clamps to the image");
  r = yf::crop_range(0.3f, 0.3f, 10, 0.0f);
  expect(r.empty(), "zero-width crop without padding is empty");
}

void test_linear_tap() {
  // 2 -> 4 pixels: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (last pixel).
  const auto t0 = yf::linear_tap<float>(0, 2, 4);
  const auto t1 = yf::linear_tap<float>(1, 2, 4);
  const auto t3 = yf::linear_tap<float>(3, 2, 4);
  expect(t0.i0 == 0 && t0.w1 == 0.f, "tap 0 clamps to the first pixel");
  expect(t1.i0 == 0 && t1.step == 1 && t1.w1 == 0.25f, "tap 1 interpolates");
  expect(t3.i0 == 1 && t3.step == 0, "tap 3 stays on the last pixel");
}

void test_iou() {
  const float a[4] = {0, 0, 2, 2}, b[4] = {1, 0, 3, 2};
  expect(std::fabs(yf::box_iou(a, b) - 1.f / 3.f) < 1e-7f, "IoU of half-overlapping boxes");
  const float c[4] = {NAN, 0, 1, 1};
  expect(yf::suppresses(a, c, 0.5f), "a NaN IoU suppresses (official keep is iou <= t)");
}

void test_cpu_matches_emulated_cuda() {
  at::manual_seed(0);
  const auto boxes = at::rand({500, 4});
  const auto ordered = at::cat({at::minimum(boxes.narrow(1, 0, 2), boxes.narrow(1, 2, 2)),
                                at::maximum(boxes.narrow(1, 0, 2), boxes.narrow(1, 2, 2))},
                               1);
  const auto scores = at::softmax(at::randn({6, 500}) * 3, 0);
  const auto coeffs = at::tanh(at::randn({500, 8}));
  for (const char* method : {"fast", "cluster"}) {
    const auto cpu = yf::cpu::fast_nms(ordered, scores, coeffs, 0.5, 200, 0.05, 100, method);
    const auto emu =
        yf::emulated_cuda::fast_nms(ordered, scores, coeffs, 0.5, 200, 0.05, 100, method);
    expect(std::get<4>(cpu).item<int64_t>() > 0, "NMS keeps something");
    expect(at::equal(std::get<0>(cpu), std::get<0>(emu)) &&
               at::equal(std::get<2>(cpu), std::get<2>(emu)) &&
               at::equal(std::get<3>(cpu), std::get<3>(emu)) &&
               at::equal(std::get<4>(cpu), std::get<4>(emu)),
           "CPU and emulated CUDA NMS agree");
  }
  const auto proto = at::relu(at::randn({30, 26, 8}));
  const auto det = yf::cpu::fast_nms(ordered, scores, coeffs, 0.5, 200, 0.05, 20, "fast");
  const auto cpu_masks =
      yf::cpu::paste_masks(proto, std::get<1>(det), std::get<0>(det), {97, 61}, 0.5, 1.0);
  const auto emu_masks =
      yf::emulated_cuda::paste_masks(proto, std::get<1>(det), std::get<0>(det), {97, 61}, 0.5, 1.0);
  expect(cpu_masks.ne(emu_masks).sum().item<int64_t>() == 0, "CPU and emulated CUDA paste agree");
  expect(cpu_masks.any().item<bool>(), "paste produces some foreground");
}

}  // namespace

int main() {
  test_crop_range();
  test_linear_tap();
  test_iou();
  test_cpu_matches_emulated_cuda();
  if (failures) return EXIT_FAILURE;
  std::printf("test_kernels: all checks passed\n");
  return EXIT_SUCCESS;
}
