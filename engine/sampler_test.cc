// Sampler tests: greedy, seeded determinism, distributions under top-k/top-p/min-p, penalties,
// logprobs, validation.
#include "engine/sampler.h"

#include <cmath>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockserve::engine {
namespace {

using ::testing::HasSubstr;

std::vector<float> LogProbs(std::vector<double> p) {
  std::vector<float> out;
  for (double v : p) out.push_back(static_cast<float>(std::log(v)));
  return out;
}

// Frequencies of each token over `n` draws with fresh logits each time.
std::map<int32_t, double> Frequencies(const SamplingParams& params, const std::vector<float>& logits, int n) {
  Sampler sampler(params, 123);
  std::map<int32_t, double> freq;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = logits;
    freq[sampler.Sample(absl::MakeSpan(l)).token] += 1.0 / n;
  }
  return freq;
}

TEST(SamplerTest, GreedyPicksTheArgmax) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, 1);
  std::vector<float> l = {0.1f, 3.0f, 2.9f, -1.0f};
  EXPECT_EQ(s.Sample(absl::MakeSpan(l)).token, 1);
}

TEST(SamplerTest, SameSeedSameTokensOtherSeedOtherTokens) {
  SamplingParams p;
  p.has_seed = true;
  p.seed = 42;
  const std::vector<float> logits(50, 0.0f);
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p, 999);
    std::vector<int32_t> out;
    for (int i = 0; i < 30; ++i) {
      std::vector<float> l = logits;
      out.push_back(s.Sample(absl::MakeSpan(l)).token);
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(SamplerTest, DistributionsFollowTemperatureTopKTopPAndMinP) {
  const std::vector<float> logits = LogProbs({0.5, 0.3, 0.2});
  const int n = 40000;
  SamplingParams p;
  auto f = Frequencies(p, logits, n);
  EXPECT_NEAR(f[0], 0.5, 0.015);
  EXPECT_NEAR(f[1], 0.3, 0.015);
  EXPECT_NEAR(f[2], 0.2, 0.015);

  p.top_k = 2;
  f = Frequencies(p, logits, n);
  EXPECT_NEAR(f[0], 0.625, 0.015);
  EXPECT_EQ(f.count(2), 0u);

  p = SamplingParams();
  p.top_p = 0.7f;  // 0.5 < 0.7 <= 0.8: keeps tokens 0 and 1
  f = Frequencies(p, logits, n);
  EXPECT_NEAR(f[0], 0.625, 0.015);
  EXPECT_EQ(f.count(2), 0u);
  p.top_p = 0.5f;  // the first token alone reaches 0.5
  f = Frequencies(p, logits, 2000);
  EXPECT_NEAR(f[0], 1.0, 1e-12);

  p = SamplingParams();
  p.min_p = 0.5f;  // keep p >= 0.25
  f = Frequencies(p, logits, n);
  EXPECT_NEAR(f[0], 0.625, 0.015);
  EXPECT_EQ(f.count(2), 0u);

  p = SamplingParams();
  p.temperature = 0.5f;  // p^2 renormalized: 0.25, 0.09, 0.04 -> 0.658, 0.237, 0.105
  f = Frequencies(p, logits, n);
  EXPECT_NEAR(f[0], 0.25 / 0.38, 0.015);
  EXPECT_NEAR(f[2], 0.04 / 0.38, 0.015);
}

TEST(SamplerTest, RepetitionPresenceAndFrequencyPenalties) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  {
    Sampler s(p, 1);
    s.ObservePrompt(std::vector<int32_t>{0, 2});
    std::vector<float> l = {2.0f, 1.9f, -1.0f, -1.5f};  // 0 -> 1.0, 2 -> -2.0
    EXPECT_EQ(s.Sample(absl::MakeSpan(l)).token, 1);
    EXPECT_FLOAT_EQ(l[0], 1.0f);
    EXPECT_FLOAT_EQ(l[2], -2.0f);
  }
  p = SamplingParams();
  p.temperature = 0;
  p.frequency_penalty = 0.3f;
  p.presence_penalty = 0.05f;
  Sampler s(p, 1);
  std::vector<int32_t> picked;
  for (int i = 0; i < 3; ++i) {
    std::vector<float> l = {1.0f, 0.8f, 0.0f};
    picked.push_back(s.Sample(absl::MakeSpan(l)).token);
  }
  // 0 first; then 0 is at 1 - 0.35 = 0.65 < 0.8: 1; then 0 at 0.65 vs 1 at 0.45: 0.
  EXPECT_EQ(picked, (std::vector<int32_t>{0, 1, 0}));
}

TEST(SamplerTest, LogprobsAreUnderTheModelsDistribution) {
  SamplingParams p;
  p.temperature = 0;
  p.top_logprobs = 2;
  p.repetition_penalty = 3.0f;  // processing must not change the reported logprobs
  Sampler s(p, 1);
  std::vector<float> l = LogProbs({0.1, 0.6, 0.3});
  const SampledToken t = s.Sample(absl::MakeSpan(l));
  EXPECT_EQ(t.token, 1);
  EXPECT_NEAR(t.logprob, std::log(0.6), 1e-6);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].first, 1);
  EXPECT_EQ(t.top[1].first, 2);
  EXPECT_NEAR(t.top[1].second, std::log(0.3), 1e-6);
}

TEST(SamplerTest, ValidationNamesTheField) {
  struct Case {
    std::function<void(SamplingParams&)> set;
    const char* message;
  };
  const Case cases[] = {
      {[](SamplingParams& p) { p.temperature = -1; }, "temperature must be in [0, 100]"},
      {[](SamplingParams& p) { p.top_k = -2; }, "top_k must be >= 0"},
      {[](SamplingParams& p) { p.top_p = 0; }, "top_p must be in (0, 1]"},
      {[](SamplingParams& p) { p.min_p = 1.5f; }, "min_p must be in [0, 1]"},
      {[](SamplingParams& p) { p.repetition_penalty = 0; }, "repetition_penalty must be in (0, 10]"},
      {[](SamplingParams& p) { p.presence_penalty = 3; }, "presence_penalty must be in [-2, 2]"},
      {[](SamplingParams& p) { p.frequency_penalty = NAN; }, "frequency_penalty must be in [-2, 2]"},
      {[](SamplingParams& p) { p.top_logprobs = 21; }, "top_logprobs must be in [0, 20]"},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    c.set(p);
    const absl::Status st = ValidateSamplingParams(p);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr(c.message));
  }
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams()).ok());
}

}  // namespace
}  // namespace blockserve::engine
