// The device-independent split-K softmax pieces (kernels/cuda/online_softmax.cuh) on the CPU:
// partial states built key by key and merged in any grouping equal one softmax over the union
// (in double), empty partials are the identity, the safe-softmax finalization matches meliad's
// formula, and the split / ring index math covers the window exactly once.
#include "kernels/cuda/online_softmax.cuh"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::cuda::softmax {
namespace {

constexpr int kDim = 3;  // value components carried beside each partial

struct Partial {
  SoftmaxStat stat = EmptyStat();
  float acc[kDim] = {0.0f, 0.0f, 0.0f};
};

Partial Build(const std::vector<float>& x, const std::vector<float>& v, int begin, int end) {
  Partial p;
  for (int j = begin; j < end; ++j) {
    const MergeFactors f = AddLogit(&p.stat, x[j]);
    for (int d = 0; d < kDim; ++d) p.acc[d] = p.acc[d] * f.a + v[j * kDim + d] * f.b;
  }
  return p;
}

Partial Merge(Partial a, const Partial& b) {
  const MergeFactors f = MergeStat(&a.stat, b.stat);
  for (int d = 0; d < kDim; ++d) a.acc[d] = a.acc[d] * f.a + b.acc[d] * f.b;
  return a;
}

// The safe softmax over all of x (double), as in ref::Attention.
std::vector<double> SafeSoftmaxOut(const std::vector<float>& x, const std::vector<float>& v) {
  double mx = -1000.0;
  for (float e : x) mx = std::max(mx, static_cast<double>(e));
  double denom = std::exp(-1000.0 - mx);
  for (float e : x) denom += std::exp(e - mx);
  std::vector<double> out(kDim, 0.0);
  for (size_t j = 0; j < x.size(); ++j) {
    for (int d = 0; d < kDim; ++d) out[d] += std::exp(x[j] - mx) / denom * v[j * kDim + d];
  }
  return out;
}

void ExpectOut(const Partial& p, const std::vector<double>& want, double tol) {
  const float s = FinalScale(p.stat);
  for (int d = 0; d < kDim; ++d) EXPECT_NEAR(p.acc[d] * s, want[d], tol * (1 + std::fabs(want[d]))) << d;
}

TEST(OnlineSoftmaxTest, MergeScalesOfEmptyPartialsAreZeroNotNan) {
  const MergeFactors both = MergeScales(-INFINITY, -INFINITY);
  EXPECT_EQ(both.m, -INFINITY);
  EXPECT_EQ(both.a, 0.0f);
  EXPECT_EQ(both.b, 0.0f);
  const MergeFactors left = MergeScales(-INFINITY, 2.5f);
  EXPECT_EQ(left.m, 2.5f);
  EXPECT_EQ(left.a, 0.0f);
  EXPECT_EQ(left.b, 1.0f);
  const MergeFactors right = MergeScales(-3.0f, -INFINITY);
  EXPECT_EQ(right.m, -3.0f);
  EXPECT_EQ(right.a, 1.0f);
  EXPECT_EQ(right.b, 0.0f);
  const MergeFactors two = MergeScales(1.0f, 3.0f);
  EXPECT_EQ(two.m, 3.0f);
  EXPECT_FLOAT_EQ(two.a, std::exp(-2.0f));
  EXPECT_EQ(two.b, 1.0f);
}

TEST(OnlineSoftmaxTest, EmptyPartialIsTheIdentityAndFinalizesToZero) {
  const Partial empty;
  EXPECT_EQ(FinalScale(empty.stat), 0.0f);
  const Partial ee = Merge(empty, empty);
  EXPECT_EQ(ee.stat.m, -INFINITY);
  EXPECT_EQ(ee.stat.l, 0.0f);
  for (float a : ee.acc) EXPECT_EQ(a, 0.0f);

  const std::vector<float> x = {0.5f, -1.25f, 3.0f};
  const std::vector<float> v = {1, 2, 3, -4, 5, -6, 0.5f, 0.25f, -0.125f};
  const Partial p = Build(x, v, 0, 3);
  for (const Partial& q : {Merge(p, empty), Merge(empty, p)}) {
    EXPECT_EQ(q.stat.m, p.stat.m);
    EXPECT_EQ(q.stat.l, p.stat.l);
    for (int d = 0; d < kDim; ++d) EXPECT_EQ(q.acc[d], p.acc[d]);
  }
}

TEST(OnlineSoftmaxTest, AnySplitAndMergeOrderEqualsOneSoftmaxOverTheUnion) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (int n : {1, 2, 7, 31, 64, 100}) {
    std::vector<float> x(n), v(n * kDim);
    for (float& e : x) e = dist(rng);
    for (float& e : v) e = dist(rng);
    const std::vector<double> want = SafeSoftmaxOut(x, v);
    SCOPED_TRACE(testing::Message() << "n " << n);
    ExpectOut(Build(x, v, 0, n), want, 1e-5);
    for (int kps : {1, 3, 8, 32, 200}) {
      const int splits = NumSplits(n, kps);
      std::vector<Partial> parts;
      for (int s = 0; s < splits; ++s) {
        int b = 0, e = 0;
        SplitRange(n, kps, s, &b, &e);
        parts.push_back(Build(x, v, b, e));
      }
      // Left fold, right fold and a tree (pairwise) reduction, with empty partials mixed in.
      Partial left;
      for (const Partial& p : parts) left = Merge(Merge(left, Partial()), p);
      Partial right;
      for (int s = splits - 1; s >= 0; --s) right = Merge(parts[s], right);
      std::vector<Partial> level = parts;
      while (level.size() > 1) {
        std::vector<Partial> next;
        for (size_t i = 0; i < level.size(); i += 2) {
          next.push_back(i + 1 < level.size() ? Merge(level[i], level[i + 1]) : Merge(level[i], Partial()));
        }
        level = next;
      }
      SCOPED_TRACE(testing::Message() << "keys_per_split " << kps);
      ExpectOut(left, want, 1e-5);
      ExpectOut(right, want, 1e-5);
      ExpectOut(level[0], want, 1e-5);
      // Associativity of the stat itself: (a.b).c == a.(b.c) up to rounding.
      if (splits >= 3) {
        const Partial ab_c = Merge(Merge(parts[0], parts[1]), parts[2]);
        const Partial a_bc = Merge(parts[0], Merge(parts[1], parts[2]));
        EXPECT_EQ(ab_c.stat.m, a_bc.stat.m);
        EXPECT_NEAR(ab_c.stat.l, a_bc.stat.l, 1e-6f * a_bc.stat.l);
        for (int d = 0; d < kDim; ++d) EXPECT_NEAR(ab_c.acc[d], a_bc.acc[d], 1e-5f * (1 + std::fabs(a_bc.acc[d])));
      }
    }
  }
}

TEST(OnlineSoftmaxTest, SafeSoftmaxFloorNearAndFarBelowMinusThousand) {
  const std::vector<float> v = {1, 2, 3, -1, -2, -3};
  // Logits just below the floor: the exp(-1000 - mx) term weighs like one more key.
  const std::vector<float> near = {-1001.0f, -1002.5f};
  const Partial pn = Merge(Build(near, v, 0, 1), Build(near, v, 1, 2));
  ExpectOut(pn, SafeSoftmaxOut(near, v), 1e-5);
  // Far below: the query attends to (almost) nothing.
  const std::vector<float> far = {-5000.0f, -4000.0f};
  const Partial pf = Merge(Build(far, v, 0, 1), Build(far, v, 1, 2));
  for (int d = 0; d < kDim; ++d) EXPECT_NEAR(pf.acc[d] * FinalScale(pf.stat), 0.0, 1e-30);
  // Far above: the floor term vanishes.
  const std::vector<float> high = {2000.0f, 1999.0f};
  ExpectOut(Merge(Build(high, v, 0, 1), Build(high, v, 1, 2)), SafeSoftmaxOut(high, v), 1e-5);
}

TEST(OnlineSoftmaxTest, SplitRangesCoverTheWindowOnceInOrder) {
  for (int n : {1, 2, 31, 64, 100, 128, 512}) {
    for (int kps : {1, 7, 32, 64, 1000}) {
      const int splits = NumSplits(n, kps);
      ASSERT_GE(splits, 1);
      int next = 0;
      for (int s = 0; s < splits; ++s) {
        int b = -1, e = -1;
        SplitRange(n, kps, s, &b, &e);
        EXPECT_EQ(b, next) << n << " " << kps << " " << s;
        EXPECT_GT(e, b) << "every split is non-empty";
        EXPECT_LE(e - b, kps);
        next = e;
      }
      EXPECT_EQ(next, n);
      int b = -1, e = -1;
      SplitRange(n, kps, splits, &b, &e);  // one past the last split: empty at the end
      EXPECT_EQ(b, n);
      EXPECT_EQ(e, n);
    }
  }
}

TEST(OnlineSoftmaxTest, RingRowAndPartialOffset) {
  EXPECT_EQ(RingRow(0, 0, 1), 0);
  EXPECT_EQ(RingRow(0, 5, 1), 0);
  EXPECT_EQ(RingRow(3, 0, 8), 3);
  EXPECT_EQ(RingRow(3, 4, 8), 7);
  EXPECT_EQ(RingRow(3, 5, 8), 0);
  EXPECT_EQ(RingRow(7, 15, 8), 6);
  EXPECT_EQ(RingRow(std::numeric_limits<int>::max() - 1, 5, std::numeric_limits<int>::max()), 4);  // no int overflow
  // Partials are dense, (batch, head, split)-major, head_dim + 2 floats each.
  const int heads = 3, splits = 4, kd = 5;
  long long want = 0;
  for (int b = 0; b < 2; ++b) {
    for (int h = 0; h < heads; ++h) {
      for (int s = 0; s < splits; ++s, want += kd + 2) EXPECT_EQ(PartialOffset(b, h, s, heads, splits, kd), want);
    }
  }
}

}  // namespace
}  // namespace blockserve::cuda::softmax
