// Loading BRT weights: the tensors of each layer and the precomputed tables.
#include "models/brt/brt_weights.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace blockserve {
namespace {

// T5 bucket of a (non-negative) distance, unidirectional (spec-brt.md §1.1); the same
// arithmetic as the trainer's (double log, truncation toward zero).
int T5Bucket(int64_t n, int num_buckets, int max_distance) {
  const int exact = num_buckets / 2;
  if (n < exact) return static_cast<int>(n);
  const double nf = std::max<double>(1.0, static_cast<double>(n));
  const int64_t large = exact + static_cast<int64_t>(std::log(nf / exact) /
                                                     std::log(static_cast<double>(max_distance) / exact) *
                                                     (num_buckets - exact));
  return static_cast<int>(std::min<int64_t>(large, num_buckets - 1));
}

}  // namespace

absl::StatusOr<GateWeights> BrtWeights::Gate(const std::string& prefix) {
  GateWeights g;
  if (config_.brt.gate == BrtGate::kFixed) {
    ASSIGN_OR_RETURN(g.bias, store_.Vector(prefix + ".bias"));
  } else {
    ASSIGN_OR_RETURN(g.input, store_.Matrix(prefix + ".input.weight"));
    ASSIGN_OR_RETURN(g.forget, store_.Matrix(prefix + ".forget.weight"));
    ASSIGN_OR_RETURN(g.input_bias, store_.Vector(prefix + ".input.bias"));
    ASSIGN_OR_RETURN(g.forget_bias, store_.Vector(prefix + ".forget.bias"));
  }
  return g;
}

absl::StatusOr<std::unique_ptr<BrtWeights>> BrtWeights::Load(const ModelConfig& config,
                                                             std::shared_ptr<const SafetensorsFile> file,
                                                             WeightDType dtype) {
  if (config.family != ModelFamily::kBrt) return absl::InvalidArgumentError("not a BRT model");
  std::unique_ptr<BrtWeights> w(new BrtWeights(config, std::move(file), dtype));
  WeightStore& store = w->store_;
  const BrtConfig& b = config.brt;
  const int h = config.num_heads, W = b.window;
  ASSIGN_OR_RETURN(w->embed_, store.Matrix("embed.weight"));
  ASSIGN_OR_RETURN(w->final_norm_, store.Vector("final_norm.scale"));
  switch (b.logit_divisor) {
    case LogitDivisor::kSqrtVocab: w->logit_scale_ = static_cast<float>(1.0 / std::sqrt(double(config.vocab_size))); break;
    case LogitDivisor::kSqrtDModel: w->logit_scale_ = static_cast<float>(1.0 / std::sqrt(double(config.d_model))); break;
    case LogitDivisor::kNone: w->logit_scale_ = 1.0f; break;
  }
  auto scale = [&](const std::string& name) -> absl::StatusOr<const float*> {
    ASSIGN_OR_RETURN(const float* s, store.Vector(name));
    if (!b.abs_attention_scale) return s;
    std::vector<float> a(s, s + h);
    for (float& v : a) v = std::fabs(v);
    return store.Own(std::move(a));
  };
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    BrtLayerWeights l;
    l.recurrent = config.IsRecurrentLayer(i);
    ASSIGN_OR_RETURN(l.attn_norm, store.Vector(p + "attn_norm.scale"));
    ASSIGN_OR_RETURN(l.q, store.Matrix(p + "attn.q.weight"));
    ASSIGN_OR_RETURN(l.k, store.Matrix(p + "attn.k.weight"));
    ASSIGN_OR_RETURN(l.v, store.Matrix(p + "attn.v.weight"));
    ASSIGN_OR_RETURN(l.scale, scale(p + "attn.scale"));
    ASSIGN_OR_RETURN(const float* rel_bias, store.Vector(p + "attn.rel_bias"));
    std::vector<float> window_bias(static_cast<size_t>(h) * W);
    for (int hh = 0; hh < h; ++hh) {
      for (int j = 0; j < W; ++j) {
        window_bias[hh * W + j] = rel_bias[hh * b.t5_num_buckets + T5Bucket(W - j, b.t5_num_buckets, b.t5_max_distance)];
      }
    }
    l.window_bias = store.Own(std::move(window_bias));
    ASSIGN_OR_RETURN(l.out, store.Matrix(p + "attn.out.weight"));
    ASSIGN_OR_RETURN(l.ffn_norm, store.Vector(p + "ffn_norm.scale"));
    ASSIGN_OR_RETURN(l.w1, store.Matrix(p + "ffn.w1.weight"));
    ASSIGN_OR_RETURN(l.w2, store.Matrix(p + "ffn.w2.weight"));
    if (l.recurrent) {
      const std::string r = p + "rec.";
      ASSIGN_OR_RETURN(l.q2, store.Matrix(p + "attn.q2.weight"));
      ASSIGN_OR_RETURN(l.scale2, scale(p + "attn.scale2"));
      ASSIGN_OR_RETURN(l.initial_state, store.Vector(r + "initial_state"));
      ASSIGN_OR_RETURN(l.rec_norm, store.Vector(r + "norm.scale"));
      ASSIGN_OR_RETURN(l.state_ids, store.Vector(r + "state_ids"));
      ASSIGN_OR_RETURN(l.rq, store.Matrix(r + "q.weight"));
      ASSIGN_OR_RETURN(l.rk, store.Matrix(r + "k.weight"));
      ASSIGN_OR_RETURN(l.rv, store.Matrix(r + "v.weight"));
      ASSIGN_OR_RETURN(l.rq2, store.Matrix(r + "q2.weight"));
      ASSIGN_OR_RETURN(l.rscale, scale(r + "scale"));
      ASSIGN_OR_RETURN(l.rscale2, scale(r + "scale2"));
      if (b.recurrent_variant != BrtRecurrentVariant::kSingle) {
        ASSIGN_OR_RETURN(l.rout, store.Matrix(r + "out.weight"));
        ASSIGN_OR_RETURN(l.gate, w->Gate(r + "gate"));
      }
      if (b.recurrent_variant == BrtRecurrentVariant::kDual) {
        ASSIGN_OR_RETURN(l.rffn_norm, store.Vector(r + "ffn_norm.scale"));
      }
      if (b.recurrent_variant != BrtRecurrentVariant::kSkip) {
        ASSIGN_OR_RETURN(l.rw1, store.Matrix(r + "ffn.w1.weight"));
        ASSIGN_OR_RETURN(l.rw2, store.Matrix(r + "ffn.w2.weight"));
        ASSIGN_OR_RETURN(l.ffn_gate, w->Gate(r + "ffn_gate"));
      }
    }
    w->layers_.push_back(l);
  }
  return w;
}

size_t BrtWeights::decode_weight_bytes() const {
  size_t bytes = embed_.num_bytes();
  for (const BrtLayerWeights& l : layers_) {
    for (const WeightMatrix* m : {&l.q, &l.k, &l.v, &l.q2, &l.out, &l.w1, &l.w2}) bytes += m->num_bytes();
  }
  return bytes;
}

}  // namespace blockserve
