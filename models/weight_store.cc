// WeightStore: zero-copy views of the mapped file where possible, conversions otherwise.
#include "models/weight_store.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/tensor.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/matvec.h"

namespace blockserve {
namespace {

// Any floating tensor as f32 values (ValidateWeights admits F32, BF16 and F16 only).
std::vector<float> ToF32(const ConstTensorView& view) {
  std::vector<float> out(view.num_elements());
  switch (view.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), view.data, out.size() * sizeof(float));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = BF16ToFloat(static_cast<const uint16_t*>(view.data)[i]);
      break;
    default:  // kF16
      for (size_t i = 0; i < out.size(); ++i) out[i] = HalfToFloat(static_cast<const uint16_t*>(view.data)[i]);
      break;
  }
  return out;
}

}  // namespace

absl::StatusOr<WeightDType> ParseWeightDType(absl::string_view name) {
  if (name == "f32" || name == "float32") return WeightDType::kF32;
  if (name == "bf16" || name == "bfloat16") return WeightDType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("weight dtype '", name, "': expected f32 or bf16"));
}

absl::string_view WeightDTypeName(WeightDType dtype) { return dtype == WeightDType::kF32 ? "f32" : "bf16"; }

void WeightMatrix::MatVec(const float* x, size_t batch, float* y, size_t row_begin, size_t row_end) const {
  if (dtype == WeightDType::kF32) {
    cpu::MatVecF32(static_cast<const float*>(data), x, batch, rows, cols, y, row_begin, row_end);
  } else {
    cpu::MatVecBF16(static_cast<const uint16_t*>(data), x, batch, rows, cols, y, row_begin, row_end);
  }
}

void WeightMatrix::Gemm(const float* x, size_t m, float* y, size_t row_begin, size_t row_end) const {
  if (dtype == WeightDType::kF32) {
    cpu::GemmF32(x, m, cols, static_cast<const float*>(data), rows, y, row_begin, row_end);
  } else {
    cpu::GemmBF16(x, m, cols, static_cast<const uint16_t*>(data), rows, y, row_begin, row_end);
  }
}

void WeightMatrix::Gather(const int32_t* ids, size_t n, float* out) const {
  if (dtype == WeightDType::kF32) {
    cpu::GatherRowsF32(static_cast<const float*>(data), cols, ids, n, out);
  } else {
    cpu::GatherRowsBF16(static_cast<const uint16_t*>(data), cols, ids, n, out);
  }
}

WeightStore::WeightStore(std::shared_ptr<const SafetensorsFile> file, WeightDType dtype)
    : file_(std::move(file)), dtype_(dtype) {}

const float* WeightStore::Own(std::vector<float> values) {
  owned_f32_.push_back(std::make_unique<std::vector<float>>(std::move(values)));
  return owned_f32_.back()->data();
}

absl::StatusOr<const float*> WeightStore::Vector(const std::string& name) {
  ASSIGN_OR_RETURN(ConstTensorView view, file_->Get(name));
  if (view.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(view.data) % alignof(float) == 0) {
    return static_cast<const float*>(view.data);
  }
  return Own(ToF32(view));
}

absl::StatusOr<WeightMatrix> WeightStore::Matrix(const std::string& name) {
  ASSIGN_OR_RETURN(ConstTensorView view, file_->Get(name));
  if (view.rank() != 2) return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is not a matrix"));
  WeightMatrix m;
  m.dtype = dtype_;
  m.rows = view.dim(0);
  m.cols = view.dim(1);
  if (dtype_ == WeightDType::kF32) {
    ASSIGN_OR_RETURN(m.data, Vector(name));
    return m;
  }
  if (view.dtype == DType::kBF16 && reinterpret_cast<uintptr_t>(view.data) % alignof(uint16_t) == 0) {
    m.data = view.data;
    return m;
  }
  const std::vector<float> f32 = ToF32(view);
  auto bf16 = std::make_unique<std::vector<uint16_t>>(f32.size());
  for (size_t i = 0; i < f32.size(); ++i) (*bf16)[i] = FloatToBF16(f32[i]);
  m.data = bf16->data();
  owned_bf16_.push_back(std::move(bf16));
  return m;
}

}  // namespace blockserve
