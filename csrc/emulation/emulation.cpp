// The runtime of the host emulation of CUDA blocks (csrc/emulation/emulation.h): fibers,
// the seeded scheduler, warp collectives, shared memory with bounds and race checks,
// launch-limit checks and the launch log.
#include "emulation.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <sstream>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace yf {
namespace emulation {

thread_local bool checking_races = false;

namespace {

// Limits of the CUDA runtime (compute capability 9.0).
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr uint64_t kMaxGridX = (uint64_t(1) << 31) - 1;
constexpr unsigned kMaxGridYZ = 65535;
constexpr size_t kDefaultSharedBytes = 48 * 1024;
constexpr int kWarpSize = 32;
constexpr size_t kArenaBytes = kOptInSharedBytes + 64;
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStackBytes = 512 * 1024;
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

thread_local Options tl_options;
thread_local std::vector<LaunchRecord> tl_log;
thread_local int tl_recording = 0;

// --- fibers: an execution context with its own stack ---------------------------------

#if defined(__x86_64__)
// Saves the callee-saved registers, MXCSR and the x87 control word of the running
// context on its stack, stores its stack pointer in *save and resumes the context whose
// stack pointer is load (System V x86-64 ABI).
extern "C" void yf_emulation_switch(void** save, void* load);
extern "C" void yf_emulation_fiber_start();
asm(R"(
  .text
  .p2align 4
  .globl yf_emulation_switch
  .hidden yf_emulation_switch
  .type yf_emulation_switch, @function
yf_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size yf_emulation_switch, .-yf_emulation_switch

  .p2align 4
  .globl yf_emulation_fiber_start
  .hidden yf_emulation_fiber_start
  .type yf_emulation_fiber_start, @function
yf_emulation_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size yf_emulation_fiber_start, .-yf_emulation_fiber_start
)");

struct Context {
  void* sp = nullptr;
};

// A context that will call entry(arg) on the stack [stack, stack + bytes).
void make_context(Context& context, char* stack, size_t bytes, void (*entry)(void*), void* arg) {
  auto* top =
      reinterpret_cast<uint64_t*>(reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15));
  uint64_t* sp = top - 8;  // the frame yf_emulation_switch pops; 16-byte aligned after ret
  uint32_t control[2] = {0, 0};
  asm volatile("stmxcsr %0" : "=m"(control[0]));
  asm volatile("fnstcw %0" : "=m"(control[1]));
  std::memcpy(&sp[0], control, 8);
  sp[1] = 0;                                  // r15
  sp[2] = 0;                                  // r14
  sp[3] = reinterpret_cast<uint64_t>(entry);  // r13
  sp[4] = reinterpret_cast<uint64_t>(arg);    // r12
  sp[5] = 0;                                  // rbx
  sp[6] = 0;                                  // rbp
  sp[7] = reinterpret_cast<uint64_t>(&yf_emulation_fiber_start);
  context.sp = sp;
}

inline void switch_context(Context& from, Context& to) { yf_emulation_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};

// makecontext passes ints: the entry and its argument travel as 32-bit halves.
void ucontext_entry(unsigned entry_hi, unsigned entry_lo, unsigned arg_hi, unsigned arg_lo) {
  auto entry = reinterpret_cast<void (*)(void*)>((uintptr_t(entry_hi) << 32) | entry_lo);
  entry(reinterpret_cast<void*>((uintptr_t(arg_hi) << 32) | arg_lo));
}

void make_context(Context& context, char* stack, size_t bytes, void (*entry)(void*), void* arg) {
  getcontext(&context.uc);
  context.uc.uc_stack.ss_sp = stack;
  context.uc.uc_stack.ss_size = bytes;
  context.uc.uc_link = nullptr;
  const auto e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&context.uc, reinterpret_cast<void (*)()>(&ucontext_entry), 4, unsigned(e >> 32),
              unsigned(e), unsigned(a >> 32), unsigned(a));
}

inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// A fiber stack with a guard page below it.
class Stack {
 public:
  Stack() = default;
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;
  ~Stack() {
    if (base_) munmap(base_, kStackBytes + page());
  }
  char* get() {
    if (!base_) {
      void* p = mmap(nullptr, kStackBytes + page(), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      TORCH_CHECK(p != MAP_FAILED, "emulation: cannot map a fiber stack");
      base_ = static_cast<char*>(p);
      mprotect(base_, page(), PROT_NONE);
    }
#if defined(__SANITIZE_ADDRESS__)
    // A fiber abandoned after an error leaves its frames' redzones poisoned.
    __asan_unpoison_memory_region(base_ + page(), kStackBytes);
#endif
    return base_ + page();
  }

 private:
  static size_t page() { return size_t(sysconf(_SC_PAGESIZE)); }
  char* base_ = nullptr;
};

enum class State { kReady, kRunning, kBarrier, kWarp, kExited, kFailed };

struct Fiber {
  Context context;
  Stack stack;
  uint3 index;
  int tid = 0;
  State state = State::kReady;
  // The warp collective this fiber waits in.
  WarpOp op = WarpOp::kSync;
  unsigned mask = 0;
  uint64_t bits = 0, result = 0;
  int arg = 0, width = 32;
};

// Per shared byte: the last write and, since it, the last two distinct readers and the last
// readers of the last two distinct warps to read it (a byte that every thread of a block
// reads, such as a broadcast value, keeps a reader of another warp than the last two
// readers' for the check of the next write).
struct ShadowByte {
  uint64_t write_time = 0;
  uint64_t read_time[2] = {0, 0};
  uint64_t warp_read_time[2] = {0, 0};
  int32_t writer = -1;
  int32_t reader[2] = {-1, -1};
  int32_t warp_reader[2] = {-1, -1};  // thread ids, of two different warps
  bool atomic = false;
};

struct Launch {
  const char* kernel;
  dim3 grid, block;
  size_t dynamic_bytes;
  size_t shared_limit;
  KernelBody body;
  Options options;
  std::atomic<unsigned>* paths;  // Path bits taken by some thread
};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const char* name) {
  uint64_t h = 1469598103934665603ull;
  for (; *name; ++name) h = (h ^ uint8_t(*name)) * 1099511628211ull;
  return h;
}

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

std::string str(const uint3& v) {
  std::ostringstream s;
  s << "(" << v.x << ", " << v.y << ", " << v.z << ")";
  return s.str();
}

// Runs the blocks of launches on one OS thread, one block at a time.
class Runner {
 public:
  // The error that stopped the block, or "".
  std::string run_block(const Launch& launch, uint3 block);

  // Called from fibers.
  void sync_block();
  void take_path(Path path, const void* address, size_t bytes);
  uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width);
  [[noreturn]] void fail(const std::string& message);
  SharedView static_shared(const void* key, size_t elem_size, size_t align, int64_t count,
                           const char* name);
  SharedView dynamic_shared(size_t elem_size, size_t align, const char* name);
  void check_access(const SharedView& view, int64_t index, Access access);
  std::string where() const;

 private:
  static void fiber_main(void* fiber);
  void yield(State state);
  void warp_arrived(Fiber& fiber);
  void complete_warp(int warp, unsigned mask);
  std::string deadlock_report() const;
  std::string barrier_after_exit_report() const;
  bool ordered(int other, uint64_t time) const;
  std::string thread_name(int tid) const { return str(fibers_[tid]->index); }
  void ensure_shadow(size_t bytes) {
    if (launch_->options.check_races && shadow_.size() < bytes) shadow_.resize(bytes);
  }

  const Launch* launch_ = nullptr;
  uint3 block_{};
  int threads_ = 0;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  Fiber* current_ = nullptr;
  Context scheduler_;
  std::vector<int> ready_;
  std::string error_;
  uint64_t rng_ = 0;

  std::vector<unsigned char> arena_ = std::vector<unsigned char>(kArenaBytes);
  struct StaticArray {
    const void* key;
    size_t offset, bytes;
  };
  std::vector<StaticArray> statics_;
  size_t static_begin_ = 0, static_end_ = 0;

  // Race detection: a logical clock that ticks at every synchronisation; accesses are
  // stamped with it. pair_sync_[t * 32 + lane] is when thread t last took part in a
  // __syncwarp with that lane of its warp.
  uint64_t clock_ = 0, block_start_ = 0, barrier_time_ = 0;
  std::vector<ShadowByte> shadow_;
  std::vector<uint64_t> pair_sync_;
};

thread_local Runner* tl_runner = nullptr;

Runner& runner() {
  TORCH_CHECK(tl_runner != nullptr, "CUDA primitive called outside an emulated kernel launch");
  return *tl_runner;
}

void Runner::fiber_main(void* arg) {
  auto* fiber = static_cast<Fiber*>(arg);
  Runner& self = *tl_runner;
  try {
    self.launch_->body.run(self.launch_->body.self);
    fiber->state = State::kExited;
  } catch (const std::exception& e) {
    self.error_ = self.where() + ": thread " + str(fiber->index) + " threw: " + e.what();
    fiber->state = State::kFailed;
  } catch (...) {
    self.error_ = self.where() + ": thread " + str(fiber->index) + " threw";
    fiber->state = State::kFailed;
  }
  switch_context(fiber->context, self.scheduler_);
  std::abort();  // a finished fiber is never resumed
}

std::string Runner::where() const {
  return std::string("kernel '") + launch_->kernel + "', block " + str(block_);
}

std::string Runner::run_block(const Launch& launch, uint3 block) {
  launch_ = &launch;
  block_ = block;
  blockIdx = block;
  blockDim = launch.block;
  gridDim = launch.grid;
  checking_races = launch.options.check_races;
  threads_ = int(launch.block.x * launch.block.y * launch.block.z);
  while (int(fibers_.size()) < threads_) fibers_.push_back(std::make_unique<Fiber>());
  if (pair_sync_.size() < size_t(threads_) * kWarpSize)
    pair_sync_.resize(size_t(threads_) * kWarpSize);
  statics_.clear();
  static_begin_ = static_end_ = align_up(launch.dynamic_bytes, 16);
  ensure_shadow(launch.dynamic_bytes);
  block_start_ = barrier_time_ = ++clock_;
  error_.clear();
  uint64_t linear =
      block.x + uint64_t(launch.grid.x) * (block.y + uint64_t(launch.grid.y) * block.z);
  rng_ = launch.options.seed * 0x2545f4914f6cdd1dull ^ hash_name(launch.kernel) ^
         (linear * 0x9e3779b97f4a7c15ull);

  ready_.clear();
  for (int t = 0; t < threads_; ++t) {
    Fiber& f = *fibers_[t];
    f.tid = t;
    f.index.x = t % launch.block.x;
    f.index.y = (t / launch.block.x) % launch.block.y;
    f.index.z = t / (launch.block.x * launch.block.y);
    f.state = State::kReady;
    make_context(f.context, f.stack.get(), kStackBytes, &Runner::fiber_main, &f);
    ready_.push_back(t);
  }

  tl_runner = this;
  int exited = 0, at_barrier = 0;
  for (;;) {
    while (!ready_.empty()) {
      const size_t pick = size_t(splitmix64(rng_) % ready_.size());
      Fiber& f = *fibers_[ready_[pick]];
      ready_[pick] = ready_.back();
      ready_.pop_back();
      f.state = State::kRunning;
      threadIdx = f.index;
      current_ = &f;
      switch_context(scheduler_, f.context);
      current_ = nullptr;
      if (f.state == State::kExited) ++exited;
      if (f.state == State::kBarrier) ++at_barrier;
      if (f.state == State::kWarp) warp_arrived(f);
      if (!error_.empty()) {
        tl_runner = nullptr;
        return error_;
      }
    }
    if (exited == threads_) break;
    if (at_barrier + exited == threads_) {
      // CUDA leaves a barrier that some thread of the block never reaches undefined.
      if (exited > 0) {
        error_ = barrier_after_exit_report();
        break;
      }
      barrier_time_ = ++clock_;
      for (int t = 0; t < threads_; ++t)
        if (fibers_[t]->state == State::kBarrier) {
          fibers_[t]->state = State::kReady;
          ready_.push_back(t);
        }
      at_barrier = 0;
      continue;
    }
    error_ = deadlock_report();
    break;
  }
  tl_runner = nullptr;
  return error_;
}

void Runner::yield(State state) {
  Fiber& me = *current_;
  me.state = state;
  switch_context(me.context, scheduler_);
}

void Runner::fail(const std::string& message) {
  error_ = where() + ": " + message;
  yield(State::kFailed);
  std::abort();  // a failed fiber is never resumed
}

void Runner::sync_block() { yield(State::kBarrier); }

void Runner::take_path(Path path, const void* address, size_t bytes) {
  if (bytes > 0 && reinterpret_cast<uintptr_t>(address) % bytes != 0) {
    std::ostringstream s;
    s << "thread " << thread_name(current_->tid) << " makes a " << bytes
      << "-byte vector access at " << address << ", which is not " << bytes << "-byte aligned";
    fail(s.str());
  }
  if ((launch_->paths->load(std::memory_order_relaxed) & path) == 0)
    launch_->paths->fetch_or(path, std::memory_order_relaxed);
}

uint64_t Runner::warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width) {
  Fiber& me = *current_;
  const int lane = me.tid % kWarpSize;
  if (!((mask >> lane) & 1u)) {
    std::ostringstream s;
    s << "thread " << str(me.index) << " (lane " << lane << ") calls a warp collective with mask 0x"
      << std::hex << mask << " that does not name its lane";
    fail(s.str());
  }
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0)
    fail("shuffle width must be a power of two <= 32, got " + std::to_string(width));
  me.op = op;
  me.mask = mask;
  me.bits = bits;
  me.arg = arg;
  me.width = width;
  yield(State::kWarp);
  return me.result;
}

void Runner::warp_arrived(Fiber& fiber) {
  const int warp = fiber.tid / kWarpSize;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (!((fiber.mask >> lane) & 1u)) continue;
    const int tid = warp * kWarpSize + lane;
    if (tid >= threads_) {
      error_ = where() + ": thread " + thread_name(fiber.tid) +
               " calls a warp collective whose mask names lane " + std::to_string(lane) +
               ", which does not exist in a block of " + std::to_string(threads_) + " threads";
      return;
    }
    const Fiber& other = *fibers_[tid];
    if (other.state == State::kExited) {
      error_ = where() + ": thread " + thread_name(fiber.tid) +
               " waits in a warp collective for lane " + std::to_string(lane) + " (thread " +
               thread_name(tid) + "), which has exited";
      return;
    }
    if (other.state != State::kWarp) return;  // not arrived yet
    if (other.op != fiber.op || other.mask != fiber.mask || other.width != fiber.width) {
      error_ = where() + ": threads " + thread_name(fiber.tid) + " and " + thread_name(tid) +
               " of one warp meet in different warp collectives (operation, mask or width differ)";
      return;
    }
  }
  complete_warp(warp, fiber.mask);
}

void Runner::complete_warp(int warp, unsigned mask) {
  Fiber* lanes[kWarpSize] = {};
  uint64_t vote = 0;
  for (int lane = 0; lane < kWarpSize; ++lane)
    if ((mask >> lane) & 1u) {
      lanes[lane] = fibers_[warp * kWarpSize + lane].get();
      if (lanes[lane]->bits) vote |= uint64_t(1) << lane;
    }
  const WarpOp op = lanes[__builtin_ctz(mask)]->op;
  const uint64_t all = (vote == mask), any = (vote != 0);
  if (op == WarpOp::kSync) {
    ++clock_;
    for (int a = 0; a < kWarpSize; ++a)
      if (lanes[a])
        for (int b = 0; b < kWarpSize; ++b)
          if (lanes[b]) pair_sync_[size_t(warp * kWarpSize + a) * kWarpSize + b] = clock_;
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    Fiber* f = lanes[lane];
    if (!f) continue;
    const int segment = lane & ~(f->width - 1);
    int src = lane;
    switch (op) {
      case WarpOp::kSync:
        break;
      case WarpOp::kBallot:
        f->result = vote;
        break;
      case WarpOp::kAll:
        f->result = all;
        break;
      case WarpOp::kAny:
        f->result = any;
        break;
      case WarpOp::kShfl:
        src = segment + (f->arg & (f->width - 1));
        break;
      case WarpOp::kShflUp:
        src = lane - f->arg >= segment ? lane - f->arg : lane;
        break;
      case WarpOp::kShflDown:
        src = lane + f->arg < segment + f->width ? lane + f->arg : lane;
        break;
      case WarpOp::kShflXor: {
        const int x = lane ^ f->arg;
        src = (x >= 0 && x < kWarpSize && (x & ~(f->width - 1)) <= segment) ? x : lane;
        break;
      }
    }
    if (op == WarpOp::kShfl || op == WarpOp::kShflUp || op == WarpOp::kShflDown ||
        op == WarpOp::kShflXor) {
      if (!lanes[src]) {
        error_ = where() + ": thread " + thread_name(f->tid) + " shuffles from lane " +
                 std::to_string(src) + ", which is not in the mask";
        return;
      }
      f->result = lanes[src]->bits;
    }
  }
  for (Fiber* f : lanes)
    if (f) {
      f->state = State::kReady;
      ready_.push_back(f->tid);
    }
}

std::string Runner::barrier_after_exit_report() const {
  int waiting = -1, exited = -1;
  for (int t = 0; t < threads_; ++t) {
    if (fibers_[t]->state == State::kBarrier && waiting < 0) waiting = t;
    if (fibers_[t]->state == State::kExited && exited < 0) exited = t;
  }
  return where() + ": thread " + thread_name(waiting) + " waits at __syncthreads() after thread " +
         thread_name(exited) +
         " of the block has exited (a barrier in non-uniform code is undefined in CUDA)";
}

std::string Runner::deadlock_report() const {
  std::ostringstream s;
  s << where() << ": deadlock: ";
  int shown = 0;
  for (int t = 0; t < threads_ && shown < 4; ++t) {
    const Fiber& f = *fibers_[t];
    if (f.state == State::kWarp) {
      s << "thread " << str(f.index) << " waits in a warp collective (mask 0x" << std::hex << f.mask
        << std::dec << ") for lanes that are at __syncthreads() or in another collective; ";
      ++shown;
    }
  }
  if (!shown) s << "threads wait at __syncthreads() while others wait in warp collectives";
  return s.str();
}

SharedView Runner::dynamic_shared(size_t elem_size, size_t align, const char* name) {
  if (align > 16) fail(std::string("dynamic shared array '") + name + "' needs alignment > 16");
  return SharedView{arena_.data(), 0, uint32_t(elem_size),
                    int64_t(launch_->dynamic_bytes / elem_size), name};
}

SharedView Runner::static_shared(const void* key, size_t elem_size, size_t align, int64_t count,
                                 const char* name) {
  for (const StaticArray& a : statics_)
    if (a.key == key)
      return SharedView{arena_.data() + a.offset, uint32_t(a.offset), uint32_t(elem_size), count,
                        name};
  const size_t offset = align_up(static_end_, std::max<size_t>(align, 16));
  const size_t bytes = elem_size * size_t(count);
  static_end_ = offset + bytes;
  const size_t static_bytes = static_end_ - static_begin_;
  if (static_bytes > kDefaultSharedBytes)
    fail("static shared memory of " + std::to_string(static_bytes) + " bytes (with '" + name +
         "') exceeds the 48 KiB limit");
  if (static_end_ > launch_->shared_limit)
    fail("static (" + std::to_string(static_bytes) + ") plus dynamic (" +
         std::to_string(launch_->dynamic_bytes) + ") shared memory exceeds the limit of " +
         std::to_string(launch_->shared_limit) + " bytes");
  ensure_shadow(static_end_);
  statics_.push_back({key, offset, bytes});
  return SharedView{arena_.data() + offset, uint32_t(offset), uint32_t(elem_size), count, name};
}

bool Runner::ordered(int other, uint64_t time) const {
  const int me = current_->tid;
  if (other == me || time < barrier_time_) return true;
  return other / kWarpSize == me / kWarpSize &&
         pair_sync_[size_t(me) * kWarpSize + other % kWarpSize] > time;
}

void Runner::check_access(const SharedView& view, int64_t index, Access access) {
  const int me = current_->tid;
  const size_t begin = view.offset + size_t(index) * view.elem_size;
  auto report = [&](const char* what, int other, const char* other_did) {
    std::ostringstream s;
    s << "shared-memory race: thread " << thread_name(me) << " " << what << " '" << view.name
      << "'[" << index << "] (byte " << begin << " of the block's shared memory) after thread "
      << thread_name(other) << " " << other_did
      << " it, with no __syncthreads() or __syncwarp() of both threads between";
    fail(s.str());
  };
  for (size_t b = begin; b < begin + view.elem_size; ++b) {
    ShadowByte& s = shadow_[b];
    const bool written = s.write_time >= block_start_;
    if (!written && access != Access::kWrite) {
      std::ostringstream m;
      m << "thread " << thread_name(me) << " reads '" << view.name << "'[" << index << "] (byte "
        << begin << " of the block's shared memory), which no thread of the block has written";
      fail(m.str());
    }
    if (written && !ordered(s.writer, s.write_time) && !(access == Access::kAtomic && s.atomic))
      report(access == Access::kRead ? "reads" : "writes", s.writer, "wrote");
    if (access == Access::kRead) {
      int slot = s.reader[0] == me ? 0 : (s.reader[1] == me ? 1 : -1);
      if (slot < 0) {
        s.reader[1] = s.reader[0];
        s.read_time[1] = s.read_time[0];
        slot = 0;
      }
      s.reader[slot] = me;
      s.read_time[slot] = clock_;
      const bool same_warp =
          s.warp_reader[0] >= 0 && s.warp_reader[0] / kWarpSize == me / kWarpSize;
      if (!same_warp) {
        s.warp_reader[1] = s.warp_reader[0];
        s.warp_read_time[1] = s.warp_read_time[0];
      }
      s.warp_reader[0] = me;
      s.warp_read_time[0] = clock_;
      continue;
    }
    for (int r = 0; r < 2; ++r) {
      if (s.read_time[r] >= block_start_ && s.reader[r] != me &&
          !ordered(s.reader[r], s.read_time[r]))
        report("writes", s.reader[r], "read");
      if (s.warp_read_time[r] >= block_start_ && s.warp_reader[r] != me &&
          !ordered(s.warp_reader[r], s.warp_read_time[r]))
        report("writes", s.warp_reader[r], "read");
    }
    s.writer = me;
    s.write_time = clock_;
    s.atomic = access == Access::kAtomic;
    s.read_time[0] = s.read_time[1] = 0;
    s.warp_read_time[0] = s.warp_read_time[1] = 0;
  }
}

std::vector<std::string> path_names(unsigned paths) {
  static const std::pair<Path, const char*> kNames[] = {
      {kVectorLoads, "vector_loads"},   {kElementLoads, "element_loads"},
      {kQuadStores, "quad_stores"},     {kByteStores, "byte_stores"},
      {kWideStores, "wide_stores"},     {kKeysInShared, "packed_keys"},
      {kBoxesInShared, "staged_boxes"}, {kMergeKeysInShared, "merge_packed_keys"}};
  std::vector<std::string> names;
  for (const auto& [path, name] : kNames)
    if (paths & path) names.emplace_back(name);
  return names;
}

void check_launch(const Launch& l, bool opt_in) {
  const dim3 g = l.grid, b = l.block;
  TORCH_CHECK_VALUE(g.x && g.y && g.z && b.x && b.y && b.z, "kernel '", l.kernel,
                    "': invalid launch configuration: grid (", g.x, ", ", g.y, ", ", g.z,
                    ") and block (", b.x, ", ", b.y, ", ", b.z, ") must be positive");
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  TORCH_CHECK_VALUE(threads <= kMaxThreadsPerBlock && b.x <= kMaxBlockDim[0] &&
                        b.y <= kMaxBlockDim[1] && b.z <= kMaxBlockDim[2],
                    "kernel '", l.kernel, "': block (", b.x, ", ", b.y, ", ", b.z, ") of ", threads,
                    " threads exceeds the limits (1024 threads; x, y <= 1024, z <= 64)");
  TORCH_CHECK_VALUE(g.x <= kMaxGridX && g.y <= kMaxGridYZ && g.z <= kMaxGridYZ, "kernel '",
                    l.kernel, "': grid (", g.x, ", ", g.y, ", ", g.z,
                    ") exceeds the limits (x < 2^31, y and z <= 65535)");
  TORCH_CHECK_VALUE(opt_in || l.dynamic_bytes <= kDefaultSharedBytes, "kernel '", l.kernel,
                    "': ", l.dynamic_bytes,
                    " bytes of dynamic shared memory exceed 48 KiB without an opt-in "
                    "(pass LargeSharedBytes to the launch)");
  const size_t limit = l.options.opt_in_shared_bytes;
  TORCH_CHECK_VALUE(l.dynamic_bytes <= limit, "kernel '", l.kernel, "': ", l.dynamic_bytes,
                    " bytes of dynamic shared memory exceed the device's ", limit / 1024, " KiB");
}

}  // namespace

Options options() { return tl_options; }
void set_options(const Options& options) { tl_options = options; }

size_t begin_recording() {
  ++tl_recording;
  return tl_log.size();
}

std::vector<LaunchRecord> end_recording(size_t start) {
  TORCH_CHECK(tl_recording > 0 && start <= tl_log.size(), "end_recording without begin_recording");
  std::vector<LaunchRecord> records(tl_log.begin() + start, tl_log.end());
  if (--tl_recording == 0) tl_log.clear();
  return records;
}

// The order in which the blocks of a launch start (linear indices): with a nonzero seed, a
// shuffle drawn from it (empty: in order), so that code relying on block order (a "last
// block" that is always the highest) gives different answers under different seeds.
std::vector<int64_t> block_order(const Launch& launch, int64_t blocks) {
  if (launch.options.seed == 0 || blocks < 2) return {};
  std::vector<int64_t> order(size_t(blocks), 0);
  for (int64_t b = 0; b < blocks; ++b) order[size_t(b)] = b;
  uint64_t state = launch.options.seed * 0x9e3779b97f4a7c15ull ^ hash_name(launch.kernel);
  for (int64_t i = blocks - 1; i > 0; --i)  // Fisher-Yates
    std::swap(order[size_t(i)], order[size_t(splitmix64(state) % uint64_t(i + 1))]);
  return order;
}

void run_grid(const char* kernel, dim3 grid, dim3 block, size_t dynamic_shared_bytes,
              bool large_shared_opt_in, KernelBody body) {
  std::atomic<unsigned> paths{0};
  const Launch launch{kernel,
                      grid,
                      block,
                      dynamic_shared_bytes,
                      large_shared_opt_in ? tl_options.opt_in_shared_bytes : kDefaultSharedBytes,
                      body,
                      tl_options,
                      &paths};
  check_launch(launch, large_shared_opt_in);
  const size_t record = tl_log.size();
  if (tl_recording > 0) tl_log.push_back({kernel, grid, block, dynamic_shared_bytes, {}});

  const int64_t blocks = int64_t(grid.x) * grid.y * grid.z;
  const std::vector<int64_t> order = block_order(launch, blocks);
  std::mutex mutex;
  int64_t first_failed = blocks;
  std::string first_error;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    thread_local Runner runner;
    for (int64_t position = begin; position < end; ++position) {
      const int64_t b = order.empty() ? position : order[size_t(position)];
      const uint3 index{unsigned(b % grid.x), unsigned((b / grid.x) % grid.y),
                        unsigned(b / (int64_t(grid.x) * grid.y))};
      std::string error = runner.run_block(launch, index);
      if (error.empty()) continue;
      std::lock_guard<std::mutex> lock(mutex);
      if (b < first_failed) {
        first_failed = b;
        first_error = std::move(error);
      }
      return;
    }
  });
  if (tl_recording > 0) tl_log[record].paths = path_names(paths.load());
  TORCH_CHECK(first_error.empty(), "emulated CUDA: ", first_error);
}

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width) {
  return runner().warp_collective(op, mask, bits, arg, width);
}

void sync_block() { runner().sync_block(); }

void take_path(Path path, const void* address, size_t bytes) {
  runner().take_path(path, address, bytes);
}

SharedView static_shared(const void* key, size_t elem_size, size_t align, int64_t count,
                         const char* name) {
  return runner().static_shared(key, elem_size, align, count, name);
}

SharedView dynamic_shared(size_t elem_size, size_t align, const char* name) {
  return runner().dynamic_shared(elem_size, align, name);
}

void shared_out_of_bounds(const SharedView& view, int64_t index) {
  Runner& r = runner();
  r.fail("thread " + str(threadIdx) + " indexes shared array '" + view.name + "' of " +
         std::to_string(view.count) + " elements at " + std::to_string(index));
}

void requirement_failed(const char* what) {
  runner().fail("thread " + str(threadIdx) + ": requirement failed: " + what);
}

void check_shared_access(const SharedView& view, int64_t index, Access access) {
  runner().check_access(view, index, access);
}

}  // namespace emulation
}  // namespace yf
