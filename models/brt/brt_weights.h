// BRT weights as the CPU forward pass reads them (WeightMatrix and vectors, models/weight_store.h).
#ifndef BLOCKSERVE_MODELS_BRT_BRT_WEIGHTS_H_
#define BLOCKSERVE_MODELS_BRT_BRT_WEIGHTS_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "models/model_config.h"
#include "models/weight_store.h"

namespace blockserve {

// A meliad gate (spec-brt.md §1.1): fixed (bias) or lstm (input/forget linears with biases).
struct GateWeights {
  const float* bias = nullptr;                 // fixed: (d)
  WeightMatrix input, forget;                  // lstm: (d, hidden)
  const float* input_bias = nullptr;           // lstm: (d)
  const float* forget_bias = nullptr;
};

// One layer. Recurrent-only members are null/empty in the other layers.
struct BrtLayerWeights {
  bool recurrent = false;
  const float* attn_norm = nullptr;  // (d)
  WeightMatrix q, k, v, q2;          // (H, d)
  const float* scale = nullptr;      // (h): abs() applied when the config says so
  const float* scale2 = nullptr;     // (h)
  // (h, W): the T5 bias of key slot j of a query's window (distance W - j), precomputed.
  const float* window_bias = nullptr;
  WeightMatrix out;                  // (d, H) or (d, 2H)
  const float* ffn_norm = nullptr;   // (d)
  WeightMatrix w1, w2;               // (F, d), (d, F)

  // The horizontal (state) direction.
  const float* initial_state = nullptr;  // (S, d)
  const float* rec_norm = nullptr;       // (d)
  const float* state_ids = nullptr;      // (S, d)
  WeightMatrix rq, rk, rv, rq2;          // (H, d)
  const float* rscale = nullptr;         // (h)
  const float* rscale2 = nullptr;        // (h)
  WeightMatrix rout;                     // (d, 2H): skip, dual
  GateWeights gate;                      // skip, dual
  const float* rffn_norm = nullptr;      // dual
  WeightMatrix rw1, rw2;                 // dual: (F, d); single: (F, 2H); both: (d, F)
  GateWeights ffn_gate;                  // dual, single
};

// Every weight of a BRT model, loaded through a WeightStore (in place where possible).
// Thread-safety: immutable after Load; shared by every sequence.
class BrtWeights {
 public:
  // `file` must outlive the result (zero-copy views). The file must have passed ValidateWeights.
  static absl::StatusOr<std::unique_ptr<BrtWeights>> Load(const ModelConfig& config,
                                                          std::shared_ptr<const SafetensorsFile> file,
                                                          WeightDType dtype);

  const ModelConfig& config() const { return config_; }
  WeightDType dtype() const { return store_.dtype(); }
  const WeightMatrix& embed() const { return embed_; }  // (V, d), tied output projection
  const float* final_norm() const { return final_norm_; }
  const BrtLayerWeights& layer(int i) const { return layers_[i]; }
  float logit_scale() const { return logit_scale_; }  // 1 / divisor
  // Bytes a decode step reads: every matrix once (the embedding counted as the output head).
  size_t decode_weight_bytes() const;

 private:
  BrtWeights(const ModelConfig& config, std::shared_ptr<const SafetensorsFile> file, WeightDType dtype)
      : config_(config), store_(std::move(file), dtype) {}
  absl::StatusOr<GateWeights> Gate(const std::string& prefix);

  ModelConfig config_;
  WeightStore store_;
  WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<BrtLayerWeights> layers_;
  float logit_scale_ = 1.0f;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_BRT_BRT_WEIGHTS_H_
