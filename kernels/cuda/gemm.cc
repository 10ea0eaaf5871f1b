// The cuBLAS GEMMs of the CUDA backend (see gemm.h). Row-major y (m, n) = x (m, k) @ W^T is, in
// cuBLAS's column-major terms, Y^T (n, m) = op(A) B with A = W stored as a (k, n) column-major
// matrix (op = T, lda = k) and B = x stored as (k, m) (op = N, ldb = k), ldc = n.
#include "kernels/cuda/gemm.h"

#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/bf16_convert.cuh"
#include "kernels/cuda/cuda_device.h"

namespace blockserve::cuda {
namespace {

cublasHandle_t AsHandle(void* h) { return static_cast<cublasHandle_t>(h); }

absl::Status CheckShape(const void* x, int m, int k, const void* w, int n, const float* y) {
  if (m <= 0 || k <= 0 || n <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("GEMM shape must be positive: m ", m, " k ", k, " n ", n));
  }
  if (x == nullptr || w == nullptr || y == nullptr) return absl::InvalidArgumentError("GEMM with a null pointer");
  return absl::OkStatus();
}

}  // namespace

absl::Status CublasStatus(cublasStatus_t status, absl::string_view what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": cuBLAS error ", static_cast<int>(status), " (",
                                           cublasGetStatusName(status), "): ", cublasGetStatusString(status));
  switch (status) {
    case CUBLAS_STATUS_ALLOC_FAILED: return absl::ResourceExhaustedError(message);
    case CUBLAS_STATUS_INVALID_VALUE: return absl::InvalidArgumentError(message);
    case CUBLAS_STATUS_NOT_INITIALIZED:
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED: return absl::FailedPreconditionError(message);
    default: return absl::InternalError(message);
  }
}

absl::StatusOr<std::unique_ptr<GemmHandle>> GemmHandle::Create(cudaStream_t stream) {
  cublasHandle_t handle = nullptr;
  const cublasStatus_t st = cublasCreate(&handle);
  if (st != CUBLAS_STATUS_SUCCESS) {
    (void)cudaGetLastError();  // cublasCreate may leave a runtime error behind; start clean
    return CublasStatus(st, "cublasCreate");
  }
  std::unique_ptr<GemmHandle> g(new GemmHandle());
  g->handle_ = handle;
  // Pointer mode host (alpha/beta from the host) is cuBLAS's default; set it anyway, the GEMMs
  // below rely on it.
  absl::Status status = CublasStatus(cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
  if (status.ok()) status = g->SetStream(stream);
  if (!status.ok()) return status;
  return g;
}

GemmHandle::~GemmHandle() {
  // Errors here (a sticky device error) cannot be reported; the destructor only releases.
  if (x_bf16_ != nullptr) (void)cudaFree(x_bf16_);
  if (y_split_ != nullptr) (void)cudaFree(y_split_);
  if (handle_ != nullptr) (void)cublasDestroy(AsHandle(handle_));
}

absl::Status GemmHandle::SetStream(cudaStream_t stream) {
  const absl::Status st = CublasStatus(cublasSetStream(AsHandle(handle_), stream), "cublasSetStream");
  if (st.ok()) stream_ = stream;
  return st;
}

absl::Status GemmHandle::EnsureScratch(size_t x_elems, size_t y_elems) {
  if (x_elems <= x_bf16_elems_ && y_elems <= y_split_elems_) return absl::OkStatus();
  // The old buffers may still be read by queued work on the stream.
  absl::Status st = CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (GEMM scratch)");
  if (!st.ok()) return st;
  if (x_elems > x_bf16_elems_) {
    if (x_bf16_ != nullptr) (void)cudaFree(x_bf16_);
    x_bf16_ = nullptr;
    x_bf16_elems_ = 0;
    void* p = nullptr;
    st = CudaStatus(cudaMalloc(&p, x_elems * sizeof(uint16_t)), "cudaMalloc (GEMM bf16 activations)");
    if (!st.ok()) return st;
    x_bf16_ = static_cast<uint16_t*>(p);
    x_bf16_elems_ = x_elems;
  }
  if (y_elems > y_split_elems_) {
    if (y_split_ != nullptr) (void)cudaFree(y_split_);
    y_split_ = nullptr;
    y_split_elems_ = 0;
    void* p = nullptr;
    st = CudaStatus(cudaMalloc(&p, y_elems * sizeof(float)), "cudaMalloc (GEMM split products)");
    if (!st.ok()) return st;
    y_split_ = static_cast<float*>(p);
    y_split_elems_ = y_elems;
  }
  return absl::OkStatus();
}

absl::Status GemmHandle::ReserveBf16(int max_m, int max_k, int max_n) {
  if (max_m <= 0 || max_k <= 0 || max_n <= 0) return absl::InvalidArgumentError("ReserveBf16: sizes must be positive");
  const size_t rows = bf16_mode_ == Bf16Activations::kSplit ? 2 * static_cast<size_t>(max_m) : max_m;
  return EnsureScratch(rows * static_cast<size_t>(max_k),
                       bf16_mode_ == Bf16Activations::kSplit ? rows * static_cast<size_t>(max_n) : 0);
}

absl::Status GemmHandle::GemmF32(const float* x, int m, int k, const float* w, int n, float* y) {
  absl::Status st = CheckShape(x, m, k, w, n, y);
  if (!st.ok()) return st;
  const float one = 1.0f, zero = 0.0f;
  return CublasStatus(cublasSgemm(AsHandle(handle_), CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, k, x, k, &zero, y, n),
                      "cublasSgemm");
}

absl::Status GemmHandle::GemmBF16(const float* x, int m, int k, const uint16_t* w, int n, float* y) {
  absl::Status st = CheckShape(x, m, k, w, n, y);
  if (!st.ok()) return st;
  const bool split = bf16_mode_ == Bf16Activations::kSplit;
  const int rows = split ? 2 * m : m;  // stacked [x_hi; x_lo] in the split mode
  if (split && m > std::numeric_limits<int>::max() / 2) return absl::InvalidArgumentError("GemmBF16: m too large");
  const size_t x_elems = static_cast<size_t>(m) * k;
  st = EnsureScratch(static_cast<size_t>(rows) * k, split ? static_cast<size_t>(rows) * n : 0);
  if (!st.ok()) return st;
  st = CudaStatus(LaunchSplitToBf16(x, static_cast<long long>(x_elems), x_bf16_, split ? x_bf16_ + x_elems : nullptr,
                                    stream_),
                  "LaunchSplitToBf16");
  if (!st.ok()) return st;
  const float one = 1.0f, zero = 0.0f;
  float* c = split ? y_split_ : y;
  st = CublasStatus(cublasGemmEx(AsHandle(handle_), CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &one, w, CUDA_R_16BF, k,
                                 x_bf16_, CUDA_R_16BF, k, &zero, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT),
                    "cublasGemmEx (bf16 weights)");
  if (!st.ok() || !split) return st;
  // y = y_hi + y_lo: column-major (n, m) matrices, the lo half m * n floats after the hi half.
  return CublasStatus(cublasSgeam(AsHandle(handle_), CUBLAS_OP_N, CUBLAS_OP_N, n, m, &one, y_split_, n, &one,
                                  y_split_ + static_cast<size_t>(m) * n, n, y, n),
                      "cublasSgeam (bf16 split sum)");
}

}  // namespace blockserve::cuda
