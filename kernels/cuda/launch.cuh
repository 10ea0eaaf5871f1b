// Portable kernel launch: BS_LAUNCH(kernel, grid, block, smem, stream)(args...) is
// `kernel<<<grid, block, smem, stream>>>(args...)` under nvcc and a synchronous run on the CPU
// SIMT harness (kernels/cuda/simt/simt.h) when BLOCKSERVE_SIMT is defined. As with <<<>>>,
// launch errors are read with cudaGetLastError(). A kernel name containing commas (a template
// with several arguments) needs a local function pointer or alias first.
#ifndef BLOCKSERVE_KERNELS_CUDA_LAUNCH_CUH_
#define BLOCKSERVE_KERNELS_CUDA_LAUNCH_CUH_

#include "kernels/cuda/cuda_compat.cuh"

#if defined(BLOCKSERVE_SIMT)
#define BS_LAUNCH(kernel, grid, block, smem, stream) ::blockserve::simt::Launch(kernel, grid, block, smem, stream)
#else
#define BS_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#endif

#endif  // BLOCKSERVE_KERNELS_CUDA_LAUNCH_CUH_
