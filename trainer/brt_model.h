// libtorch Block-Recurrent Transformer (slide / brt / xl) following spec-brt.md (meliad 2022).
#ifndef BLOCKSERVE_TRAINER_BRT_MODEL_H_
#define BLOCKSERVE_TRAINER_BRT_MODEL_H_

#include <torch/torch.h>

#include <vector>

#include "models/model_config.h"

namespace blockserve::trainer {

// ---- building blocks (exposed for tests) -----------------------------------------------

// T5 relative-position buckets, unidirectional (spec-brt.md §1.1): distance n >= 0 maps to n
// when n < num_buckets / 2, else logarithmically up to num_buckets - 1 at max_distance.
// distance: int64 tensor of any shape; returns int64 of the same shape.
torch::Tensor T5Bucket(const torch::Tensor& distance, int num_buckets, int max_distance);

// The sliding-window mask of one block: (W, 2W) bool, query i (at position W + i of the
// [previous block; current block] window) may see key j iff 1 <= W + i - j <= W: exactly the
// W previous tokens, never itself.
torch::Tensor WindowMask(int window);

// Distances W + i - j of the same (W, 2W) window, clamped at 0 (int64), for the T5 bias.
torch::Tensor WindowDistances(int window);

// meliad's safe softmax over the last axis: m = max(max(x), min_x);
// softmax = exp(x - m) / (sum exp(x - m) + exp(min_x - m)). A row of -1e6 attends to nothing.
torch::Tensor SafeSoftmax(const torch::Tensor& x, double min_x = -1000.0);

// Per-head L2 normalization over the last axis: x * rsqrt(sum(x^2) + 1e-6).
torch::Tensor NormalizeHeads(const torch::Tensor& x);

// Attention of queries q (..., Lq, h, k) against keys/values (..., Lk, h, k):
// logits = (q.k + bias) * scale[h]; masked (mask false) -> -1e6; SafeSoftmax; @ v.
// bias: (h, Lq, Lk) or undefined; mask: (Lq, Lk) bool or undefined; scale: (h).
// dropout: probability applied to the attention weights when `train`.
// Returns (..., Lq, h, k).
torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& scale, const torch::Tensor& bias, const torch::Tensor& mask,
                     double dropout = 0.0, bool train = false);

// ---- modules (parameter names are the checkpoint names of docs/checkpoint-format.md) ----

// RMSNorm with scale only: x * rsqrt(mean(x^2) + eps) * scale. Param: scale (d).
class RmsNormImpl : public torch::nn::Module {
 public:
  RmsNormImpl(int64_t d, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor scale;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

// A meliad gate (spec-brt.md §1.1): fixed ("bias") or lstm, combining the old value `state`
// with a candidate `y_out`; lstm gates read `y_hidden` (width `hidden`).
class GateImpl : public torch::nn::Module {
 public:
  GateImpl(BrtGate type, int64_t d, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& state, const torch::Tensor& y_out,
                        const torch::Tensor& y_hidden);
  torch::Tensor bias;                          // fixed: (d)
  torch::nn::Linear input{nullptr}, forget{nullptr};  // lstm: (d, hidden) + bias (d)

 private:
  BrtGate type_;
};
TORCH_MODULE(Gate);

// ReLU FFN without biases: w2(relu(w1(x))). w1: (F, in), w2: (d, F).
class FfnImpl : public torch::nn::Module {
 public:
  FfnImpl(int64_t in, int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x) { return w2(torch::relu(w1(x))); }
  torch::nn::Linear w1{nullptr}, w2{nullptr};
};
TORCH_MODULE(Ffn);

// Token attention of one layer: q, k, v (+ q2 in recurrent layers), learned scales, T5 table,
// output projection (d, H) or (d, 2H).
class BrtAttentionImpl : public torch::nn::Module {
 public:
  BrtAttentionImpl(const ModelConfig& c, bool recurrent);
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, q2{nullptr}, out{nullptr};
  torch::Tensor scale, scale2, rel_bias;
};
TORCH_MODULE(BrtAttention);

// The horizontal (state) direction of a recurrent layer.
class RecurrentStateImpl : public torch::nn::Module {
 public:
  explicit RecurrentStateImpl(const ModelConfig& c);
  // C_{t+1} from C_t (B, S, d) and A = [state self-attn; state->token attn] (B, S, 2H).
  torch::Tensor Update(const torch::Tensor& state, const torch::Tensor& attn_out);

  torch::Tensor initial_state, state_ids, scale, scale2;
  RmsNorm norm{nullptr}, ffn_norm{nullptr};
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, q2{nullptr}, out{nullptr};
  Gate gate{nullptr}, ffn_gate{nullptr};
  Ffn ffn{nullptr};

 private:
  BrtRecurrentVariant variant_;
};
TORCH_MODULE(RecurrentState);

// Carried across segments, one row per batch slot (spec-brt.md §3.1). Stored detached:
// gradients are truncated at segment boundaries.
struct BrtCache {
  std::vector<torch::Tensor> prev_k, prev_v;  // per layer: (B, W, h, k), keys normalized
  std::vector<torch::Tensor> state;           // per layer: (B, S, d) in recurrent layers, else undefined
  bool empty() const { return prev_k.empty(); }
};

class BrtLayerImpl : public torch::nn::Module {
 public:
  BrtLayerImpl(const ModelConfig& c, int index);
  // x: (B, N, d), N a multiple of W. Reads and replaces this layer's entries of `cache`.
  torch::Tensor forward(const torch::Tensor& x, BrtCache* cache);

  RmsNorm attn_norm{nullptr}, ffn_norm{nullptr};
  BrtAttention attn{nullptr};
  Ffn ffn{nullptr};
  RecurrentState rec{nullptr};

 private:
  torch::Tensor Project(torch::nn::Linear proj, const torch::Tensor& x, bool normalize) const;
  torch::Tensor AttnScale(const torch::Tensor& s) const;
  torch::Tensor Dropout(const torch::Tensor& x) const;
  torch::Tensor ForwardWindowed(const torch::Tensor& x, BrtCache* cache);   // non-recurrent
  torch::Tensor ForwardRecurrent(const torch::Tensor& x, BrtCache* cache);  // block by block

  ModelConfig config_;
  int index_;
  torch::Tensor mask_;      // (W, 2W) bool
  torch::Tensor buckets_;   // (W, 2W) int64
};
TORCH_MODULE(BrtLayer);

class BrtLmImpl : public torch::nn::Module {
 public:
  explicit BrtLmImpl(const ModelConfig& config);

  // A cache for `batch` slots: zero K/V and the initial state (the document-start state).
  BrtCache NewCache(int64_t batch) const;

  // tokens: (B, N) int64, N a multiple of W; start: (B) bool, rows whose segment begins a
  // document (their cache rows are reset first). Updates `cache`; returns logits (B, N, V).
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& start, BrtCache* cache);

  const ModelConfig& config() const { return config_; }

  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList layers;
  RmsNorm final_norm{nullptr};

 private:
  ModelConfig config_;
};
TORCH_MODULE(BrtLm);

// Resets the cache rows where `start` (B) is true: zero K/V, initial recurrent state.
void ResetCacheRows(const BrtLmImpl& model, const torch::Tensor& start, BrtCache* cache);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_BRT_MODEL_H_
