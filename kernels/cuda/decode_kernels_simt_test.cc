// The BRT decode kernels (decode window attention, residual add + RMSNorm, embedding gather) run
// on the CPU SIMT harness (no GPU needed) against the scalar reference (kernels/reference).
// Host memory stands for device memory. Outputs (and the split workspace) are poisoned with NaN
// first; sizes include ones that are not multiples of the warp (32) or block size.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"  // AttentionArgs only (the scalar reference takes it)
#include "kernels/cuda/add_rms_norm.cuh"
#include "kernels/cuda/cuda_compat.cuh"
#include "kernels/cuda/decode_attention.cuh"
#include "kernels/cuda/gather_rows.cuh"
#include "kernels/cuda/simt/simt_test_util.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

using simt_test::HeadsNear;
using simt_test::kNaN;
using simt_test::PoisonedRows;
using simt_test::Untouched;

// One decode step of `batch` sequences, each with its own ring of kv_rows rows holding the keys
// and values of positions [max(0, p - kv_rows), p) (slot t % kv_rows) and zeros elsewhere, as the
// BRT decoder's cache before and after it is full.
struct DecodeCase {
  int batch = 1, heads = 1, head_dim = 64, window = 64, kv_rows = 64, keys_per_split = 0;
  float bias_mean = 0.0f;  // added to every bias (to push logits towards / below -1000)
  bool with_bias = true;
  float fixed_scale = 0.0f;  // every head's scale, or 0: random in +-[0.5, 4]
  uint32_t seed = 1;
};

void RunDecodeCase(const DecodeCase& c, double tol = 2e-5) {
  SCOPED_TRACE(testing::Message() << "batch " << c.batch << " heads " << c.heads << " head_dim " << c.head_dim
                                  << " W " << c.window << " kv_rows " << c.kv_rows << " keys_per_split "
                                  << c.keys_per_split << " bias_mean " << c.bias_mean);
  std::mt19937 rng(c.seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale_dist(0.5f, 4.0f);
  const int width = c.heads * c.head_dim;
  const int q_stride = width + 3, kv_stride = width + 1, out_stride = width + 5;
  std::vector<float> q(static_cast<size_t>(c.batch) * q_stride);
  for (float& e : q) e = dist(rng);
  ref::NormalizeHeads(q.data(), c.batch, q_stride, c.heads, c.head_dim);
  std::vector<std::vector<float>> k_rings(c.batch), v_rings(c.batch);
  std::vector<const float*> k_ptrs(c.batch), v_ptrs(c.batch);
  std::vector<int> first_key(c.batch), positions(c.batch);
  std::uniform_int_distribution<int> pos_dist(0, 3 * c.window);
  for (int b = 0; b < c.batch; ++b) {
    // The first sequences are before the ring is full (p < W), the others anywhere.
    const int p = b == 0 ? 0 : (b == 1 ? c.window / 2 : pos_dist(rng));
    positions[b] = p;
    k_rings[b].assign(static_cast<size_t>(c.kv_rows) * kv_stride, 0.0f);
    v_rings[b].assign(static_cast<size_t>(c.kv_rows) * kv_stride, 0.0f);
    for (int t = std::max(0, p - c.kv_rows); t < p; ++t) {
      const size_t row = static_cast<size_t>(t % c.kv_rows) * kv_stride;
      for (int i = 0; i < width; ++i) {
        k_rings[b][row + i] = dist(rng);
        v_rings[b][row + i] = dist(rng);
      }
      ref::NormalizeHeads(&k_rings[b][row], 1, kv_stride, c.heads, c.head_dim);
    }
    first_key[b] = ((p - c.window) % c.kv_rows + c.kv_rows) % c.kv_rows;
    k_ptrs[b] = k_rings[b].data();
    v_ptrs[b] = v_rings[b].data();
  }
  std::vector<float> bias(static_cast<size_t>(c.heads) * c.window), scale(c.heads);
  for (float& e : bias) e = c.bias_mean + 2.0f * dist(rng);
  for (int h = 0; h < c.heads; ++h) {
    scale[h] = c.fixed_scale != 0.0f ? c.fixed_scale : (h % 3 == 2 ? -1.0f : 1.0f) * scale_dist(rng);  // some negative
  }

  DecodeAttentionArgs a;
  a.q = q.data();
  a.q_stride = q_stride;
  a.k = k_ptrs.data();
  a.v = v_ptrs.data();
  a.kv_stride = kv_stride;
  a.kv_rows = c.kv_rows;
  a.first_key = first_key.data();
  a.batch = c.batch;
  a.num_heads = c.heads;
  a.head_dim = c.head_dim;
  a.num_keys = c.window;
  a.bias = c.with_bias ? bias.data() : nullptr;
  a.scale = scale.data();
  std::vector<float> out = PoisonedRows(c.batch, out_stride, 0, width);
  a.out = out.data();
  a.out_stride = out_stride;
  a.keys_per_split = c.keys_per_split;
  std::vector<float> workspace(
      DecodeAttentionWorkspaceFloats(c.batch, c.heads, c.head_dim, c.window, c.keys_per_split), kNaN);
  a.workspace = workspace.empty() ? nullptr : workspace.data();
  ASSERT_EQ(LaunchDecodeAttention(a, nullptr), cudaSuccess);

  std::vector<float> want(width);
  for (int b = 0; b < c.batch; ++b) {
    cpu::AttentionArgs r;
    r.q = q.data() + static_cast<size_t>(b) * q_stride;
    r.q_stride = q_stride;
    r.k = k_rings[b].data();
    r.v = v_rings[b].data();
    r.kv_stride = kv_stride;
    r.kv_rows = c.kv_rows;
    r.m = 1;
    r.num_heads = c.heads;
    r.head_dim = c.head_dim;
    r.num_keys = c.window;
    r.first_key = first_key[b];
    r.key_step = 0;
    r.bias = a.bias;
    r.scale = scale.data();
    r.out = want.data();
    r.out_stride = width;
    ref::Attention(r);
    const float* got = out.data() + static_cast<size_t>(b) * out_stride;
    ASSERT_TRUE(HeadsNear(got, want.data(), width, c.head_dim, tol))
        << "sequence " << b << " (position " << positions[b] << ")";
    ASSERT_TRUE(Untouched(got, width, out_stride)) << "wrote outside the row";
  }
}

TEST(CudaSimtDecodeAttentionTest, MatchesReferenceAcrossWindowsAndSplits) {
  uint32_t seed = 100;
  for (int window : {1, 31, 64, 100, 128}) {
    for (int kps : {0, 8, 13, 64}) {
      DecodeCase c;
      c.batch = 3;
      c.heads = 3;
      c.head_dim = 64;
      c.window = window;
      c.kv_rows = window;
      c.keys_per_split = kps;
      c.seed = seed++;
      RunDecodeCase(c);
    }
  }
}

TEST(CudaSimtDecodeAttentionTest, HeadDimsAndRingSizes) {
  uint32_t seed = 200;
  for (int head_dim : {1, 5, 32, 33, 100, 128, 256}) {
    for (int kv_rows_extra : {0, 37}) {  // ring of exactly W rows, or a longer ring (recurrent layers)
      DecodeCase c;
      c.batch = 2;
      c.heads = 2;
      c.head_dim = head_dim;
      c.window = 45;
      c.kv_rows = 45 + kv_rows_extra;
      c.keys_per_split = 16;
      c.seed = seed++;
      RunDecodeCase(c);
    }
  }
}

TEST(CudaSimtDecodeAttentionTest, ManyHeadsAndSequencesWithoutBias) {
  DecodeCase c;
  c.batch = 5;
  c.heads = 7;
  c.head_dim = 40;
  c.window = 70;
  c.kv_rows = 70;
  c.with_bias = false;
  c.seed = 300;
  RunDecodeCase(c);
  c.keys_per_split = 9;
  c.seed = 301;
  RunDecodeCase(c);
}

TEST(CudaSimtDecodeAttentionTest, SafeSoftmaxFloor) {
  // Scale 1 and biases around -1001: logits near -1000, where the exp(-1000 - mx) term weighs like
  // a key; around -400 it is negligible; around -5000 the query attends to nothing (output ~0).
  // Logits near 1000 carry float rounding of ~6e-5, hence the looser tolerance.
  uint32_t seed = 400;
  for (float bias_mean : {-1001.0f, -400.0f, -5000.0f}) {
    for (int kps : {0, 7}) {
      DecodeCase c;
      c.batch = 2;
      c.heads = 3;
      c.fixed_scale = 1.0f;
      c.head_dim = 48;
      c.window = 40;
      c.kv_rows = 40;
      c.bias_mean = bias_mean;
      c.keys_per_split = kps;
      c.seed = seed++;
      RunDecodeCase(c, 3e-4);
    }
  }
}

TEST(CudaSimtDecodeAttentionTest, RejectsBadShapesAndMissingWorkspace) {
  float buf[64] = {};
  const float* ring = buf;
  int first = 0;
  DecodeAttentionArgs a;
  a.q = buf;
  a.q_stride = 8;
  a.k = &ring;
  a.v = &ring;
  a.kv_stride = 8;
  a.kv_rows = 4;
  a.first_key = &first;
  a.batch = 1;
  a.num_heads = 1;
  a.head_dim = 8;
  a.num_keys = 4;
  a.scale = buf;
  a.out = buf + 32;
  a.out_stride = 8;
  EXPECT_EQ(LaunchDecodeAttention(a, nullptr), cudaSuccess);  // a single split needs no workspace
  DecodeAttentionArgs bad = a;
  bad.head_dim = kDecodeAttentionMaxHeadDim + 1;
  bad.q_stride = bad.kv_stride = bad.out_stride = bad.head_dim;
  EXPECT_EQ(LaunchDecodeAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.num_keys = 0;
  EXPECT_EQ(LaunchDecodeAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.q_stride = 7;
  EXPECT_EQ(LaunchDecodeAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.scale = nullptr;
  EXPECT_EQ(LaunchDecodeAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = a;
  bad.keys_per_split = 1;  // 4 splits: needs a workspace
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(1, 1, 8, 4, 1), 4u * (8 + 2));
  EXPECT_EQ(DecodeAttentionWorkspaceFloats(1, 1, 8, 4, 0), 0u);
  EXPECT_EQ(LaunchDecodeAttention(bad, nullptr), cudaErrorInvalidValue);
}

// ---- residual add + RMSNorm ------------------------------------------------------------------------

constexpr float kEps = 1e-6f;

TEST(CudaSimtAddRmsNormTest, MatchesReference) {
  std::mt19937 rng(21);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  for (int rows : {1, 3}) {
    for (int n : {1, 7, 31, 32, 33, 255, 256, 257, 1000}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " n " << n);
      std::vector<float> x(rows * n), res(rows * n), scale(n), want(n);
      for (float& v : x) v = dist(rng);
      for (float& v : res) v = dist(rng);
      for (float& v : scale) v = dist(rng);
      std::vector<float> sum(rows * n);
      for (int i = 0; i < rows * n; ++i) sum[i] = x[i] + res[i];
      std::vector<float> out(rows * n, kNaN);
      ASSERT_EQ(LaunchAddRmsNorm(x.data(), res.data(), scale.data(), rows, n, kEps, out.data(), nullptr),
                cudaSuccess);
      for (int r = 0; r < rows; ++r) {
        ref::RmsNorm(sum.data() + r * n, scale.data(), n, kEps, want.data());
        for (int i = 0; i < n; ++i) {
          ASSERT_EQ(x[r * n + i], sum[r * n + i]) << "residual stream, row " << r << " i " << i;
          ASSERT_NEAR(out[r * n + i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << "row " << r << " i " << i;
        }
      }
    }
  }
}

TEST(CudaSimtAddRmsNormTest, OutMayAliasResidualOrX) {
  std::mt19937 rng(22);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  const int rows = 2, n = 300;
  std::vector<float> x(rows * n), res(rows * n), scale(n), sum(rows * n), want(rows * n);
  for (float& v : x) v = dist(rng);
  for (float& v : res) v = dist(rng);
  for (float& v : scale) v = dist(rng);
  for (int i = 0; i < rows * n; ++i) sum[i] = x[i] + res[i];
  for (int r = 0; r < rows; ++r) ref::RmsNorm(sum.data() + r * n, scale.data(), n, kEps, want.data() + r * n);
  {
    std::vector<float> xx = x, rr = res;
    ASSERT_EQ(LaunchAddRmsNorm(xx.data(), rr.data(), scale.data(), rows, n, kEps, rr.data(), nullptr), cudaSuccess);
    for (int i = 0; i < rows * n; ++i) {
      ASSERT_EQ(xx[i], sum[i]) << i;
      ASSERT_NEAR(rr[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << i;
    }
  }
  {
    std::vector<float> xx = x;
    ASSERT_EQ(LaunchAddRmsNorm(xx.data(), res.data(), scale.data(), rows, n, kEps, xx.data(), nullptr), cudaSuccess);
    for (int i = 0; i < rows * n; ++i) ASSERT_NEAR(xx[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << i;
  }
}

TEST(CudaSimtAddRmsNormTest, RejectsEmptyShapes) {
  float v = 1.0f;
  EXPECT_EQ(LaunchAddRmsNorm(&v, &v, &v, 0, 1, kEps, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchAddRmsNorm(&v, &v, &v, 1, 0, kEps, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(v, 1.0f);
}

// ---- embedding gather ------------------------------------------------------------------------------

TEST(CudaSimtGatherRowsTest, MatchesReferenceExactly) {
  std::mt19937 rng(31);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int vocab = 37;
  for (int d : {1, 5, 127, 128, 130, 300}) {
    for (int n : {1, 7, 33}) {
      SCOPED_TRACE(testing::Message() << "d " << d << " n " << n);
      std::vector<float> table(static_cast<size_t>(vocab) * d);
      for (float& v : table) v = dist(rng);
      std::vector<int32_t> ids(n);
      std::uniform_int_distribution<int32_t> id_dist(0, vocab - 1);
      for (int32_t& id : ids) id = id_dist(rng);
      ids[0] = vocab - 1;  // both ends of the table
      if (n > 1) ids[n - 1] = 0;
      std::vector<float> out(static_cast<size_t>(n) * d, kNaN), want(out.size());
      ASSERT_EQ(LaunchGatherRows(table.data(), d, ids.data(), n, out.data(), nullptr), cudaSuccess);
      ref::GatherRows(table.data(), d, ids.data(), n, want.data());
      for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], want[i]) << i;
    }
  }
}

TEST(CudaSimtGatherRowsTest, RejectsEmptyShapes) {
  float v = 1.0f;
  int32_t id = 0;
  EXPECT_EQ(LaunchGatherRows(&v, 1, &id, 0, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchGatherRows(&v, 0, &id, 1, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(v, 1.0f);
}

}  // namespace
}  // namespace blockserve::cuda
