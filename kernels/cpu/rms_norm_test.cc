// RMSNorm on every SIMD target of this machine against the scalar reference.
#include "kernels/cpu/rms_norm.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/simd_targets.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cpu {
namespace {

TEST(RmsNormTest, MatchesReferenceOnEveryTargetAndSize) {
  const std::vector<SimdTarget> targets = UsableSimdTargets();
  ASSERT_FALSE(targets.empty());
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.5f, 2.0f);
  for (const SimdTarget& target : targets) {
    ForceSimdTargetForTest(target.bits);
    for (size_t n : {1, 3, 7, 8, 15, 16, 17, 31, 64, 100, 257, 1024}) {
      const size_t rows = 3;
      std::vector<float> x(rows * n), scale(n), out(rows * n, -123.0f), want(n);
      for (float& v : x) v = dist(rng);
      for (float& v : scale) v = dist(rng);
      RmsNorm(x.data(), scale.data(), rows, n, 1e-6f, out.data());
      for (size_t r = 0; r < rows; ++r) {
        ref::RmsNorm(x.data() + r * n, scale.data(), n, 1e-6f, want.data());
        for (size_t i = 0; i < n; ++i) {
          ASSERT_NEAR(out[r * n + i], want[i], 1e-5f * (1.0f + std::fabs(want[i])))
              << target.name << " n=" << n << " row=" << r << " i=" << i;
        }
      }
    }
  }
  ForceSimdTargetForTest(0);
  SUCCEED() << "targets tested: " << targets.size();
}

TEST(RmsNormTest, InPlaceEqualsOutOfPlace) {
  std::vector<float> x = {1, -2, 3, -4, 5, -6, 7, -8, 9}, scale(9, 0.5f), out(9);
  RmsNorm(x.data(), scale.data(), 1, 9, 1e-6f, out.data());
  RmsNorm(x.data(), scale.data(), 1, 9, 1e-6f, x.data());
  EXPECT_EQ(x, out);
}

}  // namespace
}  // namespace blockserve::cpu
