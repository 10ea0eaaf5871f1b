// CPU multi-head attention of the Block-Recurrent Transformer (learned per-head scale, ring-buffer
// keys/values, meliad's safe softmax), Highway dispatch.
#ifndef BLOCKSERVE_KERNELS_CPU_ATTENTION_H_
#define BLOCKSERVE_KERNELS_CPU_ATTENTION_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::cpu {

struct AttentionArgs {
  const float* q = nullptr;  // (m, num_heads * head_dim) query rows
  size_t q_stride = 0;       // floats between query rows
  const float* k = nullptr;  // key rows
  const float* v = nullptr;  // value rows
  size_t kv_stride = 0;      // floats between key (and value) rows
  size_t kv_rows = 0;  // rows in the k/v buffers; row indices are taken modulo kv_rows (rings)
  size_t m = 0;        // queries
  size_t num_heads = 0;
  size_t head_dim = 0;
  size_t num_keys = 0;          // keys per query
  size_t first_key = 0;         // query i reads rows (first_key + i * key_step + j) % kv_rows,
  size_t key_step = 0;          // j in [0, num_keys)
  const float* bias = nullptr;  // (num_heads, num_keys) added to logit j of every query, or nullptr
  const float* scale = nullptr;  // (num_heads) learned per-head scale, required
  float* out = nullptr;          // (m, num_heads * head_dim)
  size_t out_stride = 0;         // floats between output rows
};

// Head h uses columns [h * head_dim, (h + 1) * head_dim) of q, k, v and out:
//   logit_j = (q . k_j + bias[h][j]) * scale[h]
//   mx = max(max_j logit_j, -1000)
//   a_j = exp(logit_j - mx) / (sum_j exp(logit_j - mx) + exp(-1000 - mx))
//   out = sum_j a_j v_j
// so a query whose logits are all far below -1000 attends to (almost) nothing and gets ~0.
// Computes queries [query_begin, min(query_end, m)) only (callers split queries over threads);
// a query's output is bit-identical whatever the range or m. Logits use per-thread scratch.
void Attention(const AttentionArgs& args, size_t query_begin = 0, size_t query_end = SIZE_MAX);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_ATTENTION_H_
