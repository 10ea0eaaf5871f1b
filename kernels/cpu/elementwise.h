// CPU elementwise ops of the BRT forward pass (head norm, activations, gates, embedding gather) and
// the dot/axpy vector primitives of the Reformer's per-sequence attention.
#ifndef BLOCKSERVE_KERNELS_CPU_ELEMENTWISE_H_
#define BLOCKSERVE_KERNELS_CPU_ELEMENTWISE_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::cpu {

// In place, for each of `rows` rows (`stride` floats apart) and each of its num_heads slices of
// head_dim floats: x *= 1 / sqrt(sum(x^2) + 1e-6).
void NormalizeHeads(float* x, size_t rows, size_t stride, size_t num_heads, size_t head_dim);
// x = max(x, 0), in place.
void Relu(float* x, size_t n);
// x = tanh(x), in place.
void Tanh(float* x, size_t n);
// y += x.
void AddInPlace(float* y, const float* x, size_t n);
// x *= s.
void Scale(float* x, size_t n, float s);
// Returns sum_i a[i] * b[i] in float, with fused multiply-adds into a few vector accumulators
// (the tail zero-padded to a whole vector). The summation order depends only on n and the SIMD
// target, never on the pointers' alignment: equal inputs give bit-identical results.
float Dot(const float* a, const float* b, size_t n);
// y += alpha * x, each element by the target's MulAdd (fused where the target has FMA), the tail
// included.
void Axpy(float alpha, const float* x, float* y, size_t n);
// out[j] = Dot(q, rows[j], n) for j in [0, count) (bit-identical to Dot, one dispatch).
void DotRows(const float* q, const float* const* rows, size_t count, size_t n, float* out);
// out (n) = sum_j weights[j] * rows[j] over j in [0, count), in j order: bit-identical to zeroing
// out and calling Axpy(weights[j], rows[j], out, n) for each j, but the sums stay in registers.
void WeightedSumRows(const float* weights, const float* const* rows, size_t count, size_t n, float* out);
// Fixed gate: g = sigmoid(bias[c]) per column c; out = state * g + y * (1 - g).
// state, y, out: (rows, d); bias: (d,). out may alias state.
void GateFixed(const float* state, const float* y, const float* bias, size_t rows, size_t d,
               float* out);
// LSTM-style gate: f = sigmoid(forget_pre + 1), i = sigmoid(input_pre - 1); out = state * f + y *
// i. All (n,); out may alias state.
void GateLstm(const float* state, const float* y, const float* forget_pre, const float* input_pre,
              size_t n, float* out);
// Embedding lookup: out[r] = table[ids[r]] for r in [0, n); table (vocab, d), out (n, d).
// ids must be rows of table (negative ids abort in debug builds).
void GatherRowsF32(const float* table, size_t d, const int32_t* ids, size_t n, float* out);
// The same with a bfloat16 table (raw uint16 bit patterns), widened to fp32.
void GatherRowsBF16(const uint16_t* table, size_t d, const int32_t* ids, size_t n, float* out);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_ELEMENTWISE_H_
