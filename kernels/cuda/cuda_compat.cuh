// The CUDA API for kernel sources: the real runtime under nvcc, the CPU SIMT harness
// (kernels/cuda/simt/simt.h, test-only) when BLOCKSERVE_SIMT is defined. Kernel sources include
// this instead of <cuda_runtime.h> so that the same .cu compiles both ways; they may use only
// what simt.h provides.
#ifndef BLOCKSERVE_KERNELS_CUDA_CUDA_COMPAT_CUH_
#define BLOCKSERVE_KERNELS_CUDA_CUDA_COMPAT_CUH_

#if defined(BLOCKSERVE_SIMT)
#include "kernels/cuda/simt/simt.h"
// Dynamic shared memory (the launch's smem bytes) as a `type*` named `name`.
#define BS_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::blockserve::simt::DynamicSharedMemory())
#else
#include <cuda_runtime.h>
#define BS_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#endif  // BLOCKSERVE_KERNELS_CUDA_CUDA_COMPAT_CUH_
