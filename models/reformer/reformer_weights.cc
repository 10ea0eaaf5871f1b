// Loading Reformer weights: zero-copy f32 views of the mapped file, conversions otherwise.
#include "models/reformer/reformer_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/tensor.h"

namespace blockserve {
namespace {

// Any floating tensor as f32 values (ValidateWeights admits F32, BF16 and F16 only).
std::vector<float> ToF32(const ConstTensorView& view) {
  std::vector<float> out(view.num_elements());
  switch (view.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), view.data, out.size() * sizeof(float));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = BF16ToFloat(static_cast<const uint16_t*>(view.data)[i]);
      break;
    default:
      for (size_t i = 0; i < out.size(); ++i) out[i] = HalfToFloat(static_cast<const uint16_t*>(view.data)[i]);
      break;
  }
  return out;
}

}  // namespace

absl::StatusOr<const float*> ReformerWeights::Vector(const std::string& name) {
  ASSIGN_OR_RETURN(ConstTensorView view, file_->Get(name));
  if (view.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(view.data) % alignof(float) == 0) {
    return static_cast<const float*>(view.data);
  }
  owned_f32_.push_back(std::make_unique<std::vector<float>>(ToF32(view)));
  return owned_f32_.back()->data();
}

absl::StatusOr<WeightMatrix> ReformerWeights::Matrix(const std::string& name) {
  ASSIGN_OR_RETURN(ConstTensorView view, file_->Get(name));
  if (view.rank() != 2) return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is not a matrix"));
  WeightMatrix m;
  m.dtype = dtype_;
  m.rows = view.dim(0);
  m.cols = view.dim(1);
  if (dtype_ == WeightDType::kF32) {
    ASSIGN_OR_RETURN(m.data, Vector(name));
    return m;
  }
  if (view.dtype == DType::kBF16 && reinterpret_cast<uintptr_t>(view.data) % alignof(uint16_t) == 0) {
    m.data = view.data;
    return m;
  }
  const std::vector<float> f32 = ToF32(view);
  auto bf16 = std::make_unique<std::vector<uint16_t>>(f32.size());
  for (size_t i = 0; i < f32.size(); ++i) (*bf16)[i] = FloatToBF16(f32[i]);
  m.data = bf16->data();
  owned_bf16_.push_back(std::move(bf16));
  return m;
}

absl::StatusOr<std::unique_ptr<ReformerWeights>> ReformerWeights::Load(const ModelConfig& config,
                                                                       std::shared_ptr<const SafetensorsFile> file,
                                                                       WeightDType dtype) {
  if (config.family != ModelFamily::kReformer) return absl::InvalidArgumentError("not a Reformer model");
  std::unique_ptr<ReformerWeights> w(new ReformerWeights());
  w->config_ = config;
  w->dtype_ = dtype;
  w->file_ = std::move(file);
  ASSIGN_OR_RETURN(w->embed_, w->Matrix("embed.weight"));
  ASSIGN_OR_RETURN(w->axial0_, w->Vector("pos.axial.0"));
  ASSIGN_OR_RETURN(w->axial1_, w->Vector("pos.axial.1"));
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    ReformerLayerWeights l;
    l.lsh = config.reformer.attn_layers[i] == ReformerAttention::kLsh;
    ASSIGN_OR_RETURN(l.attn_norm_weight, w->Vector(p + "attn_norm.weight"));
    ASSIGN_OR_RETURN(l.attn_norm_bias, w->Vector(p + "attn_norm.bias"));
    if (l.lsh) {
      ASSIGN_OR_RETURN(l.qk, w->Matrix(p + "attn.qk.weight"));
      ASSIGN_OR_RETURN(l.rotations, w->Vector(p + "attn.rotations"));
    } else {
      ASSIGN_OR_RETURN(l.q, w->Matrix(p + "attn.q.weight"));
      ASSIGN_OR_RETURN(l.k, w->Matrix(p + "attn.k.weight"));
    }
    ASSIGN_OR_RETURN(l.v, w->Matrix(p + "attn.v.weight"));
    ASSIGN_OR_RETURN(l.out, w->Matrix(p + "attn.out.weight"));
    ASSIGN_OR_RETURN(l.ffn_norm_weight, w->Vector(p + "ffn_norm.weight"));
    ASSIGN_OR_RETURN(l.ffn_norm_bias, w->Vector(p + "ffn_norm.bias"));
    ASSIGN_OR_RETURN(l.w1, w->Matrix(p + "ffn.w1.weight"));
    ASSIGN_OR_RETURN(l.b1, w->Vector(p + "ffn.w1.bias"));
    ASSIGN_OR_RETURN(l.w2, w->Matrix(p + "ffn.w2.weight"));
    ASSIGN_OR_RETURN(l.b2, w->Vector(p + "ffn.w2.bias"));
    w->layers_.push_back(l);
  }
  ASSIGN_OR_RETURN(w->final_norm_weight_, w->Vector("final_norm.weight"));
  ASSIGN_OR_RETURN(w->final_norm_bias_, w->Vector("final_norm.bias"));
  ASSIGN_OR_RETURN(w->lm_head_, w->Matrix("lm_head.weight"));
  ASSIGN_OR_RETURN(w->lm_head_bias_, w->Vector("lm_head.bias"));
  return w;
}

void ReformerWeights::Position(int64_t p, float* out) const {
  const ReformerConfig& r = config_.reformer;
  const int64_t n2 = r.axial_pos_shape[1], d1 = r.axial_pos_embds_dim[0], d2 = r.axial_pos_embds_dim[1];
  std::memcpy(out, axial0_ + (p / n2) * d1, d1 * sizeof(float));
  std::memcpy(out + d1, axial1_ + (p % n2) * d2, d2 * sizeof(float));
}

}  // namespace blockserve
