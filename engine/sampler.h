// Token sampling: penalties, temperature, top-k, top-p, min-p, seeded, with logprobs.
#ifndef BLOCKSERVE_ENGINE_SAMPLER_H_
#define BLOCKSERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace blockserve::engine {

// How one request picks its tokens. Defaults sample from the model's distribution unchanged.
struct SamplingParams {
  float temperature = 1.0f;        // 0: greedy (argmax); else logits / temperature
  int top_k = 0;                   // keep the k most likely tokens (0: all)
  float top_p = 1.0f;              // keep the smallest set whose probability reaches top_p
  float min_p = 0.0f;              // drop tokens below min_p * p(most likely token)
  float repetition_penalty = 1.0f; // tokens seen in prompt or output: logit / r if > 0, else * r
  float presence_penalty = 0.0f;   // output tokens: logit -= presence * [count > 0]
  float frequency_penalty = 0.0f;  // output tokens: logit -= frequency * count
  uint64_t seed = 0;               // with has_seed, the same seed gives the same tokens
  bool has_seed = false;
  int top_logprobs = 0;            // also report this many most likely alternatives
};

// Checks every field's range; errors name the field and the allowed range.
absl::Status ValidateSamplingParams(const SamplingParams& params);

// The log-softmax normalizer log(sum(exp(x))), in double: log p(t) = x[t] - LogSumExp(x).
double LogSumExp(absl::Span<const float> x);

struct SampledToken {
  int32_t token = -1;
  float logprob = 0.0f;                            // log p(token) under the model's distribution
  std::vector<std::pair<int32_t, float>> top;      // top_logprobs alternatives, most likely first
};

// The sampling state of one request: its random generator and the token counts the penalties
// need. Thread-safety: one request's sampler is used by one thread at a time.
class Sampler {
 public:
  // `fallback_seed` seeds the generator when params.has_seed is false.
  Sampler(const SamplingParams& params, uint64_t fallback_seed);

  // Records prompt tokens (they count for the repetition penalty only).
  void ObservePrompt(absl::Span<const int32_t> tokens);
  // Picks the next token from `logits` (vocab,); `logits` is used as scratch space.
  SampledToken Sample(absl::Span<float> logits);

 private:
  // Applies the penalties in place; records touched logits' originals in penalized_.
  void ApplyPenalties(absl::Span<float> logits);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> output_counts_;
  std::unordered_map<int32_t, int> prompt_seen_;
  std::vector<std::pair<float, int32_t>> scratch_;
  std::vector<std::pair<int32_t, float>> penalized_;  // (token, logit before penalties)
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SAMPLER_H_
