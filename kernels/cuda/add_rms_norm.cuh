// Host launcher of the CUDA residual add fused with RMSNorm (one block per row).
#ifndef BLOCKSERVE_KERNELS_CUDA_ADD_RMS_NORM_CUH_
#define BLOCKSERVE_KERNELS_CUDA_ADD_RMS_NORM_CUH_

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// Device pointers. x, residual, out: (rows, n) fp32; scale: (n,). Per row:
//   x += residual;  out = x * rsqrt(mean(x^2) + eps) * scale
// (the updated x is the residual stream, out the normalized input of the next sub-layer). out may
// alias residual or x (then x keeps nothing but the normalized row); other overlaps are not
// allowed. Returns cudaErrorInvalidValue for empty shapes, otherwise the launch error, if any.
cudaError_t LaunchAddRmsNorm(float* x, const float* residual, const float* scale, int rows, int n, float eps,
                             float* out, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_ADD_RMS_NORM_CUH_
