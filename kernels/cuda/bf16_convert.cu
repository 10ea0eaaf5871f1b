// fp32 -> bf16 (round to nearest even) with the optional residue, elementwise, grid-stride loop.
// Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT, kernels_cuda_simt_test): use
// only what kernels/cuda/simt/simt.h provides, and launch through BS_LAUNCH. Names live in a
// named namespace: kernels_simt.cc includes every .cu into one translation unit.
#include "kernels/cuda/bf16_convert.cuh"

#include <cstring>

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace bf16_convert_internal {

constexpr int kThreads = 256;
constexpr long long kMaxBlocks = 8192;

__device__ __forceinline__ uint32_t FloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  return bits;
#endif
}

__device__ __forceinline__ float BitsFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

// base/tensor.cc FloatToBF16, bit for bit.
__device__ __forceinline__ uint16_t RoundToBf16(float f) {
  const uint32_t bits = FloatBits(f);
  if (isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

__global__ void __launch_bounds__(kThreads) SplitToBf16Kernel(const float* x, long long count, uint16_t* hi, uint16_t* lo) {
  const long long stride = static_cast<long long>(gridDim.x) * kThreads;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < count; i += stride) {
    const float v = x[i];
    const uint16_t h = RoundToBf16(v);
    hi[i] = h;
    if (lo != nullptr) {
      const float hf = BitsFloat(static_cast<uint32_t>(h) << 16);
      // v - hf is exact in fp32; an infinite or NaN hi has no meaningful residue.
      lo[i] = isfinite(hf) ? RoundToBf16(v - hf) : static_cast<uint16_t>(0);
    }
  }
}

}  // namespace bf16_convert_internal

cudaError_t LaunchSplitToBf16(const float* x, long long count, uint16_t* hi, uint16_t* lo, cudaStream_t stream) {
  namespace in = bf16_convert_internal;
  if (count <= 0 || x == nullptr || hi == nullptr) return cudaErrorInvalidValue;
  const long long blocks = (count + in::kThreads - 1) / in::kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < in::kMaxBlocks ? blocks : in::kMaxBlocks);
  BS_LAUNCH(in::SplitToBf16Kernel, grid, in::kThreads, 0, stream)(x, count, hi, lo);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
