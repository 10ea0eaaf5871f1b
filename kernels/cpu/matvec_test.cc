// Batched GEMV (f32 and bf16 weights) on every SIMD target against the scalar reference.
#include "kernels/cpu/matvec.h"

#include <random>
#include <vector>

#include "base/tensor.h"
#include "gtest/gtest.h"
#include "kernels/cpu/simd_targets.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cpu {
namespace {

TEST(MatVecTest, MatchesReferenceOnEveryTargetShapeAndBatch) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const std::vector<SimdTarget> targets = UsableSimdTargets();
  ASSERT_FALSE(targets.empty());
  for (const SimdTarget& target : targets) {
    ForceSimdTargetForTest(target.bits);
    for (size_t in : {1, 3, 8, 17, 64, 129}) {
      for (size_t out : {1, 5, 33}) {
        for (size_t batch : {1, 2, 3, 4, 5, 9}) {
          std::vector<float> w(out * in), x(batch * in), want(batch * out);
          std::vector<uint16_t> wbf(out * in);
          std::vector<float> wbf_as_f32(out * in);
          for (size_t i = 0; i < w.size(); ++i) {
            w[i] = dist(rng);
            wbf[i] = FloatToBF16(w[i]);
            wbf_as_f32[i] = BF16ToFloat(wbf[i]);
          }
          for (float& v : x) v = dist(rng);
          std::vector<float> y(batch * out, -99.0f), ybf(batch * out, -99.0f);
          MatVecF32(w.data(), x.data(), batch, out, in, y.data());
          MatVecBF16(wbf.data(), x.data(), batch, out, in, ybf.data());
          ref::MatVec(w.data(), x.data(), batch, out, in, want.data());
          for (size_t k = 0; k < want.size(); ++k) {
            ASSERT_NEAR(y[k], want[k], 1e-4f * (1 + std::sqrt(float(in))))
                << target.name << " in=" << in << " out=" << out << " batch=" << batch;
          }
          ref::MatVec(wbf_as_f32.data(), x.data(), batch, out, in, want.data());
          for (size_t k = 0; k < want.size(); ++k) {
            ASSERT_NEAR(ybf[k], want[k], 1e-4f * (1 + std::sqrt(float(in))))
                << "bf16 " << target.name;
          }
        }
      }
    }
  }
  ForceSimdTargetForTest(0);
}

TEST(MatVecTest, BatchRowIsBitIdenticalToBatchOfOneAtEveryPosition) {
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  constexpr size_t kBatch = 9;
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    // in=4099: a row is over 16 KiB, so the f32 blocks hold 3 rows and the bf16 blocks 7.
    for (size_t in : {1, 7, 64, 129, 4099}) {
      for (size_t out : {1, 5, 33}) {
        std::vector<float> w(out * in), x(kBatch * in);
        std::vector<uint16_t> wbf(out * in);
        for (size_t i = 0; i < w.size(); ++i) {
          w[i] = dist(rng);
          wbf[i] = FloatToBF16(w[i]);
        }
        for (float& v : x) v = dist(rng);
        std::vector<float> y(kBatch * out), ybf(kBatch * out);
        MatVecF32(w.data(), x.data(), kBatch, out, in, y.data());
        MatVecBF16(wbf.data(), x.data(), kBatch, out, in, ybf.data());
        for (size_t b = 0; b < kBatch; ++b) {
          std::vector<float> one(out), onebf(out);
          MatVecF32(w.data(), x.data() + b * in, 1, out, in, one.data());
          MatVecBF16(wbf.data(), x.data() + b * in, 1, out, in, onebf.data());
          for (size_t o = 0; o < out; ++o) {
            EXPECT_EQ(y[b * out + o], one[o])
                << target.name << " in=" << in << " out=" << out << " b=" << b;
            EXPECT_EQ(ybf[b * out + o], onebf[o])
                << "bf16 " << target.name << " in=" << in << " b=" << b;
          }
        }
      }
    }
  }
  ForceSimdTargetForTest(0);
}

TEST(MatVecTest, RowRangesComposeTheFullProduct) {
  std::vector<float> w(7 * 10), x(2 * 10), full(2 * 7), parts(2 * 7, -1.0f);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(i % 13) - 0.05f;
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i) - 0.7f;
  MatVecF32(w.data(), x.data(), 2, 7, 10, full.data());
  MatVecF32(w.data(), x.data(), 2, 7, 10, parts.data(), 0, 3);
  MatVecF32(w.data(), x.data(), 2, 7, 10, parts.data(), 3, 7);
  EXPECT_EQ(full, parts);
}

}  // namespace
}  // namespace blockserve::cpu
