// Host launcher of the CUDA RMSNorm kernel (one block per row).
#ifndef BLOCKSERVE_KERNELS_CUDA_RMS_NORM_CUH_
#define BLOCKSERVE_KERNELS_CUDA_RMS_NORM_CUH_

#include <cuda_runtime.h>

namespace blockserve::cuda {

// Device pointers. x, out: (rows, n) fp32, may alias; scale: (n,).
// out = x * rsqrt(mean(x^2) + eps) * scale. Returns the launch error, if any.
cudaError_t LaunchRmsNorm(const float* x, const float* scale, int rows, int n, float eps, float* out,
                          cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_RMS_NORM_CUH_
