// Device-independent pieces of split-K (flash-decoding style) attention, shared by the CUDA
// kernels (kernels/cuda/decode_attention.cu) and unit-tested on the CPU
// (kernels/cuda/online_softmax_test.cc): the online-softmax partial state and its merge, the
// finalization with meliad's safe softmax (spec-brt.md §1.1: min_x = -1000), and the split/ring
// index math. Everything here is __host__ __device__ and uses only <math.h> float functions.
//
// A partial state over a set J of logits x_j (with values v_j) is
//   m = max_{j in J} x_j          (-inf when J is empty)
//   l = sum_{j in J} exp(x_j - m) (0 when J is empty)
//   acc = sum_{j in J} exp(x_j - m) v_j
// Two partials over disjoint sets merge into the partial over their union (MergeScales); the
// merge is associative and commutative up to float rounding, and an empty partial is its
// identity. The safe softmax of spec-brt.md is the merge with one extra "sink" logit of -1000
// whose value is 0, followed by acc / l (FinalScale).
#ifndef BLOCKSERVE_KERNELS_CUDA_ONLINE_SOFTMAX_CUH_
#define BLOCKSERVE_KERNELS_CUDA_ONLINE_SOFTMAX_CUH_

#include <math.h>

#include "kernels/cuda/cuda_compat.cuh"  // __host__ / __device__ (cuda_runtime.h or the SIMT harness)

namespace blockserve::cuda::softmax {

// meliad's safe_softmax min_x: exp(-1000 - max) is added to the denominator.
constexpr float kSafeSoftmaxMin = -1000.0f;

// The multipliers that bring two partial states (maxima m_a, m_b) onto their common maximum m:
// l = l_a * a + l_b * b and acc = acc_a * a + acc_b * b. When both are empty (m = -inf) both
// multipliers are 0 (never exp(-inf - -inf) = NaN).
struct MergeFactors {
  float m;  // the merged maximum
  float a;  // multiplier of the first partial
  float b;  // multiplier of the second partial
};

__host__ __device__ inline MergeFactors MergeScales(float m_a, float m_b) {
  MergeFactors f;
  f.m = fmaxf(m_a, m_b);
  if (f.m == -INFINITY) {
    f.a = 0.0f;
    f.b = 0.0f;
  } else {
    // exp(-inf - finite) = 0: an empty side contributes nothing.
    f.a = expf(m_a - f.m);
    f.b = expf(m_b - f.m);
  }
  return f;
}

// The (m, l) part of a partial state; the weighted value sum lives beside it (per lane, in
// shared memory or in the split workspace) and is merged with the same MergeFactors.
struct SoftmaxStat {
  float m;
  float l;
};

__host__ __device__ inline SoftmaxStat EmptyStat() { return SoftmaxStat{-INFINITY, 0.0f}; }

// Merges the stat `b` into `a`; returns the factors to apply to the two value sums.
__host__ __device__ inline MergeFactors MergeStat(SoftmaxStat* a, SoftmaxStat b) {
  const MergeFactors f = MergeScales(a->m, b.m);
  a->m = f.m;
  a->l = a->l * f.a + b.l * f.b;
  return f;
}

// Adds one logit x to the partial `s` (a partial over {x} with l = 1 merged in); returns the
// factors: acc = acc * f.a + v * f.b.
__host__ __device__ inline MergeFactors AddLogit(SoftmaxStat* s, float x) {
  return MergeStat(s, SoftmaxStat{x, 1.0f});
}

// The multiplier that turns a complete partial's value sum into the safe-softmax output:
//   M = max(m, -1000), out = acc * exp(m - M) / (l * exp(m - M) + exp(-1000 - M)).
// An empty partial (no keys) gives 0.
__host__ __device__ inline float FinalScale(SoftmaxStat s) {
  const float mx = fmaxf(s.m, kSafeSoftmaxMin);
  const float e = s.m == -INFINITY ? 0.0f : expf(s.m - mx);
  return e / (s.l * e + expf(kSafeSoftmaxMin - mx));
}

// ---- split / ring index math ---------------------------------------------------------------------

// Number of splits of `num_keys` keys into slices of `keys_per_split` (both > 0): every split is
// non-empty.
__host__ __device__ inline int NumSplits(int num_keys, int keys_per_split) {
  return (num_keys + keys_per_split - 1) / keys_per_split;
}

// The key range [*begin, *end) of split `split` (0 <= split < NumSplits); ranges are disjoint,
// in order and cover [0, num_keys).
__host__ __device__ inline void SplitRange(int num_keys, int keys_per_split, int split, int* begin, int* end) {
  const long long b = static_cast<long long>(split) * keys_per_split;
  const long long e = b + keys_per_split;
  *begin = static_cast<int>(b < num_keys ? b : num_keys);
  *end = static_cast<int>(e < num_keys ? e : num_keys);
}

// The ring row of key j for a query whose first key is row `first_key` (0 <= first_key <
// kv_rows, 0 <= j), as cpu::AttentionArgs with m = 1: (first_key + j) % kv_rows.
__host__ __device__ inline int RingRow(int first_key, int j, int kv_rows) {
  return static_cast<int>((static_cast<long long>(first_key) + j) % kv_rows);
}

// Offset (in floats) of the partial of (sequence b, head h, split s) in the split workspace:
// each partial is [m, l, acc[head_dim]].
__host__ __device__ inline long long PartialOffset(int b, int h, int s, int num_heads, int num_splits,
                                                   int head_dim) {
  return ((static_cast<long long>(b) * num_heads + h) * num_splits + s) * (head_dim + 2);
}

}  // namespace blockserve::cuda::softmax

#endif  // BLOCKSERVE_KERNELS_CUDA_ONLINE_SOFTMAX_CUH_
