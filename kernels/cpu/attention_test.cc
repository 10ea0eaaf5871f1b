// BRT attention on every SIMD target against the double-precision reference (ring wrap, key steps,
// bias, learned scale, the -1000 floor) and bit-identity across query ranges and m.
#include "kernels/cpu/attention.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/simd_targets.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cpu {
namespace {

// Random inputs for one attention call, with padded strides; out rows padded with a sentinel.
struct Problem {
  Problem(std::mt19937& rng, size_t m, size_t num_heads, size_t head_dim, size_t num_keys,
          size_t kv_rows, size_t first_key, size_t key_step, bool with_bias) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> scale_dist(0.5f, 3.0f);
    const size_t width = num_heads * head_dim;
    q.resize(m * (width + 3));
    k.resize(kv_rows * (width + 1));
    v.resize(kv_rows * (width + 1));
    // q ~ N(0, 1/head_dim) so q.k ~ N(0, 1) and logits stay in the range of the model's normalized
    // heads (|logit| up to ~20); with |logit| ~ 100 fp32 rounding of the logit alone is ~1e-5.
    const float q_std = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (float& x : q) x = q_std * normal(rng);
    for (float& x : k) x = normal(rng);
    for (float& x : v) x = normal(rng);
    if (with_bias) {
      bias.resize(num_heads * num_keys);
      for (float& x : bias) x = normal(rng);
    }
    scale.resize(num_heads);
    for (float& x : scale) x = scale_dist(rng);
    out.assign(m * (width + 2), kSentinel);
    args.q = q.data();
    args.q_stride = width + 3;
    args.k = k.data();
    args.v = v.data();
    args.kv_stride = width + 1;
    args.kv_rows = kv_rows;
    args.m = m;
    args.num_heads = num_heads;
    args.head_dim = head_dim;
    args.num_keys = num_keys;
    args.first_key = first_key;
    args.key_step = key_step;
    args.bias = with_bias ? bias.data() : nullptr;
    args.scale = scale.data();
    args.out = out.data();
    args.out_stride = width + 2;
  }

  // The reference output (same layout as out, sentinel padding).
  std::vector<float> Want() const {
    std::vector<float> want(out.size(), kSentinel);
    AttentionArgs a = args;
    a.out = want.data();
    ref::Attention(a);
    return want;
  }

  static constexpr float kSentinel = -12345.0f;
  std::vector<float> q, k, v, bias, scale, out;
  AttentionArgs args;
};

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::fabs(want[i]))) << what << " index " << i;
  }
}

TEST(AttentionTest, MatchesReferenceOnEveryTarget) {
  std::mt19937 rng(31);
  const std::vector<SimdTarget> targets = UsableSimdTargets();
  ASSERT_FALSE(targets.empty());
  for (const SimdTarget& target : targets) {
    ForceSimdTargetForTest(target.bits);
    for (size_t head_dim : {1, 7, 16, 64}) {
      for (size_t num_heads : {1, 2, 3, 4}) {
        for (size_t num_keys : {1, 2, 5, 8, 17, 33, 64, 70}) {
          for (size_t key_step : {0, 1}) {
            for (bool with_bias : {false, true}) {
              const size_t m = 3;
              const size_t kv_rows = num_keys + 4;
              const size_t first_key = kv_rows - 2;  // wraps around the ring
              Problem p(rng, m, num_heads, head_dim, num_keys, kv_rows, first_key, key_step,
                        with_bias);
              Attention(p.args);
              ExpectClose(
                  p.out, p.Want(),
                  target.name + " head_dim=" + std::to_string(head_dim) +
                      " heads=" + std::to_string(num_heads) + " keys=" + std::to_string(num_keys) +
                      " step=" + std::to_string(key_step) + " bias=" + std::to_string(with_bias));
            }
          }
        }
      }
    }
  }
  ForceSimdTargetForTest(0);
}

TEST(AttentionTest, LogitsFarBelowTheFloorGiveZeroOutput) {
  std::mt19937 rng(32);
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t num_keys : {1, 9, 70}) {
      Problem p(rng, 2, 2, 16, num_keys, num_keys, 0, 0, true);
      // Head 0: logits = (q.k - 1000) * 3 < -2000; head 1 stays normal.
      for (size_t j = 0; j < num_keys; ++j) p.bias[j] = -1000.0f;
      p.scale[0] = 3.0f;
      Attention(p.args);
      const std::vector<float> want = p.Want();
      for (size_t i = 0; i < 2; ++i) {
        for (size_t d = 0; d < 16; ++d) {
          EXPECT_EQ(want[i * p.args.out_stride + d], 0.0f);
          EXPECT_NEAR(p.out[i * p.args.out_stride + d], 0.0f, 1e-30f) << target.name;
        }
      }
      ExpectClose(p.out, want, target.name + " floor");
    }
  }
  ForceSimdTargetForTest(0);
}

TEST(AttentionTest, QueryResultDoesNotDependOnRangeOrM) {
  std::mt19937 rng(33);
  for (const SimdTarget& target : UsableSimdTargets()) {
    ForceSimdTargetForTest(target.bits);
    for (size_t head_dim : {7, 64}) {
      const size_t m = 9, num_heads = 3, num_keys = 37;
      Problem p(rng, m, num_heads, head_dim, num_keys, 50, 45, 1, true);
      Attention(p.args);
      const std::vector<float> full = p.out;
      // One query at a time through the range.
      std::vector<float> ranged(full.size(), Problem::kSentinel);
      AttentionArgs a = p.args;
      a.out = ranged.data();
      for (size_t i = 0; i < m; ++i) Attention(a, i, i + 1);
      // Uneven ranges, the last past m.
      std::vector<float> split(full.size(), Problem::kSentinel);
      a.out = split.data();
      Attention(a, 0, 2);
      Attention(a, 2, 7);
      Attention(a, 7);
      // m = i + 1 computes the same query i.
      std::vector<float> shorter(full.size(), Problem::kSentinel);
      a.out = shorter.data();
      for (size_t i = 0; i < m; ++i) {
        a.m = i + 1;
        Attention(a, i);
      }
      for (size_t k = 0; k < full.size(); ++k) {
        EXPECT_EQ(ranged[k], full[k]) << target.name << " k=" << k;
        EXPECT_EQ(split[k], full[k]) << target.name << " k=" << k;
        EXPECT_EQ(shorter[k], full[k]) << target.name << " k=" << k;
      }
    }
  }
  ForceSimdTargetForTest(0);
}

TEST(AttentionTest, EmptyRangeWritesNothing) {
  std::mt19937 rng(34);
  Problem p(rng, 2, 1, 8, 4, 4, 0, 1, false);
  Attention(p.args, 2, 5);
  Attention(p.args, 1, 1);
  EXPECT_EQ(p.out, std::vector<float>(p.out.size(), Problem::kSentinel));
}

}  // namespace
}  // namespace blockserve::cpu
