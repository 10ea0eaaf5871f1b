// CheckpointLayout for the BRT and Reformer families (names documented in docs/checkpoint-format.md).
#include "models/checkpoint_layout.h"

#include "absl/strings/str_cat.h"

namespace blockserve {
namespace {

void BrtRecurrentTensors(const ModelConfig& c, const std::string& p, std::vector<TensorSpec>* out) {
  const int64_t d = c.d_model, H = c.attn_dim(), h = c.num_heads, F = c.ffn_dim, S = c.brt.num_states;
  auto add = [&](absl::string_view name, Shape shape) {
    out->push_back({absl::StrCat(p, "rec.", name), std::move(shape)});
  };
  add("initial_state", {S, d});
  add("norm.scale", {d});
  add("state_ids", {S, d});
  for (const char* proj : {"q", "k", "v", "q2"}) add(absl::StrCat(proj, ".weight"), {H, d});
  add("scale", {h});
  add("scale2", {h});
  // A gate named `g` whose candidate comes from a hidden activation of width `hidden`.
  auto gate = [&](absl::string_view g, int64_t hidden) {
    if (c.brt.gate == BrtGate::kFixed) {
      add(absl::StrCat(g, ".bias"), {d});
    } else {
      for (const char* which : {"input", "forget"}) {
        add(absl::StrCat(g, ".", which, ".weight"), {d, hidden});
        add(absl::StrCat(g, ".", which, ".bias"), {d});
      }
    }
  };
  switch (c.brt.recurrent_variant) {
    case BrtRecurrentVariant::kSkip:
      add("out.weight", {d, 2 * H});
      gate("gate", 2 * H);
      break;
    case BrtRecurrentVariant::kDual:
      add("out.weight", {d, 2 * H});
      gate("gate", 2 * H);
      add("ffn_norm.scale", {d});
      add("ffn.w1.weight", {F, d});
      add("ffn.w2.weight", {d, F});
      gate("ffn_gate", F);
      break;
    case BrtRecurrentVariant::kSingle:
      add("ffn.w1.weight", {F, 2 * H});
      add("ffn.w2.weight", {d, F});
      gate("ffn_gate", F);
      break;
  }
}

void BrtLayout(const ModelConfig& c, std::vector<TensorSpec>* out) {
  const int64_t d = c.d_model, H = c.attn_dim(), h = c.num_heads, F = c.ffn_dim, V = c.vocab_size;
  out->push_back({"embed.weight", {V, d}});  // tied with the output projection
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    const bool rec = c.IsRecurrentLayer(i);
    out->push_back({p + "attn_norm.scale", {d}});
    out->push_back({p + "attn.q.weight", {H, d}});
    out->push_back({p + "attn.k.weight", {H, d}});
    out->push_back({p + "attn.v.weight", {H, d}});
    if (rec) out->push_back({p + "attn.q2.weight", {H, d}});
    out->push_back({p + "attn.scale", {h}});
    if (rec) out->push_back({p + "attn.scale2", {h}});
    out->push_back({p + "attn.rel_bias", {h, c.brt.t5_num_buckets}});
    out->push_back({p + "attn.out.weight", {d, rec ? 2 * H : H}});
    out->push_back({p + "ffn_norm.scale", {d}});
    out->push_back({p + "ffn.w1.weight", {F, d}});
    out->push_back({p + "ffn.w2.weight", {d, F}});
    if (rec) BrtRecurrentTensors(c, p, out);
  }
  out->push_back({"final_norm.scale", {d}});
}

void ReformerLayout(const ModelConfig& c, std::vector<TensorSpec>* out) {
  const ReformerConfig& r = c.reformer;
  const int64_t d = c.d_model, A = c.attn_dim(), F = c.ffn_dim, V = c.vocab_size;
  out->push_back({"embed.weight", {V, d}});
  out->push_back({"pos.axial.0", {r.axial_pos_shape[0], r.axial_pos_embds_dim[0]}});
  out->push_back({"pos.axial.1", {r.axial_pos_shape[1], r.axial_pos_embds_dim[1]}});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    out->push_back({p + "attn_norm.weight", {d}});
    out->push_back({p + "attn_norm.bias", {d}});
    if (r.attn_layers[i] == ReformerAttention::kLsh) {
      out->push_back({p + "attn.qk.weight", {A, d}});
      out->push_back({p + "attn.v.weight", {A, d}});
      out->push_back({p + "attn.rotations",
                      {c.num_heads, c.head_dim, r.num_hashes, r.rotation_size() / 2}});
    } else {
      out->push_back({p + "attn.q.weight", {A, d}});
      out->push_back({p + "attn.k.weight", {A, d}});
      out->push_back({p + "attn.v.weight", {A, d}});
    }
    out->push_back({p + "attn.out.weight", {d, A}});
    out->push_back({p + "ffn_norm.weight", {d}});
    out->push_back({p + "ffn_norm.bias", {d}});
    out->push_back({p + "ffn.w1.weight", {F, d}});
    out->push_back({p + "ffn.w1.bias", {F}});
    out->push_back({p + "ffn.w2.weight", {d, F}});
    out->push_back({p + "ffn.w2.bias", {d}});
  }
  out->push_back({"final_norm.weight", {2 * d}});
  out->push_back({"final_norm.bias", {2 * d}});
  out->push_back({"lm_head.weight", {V, 2 * d}});
  out->push_back({"lm_head.bias", {V}});
}

}  // namespace

std::vector<TensorSpec> CheckpointLayout(const ModelConfig& config) {
  std::vector<TensorSpec> out;
  if (config.family == ModelFamily::kBrt) {
    BrtLayout(config, &out);
  } else {
    ReformerLayout(config, &out);
  }
  return out;
}

int64_t CountParameters(const ModelConfig& config) {
  int64_t total = 0;
  for (const TensorSpec& spec : CheckpointLayout(config)) total += NumElements(spec.shape);
  return total;
}

}  // namespace blockserve
