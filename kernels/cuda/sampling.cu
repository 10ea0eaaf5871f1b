// CUDA sampler: one block per sequence. Penalties and temperature are applied element-wise; the
// top-k, top-p and draw prefixes of the sorted order are found by a bitwise search over the
// sort keys of sampling_math.cuh (each step one block-wide count or mass), so the vocabulary is
// never sorted. Also compiled as host C++ on the SIMT harness (BLOCKSERVE_SIMT,
// kernels_cuda_simt_test): use only what kernels/cuda/simt/simt.h provides, launch through
// BS_LAUNCH.
#include "kernels/cuda/sampling.cuh"

#include <math.h>

#include "kernels/cuda/launch.cuh"

namespace blockserve::cuda {
namespace {
namespace sampling_kernel {  // kernels_simt.cc compiles every .cu into one translation unit

constexpr int kThreads = 256;  // a multiple of 32: every warp is full, so full-mask shuffles are valid
constexpr int kWarps = kThreads / 32;

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a < b ? a : b;
  }
};

// Every thread of the block gets the same result: lane 0's warp result per warp, combined in warp
// order by each thread (so double sums round identically everywhere and branches agree).
template <typename T, typename Op>
__device__ T BlockReduce(T v, Op op) {
  __shared__ T partial[kWarps];
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  __syncthreads();  // the previous reduction's readers are done with `partial`
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  T r = partial[0];
  for (int w = 1; w < kWarps; ++w) r = op(r, partial[w]);
  return r;
}

// The largest key c < 2^key_bits with ok(measure(c)), for a measure non-increasing in c (the size
// or mass of the sorted prefix {key >= c}); 0 when none. Every thread must call it alike.
template <typename Measure, typename Ok>
__device__ uint64_t SearchKey(int key_bits, Measure measure, Ok ok) {
  uint64_t c = 0;
  for (int bit = key_bits - 1; bit >= 0; --bit) {
    const uint64_t candidate = c | (uint64_t{1} << bit);
    if (ok(measure(candidate))) c = candidate;
  }
  return c;
}

__global__ void SampleKernel(float* logits, int vocab, const DeviceSamplingParams* params,
                             const int32_t* output_counts, const uint8_t* prompt_seen, const double* uniforms,
                             int32_t* tokens) {
  const int b = blockIdx.x;
  const DeviceSamplingParams p = params[b];
  float* x = logits + static_cast<size_t>(b) * vocab;
  const int32_t* counts = output_counts != nullptr ? output_counts + static_cast<size_t>(b) * vocab : nullptr;
  const uint8_t* seen = prompt_seen != nullptr ? prompt_seen + static_cast<size_t>(b) * vocab : nullptr;
  const int id_bits = IdBits(vocab);
  const int key_bits = 32 + id_bits;
  const bool greedy = p.temperature == 0.0f;

  // Penalties and temperature, in place; the most likely token (first maximum).
  uint64_t best = 0;
  for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
    const int count = counts != nullptr ? counts[t] : 0;
    const bool in_prompt = seen != nullptr && seen[t] != 0;
    float v = PenalizeLogit(x[t], in_prompt || count > 0, count, p.repetition_penalty, p.presence_penalty,
                            p.frequency_penalty);
    if (!greedy) v = v / p.temperature;
    x[t] = v;
    best = MaxOp()(best, SortKey(v, t, vocab, id_bits));
  }
  best = BlockReduce(best, MaxOp());
  if (greedy) {
    if (threadIdx.x == 0) tokens[b] = SortKeyId(best, vocab, id_bits);
    return;
  }
  const double top = SortKeyLogit(best, id_bits);
  auto prob = [&](int t) { return exp(static_cast<double>(x[t]) - top); };
  auto key = [&](int t) { return SortKey(x[t], t, vocab, id_bits); };

  // Top-k: the prefix {key >= floor_k} holds exactly the top_k most likely tokens.
  uint64_t floor_k = 0;
  if (p.top_k > 0 && p.top_k < vocab) {
    floor_k = SearchKey(
        key_bits,
        [&](uint64_t c) {
          int n = 0;
          for (int t = threadIdx.x; t < vocab; t += blockDim.x) n += key(t) >= c ? 1 : 0;
          return BlockReduce(n, SumOp());
        },
        // A prefix of n tokens holds every kept one once a token of rank n would be dropped.
        [&](int n) { return !TopKKeeps(n, p.top_k); });
  }
  // Top-p within the top-k set: the smallest prefix reaching top_p of the set's mass.
  uint64_t floor_p = 0;
  if (p.top_p < 1.0f) {
    double total = 0;
    for (int t = threadIdx.x; t < vocab; t += blockDim.x) total += key(t) >= floor_k ? prob(t) : 0.0;
    total = BlockReduce(total, SumOp());
    floor_p = SearchKey(
        key_bits,
        [&](uint64_t c) {
          const uint64_t lo = c > floor_k ? c : floor_k;
          double mass = 0;
          for (int t = threadIdx.x; t < vocab; t += blockDim.x) mass += key(t) >= lo ? prob(t) : 0.0;
          return BlockReduce(mass, SumOp());
        },
        [&](double mass) { return TopPReached(mass, total, p.top_p); });
  }
  // Min-p on top; the most likely token is always kept.
  const uint64_t floor_kp = floor_k > floor_p ? floor_k : floor_p;
  auto kept = [&](int t, uint64_t lo) { return key(t) >= lo && MinPKeeps(prob(t), p.min_p); };
  auto kept_prob = [&](int t, uint64_t lo) { return kept(t, lo) ? prob(t) : 0.0; };
  double kept_total = 0;
  for (int t = threadIdx.x; t < vocab; t += blockDim.x) kept_total += kept_prob(t, floor_kp);
  kept_total = BlockReduce(kept_total, SumOp());

  // The draw: the first kept token (in sorted order) whose cumulative mass exceeds u; the last
  // kept token when rounding leaves u at or past the total (as the CPU sampler).
  const double u = uniforms[b] * kept_total;
  const uint64_t floor_u = SearchKey(
      key_bits,
      [&](uint64_t c) {
        const uint64_t lo = c > floor_kp ? c : floor_kp;
        double mass = 0;
        for (int t = threadIdx.x; t < vocab; t += blockDim.x) mass += kept_prob(t, lo);
        return BlockReduce(mass, SumOp());
      },
      [&](double mass) { return mass > u; });
  uint64_t chosen = ~uint64_t{0};
  const uint64_t lo = floor_u > floor_kp ? floor_u : floor_kp;
  for (int t = threadIdx.x; t < vocab; t += blockDim.x) {
    if (kept(t, lo)) chosen = MinOp()(chosen, key(t));
  }
  chosen = BlockReduce(chosen, MinOp());
  if (threadIdx.x == 0) tokens[b] = SortKeyId(chosen, vocab, id_bits);
}

}  // namespace sampling_kernel
}  // namespace

cudaError_t LaunchSample(float* logits, int batch, int vocab, const DeviceSamplingParams* params,
                         const int32_t* output_counts, const uint8_t* prompt_seen, const double* uniforms,
                         int32_t* tokens, cudaStream_t stream) {
  if (batch <= 0 || vocab <= 0 || logits == nullptr || params == nullptr || uniforms == nullptr ||
      tokens == nullptr) {
    return cudaErrorInvalidValue;
  }
  BS_LAUNCH(sampling_kernel::SampleKernel, batch, sampling_kernel::kThreads, 0, stream)(logits, vocab, params, output_counts, prompt_seen, uniforms,
                                                      tokens);
  return cudaGetLastError();
}

}  // namespace blockserve::cuda
