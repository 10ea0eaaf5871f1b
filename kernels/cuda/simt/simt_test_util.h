// Test-only helpers shared by the SIMT kernel tests (kernels_cuda_simt_test): poisoned outputs and
// per-row comparisons with the scalar references.
#ifndef BLOCKSERVE_KERNELS_CUDA_SIMT_SIMT_TEST_UTIL_H_
#define BLOCKSERVE_KERNELS_CUDA_SIMT_SIMT_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::cuda::simt_test {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kSentinel = -12345.0f;  // output columns a kernel must leave untouched

// `rows` rows of `stride` floats: NaN in columns [col, col + width) of every row (what the kernel
// must write), kSentinel elsewhere.
inline std::vector<float> PoisonedRows(int rows, int stride, int col, int width) {
  std::vector<float> out(static_cast<size_t>(rows) * stride, kSentinel);
  for (int r = 0; r < rows; ++r) std::fill_n(out.begin() + static_cast<size_t>(r) * stride + col, width, kNaN);
  return out;
}

// got[i] is within tol * (1 + |want[i]|) of want[i] for every i < width (as ASSERT_NEAR; NaN
// fails); a failure names the first bad (head, d) of the head_dim-wide heads.
inline ::testing::AssertionResult HeadsNear(const float* got, const float* want, int width, int head_dim,
                                            double tol) {
  for (int i = 0; i < width; ++i) {
    const double bound = tol * (1 + std::fabs(want[i]));
    const double diff = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    if (!(diff <= bound)) {
      return ::testing::AssertionFailure() << "head " << i / head_dim << " d " << i % head_dim << ": got " << got[i]
                                           << ", want " << want[i] << " (bound " << bound << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// row[begin, end) still holds kSentinel.
inline ::testing::AssertionResult Untouched(const float* row, int begin, int end) {
  for (int i = begin; i < end; ++i) {
    if (row[i] != kSentinel) return ::testing::AssertionFailure() << "column " << i << " = " << row[i];
  }
  return ::testing::AssertionSuccess();
}

}  // namespace blockserve::cuda::simt_test

#endif  // BLOCKSERVE_KERNELS_CUDA_SIMT_SIMT_TEST_UTIL_H_
