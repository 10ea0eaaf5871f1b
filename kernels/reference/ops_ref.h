// Scalar reference implementations of the kernels (double accumulation), for tests.
#ifndef BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_
#define BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace blockserve::ref {

// RMSNorm with scale only (spec-brt.md §1.1): out[i] = x[i] * rsqrt(mean(x^2) + eps) * scale[i].
// x, scale, out: (n,)
inline void RmsNorm(const float* x, const float* scale, size_t n, float eps, float* out) {
  double sum_sq = 0.0;
  for (size_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * inv * scale[i]);
}

// Matrix-vector products for a batch: y[b][o] = sum_i w[o][i] * x[b][i].
// w: (out, in) as float (callers convert bf16 first), x: (batch, in), y: (batch, out).
inline void MatVec(const float* w, const float* x, size_t batch, size_t out, size_t in, float* y) {
  for (size_t b = 0; b < batch; ++b) {
    for (size_t o = 0; o < out; ++o) {
      double acc = 0.0;
      for (size_t i = 0; i < in; ++i) acc += static_cast<double>(w[o * in + i]) * x[b * in + i];
      y[b * out + o] = static_cast<float>(acc);
    }
  }
}

// Prefill GEMM: y[r][o] = sum_i x[r][i] * w[o][i]; x (m, in), w (out, in) as float, y (m, out).
inline void Gemm(const float* x, size_t m, size_t in, const float* w, size_t out, float* y) {
  MatVec(w, x, m, out, in, y);
}

// BRT multi-head attention (meliad): for query i in [query_begin, min(query_end, m)) and head h,
//   logit_j = (q . k_j + bias[h][j]) * scale[h], k_j = row (first_key + i * key_step + j) %
//   kv_rows, mx = max(max_j logit_j, -1000), a_j = exp(logit_j - mx) / (sum_j exp(logit_j - mx) +
//   exp(-1000 - mx)), out = sum_j a_j v_j.
// Args: any struct with the fields of cpu::AttentionArgs (kernels/cpu/attention.h).
template <class Args>
void Attention(const Args& a, size_t query_begin = 0, size_t query_end = SIZE_MAX) {
  query_end = std::min(query_end, a.m);
  std::vector<double> logits(a.num_keys), acc(a.head_dim);
  for (size_t i = query_begin; i < query_end; ++i) {
    for (size_t h = 0; h < a.num_heads; ++h) {
      const size_t col = h * a.head_dim;
      const float* q = a.q + i * a.q_stride + col;
      double mx = -1000.0;
      for (size_t j = 0; j < a.num_keys; ++j) {
        const float* k = a.k + (a.first_key + i * a.key_step + j) % a.kv_rows * a.kv_stride + col;
        double dot = 0.0;
        for (size_t d = 0; d < a.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
        const double bias = a.bias != nullptr ? a.bias[h * a.num_keys + j] : 0.0;
        logits[j] = (dot + bias) * a.scale[h];
        mx = std::max(mx, logits[j]);
      }
      double denom = std::exp(-1000.0 - mx);
      for (size_t j = 0; j < a.num_keys; ++j) {
        logits[j] = std::exp(logits[j] - mx);
        denom += logits[j];
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      for (size_t j = 0; j < a.num_keys; ++j) {
        const float* v = a.v + (a.first_key + i * a.key_step + j) % a.kv_rows * a.kv_stride + col;
        for (size_t d = 0; d < a.head_dim; ++d) acc[d] += logits[j] / denom * v[d];
      }
      float* out = a.out + i * a.out_stride + col;
      for (size_t d = 0; d < a.head_dim; ++d) out[d] = static_cast<float>(acc[d]);
    }
  }
}

// Per head slice of each row: x *= 1 / sqrt(sum(x^2) + 1e-6), in place.
inline void NormalizeHeads(float* x, size_t rows, size_t stride, size_t num_heads,
                           size_t head_dim) {
  for (size_t r = 0; r < rows; ++r) {
    for (size_t h = 0; h < num_heads; ++h) {
      float* xh = x + r * stride + h * head_dim;
      double sum_sq = 0.0;
      for (size_t i = 0; i < head_dim; ++i) sum_sq += static_cast<double>(xh[i]) * xh[i];
      const double inv = 1.0 / std::sqrt(sum_sq + 1e-6);
      for (size_t i = 0; i < head_dim; ++i) xh[i] = static_cast<float>(xh[i] * inv);
    }
  }
}

inline double Sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

inline void Relu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
inline void Tanh(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(std::tanh(static_cast<double>(x[i])));
}
inline void AddInPlace(float* y, const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(y[i]) + x[i]);
}
inline void Scale(float* x, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<double>(x[i]) * s);
}
// sum_i a[i] * b[i], accumulated in double.
inline double Dot(const float* a, const float* b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}
// y += alpha * x, each element rounded once from double.
inline void Axpy(float alpha, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(y[i]) + static_cast<double>(alpha) * x[i]);
}

// g = sigmoid(bias[c]); out = state * g + y * (1 - g). state, y, out: (rows, d); out may alias
// state.
inline void GateFixed(const float* state, const float* y, const float* bias, size_t rows, size_t d,
                      float* out) {
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < d; ++c) {
      const double g = Sigmoid(bias[c]);
      const double one_minus_g = Sigmoid(-static_cast<double>(bias[c]));
      out[r * d + c] = static_cast<float>(state[r * d + c] * g + y[r * d + c] * one_minus_g);
    }
  }
}

// f = sigmoid(forget_pre + 1), i = sigmoid(input_pre - 1); out = state * f + y * i. out may alias
// state.
inline void GateLstm(const float* state, const float* y, const float* forget_pre,
                     const float* input_pre, size_t n, float* out) {
  for (size_t k = 0; k < n; ++k) {
    const double f = Sigmoid(forget_pre[k] + 1.0);
    const double in = Sigmoid(input_pre[k] - 1.0);
    out[k] = static_cast<float>(state[k] * f + y[k] * in);
  }
}

// out[r] = table[ids[r]] (d floats per row); the bf16 table is given already widened to float.
inline void GatherRows(const float* table, size_t d, const int32_t* ids, size_t n, float* out) {
  for (size_t r = 0; r < n; ++r) {
    for (size_t c = 0; c < d; ++c) out[r * d + c] = table[static_cast<size_t>(ids[r]) * d + c];
  }
}

}  // namespace blockserve::ref

#endif  // BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_
