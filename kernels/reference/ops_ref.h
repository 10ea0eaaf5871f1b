// Scalar reference implementations of the kernels (double accumulation), for tests.
#ifndef BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_
#define BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_

#include <cmath>
#include <cstddef>

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

}  // namespace blockserve::ref

#endif  // BLOCKSERVE_KERNELS_REFERENCE_OPS_REF_H_
