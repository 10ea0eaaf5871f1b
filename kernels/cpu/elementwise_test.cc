// Elementwise ops (head norm, activations, gates, gathers, dot, axpy and their row-batched forms)
// on every SIMD target against the reference.
#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "base/tensor.h"
#include "gtest/gtest.h"
#include "kernels/cpu/simd_targets.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cpu {
namespace {

// Lengths around every vector width (1, 4, 8, 16 lanes) and their tails.
const size_t kLengths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100};

std::vector<float> Normal(std::mt19937& rng, size_t n, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void ExpectRelClose(const std::vector<float>& got, const std::vector<float>& want, float rel,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + 1e-30f) << what << " index " << i;
  }
}

class ElementwiseTest : public ::testing::Test {
 protected:
  void TearDown() override { ForceSimdTargetForTest(0); }
  std::mt19937 rng_{41};
};

TEST_F(ElementwiseTest, NormalizeHeads) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t head_dim : {1, 7, 16, 64, 129}) {
      for (size_t num_heads : {1, 3}) {
        const size_t rows = 3, stride = num_heads * head_dim + 2;
        std::vector<float> x = Normal(rng_, rows * stride), want = x;
        NormalizeHeads(x.data(), rows, stride, num_heads, head_dim);
        ref::NormalizeHeads(want.data(), rows, stride, num_heads, head_dim);
        ExpectRelClose(x, want, 1e-6f, target.name + " head_dim=" + std::to_string(head_dim));
      }
    }
    // A zero head stays zero (the 1e-6 keeps it finite).
    std::vector<float> zero(8, 0.0f);
    NormalizeHeads(zero.data(), 1, 8, 2, 4);
    EXPECT_EQ(zero, std::vector<float>(8, 0.0f)) << target.name;
  }
}

TEST_F(ElementwiseTest, ReluAddScaleAreExact) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t n : kLengths) {
      std::vector<float> x = Normal(rng_, n), want = x;
      Relu(x.data(), n);
      ref::Relu(want.data(), n);
      EXPECT_EQ(x, want) << target.name << " relu n=" << n;

      const std::vector<float> addend = Normal(rng_, n);
      std::vector<float> y = Normal(rng_, n), ywant = y;
      AddInPlace(y.data(), addend.data(), n);
      ref::AddInPlace(ywant.data(), addend.data(), n);
      EXPECT_EQ(y, ywant) << target.name << " add n=" << n;

      std::vector<float> s = Normal(rng_, n), swant = s;
      Scale(s.data(), n, -0.37f);
      ref::Scale(swant.data(), n, -0.37f);
      EXPECT_EQ(s, swant) << target.name << " scale n=" << n;
    }
  }
}

TEST_F(ElementwiseTest, Tanh) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t n : kLengths) {
      std::vector<float> x = Normal(rng_, n, 2.0f), want = x;
      Tanh(x.data(), n);
      ref::Tanh(want.data(), n);
      ExpectRelClose(x, want, 1e-6f, target.name + " n=" + std::to_string(n));
    }
    std::vector<float> edges = {0.0f, 1e-7f, -1e-4f, 0.5f, -3.0f, 9.0f, -20.0f, 100.0f, -1e30f},
                       want = edges;
    Tanh(edges.data(), edges.size());
    ref::Tanh(want.data(), want.size());
    ExpectRelClose(edges, want, 1e-6f, target.name + " edges");
  }
}

TEST_F(ElementwiseTest, GateFixedAlsoInPlace) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t d : kLengths) {
      const size_t rows = 3;
      const std::vector<float> state = Normal(rng_, rows * d), y = Normal(rng_, rows * d);
      std::vector<float> bias = Normal(rng_, d, 3.0f);
      bias[0] = d > 1 ? 40.0f : bias[0];  // g saturates; 1 - g must stay accurate
      std::vector<float> out(rows * d), want(rows * d);
      GateFixed(state.data(), y.data(), bias.data(), rows, d, out.data());
      ref::GateFixed(state.data(), y.data(), bias.data(), rows, d, want.data());
      for (size_t k = 0; k < want.size(); ++k) {
        // 1e-6 of the two terms' magnitudes (the sum may cancel).
        ASSERT_NEAR(out[k], want[k], 1e-6f * (std::fabs(state[k]) + std::fabs(y[k])) + 1e-30f)
            << target.name << " d=" << d << " k=" << k;
      }
      std::vector<float> aliased = state;
      GateFixed(aliased.data(), y.data(), bias.data(), rows, d, aliased.data());
      EXPECT_EQ(aliased, out) << target.name << " d=" << d;
    }
  }
}

TEST_F(ElementwiseTest, GateLstmAlsoInPlace) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t n : kLengths) {
      const std::vector<float> state = Normal(rng_, n), y = Normal(rng_, n);
      const std::vector<float> forget_pre = Normal(rng_, n, 4.0f),
                               input_pre = Normal(rng_, n, 4.0f);
      std::vector<float> out(n), want(n);
      GateLstm(state.data(), y.data(), forget_pre.data(), input_pre.data(), n, out.data());
      ref::GateLstm(state.data(), y.data(), forget_pre.data(), input_pre.data(), n, want.data());
      for (size_t k = 0; k < n; ++k) {
        ASSERT_NEAR(out[k], want[k], 1e-6f * (std::fabs(state[k]) + std::fabs(y[k])) + 1e-30f)
            << target.name << " n=" << n << " k=" << k;
      }
      std::vector<float> aliased = state;
      GateLstm(aliased.data(), y.data(), forget_pre.data(), input_pre.data(), n, aliased.data());
      EXPECT_EQ(aliased, out) << target.name << " n=" << n;
    }
  }
}

TEST_F(ElementwiseTest, DotAndAxpy) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t n : {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129}) {
      const std::vector<float> a = Normal(rng_, n + 1), b = Normal(rng_, n + 1, 3.0f);
      double magnitude = 0.0;  // sum |a_i b_i|: the rounding error's scale
      for (size_t i = 0; i < n; ++i) magnitude += std::fabs(static_cast<double>(a[i]) * b[i]);
      const float got = Dot(a.data(), b.data(), n);
      EXPECT_NEAR(got, ref::Dot(a.data(), b.data(), n), 1e-6 * magnitude + 1e-30)
          << target.name << " dot n=" << n;
      // The same values at another alignment: bit-identical.
      const std::vector<float> a1(a.begin(), a.begin() + n), b1(b.begin(), b.begin() + n);
      std::vector<float> shifted(n + 1);
      std::copy(a1.begin(), a1.end(), shifted.begin() + 1);
      EXPECT_EQ(Dot(shifted.data() + 1, b1.data(), n), got) << target.name << " dot n=" << n;

      const float alpha = -0.73f;
      const std::vector<float> x = Normal(rng_, n);
      std::vector<float> y = Normal(rng_, n), want = y;
      const std::vector<float> y0 = y;
      Axpy(alpha, x.data(), y.data(), n);
      ref::Axpy(alpha, x.data(), want.data(), n);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_NEAR(y[i], want[i], 1e-6f * (std::fabs(y0[i]) + std::fabs(alpha * x[i])) + 1e-30f)
            << target.name << " axpy n=" << n << " i=" << i;
      }
    }
  }
}

TEST_F(ElementwiseTest, DotRowsAndWeightedSumRowsEqualDotAndAxpy) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t n : {1, 3, 8, 15, 16, 17, 33, 64, 65, 100}) {
      for (size_t count : {0, 1, 5, 19}) {
        const std::vector<float> table = Normal(rng_, 23 * n + 1), q = Normal(rng_, n),
                                 weights = Normal(rng_, count);
        std::vector<const float*> rows(count);
        for (size_t j = 0; j < count; ++j) rows[j] = &table[((j * 7) % 23) * n + (j % 2)];  // repeats, unaligned
        std::vector<float> dots(count, -1.0f);
        DotRows(q.data(), rows.data(), count, n, dots.data());
        std::vector<float> sum(n, -1.0f), want(n, 0.0f);
        WeightedSumRows(weights.data(), rows.data(), count, n, sum.data());
        std::vector<double> ref_sum(n, 0.0), magnitude(n, 0.0);
        for (size_t j = 0; j < count; ++j) {
          EXPECT_EQ(dots[j], Dot(q.data(), rows[j], n)) << target.name << " n=" << n << " j=" << j;
          Axpy(weights[j], rows[j], want.data(), n);
          for (size_t i = 0; i < n; ++i) {
            ref_sum[i] += static_cast<double>(weights[j]) * rows[j][i];
            magnitude[i] += std::fabs(static_cast<double>(weights[j]) * rows[j][i]);
          }
        }
        EXPECT_EQ(sum, want) << target.name << " n=" << n << " count=" << count;
        for (size_t i = 0; i < n; ++i) {
          ASSERT_NEAR(sum[i], ref_sum[i], 4e-6 * magnitude[i] + 1e-30) << target.name << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

TEST_F(ElementwiseTest, GatherRowsF32AndBF16AreExact) {
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t d : kLengths) {
      const size_t vocab = 11;
      const std::vector<float> table = Normal(rng_, vocab * d);
      std::vector<uint16_t> table_bf(table.size());
      std::vector<float> table_bf_as_f32(table.size());
      for (size_t i = 0; i < table.size(); ++i) {
        table_bf[i] = FloatToBF16(table[i]);
        table_bf_as_f32[i] = BF16ToFloat(table_bf[i]);
      }
      const std::vector<int32_t> ids = {3, 0, 10, 3, 7};
      std::vector<float> out(ids.size() * d, -1.0f), want(ids.size() * d);
      GatherRowsF32(table.data(), d, ids.data(), ids.size(), out.data());
      ref::GatherRows(table.data(), d, ids.data(), ids.size(), want.data());
      EXPECT_EQ(out, want) << target.name << " f32 d=" << d;
      GatherRowsBF16(table_bf.data(), d, ids.data(), ids.size(), out.data());
      ref::GatherRows(table_bf_as_f32.data(), d, ids.data(), ids.size(), want.data());
      EXPECT_EQ(out, want) << target.name << " bf16 d=" << d;
    }
  }
}

}  // namespace
}  // namespace blockserve::cpu
