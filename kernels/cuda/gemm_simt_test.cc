// The GemmHandle API (kernels/cuda/gemm.h) in the SIMT build, where gemm_simt.cc serves it with the
// CPU GEMM on host pointers, against the scalar reference ref::Gemm (double accumulation). Checks
// the layout contract (W row-major (n, k), y = x @ W^T) that the cuBLAS build shares.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "base/tensor.h"  // FloatToBF16 / BF16ToFloat
#include "gtest/gtest.h"
#include "kernels/cuda/gemm.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Problem {
  std::vector<float> x, w, w_widened, abs_sum;  // abs_sum[r * n + o] = sum_i |x[r][i] * w[o][i]|
  std::vector<uint16_t> w_bf16;
};

Problem MakeProblem(int m, int k, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Problem p;
  p.x.resize(static_cast<size_t>(m) * k);
  p.w.resize(static_cast<size_t>(n) * k);
  for (float& v : p.x) v = dist(rng);
  for (float& v : p.w) v = dist(rng);
  p.w_bf16.resize(p.w.size());
  p.w_widened.resize(p.w.size());
  for (size_t i = 0; i < p.w.size(); ++i) {
    p.w_bf16[i] = FloatToBF16(p.w[i]);
    p.w_widened[i] = BF16ToFloat(p.w_bf16[i]);
  }
  p.abs_sum.assign(static_cast<size_t>(m) * n, 0.0f);
  for (int r = 0; r < m; ++r) {
    for (int o = 0; o < n; ++o) {
      double s = 0.0;
      for (int i = 0; i < k; ++i) s += std::fabs(static_cast<double>(p.x[r * k + i]) * p.w[o * k + i]);
      p.abs_sum[static_cast<size_t>(r) * n + o] = static_cast<float>(s);
    }
  }
  return p;
}

TEST(CudaSimtGemmTest, F32AndBf16MatchReference) {
  auto handle = GemmHandle::Create(nullptr);
  ASSERT_TRUE(handle.ok()) << handle.status();
  GemmHandle& g = **handle;
  for (int m : {1, 3, 17}) {
    for (int k : {1, 64, 129}) {
      for (int n : {1, 33, 300}) {
        SCOPED_TRACE(testing::Message() << "m " << m << " k " << k << " n " << n);
        const Problem p = MakeProblem(m, k, n, static_cast<uint32_t>(m * 1000 + k * 10 + n));
        const size_t outs = static_cast<size_t>(m) * n;
        std::vector<float> want(outs), want_bf16(outs);
        ref::Gemm(p.x.data(), m, k, p.w.data(), n, want.data());
        ref::Gemm(p.x.data(), m, k, p.w_widened.data(), n, want_bf16.data());

        std::vector<float> y(outs, kNaN);
        ASSERT_TRUE(g.GemmF32(p.x.data(), m, k, p.w.data(), n, y.data()).ok());
        for (size_t i = 0; i < outs; ++i) ASSERT_NEAR(y[i], want[i], 1e-6f * p.abs_sum[i] + 1e-30f) << "f32 " << i;

        std::fill(y.begin(), y.end(), kNaN);
        ASSERT_TRUE(g.GemmBF16(p.x.data(), m, k, p.w_bf16.data(), n, y.data()).ok());
        for (size_t i = 0; i < outs; ++i) {
          // Against the widened bf16 weights: fp32 accumulation only.
          ASSERT_NEAR(y[i], want_bf16[i], 1e-6f * p.abs_sum[i] + 1e-30f) << "bf16 " << i;
          // Against the fp32 weights: within bf16 weight rounding (2^-9 relative per product).
          ASSERT_NEAR(y[i], want[i], 0x1p-8f * p.abs_sum[i] + 1e-30f) << "bf16 vs f32 " << i;
        }
      }
    }
  }
}

TEST(CudaSimtGemmTest, RejectsBadShapesWithoutWriting) {
  auto handle = GemmHandle::Create(nullptr);
  ASSERT_TRUE(handle.ok());
  float x = 1.0f, w = 2.0f, y = 7.0f;
  const uint16_t wb = 0x3f80;
  EXPECT_EQ((*handle)->GemmF32(&x, 0, 1, &w, 1, &y).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*handle)->GemmF32(&x, 1, 0, &w, 1, &y).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*handle)->GemmBF16(&x, 1, 1, &wb, -1, &y).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*handle)->GemmBF16(&x, 1, 1, nullptr, 1, &y).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*handle)->ReserveBf16(0, 1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(y, 7.0f);
  ASSERT_TRUE((*handle)->GemmBF16(&x, 1, 1, &wb, 1, &y).ok());
  EXPECT_EQ(y, 1.0f);
}

}  // namespace
}  // namespace blockserve::cuda
