// Tests of the CPU SIMT harness itself: block barrier, warp shuffles and votes (full and partial
// warps) against a direct per-lane computation of CUDA's rules, grids, shared memory across
// blocks, launch errors, and the reports of divergent barriers and warp operations.
#include "kernels/cuda/simt/simt.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_compat.cuh"
#include "kernels/cuda/launch.cuh"

namespace blockserve::simt {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---- kernels under test (plain CUDA code) --------------------------------------------------------

__device__ unsigned LinearThread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
__device__ unsigned BlockThreads() { return blockDim.x * blockDim.y * blockDim.z; }

// The mask of the lanes that exist in the caller's warp (partial last warp: fewer than 32).
__device__ unsigned ExistingLanes() {
  const unsigned first = LinearThread() & ~31u;
  const unsigned lanes = std::min(32u, BlockThreads() - first);
  return lanes == 32 ? kFull : (1u << lanes) - 1;
}

// Each round: write own slot, barrier, read the next thread's slot, barrier.
__global__ void NeighbourKernel(int rounds, int* sums, int* ids) {
  __shared__ int slots[1024];
  const unsigned t = LinearThread();
  const unsigned n = BlockThreads();
  int sum = 0;
  for (int r = 0; r < rounds; ++r) {
    slots[t] = static_cast<int>(t) * 10 + r;
    __syncthreads();
    sum += slots[(t + 1) % n];
    __syncthreads();
  }
  sums[t] = sum;
  // The thread indices must still be this fiber's after the switches.
  ids[t] = static_cast<int>(threadIdx.x + 1000 * threadIdx.y + 100000 * threadIdx.z);
}

struct WarpOut {
  int* shfl;
  int* up;
  int* down;
  int* xr;
  unsigned* ballot;
  int* any;
  int* all;
};

__global__ void WarpOpsKernel(const int* values, const int* src_lanes, const int* deltas, const int* preds,
                              int width, WarpOut out) {
  const unsigned t = LinearThread();
  const unsigned mask = ExistingLanes();
  const int v = values[t];
  out.shfl[t] = __shfl_sync(mask, v, src_lanes[t], width);
  out.up[t] = __shfl_up_sync(mask, v, static_cast<unsigned>(deltas[t]), width);
  out.down[t] = __shfl_down_sync(mask, v, static_cast<unsigned>(deltas[t]), width);
  out.xr[t] = __shfl_xor_sync(mask, v, deltas[t], width);
  out.ballot[t] = __ballot_sync(mask, preds[t]);
  out.any[t] = __any_sync(mask, preds[t]);
  out.all[t] = __all_sync(mask, preds[t]);
  __syncwarp(mask);
}

// What CUDA specifies for lane `lane` of a warp whose existing lanes are `mask`; -1 (the
// harness's all-ones poison) where the source lane is not in the mask.
int Expected(int kind, int lane, unsigned mask, int arg, int width, const int* warp_values) {
  const int segment = lane / width;
  int src = lane;
  switch (kind) {
    case 0: src = segment * width + arg % width; break;                // __shfl_sync: srcLane mod width
    case 1: src = lane % width >= arg ? lane - arg : lane; break;      // up: own value below the segment
    case 2: src = lane % width + arg < width ? lane + arg : lane; break;  // down: own value past it
    case 3: src = (lane ^ arg) / width > segment ? lane : lane ^ arg; break;  // xor: later segments -> own
  }
  return (mask >> src & 1u) != 0 ? warp_values[src] : -1;
}

TEST(SimtWarpTest, ShufflesAndVotesMatchCudaRulesInFullAndPartialWarps) {
  for (int threads : {1, 7, 32, 33, 40, 64, 75, 100}) {
    for (int width : {32, 16, 8, 4, 2, 1}) {
      std::vector<int> values(threads), src(threads), deltas(threads), preds(threads);
      for (int t = 0; t < threads; ++t) {
        values[t] = 1000 + 3 * t;
        src[t] = (t * 7 + 3) % 32;
        deltas[t] = (t * 5 + 1) % 32;  // per-lane deltas and xor masks, as CUDA allows
        preds[t] = (t * 5 % 3 == 0) ? 7 : 0;
      }
      std::vector<int> shfl(threads, -9), up(threads, -9), down(threads, -9), xr(threads, -9), any(threads, -9),
          all(threads, -9);
      std::vector<unsigned> ballot(threads, 0xdeadu);
      BS_LAUNCH(WarpOpsKernel, 1, threads, 0, nullptr)
      (values.data(), src.data(), deltas.data(), preds.data(), width,
       WarpOut{shfl.data(), up.data(), down.data(), xr.data(), ballot.data(), any.data(), all.data()});
      ASSERT_EQ(cudaGetLastError(), cudaSuccess);
      for (int t = 0; t < threads; ++t) {
        const int first = t / 32 * 32;
        const int lanes = std::min(32, threads - first);
        const unsigned mask = lanes == 32 ? kFull : (1u << lanes) - 1;
        const int lane = t - first;
        const int* wv = values.data() + first;
        SCOPED_TRACE(testing::Message() << "threads " << threads << " width " << width << " thread " << t);
        EXPECT_EQ(shfl[t], Expected(0, lane, mask, src[t], width, wv));
        EXPECT_EQ(up[t], Expected(1, lane, mask, deltas[t], width, wv));
        EXPECT_EQ(down[t], Expected(2, lane, mask, deltas[t], width, wv));
        EXPECT_EQ(xr[t], Expected(3, lane, mask, deltas[t], width, wv));
        unsigned want_ballot = 0;
        for (int l = 0; l < lanes; ++l) want_ballot |= (preds[first + l] != 0 ? 1u : 0u) << l;
        EXPECT_EQ(ballot[t], want_ballot);
        EXPECT_EQ(any[t], want_ballot != 0 ? 1 : 0);
        EXPECT_EQ(all[t], want_ballot == mask ? 1 : 0);
      }
    }
  }
}

__global__ void ShuffleWideTypesKernel(double* doubles, float* floats) {
  const unsigned lane = threadIdx.x;
  const unsigned mask = ExistingLanes();
  doubles[lane] = __shfl_down_sync(mask, 0.5 + lane * 1e10, 1);
  floats[lane] = __shfl_down_sync(mask, 1.0f + lane, 16);  // lanes 16.. do not exist: undefined
}

TEST(SimtWarpTest, EightByteValuesAndUndefinedReadsArePoisoned) {
  std::vector<double> d(8);
  std::vector<float> f(8);
  BS_LAUNCH(ShuffleWideTypesKernel, 1, 8, 0, nullptr)(d.data(), f.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int l = 0; l < 7; ++l) EXPECT_EQ(d[l], 0.5 + (l + 1) * 1e10);
  EXPECT_TRUE(std::isnan(d[7]));  // lane 8 is past the 8-thread block
  for (int l = 0; l < 8; ++l) EXPECT_TRUE(std::isnan(f[l])) << l;
}

// The same warp reduction as the RMSNorm kernel, on full warps: the sum is exact for integers.
__global__ void WarpSumKernel(const int* in, int* out) {
  int v = in[LinearThread()];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFull, v, offset);
  out[LinearThread()] = v;
}

TEST(SimtWarpTest, ButterflyReductionGivesEveryLaneTheWarpSum) {
  const int threads = 96;
  std::vector<int> in(threads), out(threads, -1);
  for (int t = 0; t < threads; ++t) in[t] = t * t - 50;
  BS_LAUNCH(WarpSumKernel, 1, threads, 0, nullptr)(in.data(), out.data());
  for (int t = 0; t < threads; ++t) {
    int want = 0;
    for (int l = t / 32 * 32; l < t / 32 * 32 + 32; ++l) want += in[l];
    EXPECT_EQ(out[t], want) << t;
  }
}

// ---- barrier, grid, shared memory --------------------------------------------------------------

TEST(SimtBlockTest, BarrierMakesNeighbourWritesVisible) {
  for (dim3 block : {dim3(1), dim3(5), dim3(31), dim3(33), dim3(100), dim3(1024), dim3(7, 3, 2)}) {
    const int n = static_cast<int>(block.x * block.y * block.z);
    const int rounds = 3;
    std::vector<int> sums(n, -1), ids(n, -1);
    BS_LAUNCH(NeighbourKernel, 1, block, 0, nullptr)(rounds, sums.data(), ids.data());
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    for (int t = 0; t < n; ++t) {
      int want = 0;
      for (int r = 0; r < rounds; ++r) want += ((t + 1) % n) * 10 + r;
      ASSERT_EQ(sums[t], want) << "block of " << n << ", thread " << t;
      const int x = t % static_cast<int>(block.x), y = t / static_cast<int>(block.x) % static_cast<int>(block.y),
                z = t / static_cast<int>(block.x * block.y);
      ASSERT_EQ(ids[t], x + 1000 * y + 100000 * z);
    }
  }
}

__global__ void GridKernel(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned index = block * BlockThreads() + LinearThread();
  out[4 * index + 0] = static_cast<int>(blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z);
  out[4 * index + 1] = static_cast<int>(threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z);
  out[4 * index + 2] = static_cast<int>(gridDim.x + 10 * gridDim.y + 100 * gridDim.z);
  out[4 * index + 3] = static_cast<int>(blockDim.x + 10 * blockDim.y + 100 * blockDim.z);
}

TEST(SimtBlockTest, GridOfBlocksSeesItsIndices) {
  const dim3 grid(3, 2, 2), block(4, 2, 3);
  const int blocks = 12, threads = 24;
  std::vector<int> out(4 * blocks * threads, -1);
  BS_LAUNCH(GridKernel, grid, block, 0, nullptr)(out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < blocks; ++b) {
    for (int t = 0; t < threads; ++t) {
      const int* o = out.data() + 4 * (b * threads + t);
      EXPECT_EQ(o[0], b % 3 + 10 * (b / 3 % 2) + 100 * (b / 6));
      EXPECT_EQ(o[1], t % 4 + 10 * (t / 4 % 2) + 100 * (t / 8));
      EXPECT_EQ(o[2], 3 + 20 + 200);
      EXPECT_EQ(o[3], 4 + 20 + 300);
    }
  }
}

// Static shared memory is reused by the blocks (one after another); each block initialises it.
// Dynamic shared memory starts as all-ones bytes (NaN) in every block.
__global__ void SharedReuseKernel(int* sums, float* first_seen, float* neighbours) {
  __shared__ int sum;
  BS_DYNAMIC_SHARED(float, dyn);
  const unsigned t = threadIdx.x;
  first_seen[blockIdx.x * blockDim.x + t] = dyn[t];
  if (t == 0) sum = 0;
  __syncthreads();
  atomicAdd(&sum, static_cast<int>(blockIdx.x * 1000 + t));
  dyn[t] = static_cast<float>(blockIdx.x) + 0.25f * static_cast<float>(t);
  __syncthreads();
  neighbours[blockIdx.x * blockDim.x + t] = dyn[(t + 1) % blockDim.x];
  if (t == 0) sums[blockIdx.x] = sum;
}

TEST(SimtBlockTest, SharedMemoryIsPerBlockAndReusedBetweenBlocks) {
  const int blocks = 5, threads = 45;
  std::vector<int> sums(blocks, -1);
  std::vector<float> first(blocks * threads, 0.0f), neighbours(blocks * threads, 0.0f);
  BS_LAUNCH(SharedReuseKernel, blocks, threads, threads * sizeof(float), nullptr)
  (sums.data(), first.data(), neighbours.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < blocks; ++b) {
    int want = 0;
    for (int t = 0; t < threads; ++t) want += b * 1000 + t;
    EXPECT_EQ(sums[b], want);
    for (int t = 0; t < threads; ++t) {
      EXPECT_TRUE(std::isnan(first[b * threads + t]));
      EXPECT_EQ(neighbours[b * threads + t], static_cast<float>(b) + 0.25f * static_cast<float>((t + 1) % threads));
    }
  }
}

__global__ void NopKernel(int* out) {
  if (out != nullptr) out[LinearThread()] = 1;
}

TEST(SimtLaunchTest, InvalidConfigurationIsALaunchError) {
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  for (dim3 block : {dim3(0), dim3(1025), dim3(32, 33), dim3(1, 1, 65)}) {
    BS_LAUNCH(NopKernel, 1, block, 0, nullptr)(nullptr);
    EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // cleared by the read
  }
  BS_LAUNCH(NopKernel, 0, 32, 0, nullptr)(nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  std::vector<int> out(1024, 0);
  BS_LAUNCH(NopKernel, 1, 1024, 0, nullptr)(out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(std::count(out.begin(), out.end(), 1), 1024);
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidConfiguration), "invalid configuration argument");
}

// ---- what the harness reports ---------------------------------------------------------------------

__global__ void BarrierInBranchKernel() {
  if (threadIdx.x < 16) __syncthreads();
}
__global__ void TwoBarrierSitesKernel() {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}
__global__ void BarrierAfterReturnKernel() {
  if (threadIdx.x == 0) return;
  __syncthreads();
}
__global__ void DeadlockKernel() {
  if (threadIdx.x == 5 || threadIdx.x >= 32) {
    __syncthreads();
  } else {
    (void)__shfl_xor_sync(kFull, 1, 1);
  }
}
__global__ void FullMaskInPartialWarpKernel() { (void)__shfl_xor_sync(kFull, 1.0f, 1); }
__global__ void MixedWarpOpsKernel() {
  if (threadIdx.x % 2 == 0) {
    (void)__ballot_sync(kFull, 1);
  } else {
    (void)__shfl_xor_sync(kFull, 1, 1);
  }
}
__global__ void NotInOwnMaskKernel() { (void)__shfl_sync(1u, 1, 0); }
__global__ void ReturnBeforeWarpOpKernel() {
  if (threadIdx.x == 3) return;
  (void)__shfl_sync(kFull, 1, 0);
}
__global__ void NestedLaunchKernel() { BS_LAUNCH(NopKernel, 1, 1, 0, nullptr)(nullptr); }

class SimtDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(SimtDeathTest, ReportsDivergentBarriers) {
  EXPECT_DEATH(BS_LAUNCH(BarrierInBranchKernel, 1, 32, 0, nullptr)(),
               "blockserve SIMT: divergent __syncthreads\\(\\): thread \\(16,0,0\\) of block \\(0,0,0\\) returned "
               "while 16 thread\\(s\\) wait at the barrier at .*simt_test.cc");
  EXPECT_DEATH(BS_LAUNCH(TwoBarrierSitesKernel, 2, 8, 0, nullptr)(),
               "divergent __syncthreads\\(\\): thread \\(1,0,0\\) of block \\(0,0,0\\) is at .*simt_test.cc:[0-9]+ "
               "while 1 thread\\(s\\) wait at .*simt_test.cc:[0-9]+");
  EXPECT_DEATH(BS_LAUNCH(BarrierAfterReturnKernel, 1, 4, 0, nullptr)(),
               "divergent __syncthreads\\(\\): thread \\(1,0,0\\).* after thread \\(0,0,0\\) .*returned");
}

TEST_F(SimtDeathTest, ReportsDeadlockWithTheWaitingThreads) {
  EXPECT_DEATH(BS_LAUNCH(DeadlockKernel, 1, 64, 0, nullptr)(),
               "deadlock: no thread of the block can run.*thread \\(0,0,0\\) of block \\(0,0,0\\) waits in "
               "__shfl_xor_sync mask 0xffffffff");
}

TEST_F(SimtDeathTest, ReportsInvalidWarpOperations) {
  EXPECT_DEATH(BS_LAUNCH(FullMaskInPartialWarpKernel, 1, 40, 0, nullptr)(),
               "__shfl_xor_sync at .*: mask 0xffffffff names lanes that do not exist in this warp \\(existing lanes "
               "0x000000ff; the block has 40 threads\\)");
  EXPECT_DEATH(BS_LAUNCH(MixedWarpOpsKernel, 1, 32, 0, nullptr)(), "divergent warp operation: thread \\(1,0,0\\)");
  EXPECT_DEATH(BS_LAUNCH(NotInOwnMaskKernel, 1, 2, 0, nullptr)(), "\\(lane 1\\) is not in its own mask 0x00000001");
  EXPECT_DEATH(BS_LAUNCH(ReturnBeforeWarpOpKernel, 1, 32, 0, nullptr)(),
               "thread \\(3,0,0\\) of block \\(0,0,0\\) returned although it is in the mask 0xffffffff");
  EXPECT_DEATH(BS_LAUNCH(NestedLaunchKernel, 1, 1, 0, nullptr)(), "while another SIMT launch runs");
}

TEST_F(SimtDeathTest, BuiltinsOutsideAKernelAreReported) {
  EXPECT_DEATH(__syncthreads(), "__syncthreads\\(\\) called outside a kernel");
  EXPECT_DEATH((void)__ballot_sync(kFull, 1), "called outside a kernel");
}

}  // namespace
}  // namespace blockserve::simt
