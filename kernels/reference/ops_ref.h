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


// ---- sampling and Reformer LSH (references of kernels/cuda/sampling.cu and lsh_*.cu) ----------

// engine::SamplingParams without seed and logprobs.
struct SamplingConfig {
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
};

// engine/sampler.cc's Sampler::Sample token choice (penalties -> temperature -> top-k -> top-p
// -> min-p -> draw), with the draw's uniform number in [0, 1) given: u = u01 * kept mass.
// output_counts (vocab,) (nullptr: none), prompt_seen (vocab,) nonzero for prompt tokens
// (nullptr: none). `logits` is taken by value.
inline int32_t SampleToken(std::vector<float> logits, const SamplingConfig& p, const int32_t* output_counts,
                           const uint8_t* prompt_seen, double u01) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  for (int32_t t = 0; t < vocab; ++t) {
    const int count = output_counts != nullptr ? output_counts[t] : 0;
    const bool seen = (prompt_seen != nullptr && prompt_seen[t] != 0) || count > 0;
    float& l = logits[t];
    if (seen && p.repetition_penalty != 1.0f) l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    if (count > 0 && (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)) {
      l -= p.presence_penalty * 1.0f + p.frequency_penalty * static_cast<float>(count);
    }
  }
  if (p.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t t = 1; t < vocab; ++t) {
      if (logits[t] > logits[best]) best = t;
    }
    return best;
  }
  std::vector<std::pair<float, int32_t>> sorted;
  for (int32_t t = 0; t < vocab; ++t) sorted.emplace_back(logits[t] / p.temperature, t);
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  size_t keep = sorted.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < keep) keep = p.top_k;
  const double top = sorted[0].first;
  std::vector<double> probs(keep);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += probs[i] = std::exp(sorted[i].first - top);
  if (p.top_p < 1.0f) {
    double cumulative = 0;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += probs[i] / total;
      if (cumulative >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    size_t cut = 1;
    while (cut < keep && probs[cut] >= p.min_p * probs[0]) ++cut;
    keep = cut;
  }
  double kept_total = 0;
  for (size_t i = 0; i < keep; ++i) kept_total += probs[i];
  const double u = u01 * kept_total;
  double acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += probs[i];
    if (u < acc) return sorted[i].second;
  }
  return sorted[keep - 1].second;
}

// ReformerRunner::Hash for one token: qk (H * dh), rotations (H, dh, nh, half) with half =
// sum(factors) / 2; buckets (H * nh), index h * nh + r. y = x . rotations[h][:, r, :] in double;
// per factor f the first argmax over [y_part; -y_part], digits mixed-radix, first factor least
// significant.
inline void LshHash(const float* qk, const float* rotations, int H, int dh, int nh, const std::vector<int>& factors,
                    int32_t* buckets) {
  int half = 0;
  for (int f : factors) half += f / 2;
  std::vector<double> y(half);
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < nh; ++r) {
      std::fill(y.begin(), y.end(), 0.0);
      for (int i = 0; i < dh; ++i) {
        const float* row = rotations + ((static_cast<size_t>(h) * dh + i) * nh + r) * half;
        for (int j = 0; j < half; ++j) y[j] += static_cast<double>(qk[h * dh + i]) * row[j];
      }
      int64_t bucket = 0, radix = 1;
      int offset = 0;
      for (int f : factors) {
        const int fh = f / 2;
        int best = 0;
        double best_value = y[offset];
        for (int j = 1; j < f; ++j) {
          const double value = j < fh ? y[offset + j] : -y[offset + j - fh];
          if (value > best_value) {
            best_value = value;
            best = j;
          }
        }
        bucket += radix * best;
        radix *= f;
        offset += fh;
      }
      buckets[h * nh + r] = static_cast<int32_t>(bucket);
    }
  }
}

// ReformerRunner::DecodeLsh's attention for one query, given the windows: q (H * dh); kv rows of
// 2 * H * dh floats ([k̂ | v]); windows (H, nh, W) row indices; the row `self_row` gets the
// logit -1e5. Per (head, round): logits q . k̂, max-subtracted softmax, lse; rounds combined by
// the softmax of their lse. out (H * dh). Double throughout.
inline void LshWindowAttention(const float* q, const float* kv, const int32_t* windows, int H, int dh, int nh,
                               int W, int32_t self_row, float* out) {
  const size_t A = static_cast<size_t>(H) * dh;
  std::vector<double> logits(W), o(static_cast<size_t>(nh) * dh), lse(nh);
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < nh; ++r) {
      const int32_t* win = windows + (static_cast<size_t>(h) * nh + r) * W;
      double mx = -INFINITY;
      for (int k = 0; k < W; ++k) {
        const float* key = kv + win[k] * 2 * A + h * dh;
        double dot = 0;
        for (int d = 0; d < dh; ++d) dot += static_cast<double>(q[h * dh + d]) * key[d];
        logits[k] = win[k] == self_row ? -1e5 : dot;
        mx = std::max(mx, logits[k]);
      }
      double sum = 0;
      std::fill(o.begin() + r * dh, o.begin() + (r + 1) * dh, 0.0);
      for (int k = 0; k < W; ++k) {
        const double e = std::exp(logits[k] - mx);
        sum += e;
        const float* value = kv + win[k] * 2 * A + A + h * dh;
        for (int d = 0; d < dh; ++d) o[r * dh + d] += e * value[d];
      }
      for (int d = 0; d < dh; ++d) o[r * dh + d] /= sum;
      lse[r] = mx + std::log(sum);
    }
    double mx = -INFINITY;
    for (int r = 0; r < nh; ++r) mx = std::max(mx, lse[r]);
    double total = 0;
    for (int r = 0; r < nh; ++r) total += std::exp(lse[r] - mx);
    for (int d = 0; d < dh; ++d) {
      double acc = 0;
      for (int r = 0; r < nh; ++r) acc += std::exp(lse[r] - mx) / total * o[r * dh + d];
      out[h * dh + d] = static_cast<float>(acc);
    }
  }
}

}  // namespace blockserve::ref

#endif  // BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_
