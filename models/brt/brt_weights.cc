// Loading BRT weights: zero-copy f32 views of the mapped file, conversions, precomputed tables.
#include "models/brt/brt_weights.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/matvec.h"

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

absl::StatusOr<WeightDType> ParseWeightDType(absl::string_view name) {
  if (name == "f32" || name == "float32") return WeightDType::kF32;
  if (name == "bf16" || name == "bfloat16") return WeightDType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("weight dtype '", name, "': expected f32 or bf16"));
}

absl::string_view WeightDTypeName(WeightDType dtype) { return dtype == WeightDType::kF32 ? "f32" : "bf16"; }

void WeightMatrix::MatVec(const float* x, size_t batch, float* y, size_t row_begin, size_t row_end) const {
  if (dtype == WeightDType::kF32) {
    cpu::MatVecF32(static_cast<const float*>(data), x, batch, rows, cols, y, row_begin, row_end);
  } else {
    cpu::MatVecBF16(static_cast<const uint16_t*>(data), x, batch, rows, cols, y, row_begin, row_end);
  }
}

void WeightMatrix::Gemm(const float* x, size_t m, float* y, size_t row_begin, size_t row_end) const {
  if (dtype == WeightDType::kF32) {
    cpu::GemmF32(x, m, cols, static_cast<const float*>(data), rows, y, row_begin, row_end);
  } else {
    cpu::GemmBF16(x, m, cols, static_cast<const uint16_t*>(data), rows, y, row_begin, row_end);
  }
}

void WeightMatrix::Gather(const int32_t* ids, size_t n, float* out) const {
  if (dtype == WeightDType::kF32) {
    cpu::GatherRowsF32(static_cast<const float*>(data), cols, ids, n, out);
  } else {
    cpu::GatherRowsBF16(static_cast<const uint16_t*>(data), cols, ids, n, out);
  }
}

const float* BrtWeights::Own(std::vector<float> values) {
  owned_f32_.push_back(std::make_unique<std::vector<float>>(std::move(values)));
  return owned_f32_.back()->data();
}

// Any floating tensor as f32 values.
static std::vector<float> ToF32(const ConstTensorView& view) {
  std::vector<float> out(view.num_elements());
  switch (view.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), view.data, out.size() * sizeof(float));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = BF16ToFloat(static_cast<const uint16_t*>(view.data)[i]);
      break;
    default:  // kF16 (ValidateWeights admits F32, BF16, F16 only)
      for (size_t i = 0; i < out.size(); ++i) out[i] = HalfToFloat(static_cast<const uint16_t*>(view.data)[i]);
      break;
  }
  return out;
}

absl::StatusOr<const float*> BrtWeights::Vector(const std::string& name) {
  ASSIGN_OR_RETURN(ConstTensorView view, file_->Get(name));
  if (view.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(view.data) % alignof(float) == 0) {
    return static_cast<const float*>(view.data);
  }
  return Own(ToF32(view));
}

absl::StatusOr<WeightMatrix> BrtWeights::Matrix(const std::string& name) {
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

absl::StatusOr<GateWeights> BrtWeights::Gate(const std::string& prefix) {
  GateWeights g;
  if (config_.brt.gate == BrtGate::kFixed) {
    ASSIGN_OR_RETURN(g.bias, Vector(prefix + ".bias"));
  } else {
    ASSIGN_OR_RETURN(g.input, Matrix(prefix + ".input.weight"));
    ASSIGN_OR_RETURN(g.forget, Matrix(prefix + ".forget.weight"));
    ASSIGN_OR_RETURN(g.input_bias, Vector(prefix + ".input.bias"));
    ASSIGN_OR_RETURN(g.forget_bias, Vector(prefix + ".forget.bias"));
  }
  return g;
}

absl::StatusOr<std::unique_ptr<BrtWeights>> BrtWeights::Load(const ModelConfig& config,
                                                             std::shared_ptr<const SafetensorsFile> file,
                                                             WeightDType dtype) {
  if (config.family != ModelFamily::kBrt) return absl::InvalidArgumentError("not a BRT model");
  std::unique_ptr<BrtWeights> w(new BrtWeights());
  w->config_ = config;
  w->dtype_ = dtype;
  w->file_ = std::move(file);
  const BrtConfig& b = config.brt;
  const int h = config.num_heads, W = b.window;
  ASSIGN_OR_RETURN(w->embed_, w->Matrix("embed.weight"));
  ASSIGN_OR_RETURN(w->final_norm_, w->Vector("final_norm.scale"));
  switch (b.logit_divisor) {
    case LogitDivisor::kSqrtVocab: w->logit_scale_ = static_cast<float>(1.0 / std::sqrt(double(config.vocab_size))); break;
    case LogitDivisor::kSqrtDModel: w->logit_scale_ = static_cast<float>(1.0 / std::sqrt(double(config.d_model))); break;
    case LogitDivisor::kNone: w->logit_scale_ = 1.0f; break;
  }
  auto scale = [&](const std::string& name) -> absl::StatusOr<const float*> {
    ASSIGN_OR_RETURN(const float* s, w->Vector(name));
    if (!b.abs_attention_scale) return s;
    std::vector<float> a(s, s + h);
    for (float& v : a) v = std::fabs(v);
    return w->Own(std::move(a));
  };
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    BrtLayerWeights l;
    l.recurrent = config.IsRecurrentLayer(i);
    ASSIGN_OR_RETURN(l.attn_norm, w->Vector(p + "attn_norm.scale"));
    ASSIGN_OR_RETURN(l.q, w->Matrix(p + "attn.q.weight"));
    ASSIGN_OR_RETURN(l.k, w->Matrix(p + "attn.k.weight"));
    ASSIGN_OR_RETURN(l.v, w->Matrix(p + "attn.v.weight"));
    ASSIGN_OR_RETURN(l.scale, scale(p + "attn.scale"));
    ASSIGN_OR_RETURN(const float* rel_bias, w->Vector(p + "attn.rel_bias"));
    std::vector<float> window_bias(static_cast<size_t>(h) * W);
    for (int hh = 0; hh < h; ++hh) {
      for (int j = 0; j < W; ++j) {
        window_bias[hh * W + j] = rel_bias[hh * b.t5_num_buckets + T5Bucket(W - j, b.t5_num_buckets, b.t5_max_distance)];
      }
    }
    l.window_bias = w->Own(std::move(window_bias));
    ASSIGN_OR_RETURN(l.out, w->Matrix(p + "attn.out.weight"));
    ASSIGN_OR_RETURN(l.ffn_norm, w->Vector(p + "ffn_norm.scale"));
    ASSIGN_OR_RETURN(l.w1, w->Matrix(p + "ffn.w1.weight"));
    ASSIGN_OR_RETURN(l.w2, w->Matrix(p + "ffn.w2.weight"));
    if (l.recurrent) {
      const std::string r = p + "rec.";
      ASSIGN_OR_RETURN(l.q2, w->Matrix(p + "attn.q2.weight"));
      ASSIGN_OR_RETURN(l.scale2, scale(p + "attn.scale2"));
      ASSIGN_OR_RETURN(l.initial_state, w->Vector(r + "initial_state"));
      ASSIGN_OR_RETURN(l.rec_norm, w->Vector(r + "norm.scale"));
      ASSIGN_OR_RETURN(l.state_ids, w->Vector(r + "state_ids"));
      ASSIGN_OR_RETURN(l.rq, w->Matrix(r + "q.weight"));
      ASSIGN_OR_RETURN(l.rk, w->Matrix(r + "k.weight"));
      ASSIGN_OR_RETURN(l.rv, w->Matrix(r + "v.weight"));
      ASSIGN_OR_RETURN(l.rq2, w->Matrix(r + "q2.weight"));
      ASSIGN_OR_RETURN(l.rscale, scale(r + "scale"));
      ASSIGN_OR_RETURN(l.rscale2, scale(r + "scale2"));
      if (b.recurrent_variant != BrtRecurrentVariant::kSingle) {
        ASSIGN_OR_RETURN(l.rout, w->Matrix(r + "out.weight"));
        ASSIGN_OR_RETURN(l.gate, w->Gate(r + "gate"));
      }
      if (b.recurrent_variant == BrtRecurrentVariant::kDual) {
        ASSIGN_OR_RETURN(l.rffn_norm, w->Vector(r + "ffn_norm.scale"));
      }
      if (b.recurrent_variant != BrtRecurrentVariant::kSkip) {
        ASSIGN_OR_RETURN(l.rw1, w->Matrix(r + "ffn.w1.weight"));
        ASSIGN_OR_RETURN(l.rw2, w->Matrix(r + "ffn.w2.weight"));
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
