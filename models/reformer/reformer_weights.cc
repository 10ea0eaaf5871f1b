// Loading Reformer weights: the tensors of each layer, by checkpoint name.
#include "models/reformer/reformer_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace blockserve {

absl::StatusOr<std::unique_ptr<ReformerWeights>> ReformerWeights::Load(const ModelConfig& config,
                                                                       std::shared_ptr<const SafetensorsFile> file,
                                                                       WeightDType dtype) {
  if (config.family != ModelFamily::kReformer) return absl::InvalidArgumentError("not a Reformer model");
  std::unique_ptr<ReformerWeights> w(new ReformerWeights(config, std::move(file), dtype));
  WeightStore& store = w->store_;
  ASSIGN_OR_RETURN(w->embed_, store.Matrix("embed.weight"));
  ASSIGN_OR_RETURN(w->axial0_, store.Vector("pos.axial.0"));
  ASSIGN_OR_RETURN(w->axial1_, store.Vector("pos.axial.1"));
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    ReformerLayerWeights l;
    l.lsh = config.reformer.attn_layers[i] == ReformerAttention::kLsh;
    ASSIGN_OR_RETURN(l.attn_norm_weight, store.Vector(p + "attn_norm.weight"));
    ASSIGN_OR_RETURN(l.attn_norm_bias, store.Vector(p + "attn_norm.bias"));
    if (l.lsh) {
      ASSIGN_OR_RETURN(l.qk, store.Matrix(p + "attn.qk.weight"));
      ASSIGN_OR_RETURN(l.rotations, store.Vector(p + "attn.rotations"));
    } else {
      ASSIGN_OR_RETURN(l.q, store.Matrix(p + "attn.q.weight"));
      ASSIGN_OR_RETURN(l.k, store.Matrix(p + "attn.k.weight"));
    }
    ASSIGN_OR_RETURN(l.v, store.Matrix(p + "attn.v.weight"));
    ASSIGN_OR_RETURN(l.out, store.Matrix(p + "attn.out.weight"));
    ASSIGN_OR_RETURN(l.ffn_norm_weight, store.Vector(p + "ffn_norm.weight"));
    ASSIGN_OR_RETURN(l.ffn_norm_bias, store.Vector(p + "ffn_norm.bias"));
    ASSIGN_OR_RETURN(l.w1, store.Matrix(p + "ffn.w1.weight"));
    ASSIGN_OR_RETURN(l.b1, store.Vector(p + "ffn.w1.bias"));
    ASSIGN_OR_RETURN(l.w2, store.Matrix(p + "ffn.w2.weight"));
    ASSIGN_OR_RETURN(l.b2, store.Vector(p + "ffn.w2.bias"));
    w->layers_.push_back(l);
  }
  ASSIGN_OR_RETURN(w->final_norm_weight_, store.Vector("final_norm.weight"));
  ASSIGN_OR_RETURN(w->final_norm_bias_, store.Vector("final_norm.bias"));
  ASSIGN_OR_RETURN(w->lm_head_, store.Matrix("lm_head.weight"));
  ASSIGN_OR_RETURN(w->lm_head_bias_, store.Vector("lm_head.bias"));
  return w;
}

void ReformerWeights::Position(int64_t p, float* out) const {
  const ReformerConfig& r = config_.reformer;
  const int64_t n2 = r.axial_pos_shape[1], d1 = r.axial_pos_embds_dim[0], d2 = r.axial_pos_embds_dim[1];
  std::memcpy(out, axial0_ + (p / n2) * d1, d1 * sizeof(float));
  std::memcpy(out + d1, axial1_ + (p % n2) * d2, d2 * sizeof(float));
}

}  // namespace blockserve
