// ReformerDecodeReference: prefill caching and the cached step, written for clarity, not speed.
#include "trainer/reformer_decode_reference.h"

#include <algorithm>
#include <cmath>

#include "trainer/reformer_attention.h"

namespace blockserve::trainer {
namespace {

// (1, L, H*dh) -> (L, H, dh)
torch::Tensor Heads(const torch::Tensor& x, const ModelConfig& c) {
  return x.view({x.size(1), c.num_heads, c.head_dim});
}

}  // namespace

ReformerDecodeReference::ReformerDecodeReference(ReformerLm model) : model_(std::move(model)) {
  cache_.resize(model_->config().num_layers);
}

torch::Tensor ReformerDecodeReference::Prefill(const std::vector<int64_t>& tokens) {
  torch::NoGradGuard no_grad;
  const ModelConfig& c = model_->config();
  const int64_t L = static_cast<int64_t>(tokens.size());
  // The full forward's own padding (ReformerLmImpl::forward); only real tokens are cached.
  const int64_t P = ReformerPaddedLength(c, L);
  std::vector<int64_t> padded = tokens;
  padded.resize(P, c.pad_id);
  const int64_t valid = P == L ? -1 : L;
  const torch::Tensor ids = torch::tensor(padded, torch::kInt64).view({1, P});
  const torch::Tensor x = model_->embed(ids) + model_->Positions(P).unsqueeze(0).to(model_->embed->weight.dtype());
  torch::Tensor x1 = x, x2 = x;
  for (int i = 0; i < c.num_layers; ++i) {
    auto* layer = model_->layers[i]->as<ReformerLayer>();
    auto* attn = layer->attn.get();
    const torch::Tensor h = layer->attn_norm(x2);
    LayerCache& lc = cache_[i];
    if (c.reformer.attn_layers[i] == ReformerAttention::kLsh) {
      const torch::Tensor qk = Heads(attn->qk(h), c), v = Heads(attn->v(h), c);  // (P, H, dh)
      const torch::Tensor khat = NormalizeKeys(qk);
      // The buckets the full forward uses (LshHash over (1, H, P, dh) -> (1, H, nh, P)).
      const torch::Tensor b = LshHash(qk.transpose(0, 1).unsqueeze(0), attn->rotations.to(qk.dtype()),
                                      c.reformer.num_buckets)[0];
      for (int64_t t = 0; t < L; ++t) {
        lc.khat.push_back(khat[t]);
        lc.v.push_back(v[t]);
        lc.buckets.push_back(b.select(2, t));  // (H, nh)
      }
    } else {
      const torch::Tensor k = Heads(attn->k(h), c) / std::sqrt(static_cast<double>(c.head_dim));
      const torch::Tensor v = Heads(attn->v(h), c);
      for (int64_t t = 0; t < L; ++t) {
        lc.khat.push_back(k[t]);
        lc.v.push_back(v[t]);
      }
    }
    std::tie(x1, x2) = layer->forward(x1, x2, valid);
  }
  length_ = L;
  return model_->lm_head(model_->final_norm(torch::cat({x1, x2}, -1)))[0].narrow(0, 0, L);
}

torch::Tensor ReformerDecodeReference::Step(int64_t token, bool* coincides) {
  torch::NoGradGuard no_grad;
  const ModelConfig& c = model_->config();
  const ReformerConfig& r = c.reformer;
  const int64_t L = length_, H = c.num_heads, dh = c.head_dim;
  if (coincides) *coincides = true;
  const torch::Tensor id = torch::tensor({token}, torch::kInt64).view({1, 1});
  const torch::Tensor pos = model_->Positions(L + 1).narrow(0, L, 1).unsqueeze(0);
  const torch::Tensor x = model_->embed(id) + pos.to(model_->embed->weight.dtype());  // (1, 1, d)
  torch::Tensor x1 = x, x2 = x;
  for (int i = 0; i < c.num_layers; ++i) {
    auto* layer = model_->layers[i]->as<ReformerLayer>();
    auto* attn = layer->attn.get();
    const torch::Tensor h = layer->attn_norm(x2);
    LayerCache& lc = cache_[i];
    torch::Tensor o;  // (H, dh)
    if (r.attn_layers[i] == ReformerAttention::kLsh) {
      const torch::Tensor q = Heads(attn->qk(h), c)[0];  // (H, dh)
      const torch::Tensor v = Heads(attn->v(h), c)[0];
      const torch::Tensor khat = NormalizeKeys(q);
      const torch::Tensor b = LshHash(q.view({1, H, 1, dh}), attn->rotations.to(q.dtype()), r.num_buckets)[0]
                                  .select(2, 0);  // (H, nh)
      lc.khat.push_back(khat);
      lc.v.push_back(v);
      lc.buckets.push_back(b);
      const int64_t n = L + 1, chunk = r.lsh_chunk_length, nh = b.size(1);
      const int64_t W = chunk * (1 + r.lsh_num_chunks_before);
      std::vector<torch::Tensor> heads;
      for (int64_t hh = 0; hh < H; ++hh) {
        std::vector<torch::Tensor> outs, lses;
        for (int64_t rr = 0; rr < nh; ++rr) {
          std::vector<int64_t> window;
          if (n <= chunk) {
            for (int64_t j = 0; j < n; ++j) window.push_back(j);
          } else {
            // Sorted order of the round: (bucket, position); the new token is last in its bucket.
            std::vector<int64_t> order(n);
            for (int64_t j = 0; j < n; ++j) order[j] = j;
            std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t bb) {
              return lc.buckets[a][hh][rr].item<int64_t>() < lc.buckets[bb][hh][rr].item<int64_t>();
            });
            const int64_t s = std::find(order.begin(), order.end(), L) - order.begin();
            const int64_t start = (s / chunk - r.lsh_num_chunks_before) * chunk;
            for (int64_t k = 0; k < W; ++k) window.push_back(order[(((start + k) % n) + n) % n]);
            if (coincides && !(s / chunk >= 1 && (s / chunk + 1) * chunk <= n)) *coincides = false;
          }
          std::vector<torch::Tensor> logits, values;
          for (int64_t j : window) {
            const torch::Tensor l = j == L ? torch::full({}, kReformerSelfMaskValue, q.options())
                                           : (q[hh] * lc.khat[j][hh]).sum();
            logits.push_back(l);
            values.push_back(lc.v[j][hh]);
          }
          const torch::Tensor lg = torch::stack(logits), vs = torch::stack(values);
          const torch::Tensor lse = torch::logsumexp(lg, 0);
          outs.push_back(torch::matmul(torch::softmax(lg, 0), vs));  // see LshAttention
          lses.push_back(lse);
        }
        const torch::Tensor w = torch::softmax(torch::stack(lses), 0);
        heads.push_back((w.unsqueeze(-1) * torch::stack(outs)).sum(0));
      }
      o = torch::stack(heads);
    } else {
      const torch::Tensor q = Heads(attn->q(h), c)[0];
      lc.khat.push_back(Heads(attn->k(h), c)[0] / std::sqrt(static_cast<double>(dh)));
      lc.v.push_back(Heads(attn->v(h), c)[0]);
      const int64_t cl = r.local_chunk_length;
      const int64_t first = L + 1 <= cl ? 0 : std::max<int64_t>(0, cl * (L / cl - r.local_num_chunks_before));
      std::vector<torch::Tensor> keys(lc.khat.begin() + first, lc.khat.end()), vals(lc.v.begin() + first, lc.v.end());
      const torch::Tensor K = torch::stack(keys), V = torch::stack(vals);  // (n, H, dh)
      const torch::Tensor logits = (q.unsqueeze(0) * K).sum(-1);         // (n, H)
      const torch::Tensor p = torch::softmax(logits, 0);
      o = (p.unsqueeze(-1) * V).sum(0);
    }
    const torch::Tensor attn_out = attn->out(o.reshape({1, 1, H * dh}));
    const torch::Tensor y1 = x1 + attn_out;
    const torch::Tensor y2 = x2 + layer->ffn->forward(layer->ffn_norm(y1));
    x1 = y1;
    x2 = y2;
  }
  ++length_;
  return model_->lm_head(model_->final_norm(torch::cat({x1, x2}, -1)))[0][0];
}

}  // namespace blockserve::trainer
