// CPU prefill GEMM (x @ w^T) on OpenBLAS cblas_sgemm, with f32 or bf16 weights.
#ifndef BLOCKSERVE_KERNELS_CPU_GEMM_H_
#define BLOCKSERVE_KERNELS_CPU_GEMM_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::cpu {

// y[r][o] = sum_i x[r][i] * w[o][i]: x (m, in), w (out, in) row-major, y (m, out). Overwrites y.
void GemmF32(const float* x, size_t m, size_t in, const float* w, size_t out, float* y,
             size_t row_begin = 0, size_t row_end = SIZE_MAX);
// The same with bfloat16 weights (raw uint16 bit patterns): blocks of 64 weight rows are widened
// to an fp32 scratch (per thread) and multiplied into the matching columns of y.
void GemmBF16(const float* x, size_t m, size_t in, const uint16_t* w, size_t out, float* y,
              size_t row_begin = 0, size_t row_end = SIZE_MAX);
// Only the output columns [row_begin, row_end) (weight rows) are computed; y keeps its row
// stride `out`. Callers split a GEMM over their own threads this way.

// Threads the BLAS library itself may use (process-wide). Runners that split GEMMs over their
// own pool set 1, so BLAS worker threads do not spin against the pool's.
void SetBlasThreads(int n);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_GEMM_H_
