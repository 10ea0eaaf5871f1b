// Device-independent pieces of the CUDA sampler (kernels/cuda/sampling.cu), __host__ __device__
// so that kernels_cuda_simt_test checks them directly on the CPU.
//
// Sorted order. engine/sampler.cc orders candidates by processed logit, most likely first, ties
// by lower token id first. SortKey() maps (logit, id) to a uint64 whose descending order is
// exactly that order (all keys of one vocabulary are distinct), so that "a prefix of the sorted
// order" is "every token whose key is >= some key", and the kernel finds prefixes by a bitwise
// search over keys instead of sorting the vocabulary.
#ifndef BLOCKSERVE_KERNELS_CUDA_SAMPLING_MATH_CUH_
#define BLOCKSERVE_KERNELS_CUDA_SAMPLING_MATH_CUH_

#include <cstdint>
#include <cstring>

#include "kernels/cuda/cuda_compat.cuh"  // __host__ __device__ (cuda_runtime.h or the SIMT harness)

namespace blockserve::cuda {

// Float -> uint32 preserving order (for non-NaN values; -0.0 is taken as +0.0, as `>` does).
__host__ __device__ inline uint32_t OrderedFloatBits(float x) {
  if (x == 0.0f) x = 0.0f;
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  return (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
}

__host__ __device__ inline float OrderedBitsToFloat(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) != 0 ? (key & 0x7fffffffu) : ~key;
  float x;
  memcpy(&x, &bits, sizeof(x));
  return x;
}

// Bits needed for token ids in [0, vocab): 0 for vocab 1, else ceil(log2(vocab)).
__host__ __device__ inline int IdBits(int vocab) {
  int bits = 0;
  while (bits < 31 && (int64_t{1} << bits) < vocab) ++bits;
  return bits;
}

// Larger key = earlier in the sampler's order (higher logit; equal logits: lower id).
__host__ __device__ inline uint64_t SortKey(float logit, int id, int vocab, int id_bits) {
  return (static_cast<uint64_t>(OrderedFloatBits(logit)) << id_bits) | static_cast<uint64_t>(vocab - 1 - id);
}
__host__ __device__ inline int SortKeyId(uint64_t key, int vocab, int id_bits) {
  return vocab - 1 - static_cast<int>(key & ((uint64_t{1} << id_bits) - 1));
}
__host__ __device__ inline float SortKeyLogit(uint64_t key, int id_bits) {
  return OrderedBitsToFloat(static_cast<uint32_t>(key >> id_bits));
}

// Repetition, presence and frequency penalties of engine/sampler.cc for one logit. `seen`: the
// token is in the prompt or the output; `count`: its output count. Products are rounded
// separately (no fused multiply-add) so that the device matches the CPU sampler bit for bit.
__host__ __device__ inline float MulRn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ inline float PenalizeLogit(float logit, bool seen, int count, float repetition, float presence,
                                               float frequency) {
  if (seen && repetition != 1.0f) logit = logit > 0 ? logit / repetition : MulRn(logit, repetition);
  if (count > 0 && (presence != 0.0f || frequency != 0.0f)) {
    logit -= MulRn(presence, 1.0f) + MulRn(frequency, static_cast<float>(count));
  }
  return logit;
}

// Top-k: a token at sorted rank `rank` (0 = most likely) is kept when top_k is 0 or rank < top_k.
__host__ __device__ inline bool TopKKeeps(int64_t rank, int top_k) { return top_k <= 0 || rank < top_k; }

// Top-p: a sorted prefix whose unnormalized mass is `mass` (of `total`) reaches top_p.
__host__ __device__ inline bool TopPReached(double mass, double total, float top_p) {
  return mass >= static_cast<double>(top_p) * total;
}

// Top-p cut over sorted unnormalized probabilities (most likely first): the length of the
// smallest prefix whose mass reaches top_p of the total, at least 1; n when no prefix reaches
// it (rounding) or top_p >= 1.
__host__ __device__ inline int TopPCut(const double* sorted_probs, int n, float top_p) {
  if (n <= 0) return 0;
  if (!(top_p < 1.0f)) return n;
  double total = 0;
  for (int i = 0; i < n; ++i) total += sorted_probs[i];
  double mass = 0;
  for (int i = 0; i < n; ++i) {
    mass += sorted_probs[i];
    if (TopPReached(mass, total, top_p)) return i + 1;
  }
  return n;
}

// Min-p: a token whose probability relative to the most likely one (exp(logit - top)) is
// `rel_prob` is kept when rel_prob >= min_p (the most likely token always is, as min_p <= 1).
__host__ __device__ inline bool MinPKeeps(double rel_prob, float min_p) {
  return !(min_p > 0.0f) || rel_prob >= static_cast<double>(min_p);
}

// Counter-based uniform number in [0, 1) for sequence `seed` at decode `step` (SplitMix64
// finalizer of a Weyl sequence; 53 random bits). The host or a kernel computes the same value.
__host__ __device__ inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
__host__ __device__ inline double SamplingUniform(uint64_t seed, uint64_t step) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ (step * 0xd1b54a32d192ed03ull));
  return static_cast<double>(bits >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

}  // namespace blockserve::cuda

#endif  // BLOCKSERVE_KERNELS_CUDA_SAMPLING_MATH_CUH_
