// CUDA BRT decode window attention, split-K over the keys (flash-decoding):
//   pass 1 (grid (splits, heads, batch), 4 warps per block): each block takes the keys of its
//     split; each warp runs an online softmax over every 4th key of the split (the q . k dot
//     product is spread over the lanes, head_dim / 32 components per lane, and summed with xor
//     shuffles), the block merges its 4 warp partials through shared memory and writes the
//     split's partial (m, l, acc[head_dim]) to the workspace, or the final output when there is
//     a single split;
//   pass 2 (grid (heads, batch)): merges the splits' partials in order and applies the safe
//     softmax (kernels/cuda/online_softmax.cuh).
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/decode_attention.cuh"

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/online_softmax.cuh"

namespace blockserve::cuda {
namespace decode_attention_internal {

using softmax::MergeFactors;
using softmax::SoftmaxStat;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;  // every warp is full: full-mask shuffles are valid
constexpr int kPerLane = kDecodeAttentionMaxHeadDim / 32;
constexpr int kDefaultKeysPerSplit = 64;
constexpr int kMaxGridYZ = 65535;

__device__ __forceinline__ float WarpAllSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Dynamic shared memory: kWarps (m, l) pairs, then kWarps rows of head_dim value sums.
__global__ void __launch_bounds__(kThreads) SplitKernel(DecodeAttentionArgs a, int num_splits, int keys_per_split) {
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
  softmax::SplitRange(a.num_keys, keys_per_split, split, &begin, &end);
  const float* q = a.q + static_cast<size_t>(b) * a.q_stride + col;
  const float* k_ring = a.k[b];
  const float* v_ring = a.v[b];
  const int first = a.first_key[b];
  const float head_scale = a.scale[h];
  const float* bias = a.bias != nullptr ? a.bias + static_cast<size_t>(h) * a.num_keys : nullptr;

  float qr[kPerLane];
  float acc[kPerLane];
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qr[i] = d < kd ? q[d] : 0.0f;
    acc[i] = 0.0f;
  }
  SoftmaxStat stat = softmax::EmptyStat();
  for (int j = begin + warp; j < end; j += kWarps) {
    const size_t row = static_cast<size_t>(softmax::RingRow(first, j, a.kv_rows)) * a.kv_stride + col;
    const float* kr = k_ring + row;
    float dot = 0.0f;
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < kd) dot += qr[i] * kr[d];
    }
    dot = WarpAllSum(dot);
    const float logit = (dot + (bias != nullptr ? bias[j] : 0.0f)) * head_scale;
    const MergeFactors f = softmax::AddLogit(&stat, logit);
    const float* vr = v_ring + row;
    for (int i = 0; i < kPerLane; ++i) {
      const int d = lane + 32 * i;
      if (d < kd) acc[i] = acc[i] * f.a + vr[d] * f.b;
    }
  }

  // Merge the warps' partials (a warp without keys contributes the empty partial).
  float* warp_stat = smem;               // (kWarps, 2)
  float* warp_acc = smem + 2 * kWarps;   // (kWarps, kd)
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
      out[d] = value * softmax::FinalScale(merged);
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
__global__ void __launch_bounds__(kThreads) MergeKernel(DecodeAttentionArgs a, int num_splits) {
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
    out[d] = value * softmax::FinalScale(merged);
  }
}

int KeysPerSplit(int requested) { return requested > 0 ? requested : kDefaultKeysPerSplit; }

}  // namespace decode_attention_internal

size_t DecodeAttentionWorkspaceFloats(int batch, int num_heads, int head_dim, int num_keys, int keys_per_split) {
  namespace in = decode_attention_internal;
  if (batch <= 0 || num_heads <= 0 || head_dim <= 0 || num_keys <= 0 || keys_per_split < 0) return 0;
  const int splits = softmax::NumSplits(num_keys, in::KeysPerSplit(keys_per_split));
  if (splits <= 1) return 0;
  return static_cast<size_t>(batch) * num_heads * splits * (head_dim + 2);
}

cudaError_t LaunchDecodeAttention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  namespace in = decode_attention_internal;
  const long long width = static_cast<long long>(a.num_heads) * a.head_dim;
  if (a.batch <= 0 || a.batch > in::kMaxGridYZ || a.num_heads <= 0 || a.num_heads > in::kMaxGridYZ ||
      a.head_dim <= 0 || a.head_dim > kDecodeAttentionMaxHeadDim || a.num_keys <= 0 || a.kv_rows <= 0 ||
      a.keys_per_split < 0 || a.q_stride < width || a.kv_stride < width || a.out_stride < width ||
      a.q == nullptr || a.k == nullptr || a.v == nullptr || a.first_key == nullptr || a.scale == nullptr ||
      a.out == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int keys_per_split = in::KeysPerSplit(a.keys_per_split);
  const int splits = softmax::NumSplits(a.num_keys, keys_per_split);
  if (splits > 1 && a.workspace == nullptr) return cudaErrorInvalidValue;
  const size_t smem = sizeof(float) * in::kWarps * (a.head_dim + 2);
  const dim3 split_grid(static_cast<unsigned>(splits), static_cast<unsigned>(a.num_heads),
                        static_cast<unsigned>(a.batch));
  BS_LAUNCH(in::SplitKernel, split_grid, in::kThreads, smem, stream)(a, splits, keys_per_split);
  if (splits > 1) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    const dim3 merge_grid(static_cast<unsigned>(a.num_heads), static_cast<unsigned>(a.batch));
    BS_LAUNCH(in::MergeKernel, merge_grid, in::kThreads, 0, stream)(a, splits);
  }
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
