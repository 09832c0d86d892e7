// Host emulation of CUDA's execution model, so that the kernels of csrc/cuda/kernels.cuh
// run (and are checked) on machines without a GPU.
//
// Each block's threads run as fibers on one OS thread (blocks run in parallel, in an order
// shuffled by a nonzero options().seed; __threadfence() and global atomics are
// sequentially consistent). A fiber
// runs until it reaches __syncthreads(), a warp collective or its end, so barrier-free
// code runs straight through; which ready thread runs next is drawn from a generator
// seeded per (options().seed, kernel, block), so order-dependent code gives different
// answers under different seeds. Warp collectives wait for every lane of their mask.
// Shared memory (YF_SHARED / YF_DYNAMIC_SHARED, see macros.h) is bounds-checked on every
// access and, with check_races, race-checked: a byte accessed by one thread after another
// thread wrote it (or written after another thread read it) with no __syncthreads() or
// __syncwarp() of both threads between is reported with the kernel, block, both threads
// and the offset; so is a read of shared memory no thread of the block wrote. Launch
// limits are checked as the CUDA runtime does. Errors surface as c10::Error
// (RuntimeError; ValueError for launch configurations).
#pragma once

#if defined(__CUDACC__)
#error "emulation.h is for host compilers only"
#endif

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <ATen/record_function.h>

#include "../common/macros.h"

namespace yf {
namespace emulation {

// Shared memory per block with the opt-in (compute capability 9.0).
constexpr size_t kOptInSharedBytes = 227 * 1024;

// Settings of the emulation for launches from the calling OS thread. opt_in_shared_bytes:
// the emulated device's opt-in shared memory per block (64 KiB for compute capability 7.5
// up to kOptInSharedBytes), which launchers read through max_opt_in_shared_bytes().
struct Options {
  uint64_t seed = 0;
  bool check_races = true;
  size_t opt_in_shared_bytes = kOptInSharedBytes;
};
Options options();
void set_options(const Options& options);

// Global-memory access paths of the kernels (see YF_TAKE_PATH in macros.h).
enum Path : unsigned {
  kVectorLoads = 1u,
  kElementLoads = 2u,
  kQuadStores = 4u,
  kByteStores = 8u,
  kWideStores = 16u,
  kKeysInShared = 32u,        // a radix select's keys packed into shared memory
  kBoxesInShared = 64u,       // class_nms's ranked boxes staged in shared memory
  kMergeKeysInShared = 128u,  // class_nms's merge (its last block): keys in shared memory
};

// Launches made from the calling OS thread while recording (nestable); paths: the names of
// the Paths some thread of the launch took, in enum order.
struct LaunchRecord {
  std::string kernel;
  dim3 grid, block;
  size_t shared_bytes;
  std::vector<std::string> paths;
};
size_t begin_recording();
std::vector<LaunchRecord> end_recording(size_t start);

// A kernel call with its arguments bound: run(self) executes one thread's body.
struct KernelBody {
  void* self;
  void (*run)(void*);
};
void run_grid(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared_bytes,
              bool large_shared_opt_in, KernelBody body);

// The launch policy of csrc/cuda/launch.h that runs kernels under the emulation.
struct HostLaunch {
  size_t max_opt_in_shared_bytes() const { return options().opt_in_shared_bytes; }
  // A workspace that kernels must write before they read it starts as `value` (a GPU
  // leaves it as the allocator hands it over): a read of it unwritten gives a wrong answer
  // every time, not only when the allocator returns memory that held a misleading value.
  // Hidden from the profiler: it is no device work (tools/gpu_model.py counts ATen ops).
  template <class Tensor>
  void prefill(Tensor& workspace, double value) const {
    at::DisableRecordFunctionGuard unrecorded;
    workspace.fill_(value);
  }
  template <class... KernelArgs, class... Args>
  void operator()(const char* name, dim3 grid, dim3 block, size_t shared_bytes,
                  void (*kernel)(KernelArgs...), Args&&... args) const {
    launch(name, grid, block, shared_bytes, false, kernel, std::forward<Args>(args)...);
  }
  template <class... KernelArgs, class... Args>
  void operator()(const char* name, dim3 grid, dim3 block, LargeSharedBytes shared,
                  void (*kernel)(KernelArgs...), Args&&... args) const {
    launch(name, grid, block, shared.bytes, true, kernel, std::forward<Args>(args)...);
  }

 private:
  template <class... KernelArgs, class... Args>
  static void launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, bool opt_in,
                     void (*kernel)(KernelArgs...), Args&&... args) {
    static_assert(sizeof...(KernelArgs) == sizeof...(Args), "wrong number of kernel arguments");
    struct Call {
      void (*kernel)(KernelArgs...);
      std::tuple<KernelArgs...> args;
      static void run(void* self) {
        auto* call = static_cast<Call*>(self);
        std::apply(call->kernel, call->args);
      }
    } call{kernel, std::tuple<KernelArgs...>(static_cast<KernelArgs>(args)...)};
    run_grid(name, grid, block, shared_bytes, opt_in, KernelBody{&call, &Call::run});
  }
};

// --- called by kernels (through the CUDA names below) --------------------------------

enum class WarpOp { kSync, kBallot, kShfl, kShflUp, kShflDown, kShflXor, kAll, kAny };
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width);
void sync_block();

// One shared array of the running block: arena byte offset, element size and count.
struct SharedView {
  unsigned char* base;
  uint32_t offset, elem_size;
  int64_t count;
  const char* name;
};
SharedView static_shared(const void* key, size_t elem_size, size_t align, int64_t count,
                         const char* name);
SharedView dynamic_shared(size_t elem_size, size_t align, const char* name);

// The running thread takes `path`; with bytes > 0 it is one access of `bytes` at address,
// which must be aligned to `bytes` (else the launch fails, as the GPU would).
void take_path(Path path, const void* address, size_t bytes);

enum class Access { kRead, kWrite, kAtomic };
[[noreturn]] void shared_out_of_bounds(const SharedView& view, int64_t index);
// A kernel's YF_REQUIRE failed: the launch fails with `what` (a GPU traps).
[[noreturn]] void requirement_failed(const char* what);
void check_shared_access(const SharedView& view, int64_t index, Access access);
extern thread_local bool checking_races;  // of the block running on this OS thread

// &name[i] of a shared array (atomics only).
template <class T>
struct SharedPtr {
  SharedView view;
  int64_t index;
};

template <class T>
struct NonDeduced {
  using type = T;
};

template <class T>
class SharedRef {
 public:
  SharedRef(const SharedView& view, int64_t index) : view_(view), index_(index) {
    if (index < 0 || index >= view.count) shared_out_of_bounds(view, index);
  }
  operator T() const {
    touch(Access::kRead);
    T value;
    std::memcpy(&value, address(), sizeof(T));
    return value;
  }
  const SharedRef& operator=(T value) const {
    touch(Access::kWrite);
    std::memcpy(address(), &value, sizeof(T));
    return *this;
  }
  const SharedRef& operator=(const SharedRef& other) const { return *this = T(other); }
  template <class U>
  const SharedRef& operator+=(U v) const {
    return *this = T(T(*this) + v);
  }
  template <class U>
  const SharedRef& operator-=(U v) const {
    return *this = T(T(*this) - v);
  }
  template <class U>
  const SharedRef& operator*=(U v) const {
    return *this = T(T(*this) * v);
  }
  template <class U>
  const SharedRef& operator/=(U v) const {
    return *this = T(T(*this) / v);
  }
  template <class U>
  const SharedRef& operator|=(U v) const {
    return *this = T(T(*this) | v);
  }
  template <class U>
  const SharedRef& operator&=(U v) const {
    return *this = T(T(*this) & v);
  }
  template <class U>
  const SharedRef& operator^=(U v) const {
    return *this = T(T(*this) ^ v);
  }
  const SharedRef& operator++() const { return *this = T(T(*this) + 1); }
  const SharedRef& operator--() const { return *this = T(T(*this) - 1); }
  T operator++(int) const {
    const T old = *this;
    *this = T(old + 1);
    return old;
  }
  T operator--(int) const {
    const T old = *this;
    *this = T(old - 1);
    return old;
  }

  // &name[i]: only for the atomics below.
  SharedPtr<T> operator&() const { return {view_, index_}; }

 private:
  void touch(Access access) const {
    if (checking_races) check_shared_access(view_, index_, access);
  }
  unsigned char* address() const { return view_.base + index_ * int64_t(sizeof(T)); }
  SharedView view_;
  int64_t index_;
};

template <class T>
class SharedArray {
  static_assert(std::is_trivially_copyable<T>::value,
                "shared arrays hold trivially copyable types");

 public:
  explicit SharedArray(const SharedView& view) : view_(view) {}
  template <class I, class = std::enable_if_t<std::is_integral<I>::value>>
  SharedRef<T> operator[](I index) const {
    return SharedRef<T>(view_, int64_t(index));
  }

 private:
  SharedView view_;
};

// yf::shared_cursor's position in a shared array (macros.h): every access still checked.
template <class T>
class SharedCursor {
 public:
  SharedCursor(const SharedArray<T>& array, int64_t index) : array_(array), index_(index) {}
  SharedRef<T> operator[](int64_t offset) const { return array_[index_ + offset]; }
  SharedCursor& operator+=(int64_t step) {
    index_ += step;
    return *this;
  }

 private:
  SharedArray<T> array_;
  int64_t index_;
};

template <class T, class F>
T shared_atomic(const SharedPtr<T>& p, F op) {
  if (p.index < 0 || p.index >= p.view.count) shared_out_of_bounds(p.view, p.index);
  if (checking_races) check_shared_access(p.view, p.index, Access::kAtomic);
  unsigned char* address = p.view.base + p.index * int64_t(sizeof(T));
  T old;
  std::memcpy(&old, address, sizeof(T));
  const T updated = op(old);
  std::memcpy(address, &updated, sizeof(T));
  return old;
}

// Global-memory atomics: blocks run on several OS threads.
template <class T, class F>
T global_atomic(T* address, F op) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4- or 8-byte values");
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  Bits* word = reinterpret_cast<Bits*>(address);
  Bits expected = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    T old, updated;
    std::memcpy(&old, &expected, sizeof(T));
    updated = op(old);
    Bits desired;
    std::memcpy(&desired, &updated, sizeof(T));
    if (__atomic_compare_exchange_n(word, &expected, desired, true, __ATOMIC_SEQ_CST,
                                    __ATOMIC_RELAXED))
      return old;
  }
}

template <class T>
uint64_t to_bits(T value) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffles move <= 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}
template <class T>
T from_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

}  // namespace emulation

template <class T>
emulation::SharedCursor<T> shared_cursor(const emulation::SharedArray<T>& array, int64_t index) {
  return emulation::SharedCursor<T>(array, index);
}
}  // namespace yf

// Static and dynamic shared memory of the running block (see macros.h).
#define YF_SHARED(T, name, N)                                                \
  static_assert((N) > 0, "YF_SHARED needs a positive constant size");        \
  static const char yf_shared_key_##name = 0;                                \
  const ::yf::emulation::SharedArray<T> name(::yf::emulation::static_shared( \
      &yf_shared_key_##name, sizeof(T), alignof(T), int64_t(N), #name))
#define YF_DYNAMIC_SHARED(T, name)            \
  const ::yf::emulation::SharedArray<T> name( \
      ::yf::emulation::dynamic_shared(sizeof(T), alignof(T), #name))

// --- the CUDA primitives kernels use ---------------------------------------------------

inline void __syncthreads() { yf::emulation::sync_block(); }
// Blocks run on several OS threads (global_atomic): a sequentially consistent fence.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  yf::emulation::warp_collective(yf::emulation::WarpOp::kSync, mask, 0, 0, 32);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return unsigned(
      yf::emulation::warp_collective(yf::emulation::WarpOp::kBallot, mask, predicate != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int predicate) {
  return int(
      yf::emulation::warp_collective(yf::emulation::WarpOp::kAll, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) {
  return int(
      yf::emulation::warp_collective(yf::emulation::WarpOp::kAny, mask, predicate != 0, 0, 32));
}
template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  using namespace yf::emulation;
  return from_bits<T>(warp_collective(WarpOp::kShfl, mask, to_bits(var), src_lane, width));
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  using namespace yf::emulation;
  return from_bits<T>(warp_collective(WarpOp::kShflUp, mask, to_bits(var), int(delta), width));
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  using namespace yf::emulation;
  return from_bits<T>(warp_collective(WarpOp::kShflDown, mask, to_bits(var), int(delta), width));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  using namespace yf::emulation;
  return from_bits<T>(warp_collective(WarpOp::kShflXor, mask, to_bits(var), lane_mask, width));
}

template <class T>
T __ldg(const T* address) {
  return *address;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }

template <class T>
T atomicAdd(T* address, typename yf::emulation::NonDeduced<T>::type value) {
  return yf::emulation::global_atomic(address, [&](T old) { return T(old + value); });
}
template <class T>
T atomicOr(T* address, typename yf::emulation::NonDeduced<T>::type value) {
  return yf::emulation::global_atomic(address, [&](T old) { return T(old | value); });
}
template <class T>
T atomicMax(T* address, typename yf::emulation::NonDeduced<T>::type value) {
  return yf::emulation::global_atomic(address, [&](T old) { return old < value ? value : old; });
}
template <class T>
T atomicAdd(const yf::emulation::SharedPtr<T>& p,
            typename yf::emulation::NonDeduced<T>::type value) {
  return yf::emulation::shared_atomic<T>(p, [&](T old) { return T(old + value); });
}
template <class T>
T atomicOr(const yf::emulation::SharedPtr<T>& p,
           typename yf::emulation::NonDeduced<T>::type value) {
  return yf::emulation::shared_atomic<T>(p, [&](T old) { return T(old | value); });
}
template <class T>
T atomicMax(const yf::emulation::SharedPtr<T>& p,
            typename yf::emulation::NonDeduced<T>::type value) {
  return yf::emulation::shared_atomic<T>(p, [&](T old) { return old < value ? value : old; });
}
