// CPU RMSNorm (Highway SIMD, runtime dispatch to the best target of this machine).
#ifndef BLOCKSERVE_KERNELS_CPU_RMS_NORM_H_
#define BLOCKSERVE_KERNELS_CPU_RMS_NORM_H_

#include <cstddef>

namespace blockserve::cpu {

// For each of `rows` rows of `n` floats: out = x * rsqrt(mean(x^2) + eps) * scale.
// x, out: (rows, n), may alias; scale: (n,). Accumulates in fp32.
void RmsNorm(const float* x, const float* scale, size_t rows, size_t n, float eps, float* out);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_RMS_NORM_H_
