// ReformerRunner: the CPU ModelRunner of the Reformer family (full-forward prefill, cached
// decode steps batched across sequences; docs/reformer-decoding.md).
#ifndef BLOCKSERVE_MODELS_REFORMER_REFORMER_RUNNER_H_
#define BLOCKSERVE_MODELS_REFORMER_REFORMER_RUNNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "engine/api/model_runner.h"
#include "models/brt/brt_runner.h"  // RunnerOptions
#include "models/model_config.h"
#include "models/pooled_matmul.h"
#include "models/reformer/reformer_state.h"
#include "models/reformer/reformer_weights.h"

namespace blockserve {

// Executes Reformer steps on the CPU. The trainer's libtorch model (full forward) and
// ReformerDecodeReference (cached step) are the references.
//  - An item whose state is at position 0 is a prefill: its tokens run through the full
//    chunked forward (LSH: hash, sort by (bucket, position), chunks attend to the previous
//    chunk(s) and their own, rounds combined; local: chunked windows), right-padded to a
//    multiple of the chunk lengths' lcm when needed (pads never reach a real token). Every
//    token's keys, values and buckets are cached.
//  - Any later token runs the cached step against the cache: per LSH head and round the
//    window of W = c * (1 + lsh_num_chunks_before) sorted slots around the token's sorted
//    index, wrapping within the round; local layers read their ring. Single-token items are
//    decoded together (each weight matrix read once per step, results independent of the
//    batch); a multi-token item at a position > 0 is fed token by token through the same path.
// Thread-safety: see engine::ModelRunner (one Execute at a time); uses its own thread pool.
class ReformerRunner final : public engine::ModelRunner {
 public:
  // `weights` must have passed ValidateWeights(config, ...); `name` is reported in info().
  static absl::StatusOr<std::unique_ptr<ReformerRunner>> Create(const ModelConfig& config,
                                                                std::shared_ptr<const SafetensorsFile> weights,
                                                                const std::string& name,
                                                                const RunnerOptions& options);
  ~ReformerRunner() override;

  const engine::ModelInfo& info() const override { return info_; }
  std::unique_ptr<engine::SequenceState> NewState() const override;
  std::unique_ptr<engine::SequenceState> CloneState(const engine::SequenceState& state) const override;
  absl::Status Execute(absl::Span<const engine::StepItem> items) override;
  absl::StatusOr<std::string> SerializeState(const engine::SequenceState& state) const override;
  absl::StatusOr<std::unique_ptr<engine::SequenceState>> DeserializeState(absl::string_view bytes) const override;

  const ReformerWeights& weights() const { return *weights_; }
  const ModelConfig& config() const { return config_; }
  // The length a prefill of `length` tokens is padded to: a multiple of the lcm m of the
  // chunk lengths in use when length exceeds the smallest of them and is not a multiple of m.
  int64_t PaddedLength(int64_t length) const;

 private:
  struct Scratch;
  ReformerRunner() = default;

  // The full forward of a state at position 0.
  void Prefill(const engine::StepItem& item);
  // One cached step for each item (one token each, distinct states).
  void DecodeBatch(const std::vector<const engine::StepItem*>& items);
  // Attention of a prefill's L tokens in LSH layer `layer`: q/qk and v (L, A) -> out (L, A),
  // caching keys, values and buckets in `state`.
  void PrefillLsh(int layer, ReformerSequenceState* state, const float* qk, const float* v, int64_t L,
                  float* out);
  void PrefillLocal(int layer, ReformerSequenceState* state, const float* q, const float* k, const float* v,
                    int64_t L, float* out);
  // One token's cached step in one layer (out: A floats).
  void DecodeLsh(int layer, ReformerSequenceState* state, const float* qk, const float* v, float* out) const;
  void DecodeLocal(int layer, ReformerSequenceState* state, const float* q, const float* k, const float* v,
                   float* out) const;
  // Buckets of one token (H * nh, head-major) from its raw shared query/key (A).
  void Hash(int layer, const float* qk, int32_t* buckets) const;
  // x (rows, d) = embed[ids] + pos(positions).
  void Embed(const int32_t* ids, const int64_t* positions, size_t rows, float* x);
  // The layer's FFN half: x2 += FFN(LayerNorm(x1)) for `rows` rows; decode: batched GEMV.
  void FeedForward(int layer, const float* x1, float* x2, size_t rows, bool decode);
  // out (rows, V) = lm_head(LayerNorm([x1; x2])) + bias; decode: batched GEMV.
  void Logits(const float* x1, const float* x2, size_t rows, float* out, bool decode);
  // y (m, rows) = x @ W^T: the batched GEMV when `decode`, else BLAS.
  void Project(const WeightMatrix& w, const float* x, size_t m, float* y, bool decode) {
    decode ? pool_.MatVec(w, x, m, y) : pool_.Gemm(w, x, m, y);
  }

  ModelConfig config_;
  std::unique_ptr<ReformerWeights> weights_;
  ReformerStateShape shape_;
  engine::ModelInfo info_;
  std::string fingerprint_;  // the model (config and weights) in state snapshots
  PooledMatmul pool_;  // weight products and parallel loops
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_REFORMER_REFORMER_RUNNER_H_
