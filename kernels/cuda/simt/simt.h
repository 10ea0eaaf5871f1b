// SIMT harness: runs CUDA kernel bodies on the CPU so that CI without a GPU still executes them.
//
// Test-only. A `.cu` file compiled as host C++ with BLOCKSERVE_SIMT defined (through
// kernels/cuda/cuda_compat.cuh) gets from this header the CUDA built-ins it uses: dim3,
// threadIdx/blockIdx/blockDim/gridDim, __global__/__device__/__shared__, __syncthreads(), warp
// shuffles and votes, a few math intrinsics and the minimal runtime API (cudaError_t,
// cudaStream_t, cudaGetLastError). Launches go through BS_LAUNCH (kernels/cuda/launch.cuh),
// which becomes simt::Launch(...)(args...) here.
//
// Execution model
//   * Blocks run one after another on the calling OS thread (grid order: x fastest, then y, z).
//   * The threads of a block are cooperative fibers (ucontext, one 64 KiB stack each, 256 KiB
//     under ASan, above a guard page: kernels must keep big arrays off the stack; stacks are
//     reused across blocks and launches). A fiber runs until it blocks
//     at __syncthreads() or a warp operation, or returns; the scheduler then resumes the next
//     runnable fiber, round robin in linear thread order. Between two barriers the threads of a
//     block therefore run one after another, deterministically; data races that a GPU would
//     expose are not found.
//   * threadIdx (and blockIdx/blockDim/gridDim) are plain globals that the scheduler sets before
//     resuming a fiber, so they read correctly inside the kernel.
//   * __shared__ is `static`: one instance per kernel (per template instantiation) shared by
//     the fibers of the running block. As on a GPU it is not cleared between blocks: a block
//     must write shared memory before reading it. Dynamic shared memory (the launch's `smem`
//     bytes, see BS_DYNAMIC_SHARED in cuda_compat.cuh) is filled with 0xff bytes (NaN as float)
//     before every block, so reading it uninitialized shows up in results.
//   * Because shared memory and the thread indices are process-wide, kernels must NOT be
//     launched concurrently (from several OS threads) or from inside a kernel; the harness
//     aborts if that happens.
//
// Barrier and warp rules (the harness aborts the process with a "blockserve SIMT:" message,
// naming threads and source lines, when a kernel breaks them; they are CUDA's rules, stated
// strictly):
//   * __syncthreads() must be reached by every thread of the block, at the same call site
//     (file:line). A thread that returns while others wait at a barrier, a barrier reached
//     after some thread of the block returned, two threads at different __syncthreads() call
//     sites, and a deadlock (no thread can run) are reported.
//   * Warps are consecutive groups of 32 threads in linear order (x fastest). The last warp of
//     a block whose size is not a multiple of 32 is partial: its lanes beyond the block size do
//     not exist. A warp operation's `mask` must include the calling lane and may name only
//     lanes that exist and have not returned: full warps may use 0xffffffff, a partial warp
//     must pass the mask of its existing lanes (e.g. from simt-independent code:
//     `n >= 32 ? 0xffffffffu : (1u << n) - 1`). Every lane named in the mask must reach a warp
//     operation of the same kind, mask and width.
//   * Shuffle results follow CUDA: the source lane is computed as in the CUDA documentation
//     (with `width` segments; __shfl_up/down/xor return the caller's own value when the source
//     falls outside the caller's segment). Reading a lane that is not in `mask` (or does not
//     exist) is undefined on a GPU; here it yields all-0xff bytes (NaN for float, -1 for int),
//     so a kernel that uses such a value fails its comparison with the reference.
//   * __ballot_sync/__any_sync/__all_sync consider only the lanes in `mask`.
//   * Limitation: at any moment one warp operation may be pending per warp, so two disjoint
//     groups of lanes of one warp may not shuffle with different masks at the same time (it is
//     reported as unsupported).
#ifndef BLOCKSERVE_KERNELS_CUDA_SIMT_SIMT_H_
#define BLOCKSERVE_KERNELS_CUDA_SIMT_SIMT_H_

#ifndef BLOCKSERVE_SIMT
#error "kernels/cuda/simt/simt.h is the CPU harness for BLOCKSERVE_SIMT builds only"
#endif

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA built-in types and qualifiers --------------------------------------------------------

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

// Per-fiber values, set by the scheduler before it resumes a fiber (see the execution model).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
constexpr int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static

// ---- minimal runtime API ------------------------------------------------------------------------

// The values match CUDA's so that messages and tests read the same.
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
};
struct CUstream_st;  // never defined: streams are ignored (launches run synchronously)
using cudaStream_t = CUstream_st*;

// The last launch error (invalid configuration), cleared by cudaGetLastError like CUDA's.
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t err);

// ---- math intrinsics (fast-math variants are the exact functions on the CPU) -------------------

__device__ inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
__device__ inline float __expf(float x) { return expf(x); }
__device__ inline float __logf(float x) { return logf(x); }
__device__ inline float __powf(float x, float y) { return powf(x, y); }
__device__ inline float __fdividef(float x, float y) { return x / y; }
__device__ inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
template <typename T>
__device__ inline T __ldg(const T* p) {
  return *p;
}
// Fibers of one block never run at the same time, so a plain read-modify-write is atomic.
template <typename T>
__device__ inline T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}

// ---- the harness --------------------------------------------------------------------------------

namespace blockserve::simt {

// Kinds of warp operation; lanes meeting in one operation must agree on the kind.
enum class WarpOpKind { kShfl, kShflUp, kShflDown, kShflXor, kBallot, kSyncWarp };

namespace detail {

// One lane's part of a warp operation: blocks the fiber until every lane of `mask` has arrived,
// then returns this lane's result (8 bytes; shuffles copy values through it, ballot returns the
// vote bits). `arg` is the source lane / delta / xor mask, `in` the lane's value (or predicate).
uint64_t WarpOp(WarpOpKind kind, unsigned mask, int arg, int width, uint64_t in, const char* file,
                int line);

// Runs `thunk(closure)` as the body of every thread of the grid. Returns cudaSuccess or
// cudaErrorInvalidConfiguration (also recorded for cudaGetLastError).
cudaError_t RunGrid(dim3 grid, dim3 block, size_t dynamic_smem, void (*thunk)(const void*),
                    const void* closure);

template <typename T>
uint64_t ToBits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move <= 8-byte values");
  uint64_t bits = ~uint64_t{0};
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T FromBits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace detail

// The dynamic shared memory of the running block (the launch's `smem` bytes, 16-byte aligned);
// nullptr when the launch asked for none.
void* DynamicSharedMemory();

// Stands for `kernel<<<grid, block, smem, stream>>>`: Launch(kernel, grid, block, smem,
// stream)(args...) converts the arguments to the kernel's parameter types, runs the grid and
// returns when every block has finished (the stream is ignored).
template <typename... Params>
class Launcher {
 public:
  Launcher(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem)
      : kernel_(kernel), grid_(grid), block_(block), smem_(smem) {}

  template <typename... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "kernel launched with the wrong argument count");
    // Each thread gets its own copy of the parameters, as on a GPU.
    struct Closure {
      void (*kernel)(Params...);
      std::tuple<std::decay_t<Params>...> params;
    };
    const Closure closure{kernel_, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    detail::RunGrid(grid_, block_, smem_,
                    [](const void* c) {
                      const Closure* cl = static_cast<const Closure*>(c);
                      std::apply(cl->kernel, cl->params);
                    },
                    &closure);
  }

 private:
  void (*kernel_)(Params...);
  dim3 grid_, block_;
  size_t smem_;
};

template <typename... Params>
Launcher<Params...> Launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                           cudaStream_t /*stream*/) {
  return Launcher<Params...>(kernel, grid, block, smem);
}

}  // namespace blockserve::simt

// ---- block barrier, warp shuffles and votes ------------------------------------------------------
// The trailing file/line parameters default to the call site (GCC/Clang builtins); they name the
// barrier in divergence reports. Kernels call these exactly as in CUDA.

void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE());

inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  blockserve::simt::detail::WarpOp(blockserve::simt::WarpOpKind::kSyncWarp, mask, 0, warpSize, 0, file,
                                   line);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  namespace d = blockserve::simt::detail;
  return d::FromBits<T>(
      d::WarpOp(blockserve::simt::WarpOpKind::kShfl, mask, src_lane, width, d::ToBits(var), file, line));
}

template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                 const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  namespace d = blockserve::simt::detail;
  return d::FromBits<T>(d::WarpOp(blockserve::simt::WarpOpKind::kShflUp, mask, static_cast<int>(delta),
                                  width, d::ToBits(var), file, line));
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,
                   const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  namespace d = blockserve::simt::detail;
  return d::FromBits<T>(d::WarpOp(blockserve::simt::WarpOpKind::kShflDown, mask, static_cast<int>(delta),
                                  width, d::ToBits(var), file, line));
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,
                  const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  namespace d = blockserve::simt::detail;
  return d::FromBits<T>(
      d::WarpOp(blockserve::simt::WarpOpKind::kShflXor, mask, lane_mask, width, d::ToBits(var), file, line));
}

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(blockserve::simt::detail::WarpOp(
      blockserve::simt::WarpOpKind::kBallot, mask, 0, warpSize, predicate != 0 ? 1 : 0, file, line));
}

inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return __ballot_sync(mask, predicate, file, line) != 0 ? 1 : 0;
}

inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return __ballot_sync(mask, predicate, file, line) == mask ? 1 : 0;
}

#endif  // BLOCKSERVE_KERNELS_CUDA_SIMT_SIMT_H_
