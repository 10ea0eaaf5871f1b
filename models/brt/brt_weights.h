// BRT weights as the CPU forward pass reads them: matrices (out, in) in f32 or bf16, vectors in f32.
#ifndef BLOCKSERVE_MODELS_BRT_BRT_WEIGHTS_H_
#define BLOCKSERVE_MODELS_BRT_BRT_WEIGHTS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "base/tensor.h"
#include "models/model_config.h"

namespace blockserve {

enum class WeightDType { kF32, kBF16 };
absl::StatusOr<WeightDType> ParseWeightDType(absl::string_view name);  // "f32" | "bf16"
absl::string_view WeightDTypeName(WeightDType dtype);

// A linear layer's weight, (rows = out, cols = in), row-major, y = x @ W^T.
// Thread-safety: immutable; share freely.
struct WeightMatrix {
  WeightDType dtype = WeightDType::kF32;
  const void* data = nullptr;  // rows * cols floats or bf16 bit patterns
  int64_t rows = 0, cols = 0;

  size_t num_bytes() const { return static_cast<size_t>(rows * cols) * (dtype == WeightDType::kF32 ? 4 : 2); }
  // y (batch, rows) = x (batch, cols) @ W^T for output rows [row_begin, row_end): the decode
  // product, each weight row read once for the whole batch.
  void MatVec(const float* x, size_t batch, float* y, size_t row_begin, size_t row_end) const;
  // y (m, rows) = x (m, cols) @ W^T for output columns [row_begin, row_end): the prefill
  // product (BLAS), y's row stride stays `rows`.
  void Gemm(const float* x, size_t m, float* y, size_t row_begin, size_t row_end) const;
  // out (n, cols) = rows ids[0..n) widened to f32 (embedding lookup).
  void Gather(const int32_t* ids, size_t n, float* out) const;
};

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

// Every weight of a BRT model. Matrices stored F32 in the file and served as f32 are read in
// place from the memory-mapped file; everything else is converted once at load.
// Thread-safety: immutable after Load; shared by every sequence.
class BrtWeights {
 public:
  // `file` must outlive the result (zero-copy views). The file must have passed ValidateWeights.
  static absl::StatusOr<std::unique_ptr<BrtWeights>> Load(const ModelConfig& config,
                                                          std::shared_ptr<const SafetensorsFile> file,
                                                          WeightDType dtype);

  const ModelConfig& config() const { return config_; }
  WeightDType dtype() const { return dtype_; }
  const WeightMatrix& embed() const { return embed_; }  // (V, d), tied output projection
  const float* final_norm() const { return final_norm_; }
  const BrtLayerWeights& layer(int i) const { return layers_[i]; }
  float logit_scale() const { return logit_scale_; }  // 1 / divisor
  // Bytes a decode step reads: every matrix once (the embedding counted as the output head).
  size_t decode_weight_bytes() const;

 private:
  BrtWeights() = default;
  absl::StatusOr<const float*> Vector(const std::string& name);
  absl::StatusOr<WeightMatrix> Matrix(const std::string& name);
  absl::StatusOr<GateWeights> Gate(const std::string& prefix);
  const float* Own(std::vector<float> values);

  ModelConfig config_;
  WeightDType dtype_ = WeightDType::kF32;
  std::shared_ptr<const SafetensorsFile> file_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_f32_;
  std::vector<std::unique_ptr<std::vector<uint16_t>>> owned_bf16_;
  WeightMatrix embed_;
  const float* final_norm_ = nullptr;
  std::vector<BrtLayerWeights> layers_;
  float logit_scale_ = 1.0f;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_BRT_BRT_WEIGHTS_H_
