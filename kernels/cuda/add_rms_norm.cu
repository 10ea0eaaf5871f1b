// CUDA residual add + RMSNorm: one block per row; each thread adds and squares the elements it
// owns (stride blockDim.x), a warp-shuffle then shared-memory reduction gives the row's sum of
// squares, and the same thread scales the elements it wrote (no other thread reads them).
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/add_rms_norm.cuh"

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace add_rms_norm_internal {

constexpr int kThreads = 256;  // a multiple of 32: every warp is full, so full-mask shuffles are valid

__device__ __forceinline__ float WarpAllSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void __launch_bounds__(kThreads)
    AddRmsNormKernel(float* x, const float* residual, const float* scale, int n, float eps, float* out) {
  __shared__ float partial[kThreads / 32];
  const size_t row = static_cast<size_t>(blockIdx.x) * n;
  float* xr = x + row;
  const float* rr = residual + row;
  float* outr = out + row;
  const int tid = static_cast<int>(threadIdx.x);
  float sum = 0.0f;
  for (int i = tid; i < n; i += kThreads) {
    const float v = xr[i] + rr[i];
    xr[i] = v;
    sum += v * v;
  }
  sum = WarpAllSum(sum);
  if ((tid & 31) == 0) partial[tid >> 5] = sum;
  __syncthreads();  // also orders every read of residual before any write of out (out may alias it)
  float total = 0.0f;
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  const float inv = rsqrtf(total / static_cast<float>(n) + eps);
  for (int i = tid; i < n; i += kThreads) outr[i] = xr[i] * inv * scale[i];
}

}  // namespace add_rms_norm_internal

cudaError_t LaunchAddRmsNorm(float* x, const float* residual, const float* scale, int rows, int n, float eps,
                             float* out, cudaStream_t stream) {
  namespace in = add_rms_norm_internal;
  if (rows <= 0 || n <= 0 || x == nullptr || residual == nullptr || scale == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  BS_LAUNCH(in::AddRmsNormKernel, rows, in::kThreads, 0, stream)(x, residual, scale, n, eps, out);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
