// Prefill GEMM (f32 and bf16 weights through OpenBLAS) against the scalar reference.
#include "kernels/cpu/gemm.h"

#include <cmath>
#include <random>
#include <vector>

#include "base/tensor.h"
#include "gtest/gtest.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cpu {
namespace {

TEST(GemmTest, MatchesReferenceForEveryShape) {
  std::mt19937 rng(21);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  // out=130 spans three 64-row bf16 blocks (the last partial).
  for (size_t m : {1, 2, 5, 37}) {
    for (size_t in : {1, 3, 64, 129}) {
      for (size_t out : {1, 7, 65, 130}) {
        std::vector<float> x(m * in), w(out * in), wbf_as_f32(out * in), want(m * out);
        std::vector<uint16_t> wbf(out * in);
        for (float& v : x) v = dist(rng);
        for (size_t i = 0; i < w.size(); ++i) {
          w[i] = dist(rng);
          wbf[i] = FloatToBF16(w[i]);
          wbf_as_f32[i] = BF16ToFloat(wbf[i]);
        }
        std::vector<float> y(m * out, -99.0f), ybf(m * out, -99.0f);
        GemmF32(x.data(), m, in, w.data(), out, y.data());
        GemmBF16(x.data(), m, in, wbf.data(), out, ybf.data());
        const float tol = 1e-4f * (1 + std::sqrt(float(in)));
        ref::Gemm(x.data(), m, in, w.data(), out, want.data());
        for (size_t k = 0; k < want.size(); ++k) {
          ASSERT_NEAR(y[k], want[k], tol)
              << "m=" << m << " in=" << in << " out=" << out << " k=" << k;
        }
        ref::Gemm(x.data(), m, in, wbf_as_f32.data(), out, want.data());
        for (size_t k = 0; k < want.size(); ++k) {
          ASSERT_NEAR(ybf[k], want[k], tol)
              << "bf16 m=" << m << " in=" << in << " out=" << out << " k=" << k;
        }
      }
    }
  }
}

TEST(GemmTest, AgreesWithMatVecReferenceAtM1AndZeroInnerDimension) {
  std::vector<float> x = {0.5f, -1.25f, 2.0f}, w = {1, 2, 3, -4, 5, -6}, y(2, -1.0f), want(2);
  GemmF32(x.data(), 1, 3, w.data(), 2, y.data());
  ref::MatVec(w.data(), x.data(), 1, 2, 3, want.data());
  EXPECT_EQ(y, want);  // small integers times dyadic fractions: exact in fp32
  std::vector<float> z(6, -1.0f);
  GemmF32(x.data(), 2, 0, w.data(), 3, z.data());
  EXPECT_EQ(z, std::vector<float>(6, 0.0f));
  GemmBF16(x.data(), 2, 0, nullptr, 3, z.data());
  EXPECT_EQ(z, std::vector<float>(6, 0.0f));
}

}  // namespace
}  // namespace blockserve::cpu
