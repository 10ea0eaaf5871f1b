// BRT token-to-state cross-attention on the device: no kernel of its own. Each token query (per
// head) attends to the S keys/values of its sequence's recurrent state with the learned per-head
// scale (scale2), no mask and no bias: BrtRunner's
//   cpu::Attention(Heads(q2, state_k, state_v, kv_rows = S, m, num_keys = S, first = 0,
//                        step = 0, bias = nullptr, scale2, ...))
// which is LaunchDecodeAttention (kernels/cuda/decode_attention.cuh) with one "sequence" per
// token query, its ring = the state (kv_rows = num_keys = S) and first_key = 0. Keys are used as
// stored (the state keys are kept normalized); the safe softmax's -1000 floor applies as on the
// CPU. Header-only: it fills DecodeAttentionArgs.
#ifndef BLOCKSERVE_KERNELS_CUDA_CROSS_ATTENTION_CUH_
#define BLOCKSERVE_KERNELS_CUDA_CROSS_ATTENTION_CUH_

#include <cstddef>

#include "kernels/cuda/decode_attention.cuh"

namespace blockserve::cuda {

// Device pointers, as DecodeAttentionArgs. tokens: queries in the batch (several may belong to
// the same sequence: their state_k / state_v entries then hold the same pointers).
struct CrossAttentionArgs {
  const float* q = nullptr;  // (tokens, num_heads * head_dim) normalized q2 rows
  int q_stride = 0;
  const float* const* state_k = nullptr;  // (tokens) device array: the token's sequence's (S, kv_stride) keys
  const float* const* state_v = nullptr;  // (tokens) device array: ... values
  int kv_stride = 0;                      // floats between state rows
  int num_states = 0;                     // S
  int tokens = 0;
  int num_heads = 0;
  int head_dim = 0;
  const float* scale = nullptr;  // (num_heads) the layer's scale2
  // (tokens) device array of zeros (the first key of every query); can be shared by all layers.
  const int* zeros = nullptr;
  float* out = nullptr;  // (tokens, num_heads * head_dim) at out_stride (e.g. the second half of the
  int out_stride = 0;    // [self; cross] attention row)
  int keys_per_split = 0;      // 0: default; see DecodeAttentionArgs
  float* workspace = nullptr;  // CrossAttentionWorkspaceFloats(...) floats
};

inline DecodeAttentionArgs MakeCrossAttentionDecodeArgs(const CrossAttentionArgs& c) {
  DecodeAttentionArgs a;
  a.q = c.q;
  a.q_stride = c.q_stride;
  a.k = c.state_k;
  a.v = c.state_v;
  a.kv_stride = c.kv_stride;
  a.kv_rows = c.num_states;
  a.first_key = c.zeros;
  a.batch = c.tokens;
  a.num_heads = c.num_heads;
  a.head_dim = c.head_dim;
  a.num_keys = c.num_states;
  a.bias = nullptr;
  a.scale = c.scale;
  a.out = c.out;
  a.out_stride = c.out_stride;
  a.keys_per_split = c.keys_per_split;
  a.workspace = c.workspace;
  return a;
}

inline size_t CrossAttentionWorkspaceFloats(int tokens, int num_heads, int head_dim, int num_states,
                                            int keys_per_split = 0) {
  return DecodeAttentionWorkspaceFloats(tokens, num_heads, head_dim, num_states, keys_per_split);
}

// LaunchDecodeAttention with the fixed state layout; same errors.
inline cudaError_t LaunchCrossAttention(const CrossAttentionArgs& c, cudaStream_t stream) {
  return LaunchDecodeAttention(MakeCrossAttentionDecodeArgs(c), stream);
}

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_CROSS_ATTENTION_CUH_
