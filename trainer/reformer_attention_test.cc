// Reformer attention against direct scalar implementations on tiny shapes: hashing (single and
// factorized buckets), sorting and chunk windows, masks, and the combination of hash rounds
// (checked as one softmax over the union of the rounds' windows, duplicates counted per round).
#include "trainer/reformer_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::trainer {
namespace {

using Mat = std::vector<std::vector<double>>;  // [L][dh]

Mat ToMat(const torch::Tensor& t, int b, int h) {
  const torch::Tensor x = t[b][h].to(torch::kFloat64).contiguous();
  Mat m(x.size(0), std::vector<double>(x.size(1)));
  for (int64_t i = 0; i < x.size(0); ++i) {
    for (int64_t j = 0; j < x.size(1); ++j) m[i][j] = x[i][j].item<double>();
  }
  return m;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<double> UnitKey(const std::vector<double>& x) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss + x.size() * 1e-6);
  std::vector<double> k(x);
  for (double& v : k) v *= inv;
  return k;
}

// Bucket of vector x in round r: per factor, argmax over [xR; -xR] (first maximum wins).
int64_t RefBucket(const std::vector<double>& x, const torch::Tensor& R /* (dh, nh, rot/2) */, int r,
                  const std::vector<int>& factors) {
  int64_t bucket = 0, radix = 1, offset = 0;
  for (int f : factors) {
    std::vector<double> signed_rot;
    for (int j = 0; j < f / 2; ++j) {
      double s = 0;
      for (size_t d = 0; d < x.size(); ++d) s += x[d] * R[d][r][offset + j].item<double>();
      signed_rot.push_back(s);
    }
    const size_t half = signed_rot.size();
    for (size_t j = 0; j < half; ++j) signed_rot.push_back(-signed_rot[j]);
    const int64_t arg = std::max_element(signed_rot.begin(), signed_rot.end()) - signed_rot.begin();
    bucket += radix * arg;
    radix *= f;
    offset += f / 2;
  }
  return bucket;
}

// Direct LSH attention for one (b, h): every position's output as a softmax over the union of
// its windows in all rounds (duplicates once per round), with the masks of spec §1.5.
// Positions from `valid` on (-1: none) are pads, in bucket NB of every round.
Mat RefLsh(const Mat& qk, const Mat& v, const torch::Tensor& R, const std::vector<int>& factors, int chunk,
           int valid = -1) {
  const int L = static_cast<int>(qk.size()), nh = static_cast<int>(R.size(1));
  if (valid < 0) valid = L;
  int64_t NB = 1;
  for (int f : factors) NB *= f;
  // Sorted order: (bucket + r*(NB+1), position), round-major.
  std::vector<std::pair<int64_t, int>> slots;  // (sort key, position)
  for (int r = 0; r < nh; ++r) {
    for (int t = 0; t < L; ++t) {
      const int64_t bucket = t < valid ? RefBucket(qk[t], R, r, factors) : NB;
      slots.push_back({(bucket + r * (NB + 1)) * L + t, t});
    }
  }
  std::vector<int> order(slots.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return slots[a].first < slots[b].first; });
  const int n = static_cast<int>(order.size()), nc = n / chunk;
  std::vector<int> pos(n);
  for (int s = 0; s < n; ++s) pos[s] = slots[order[s]].second;
  Mat out(L, std::vector<double>(qk[0].size(), 0.0));
  for (int i = 0; i < L; ++i) {
    std::vector<double> logits;
    std::vector<int> key_pos;
    for (int s = 0; s < n; ++s) {
      if (pos[s] != i) continue;  // i's slot in some round
      const int c = s / chunk, prev = (c - 1 + nc) % nc;
      for (int cc : {prev, c}) {
        for (int j = cc * chunk; j < (cc + 1) * chunk; ++j) {
          double logit = Dot(qk[i], UnitKey(qk[pos[j]]));
          if (i < pos[j]) logit = kReformerMaskValue;
          if (i == pos[j]) logit = kReformerSelfMaskValue;
          logits.push_back(logit);
          key_pos.push_back(pos[j]);
        }
      }
    }
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (double l : logits) sum += std::exp(l - mx);
    for (size_t j = 0; j < logits.size(); ++j) {
      const double p = std::exp(logits[j] - mx) / sum;
      for (size_t d = 0; d < out[i].size(); ++d) out[i][d] += p * v[key_pos[j]][d];
    }
  }
  return out;
}

void ExpectNear(const torch::Tensor& got, int b, int h, const Mat& want, double tol, const std::string& what) {
  const Mat g = ToMat(got, b, h);
  for (size_t i = 0; i < want.size(); ++i) {
    for (size_t d = 0; d < want[i].size(); ++d) {
      ASSERT_NEAR(g[i][d], want[i][d], tol) << what << " position " << i << " dim " << d;
    }
  }
}

TEST(ReformerAttentionTest, HashingMatchesTheDirectDefinition) {
  torch::manual_seed(1);
  for (const std::vector<int>& factors : {std::vector<int>{8}, std::vector<int>{4, 6}}) {
    const int64_t H = 2, L = 16, dh = 5, nh = 3;
    const torch::Tensor qk = torch::randn({1, H, L, dh});
    const torch::Tensor R = torch::randn({H, dh, nh, RotationSize(factors) / 2});
    const torch::Tensor buckets = LshHash(qk, R, factors);
    ASSERT_EQ(buckets.sizes(), (std::vector<int64_t>{1, H, nh, L}));
    std::set<int64_t> seen;
    for (int h = 0; h < H; ++h) {
      const Mat x = ToMat(qk, 0, h);
      for (int r = 0; r < nh; ++r) {
        for (int t = 0; t < L; ++t) {
          const int64_t want = RefBucket(x[t], R[h], r, factors);
          EXPECT_EQ(buckets[0][h][r][t].item<int64_t>(), want);
          EXPECT_GE(want, 0);
          EXPECT_LT(want, TotalBuckets(factors));
          seen.insert(want);
        }
      }
    }
    EXPECT_GT(seen.size(), 3u);  // not degenerate
    // Scale does not change the buckets (angular LSH).
    EXPECT_TRUE(torch::equal(LshHash(qk * 3.5, R, factors), buckets));
  }
}

TEST(ReformerAttentionTest, LshAttentionEqualsOneSoftmaxOverTheRoundsWindows) {
  torch::manual_seed(2);
  struct Case {
    int L, chunk, nh;
    std::vector<int> factors;
  };
  for (const Case& c : {Case{16, 4, 1, {4}}, Case{16, 4, 2, {4}}, Case{24, 4, 3, {2, 4}}, Case{12, 6, 2, {6}},
                        Case{8, 8, 2, {4}} /* L <= chunk: plain attention */}) {
    const int64_t B = 2, H = 2, dh = 4;
    const torch::Tensor qk = torch::randn({B, H, c.L, dh}, torch::kFloat64);
    const torch::Tensor v = torch::randn({B, H, c.L, dh}, torch::kFloat64);
    const torch::Tensor R = torch::randn({H, dh, c.nh, RotationSize(c.factors) / 2}, torch::kFloat64);
    const LshAttentionResult got = LshAttention(qk, v, R, c.factors, c.chunk);
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < H; ++h) {
        Mat want;
        if (c.L <= c.chunk) {  // full causal attention with the self mask, no hashing
          const Mat q = ToMat(qk, b, h), vv = ToMat(v, b, h);
          want.assign(c.L, std::vector<double>(dh, 0.0));
          for (int i = 0; i < c.L; ++i) {
            std::vector<double> l(c.L);
            for (int j = 0; j < c.L; ++j) {
              l[j] = j > i ? kReformerMaskValue : j == i ? kReformerSelfMaskValue : Dot(q[i], UnitKey(q[j]));
            }
            const double mx = *std::max_element(l.begin(), l.end());
            double sum = 0;
            for (double x : l) sum += std::exp(x - mx);
            for (int j = 0; j < c.L; ++j) {
              for (int d = 0; d < dh; ++d) want[i][d] += std::exp(l[j] - mx) / sum * vv[j][d];
            }
          }
        } else {
          want = RefLsh(ToMat(qk, b, h), ToMat(v, b, h), R[h], c.factors, c.chunk);
        }
        ExpectNear(got.out, b, h, want, 1e-9, "L=" + std::to_string(c.L) + " nh=" + std::to_string(c.nh));
      }
    }
    // Position 0 sees only itself (every other key is in the future): its output is v[0].
    EXPECT_TRUE(torch::allclose(got.out.select(2, 0), v.select(2, 0), 1e-9, 1e-9));
  }
}

// Right padding: pads take the pad bucket (sorted after every real token of a round) and are
// masked as keys; real outputs follow the direct definition with those slots in place.
TEST(ReformerAttentionTest, PaddedLshAttentionSortsPadsLastInEveryRound) {
  torch::manual_seed(5);
  const int64_t H = 2, dh = 4, P = 16, chunk = 4;
  const std::vector<int> factors = {4};
  for (int valid : {5, 9, 13, 15}) {
    const torch::Tensor qk = torch::randn({1, H, P, dh}, torch::kFloat64);
    const torch::Tensor v = torch::randn({1, H, P, dh}, torch::kFloat64);
    const torch::Tensor R = torch::randn({H, dh, 2, 2}, torch::kFloat64);
    const LshAttentionResult got = LshAttention(qk, v, R, factors, chunk, valid);
    EXPECT_TRUE((got.buckets.narrow(-1, valid, P - valid) == TotalBuckets(factors)).all().item<bool>());
    for (int h = 0; h < H; ++h) {
      const Mat want = RefLsh(ToMat(qk, 0, h), ToMat(v, 0, h), R[h], factors, chunk, valid);
      const Mat g = ToMat(got.out, 0, h);
      for (int i = 0; i < valid; ++i) {
        for (int d = 0; d < dh; ++d) ASSERT_NEAR(g[i][d], want[i][d], 1e-9) << "valid " << valid << " pos " << i;
      }
    }
    // The real outputs do not depend on the pads' contents.
    const torch::Tensor qk2 = qk.clone(), v2 = v.clone();
    qk2.narrow(2, valid, P - valid).normal_();
    v2.narrow(2, valid, P - valid).normal_();
    const torch::Tensor out2 = LshAttention(qk2, v2, R, factors, chunk, valid).out;
    EXPECT_TRUE(torch::allclose(out2.narrow(2, 0, valid), got.out.narrow(2, 0, valid), 1e-12, 1e-12));
  }
}

TEST(ReformerAttentionTest, PaddedLengthIsAMultipleOfTheChunkLcm) {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.reformer.lsh_chunk_length = 6;
  c.reformer.local_chunk_length = 4;
  c.reformer.attn_layers = {ReformerAttention::kLsh, ReformerAttention::kLocal};
  EXPECT_EQ(ReformerPaddedLength(c, 3), 3);    // within the smallest chunk: no padding
  EXPECT_EQ(ReformerPaddedLength(c, 4), 4);
  EXPECT_EQ(ReformerPaddedLength(c, 5), 12);   // lcm(6, 4) = 12
  EXPECT_EQ(ReformerPaddedLength(c, 12), 12);
  EXPECT_EQ(ReformerPaddedLength(c, 13), 24);
  c.reformer.attn_layers = {ReformerAttention::kLsh, ReformerAttention::kLsh};
  EXPECT_EQ(ReformerPaddedLength(c, 5), 5);    // only the LSH chunk (6) is in use
  EXPECT_EQ(ReformerPaddedLength(c, 7), 12);
}

TEST(ReformerAttentionTest, LocalAttentionSeesThePreviousAndOwnChunkCausally) {
  torch::manual_seed(3);
  const int64_t B = 1, H = 2, L = 12, dh = 3;
  for (int chunk : {3, 4, 12, 16}) {
    const torch::Tensor q = torch::randn({B, H, L, dh}, torch::kFloat64);
    const torch::Tensor k = torch::randn({B, H, L, dh}, torch::kFloat64);
    const torch::Tensor v = torch::randn({B, H, L, dh}, torch::kFloat64);
    const torch::Tensor got = LocalAttention(q, k, v, chunk);
    for (int h = 0; h < H; ++h) {
      const Mat qm = ToMat(q, 0, h), km = ToMat(k, 0, h), vm = ToMat(v, 0, h);
      Mat want(L, std::vector<double>(dh, 0.0));
      for (int i = 0; i < L; ++i) {
        // Position i sees [chunk * (i / chunk - 1), i], clipped at 0 (everything when L <= chunk).
        const int first = L <= chunk ? 0 : std::max(0, chunk * (i / chunk - 1));
        std::vector<double> l;
        for (int j = first; j <= i; ++j) l.push_back(Dot(qm[i], km[j]) / std::sqrt(double(dh)));
        const double mx = *std::max_element(l.begin(), l.end());
        double sum = 0;
        for (double x : l) sum += std::exp(x - mx);
        for (int j = first; j <= i; ++j) {
          for (int d = 0; d < dh; ++d) want[i][d] += std::exp(l[j - first] - mx) / sum * vm[j][d];
        }
      }
      ExpectNear(got, 0, h, want, 1e-9, "chunk " + std::to_string(chunk));
    }
  }
}

TEST(ReformerAttentionTest, GradientsFlowToQkAndValuesButNotThroughTheHash) {
  torch::manual_seed(4);
  const torch::Tensor qk = torch::randn({1, 1, 16, 4}, torch::requires_grad());
  const torch::Tensor v = torch::randn({1, 1, 16, 4}, torch::requires_grad());
  const torch::Tensor R = torch::randn({1, 4, 2, 2});
  const LshAttentionResult r = LshAttention(qk, v, R, {4}, 4);
  r.out.sum().backward();
  EXPECT_GT(qk.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(v.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(r.buckets.requires_grad());
}

}  // namespace
}  // namespace blockserve::trainer
