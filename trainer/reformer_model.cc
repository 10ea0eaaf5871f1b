// ReformerLm forward (full sequence: the trainer's and the engine prefill's reference).
#include "trainer/reformer_model.h"

#include "trainer/reformer_attention.h"

namespace blockserve::trainer {
namespace {

torch::nn::Linear Linear(int64_t in, int64_t out, bool bias) {
  torch::nn::Linear l(torch::nn::LinearOptions(in, out).bias(bias));
  torch::NoGradGuard no_grad;
  l->weight.normal_(0.0, 0.02);
  if (bias) l->bias.zero_();
  return l;
}

// The layers as one autograd node (see ReformerLmImpl::forward). Parameter gradients are
// accumulated into the layers' parameters during the backward's recomputation.
struct ReversibleLayers : public torch::autograd::Function<ReversibleLayers> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, torch::Tensor x1,
                                                torch::Tensor x2, torch::nn::ModuleList layers, int64_t valid_length) {
    torch::NoGradGuard no_grad;
    for (const auto& layer : *layers) {
      std::tie(x1, x2) = layer->as<ReformerLayerImpl>()->forward(x1, x2, valid_length);
    }
    ctx->saved_data["valid_length"] = valid_length;
    // The model owns the layers and outlives its backward pass.
    ctx->saved_data["layers"] = reinterpret_cast<int64_t>(layers.ptr().get());
    ctx->save_for_backward({x1, x2});
    return {x1, x2};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    torch::Tensor y1 = saved[0].detach(), y2 = saved[1].detach();
    torch::Tensor dy1 = grads[0], dy2 = grads[1];
    auto* layers = reinterpret_cast<torch::nn::ModuleListImpl*>(ctx->saved_data["layers"].toInt());
    const int64_t valid_length = ctx->saved_data["valid_length"].toInt();
    for (int64_t i = static_cast<int64_t>(layers->size()) - 1; i >= 0; --i) {
      auto* layer = (*layers)[i]->as<ReformerLayerImpl>();
      torch::AutoGradMode enable(true);
      // Y2 = X2 + FFN(Y1): gradients of the FFN's parameters and of Y1 through it.
      const torch::Tensor y1_leaf = y1.detach().requires_grad_(true);
      const torch::Tensor g = layer->FeedForward(y1_leaf);
      torch::autograd::backward({g}, {dy2});
      const torch::Tensor x2 = (y2 - g).detach();
      const torch::Tensor dy1_total = dy1 + y1_leaf.grad();
      // Y1 = X1 + Attn(LN(X2)).
      const torch::Tensor x2_leaf = x2.detach().requires_grad_(true);
      const torch::Tensor f = layer->attn(layer->attn_norm(x2_leaf), valid_length);
      torch::autograd::backward({f}, {dy1_total});
      const torch::Tensor x1 = (y1 - f).detach();
      dy2 = dy2 + x2_leaf.grad();
      dy1 = dy1_total;
      y1 = x1;
      y2 = x2;
    }
    return {dy1, dy2, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

ReformerSelfAttentionImpl::ReformerSelfAttentionImpl(const ModelConfig& c, int layer)
    : config_(c), lsh_(c.reformer.attn_layers[layer] == ReformerAttention::kLsh) {
  const int64_t d = c.d_model, A = c.attn_dim();
  if (lsh_) {
    qk = register_module("qk", Linear(d, A, false));
    // Fixed rotations per (layer, head): reproducible from the seed, stored in the checkpoint.
    torch::Generator gen = at::detail::createCPUGenerator(c.reformer.hash_seed + 1000003ull * layer);
    rotations = register_buffer(
        "rotations", torch::randn({c.num_heads, c.head_dim, c.reformer.num_hashes, c.reformer.rotation_size() / 2},
                                  gen, torch::TensorOptions().dtype(torch::kFloat32)));
  } else {
    q = register_module("q", Linear(d, A, false));
    k = register_module("k", Linear(d, A, false));
  }
  v = register_module("v", Linear(d, A, false));
  out = register_module("out", Linear(A, d, false));
}

torch::Tensor ReformerSelfAttentionImpl::Heads(const torch::Tensor& x) const {
  return x.view({x.size(0), x.size(1), config_.num_heads, config_.head_dim}).transpose(1, 2);
}

torch::Tensor ReformerSelfAttentionImpl::forward(const torch::Tensor& x, int64_t valid_length) {
  torch::Tensor o;
  if (lsh_) {
    o = LshAttention(Heads(qk(x)), Heads(v(x)), rotations, config_.reformer.num_buckets,
                     config_.reformer.lsh_chunk_length, valid_length)
            .out;
  } else {
    o = LocalAttention(Heads(q(x)), Heads(k(x)), Heads(v(x)), config_.reformer.local_chunk_length);
  }
  return out(o.transpose(1, 2).reshape({x.size(0), x.size(1), config_.attn_dim()}));
}

ReformerLayerImpl::ReformerLayerImpl(const ModelConfig& c, int layer) : config_(c) {
  const int64_t d = c.d_model, F = c.ffn_dim;
  attn_norm = register_module("attn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(c.norm_eps)));
  attn = register_module("attn", ReformerSelfAttention(c, layer));
  ffn_norm = register_module("ffn_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(c.norm_eps)));
  ffn = register_module("ffn", torch::nn::Sequential());
  ffn->push_back("w1", Linear(d, F, true));
  if (c.reformer.hidden_act == Activation::kGelu) {
    ffn->push_back("act", torch::nn::GELU());
  } else {
    ffn->push_back("act", torch::nn::ReLU());
  }
  ffn->push_back("w2", Linear(F, d, true));
}

std::pair<torch::Tensor, torch::Tensor> ReformerLayerImpl::forward(const torch::Tensor& x1, const torch::Tensor& x2,
                                                                   int64_t valid_length) {
  const torch::Tensor y1 = x1 + attn(attn_norm(x2), valid_length);
  const torch::Tensor y2 = x2 + FeedForward(y1);
  return {y1, y2};
}

torch::Tensor ReformerLayerImpl::FeedForward(const torch::Tensor& y1) {
  const int64_t L = y1.size(1);
  if (ffn_chunk <= 0 || L <= ffn_chunk) return ffn->forward(ffn_norm(y1));
  std::vector<torch::Tensor> parts;
  for (int64_t begin = 0; begin < L; begin += ffn_chunk) {
    parts.push_back(ffn->forward(ffn_norm(y1.narrow(1, begin, std::min(ffn_chunk, L - begin)))));
  }
  return torch::cat(parts, 1);
}

void ReformerLmImpl::set_ffn_chunk(int64_t chunk) {
  for (const auto& layer : *layers) layer->as<ReformerLayerImpl>()->ffn_chunk = chunk;
}

ReformerLmImpl::ReformerLmImpl(const ModelConfig& config, double axial_init_std) : config_(config) {
  const ReformerConfig& r = config.reformer;
  const int64_t d = config.d_model, V = config.vocab_size;
  embed = register_module("embed", torch::nn::Embedding(V, d));
  {
    torch::NoGradGuard no_grad;
    embed->weight.normal_(0.0, 0.02);
  }
  auto pos = register_module("pos", std::make_shared<torch::nn::Module>());
  auto axial = pos->register_module("axial", std::make_shared<torch::nn::Module>());
  axial0 = axial->register_parameter("0", torch::randn({r.axial_pos_shape[0], r.axial_pos_embds_dim[0]}) * axial_init_std);
  axial1 = axial->register_parameter("1", torch::randn({r.axial_pos_shape[1], r.axial_pos_embds_dim[1]}) * axial_init_std);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < config.num_layers; ++i) layers->push_back(ReformerLayer(config, i));
  final_norm =
      register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({2 * d}).eps(config.norm_eps)));
  lm_head = register_module("lm_head", Linear(2 * d, V, true));
}

torch::Tensor ReformerLmImpl::Positions(int64_t length) const {
  const int64_t n2 = config_.reformer.axial_pos_shape[1];
  // Positions past the table (only pads reach them) reuse the last row.
  const torch::Tensor p = torch::arange(length, torch::kInt64).clamp_max(config_.reformer.max_position_embeddings - 1);
  // pos_emb[p] = concat(w0[p / n2], w1[p % n2]) (spec §3.5; row-major over (n1, n2)).
  return torch::cat({axial0.index_select(0, p.div(n2, "floor")), axial1.index_select(0, p.remainder(n2))}, -1);
}

torch::Tensor ReformerLmImpl::forward(const torch::Tensor& tokens, bool reversible) {
  const int64_t L = tokens.size(1);
  TORCH_CHECK(L <= config_.reformer.max_position_embeddings, "sequence of ", L, " tokens is longer than ",
              config_.reformer.max_position_embeddings, " positions");
  const int64_t P = ReformerPaddedLength(config_, L);
  const torch::Tensor padded =
      P == L ? tokens
             : torch::cat({tokens, torch::full({tokens.size(0), P - L}, config_.pad_id, tokens.options())}, 1);
  const int64_t valid = P == L ? -1 : L;
  const torch::Tensor x = embed(padded) + Positions(P).unsqueeze(0);
  torch::Tensor x1 = x, x2 = x;
  if (reversible && torch::GradMode::is_enabled()) {
    const auto outs = ReversibleLayers::apply(x1, x2, layers, valid);
    x1 = outs[0];
    x2 = outs[1];
  } else {
    for (const auto& layer : *layers) std::tie(x1, x2) = layer->as<ReformerLayer>()->forward(x1, x2, valid);
  }
  const torch::Tensor logits = lm_head(final_norm(torch::cat({x1, x2}, -1)));
  return P == L ? logits : logits.narrow(1, 0, L);
}

}  // namespace blockserve::trainer
