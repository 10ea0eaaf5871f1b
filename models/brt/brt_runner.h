// BrtRunner: the CPU ModelRunner of Block-Recurrent Transformers (prefill, batched decode, block-end update).
#ifndef BLOCKSERVE_MODELS_BRT_BRT_RUNNER_H_
#define BLOCKSERVE_MODELS_BRT_BRT_RUNNER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "engine/api/model_runner.h"
#include "models/brt/brt_state.h"
#include "models/brt/brt_weights.h"
#include "models/model_config.h"
#include "models/pooled_matmul.h"

namespace blockserve {

struct RunnerOptions {
  WeightDType weight_dtype = WeightDType::kF32;
  int num_threads = 0;  // 0: one per hardware thread
  std::string device = "cpu";  // "cpu" or "cuda" (LoadModelRunner checks it)
};

// Executes BRT steps on the CPU (spec-brt.md; the trainer's libtorch model is the reference).
//  - Prefill runs block by block: the tokens of a block go through each layer together (GEMMs
//    over up to W tokens); a block end inside the item updates the recurrent state.
//  - Decode runs every single-token item of a step together: each weight matrix is read once
//    for the whole batch; attention runs per sequence against its own rings and state.
// Thread-safety: see engine::ModelRunner (one Execute at a time); uses its own thread pool.
class BrtRunner final : public engine::ModelRunner {
 public:
  // `weights` must have passed ValidateWeights(config, ...); `name` is reported in info().
  static absl::StatusOr<std::unique_ptr<BrtRunner>> Create(const ModelConfig& config,
                                                           std::shared_ptr<const SafetensorsFile> weights,
                                                           const std::string& name, const RunnerOptions& options);
  ~BrtRunner() override;

  const engine::ModelInfo& info() const override { return info_; }
  std::unique_ptr<engine::SequenceState> NewState() const override;
  std::unique_ptr<engine::SequenceState> CloneState(const engine::SequenceState& state) const override;
  absl::Status Execute(absl::Span<const engine::StepItem> items) override;
  absl::StatusOr<std::string> SerializeState(const engine::SequenceState& state) const override;
  absl::StatusOr<std::unique_ptr<engine::SequenceState>> DeserializeState(absl::string_view bytes) const override;

  const BrtWeights& weights() const { return *weights_; }

 private:
  struct Scratch;
  BrtRunner() = default;

  void Prefill(const engine::StepItem& item);
  // Tokens [0, m) at the state's position, all inside one block. logits: nullptr, or
  // (all_rows ? m : 1) * V floats.
  void ForwardChunk(BrtSequenceState* state, const int32_t* tokens, int m, float* logits, bool all_rows);
  void DecodeBatch(const std::vector<const engine::StepItem*>& items);
  // The recurrent state update at the end of a block of layer `layer` (spec-brt.md §1.3).
  void BlockEnd(BrtSequenceState* state, int layer);
  // cn = RMSNorm(C) + state IDs; Ks = normalize(cn Wk_s); Vs = cn Wv_s.
  void ProjectState(int layer, const float* c, float* ks, float* vs);
  // out (rows, V) = final norm, tied head, 1/divisor. `decode`: always the batched GEMV, whose
  // rows do not depend on the batch (prefill may use BLAS for many rows).
  void Logits(const float* x, size_t rows, float* out, bool decode);

  ModelConfig config_;
  std::unique_ptr<BrtWeights> weights_;
  BrtStateLayout layout_;
  std::vector<float> fresh_state_;  // the document-start state (initial C and its K/V)
  engine::ModelInfo info_;
  std::string fingerprint_;  // the model (config and weights) in state snapshots
  PooledMatmul pool_;  // weight products and parallel loops
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_BRT_BRT_RUNNER_H_
