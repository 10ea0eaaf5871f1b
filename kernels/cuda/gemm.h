// Batched GEMM of the CUDA backend: y (m, n) = x (m, k) @ W^T with W row-major (n, k), the layout
// in which the CPU runner stores weights (kernels/cpu/gemm.h), on cuBLAS. Host code.
//
// Two builds serve this API:
//   * gemm.cc (bs_kernels_cuda): cuBLAS on device pointers.
//   * gemm_simt.cc (BLOCKSERVE_SIMT test builds only, links bs_kernels): the CPU GEMM
//     (cpu::GemmF32 / cpu::GemmBF16) on host pointers, so that backend code written against this
//     API runs on the SIMT harness without a GPU.
#ifndef BLOCKSERVE_KERNELS_CUDA_GEMM_H_
#define BLOCKSERVE_KERNELS_CUDA_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/cuda/cuda_compat.cuh"  // cudaStream_t (cuda_runtime.h, or the SIMT harness)

#if !defined(BLOCKSERVE_SIMT)
#include <cublas_v2.h>
#endif

namespace blockserve::cuda {

#if !defined(BLOCKSERVE_SIMT)
// OK for CUBLAS_STATUS_SUCCESS; otherwise an error naming `what` and cuBLAS's status name and
// message: ResourceExhausted (ALLOC_FAILED), InvalidArgument (INVALID_VALUE), FailedPrecondition
// (NOT_INITIALIZED: no usable driver or device; ARCH_MISMATCH; NOT_SUPPORTED), Internal otherwise.
absl::Status CublasStatus(cublasStatus_t status, absl::string_view what);
#endif

// How the bf16-weight GEMM feeds the fp32 activations to cuBLAS, which multiplies bf16 weights only
// with bf16 inputs (fp32 accumulation either way).
enum class Bf16Activations {
  // x = hi + lo, both bf16, stacked as 2m rows of one GEMM (the weights are read once), then
  // y = y_hi + y_lo: about 16 significant bits of x, close to the CPU GEMM, which keeps x in fp32.
  kSplit,
  // x rounded to bf16 once: half the GEMM work, a relative error up to 2^-9 per product.
  kRound,
};

// Owns a cuBLAS handle (bound to one stream) and the device scratch of the bf16 path. Not thread
// safe: one per stream / worker. Every failure is returned as a Status (nothing aborts).
class GemmHandle {
 public:
  // Creates the cuBLAS handle and binds it to `stream` (nullptr: the default stream). Fails (does
  // not abort) without a usable device.
  static absl::StatusOr<std::unique_ptr<GemmHandle>> Create(cudaStream_t stream);
  ~GemmHandle();
  GemmHandle(const GemmHandle&) = delete;
  GemmHandle& operator=(const GemmHandle&) = delete;

  // Later GEMMs and conversions run on `stream`.
  absl::Status SetStream(cudaStream_t stream);
  cudaStream_t stream() const { return stream_; }

  void set_bf16_activations(Bf16Activations mode) { bf16_mode_ = mode; }
  Bf16Activations bf16_activations() const { return bf16_mode_; }

  // Allocates the bf16 path's scratch for GEMMs up to (max_m, max_k, max_n) now, so that later
  // calls of at most that size allocate nothing (required before CUDA graph capture). Otherwise
  // GemmBF16 grows the scratch on demand (cudaMalloc; the stream is synchronized first).
  absl::Status ReserveBf16(int max_m, int max_k, int max_n);

  // Device pointers (host pointers in the SIMT build). x: (m, k) fp32 rows, w: (n, k) fp32 rows,
  // y: (m, n) fp32 rows, overwritten, not overlapping x or w. m, n, k > 0, else InvalidArgument.
  // Enqueued on the handle's stream (asynchronous).
  absl::Status GemmF32(const float* x, int m, int k, const float* w, int n, float* y);
  // The same with bfloat16 weights (raw uint16 bit patterns), fp32 accumulation; x converted to
  // bf16 as set by set_bf16_activations (the SIMT build always keeps x in fp32, as the CPU runner).
  absl::Status GemmBF16(const float* x, int m, int k, const uint16_t* w, int n, float* y);

 private:
  GemmHandle() = default;
  absl::Status EnsureScratch(size_t x_elems, size_t y_elems);

  void* handle_ = nullptr;  // cublasHandle_t (unused in the SIMT build)
  cudaStream_t stream_ = nullptr;
  Bf16Activations bf16_mode_ = Bf16Activations::kSplit;
  uint16_t* x_bf16_ = nullptr;  // device scratch: (2m, k) bf16 activations
  size_t x_bf16_elems_ = 0;
  float* y_split_ = nullptr;  // device scratch: (2m, n) partial products of the split mode
  size_t y_split_elems_ = 0;
};

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_GEMM_H_
