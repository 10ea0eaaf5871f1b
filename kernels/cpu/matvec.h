// CPU batched matrix-vector products (decode GEMV) with f32 or bf16 weights, Highway dispatch.
#ifndef BLOCKSERVE_KERNELS_CPU_MATVEC_H_
#define BLOCKSERVE_KERNELS_CPU_MATVEC_H_

#include <cstddef>
#include <cstdint>

namespace blockserve::cpu {

// y[b][o] = sum_i w[o][i] * x[b][i] for rows [row_begin, row_end) of w.
// w: (out, in) row-major; x: (batch, in); y: (batch, out). Each ~64 KiB block of weight rows is
// read from memory once for the whole batch (decode: the weights are the traffic, the batch shares
// it). Accumulates in fp32; y[b] is bit-identical whatever the batch size and b's position in it.
void MatVecF32(const float* w, const float* x, size_t batch, size_t out, size_t in, float* y,
               size_t row_begin = 0, size_t row_end = SIZE_MAX);
// The same with bfloat16 weights (raw uint16 bit patterns), widened to fp32 on the fly.
void MatVecBF16(const uint16_t* w, const float* x, size_t batch, size_t out, size_t in, float* y,
                size_t row_begin = 0, size_t row_end = SIZE_MAX);

}  // namespace blockserve::cpu

#endif  // BLOCKSERVE_KERNELS_CPU_MATVEC_H_
