// Host launcher of the CUDA Reformer LSH hash (ReformerRunner::Hash on the device), and the
// __host__ __device__ bucket and decode-window math (unit-tested on the CPU).
#ifndef BLOCKSERVE_KERNELS_CUDA_LSH_HASH_CUH_
#define BLOCKSERVE_KERNELS_CUDA_LSH_HASH_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_compat.cuh"  // cuda_runtime.h, or the SIMT harness in tests

namespace blockserve::cuda {

constexpr int kMaxLshFactors = 8;

// The config's num_buckets factors (each even), passed by value to the kernel.
struct LshBucketFactors {
  int count = 0;
  int f[kMaxLshFactors] = {};
};

// sum(f / 2): the rotation half-size the factors consume.
__host__ __device__ inline int LshRotationHalf(const LshBucketFactors& factors) {
  int half = 0;
  for (int i = 0; i < factors.count; ++i) half += factors.f[i] / 2;
  return half;
}

// The bucket of one (head, round) from its rotated vector y (half values): per factor f, the
// first argmax over concat(y_part, -y_part) (f values), combined as mixed-radix digits with the
// first factor least significant (ReformerRunner::Hash).
__host__ __device__ inline int32_t LshMixedRadixBucket(const double* y, const LshBucketFactors& factors) {
  int64_t bucket = 0, radix = 1;
  int offset = 0;
  for (int k = 0; k < factors.count; ++k) {
    const int f = factors.f[k], fh = f / 2;
    int best = 0;
    double best_value = y[offset];
    for (int j = 1; j < f; ++j) {
      const double value = j < fh ? y[offset + j] : -y[offset + j - fh];
      if (value > best_value) {
        best_value = value;
        best = j;
      }
    }
    bucket += radix * best;
    radix *= f;
    offset += fh;
  }
  return static_cast<int32_t>(bucket);
}

// Decode window (docs/reformer-decoding.md, step 3): the new token's sorted index s (>= 0) in its
// round, chunk length c, nb chunks before: the window is the W = c * (1 + nb) sorted slots from
// LshWindowStart, each wrapped into [0, n) (n = tokens in the round, the new one included).
__host__ __device__ inline int64_t LshWindowStart(int64_t s, int64_t c, int64_t nb) { return (s / c - nb) * c; }
__host__ __device__ inline int64_t LshWindowSlot(int64_t start, int64_t i, int64_t n) {
  return ((start + i) % n + n) % n;
}

// Device pointers. qk: (tokens, qk_stride) fp32, each row's first heads * head_dim values the
// shared query/key; rotations: (heads, head_dim, num_hashes, half) fp32 with half =
// LshRotationHalf(factors); buckets: (tokens, heads, num_hashes) int32. Projections are summed
// in double in the CPU runner's order, so buckets equal ReformerRunner::Hash's exactly.
cudaError_t LaunchLshHash(const float* qk, int tokens, int qk_stride, const float* rotations, int heads, int head_dim,
                          int num_hashes, const LshBucketFactors& factors, int32_t* buckets, cudaStream_t stream);

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_LSH_HASH_CUH_
