// CUDA Reformer LSH hash: one block per (token, head * round); each thread projects the token's
// head slice on rotation columns (double, the CPU runner's order: products of floats are exact in
// double, so a fused multiply-add rounds the same), then thread 0 takes the mixed-radix argmax.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test).
#include "kernels/cuda/lsh_hash.cuh"

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace {
namespace lsh_hash_kernel {  // kernels_simt.cc compiles every .cu into one translation unit

constexpr int kThreads = 64;

__global__ void LshHashKernel(const float* qk, int qk_stride, const float* rotations, int head_dim, int num_hashes,
                              LshBucketFactors factors, int32_t* buckets) {
  BS_DYNAMIC_SHARED(double, y);  // (half,)
  const int token = blockIdx.x, hr = blockIdx.y;
  const int h = hr / num_hashes, r = hr % num_hashes;
  const int half = LshRotationHalf(factors);
  const float* x = qk + static_cast<size_t>(token) * qk_stride + static_cast<size_t>(h) * head_dim;
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    double acc = 0.0;
    for (int i = 0; i < head_dim; ++i) {
      const float* row = rotations + ((static_cast<size_t>(h) * head_dim + i) * num_hashes + r) * half;
      acc += static_cast<double>(x[i]) * row[j];
    }
    y[j] = acc;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    buckets[static_cast<size_t>(token) * gridDim.y + hr] = LshMixedRadixBucket(y, factors);
  }
}

}  // namespace lsh_hash_kernel
}  // namespace

cudaError_t LaunchLshHash(const float* qk, int tokens, int qk_stride, const float* rotations, int heads, int head_dim,
                          int num_hashes, const LshBucketFactors& factors, int32_t* buckets, cudaStream_t stream) {
  if (tokens <= 0 || heads <= 0 || head_dim <= 0 || num_hashes <= 0 || qk_stride < heads * head_dim ||
      factors.count <= 0 || factors.count > kMaxLshFactors || heads * num_hashes > 65535) {
    return cudaErrorInvalidValue;
  }
  for (int k = 0; k < factors.count; ++k) {
    if (factors.f[k] < 2 || factors.f[k] % 2 != 0) return cudaErrorInvalidValue;
  }
  const int half = LshRotationHalf(factors);
  BS_LAUNCH(lsh_hash_kernel::LshHashKernel, dim3(tokens, heads * num_hashes), lsh_hash_kernel::kThreads,
            half * sizeof(double), stream)(qk, qk_stride, rotations, head_dim, num_hashes, factors, buckets);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
