// The CUDA Reformer LSH hash (kernels/cuda/lsh_hash.cu) on the CPU SIMT harness against
// ref::LshHash (ReformerRunner::Hash), and the __host__ __device__ bucket and window math.
#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/lsh_hash.cuh"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

LshBucketFactors Factors(std::initializer_list<int> fs) {
  LshBucketFactors f;
  for (int v : fs) f.f[f.count++] = v;
  return f;
}

TEST(LshMathTest, MixedRadixBucketTakesFirstMaximumPerFactor) {
  const double tie[] = {1.0, 1.0};
  EXPECT_EQ(LshMixedRadixBucket(tie, Factors({4})), 0);          // [1, 1, -1, -1]: the first wins
  const double neg[] = {-2.0, 1.0};
  EXPECT_EQ(LshMixedRadixBucket(neg, Factors({4})), 2);          // [-2, 1, 2, -1]
  const double two[] = {-2.0, 1.0, -0.5, 0.1};
  EXPECT_EQ(LshMixedRadixBucket(two, Factors({4, 4})), 2 + 4 * 2);  // second: [-0.5, 0.1, 0.5, -0.1]
  const double flat[] = {0.0, 0.0, 0.0};
  EXPECT_EQ(LshMixedRadixBucket(flat, Factors({6})), 0);
  EXPECT_EQ(LshRotationHalf(Factors({6, 2, 10})), 9);
}

TEST(LshMathTest, WindowMatchesBruteForceSort) {
  std::mt19937 rng(5);
  for (int it = 0; it < 400; ++it) {
    const int64_t c = 1 + it % 8, nb = it % 3, W = c * (1 + nb);
    const int64_t n = 1 + static_cast<int64_t>(rng() % 60);  // tokens, the new one (position n - 1) included
    const int nbuckets = 1 + static_cast<int>(rng() % 9);
    std::vector<int> bucket(n);
    for (int& b : bucket) b = static_cast<int>(rng() % nbuckets);
    // Brute force: sort by (bucket, position); the new token's index.
    std::vector<std::pair<int, int64_t>> sorted;
    for (int64_t p = 0; p < n; ++p) sorted.emplace_back(bucket[p], p);
    std::sort(sorted.begin(), sorted.end());
    const int64_t s_sorted = std::find(sorted.begin(), sorted.end(), std::make_pair(bucket[n - 1], n - 1)) - sorted.begin();
    // The index from counts (what the bucket index gives): #{b < b_new} + #{cached b == b_new}.
    int64_t s = 0;
    for (int64_t p = 0; p + 1 < n; ++p) s += bucket[p] <= bucket[n - 1] ? 1 : 0;
    ASSERT_EQ(s, s_sorted);
    // The window: chunks floor(s/c) - nb .. floor(s/c) of the sorted order, slots wrapping mod n.
    std::vector<int64_t> want;
    for (int64_t q = s / c - nb; q <= s / c; ++q) {
      for (int64_t k = 0; k < c; ++k) want.push_back(sorted[((q * c + k) % n + n) % n].second);
    }
    const int64_t start = LshWindowStart(s, c, nb);
    ASSERT_EQ(start % c, 0);
    std::vector<int64_t> got;
    bool has_self = false;
    for (int64_t i = 0; i < W; ++i) {
      const int64_t slot = LshWindowSlot(start, i, n);
      ASSERT_GE(slot, 0);
      ASSERT_LT(slot, n);
      got.push_back(sorted[slot].second);
      has_self |= sorted[slot].second == n - 1;
    }
    ASSERT_EQ(got, want) << "n " << n << " c " << c << " nb " << nb << " s " << s;
    ASSERT_TRUE(has_self);
  }
}

TEST(CudaSimtLshHashTest, MatchesReferenceExactly) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::vector<LshBucketFactors> factor_sets = {Factors({8}), Factors({4, 4}), Factors({6, 2, 10}),
                                                     Factors({130})};
  for (const LshBucketFactors& factors : factor_sets) {
    for (int heads : {1, 3}) {
      for (int dh : {7, 33}) {
        for (int nh : {1, 2}) {
          const int tokens = 5, stride = heads * dh + 3, half = LshRotationHalf(factors);
          SCOPED_TRACE(testing::Message() << "factors " << factors.count << " half " << half << " H " << heads
                                          << " dh " << dh << " nh " << nh);
          std::vector<float> qk(tokens * stride), rot(static_cast<size_t>(heads) * dh * nh * half);
          for (float& v : qk) v = normal(rng);
          for (float& v : rot) v = normal(rng);
          std::vector<int32_t> got(tokens * heads * nh, -1), want(heads * nh);  // poisoned
          ASSERT_EQ(LaunchLshHash(qk.data(), tokens, stride, rot.data(), heads, dh, nh, factors, got.data(), nullptr),
                    cudaSuccess);
          std::vector<int> fs(factors.f, factors.f + factors.count);
          for (int t = 0; t < tokens; ++t) {
            ref::LshHash(&qk[t * stride], rot.data(), heads, dh, nh, fs, want.data());
            for (int i = 0; i < heads * nh; ++i) ASSERT_EQ(got[t * heads * nh + i], want[i]) << "t " << t << " i " << i;
          }
        }
      }
    }
  }
}

TEST(CudaSimtLshHashTest, RejectsBadArguments) {
  float x = 1.0f;
  int32_t b = -1;
  EXPECT_EQ(LaunchLshHash(&x, 0, 1, &x, 1, 1, 1, Factors({2}), &b, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchLshHash(&x, 1, 1, &x, 1, 1, 1, Factors({3}), &b, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchLshHash(&x, 1, 1, &x, 1, 1, 1, LshBucketFactors{}, &b, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchLshHash(&x, 1, 0, &x, 1, 1, 1, Factors({2}), &b, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(b, -1);
}

}  // namespace
}  // namespace blockserve::cuda
