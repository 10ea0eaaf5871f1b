// DType, Shape and non-owning tensor views (row-major, contiguous), plus half/bfloat16 conversions.
#ifndef BLOCKSERVE_BASE_TENSOR_H_
#define BLOCKSERVE_BASE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/check.h"

namespace blockserve {

// Element types of tensors in checkpoints and session snapshots. The names are the
// safetensors dtype strings.
enum class DType : uint8_t { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Bytes per element of `dtype`.
size_t DTypeSize(DType dtype);
// The safetensors name of `dtype` ("F32", "BF16", ...).
absl::string_view DTypeName(DType dtype);
// Parses a safetensors dtype name; unknown names are an InvalidArgument error.
absl::StatusOr<DType> ParseDType(absl::string_view name);
// Every dtype, for tests that sweep them.
absl::Span<const DType> AllDTypes();

using Shape = std::vector<int64_t>;

// Number of elements of `shape` (1 for a scalar); CHECKs against negative dims.
int64_t NumElements(const Shape& shape);
// Number of elements, or an error if a dim is negative or the product overflows `limit`.
absl::StatusOr<int64_t> CheckedNumElements(const Shape& shape, int64_t limit = INT64_MAX);
// "[2, 3, 4]".
std::string ShapeString(const Shape& shape);

// A non-owning view of a contiguous row-major tensor. Copying the view copies the pointer,
// not the data; the owner (a mapped file, a Tensor) must outlive it.
// Thread-safety: a view is a plain value; concurrent reads of the data are safe.
template <typename Ptr>
struct BasicTensorView {
  BasicTensorView() = default;
  BasicTensorView(DType dtype, Shape shape, Ptr data) : dtype(dtype), shape(std::move(shape)), data(data) {}
  // A mutable view converts to a const one.
  template <typename Other, typename = std::enable_if_t<std::is_convertible_v<Other, Ptr>>>
  BasicTensorView(const BasicTensorView<Other>& other)  // NOLINT(google-explicit-constructor)
      : dtype(other.dtype), shape(other.shape), data(other.data) {}

  DType dtype = DType::kF32;
  Shape shape;
  Ptr data = nullptr;  // (shape...) elements of dtype

  int64_t num_elements() const { return NumElements(shape); }
  size_t num_bytes() const { return static_cast<size_t>(num_elements()) * DTypeSize(dtype); }
  int rank() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }

  // Typed access; the caller names the C++ type matching dtype (checked).
  template <typename T>
  auto as() const {
    BS_CHECK_MSG(sizeof(T) == DTypeSize(dtype), "element type does not match dtype size");
    using Out = std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, const T*, T*>;
    return absl::Span<std::remove_pointer_t<Out>>(reinterpret_cast<Out>(data),
                                                  static_cast<size_t>(num_elements()));
  }
};
using TensorView = BasicTensorView<void*>;
using ConstTensorView = BasicTensorView<const void*>;

// An owning tensor with 64-byte aligned storage, for tests, writers and small state.
// Thread-safety: not synchronized; share it read-only or guard it.
class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);  // zero-filled
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  size_t num_bytes() const { return num_bytes_; }
  void* data() { return storage_.get(); }
  const void* data() const { return storage_.get(); }
  TensorView view() { return TensorView{dtype_, shape_, data()}; }
  ConstTensorView view() const { return ConstTensorView{dtype_, shape_, data()}; }
  template <typename T>
  absl::Span<T> as() { return view().as<T>(); }
  template <typename T>
  absl::Span<const T> as() const { return view().as<T>(); }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  DType dtype_ = DType::kF32;
  Shape shape_;
  size_t num_bytes_ = 0;
  std::unique_ptr<void, Free> storage_;
};

// IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN).
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);
uint16_t FloatToBF16(float f);
inline float BF16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_TENSOR_H_
