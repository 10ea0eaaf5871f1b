// Reformer weights as the CPU forward pass reads them: matrices (out, in) in f32 or bf16,
// vectors and the LSH rotations in f32 (models/weight_store.h).
#ifndef BLOCKSERVE_MODELS_REFORMER_REFORMER_WEIGHTS_H_
#define BLOCKSERVE_MODELS_REFORMER_REFORMER_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "models/model_config.h"
#include "models/weight_store.h"

namespace blockserve {

// One reversible layer (docs/checkpoint-format.md, "layers.{i}."). LSH layers have `qk` and
// `rotations`, local layers `q` and `k`; the other members are common.
struct ReformerLayerWeights {
  bool lsh = false;
  const float* attn_norm_weight = nullptr;  // (d)
  const float* attn_norm_bias = nullptr;    // (d)
  WeightMatrix qk;                          // LSH: (A, d), shared query/key
  WeightMatrix q, k;                        // local: (A, d)
  WeightMatrix v;                           // (A, d)
  // LSH: (H, dh, num_hashes, rotation_size / 2), the fixed random rotations of the hash.
  const float* rotations = nullptr;
  WeightMatrix out;                         // (d, A), no bias
  const float* ffn_norm_weight = nullptr;   // (d)
  const float* ffn_norm_bias = nullptr;     // (d)
  WeightMatrix w1;                          // (F, d)
  const float* b1 = nullptr;                // (F)
  WeightMatrix w2;                          // (d, F)
  const float* b2 = nullptr;                // (d)
};

// Every weight of a Reformer model, loaded through a WeightStore (in place where possible).
// Thread-safety: immutable after Load; shared by every sequence.
class ReformerWeights {
 public:
  // `file` must have passed ValidateWeights(config, ...); it is kept alive by the result.
  static absl::StatusOr<std::unique_ptr<ReformerWeights>> Load(const ModelConfig& config,
                                                               std::shared_ptr<const SafetensorsFile> file,
                                                               WeightDType dtype);

  const ModelConfig& config() const { return config_; }
  WeightDType dtype() const { return store_.dtype(); }
  const WeightMatrix& embed() const { return embed_; }        // (V, d)
  const float* axial0() const { return axial0_; }              // (n1, d1)
  const float* axial1() const { return axial1_; }              // (n2, d2)
  const ReformerLayerWeights& layer(int i) const { return layers_[i]; }
  const float* final_norm_weight() const { return final_norm_weight_; }  // (2d)
  const float* final_norm_bias() const { return final_norm_bias_; }      // (2d)
  const WeightMatrix& lm_head() const { return lm_head_; }    // (V, 2d)
  const float* lm_head_bias() const { return lm_head_bias_; }  // (V)

  // out (d) = the axial position embedding of position p, concat(axial0[p / n2],
  // axial1[p % n2]) (spec-reformer.md §3.5).
  void Position(int64_t p, float* out) const;

 private:
  ReformerWeights(const ModelConfig& config, std::shared_ptr<const SafetensorsFile> file, WeightDType dtype)
      : config_(config), store_(std::move(file), dtype) {}

  ModelConfig config_;
  WeightStore store_;
  WeightMatrix embed_;
  const float* axial0_ = nullptr;
  const float* axial1_ = nullptr;
  std::vector<ReformerLayerWeights> layers_;
  const float* final_norm_weight_ = nullptr;
  const float* final_norm_bias_ = nullptr;
  WeightMatrix lm_head_;
  const float* lm_head_bias_ = nullptr;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_REFORMER_REFORMER_WEIGHTS_H_
