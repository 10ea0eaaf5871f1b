// SIMT harness: fiber scheduler, block barrier and warp exchange (see simt.h for the model).
#include "kernels/cuda/simt/simt.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

// AddressSanitizer must be told about stack switches, or it reports false stack errors.
#if defined(__SANITIZE_ADDRESS__)
#define BS_SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BS_SIMT_ASAN 1
#endif
#endif
#ifdef BS_SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

uint3 threadIdx = {0, 0, 0};
uint3 blockIdx = {0, 0, 0};
dim3 blockDim;
dim3 gridDim;

namespace blockserve::simt {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxThreads = 1024;
// Kernel frames are small, but ASan's redzones and fake frames make them several times larger.
#ifdef BS_SIMT_ASAN
constexpr size_t kStackBytes = 256 * 1024;
#else
constexpr size_t kStackBytes = 64 * 1024;
#endif

enum class FiberState { kReady, kAtBarrier, kInWarpOp, kDone };

struct Fiber {
  ucontext_t context;
  char* stack = nullptr;  // kStackBytes usable, above a PROT_NONE guard page
  FiberState state = FiberState::kDone;
  uint3 tid = {0, 0, 0};
  const char* wait_file = "";
  int wait_line = 0;
  void* asan_fake_stack = nullptr;
};

// The warp operation that lanes of one warp are gathering for (at most one per warp).
struct WarpOpState {
  bool pending = false;
  WarpOpKind kind = WarpOpKind::kSyncWarp;
  unsigned mask = 0;
  int width = kWarp;
  unsigned arrived = 0;
  const char* file = "";
  int line = 0;
  uint64_t in[kWarp] = {};   // each lane's value
  int arg[kWarp] = {};       // each lane's source lane / delta / xor mask
  uint64_t out[kWarp] = {};  // each lane's result, written when the last lane arrives
};

struct Warp {
  unsigned exists = 0;  // lanes that exist (a partial last warp has fewer than 32)
  unsigned exited = 0;  // lanes whose thread has returned
  WarpOpState op;
};

// Everything about the running launch. One at a time (see simt.h).
struct Machine {
  std::vector<Fiber> fibers;  // by linear thread id x + y*bx + z*bx*by (the warp order); grows
                              // to the largest block seen, stacks are kept
  std::vector<Warp> warps;
  int threads = 0;  // of the running block
  int current = -1;  // the running fiber, -1 in the scheduler
  int done = 0;
  int exited_before_barrier = -1;  // a thread that returned (for the barrier check)
  int barrier_waiting = 0;
  const char* barrier_file = "";
  int barrier_line = 0;
  ucontext_t scheduler;
  void (*thunk)(const void*) = nullptr;
  const void* closure = nullptr;
  std::vector<unsigned char> dynamic_smem;
  void* dynamic_smem_ptr = nullptr;
  const void* scheduler_stack_bottom = nullptr;  // for the ASan annotations
  size_t scheduler_stack_size = 0;
};

Machine& M() {
  static Machine* machine = new Machine;  // never destroyed: fibers may outlive static teardown
  return *machine;
}

std::atomic<bool> g_launch_running{false};
cudaError_t g_last_error = cudaSuccess;

[[noreturn]] void Fail(const char* format, ...) __attribute__((format(printf, 1, 2)));
void Fail(const char* format, ...) {
  std::fprintf(stderr, "blockserve SIMT: ");
  va_list ap;
  va_start(ap, format);
  std::vfprintf(stderr, format, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::abort();
}

std::string ThreadName(int linear) {
  const uint3 t = M().fibers[linear].tid;
  char buf[96];
  std::snprintf(buf, sizeof(buf), "thread (%u,%u,%u) of block (%u,%u,%u)", t.x, t.y, t.z, blockIdx.x,
                blockIdx.y, blockIdx.z);
  return buf;
}

const char* KindName(WarpOpKind kind) {
  switch (kind) {
    case WarpOpKind::kShfl: return "__shfl_sync";
    case WarpOpKind::kShflUp: return "__shfl_up_sync";
    case WarpOpKind::kShflDown: return "__shfl_down_sync";
    case WarpOpKind::kShflXor: return "__shfl_xor_sync";
    case WarpOpKind::kBallot: return "__ballot_sync/__any_sync/__all_sync";
    case WarpOpKind::kSyncWarp: return "__syncwarp";
  }
  return "?";
}

// ---- context switches (with the AddressSanitizer fiber annotations) ----------------------------

void SwitchToFiber(Fiber& f) {
  Machine& m = M();
#ifdef BS_SIMT_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
#endif
  if (swapcontext(&m.scheduler, &f.context) != 0) Fail("swapcontext failed");
#ifdef BS_SIMT_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// Back to the scheduler from the running fiber. `finished`: the fiber never resumes.
void SwitchToScheduler(Fiber& f, bool finished) {
  Machine& m = M();
#ifdef BS_SIMT_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &f.asan_fake_stack, m.scheduler_stack_bottom,
                                 m.scheduler_stack_size);
#endif
  if (finished) {
    setcontext(&m.scheduler);
    Fail("setcontext failed");
  }
  if (swapcontext(&f.context, &m.scheduler) != 0) Fail("swapcontext failed");
#ifdef BS_SIMT_ASAN
  __sanitizer_finish_switch_fiber(f.asan_fake_stack, nullptr, nullptr);
#endif
}

// Blocks the running fiber in `state` until another fiber makes it ready again.
void Block(FiberState state, const char* file, int line) {
  Machine& m = M();
  Fiber& f = m.fibers[m.current];
  f.state = state;
  f.wait_file = file;
  f.wait_line = line;
  SwitchToScheduler(f, /*finished=*/false);
}

void OnThreadExit(int linear);

void FiberEntry() {
  Machine& m = M();
#ifdef BS_SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &m.scheduler_stack_bottom, &m.scheduler_stack_size);
#endif
  const int me = m.current;
  m.thunk(m.closure);
  OnThreadExit(me);
  SwitchToScheduler(m.fibers[me], /*finished=*/true);
}

void AllocateStack(Fiber& f) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) Fail("cannot map a %zu-byte fiber stack", kStackBytes);
  // The stack grows down: a PROT_NONE page below it turns an overflow into a crash.
  if (mprotect(p, page, PROT_NONE) != 0) Fail("mprotect of a fiber stack guard page failed");
  f.stack = static_cast<char*>(p) + page;
}

// ---- barrier and warp bookkeeping ---------------------------------------------------------------

void OnThreadExit(int linear) {
  Machine& m = M();
  Warp& w = m.warps[linear / kWarp];
  const unsigned bit = 1u << (linear % kWarp);
  if (m.barrier_waiting > 0) {
    Fail("divergent __syncthreads(): %s returned while %d thread(s) wait at the barrier at %s:%d "
         "(every thread of a block must reach each __syncthreads())",
         ThreadName(linear).c_str(), m.barrier_waiting, m.barrier_file, m.barrier_line);
  }
  if (w.op.pending && (w.op.mask & bit) != 0) {
    Fail("%s returned although it is in the mask 0x%08x of the pending %s at %s:%d", ThreadName(linear).c_str(),
         w.op.mask, KindName(w.op.kind), w.op.file, w.op.line);
  }
  w.exited |= bit;
  if (m.exited_before_barrier < 0) m.exited_before_barrier = linear;
  m.fibers[linear].state = FiberState::kDone;
  ++m.done;
}

// The source lane of `lane` for a shuffle, or `lane` itself when CUDA returns the caller's value.
int SourceLane(WarpOpKind kind, int lane, int arg, int width) {
  const int base = lane & ~(width - 1);  // first lane of the caller's segment
  switch (kind) {
    case WarpOpKind::kShfl: return base + (arg & (width - 1));
    case WarpOpKind::kShflUp: return (lane - base) >= arg ? lane - arg : lane;
    case WarpOpKind::kShflDown: return (lane - base) + arg < width ? lane + arg : lane;
    case WarpOpKind::kShflXor: {
      // Earlier segments may be read, later ones return the caller's value (CUDA docs).
      const int src = lane ^ arg;
      return src < base + width ? src : lane;
    }
    default: return lane;
  }
}

// Called by the last lane to arrive: computes every lane's result.
void CompleteWarpOp(WarpOpState& op) {
  if (op.kind == WarpOpKind::kBallot) {
    unsigned votes = 0;
    for (int l = 0; l < kWarp; ++l) {
      if ((op.mask >> l & 1u) != 0 && op.in[l] != 0) votes |= 1u << l;
    }
    for (int l = 0; l < kWarp; ++l) op.out[l] = votes;
    return;
  }
  for (int l = 0; l < kWarp; ++l) {
    if ((op.mask >> l & 1u) == 0) continue;
    const int src = SourceLane(op.kind, l, op.arg[l], op.width);
    // A source outside the mask is undefined on a GPU: all-ones bytes (NaN, -1) expose its use.
    op.out[l] = (src >= 0 && src < kWarp && (op.mask >> src & 1u) != 0) ? op.in[src] : ~uint64_t{0};
  }
}

void DeadlockReport() {
  Machine& m = M();
  std::string who;
  int listed = 0, waiting = 0;
  for (int i = 0; i < m.threads; ++i) {
    const Fiber& f = m.fibers[i];
    if (f.state == FiberState::kDone) continue;
    if (++waiting > 40) continue;  // enough to see the pattern
    ++listed;
    char buf[256];
    if (f.state == FiberState::kAtBarrier) {
      std::snprintf(buf, sizeof(buf), "\n  %s waits at __syncthreads() %s:%d", ThreadName(i).c_str(),
                    f.wait_file, f.wait_line);
    } else {
      const WarpOpState& op = m.warps[i / kWarp].op;
      std::snprintf(buf, sizeof(buf), "\n  %s waits in %s mask 0x%08x (arrived 0x%08x) %s:%d",
                    ThreadName(i).c_str(), KindName(op.kind), op.mask, op.arrived, f.wait_file, f.wait_line);
    }
    who += buf;
  }
  if (waiting > listed) who += "\n  ... and " + std::to_string(waiting - listed) + " more waiting threads";
  Fail("deadlock: no thread of the block can run (divergent barrier or warp operation):%s", who.c_str());
}

void RunBlock() {
  Machine& m = M();
  m.done = 0;
  m.exited_before_barrier = -1;
  m.barrier_waiting = 0;
  for (Warp& w : m.warps) w = Warp{};
  for (int i = 0; i < m.threads; ++i) {
    m.warps[i / kWarp].exists |= 1u << (i % kWarp);
    Fiber& f = m.fibers[i];
    if (f.stack == nullptr) AllocateStack(f);
#ifdef BS_SIMT_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kStackBytes);  // leftovers of the previous fiber
#endif
    if (getcontext(&f.context) != 0) Fail("getcontext failed");
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;  // FiberEntry switches back explicitly
    makecontext(&f.context, &FiberEntry, 0);
    f.state = FiberState::kReady;
    f.asan_fake_stack = nullptr;
  }
  if (!m.dynamic_smem.empty()) std::memset(m.dynamic_smem.data(), 0xff, m.dynamic_smem.size());
  // Round robin: each ready fiber runs until it blocks or returns.
  while (m.done < m.threads) {
    bool progress = false;
    for (int i = 0; i < m.threads; ++i) {
      Fiber& f = m.fibers[i];
      if (f.state != FiberState::kReady) continue;
      progress = true;
      m.current = i;
      threadIdx = f.tid;
      SwitchToFiber(f);
      m.current = -1;
    }
    if (!progress) DeadlockReport();
  }
}

}  // namespace

// ---- public entry points --------------------------------------------------------------------------

void* DynamicSharedMemory() { return M().dynamic_smem_ptr; }

namespace detail {

uint64_t WarpOp(WarpOpKind kind, unsigned mask, int arg, int width, uint64_t in, const char* file, int line) {
  Machine& m = M();
  if (m.current < 0) Fail("%s called outside a kernel launched through the SIMT harness (%s:%d)", KindName(kind),
                          file, line);
  const int me = m.current;
  const int lane = me % kWarp;
  const unsigned bit = 1u << lane;
  Warp& w = m.warps[me / kWarp];
  WarpOpState& op = w.op;
  if (width < 1 || width > kWarp || (width & (width - 1)) != 0) {
    Fail("%s at %s:%d: width %d is not a power of two in [1, 32]", KindName(kind), file, line, width);
  }
  if ((mask & bit) == 0) {
    Fail("%s at %s:%d: %s (lane %d) is not in its own mask 0x%08x", KindName(kind), file, line,
         ThreadName(me).c_str(), lane, mask);
  }
  if ((mask & ~w.exists) != 0) {
    Fail("%s at %s:%d: mask 0x%08x names lanes that do not exist in this warp (existing lanes 0x%08x; the block "
         "has %d threads): partial warps must pass the mask of their existing lanes",
         KindName(kind), file, line, mask, w.exists, m.threads);
  }
  if ((mask & w.exited) != 0) {
    Fail("%s at %s:%d: mask 0x%08x names lanes that have returned (0x%08x)", KindName(kind), file, line, mask,
         mask & w.exited);
  }
  if (!op.pending) {
    op.pending = true;
    op.kind = kind;
    op.mask = mask;
    op.width = width;
    op.arrived = 0;
    op.file = file;
    op.line = line;
  } else if (op.kind != kind || op.mask != mask || op.width != width) {
    Fail("divergent warp operation: %s (lane %d) calls %s mask 0x%08x width %d at %s:%d while lanes 0x%08x wait "
         "in %s mask 0x%08x width %d at %s:%d (lanes must meet in the same operation; two groups of one warp "
         "with different masks at once are not supported by the harness)",
         ThreadName(me).c_str(), lane, KindName(kind), mask, width, file, line, op.arrived, KindName(op.kind),
         op.mask, op.width, op.file, op.line);
  }
  op.in[lane] = in;
  op.arg[lane] = arg;
  op.arrived |= bit;
  if (op.arrived == op.mask) {
    CompleteWarpOp(op);
    op.pending = false;
    for (int l = 0; l < kWarp; ++l) {
      if (l != lane && (mask >> l & 1u) != 0) m.fibers[me - lane + l].state = FiberState::kReady;
    }
  } else {
    Block(FiberState::kInWarpOp, file, line);
  }
  // op.out[lane] stays valid until this lane joins another operation: no operation can complete
  // for a mask naming this lane before it arrives there.
  return op.out[lane];
}

cudaError_t RunGrid(dim3 grid, dim3 block, size_t dynamic_smem, void (*thunk)(const void*), const void* closure) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || threads == 0 ||
      threads > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64) {
    g_last_error = cudaErrorInvalidConfiguration;
    return g_last_error;
  }
  if (g_launch_running.exchange(true)) {
    Fail("a kernel was launched while another SIMT launch runs (concurrent launches from several threads, or "
         "a launch from inside a kernel, are not supported)");
  }
  Machine& m = M();
  m.threads = static_cast<int>(threads);
  if (m.fibers.size() < threads) m.fibers.resize(threads);
  m.warps.assign((threads + kWarp - 1) / kWarp, Warp{});
  for (int i = 0; i < m.threads; ++i) {
    const unsigned u = static_cast<unsigned>(i);
    m.fibers[i].tid = {u % block.x, u / block.x % block.y, u / (block.x * block.y)};
  }
  m.thunk = thunk;
  m.closure = closure;
  // 16 spare bytes let the pointer be aligned to 16 whatever the vector's alignment.
  m.dynamic_smem.assign(dynamic_smem == 0 ? 0 : dynamic_smem + 16, 0);
  m.dynamic_smem_ptr = nullptr;
  if (dynamic_smem != 0) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(m.dynamic_smem.data());
    m.dynamic_smem_ptr = reinterpret_cast<void*>((p + 15) & ~uintptr_t{15});
  }
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = {x, y, z};
        RunBlock();
      }
    }
  }
  m.thunk = nullptr;
  m.closure = nullptr;
  g_launch_running.store(false);
  return cudaSuccess;
}

}  // namespace detail
}  // namespace blockserve::simt

namespace blockserve::simt {
namespace {

void SyncThreads(const char* file, int line) {
  Machine& m = M();
  if (m.current < 0) Fail("__syncthreads() called outside a kernel launched through the SIMT harness (%s:%d)",
                          file, line);
  const int me = m.current;
  if (m.exited_before_barrier >= 0) {
    Fail("divergent __syncthreads(): %s reached the barrier at %s:%d after %s returned (every thread of a "
         "block must reach each __syncthreads())",
         ThreadName(me).c_str(), file, line, ThreadName(m.exited_before_barrier).c_str());
  }
  if (m.barrier_waiting == 0) {
    m.barrier_file = file;
    m.barrier_line = line;
  } else if (m.barrier_line != line || std::strcmp(m.barrier_file, file) != 0) {
    Fail("divergent __syncthreads(): %s is at %s:%d while %d thread(s) wait at %s:%d", ThreadName(me).c_str(),
         file, line, m.barrier_waiting, m.barrier_file, m.barrier_line);
  }
  if (++m.barrier_waiting == m.threads) {  // the last thread releases the others and goes on
    m.barrier_waiting = 0;
    for (int i = 0; i < m.threads; ++i) {
      if (i != me) m.fibers[i].state = FiberState::kReady;
    }
    return;
  }
  Block(FiberState::kAtBarrier, file, line);
}

}  // namespace
}  // namespace blockserve::simt

void __syncthreads(const char* file, int line) { blockserve::simt::SyncThreads(file, line); }

cudaError_t cudaGetLastError() {
  const cudaError_t err = blockserve::simt::g_last_error;
  blockserve::simt::g_last_error = cudaSuccess;
  return err;
}

cudaError_t cudaPeekAtLastError() { return blockserve::simt::g_last_error; }

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unrecognized error code";
}
