// A slow, token-by-token reference of the Reformer's cached decode (docs/reformer-decoding.md):
// the definition the engine's decode is tested against. Not for serving.
#ifndef BLOCKSERVE_TRAINER_REFORMER_DECODE_REFERENCE_H_
#define BLOCKSERVE_TRAINER_REFORMER_DECODE_REFERENCE_H_

#include <torch/torch.h>

#include <vector>

#include "trainer/reformer_model.h"

namespace blockserve::trainer {

// Thread-safety: none; one sequence per object. The model must outlive it.
class ReformerDecodeReference {
 public:
  explicit ReformerDecodeReference(ReformerLm model);

  // The first prompt (from position 0) through the full forward; caches every token's keys,
  // values and buckets as that forward computed them (right-padded as the forward pads; only
  // the real tokens are cached). Returns logits (L, V).
  torch::Tensor Prefill(const std::vector<int64_t>& tokens);

  // One more token, computed once against the cache (the cached-step definition). Returns its
  // logits (V). `coincides` (optional) is set when, in every LSH layer, head and round, the
  // token's window is the one the full forward would use (docs/reformer-decoding.md).
  torch::Tensor Step(int64_t token, bool* coincides = nullptr);

  int64_t length() const { return length_; }

 private:
  struct LayerCache {
    std::vector<torch::Tensor> khat, v;   // LSH: per token (H, dh); local: k / sqrt(dh) and v
    std::vector<torch::Tensor> buckets;   // LSH: per token (H, nh) int64, no round offsets
  };
  ReformerLm model_;
  std::vector<LayerCache> cache_;
  int64_t length_ = 0;
};

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_REFORMER_DECODE_REFERENCE_H_
