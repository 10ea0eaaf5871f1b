// Sampler: logits -> processed distribution -> one token, in a fixed, documented order.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace blockserve::engine {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view range, double value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", range, ", got ", value));
}


}  // namespace

double LogSumExp(absl::Span<const float> x) {
  float m = -std::numeric_limits<float>::infinity();
  for (float v : x) m = std::max(m, v);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (float v : x) s += std::exp(static_cast<double>(v) - m);
  return m + std::log(s);
}

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!(p.temperature >= 0 && p.temperature <= 100)) return Bad("temperature", "in [0, 100]", p.temperature);
  if (p.top_k < 0) return Bad("top_k", ">= 0 (0 disables)", p.top_k);
  if (!(p.top_p > 0 && p.top_p <= 1)) return Bad("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0 && p.min_p <= 1)) return Bad("min_p", "in [0, 1]", p.min_p);
  if (!(p.repetition_penalty > 0 && p.repetition_penalty <= 10)) {
    return Bad("repetition_penalty", "in (0, 10]", p.repetition_penalty);
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) return Bad("presence_penalty", "in [-2, 2]", p.presence_penalty);
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return Bad("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  }
  if (p.top_logprobs < 0 || p.top_logprobs > 20) return Bad("top_logprobs", "in [0, 20]", p.top_logprobs);
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, uint64_t fallback_seed)
    : params_(params), rng_(params.has_seed ? params.seed : fallback_seed) {}

void Sampler::ObservePrompt(absl::Span<const int32_t> tokens) {
  for (int32_t t : tokens) prompt_seen_[t] = 1;
}

void Sampler::ApplyPenalties(absl::Span<float> logits) {
  penalized_.clear();
  const bool repetition = params_.repetition_penalty != 1.0f;
  const bool additive = params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f;
  if (!repetition && !additive) return;
  const int32_t vocab = static_cast<int32_t>(logits.size());
  // Each touched logit's original value is recorded once (for the reported logprob): the
  // repetition pass touches every seen token once, and covers every output token, so the
  // additive pass records only when the repetition pass did not run.
  auto touch = [&](int32_t t, bool record) -> float* {
    if (t < 0 || t >= vocab) return nullptr;
    if (record) penalized_.emplace_back(t, logits[t]);
    return &logits[t];
  };
  if (repetition) {
    auto penalize = [&](int32_t t) {
      if (float* l = touch(t, true)) *l = *l > 0 ? *l / params_.repetition_penalty : *l * params_.repetition_penalty;
    };
    for (const auto& [t, unused] : prompt_seen_) penalize(t);
    for (const auto& [t, unused] : output_counts_) {
      if (prompt_seen_.count(t) == 0) penalize(t);
    }
  }
  if (additive) {
    for (const auto& [t, count] : output_counts_) {
      if (float* l = touch(t, !repetition)) {
        *l -= params_.presence_penalty * (count > 0 ? 1.0f : 0.0f) + params_.frequency_penalty * count;
      }
    }
  }
}

SampledToken Sampler::Sample(absl::Span<float> logits) {
  SampledToken out;
  const int32_t vocab = static_cast<int32_t>(logits.size());
  // Log-probabilities are reported under the model's own distribution (before processing).
  const double lse = LogSumExp(logits);
  auto raw_logprob = [&](int32_t t, float raw) { return static_cast<float>(raw - lse); };
  if (params_.top_logprobs > 0) {
    scratch_.clear();
    for (int32_t t = 0; t < vocab; ++t) scratch_.emplace_back(logits[t], t);
    const size_t n = std::min<size_t>(params_.top_logprobs, scratch_.size());
    std::partial_sort(scratch_.begin(), scratch_.begin() + n, scratch_.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    for (size_t i = 0; i < n; ++i) out.top.emplace_back(scratch_[i].second, raw_logprob(scratch_[i].second, scratch_[i].first));
  }
  ApplyPenalties(logits);

  if (params_.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t t = 1; t < vocab; ++t) {
      if (logits[t] > logits[best]) best = t;
    }
    out.token = best;
  } else {
    // Candidates sorted by processed logit, most likely first (ties: lower id first).
    scratch_.clear();
    for (int32_t t = 0; t < vocab; ++t) scratch_.emplace_back(logits[t] / params_.temperature, t);
    auto more_likely = [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t keep = scratch_.size();
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
      // Only the k best need ordering: select them, then sort that prefix.
      keep = params_.top_k;
      std::nth_element(scratch_.begin(), scratch_.begin() + keep, scratch_.end(), more_likely);
      std::sort(scratch_.begin(), scratch_.begin() + keep, more_likely);
    } else {
      std::sort(scratch_.begin(), scratch_.end(), more_likely);
    }
    const double top = scratch_[0].first;
    std::vector<double> probs(keep);
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += probs[i] = std::exp(scratch_[i].first - top);
    if (params_.top_p < 1.0f) {
      double cumulative = 0;
      size_t cut = keep;
      for (size_t i = 0; i < keep; ++i) {
        cumulative += probs[i] / total;
        if (cumulative >= params_.top_p) {
          cut = i + 1;
          break;
        }
      }
      keep = cut;
    }
    if (params_.min_p > 0.0f) {
      // probs[0] is the most likely token's unnormalized probability (exp(0) = 1).
      size_t cut = 1;
      while (cut < keep && probs[cut] >= params_.min_p * probs[0]) ++cut;
      keep = cut;
    }
    double kept_total = 0;
    for (size_t i = 0; i < keep; ++i) kept_total += probs[i];
    std::uniform_real_distribution<double> uniform(0.0, kept_total);
    const double u = uniform(rng_);
    double acc = 0;
    out.token = scratch_[keep - 1].second;
    for (size_t i = 0; i < keep; ++i) {
      acc += probs[i];
      if (u < acc) {
        out.token = scratch_[i].second;
        break;
      }
    }
  }
  float raw = logits[out.token];
  for (const auto& [t, original] : penalized_) {
    if (t == out.token) raw = original;
  }
  out.logprob = raw_logprob(out.token, raw);
  ++output_counts_[out.token];
  return out;
}

}  // namespace blockserve::engine
