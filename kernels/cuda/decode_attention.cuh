// Host launcher of the CUDA BRT decode window attention: one query row per (sequence, head)
// against that sequence's own ring of keys/values, split-K over the keys (flash-decoding).
#ifndef BLOCKSERVE_KERNELS_CUDA_DECODE_ATTENTION_CUH_
#define BLOCKSERVE_KERNELS_CUDA_DECODE_ATTENTION_CUH_

#include <cstddef>

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// All pointers are device pointers. Per sequence b and head h (columns [h * head_dim, (h + 1) *
// head_dim) of q, k, v and out), with k_j, v_j the rows (first_key[b] + j) % kv_rows of the
// sequence's ring, j in [0, num_keys):
//   logit_j = (q . k_j + bias[h][j]) * scale[h]
//   mx = max(max_j logit_j, -1000)
//   out = sum_j exp(logit_j - mx) v_j / (sum_j exp(logit_j - mx) + exp(-1000 - mx))
// i.e. cpu::Attention (kernels/cpu/attention.h) with m = 1, key_step = 0 for each sequence. Keys
// are used as stored (the BRT caches normalized keys); ring rows never written yet must hold
// zeros (spec-brt.md §3.4: they are not masked).
struct DecodeAttentionArgs {
  const float* q = nullptr;  // (batch, num_heads * head_dim) query rows
  int q_stride = 0;          // floats between query rows
  // (batch) arrays, in device memory, of device pointers to each sequence's ring of kv_rows rows.
  const float* const* k = nullptr;
  const float* const* v = nullptr;
  int kv_stride = 0;                // floats between ring rows
  int kv_rows = 0;                  // rows of every ring (> 0)
  const int* first_key = nullptr;   // (batch) ring row of key 0 of each sequence, in [0, kv_rows)
  int batch = 0;
  int num_heads = 0;
  int head_dim = 0;  // 1..kDecodeAttentionMaxHeadDim
  int num_keys = 0;  // keys per query (the window W)
  const float* bias = nullptr;   // (num_heads, num_keys) added to logit j, or nullptr
  const float* scale = nullptr;  // (num_heads) learned per-head scale, required
  float* out = nullptr;          // (batch, num_heads * head_dim); must not overlap the inputs
  int out_stride = 0;            // floats between output rows
  // Keys per split (block); 0 picks the default. Tests set it to force many splits.
  int keys_per_split = 0;
  // DecodeAttentionWorkspaceFloats(...) floats of device memory for the split partials; may be
  // nullptr when that is 0 (a single split).
  float* workspace = nullptr;
};

constexpr int kDecodeAttentionMaxHeadDim = 256;

// Floats of workspace LaunchDecodeAttention needs for these shapes (0 when the window fits in one
// split: then the first pass writes the output directly).
size_t DecodeAttentionWorkspaceFloats(int batch, int num_heads, int head_dim, int num_keys, int keys_per_split = 0);

// Runs the split pass (grid (splits, heads, batch)) and, with more than one split, the merge pass
// (grid (heads, batch)). Returns cudaErrorInvalidValue for bad shapes or a missing workspace,
// otherwise the launch error, if any.
cudaError_t LaunchDecodeAttention(const DecodeAttentionArgs& args, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_DECODE_ATTENTION_CUH_
