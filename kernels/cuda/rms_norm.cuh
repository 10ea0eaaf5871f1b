// Host launcher of the CUDA RMSNorm kernel (one block per row).
#ifndef BLOCKSERVE_KERNELS_CUDA_RMS_NORM_CUH_
#define BLOCKSERVE_KERNELS_CUDA_RMS_NORM_CUH_

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// Device pointers. x, out: (rows, n) fp32, may alias; scale: (n,).
// out = x * rsqrt(mean(x^2) + eps) * scale. Returns the launch error, if any.
cudaError_t LaunchRmsNorm(const float* x, const float* scale, int rows, int n, float eps, float* out,
                          cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_RMS_NORM_CUH_
