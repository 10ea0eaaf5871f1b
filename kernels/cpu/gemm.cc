// Prefill GEMM through CBLAS (OpenBLAS); bf16 weights are widened block by block to fp32.
#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "base/check.h"
#include "base/tensor.h"

namespace blockserve::cpu {
namespace {

// Weight rows widened per sgemm call in GemmBF16 (64 rows x in floats of scratch).
constexpr size_t kBF16BlockRows = 64;

// CBLAS dimensions are int (or a wider blasint with 64-bit OpenBLAS interfaces).
int BlasDim(size_t v) {
  BS_CHECK_MSG(v <= static_cast<size_t>(std::numeric_limits<int>::max()),
               "GEMM dimension over INT_MAX");
  return static_cast<int>(v);
}

// y (m, n) with row stride ldc = x (m, in) @ w^T, w (n, in) fp32. in > 0.
void SgemmNT(const float* x, size_t m, size_t in, const float* w, size_t n, float* y, size_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BlasDim(m), BlasDim(n), BlasDim(in), 1.0f, x,
              BlasDim(in), w, BlasDim(in), 0.0f, y, BlasDim(ldc));
}

}  // namespace

void SetBlasThreads(int n) { openblas_set_num_threads(std::max(1, n)); }

void GemmF32(const float* x, size_t m, size_t in, const float* w, size_t out, float* y, size_t row_begin,
             size_t row_end) {
  row_end = std::min(row_end, out);
  if (m == 0 || row_begin >= row_end) return;
  if (in == 0) {
    for (size_t r = 0; r < m; ++r) std::fill(y + r * out + row_begin, y + r * out + row_end, 0.0f);
    return;
  }
  SgemmNT(x, m, in, w + row_begin * in, row_end - row_begin, y + row_begin, out);
}

void GemmBF16(const float* x, size_t m, size_t in, const uint16_t* w, size_t out, float* y, size_t row_begin,
              size_t row_end) {
  row_end = std::min(row_end, out);
  if (m == 0 || row_begin >= row_end) return;
  if (in == 0) {
    for (size_t r = 0; r < m; ++r) std::fill(y + r * out + row_begin, y + r * out + row_end, 0.0f);
    return;
  }
  thread_local std::vector<float> scratch;
  scratch.resize(std::min(row_end - row_begin, kBF16BlockRows) * in);
  for (size_t o0 = row_begin; o0 < row_end; o0 += kBF16BlockRows) {
    const size_t n = std::min(kBF16BlockRows, row_end - o0);
    const uint16_t* src = w + o0 * in;
    float* dst = scratch.data();
    for (size_t i = 0; i < n * in; ++i) dst[i] = BF16ToFloat(src[i]);
    SgemmNT(x, m, in, dst, n, y + o0, out);
  }
}

}  // namespace blockserve::cpu
