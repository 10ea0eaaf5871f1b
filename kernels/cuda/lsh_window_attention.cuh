// Host launcher of the CUDA Reformer LSH decode attention (ReformerRunner::DecodeLsh's attention
// once the bucket index has found the windows): one new token per sequence attends, per head and
// hash round, to the W cached rows of its round's window; the rounds are combined by the softmax
// of their log-sum-exp. Split-K over the (round, window slot) pairs, as decode_attention.cu.
#ifndef BLOCKSERVE_KERNELS_CUDA_LSH_WINDOW_ATTENTION_CUH_
#define BLOCKSERVE_KERNELS_CUDA_LSH_WINDOW_ATTENTION_CUH_

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// All pointers are device pointers. Per sequence b and head h (columns [h * head_dim, (h + 1) *
// head_dim) of q, the cache rows and out), round r and window slot i, with row = windows[b][h][r][i]:
//   logit_{r,i} = row == self_row[b] ? -1e5 : q . k̂_row   (no scale: k̂ is the normalized key)
//   o_r = softmax_i(logit_{r,.}) . v,  lse_r = logsumexp_i(logit_{r,.})
//   out = sum_r softmax_r(lse_r) o_r
// (ref::LshWindowAttention). Since exp(lse_r) o_r = sum_i exp(logit_{r,i}) v_row, this equals one
// max-subtracted softmax over all num_hashes * W (round, slot) pairs (a row in several slots or
// rounds counts each time), which is what the kernel computes with the online softmax; there is
// no -1000 floor (unlike the BRT kernels).
struct LshWindowAttentionArgs {
  const float* q = nullptr;  // (batch, num_heads * head_dim) query rows (the raw shared qk)
  int q_stride = 0;          // floats between query rows
  // (batch) arrays, in device memory, of device pointers to each sequence's cache: row p's
  // normalized key at k[b] + p * kv_stride, its value at v[b] + p * kv_stride (for the CPU
  // runner's [k̂ | v] rows: v[b] = k[b] + num_heads * head_dim, kv_stride = 2 * num_heads * head_dim).
  const float* const* k = nullptr;
  const float* const* v = nullptr;
  int kv_stride = 0;  // floats between cache rows
  // (batch, num_heads, num_hashes, window) cache row indices; each must be a valid row of its
  // sequence's cache (not checked on the device). Rows may repeat (the window wraps when the
  // round has fewer than W tokens).
  const int32_t* windows = nullptr;
  const int32_t* self_row = nullptr;  // (batch) the new token's own cache row (masked to -1e5)
  int batch = 0;
  int num_heads = 0;
  int head_dim = 0;    // 1..kLshWindowAttentionMaxHeadDim
  int num_hashes = 0;  // rounds
  int window = 0;      // W = lsh_chunk_length * (1 + lsh_num_chunks_before)
  float* out = nullptr;  // (batch, num_heads * head_dim); must not overlap the inputs
  int out_stride = 0;    // floats between output rows
  // (round, slot) pairs per split (block); 0 picks the default. Tests set it to force many splits.
  int keys_per_split = 0;
  // LshWindowAttentionWorkspaceFloats(...) floats of device memory for the split partials; may be
  // nullptr when that is 0 (a single split).
  float* workspace = nullptr;
};

constexpr int kLshWindowAttentionMaxHeadDim = 256;
constexpr float kLshSelfMaskValue = -1e5f;  // ReformerRunner's kSelfMaskValue

// Floats of workspace LaunchLshWindowAttention needs for these shapes (0 when the num_hashes *
// window pairs fit in one split: then the first pass writes the output directly).
size_t LshWindowAttentionWorkspaceFloats(int batch, int num_heads, int head_dim, int num_hashes, int window,
                                         int keys_per_split = 0);

// Runs the split pass (grid (splits, heads, batch)) and, with more than one split, the merge pass
// (grid (heads, batch)). Returns cudaErrorInvalidValue for bad shapes or a missing workspace,
// otherwise the launch error, if any.
cudaError_t LaunchLshWindowAttention(const LshWindowAttentionArgs& args, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_LSH_WINDOW_ATTENTION_CUH_
