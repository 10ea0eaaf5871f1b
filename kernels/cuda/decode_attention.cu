// CUDA BRT decode window attention, split-K over the keys (flash-decoding):
//   pass 1 (grid (splits, heads, batch), 4 warps per block): each block takes the keys of its
//     split; each warp runs an online softmax over every 4th key of the split (the q . k dot
//     product is spread over the lanes, head_dim / 32 components per lane, and summed with xor
//     shuffles), the block merges its 4 warp partials through shared memory and writes the
//     split's partial (m, l, acc[head_dim]) to the workspace, or the final output when there is
//     a single split;
//   pass 2 (grid (heads, batch)): merges the splits' partials in order and applies the safe
//     softmax (kernels/cuda/online_softmax.cuh).
// The two passes are kernels/cuda/split_attention.cuh's; this file gives their key policy (which
// cache row key j is, its logit and the output multiplier) and the launcher's checks.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/decode_attention.cuh"

#include "kernels/cuda/online_softmax.cuh"
#include "kernels/cuda/split_attention.cuh"

namespace blockserve::cuda {
namespace decode_attention_internal {

namespace sa = split_attention;

// Key j of (sequence b, head h) is ring row (first + j) % kv_rows; its logit is
// (q . k + bias[j]) * head_scale; the output is the safe softmax of spec-brt.md (the -1000 floor).
struct RingKeys {
  static constexpr int kPerLane = kDecodeAttentionMaxHeadDim / 32;
  int first;
  int kv_rows;
  const float* bias;  // (num_keys) of this head, or null
  float head_scale;

  static __device__ __forceinline__ RingKeys Make(const DecodeAttentionArgs& a, int b, int h,
                                                  int num_keys) {
    const float* bias = a.bias != nullptr ? a.bias + static_cast<size_t>(h) * num_keys : nullptr;
    return RingKeys{a.first_key[b], a.kv_rows, bias, a.scale[h]};
  }
  __device__ __forceinline__ sa::KeyRow At(int j) const {
    return sa::KeyRow{softmax::RingRow(first, j, kv_rows)};
  }
  __device__ __forceinline__ float Logit(int j, sa::KeyRow /*key*/, float dot) const {
    return (dot + (bias != nullptr ? bias[j] : 0.0f)) * head_scale;
  }
  static __device__ __forceinline__ float Scale(softmax::SoftmaxStat s) {
    return softmax::FinalScale(s);
  }
};

}  // namespace decode_attention_internal

size_t DecodeAttentionWorkspaceFloats(int batch, int num_heads, int head_dim, int num_keys,
                                      int keys_per_split) {
  return split_attention::WorkspaceFloats(batch, num_heads, head_dim, num_keys, keys_per_split);
}

cudaError_t LaunchDecodeAttention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  namespace in = decode_attention_internal;
  namespace sa = split_attention;
  if (!sa::ValidCommonArgs(a, kDecodeAttentionMaxHeadDim) || a.num_keys <= 0 || a.kv_rows <= 0 ||
      a.first_key == nullptr || a.scale == nullptr) {
    return cudaErrorInvalidValue;
  }
  return sa::LaunchSplitAndMerge<in::RingKeys>(a, a.num_keys, stream);
}

}  // namespace blockserve::cuda
