// The split-K (flash-decoding) scaffolding shared by the one-query attention kernels
// (kernels/cuda/decode_attention.cu, kernels/cuda/lsh_window_attention.cu):
//   pass 1 (grid (splits, heads, batch), kWarps warps per block): SplitKernel runs an online
//     softmax per warp over every kWarps-th key of the block's split (the q . k dot product spread
//     over the lanes, kPerLane components per lane, summed with xor shuffles), merges the warp
//     partials through shared memory and writes the split's partial (m, l, acc[head_dim]) to the
//     workspace, or the final output when there is a single split;
//   pass 2 (grid (heads, batch)): MergeKernel merges the splits' partials in order.
// What differs between the kernels is a `Policy` (which cache row key j is, its logit, and the
// multiplier of a complete partial's value sum); see SplitKernel.
// Device code only uses what kernels/cuda/simt/simt.h provides (also compiled on the SIMT harness).
#ifndef BLOCKSERVE_KERNELS_CUDA_SPLIT_ATTENTION_CUH_
#define BLOCKSERVE_KERNELS_CUDA_SPLIT_ATTENTION_CUH_

#include <stddef.h>

#include "kernels/cuda/cuda_compat.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/online_softmax.cuh"

namespace blockserve::cuda::split_attention {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;  // every warp is full: full-mask shuffles are valid
constexpr int kDefaultKeysPerSplit = 64;
constexpr int kMaxGridYZ = 65535;

__device__ __forceinline__ float WarpAllSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One key of a query: its row in the K and V caches.
struct KeyRow {
  int row;
};

// Pass 1, for (split blockIdx.x, head blockIdx.y, sequence blockIdx.z) of one-query attention
// arguments `a` (fields q, q_stride, k, v, kv_stride, head_dim, num_heads, out, out_stride,
// workspace as DecodeAttentionArgs). `Policy` is what differs between the kernels:
//   static constexpr int kPerLane: head_dim / 32 components per lane at most,
//   static Policy Make(const Args& a, int b, int h, int num_keys): the keys of (b, h),
//   KeyRow At(int j) const: the cache row of key j (0 <= j < num_keys),
//   float Logit(int j, KeyRow key, float dot) const: the logit of key j from its q . k,
//   static float Scale(SoftmaxStat s): the output multiplier of a complete partial's value sum.
// Dynamic shared memory: sizeof(float) * kWarps * (head_dim + 2) bytes (kWarps (m, l) pairs,
// then kWarps rows of head_dim value sums).
template <class Policy, class Args>
__global__ void __launch_bounds__(kThreads)
    SplitKernel(Args a, int num_keys, int num_splits, int keys_per_split) {
  constexpr int kPerLane = Policy::kPerLane;
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
  softmax::SplitRange(num_keys, keys_per_split, split, &begin, &end);
  const float* q = a.q + static_cast<size_t>(b) * a.q_stride + col;
  const float* k_cache = a.k[b];
  const float* v_cache = a.v[b];
  const Policy keys = Policy::Make(a, b, h, num_keys);

  float qr[kPerLane];
  float acc[kPerLane];
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qr[i] = d < kd ? q[d] : 0.0f;
    acc[i] = 0.0f;
  }
  softmax::SoftmaxStat stat = softmax::EmptyStat();
  for (int j = begin + warp; j < end; j += kWarps) {
    const KeyRow key = keys.At(j);
    const size_t offset = static_cast<size_t>(key.row) * a.kv_stride + col;
    const float* kr = k_cache + offset;
    float dot = 0.0f;
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < kd) dot += qr[i] * kr[d];
    }
    dot = WarpAllSum(dot);
    const softmax::MergeFactors f = softmax::AddLogit(&stat, keys.Logit(j, key, dot));
    const float* vr = v_cache + offset;
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < kd) acc[i] = acc[i] * f.a + vr[d] * f.b;
    }
  }

  // Merge the warps' partials (a warp without keys contributes the empty partial).
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
  float* partial = num_splits > 1 ? a.workspace + softmax::PartialOffset(b, h, split, a.num_heads,
                                                                         num_splits, kd)
                                  : nullptr;
  for (int d = tid; d < kd; d += kThreads) {
    softmax::SoftmaxStat merged = softmax::EmptyStat();
    float value = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      const softmax::MergeFactors f =
          softmax::MergeStat(&merged, softmax::SoftmaxStat{warp_stat[2 * w], warp_stat[2 * w + 1]});
      value = value * f.a + warp_acc[w * kd + d] * f.b;
    }
    if (partial == nullptr) {
      out[d] = value * Policy::Scale(merged);
    } else {
      if (d == 0) {
        partial[0] = merged.m;
        partial[1] = merged.l;
      }
      partial[2 + d] = value;
    }
  }
}

// Pass 2: merges the num_splits partials of (sequence blockIdx.y, head blockIdx.x) in split order.
template <class Policy, class Args>
__global__ void __launch_bounds__(kThreads) MergeKernel(Args a, int num_splits) {
  const int h = static_cast<int>(blockIdx.x);
  const int b = static_cast<int>(blockIdx.y);
  const int kd = a.head_dim;
  const float* partials =
      a.workspace + softmax::PartialOffset(b, h, 0, a.num_heads, num_splits, kd);
  float* out = a.out + static_cast<size_t>(b) * a.out_stride + static_cast<size_t>(h) * kd;
  for (int d = static_cast<int>(threadIdx.x); d < kd; d += kThreads) {
    softmax::SoftmaxStat merged = softmax::EmptyStat();
    float value = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float* p = partials + static_cast<size_t>(s) * (kd + 2);
      const softmax::MergeFactors f = softmax::MergeStat(&merged, softmax::SoftmaxStat{p[0], p[1]});
      value = value * f.a + p[2 + d] * f.b;
    }
    out[d] = value * Policy::Scale(merged);
  }
}

// ---- host side ---------------------------------------------------------------------------------

inline int KeysPerSplit(int requested) { return requested > 0 ? requested : kDefaultKeysPerSplit; }

// Workspace floats for `num_keys` keys per (sequence, head); 0 when one split suffices or the
// shape is invalid.
inline size_t WorkspaceFloats(int batch, int num_heads, int head_dim, int num_keys,
                              int keys_per_split) {
  if (batch <= 0 || num_heads <= 0 || head_dim <= 0 || num_keys <= 0 || keys_per_split < 0)
    return 0;
  const int splits = softmax::NumSplits(num_keys, KeysPerSplit(keys_per_split));
  if (splits <= 1) return 0;
  return static_cast<size_t>(batch) * num_heads * splits * (head_dim + 2);
}

// The argument checks common to the launchers: grid limits, head_dim in [1, max_head_dim],
// keys_per_split >= 0, strides of at least num_heads * head_dim, and q, k, v, out set.
template <class Args>
inline bool ValidCommonArgs(const Args& a, int max_head_dim) {
  const long long width = static_cast<long long>(a.num_heads) * a.head_dim;
  return a.batch > 0 && a.batch <= kMaxGridYZ && a.num_heads > 0 && a.num_heads <= kMaxGridYZ &&
         a.head_dim > 0 && a.head_dim <= max_head_dim && a.keys_per_split >= 0 &&
         a.q_stride >= width && a.kv_stride >= width && a.out_stride >= width && a.q != nullptr &&
         a.k != nullptr && a.v != nullptr && a.out != nullptr;
}

// Launches pass 1, SplitKernel<Policy> on grid (splits, heads, batch), and when there is more than
// one split pass 2, MergeKernel<Policy> on grid (heads, batch), for `num_keys` keys per (sequence,
// head) and a.keys_per_split (0: the default). The caller has checked the other arguments.
// Returns cudaErrorInvalidValue when several splits have no workspace, else the launch error.
template <class Policy, class Args>
inline cudaError_t LaunchSplitAndMerge(const Args& a, int num_keys, cudaStream_t stream) {
  const int keys_per_split = KeysPerSplit(a.keys_per_split);
  const int splits = softmax::NumSplits(num_keys, keys_per_split);
  if (splits > 1 && a.workspace == nullptr) return cudaErrorInvalidValue;
  void (*split_kernel)(Args, int, int, int) = &SplitKernel<Policy, Args>;
  void (*merge_kernel)(Args, int) = &MergeKernel<Policy, Args>;
  const size_t smem = sizeof(float) * kWarps * (a.head_dim + 2);
  const dim3 split_grid(static_cast<unsigned>(splits), static_cast<unsigned>(a.num_heads),
                        static_cast<unsigned>(a.batch));
  BS_LAUNCH(split_kernel, split_grid, kThreads, smem, stream)(a, num_keys, splits, keys_per_split);
  if (splits > 1) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    const dim3 merge_grid(static_cast<unsigned>(a.num_heads), static_cast<unsigned>(a.batch));
    BS_LAUNCH(merge_kernel, merge_grid, kThreads, 0, stream)(a, splits);
  }
  return cudaGetLastError();
}

}  // namespace blockserve::cuda::split_attention

#endif  // BLOCKSERVE_KERNELS_CUDA_SPLIT_ATTENTION_CUH_
