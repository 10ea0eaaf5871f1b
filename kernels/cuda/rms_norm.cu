// CUDA RMSNorm: one block per row, warp-shuffle reduction of the sum of squares.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH.
#include "kernels/cuda/rms_norm.cuh"

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace {

constexpr int kThreads = 256;  // a multiple of 32: every warp is full, so full-mask shuffles are valid

__device__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void RmsNormKernel(const float* x, const float* scale, int n, float eps, float* out) {
  __shared__ float partial[kThreads / 32];
  const float* xr = x + static_cast<size_t>(blockIdx.x) * n;
  float* outr = out + static_cast<size_t>(blockIdx.x) * n;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i] * xr[i];
  sum = WarpSum(sum);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : 0.0f;
    v = WarpSum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) outr[i] = xr[i] * inv * scale[i];
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* scale, int rows, int n, float eps, float* out,
                          cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return cudaErrorInvalidValue;
  BS_LAUNCH(RmsNormKernel, rows, kThreads, 0, stream)(x, scale, n, eps, out);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
