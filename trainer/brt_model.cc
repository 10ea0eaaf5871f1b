// BRT forward pass in libtorch: sliding-window layers, the recurrent layer, gates and variants.
#include "trainer/brt_model.h"

#include <cmath>

namespace blockserve::trainer {
namespace {

constexpr double kMaskedLogit = -1e6;

// meliad's Dense kernel init: variance_scaling(scale, fan_in, truncated_normal).
void InitKernel(torch::Tensor& w, double scale) {
  torch::NoGradGuard no_grad;
  const double fan_in = static_cast<double>(w.size(1));
  // 0.87962566 is the stddev of a unit normal truncated to [-2, 2].
  const double std = std::sqrt(scale / fan_in) / 0.87962566103423978;
  w.normal_(0.0, std);
  w.clamp_(-2.0 * std, 2.0 * std);
}

torch::nn::Linear MakeLinear(int64_t in, int64_t out, bool bias, double init_scale = 1.0) {
  torch::nn::Linear l(torch::nn::LinearOptions(in, out).bias(bias));
  InitKernel(l->weight, init_scale);
  if (bias) {
    torch::NoGradGuard no_grad;
    l->bias.normal_(0.0, 0.1);
  }
  return l;
}

}  // namespace

torch::Tensor T5Bucket(const torch::Tensor& distance, int num_buckets, int max_distance) {
  const int exact = num_buckets / 2;
  const torch::Tensor n = distance.clamp_min(0);
  const torch::Tensor nf = n.to(torch::kFloat64).clamp_min(1.0);
  torch::Tensor large = exact + (torch::log(nf / exact) / std::log(static_cast<double>(max_distance) / exact) *
                                 (num_buckets - exact))
                                    .to(torch::kInt64);
  large = large.clamp_max(num_buckets - 1);
  return torch::where(n < exact, n, large);
}

torch::Tensor WindowDistances(int window) {
  const torch::Tensor i = torch::arange(window, torch::kInt64).view({window, 1});
  const torch::Tensor j = torch::arange(2 * window, torch::kInt64).view({1, 2 * window});
  return (window + i - j).clamp_min(0);
}

torch::Tensor WindowMask(int window) {
  const torch::Tensor i = torch::arange(window, torch::kInt64).view({window, 1});
  const torch::Tensor j = torch::arange(2 * window, torch::kInt64).view({1, 2 * window});
  const torch::Tensor n = window + i - j;
  return (n >= 1).logical_and(n <= window);
}

torch::Tensor SafeSoftmax(const torch::Tensor& x, double min_x) {
  const torch::Tensor m = std::get<0>(x.max(-1, /*keepdim=*/true)).clamp_min(min_x).detach();
  const torch::Tensor ex = torch::exp(x - m);
  return ex / (ex.sum(-1, /*keepdim=*/true) + torch::exp(min_x - m));
}

torch::Tensor NormalizeHeads(const torch::Tensor& x) {
  return x * torch::rsqrt(x.square().sum(-1, /*keepdim=*/true) + 1e-6);
}

torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& scale, const torch::Tensor& bias, const torch::Tensor& mask,
                     double dropout, bool train) {
  // (..., Lq, h, k) x (..., Lk, h, k) -> (..., h, Lq, Lk)
  torch::Tensor logits = torch::matmul(q.transpose(-3, -2), k.transpose(-3, -2).transpose(-1, -2));
  if (bias.defined()) logits = logits + bias;
  logits = logits * scale.view({-1, 1, 1});
  if (mask.defined()) logits = logits.masked_fill(mask.logical_not(), kMaskedLogit);
  torch::Tensor weights = SafeSoftmax(logits);
  if (train && dropout > 0) weights = torch::dropout(weights, dropout, /*train=*/true);
  return torch::matmul(weights, v.transpose(-3, -2)).transpose(-3, -2);
}

RmsNormImpl::RmsNormImpl(int64_t d, double eps) : eps_(eps) {
  scale = register_parameter("scale", torch::ones({d}));
}

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  return x * torch::rsqrt(x.square().mean(-1, /*keepdim=*/true) + eps_) * scale;
}

GateImpl::GateImpl(BrtGate type, int64_t d, int64_t hidden) : type_(type) {
  if (type == BrtGate::kFixed) {
    bias = register_parameter("bias", torch::randn({d}) * 0.1);
  } else {
    input = register_module("input", MakeLinear(hidden, d, /*bias=*/true, /*init_scale=*/0.1));
    forget = register_module("forget", MakeLinear(hidden, d, /*bias=*/true, /*init_scale=*/0.1));
  }
}

torch::Tensor GateImpl::forward(const torch::Tensor& state, const torch::Tensor& y_out,
                                const torch::Tensor& y_hidden) {
  if (type_ == BrtGate::kFixed) {
    const torch::Tensor g = torch::sigmoid(bias);
    return state * g + y_out * (1 - g);
  }
  const torch::Tensor f = torch::sigmoid(forget(y_hidden) + 1.0);
  const torch::Tensor i = torch::sigmoid(input(y_hidden) - 1.0);
  return state * f + y_out * i;
}

FfnImpl::FfnImpl(int64_t in, int64_t hidden, int64_t out) {
  w1 = register_module("w1", MakeLinear(in, hidden, false));
  w2 = register_module("w2", MakeLinear(hidden, out, false));
}

BrtAttentionImpl::BrtAttentionImpl(const ModelConfig& c, bool recurrent) {
  const int64_t d = c.d_model, H = c.attn_dim(), h = c.num_heads;
  q = register_module("q", MakeLinear(d, H, false));
  k = register_module("k", MakeLinear(d, H, false));
  v = register_module("v", MakeLinear(d, H, false));
  if (recurrent) q2 = register_module("q2", MakeLinear(d, H, false));
  scale = register_parameter("scale", torch::ones({h}));
  if (recurrent) scale2 = register_parameter("scale2", torch::ones({h}));
  rel_bias = register_parameter("rel_bias",
                                torch::randn({h, c.brt.t5_num_buckets}) / std::sqrt(c.brt.t5_num_buckets));
  out = register_module("out", MakeLinear(recurrent ? 2 * H : H, d, false));
}

RecurrentStateImpl::RecurrentStateImpl(const ModelConfig& c) : variant_(c.brt.recurrent_variant) {
  const int64_t d = c.d_model, H = c.attn_dim(), h = c.num_heads, F = c.ffn_dim, S = c.brt.num_states;
  initial_state = register_parameter("initial_state", torch::randn({S, d}) * 0.1);
  norm = register_module("norm", RmsNorm(d, c.norm_eps));
  state_ids = register_parameter("state_ids", torch::randn({S, d}));
  q = register_module("q", MakeLinear(d, H, false));
  k = register_module("k", MakeLinear(d, H, false));
  v = register_module("v", MakeLinear(d, H, false));
  q2 = register_module("q2", MakeLinear(d, H, false));
  scale = register_parameter("scale", torch::ones({h}));
  scale2 = register_parameter("scale2", torch::ones({h}));
  switch (variant_) {
    case BrtRecurrentVariant::kSkip:
      out = register_module("out", MakeLinear(2 * H, d, false));
      gate = register_module("gate", Gate(c.brt.gate, d, 2 * H));
      break;
    case BrtRecurrentVariant::kDual:
      out = register_module("out", MakeLinear(2 * H, d, false));
      gate = register_module("gate", Gate(c.brt.gate, d, 2 * H));
      ffn_norm = register_module("ffn_norm", RmsNorm(d, c.norm_eps));
      ffn = register_module("ffn", Ffn(d, F, d));
      ffn_gate = register_module("ffn_gate", Gate(c.brt.gate, d, F));
      break;
    case BrtRecurrentVariant::kSingle:
      ffn = register_module("ffn", Ffn(2 * H, F, d));
      ffn_gate = register_module("ffn_gate", Gate(c.brt.gate, d, F));
      break;
  }
}

torch::Tensor RecurrentStateImpl::Update(const torch::Tensor& state, const torch::Tensor& a) {
  switch (variant_) {
    case BrtRecurrentVariant::kSkip:
      return gate(state, out(a), a);
    case BrtRecurrentVariant::kDual: {
      const torch::Tensor c1 = gate(state, out(a), a);
      const torch::Tensor hidden = torch::relu(ffn->w1(ffn_norm(c1)));
      return ffn_gate(c1, ffn->w2(hidden), hidden);
    }
    case BrtRecurrentVariant::kSingle: {
      const torch::Tensor hidden = torch::relu(ffn->w1(a));
      return ffn_gate(state, torch::tanh(ffn->w2(hidden)), hidden);
    }
  }
  return state;
}

BrtLayerImpl::BrtLayerImpl(const ModelConfig& c, int index) : config_(c), index_(index) {
  const bool recurrent = c.IsRecurrentLayer(index);
  attn_norm = register_module("attn_norm", RmsNorm(c.d_model, c.norm_eps));
  attn = register_module("attn", BrtAttention(c, recurrent));
  ffn_norm = register_module("ffn_norm", RmsNorm(c.d_model, c.norm_eps));
  ffn = register_module("ffn", Ffn(c.d_model, c.ffn_dim, c.d_model));
  if (recurrent) rec = register_module("rec", RecurrentState(c));
  // Plain members, not buffers: Module::to(dtype) would turn them into floats.
  mask_ = WindowMask(c.brt.window);
  buckets_ = T5Bucket(WindowDistances(c.brt.window), c.brt.t5_num_buckets, c.brt.t5_max_distance);
}

torch::Tensor BrtLayerImpl::Project(torch::nn::Linear proj, const torch::Tensor& x,
                                    bool normalize) const {
  const auto sizes = x.sizes();
  torch::Tensor y = proj(x).view({sizes[0], sizes[1], config_.num_heads, config_.head_dim});
  return normalize ? NormalizeHeads(y) : y;
}

torch::Tensor BrtLayerImpl::AttnScale(const torch::Tensor& s) const {
  return config_.brt.abs_attention_scale ? s.abs() : s;
}

torch::Tensor BrtLayerImpl::Dropout(const torch::Tensor& x) const {
  return is_training() && config_.brt.dropout > 0 ? torch::dropout(x, config_.brt.dropout, true) : x;
}

torch::Tensor BrtLayerImpl::forward(const torch::Tensor& x, BrtCache* cache) {
  return rec ? ForwardRecurrent(x, cache) : ForwardWindowed(x, cache);
}

// All blocks of the segment at once: block t's queries see [block t-1; block t] keys.
torch::Tensor BrtLayerImpl::ForwardWindowed(const torch::Tensor& x, BrtCache* cache) {
  const int64_t B = x.size(0), N = x.size(1), W = config_.brt.window, nb = N / W;
  const int64_t h = config_.num_heads, kd = config_.head_dim;
  const torch::Tensor xn = Dropout(attn_norm(x));
  const torch::Tensor K = Project(attn->k, xn, true);
  const torch::Tensor V = Project(attn->v, xn, false);
  const torch::Tensor Q = Project(attn->q, xn, true);
  const torch::Tensor k_blocks = torch::cat({cache->prev_k[index_], K}, 1).view({B, nb + 1, W, h, kd});
  const torch::Tensor v_blocks = torch::cat({cache->prev_v[index_], V}, 1).view({B, nb + 1, W, h, kd});
  const torch::Tensor k_pair = torch::cat({k_blocks.slice(1, 0, nb), k_blocks.slice(1, 1, nb + 1)}, 2);
  const torch::Tensor v_pair = torch::cat({v_blocks.slice(1, 0, nb), v_blocks.slice(1, 1, nb + 1)}, 2);
  const torch::Tensor bias = attn->rel_bias.index({torch::indexing::Slice(), buckets_});  // (h, W, 2W)
  const torch::Tensor y = Attend(Q.view({B, nb, W, h, kd}), k_pair, v_pair, AttnScale(attn->scale), bias,
                                 mask_, config_.brt.dropout, is_training());
  const torch::Tensor r = x + attn->out(y.reshape({B, N, h * kd}));
  cache->prev_k[index_] = K.slice(1, N - W, N).detach();
  cache->prev_v[index_] = V.slice(1, N - W, N).detach();
  return r + Dropout(ffn(ffn_norm(r)));
}

// Block by block: the recurrent state of block t feeds block t's tokens and is updated from
// blocks t-1 and t (spec-brt.md §1.3).
torch::Tensor BrtLayerImpl::ForwardRecurrent(const torch::Tensor& x, BrtCache* cache) {
  const int64_t B = x.size(0), N = x.size(1), W = config_.brt.window;
  const int64_t h = config_.num_heads, kd = config_.head_dim, S = config_.brt.num_states;
  const torch::Tensor bias = attn->rel_bias.index({torch::indexing::Slice(), buckets_});
  torch::Tensor prev_k = cache->prev_k[index_], prev_v = cache->prev_v[index_];
  torch::Tensor state = cache->state[index_];
  std::vector<torch::Tensor> outputs;
  for (int64_t t = 0; t < N / W; ++t) {
    const torch::Tensor xt = x.slice(1, t * W, (t + 1) * W);
    const torch::Tensor xn = Dropout(attn_norm(xt));
    const torch::Tensor K = Project(attn->k, xn, true);
    const torch::Tensor V = Project(attn->v, xn, false);
    const torch::Tensor Q = Project(attn->q, xn, true);
    const torch::Tensor Q2 = Project(attn->q2, xn, true);
    const torch::Tensor k_pair = torch::cat({prev_k, K}, 1);  // (B, 2W, h, k)
    const torch::Tensor v_pair = torch::cat({prev_v, V}, 1);
    // Horizontal direction: no dropout, no mask, no position bias.
    const torch::Tensor cn = rec->norm(state) + rec->state_ids;
    const torch::Tensor Ks = Project(rec->k, cn, true);
    const torch::Tensor Vs = Project(rec->v, cn, false);
    const torch::Tensor Qs = Project(rec->q, cn, true);
    const torch::Tensor Qs2 = Project(rec->q2, cn, true);
    const torch::Tensor none;
    const torch::Tensor ys_self = Attend(Qs, Ks, Vs, AttnScale(rec->scale), none, none);
    const torch::Tensor ys_cross = Attend(Qs2, k_pair, v_pair, AttnScale(rec->scale2), none, none);
    const torch::Tensor next_state = rec->Update(state, torch::cat({ys_self, ys_cross}, 2).reshape({B, S, 2 * h * kd}));
    // Vertical direction: tokens read the state entering this block.
    const torch::Tensor y_self = Attend(Q, k_pair, v_pair, AttnScale(attn->scale), bias, mask_,
                                        config_.brt.dropout, is_training());
    const torch::Tensor y_cross = Attend(Q2, Ks, Vs, AttnScale(attn->scale2), none, none);
    const torch::Tensor r = xt + attn->out(torch::cat({y_self, y_cross}, 2).reshape({B, W, 2 * h * kd}));
    outputs.push_back(r + Dropout(ffn(ffn_norm(r))));
    prev_k = K;
    prev_v = V;
    state = next_state;
  }
  cache->prev_k[index_] = prev_k.detach();
  cache->prev_v[index_] = prev_v.detach();
  cache->state[index_] = state.detach();
  return torch::cat(outputs, 1);
}

BrtLmImpl::BrtLmImpl(const ModelConfig& config) : config_(config) {
  embed = register_module("embed", torch::nn::Embedding(config.vocab_size, config.d_model));
  {
    torch::NoGradGuard no_grad;
    embed->weight.normal_(0.0, 1.0);
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < config.num_layers; ++i) layers->push_back(BrtLayer(config, i));
  final_norm = register_module("final_norm", RmsNorm(config.d_model, config.norm_eps));
}

BrtCache BrtLmImpl::NewCache(int64_t batch) const {
  const auto options = embed->weight.options().requires_grad(false);
  BrtCache cache;
  for (int i = 0; i < config_.num_layers; ++i) {
    cache.prev_k.push_back(torch::zeros({batch, config_.brt.window, config_.num_heads, config_.head_dim}, options));
    cache.prev_v.push_back(torch::zeros_like(cache.prev_k.back()));
    if (config_.IsRecurrentLayer(i)) {
      const auto& rec = layers->ptr(i)->as<BrtLayerImpl>()->rec;
      cache.state.push_back(rec->initial_state.detach().unsqueeze(0).expand({batch, -1, -1}).clone());
    } else {
      cache.state.emplace_back();
    }
  }
  return cache;
}

void ResetCacheRows(const BrtLmImpl& model, const torch::Tensor& start, BrtCache* cache) {
  const torch::Tensor keep = start.logical_not().to(cache->prev_k[0].dtype());
  for (size_t i = 0; i < cache->prev_k.size(); ++i) {
    cache->prev_k[i] = cache->prev_k[i] * keep.view({-1, 1, 1, 1});
    cache->prev_v[i] = cache->prev_v[i] * keep.view({-1, 1, 1, 1});
    if (cache->state[i].defined()) {
      // The initial state is a parameter: rows that start a document take it with its gradient.
      const auto& rec = model.layers->ptr(i)->as<BrtLayerImpl>()->rec;
      const torch::Tensor init = rec->initial_state.unsqueeze(0).expand_as(cache->state[i]);
      cache->state[i] = torch::where(start.view({-1, 1, 1}), init, cache->state[i]);
    }
  }
}

torch::Tensor BrtLmImpl::forward(const torch::Tensor& tokens, const torch::Tensor& start, BrtCache* cache) {
  TORCH_CHECK(tokens.size(1) % config_.brt.window == 0, "segment length ", tokens.size(1),
              " is not a multiple of the window ", config_.brt.window);
  if (cache->empty()) *cache = NewCache(tokens.size(0));
  ResetCacheRows(*this, start, cache);
  torch::Tensor x = embed(tokens);
  for (const auto& layer : *layers) x = layer->as<BrtLayer>()->forward(x, cache);
  x = final_norm(x);
  if (is_training() && config_.brt.dropout > 0) x = torch::dropout(x, config_.brt.dropout, true);
  double divisor = 1.0;
  if (config_.brt.logit_divisor == LogitDivisor::kSqrtVocab) divisor = std::sqrt(config_.vocab_size);
  if (config_.brt.logit_divisor == LogitDivisor::kSqrtDModel) divisor = std::sqrt(config_.d_model);
  return torch::matmul(x, embed->weight.t()) / divisor;
}

}  // namespace blockserve::trainer
