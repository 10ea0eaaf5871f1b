// libtorch Reformer language model (spec-reformer.md §3): axial positions, reversible two-stream
// layers of LSH or local attention and a feed-forward, concatenated streams, final LayerNorm, head.
#ifndef BLOCKSERVE_TRAINER_REFORMER_MODEL_H_
#define BLOCKSERVE_TRAINER_REFORMER_MODEL_H_

#include <torch/torch.h>

#include "models/model_config.h"

namespace blockserve::trainer {

// One layer's attention. LSH: shared `qk` and `v` projections plus fixed random `rotations`
// (a buffer drawn from the config's hash_seed, never trained, exported with the weights);
// local: `q`, `k`, `v`. `out` maps the heads back to d. Names are the checkpoint's.
class ReformerSelfAttentionImpl : public torch::nn::Module {
 public:
  ReformerSelfAttentionImpl(const ModelConfig& c, int layer);
  // x: (B, L, d), already normalized; returns (B, L, d). Positions from `valid_length` on
  // (-1: none) are right padding (see LshAttention).
  torch::Tensor forward(const torch::Tensor& x, int64_t valid_length = -1);

  torch::nn::Linear qk{nullptr}, q{nullptr}, k{nullptr}, v{nullptr}, out{nullptr};
  torch::Tensor rotations;  // (H, dh, num_hashes, rotation_size / 2)

 private:
  torch::Tensor Heads(const torch::Tensor& x) const;  // (B, L, H*dh) -> (B, H, L, dh)
  ModelConfig config_;
  bool lsh_;
};
TORCH_MODULE(ReformerSelfAttention);

// Y1 = X1 + Attention(LayerNorm(X2)); Y2 = X2 + FFN(Y1), FFN = LayerNorm, w1 + bias, act, w2 + bias.
class ReformerLayerImpl : public torch::nn::Module {
 public:
  ReformerLayerImpl(const ModelConfig& c, int layer);
  // x1, x2: (B, L, d) -> (y1, y2); positions from `valid_length` on (-1: none) are padding.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x1, const torch::Tensor& x2,
                                                  int64_t valid_length = -1);

  // FFN(LayerNorm(y1)), run over at most `ffn_chunk` positions at a time when ffn_chunk > 0
  // (the Reformer's chunked feed-forward: the F-wide hidden activation exists for one chunk at a
  // time; positions are independent, so the result is the same).
  torch::Tensor FeedForward(const torch::Tensor& y1);

  torch::nn::LayerNorm attn_norm{nullptr}, ffn_norm{nullptr};
  ReformerSelfAttention attn{nullptr};
  torch::nn::Sequential ffn{nullptr};  // w1, activation, w2 (named "w1", "act", "w2")
  int64_t ffn_chunk = 0;

 private:
  ModelConfig config_;
};
TORCH_MODULE(ReformerLayer);

class ReformerLmImpl : public torch::nn::Module {
 public:
  // The axial position tables start at N(0, axial_init_std). HF uses 1.0 (axial_norm_std); at
  // this project's small scale that swamps the N(0, 0.02) token embeddings and training stalls
  // near unigram statistics (docs/training.md), hence the default 0.02.
  explicit ReformerLmImpl(const ModelConfig& config, double axial_init_std = kDefaultAxialInitStd);
  static constexpr double kDefaultAxialInitStd = 0.02;
  // Chunked feed-forward in every layer (see ReformerLayerImpl::FeedForward); 0: whole sequence.
  void set_ffn_chunk(int64_t chunk);
  // tokens: (B, L) int64 from position 0, L at most max_position_embeddings. Returns logits
  // (B, L, V). Internally the sequence runs right-padded to ReformerPaddedLength(L) (pads:
  // pad_id tokens, the pad bucket in LSH layers, never seen by a real position). With `reversible`, the layers run
  // as one autograd node that keeps only their final outputs and, in the backward pass,
  // reconstructs each layer's inputs from its outputs (X2 = Y2 - FFN(Y1), X1 = Y1 - Attn(X2))
  // and recomputes it: activation memory independent of the number of layers (RevNet).
  torch::Tensor forward(const torch::Tensor& tokens, bool reversible = false);
  // Axial position embeddings of positions [0, L): (L, d).
  torch::Tensor Positions(int64_t length) const;
  const ModelConfig& config() const { return config_; }

  torch::nn::Embedding embed{nullptr};
  torch::Tensor axial0, axial1;  // "pos.axial.0" (n1, d1), "pos.axial.1" (n2, d2)
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};  // over 2d
  torch::nn::Linear lm_head{nullptr};        // (V, 2d) with bias

 private:
  ModelConfig config_;
};
TORCH_MODULE(ReformerLm);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_REFORMER_MODEL_H_
