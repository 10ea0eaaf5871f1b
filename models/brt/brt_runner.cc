// BrtRunner: BRT forward on the CPU. Shapes: m tokens of a chunk, B sequences of a decode step,
// d model width, H = heads * head_dim, F ffn width, W window, S states, V vocab.
#include "models/brt/brt_runner.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/rms_norm.h"
#include "models/cpu_runner_common.h"
#include "models/model_dir.h"

namespace blockserve {
namespace {

using engine::SequenceState;
using engine::StepItem;

int64_t Mod(int64_t a, int64_t n) { return ((a % n) + n) % n; }

// Attention of m query rows (stride q_stride) against num_keys rows of a k/v buffer of kv_rows
// rows (ring indices), query i starting at row first + i * step; all of width H = h * kd.
cpu::AttentionArgs Heads(const ModelConfig& c, const float* q, size_t q_stride, const float* k, const float* v,
                         size_t kv_rows, size_t m, size_t num_keys, size_t first, size_t step, const float* bias,
                         const float* scale, float* out, size_t out_stride) {
  cpu::AttentionArgs a;
  a.q = q;
  a.q_stride = q_stride;
  a.k = k;
  a.v = v;
  a.kv_stride = c.attn_dim();
  a.kv_rows = kv_rows;
  a.m = m;
  a.num_heads = c.num_heads;
  a.head_dim = c.head_dim;
  a.num_keys = num_keys;
  a.first_key = first;
  a.key_step = step;
  a.bias = bias;
  a.scale = scale;
  a.out = out;
  a.out_stride = out_stride;
  return a;
}

void Resize(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

// Work buffers of one step, grown on demand and reused (Execute is never concurrent).
struct BrtRunner::Scratch {
  std::vector<float> x, xn, q, k, v, q2, kbuf, vbuf, attn, tmp, hidden, logits;
  // Block-end update: (S, d) and (S, H), (S, 2H), (S, F) buffers.
  std::vector<float> cn, qs, qs2, a, y, g1, g2, c1, rh;
  std::vector<int32_t> ids;
  std::vector<BrtSequenceState*> states;  // decode: one per item
  std::vector<size_t> rows;               // decode: items that want logits
  std::vector<const void*> seen;          // Execute: states of the step, to find repeats
};

BrtRunner::~BrtRunner() = default;

absl::StatusOr<std::unique_ptr<BrtRunner>> BrtRunner::Create(const ModelConfig& config,
                                                             std::shared_ptr<const SafetensorsFile> weights,
                                                             const std::string& name, const RunnerOptions& options) {
  std::unique_ptr<BrtRunner> r(new BrtRunner());
  r->config_ = config;
  r->fingerprint_ = ModelFingerprint("brt-", config, *weights);
  ASSIGN_OR_RETURN(r->weights_, BrtWeights::Load(config, std::move(weights), options.weight_dtype));
  r->layout_ = BrtStateLayout::For(config);
  r->pool_ = PooledMatmul(options.num_threads);
  r->scratch_ = std::make_unique<Scratch>();

  r->fresh_state_.assign(r->layout_.num_floats, 0.0f);
  const size_t S = config.brt.num_states, d = config.d_model;
  for (int i = 0; i < config.num_layers; ++i) {
    const BrtStateLayout::Layer& l = r->layout_.layers[i];
    if (!config.IsRecurrentLayer(i)) continue;
    float* c = r->fresh_state_.data() + l.state;
    std::memcpy(c, r->weights_->layer(i).initial_state, S * d * sizeof(float));
    r->ProjectState(i, c, r->fresh_state_.data() + l.state_k, r->fresh_state_.data() + l.state_v);
  }

  r->info_ = CpuModelInfo(config, name, options.weight_dtype);
  engine::ModelInfo& info = r->info_;
  info.family = "brt";
  info.block_size = config.brt.window;
  info.max_position = -1;
  info.state_bytes = r->NewState()->byte_size();
  info.constant_state = true;
  return r;
}

std::unique_ptr<SequenceState> BrtRunner::NewState() const {
  auto state = std::make_unique<BrtSequenceState>(&layout_, this);
  std::memcpy(state->data(), fresh_state_.data(), fresh_state_.size() * sizeof(float));
  return state;
}

std::unique_ptr<SequenceState> BrtRunner::CloneState(const SequenceState& state) const {
  const auto& from = static_cast<const BrtSequenceState&>(state);
  auto copy = std::make_unique<BrtSequenceState>(&layout_, this);
  std::memcpy(copy->data(), from.data(), layout_.num_floats * sizeof(float));
  copy->set_position(from.position());
  return copy;
}

absl::StatusOr<std::string> BrtRunner::SerializeState(const SequenceState& state) const {
  const auto* brt = dynamic_cast<const BrtSequenceState*>(&state);
  if (brt == nullptr || brt->owner() != this) {
    return absl::InvalidArgumentError("SerializeState: the state was not made by this runner");
  }
  return SerializeBrtState(config_, *brt, fingerprint_);
}

absl::StatusOr<std::unique_ptr<SequenceState>> BrtRunner::DeserializeState(absl::string_view bytes) const {
  auto state = std::make_unique<BrtSequenceState>(&layout_, this);
  RETURN_IF_ERROR(DeserializeBrtState(config_, bytes, fingerprint_, state.get()));
  return state;
}

absl::Status BrtRunner::Execute(absl::Span<const StepItem> items) {
  std::vector<const void*>& seen = scratch_->seen;
  seen.clear();
  for (size_t i = 0; i < items.size(); ++i) {
    const StepItem& item = items[i];
    const auto* state = dynamic_cast<const BrtSequenceState*>(item.state);
    RETURN_IF_ERROR(CheckStepItem(item, i, state != nullptr && state->owner() == this ? state : nullptr,
                                  config_.vocab_size, &seen));
  }
  std::vector<const StepItem*> decode;
  for (const StepItem& item : items) {
    if (item.tokens.size() == 1) decode.push_back(&item);
  }
  if (!decode.empty()) DecodeBatch(decode);
  for (const StepItem& item : items) {
    if (item.tokens.size() > 1) Prefill(item);
  }
  return absl::OkStatus();
}

void BrtRunner::Logits(const float* x, size_t rows, float* out, bool decode) {
  const size_t d = config_.d_model, V = config_.vocab_size;
  Scratch& s = *scratch_;
  Resize(s.xn, rows * d);
  cpu::RmsNorm(x, weights_->final_norm(), rows, d, config_.norm_eps, s.xn.data());
  if (decode || rows == 1 || weights_->dtype() == WeightDType::kBF16) {
    pool_.MatVec(weights_->embed(), s.xn.data(), rows, out);
  } else {
    pool_.Gemm(weights_->embed(), s.xn.data(), rows, out);
  }
  cpu::Scale(out, rows * V, weights_->logit_scale());
}

void BrtRunner::Prefill(const StepItem& item) {
  auto* state = static_cast<BrtSequenceState*>(item.state);
  const int64_t n = static_cast<int64_t>(item.tokens.size()), W = config_.brt.window, V = config_.vocab_size;
  int64_t done = 0;
  while (done < n) {
    const int64_t m = std::min(n - done, W - state->position() % W);
    float* logits = nullptr;
    bool all_rows = false;
    if (item.logits == StepItem::Logits::kAll) {
      logits = item.logits_out + done * V;
      all_rows = true;
    } else if (item.logits == StepItem::Logits::kLast && done + m == n) {
      logits = item.logits_out;
    }
    ForwardChunk(state, item.tokens.data() + done, static_cast<int>(m), logits, all_rows);
    done += m;
  }
}

void BrtRunner::ForwardChunk(BrtSequenceState* state, const int32_t* tokens, int m, float* logits, bool all_rows) {
  const ModelConfig& c = config_;
  const size_t d = c.d_model, H = c.attn_dim(), F = c.ffn_dim, W = c.brt.window, S = c.brt.num_states;
  const size_t h = c.num_heads, kd = c.head_dim;
  const int64_t p0 = state->position();
  Scratch& s = *scratch_;
  Resize(s.x, m * d);
  Resize(s.xn, m * d);
  Resize(s.q, m * H);
  Resize(s.k, m * H);
  Resize(s.v, m * H);
  Resize(s.q2, m * H);
  Resize(s.kbuf, (W + m) * H);
  Resize(s.vbuf, (W + m) * H);
  Resize(s.attn, m * 2 * H);
  Resize(s.tmp, m * d);
  Resize(s.hidden, m * F);
  weights_->embed().Gather(tokens, m, s.x.data());
  for (int li = 0; li < c.num_layers; ++li) {
    const BrtLayerWeights& L = weights_->layer(li);
    const BrtStateLayout::Layer& SL = layout_.layers[li];
    const int64_t R = SL.ring_rows;
    float* ring_k = state->at(SL.ring_k);
    float* ring_v = state->at(SL.ring_v);
    cpu::RmsNorm(s.x.data(), L.attn_norm, m, d, c.norm_eps, s.xn.data());
    pool_.Gemm(L.q, s.xn.data(), m, s.q.data());
    pool_.Gemm(L.k, s.xn.data(), m, s.k.data());
    pool_.Gemm(L.v, s.xn.data(), m, s.v.data());
    cpu::NormalizeHeads(s.q.data(), m, H, h, kd);
    cpu::NormalizeHeads(s.k.data(), m, H, h, kd);
    if (L.recurrent) {
      pool_.Gemm(L.q2, s.xn.data(), m, s.q2.data());
      cpu::NormalizeHeads(s.q2.data(), m, H, h, kd);
    }
    // Keys in time order: the W tokens before the chunk (zero before the document start), then
    // the chunk. Query i's window is rows [i, i + W): exactly the W previous tokens.
    for (size_t j = 0; j < W; ++j) {
      const int64_t slot = Mod(p0 - static_cast<int64_t>(W) + static_cast<int64_t>(j), R);
      std::memcpy(&s.kbuf[j * H], ring_k + slot * H, H * sizeof(float));
      std::memcpy(&s.vbuf[j * H], ring_v + slot * H, H * sizeof(float));
    }
    std::memcpy(&s.kbuf[W * H], s.k.data(), m * H * sizeof(float));
    std::memcpy(&s.vbuf[W * H], s.v.data(), m * H * sizeof(float));
    const size_t width = L.recurrent ? 2 * H : H;  // [self; cross] attention outputs
    const cpu::AttentionArgs self = Heads(c, s.q.data(), H, s.kbuf.data(), s.vbuf.data(), W + m, m, W, 0, 1,
                                          L.window_bias, L.scale, s.attn.data(), width);
    cpu::AttentionArgs cross;
    if (L.recurrent) {
      cross = Heads(c, s.q2.data(), H, state->at(SL.state_k), state->at(SL.state_v), S, m, S, 0, 0, nullptr,
                    L.scale2, s.attn.data() + H, width);
    }
    pool_.ParallelFor(m, 4, [&](int64_t begin, int64_t end) {
      cpu::Attention(self, begin, end);
      if (L.recurrent) cpu::Attention(cross, begin, end);
    });
    for (int i = 0; i < m; ++i) {
      const int64_t slot = Mod(p0 + i, R);
      std::memcpy(ring_k + slot * H, &s.k[i * H], H * sizeof(float));
      std::memcpy(ring_v + slot * H, &s.v[i * H], H * sizeof(float));
    }
    pool_.Gemm(L.out, s.attn.data(), m, s.tmp.data());
    cpu::AddInPlace(s.x.data(), s.tmp.data(), m * d);
    cpu::RmsNorm(s.x.data(), L.ffn_norm, m, d, c.norm_eps, s.xn.data());
    pool_.Gemm(L.w1, s.xn.data(), m, s.hidden.data());
    cpu::Relu(s.hidden.data(), m * F);
    pool_.Gemm(L.w2, s.hidden.data(), m, s.tmp.data());
    cpu::AddInPlace(s.x.data(), s.tmp.data(), m * d);
    if (L.recurrent && (p0 + m) % static_cast<int64_t>(W) == 0) BlockEnd(state, li);
  }
  state->set_position(p0 + m);
  if (logits != nullptr) {
    if (all_rows) {
      Logits(s.x.data(), m, logits, /*decode=*/false);
    } else {
      Logits(s.x.data() + (m - 1) * d, 1, logits, /*decode=*/false);
    }
  }
}

void BrtRunner::DecodeBatch(const std::vector<const StepItem*>& items) {
  const ModelConfig& c = config_;
  const size_t B = items.size();
  const size_t d = c.d_model, H = c.attn_dim(), F = c.ffn_dim, W = c.brt.window, S = c.brt.num_states;
  const size_t h = c.num_heads, kd = c.head_dim, V = c.vocab_size;
  Scratch& s = *scratch_;
  Resize(s.x, B * d);
  Resize(s.xn, B * d);
  Resize(s.q, B * H);
  Resize(s.k, B * H);
  Resize(s.v, B * H);
  Resize(s.q2, B * H);
  Resize(s.attn, B * 2 * H);
  Resize(s.tmp, B * d);
  Resize(s.hidden, B * F);
  s.ids.resize(B);
  std::vector<BrtSequenceState*>& states = s.states;
  states.resize(B);
  for (size_t b = 0; b < B; ++b) {
    states[b] = static_cast<BrtSequenceState*>(items[b]->state);
    s.ids[b] = items[b]->tokens[0];
  }
  weights_->embed().Gather(s.ids.data(), B, s.x.data());
  for (int li = 0; li < c.num_layers; ++li) {
    const BrtLayerWeights& L = weights_->layer(li);
    const BrtStateLayout::Layer& SL = layout_.layers[li];
    const int64_t R = SL.ring_rows;
    const size_t width = L.recurrent ? 2 * H : H;
    cpu::RmsNorm(s.x.data(), L.attn_norm, B, d, c.norm_eps, s.xn.data());
    pool_.MatVec(L.q, s.xn.data(), B, s.q.data());
    pool_.MatVec(L.k, s.xn.data(), B, s.k.data());
    pool_.MatVec(L.v, s.xn.data(), B, s.v.data());
    cpu::NormalizeHeads(s.q.data(), B, H, h, kd);
    cpu::NormalizeHeads(s.k.data(), B, H, h, kd);
    if (L.recurrent) {
      pool_.MatVec(L.q2, s.xn.data(), B, s.q2.data());
      cpu::NormalizeHeads(s.q2.data(), B, H, h, kd);
    }
    pool_.ParallelFor(B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        BrtSequenceState* st = states[b];
        const int64_t p = st->position();
        float* ring_k = st->at(SL.ring_k);
        float* ring_v = st->at(SL.ring_v);
        cpu::Attention(Heads(c, &s.q[b * H], H, ring_k, ring_v, R, 1, W, Mod(p - static_cast<int64_t>(W), R), 0,
                             L.window_bias, L.scale, &s.attn[b * width], width));
        if (L.recurrent) {
          cpu::Attention(Heads(c, &s.q2[b * H], H, st->at(SL.state_k), st->at(SL.state_v), S, 1, S, 0, 0, nullptr,
                               L.scale2, &s.attn[b * width + H], width));
        }
        const int64_t slot = Mod(p, R);
        std::memcpy(ring_k + slot * H, &s.k[b * H], H * sizeof(float));
        std::memcpy(ring_v + slot * H, &s.v[b * H], H * sizeof(float));
      }
    });
    pool_.MatVec(L.out, s.attn.data(), B, s.tmp.data());
    cpu::AddInPlace(s.x.data(), s.tmp.data(), B * d);
    cpu::RmsNorm(s.x.data(), L.ffn_norm, B, d, c.norm_eps, s.xn.data());
    pool_.MatVec(L.w1, s.xn.data(), B, s.hidden.data());
    cpu::Relu(s.hidden.data(), B * F);
    pool_.MatVec(L.w2, s.hidden.data(), B, s.tmp.data());
    cpu::AddInPlace(s.x.data(), s.tmp.data(), B * d);
    if (L.recurrent) {
      for (size_t b = 0; b < B; ++b) {
        if ((states[b]->position() + 1) % static_cast<int64_t>(W) == 0) BlockEnd(states[b], li);
      }
    }
  }
  for (BrtSequenceState* st : states) st->set_position(st->position() + 1);
  // Logits of the rows that want them, computed together (the decode product: a row's logits
  // do not depend on the batch). Rows are compacted only when some want none.
  s.rows.clear();
  for (size_t b = 0; b < B; ++b) {
    if (items[b]->logits != StepItem::Logits::kNone) s.rows.push_back(b);
  }
  if (s.rows.empty()) return;
  const float* x = s.x.data();
  if (s.rows.size() < B) {
    Resize(s.hidden, s.rows.size() * d);  // free after the last layer
    for (size_t r = 0; r < s.rows.size(); ++r) {
      std::memcpy(&s.hidden[r * d], &s.x[s.rows[r] * d], d * sizeof(float));
    }
    x = s.hidden.data();
  }
  Resize(s.logits, s.rows.size() * V);
  Logits(x, s.rows.size(), s.logits.data(), /*decode=*/true);
  for (size_t r = 0; r < s.rows.size(); ++r) {
    std::memcpy(items[s.rows[r]]->logits_out, &s.logits[r * V], V * sizeof(float));
  }
}

void BrtRunner::ProjectState(int layer, const float* cstate, float* ks, float* vs) {
  const ModelConfig& c = config_;
  const size_t S = c.brt.num_states, d = c.d_model, H = c.attn_dim();
  const BrtLayerWeights& L = weights_->layer(layer);
  Scratch& s = *scratch_;
  Resize(s.cn, S * d);
  cpu::RmsNorm(cstate, L.rec_norm, S, d, c.norm_eps, s.cn.data());
  cpu::AddInPlace(s.cn.data(), L.state_ids, S * d);
  pool_.Gemm(L.rk, s.cn.data(), S, ks);
  cpu::NormalizeHeads(ks, S, H, c.num_heads, c.head_dim);
  pool_.Gemm(L.rv, s.cn.data(), S, vs);
}

void BrtRunner::BlockEnd(BrtSequenceState* state, int layer) {
  const ModelConfig& c = config_;
  const size_t S = c.brt.num_states, d = c.d_model, H = c.attn_dim(), F = c.ffn_dim, W = c.brt.window;
  const size_t h = c.num_heads, kd = c.head_dim;
  const BrtLayerWeights& L = weights_->layer(layer);
  const BrtStateLayout::Layer& SL = layout_.layers[layer];
  Scratch& s = *scratch_;
  Resize(s.cn, S * d);
  Resize(s.qs, S * H);
  Resize(s.qs2, S * H);
  Resize(s.a, S * 2 * H);
  Resize(s.y, S * d);
  Resize(s.g1, S * d);
  Resize(s.g2, S * d);
  Resize(s.c1, S * d);
  Resize(s.rh, S * F);
  float* cstate = state->at(SL.state);
  float* ks = state->at(SL.state_k);
  float* vs = state->at(SL.state_v);
  // Queries of the state entering the block (its keys/values are already in the state).
  cpu::RmsNorm(cstate, L.rec_norm, S, d, c.norm_eps, s.cn.data());
  cpu::AddInPlace(s.cn.data(), L.state_ids, S * d);
  pool_.Gemm(L.rq, s.cn.data(), S, s.qs.data());
  pool_.Gemm(L.rq2, s.cn.data(), S, s.qs2.data());
  cpu::NormalizeHeads(s.qs.data(), S, H, h, kd);
  cpu::NormalizeHeads(s.qs2.data(), S, H, h, kd);
  // A = [state self-attention; state -> the 2W tokens of the previous and current block].
  const cpu::AttentionArgs self =
      Heads(c, s.qs.data(), H, ks, vs, S, S, S, 0, 0, nullptr, L.rscale, s.a.data(), 2 * H);
  const cpu::AttentionArgs cross = Heads(c, s.qs2.data(), H, state->at(SL.ring_k), state->at(SL.ring_v), 2 * W, S,
                                         2 * W, 0, 0, nullptr, L.rscale2, s.a.data() + H, 2 * H);
  pool_.ParallelFor(S, 4, [&](int64_t begin, int64_t end) {
    cpu::Attention(self, begin, end);
    cpu::Attention(cross, begin, end);
  });
  // gate(state, y_out, y_hidden) -> out (may alias state).
  auto gate = [&](const GateWeights& g, const float* old, const float* y_out, const float* y_hidden,
                  float* out) {
    if (c.brt.gate == BrtGate::kFixed) {
      cpu::GateFixed(old, y_out, g.bias, S, d, out);
      return;
    }
    pool_.Gemm(g.forget, y_hidden, S, s.g1.data());
    pool_.Gemm(g.input, y_hidden, S, s.g2.data());
    for (size_t r = 0; r < S; ++r) {
      cpu::AddInPlace(&s.g1[r * d], g.forget_bias, d);
      cpu::AddInPlace(&s.g2[r * d], g.input_bias, d);
    }
    cpu::GateLstm(old, y_out, s.g1.data(), s.g2.data(), S * d, out);
  };
  switch (c.brt.recurrent_variant) {
    case BrtRecurrentVariant::kSkip:
      pool_.Gemm(L.rout, s.a.data(), S, s.y.data());
      gate(L.gate, cstate, s.y.data(), s.a.data(), cstate);
      break;
    case BrtRecurrentVariant::kDual:
      pool_.Gemm(L.rout, s.a.data(), S, s.y.data());
      gate(L.gate, cstate, s.y.data(), s.a.data(), s.c1.data());
      cpu::RmsNorm(s.c1.data(), L.rffn_norm, S, d, c.norm_eps, s.cn.data());
      pool_.Gemm(L.rw1, s.cn.data(), S, s.rh.data());
      cpu::Relu(s.rh.data(), S * F);
      pool_.Gemm(L.rw2, s.rh.data(), S, s.y.data());
      gate(L.ffn_gate, s.c1.data(), s.y.data(), s.rh.data(), cstate);
      break;
    case BrtRecurrentVariant::kSingle:
      pool_.Gemm(L.rw1, s.a.data(), S, s.rh.data());
      cpu::Relu(s.rh.data(), S * F);
      pool_.Gemm(L.rw2, s.rh.data(), S, s.y.data());
      cpu::Tanh(s.y.data(), S * d);
      gate(L.ffn_gate, cstate, s.y.data(), s.rh.data(), cstate);
      break;
  }
  ProjectState(layer, cstate, ks, vs);
}

}  // namespace blockserve
