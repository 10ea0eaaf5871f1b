// Weights as the CPU forward passes read them: matrices (out, in) in f32 or bf16, vectors in
// f32, loaded by name from a checkpoint's safetensors file (shared by the BRT and Reformer runners).
#ifndef BLOCKSERVE_MODELS_WEIGHT_STORE_H_
#define BLOCKSERVE_MODELS_WEIGHT_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/safetensors.h"

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

// The tensors of one checkpoint file, served as vectors (f32) and matrices (in `dtype`).
// Tensors already stored that way (and aligned) are read in place from the memory-mapped
// file; everything else is converted once at load and owned here.
// Thread-safety: loading (Vector, Matrix, Own) is not thread-safe; what it returned is
// immutable and valid while the store lives.
class WeightStore {
 public:
  // `file` must have passed ValidateWeights; it is kept alive by the store.
  WeightStore(std::shared_ptr<const SafetensorsFile> file, WeightDType dtype);

  WeightDType dtype() const { return dtype_; }
  // Tensor `name` as f32 values.
  absl::StatusOr<const float*> Vector(const std::string& name);
  // Matrix `name` (rank 2) in the store's dtype.
  absl::StatusOr<WeightMatrix> Matrix(const std::string& name);
  // Keeps derived values (e.g. a precomputed table) alive with the weights.
  const float* Own(std::vector<float> values);

 private:
  std::shared_ptr<const SafetensorsFile> file_;
  WeightDType dtype_;
  std::vector<std::unique_ptr<std::vector<float>>> owned_f32_;
  std::vector<std::unique_ptr<std::vector<uint16_t>>> owned_bf16_;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_WEIGHT_STORE_H_
