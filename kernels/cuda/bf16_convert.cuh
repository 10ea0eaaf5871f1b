// fp32 -> bfloat16 conversion on the device, for the bf16-weight GEMM (kernels/cuda/gemm.h): the
// activations are converted to bf16 because cuBLAS multiplies bf16 weights only with bf16 inputs.
#ifndef BLOCKSERVE_KERNELS_CUDA_BF16_CONVERT_CUH_
#define BLOCKSERVE_KERNELS_CUDA_BF16_CONVERT_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// Device pointers. hi[i] = bf16(x[i]) rounded to nearest even (NaN stays a quiet NaN, as
// blockserve::FloatToBF16 in base/tensor.h). When lo is not null it also gets the rounding residue
// lo[i] = bf16(x[i] - float(hi[i])) (0 where hi is not finite), so that float(hi) + float(lo)
// carries about 16 significant bits of x instead of 8. Raw uint16 bit patterns. x must not
// overlap hi or lo. Returns cudaErrorInvalidValue for count <= 0 or null x / hi, otherwise the
// launch error, if any.
cudaError_t LaunchSplitToBf16(const float* x, long long count, uint16_t* hi, uint16_t* lo, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_BF16_CONVERT_CUH_
