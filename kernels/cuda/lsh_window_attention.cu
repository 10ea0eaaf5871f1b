// CUDA Reformer LSH decode attention, split-K over the num_hashes * W (round, window slot) pairs
// of each (sequence, head), as kernels/cuda/decode_attention.cu:
//   pass 1 (grid (splits, heads, batch), 4 warps per block): each warp runs an online softmax
//     over every 4th pair of the block's split (the q . k̂ dot product spread over the lanes,
//     head_dim / 32 components per lane, summed with xor shuffles; the self row gets -1e5), the
//     block merges its 4 warp partials through shared memory and writes the split's partial
//     (m, l, acc[head_dim]) to the workspace, or the output acc / l when there is one split;
//   pass 2 (grid (heads, batch)): merges the splits' partials in order, out = acc / l.
// One softmax over all the rounds' pairs is the rounds' softmax-of-lse combination (see the
// .cuh). The pairs of one (sequence, head) are contiguous in `windows`: pair j is round j / W,
// slot j % W.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/lsh_window_attention.cuh"

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/online_softmax.cuh"

namespace blockserve::cuda {
namespace lsh_window_attention_internal {

using softmax::MergeFactors;
using softmax::SoftmaxStat;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;  // every warp is full: full-mask shuffles are valid
constexpr int kPerLane = kLshWindowAttentionMaxHeadDim / 32;
constexpr int kDefaultKeysPerSplit = 64;
constexpr int kMaxGridYZ = 65535;

__device__ __forceinline__ float WarpAllSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// A complete partial's output multiplier: 1 / l (l >= 1 for a non-empty partial: its maximum
// contributes exp(0)).
__device__ __forceinline__ float OutScale(SoftmaxStat s) { return s.l > 0.0f ? 1.0f / s.l : 0.0f; }

// Dynamic shared memory: kWarps (m, l) pairs, then kWarps rows of head_dim value sums.
__global__ void __launch_bounds__(kThreads)
    SplitKernel(LshWindowAttentionArgs a, int num_pairs, int num_splits, int keys_per_split) {
  BS_DYNAMIC_SHARED(float, smem);
  const int split = static_cast<int>(blockIdx.x);
  const int h = static_cast<int>(blockIdx.y);
  const int b = static_cast<int>(blockIdx.z);
  const int tid = static_cast<int>(threadIdx.x);
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int kd = a.head_dim;
  const size_t col = static_cast<size_t>(h) * kd;

  int begin = 0, end = 0;
  softmax::SplitRange(num_pairs, keys_per_split, split, &begin, &end);
  const float* q = a.q + static_cast<size_t>(b) * a.q_stride + col;
  const float* k_cache = a.k[b];
  const float* v_cache = a.v[b];
  const int32_t self = a.self_row[b];
  const int32_t* win = a.windows + (static_cast<size_t>(b) * a.num_heads + h) * num_pairs;

  float qr[kPerLane];
  float acc[kPerLane];
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qr[i] = d < kd ? q[d] : 0.0f;
    acc[i] = 0.0f;
  }
  SoftmaxStat stat = softmax::EmptyStat();
  for (int j = begin + warp; j < end; j += kWarps) {
    const int32_t row = win[j];
    const size_t offset = static_cast<size_t>(row) * a.kv_stride + col;
    const float* kr = k_cache + offset;
    float dot = 0.0f;
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < kd) dot += qr[i] * kr[d];
    }
    dot = WarpAllSum(dot);
    const float logit = row == self ? kLshSelfMaskValue : dot;
    const MergeFactors f = softmax::AddLogit(&stat, logit);
    const float* vr = v_cache + offset;
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < kd) acc[i] = acc[i] * f.a + vr[d] * f.b;
    }
  }

  // Merge the warps' partials (a warp without pairs contributes the empty partial).
  float* warp_stat = smem;              // (kWarps, 2)
  float* warp_acc = smem + 2 * kWarps;  // (kWarps, kd)
  if (lane == 0) {
    warp_stat[2 * warp] = stat.m;
    warp_stat[2 * warp + 1] = stat.l;
  }
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < kd) warp_acc[warp * kd + d] = acc[i];
  }
  __syncthreads();
  float* out = a.out + static_cast<size_t>(b) * a.out_stride + col;
  float* partial = num_splits > 1 ? a.workspace + softmax::PartialOffset(b, h, split, a.num_heads, num_splits, kd)
                                  : nullptr;
  for (int d = tid; d < kd; d += kThreads) {
    SoftmaxStat merged = softmax::EmptyStat();
    float value = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const MergeFactors f = softmax::MergeStat(&merged, SoftmaxStat{warp_stat[2 * w], warp_stat[2 * w + 1]});
      value = value * f.a + warp_acc[w * kd + d] * f.b;
    }
    if (partial == nullptr) {
      out[d] = value * OutScale(merged);
    } else {
      if (d == 0) {
        partial[0] = merged.m;
        partial[1] = merged.l;
      }
      partial[2 + d] = value;
    }
  }
}

// Merges the num_splits partials of (sequence blockIdx.y, head blockIdx.x) in split order.
__global__ void __launch_bounds__(kThreads) MergeKernel(LshWindowAttentionArgs a, int num_splits) {
  const int h = static_cast<int>(blockIdx.x);
  const int b = static_cast<int>(blockIdx.y);
  const int kd = a.head_dim;
  const float* partials = a.workspace + softmax::PartialOffset(b, h, 0, a.num_heads, num_splits, kd);
  float* out = a.out + static_cast<size_t>(b) * a.out_stride + static_cast<size_t>(h) * kd;
  for (int d = static_cast<int>(threadIdx.x); d < kd; d += kThreads) {
    SoftmaxStat merged = softmax::EmptyStat();
    float value = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float* p = partials + static_cast<size_t>(s) * (kd + 2);
      const MergeFactors f = softmax::MergeStat(&merged, SoftmaxStat{p[0], p[1]});
      value = value * f.a + p[2 + d] * f.b;
    }
    out[d] = value * OutScale(merged);
  }
}

int KeysPerSplit(int requested) { return requested > 0 ? requested : kDefaultKeysPerSplit; }

// num_hashes * window, or -1 when it does not fit an int.
int NumPairs(int num_hashes, int window) {
  const long long pairs = static_cast<long long>(num_hashes) * window;
  return pairs > 0x7fffffffLL ? -1 : static_cast<int>(pairs);
}

}  // namespace lsh_window_attention_internal

size_t LshWindowAttentionWorkspaceFloats(int batch, int num_heads, int head_dim, int num_hashes, int window,
                                         int keys_per_split) {
  namespace in = lsh_window_attention_internal;
  if (batch <= 0 || num_heads <= 0 || head_dim <= 0 || num_hashes <= 0 || window <= 0 || keys_per_split < 0) {
    return 0;
  }
  const int pairs = in::NumPairs(num_hashes, window);
  if (pairs <= 0) return 0;
  const int splits = softmax::NumSplits(pairs, in::KeysPerSplit(keys_per_split));
  if (splits <= 1) return 0;
  return static_cast<size_t>(batch) * num_heads * splits * (head_dim + 2);
}

cudaError_t LaunchLshWindowAttention(const LshWindowAttentionArgs& a, cudaStream_t stream) {
  namespace in = lsh_window_attention_internal;
  const long long width = static_cast<long long>(a.num_heads) * a.head_dim;
  if (a.batch <= 0 || a.batch > in::kMaxGridYZ || a.num_heads <= 0 || a.num_heads > in::kMaxGridYZ ||
      a.head_dim <= 0 || a.head_dim > kLshWindowAttentionMaxHeadDim || a.num_hashes <= 0 || a.window <= 0 ||
      a.keys_per_split < 0 || a.q_stride < width || a.kv_stride < width || a.out_stride < width ||
      a.q == nullptr || a.k == nullptr || a.v == nullptr || a.windows == nullptr || a.self_row == nullptr ||
      a.out == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int pairs = in::NumPairs(a.num_hashes, a.window);
  if (pairs <= 0) return cudaErrorInvalidValue;
  const int keys_per_split = in::KeysPerSplit(a.keys_per_split);
  const int splits = softmax::NumSplits(pairs, keys_per_split);
  if (splits > 1 && a.workspace == nullptr) return cudaErrorInvalidValue;
  const size_t smem = sizeof(float) * in::kWarps * (a.head_dim + 2);
  const dim3 split_grid(static_cast<unsigned>(splits), static_cast<unsigned>(a.num_heads),
                        static_cast<unsigned>(a.batch));
  BS_LAUNCH(in::SplitKernel, split_grid, in::kThreads, smem, stream)(a, pairs, splits, keys_per_split);
  if (splits > 1) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    const dim3 merge_grid(static_cast<unsigned>(a.num_heads), static_cast<unsigned>(a.batch));
    BS_LAUNCH(in::MergeKernel, merge_grid, in::kThreads, 0, stream)(a, splits);
  }
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
