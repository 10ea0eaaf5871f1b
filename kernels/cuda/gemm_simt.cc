// The GemmHandle API of kernels/cuda/gemm.h served by the CPU GEMM (kernels/cpu/gemm.h) on host
// pointers, for BLOCKSERVE_SIMT test builds only (it links bs_kernels): backend code written
// against the cuBLAS wrapper runs on the SIMT harness without a GPU. Streams are ignored (the
// CPU GEMM is synchronous); the bf16 activation mode is ignored (x stays fp32, as the CPU runner).
#ifndef BLOCKSERVE_SIMT
#error "gemm_simt.cc is the CPU stand-in for BLOCKSERVE_SIMT builds only (bs_kernels_cuda has gemm.cc)"
#endif

#include "kernels/cuda/gemm.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu/gemm.h"

namespace blockserve::cuda {
namespace {

absl::Status CheckShape(const void* x, int m, int k, const void* w, int n, const float* y) {
  if (m <= 0 || k <= 0 || n <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("GEMM shape must be positive: m ", m, " k ", k, " n ", n));
  }
  if (x == nullptr || w == nullptr || y == nullptr) return absl::InvalidArgumentError("GEMM with a null pointer");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<GemmHandle>> GemmHandle::Create(cudaStream_t stream) {
  std::unique_ptr<GemmHandle> g(new GemmHandle());
  g->stream_ = stream;
  return g;
}

GemmHandle::~GemmHandle() = default;

absl::Status GemmHandle::SetStream(cudaStream_t stream) {
  stream_ = stream;
  return absl::OkStatus();
}

absl::Status GemmHandle::EnsureScratch(size_t, size_t) { return absl::OkStatus(); }

absl::Status GemmHandle::ReserveBf16(int max_m, int max_k, int max_n) {
  if (max_m <= 0 || max_k <= 0 || max_n <= 0) return absl::InvalidArgumentError("ReserveBf16: sizes must be positive");
  return absl::OkStatus();
}

absl::Status GemmHandle::GemmF32(const float* x, int m, int k, const float* w, int n, float* y) {
  const absl::Status st = CheckShape(x, m, k, w, n, y);
  if (!st.ok()) return st;
  cpu::GemmF32(x, static_cast<size_t>(m), static_cast<size_t>(k), w, static_cast<size_t>(n), y);
  return absl::OkStatus();
}

absl::Status GemmHandle::GemmBF16(const float* x, int m, int k, const uint16_t* w, int n, float* y) {
  const absl::Status st = CheckShape(x, m, k, w, n, y);
  if (!st.ok()) return st;
  cpu::GemmBF16(x, static_cast<size_t>(m), static_cast<size_t>(k), w, static_cast<size_t>(n), y);
  return absl::OkStatus();
}

}  // namespace blockserve::cuda
