// CPU prefill GEMM (x @ w^T) on OpenBLAS cblas_sgemm, with f32 or bf16 weights.
#ifndef BLOCKSERVE_KERNELS_CPU_GEMM_H_
#define BLOCKSERVE_KERNELS_CPU_GEMM_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::cpu {

// y[r][o] = sum_i x[r][i] * w[o][i]: x (m, in), w (out, in) row-major, y (m, out). Overwrites y.
void GemmF32(const float* x, size_t m, size_t in, const float* w, size_t out, float* y);
// The same with bfloat16 weights (raw uint16 bit patterns): blocks of 64 weight rows are widened
// to an fp32 scratch (per thread) and multiplied into the matching columns of y.
void GemmBF16(const float* x, size_t m, size_t in, const uint16_t* w, size_t out, float* y);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_GEMM_H_
