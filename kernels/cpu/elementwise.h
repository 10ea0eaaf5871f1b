// CPU elementwise ops of the BRT forward pass (head norm, activations, gates, embedding gather).
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
