// The CUDA sampler (kernels/cuda/sampling.cu) on the CPU SIMT harness against ref::SampleToken
// (engine/sampler.cc's semantics), and its __host__ __device__ pieces (sampling_math.cuh).
#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/sampling_math.cuh"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

TEST(SamplingMathTest, SortKeyOrdersLikeTheSampler) {
  std::mt19937 rng(1);
  for (int vocab : {1, 2, 7, 33, 1000, 70000}) {
    const int bits = IdBits(vocab);
    std::uniform_int_distribution<int> id(0, vocab - 1);
    std::uniform_int_distribution<int> small(-3, 3);
    std::normal_distribution<float> normal(0.0f, 50.0f);
    for (int i = 0; i < 2000; ++i) {
      // Half the pairs tie on the logit (small integers, +-0).
      const bool tie = i % 2 == 0;
      const float a = tie ? static_cast<float>(small(rng)) : normal(rng);
      const float b = tie ? (i % 4 == 0 ? -a : a) : normal(rng);
      const int ia = id(rng), ib = id(rng);
      const bool sampler_before = a > b || (a == b && ia < ib);
      const uint64_t ka = SortKey(a, ia, vocab, bits), kb = SortKey(b, ib, vocab, bits);
      ASSERT_EQ(ka > kb, sampler_before) << a << " " << ia << " vs " << b << " " << ib;
      ASSERT_EQ(SortKeyId(ka, vocab, bits), ia);
      ASSERT_EQ(SortKeyLogit(ka, bits), a == 0.0f ? 0.0f : a);
    }
  }
  EXPECT_EQ(IdBits(1), 0);
  EXPECT_EQ(IdBits(2), 1);
  EXPECT_EQ(IdBits(1024), 10);
  EXPECT_EQ(IdBits(1025), 11);
  EXPECT_EQ(OrderedBitsToFloat(OrderedFloatBits(-INFINITY)), -INFINITY);
  EXPECT_LT(OrderedFloatBits(-INFINITY), OrderedFloatBits(-3e38f));
}

TEST(SamplingMathTest, TopPCutIsSmallestPrefixReachingP) {
  const double probs[] = {0.4, 0.3, 0.2, 0.1};
  EXPECT_EQ(TopPCut(probs, 4, 0.01f), 1);
  EXPECT_EQ(TopPCut(probs, 4, 0.39f), 1);
  EXPECT_EQ(TopPCut(probs, 4, 0.4f), 2);  // float 0.4 is 0.40000000596: the first 0.4 falls short
  EXPECT_EQ(TopPCut(probs, 4, 0.41f), 2);
  EXPECT_EQ(TopPCut(probs, 4, 0.75f), 3);
  EXPECT_EQ(TopPCut(probs, 4, 0.95f), 4);
  EXPECT_EQ(TopPCut(probs, 4, 1.0f), 4);
  EXPECT_EQ(TopPCut(probs, 1, 0.5f), 1);
  // Brute force on random unnormalized probabilities: the first prefix with mass >= p * total.
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  for (int it = 0; it < 500; ++it) {
    const int n = 1 + it % 40;
    std::vector<double> p(n);
    for (double& v : p) v = unif(rng);
    std::sort(p.rbegin(), p.rend());
    const float top_p = static_cast<float>(unif(rng));
    double total = 0;
    for (double v : p) total += v;
    int want = n;
    for (int k = 1; k <= n; ++k) {
      double mass = 0;
      for (int i = 0; i < k; ++i) mass += p[i];
      if (mass >= top_p * total) {
        want = k;
        break;
      }
    }
    ASSERT_EQ(TopPCut(p.data(), n, top_p), want);
    ASSERT_GE(want, 1);
  }
}

TEST(SamplingMathTest, TopKAndMinPThresholds) {
  EXPECT_TRUE(TopKKeeps(1000, 0));
  EXPECT_TRUE(TopKKeeps(0, 1));
  EXPECT_FALSE(TopKKeeps(1, 1));
  EXPECT_TRUE(TopKKeeps(4, 5));
  EXPECT_FALSE(TopKKeeps(5, 5));
  EXPECT_TRUE(MinPKeeps(0.0, 0.0f));
  EXPECT_TRUE(MinPKeeps(1.0, 1.0f));  // the most likely token always stays
  EXPECT_TRUE(MinPKeeps(0.25, 0.25f));
  EXPECT_FALSE(MinPKeeps(0.2, 0.25f));
}

TEST(SamplingMathTest, PenalizeLogitMatchesTheSamplerRules) {
  EXPECT_EQ(PenalizeLogit(2.0f, true, 0, 2.0f, 0.5f, 0.25f), 1.0f);     // prompt only: repetition
  EXPECT_EQ(PenalizeLogit(-2.0f, true, 0, 2.0f, 0.5f, 0.25f), -4.0f);
  EXPECT_EQ(PenalizeLogit(2.0f, false, 0, 2.0f, 0.5f, 0.25f), 2.0f);    // unseen: untouched
  EXPECT_EQ(PenalizeLogit(2.0f, true, 3, 2.0f, 0.5f, 0.25f), 1.0f - 0.5f - 0.75f);
  EXPECT_EQ(PenalizeLogit(2.0f, true, 2, 1.0f, -0.5f, 0.0f), 2.5f);
}

TEST(SamplingMathTest, SamplingUniformIsDeterministicAndUniform) {
  double sum = 0;
  int low = 0;
  constexpr int kN = 20000;
  for (int i = 0; i < kN; ++i) {
    const double u = SamplingUniform(42, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    ASSERT_EQ(u, SamplingUniform(42, i));
    sum += u;
    low += u < 0.1 ? 1 : 0;
  }
  EXPECT_NEAR(sum / kN, 0.5, 0.01);
  EXPECT_NEAR(low / static_cast<double>(kN), 0.1, 0.01);
  EXPECT_NE(SamplingUniform(1, 0), SamplingUniform(2, 0));
  EXPECT_NE(SamplingUniform(1, 0), SamplingUniform(1, 1));
}

ref::SamplingConfig ToRef(const DeviceSamplingParams& p) {
  ref::SamplingConfig r;
  r.temperature = p.temperature;
  r.top_k = p.top_k;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  r.repetition_penalty = p.repetition_penalty;
  r.presence_penalty = p.presence_penalty;
  r.frequency_penalty = p.frequency_penalty;
  return r;
}

// Random parameters covering each filter alone and together; `ties` draws logits from a few
// values so that the tie order (lower id first) decides.
void RunRandomCases(uint32_t seed, bool ties, int rounds) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const int batch = 3;
  int checked = 0, greedy = 0;
  for (int round = 0; round < rounds; ++round) {
    for (int vocab : {1, 7, 33, 1000, 2000}) {
      std::vector<float> logits(batch * vocab);
      for (float& v : logits) {
        v = ties ? static_cast<float>(std::uniform_int_distribution<int>(-2, 2)(rng)) * 0.5f : normal(rng);
        if (v == 0.0f) v = 0.25f;  // non-zero inputs
      }
      std::vector<int32_t> counts(batch * vocab, 0);
      std::vector<uint8_t> seen(batch * vocab, 0);
      for (int i = 0; i < batch * vocab; ++i) {
        if (unif(rng) < 0.05) counts[i] = 1 + static_cast<int>(unif(rng) * 4);
        if (unif(rng) < 0.05) seen[i] = 1;
      }
      std::vector<DeviceSamplingParams> params(batch);
      std::vector<double> uniforms(batch);
      for (int b = 0; b < batch; ++b) {
        DeviceSamplingParams& p = params[b];
        const int mode = static_cast<int>(unif(rng) * 8);
        p.temperature = mode == 0 ? 0.0f : static_cast<float>(0.3 + 1.5 * unif(rng));
        if (mode == 1 || mode >= 5) p.top_k = 1 + static_cast<int>(unif(rng) * std::min(vocab + 3, 60));
        if (mode == 2 || mode >= 6) p.top_p = static_cast<float>(0.05 + 0.9 * unif(rng));
        if (mode == 3 || mode == 7) p.min_p = static_cast<float>(0.3 * unif(rng));
        if (unif(rng) < 0.7) {
          p.repetition_penalty = static_cast<float>(0.5 + 1.5 * unif(rng));
          p.presence_penalty = static_cast<float>(-1 + 2 * unif(rng));
          p.frequency_penalty = static_cast<float>(-1 + 2 * unif(rng));
        }
        uniforms[b] = SamplingUniform(seed * 1000003u + round, b * 7919u + vocab);
        greedy += p.temperature == 0.0f ? 1 : 0;
      }
      const bool with_counts = round % 3 != 2;
      std::vector<float> work = logits;
      std::vector<int32_t> tokens(batch, -7);  // poison
      ASSERT_EQ(LaunchSample(work.data(), batch, vocab, params.data(), with_counts ? counts.data() : nullptr,
                             round % 2 == 0 ? seen.data() : nullptr, uniforms.data(), tokens.data(), nullptr),
                cudaSuccess);
      for (int b = 0; b < batch; ++b) {
        const std::vector<float> row(logits.begin() + b * vocab, logits.begin() + (b + 1) * vocab);
        const int32_t want = ref::SampleToken(row, ToRef(params[b]), with_counts ? &counts[b * vocab] : nullptr,
                                              round % 2 == 0 ? &seen[b * vocab] : nullptr, uniforms[b]);
        const DeviceSamplingParams& p = params[b];
        ASSERT_EQ(tokens[b], want) << "vocab " << vocab << " round " << round << " b " << b << " T "
                                   << p.temperature << " k " << p.top_k << " p " << p.top_p << " min_p "
                                   << p.min_p << " rep " << p.repetition_penalty << " u " << uniforms[b];
        ++checked;
      }
    }
  }
  EXPECT_GT(greedy, 0);
  EXPECT_EQ(checked, rounds * 5 * batch);
}

TEST(CudaSimtSamplingTest, MatchesReferenceOnRandomCases) { RunRandomCases(7, /*ties=*/false, 6); }

TEST(CudaSimtSamplingTest, MatchesReferenceWithTiedLogits) { RunRandomCases(8, /*ties=*/true, 3); }

TEST(CudaSimtSamplingTest, ExtremeUniformsPickFirstAndLastKeptTokens) {
  const int vocab = 37;
  std::vector<float> logits(vocab);
  for (int t = 0; t < vocab; ++t) logits[t] = 0.1f * static_cast<float>((t * 13) % vocab) - 1.0f;
  DeviceSamplingParams p;
  p.top_k = 5;
  for (double u : {0.0, 0.999999999999}) {
    std::vector<float> work = logits;
    int32_t token = -7;
    ASSERT_EQ(LaunchSample(work.data(), 1, vocab, &p, nullptr, nullptr, &u, &token, nullptr), cudaSuccess);
    EXPECT_EQ(token, ref::SampleToken(logits, ToRef(p), nullptr, nullptr, u)) << u;
  }
}

TEST(CudaSimtSamplingTest, GreedyTakesFirstMaximumAndWritesProcessedLogits) {
  std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f};
  std::vector<int32_t> counts = {0, 1, 0, 0, 0};
  DeviceSamplingParams p;
  p.temperature = 0.0f;
  p.presence_penalty = 0.5f;
  double u = 0.5;
  int32_t token = -7;
  ASSERT_EQ(LaunchSample(logits.data(), 1, 5, &p, counts.data(), nullptr, &u, &token, nullptr), cudaSuccess);
  EXPECT_EQ(token, 3);  // token 1 is penalized to 2.5; 3 and 4 tie, the first wins
  EXPECT_EQ(logits[1], 2.5f);
  p.temperature = 2.0f;
  logits = {1.0f, 3.0f};
  ASSERT_EQ(LaunchSample(logits.data(), 1, 2, &p, nullptr, nullptr, &u, &token, nullptr), cudaSuccess);
  EXPECT_EQ(logits[0], 0.5f);
  EXPECT_EQ(logits[1], 1.5f);
}

TEST(CudaSimtSamplingTest, RejectsBadArguments) {
  float logit = 1.0f;
  DeviceSamplingParams p;
  double u = 0.5;
  int32_t token = -7;
  EXPECT_EQ(LaunchSample(&logit, 0, 1, &p, nullptr, nullptr, &u, &token, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchSample(&logit, 1, 0, &p, nullptr, nullptr, &u, &token, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchSample(&logit, 1, 1, &p, nullptr, nullptr, nullptr, &token, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(token, -7);
}

}  // namespace
}  // namespace blockserve::cuda
