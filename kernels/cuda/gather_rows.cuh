// Host launcher of the CUDA embedding gather (rows of an fp32 table by token id).
#ifndef BLOCKSERVE_KERNELS_CUDA_GATHER_ROWS_CUH_
#define BLOCKSERVE_KERNELS_CUDA_GATHER_ROWS_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// Device pointers. table: (vocab, d) fp32 rows; ids: (n,); out: (n, d), not overlapping table.
// out[r] = table[ids[r]].
// Precondition: 0 <= ids[r] < vocab for every r. The kernel does not check it (the ids live in
// device memory): the engine validates token ids against the vocabulary when a request is
// admitted and the model only produces ids below vocab_size, so an out-of-range id cannot reach
// here; an id that broke this would read outside the table.
cudaError_t LaunchGatherRows(const float* table, int d, const int32_t* ids, int n, float* out,
                             cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_GATHER_ROWS_CUH_
