// Reformer weights as the CPU forward pass reads them: matrices (out, in) in f32 or bf16
// (WeightMatrix, shared with BRT), vectors and the LSH rotations in f32.
#ifndef BLOCKSERVE_MODELS_REFORMER_REFORMER_WEIGHTS_H_
#define BLOCKSERVE_MODELS_REFORMER_REFORMER_WEIGHTS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "models/brt/brt_weights.h"
#include "models/model_config.h"

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

// Every weight of a Reformer model. Tensors stored F32 and served as f32 are read in place
// from the memory-mapped file; everything else is converted once at load.
// Thread-safety: immutable after Load; shared by every sequence.
class ReformerWeights {
 public:
  // `file` must have passed ValidateWeights(config, ...); it is kept alive by the result.
  static absl::StatusOr<std::unique_ptr<ReformerWeights>> Load(const ModelConfig& config,
                                                               std::shared_ptr<const SafetensorsFile> file,
                                                               WeightDType dtype);

  const ModelConfig& config() const { return config_; }
  WeightDType dtype() const { return dtype_; }
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
  ReformerWeights() = default;
  absl::StatusOr<const float*> Vector(const std::string& name);
  absl::StatusOr<WeightMatrix> Matrix(const std::string& name);

  ModelConfig config_;
  WeightDType dtype_ = WeightDType::kF32;
  std::shared_ptr<const SafetensorsFile> file_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_f32_;
  std::vector<std::unique_ptr<std::vector<uint16_t>>> owned_bf16_;
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
