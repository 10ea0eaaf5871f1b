// CUDA embedding gather: one block per output row, its threads copy the row's d floats.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/gather_rows.cuh"

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace gather_rows_internal {

constexpr int kThreads = 128;

__global__ void __launch_bounds__(kThreads) GatherRowsKernel(const float* table, int d, const int32_t* ids,
                                                             float* out) {
  const size_t r = blockIdx.x;
  const float* src = table + static_cast<size_t>(ids[r]) * d;  // 0 <= ids[r] < vocab (precondition)
  float* dst = out + r * d;
  for (int c = static_cast<int>(threadIdx.x); c < d; c += kThreads) dst[c] = src[c];
}

}  // namespace gather_rows_internal

cudaError_t LaunchGatherRows(const float* table, int d, const int32_t* ids, int n, float* out,
                             cudaStream_t stream) {
  namespace in = gather_rows_internal;
  if (n <= 0 || d <= 0 || table == nullptr || ids == nullptr || out == nullptr) return cudaErrorInvalidValue;
  BS_LAUNCH(in::GatherRowsKernel, n, in::kThreads, 0, stream)(table, d, ids, out);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
