// Kernels with planted bugs (and correct twins) that tests/test_emulation.py runs to show
// that the host emulation catches each kind of bug. Built into yolact_fast._emulation only,
// never into yolact_fast._C.
#include <torch/extension.h>

#include <map>
#include <string>

#include "emulation.h"

namespace yf {
namespace selftest {
namespace {

using Kernel = void (*)(int64_t* out, int64_t arg);

unsigned tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
unsigned threads() { return blockDim.x * blockDim.y * blockDim.z; }
int64_t* block_out(int64_t* out) {
  return out + threads() * (blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
}

// s[t] = t, then each thread reads its mirror: correct with the barrier (arg != 0), a race
// without it (the array is initialised first, so the bug is a race in every schedule).
YF_GLOBAL void reverse(int64_t* out, int64_t with_barrier) {
  YF_SHARED(int64_t, s, 1024);
  const unsigned t = tid(), n = threads();
  s[t] = -1;
  __syncthreads();
  s[t] = t;
  if (with_barrier) __syncthreads();
  block_out(out)[t] = s[n - 1 - t];
}

// Every thread increments one shared counter without atomics: a race.
YF_GLOBAL void unsynchronised_sum(int64_t* out, int64_t) {
  YF_SHARED(int, s, 1);
  if (tid() == 0) s[0] = 0;
  __syncthreads();
  s[0] += 1;
  __syncthreads();
  block_out(out)[tid()] = s[0];
}

// Thread 1 overwrites a value the others read, with no barrier between.
YF_GLOBAL void write_after_read(int64_t* out, int64_t) {
  YF_SHARED(int, s, 1);
  if (tid() == 0) s[0] = 7;
  __syncthreads();
  block_out(out)[tid()] = s[0];
  if (tid() == 1) s[0] = 5;
}

// Every thread reads a broadcast value; warp 0 lags `arg` __syncwarp rounds (the other warps
// finish meanwhile in any schedule), reads it again, synchronises itself and its thread 0
// overwrites it: a race with the other warps' reads (a __syncwarp orders one warp), whose
// last readers are all of warp 0.
YF_GLOBAL void broadcast_then_warp_write(int64_t* out, int64_t lag) {
  YF_SHARED(int, s, 1);
  if (tid() == 0) s[0] = 7;
  __syncthreads();
  const int first = s[0];
  block_out(out)[tid()] = first;
  if (tid() / 32 == 0) {
    for (int64_t r = 0; r < lag; ++r) __syncwarp();
    const int again = s[0];
    block_out(out)[tid()] = first + again;
    __syncwarp();
    if (tid() == 0) s[0] = 5;
  }
}

// Indexes a 64-element array with thread indices up to blockDim - 1 (+ arg).
YF_GLOBAL void static_out_of_bounds(int64_t* out, int64_t extra) {
  YF_SHARED(float, s, 64);
  s[int64_t(tid()) + extra] = 1.0f;
  block_out(out)[tid()] = 0;
}

// One int per thread of dynamic shared memory (the launch gives arg bytes).
YF_GLOBAL void dynamic_per_thread(int64_t* out, int64_t) {
  YF_DYNAMIC_SHARED(int, s);
  s[tid()] = int(tid());
  __syncthreads();
  block_out(out)[tid()] = s[(tid() + 1) % threads()];
}

YF_GLOBAL void uninitialised_read(int64_t* out, int64_t) {
  YF_SHARED(int, s, 1024);
  block_out(out)[tid()] = s[tid()];
}

// Thread arg returns early, the others meet at a barrier: undefined in CUDA. With arg < 0
// every thread returns before the barrier, which is fine.
YF_GLOBAL void barrier_after_exit(int64_t* out, int64_t exiting) {
  block_out(out)[tid()] = tid();
  if (exiting < 0 || tid() == unsigned(exiting)) return;
  __syncthreads();
}

// The order in which threads take tickets depends on the schedule: no race (atomics).
YF_GLOBAL void atomic_tickets(int64_t* out, int64_t) {
  YF_SHARED(unsigned, next, 1);
  if (tid() == 0) next[0] = 0;
  __syncthreads();
  block_out(out)[tid()] = atomicAdd(&next[0], 1u);
}

YF_GLOBAL void global_atomic_tickets(int64_t* out, int64_t) {
  // out[threads] is the counter (zero on entry).
  block_out(out)[tid()] = atomicAdd(reinterpret_cast<unsigned long long*>(out + threads()), 1ull);
}

// Thread 0 of each block takes a ticket from the global counter after the blocks' outputs
// (out[blocks * threads]): the order in which the blocks ran, which a nonzero seed shuffles.
YF_GLOBAL void block_tickets(int64_t* out, int64_t) {
  const int64_t blocks = int64_t(gridDim.x) * gridDim.y * gridDim.z;
  auto* counter = reinterpret_cast<unsigned long long*>(out + blocks * threads());
  if (tid() == 0) block_out(out)[0] = int64_t(atomicAdd(counter, 1ull));
}

// Sum of thread indices of each warp by __shfl_down_sync, written by lane 0 to every lane.
YF_GLOBAL void warp_sum_down(int64_t* out, int64_t) {
  int64_t v = tid();
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  block_out(out)[tid()] = __shfl_sync(0xffffffffu, v, 0);
}

YF_GLOBAL void warp_sum_xor(int64_t* out, int64_t) {
  float v = float(tid());
  for (int mask = 1; mask < 32; mask *= 2) v += __shfl_xor_sync(0xffffffffu, v, mask);
  block_out(out)[tid()] = int64_t(v);
}

YF_GLOBAL void warp_ballot(int64_t* out, int64_t) {
  const unsigned votes = __ballot_sync(0xffffffffu, tid() % 3 == 0);
  block_out(out)[tid()] = votes + (int64_t(__popc(votes)) << 32);
}

// Two half-warps shuffle independently with disjoint masks (width 16).
YF_GLOBAL void half_warp_rotate(int64_t* out, int64_t) {
  const unsigned lane = tid() % 32;
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  block_out(out)[tid()] = __shfl_sync(mask, int(tid()), int(lane + 1) % 16, 16);
}

// Neighbours exchange through shared memory: __syncwarp orders lanes of one warp; with
// arg != 0 the partner is in another warp, which __syncwarp does not order.
YF_GLOBAL void warp_exchange(int64_t* out, int64_t across_warps) {
  YF_SHARED(int, s, 1024);
  const unsigned t = tid();
  s[t] = int(t);
  __syncwarp();
  block_out(out)[t] = s[across_warps ? (t + 32) % threads() : t ^ 1u];
}

// Lane 5 leaves before the warp shuffles with a full mask.
YF_GLOBAL void shuffle_with_exited_lane(int64_t* out, int64_t) {
  if (tid() % 32 == 5) return;
  block_out(out)[tid()] = __shfl_sync(0xffffffffu, int(tid()), 0);
}

// Lanes 0-15 wait at __syncthreads while lanes 16-31 shuffle with a full mask.
YF_GLOBAL void collective_deadlock(int64_t* out, int64_t) {
  if (tid() % 32 < 16)
    __syncthreads();
  else
    block_out(out)[tid()] = __shfl_sync(0xffffffffu, int(tid()), 0);
}

// A 16-byte vector load (the 4-byte quad store) at byte `offset` of the output: misaligned
// unless offset is a multiple of 16 (of 4). The output records the path taken.
YF_GLOBAL void vector_load_at(int64_t* out, int64_t offset) {
  YF_TAKE_PATH(kVectorLoads, reinterpret_cast<const char*>(out) + offset, 16);
  block_out(out)[tid()] = 1;
}
YF_GLOBAL void quad_store_at(int64_t* out, int64_t offset) {
  YF_TAKE_PATH(kQuadStores, reinterpret_cast<const char*>(out) + offset, 4);
  block_out(out)[tid()] = 1;
}

// A kernel written for blocks of `arg` threads (YF_REQUIRE), launched with any.
YF_GLOBAL void block_size_required(int64_t* out, int64_t threads_required) {
  YF_REQUIRE(blockDim.x == threads_required);
  block_out(out)[tid()] = 1;
}

const std::map<std::string, Kernel>& kernels() {
  static const std::map<std::string, Kernel> table = {
      {"reverse", &reverse},
      {"unsynchronised_sum", &unsynchronised_sum},
      {"write_after_read", &write_after_read},
      {"broadcast_then_warp_write", &broadcast_then_warp_write},
      {"static_out_of_bounds", &static_out_of_bounds},
      {"dynamic_per_thread", &dynamic_per_thread},
      {"uninitialised_read", &uninitialised_read},
      {"barrier_after_exit", &barrier_after_exit},
      {"atomic_tickets", &atomic_tickets},
      {"global_atomic_tickets", &global_atomic_tickets},
      {"block_tickets", &block_tickets},
      {"warp_sum_down", &warp_sum_down},
      {"warp_sum_xor", &warp_sum_xor},
      {"warp_ballot", &warp_ballot},
      {"half_warp_rotate", &half_warp_rotate},
      {"warp_exchange", &warp_exchange},
      {"shuffle_with_exited_lane", &shuffle_with_exited_lane},
      {"collective_deadlock", &collective_deadlock},
      {"vector_load_at", &vector_load_at},
      {"quad_store_at", &quad_store_at},
      {"block_size_required", &block_size_required},
  };
  return table;
}

dim3 to_dim3(const std::vector<int64_t>& v, const char* name) {
  TORCH_CHECK_VALUE(v.size() == 3, name, " must be (x, y, z)");
  for (int64_t d : v) TORCH_CHECK_VALUE(d >= 0 && d <= UINT32_MAX, name, " out of range");
  return dim3(unsigned(v[0]), unsigned(v[1]), unsigned(v[2]));
}

// Runs a planted kernel; returns its int64 output, threads * blocks (+ 1 spare) values.
at::Tensor run(const std::string& name, std::vector<int64_t> grid, std::vector<int64_t> block,
               int64_t shared_bytes, bool large_shared, int64_t arg) {
  const auto it = kernels().find(name);
  TORCH_CHECK_VALUE(it != kernels().end(), "no selftest kernel named '", name, "'");
  const dim3 g = to_dim3(grid, "grid"), b = to_dim3(block, "block");
  auto out = at::zeros({int64_t(g.x) * g.y * g.z * b.x * b.y * b.z + 1}, at::kLong);
  const emulation::HostLaunch launch;
  if (large_shared)
    launch(name.c_str(), g, b, LargeSharedBytes{size_t(shared_bytes)}, it->second,
           out.data_ptr<int64_t>(), arg);
  else
    launch(name.c_str(), g, b, size_t(shared_bytes), it->second, out.data_ptr<int64_t>(), arg);
  return out;
}

}  // namespace

void register_module(pybind11::module& m) {
  m.def("run", &run, "Run a planted-bug kernel under the emulation", pybind11::arg("name"),
        pybind11::arg("grid"), pybind11::arg("block"), pybind11::arg("shared_bytes") = 0,
        pybind11::arg("large_shared") = false, pybind11::arg("arg") = 0);
  std::vector<std::string> names;
  for (const auto& kv : kernels()) names.push_back(kv.first);
  m.attr("kernels") = names;
}

}  // namespace selftest
}  // namespace yf
