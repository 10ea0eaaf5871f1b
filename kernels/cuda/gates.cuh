// Host launchers of the BRT block-end state gates (spec-brt.md §1.3): the fixed (per-channel bias)
// gate and the LSTM-style gate, elementwise. Same semantics as cpu::GateFixed / cpu::GateLstm
// (kernels/cpu/elementwise.h) and ref::GateFixed / ref::GateLstm (kernels/reference/ops_ref.h).
#ifndef BLOCKSERVE_KERNELS_CUDA_GATES_CUH_
#define BLOCKSERVE_KERNELS_CUDA_GATES_CUH_

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

// Device pointers. state, y, out: (rows, d) fp32, contiguous; bias: (d,). Per element (r, c):
//   g = sigmoid(bias[c]);  out = state * g + y * (1 - g)
// with 1 - g computed as sigmoid(-bias[c]) (no cancellation for large bias). out may alias state
// or y (each element is read before it is written by the same thread); other overlaps are not
// allowed. Returns cudaErrorInvalidValue for empty shapes or null pointers, otherwise the launch
// error, if any.
cudaError_t LaunchGateFixed(const float* state, const float* y, const float* bias, int rows, int d, float* out,
                            cudaStream_t stream);

// Device pointers, all (n,) fp32. Per element:
//   f = sigmoid(forget_pre + 1);  i = sigmoid(input_pre - 1);  out = state * f + y * i
// out may alias state or y. Errors as LaunchGateFixed. For a batch of sequences with contiguous
// (rows, d) tensors pass n = rows * d.
cudaError_t LaunchGateLstm(const float* state, const float* y, const float* forget_pre, const float* input_pre,
                           long long n, float* out, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_GATES_CUH_
