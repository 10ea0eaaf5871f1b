// CUDA Reformer LSH decode attention, split-K over the num_hashes * W (round, window slot) pairs
// of each (sequence, head), as kernels/cuda/decode_attention.cu:
//   pass 1 (grid (splits, heads, batch), 4 warps per block): each warp runs an online softmax
//     over every 4th pair of the block's split (the q . k̂ dot product spread over the lanes,
//     head_dim / 32 components per lane, summed with xor shuffles; the self row gets -1e5), the
//     block merges its 4 warp partials through shared memory and writes the split's partial
//     (m, l, acc[head_dim]) to the workspace, or the output acc / l when there is one split;
//   pass 2 (grid (heads, batch)): merges the splits' partials in order, out = acc / l.
// The two passes are kernels/cuda/split_attention.cuh's; this file gives their key policy (which
// cache row key j is, its logit and the output multiplier) and the launcher's checks.
// One softmax over all the rounds' pairs is the rounds' softmax-of-lse combination (see the
// .cuh). The pairs of one (sequence, head) are contiguous in `windows`: pair j is round j / W,
// slot j % W.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/lsh_window_attention.cuh"

#include "kernels/cuda/online_softmax.cuh"
#include "kernels/cuda/split_attention.cuh"

namespace blockserve::cuda {
namespace lsh_window_attention_internal {

namespace sa = split_attention;

// Pair j of (sequence b, head h) is cache row win[j]; its logit is q . k, or kLshSelfMaskValue
// for the self row; the output is acc / l (l >= 1 for a non-empty partial: its maximum
// contributes exp(0)).
struct WindowKeys {
  static constexpr int kPerLane = kLshWindowAttentionMaxHeadDim / 32;
  const int32_t* win;  // this (sequence, head)'s num_pairs rows
  int32_t self;

  static __device__ __forceinline__ WindowKeys Make(const LshWindowAttentionArgs& a, int b, int h,
                                                    int num_pairs) {
    return WindowKeys{a.windows + (static_cast<size_t>(b) * a.num_heads + h) * num_pairs,
                      a.self_row[b]};
  }
  __device__ __forceinline__ sa::KeyRow At(int j) const { return sa::KeyRow{win[j]}; }
  __device__ __forceinline__ float Logit(int /*j*/, sa::KeyRow key, float dot) const {
    return key.row == self ? kLshSelfMaskValue : dot;
  }
  static __device__ __forceinline__ float Scale(softmax::SoftmaxStat s) {
    return s.l > 0.0f ? 1.0f / s.l : 0.0f;
  }
};

// num_hashes * window, or -1 when it does not fit an int.
int NumPairs(int num_hashes, int window) {
  const long long pairs = static_cast<long long>(num_hashes) * window;
  return pairs > 0x7fffffffLL ? -1 : static_cast<int>(pairs);
}

}  // namespace lsh_window_attention_internal

size_t LshWindowAttentionWorkspaceFloats(int batch, int num_heads, int head_dim, int num_hashes,
                                         int window, int keys_per_split) {
  namespace in = lsh_window_attention_internal;
  if (num_hashes <= 0 || window <= 0) return 0;
  const int pairs = in::NumPairs(num_hashes, window);
  if (pairs <= 0) return 0;
  return split_attention::WorkspaceFloats(batch, num_heads, head_dim, pairs, keys_per_split);
}

cudaError_t LaunchLshWindowAttention(const LshWindowAttentionArgs& a, cudaStream_t stream) {
  namespace in = lsh_window_attention_internal;
  namespace sa = split_attention;
  const int pairs = in::NumPairs(a.num_hashes, a.window);
  if (!sa::ValidCommonArgs(a, kLshWindowAttentionMaxHeadDim) || a.num_hashes <= 0 ||
      a.window <= 0 || pairs <= 0 || a.windows == nullptr || a.self_row == nullptr) {
    return cudaErrorInvalidValue;
  }
  return sa::LaunchSplitAndMerge<in::WindowKeys>(a, pairs, stream);
}

}  // namespace blockserve::cuda
