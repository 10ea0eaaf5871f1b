// CUDA BRT state gates: elementwise, a grid-stride loop over the flattened (rows, d) elements. The
// sigmoids are computed in fp32 the numerically stable way of the CPU kernels (SigmoidPair in
// kernels/cpu/elementwise.cc): e = exp(-|v|), s = 1 / (1 + e); sigmoid(v) = v >= 0 ? s : e * s.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/gates.cuh"

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace gates_internal {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 8192;  // grid-stride beyond this (plenty to fill any device)

// sigmoid(v) and 1 - sigmoid(v) without cancellation.
__device__ __forceinline__ void SigmoidPair(float v, float& sig, float& one_minus_sig) {
  const float e = expf(-fabsf(v));
  const float s = 1.0f / (1.0f + e);
  const float es = e * s;
  sig = v >= 0.0f ? s : es;
  one_minus_sig = v >= 0.0f ? es : s;
}

__device__ __forceinline__ float Sigmoid(float v) {
  float sig, one_minus_sig;
  SigmoidPair(v, sig, one_minus_sig);
  return sig;
}

__global__ void __launch_bounds__(kThreads)
    GateFixedKernel(const float* state, const float* y, const float* bias, long long total, int d, float* out) {
  const long long stride = static_cast<long long>(gridDim.x) * kThreads;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride) {
    float g, omg;
    SigmoidPair(bias[i % d], g, omg);
    out[i] = fmaf(state[i], g, y[i] * omg);
  }
}

__global__ void __launch_bounds__(kThreads) GateLstmKernel(const float* state, const float* y, const float* forget_pre,
                                                           const float* input_pre, long long n, float* out) {
  const long long stride = static_cast<long long>(gridDim.x) * kThreads;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    const float f = Sigmoid(forget_pre[i] + 1.0f);
    const float in = Sigmoid(input_pre[i] - 1.0f);
    out[i] = fmaf(state[i], f, y[i] * in);
  }
}

inline unsigned NumBlocks(long long n) {
  const long long blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace gates_internal

cudaError_t LaunchGateFixed(const float* state, const float* y, const float* bias, int rows, int d, float* out,
                            cudaStream_t stream) {
  namespace in = gates_internal;
  if (rows <= 0 || d <= 0 || state == nullptr || y == nullptr || bias == nullptr || out == nullptr) {
    return cudaErrorInvalidValue;
  }
  const long long total = static_cast<long long>(rows) * d;
  BS_LAUNCH(in::GateFixedKernel, in::NumBlocks(total), in::kThreads, 0, stream)(state, y, bias, total, d, out);
  return cudaGetLastError();
}

cudaError_t LaunchGateLstm(const float* state, const float* y, const float* forget_pre, const float* input_pre,
                           long long n, float* out, cudaStream_t stream) {
  namespace in = gates_internal;
  if (n <= 0 || state == nullptr || y == nullptr || forget_pre == nullptr || input_pre == nullptr ||
      out == nullptr) {
    return cudaErrorInvalidValue;
  }
  BS_LAUNCH(in::GateLstmKernel, in::NumBlocks(n), in::kThreads, 0, stream)(state, y, forget_pre, input_pre, n, out);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
