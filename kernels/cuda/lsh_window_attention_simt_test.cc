// The Reformer LSH decode attention (kernels/cuda/lsh_window_attention.cu) and the BRT
// token-to-state cross-attention (kernels/cuda/cross_attention.cuh, LaunchDecodeAttention with the
// state layout) on the CPU SIMT harness against the scalar references ref::LshWindowAttention and
// ref::Attention. Host memory stands for device memory; outputs and workspaces are poisoned with
// NaN first, output padding holds a sentinel that must stay untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"  // AttentionArgs only (the scalar reference takes it)
#include "kernels/cuda/cross_attention.cuh"
#include "kernels/cuda/cuda_compat.cuh"
#include "kernels/cuda/lsh_hash.cuh"  // LshWindowStart / LshWindowSlot
#include "kernels/cuda/lsh_window_attention.cuh"
#include "kernels/cuda/simt/simt_test_util.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

using simt_test::HeadsNear;
using simt_test::kNaN;
using simt_test::PoisonedRows;
using simt_test::Untouched;

// ---- LSH window attention ------------------------------------------------------------------------

struct LshCase {
  int batch = 3, heads = 2, head_dim = 64, num_hashes = 2;
  int chunk = 32, chunks_before = 1;  // W = chunk * (1 + chunks_before)
  int keys_per_split = 0;
  uint32_t seed = 1;
};

// Each sequence b has n_b cached tokens (the new one, row n_b - 1, included): n = 1 (the window is
// the token itself W times), n < W (the window wraps: rows repeat) and n > W. Per (head, round) a
// random permutation of the rows stands for the bucket-sorted order; the window is the W slots of
// the decode step (docs/reformer-decoding.md, step 3) around the new token's sorted index.
void RunLshCase(const LshCase& c, double tol = 2e-5) {
  const int W = c.chunk * (1 + c.chunks_before);
  SCOPED_TRACE(testing::Message() << "batch " << c.batch << " heads " << c.heads << " head_dim " << c.head_dim
                                  << " num_hashes " << c.num_hashes << " W " << W << " keys_per_split "
                                  << c.keys_per_split);
  std::mt19937 rng(c.seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int A = c.heads * c.head_dim;
  const int q_stride = A + 3, kv_stride = 2 * A + 3, out_stride = A + 5;
  const int v_offset = A + 1;  // the value of row p at cache + p * kv_stride + v_offset
  std::vector<float> q(static_cast<size_t>(c.batch) * q_stride);
  for (float& e : q) e = 3.0f * dist(rng);  // peaked softmaxes: logits ~ N(0, 9)

  std::vector<std::vector<float>> caches(c.batch), compact(c.batch);  // kernel layout, ref layout [k̂ | v]
  std::vector<const float*> k_ptrs(c.batch), v_ptrs(c.batch);
  std::vector<int32_t> self_row(c.batch);
  const int pairs = c.num_hashes * W;
  std::vector<int32_t> windows(static_cast<size_t>(c.batch) * c.heads * pairs);
  for (int b = 0; b < c.batch; ++b) {
    const int n = b % 3 == 0 ? 1 : (b % 3 == 1 ? std::max(1, W / 2 + 1) : 3 * W + 5);
    self_row[b] = n - 1;
    caches[b].assign(static_cast<size_t>(n) * kv_stride, kNaN);  // padding columns are never read
    compact[b].assign(static_cast<size_t>(n) * 2 * A, 0.0f);
    for (int p = 0; p < n; ++p) {
      float* row = &compact[b][static_cast<size_t>(p) * 2 * A];
      for (int i = 0; i < 2 * A; ++i) row[i] = dist(rng);
      ref::NormalizeHeads(row, 1, 2 * A, c.heads, c.head_dim);  // k̂ (the value half stays raw)
      float* krow = &caches[b][static_cast<size_t>(p) * kv_stride];
      std::copy(row, row + A, krow);
      std::copy(row + A, row + 2 * A, krow + v_offset);
    }
    k_ptrs[b] = caches[b].data();
    v_ptrs[b] = caches[b].data() + v_offset;
    std::vector<int32_t> sorted(n);
    std::iota(sorted.begin(), sorted.end(), 0);
    for (int hr = 0; hr < c.heads * c.num_hashes; ++hr) {
      std::shuffle(sorted.begin(), sorted.end(), rng);
      const int64_t s = std::find(sorted.begin(), sorted.end(), self_row[b]) - sorted.begin();
      const int64_t start = LshWindowStart(s, c.chunk, c.chunks_before);
      int32_t* win = &windows[(static_cast<size_t>(b) * c.heads * c.num_hashes + hr) * W];
      for (int i = 0; i < W; ++i) win[i] = sorted[LshWindowSlot(start, i, n)];
    }
  }

  LshWindowAttentionArgs a;
  a.q = q.data();
  a.q_stride = q_stride;
  a.k = k_ptrs.data();
  a.v = v_ptrs.data();
  a.kv_stride = kv_stride;
  a.windows = windows.data();
  a.self_row = self_row.data();
  a.batch = c.batch;
  a.num_heads = c.heads;
  a.head_dim = c.head_dim;
  a.num_hashes = c.num_hashes;
  a.window = W;
  std::vector<float> out = PoisonedRows(c.batch, out_stride, 0, A);
  a.out = out.data();
  a.out_stride = out_stride;
  a.keys_per_split = c.keys_per_split;
  std::vector<float> workspace(
      LshWindowAttentionWorkspaceFloats(c.batch, c.heads, c.head_dim, c.num_hashes, W, c.keys_per_split), kNaN);
  a.workspace = workspace.empty() ? nullptr : workspace.data();
  ASSERT_EQ(LaunchLshWindowAttention(a, nullptr), cudaSuccess);

  std::vector<float> want(A);
  for (int b = 0; b < c.batch; ++b) {
    ref::LshWindowAttention(q.data() + static_cast<size_t>(b) * q_stride, compact[b].data(),
                            &windows[static_cast<size_t>(b) * c.heads * pairs], c.heads, c.head_dim, c.num_hashes, W,
                            self_row[b], want.data());
    const float* got = out.data() + static_cast<size_t>(b) * out_stride;
    ASSERT_TRUE(HeadsNear(got, want.data(), A, c.head_dim, tol))
        << "sequence " << b << " (rows " << self_row[b] + 1 << ")";
    ASSERT_TRUE(Untouched(got, A, out_stride)) << "wrote outside the row";
  }
}

TEST(CudaSimtLshWindowAttentionTest, MatchesReferenceAcrossWindowsHeadDimsAndRounds) {
  // (chunk, chunks_before) for W = 1, 7, 64, 100, 128.
  const int shapes[][2] = {{1, 0}, {7, 0}, {32, 1}, {50, 1}, {64, 1}};
  uint32_t seed = 1000;
  for (const auto& shape : shapes) {
    for (int head_dim : {1, 33, 64}) {
      for (int num_hashes : {1, 2, 4}) {
        LshCase c;
        c.chunk = shape[0];
        c.chunks_before = shape[1];
        c.head_dim = head_dim;
        c.num_hashes = num_hashes;
        c.seed = seed++;
        RunLshCase(c);
      }
    }
  }
}

TEST(CudaSimtLshWindowAttentionTest, ManySplitsAndSingleSplit) {
  uint32_t seed = 2000;
  for (int kps : {1, 7, 13, 64, 100000}) {
    for (int num_hashes : {1, 4}) {
      LshCase c;
      c.chunk = 50;
      c.chunks_before = 1;
      c.head_dim = 33;
      c.num_hashes = num_hashes;
      c.keys_per_split = kps;
      c.seed = seed++;
      RunLshCase(c);
    }
  }
}

TEST(CudaSimtLshWindowAttentionTest, WideHeadsAndMoreSequences) {
  uint32_t seed = 3000;
  for (int head_dim : {5, 100, 256}) {
    LshCase c;
    c.batch = 5;
    c.heads = 3;
    c.head_dim = head_dim;
    c.num_hashes = 3;
    c.chunk = 16;
    c.chunks_before = 2;
    c.seed = seed++;
    RunLshCase(c);
  }
}

TEST(CudaSimtLshWindowAttentionTest, RejectsBadArguments) {
  std::vector<float> buf(64, 0.0f);
  const float* ptrs[1] = {buf.data()};
  int32_t windows[4] = {0, 0, 0, 0};
  int32_t self_row[1] = {0};
  LshWindowAttentionArgs good;
  good.q = buf.data();
  good.q_stride = 4;
  good.k = ptrs;
  good.v = ptrs;
  good.kv_stride = 8;
  good.windows = windows;
  good.self_row = self_row;
  good.batch = 1;
  good.num_heads = 1;
  good.head_dim = 4;
  good.num_hashes = 2;
  good.window = 2;
  good.out = buf.data() + 32;
  good.out_stride = 4;
  ASSERT_EQ(LaunchLshWindowAttention(good, nullptr), cudaSuccess);
  LshWindowAttentionArgs bad = good;
  bad.head_dim = kLshWindowAttentionMaxHeadDim + 1;
  EXPECT_EQ(LaunchLshWindowAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = good;
  bad.window = 0;
  EXPECT_EQ(LaunchLshWindowAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = good;
  bad.kv_stride = 3;
  EXPECT_EQ(LaunchLshWindowAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = good;
  bad.self_row = nullptr;
  EXPECT_EQ(LaunchLshWindowAttention(bad, nullptr), cudaErrorInvalidValue);
  bad = good;
  bad.keys_per_split = 1;  // 4 splits: a workspace is needed
  EXPECT_EQ(LaunchLshWindowAttention(bad, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LshWindowAttentionWorkspaceFloats(1, 1, 4, 2, 2, 1), 4u * 6u);
  EXPECT_EQ(LshWindowAttentionWorkspaceFloats(1, 1, 4, 2, 2, 0), 0u);
}

// ---- BRT token-to-state cross-attention ------------------------------------------------------------

// `seqs` sequences with 1, 2, 3, ... token queries each (queries of one sequence contiguous, as in
// a chunk); every query attends to its sequence's S normalized state keys. Outputs go to the
// second half of [self; cross] rows, as in BrtRunner.
void RunCrossCase(int seqs, int heads, int head_dim, int num_states, int keys_per_split, uint32_t seed,
                  double tol = 2e-5) {
  SCOPED_TRACE(testing::Message() << "seqs " << seqs << " heads " << heads << " head_dim " << head_dim << " S "
                                  << num_states << " keys_per_split " << keys_per_split);
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale_dist(0.5f, 8.0f);
  const int width = heads * head_dim;
  const int q_stride = width + 3, kv_stride = width + 1, out_stride = 2 * width + 1;
  std::vector<int> first_token(seqs + 1, 0);
  for (int s = 0; s < seqs; ++s) first_token[s + 1] = first_token[s] + 1 + s;
  const int tokens = first_token[seqs];
  std::vector<float> q(static_cast<size_t>(tokens) * q_stride);
  for (float& e : q) e = dist(rng);
  ref::NormalizeHeads(q.data(), tokens, q_stride, heads, head_dim);
  std::vector<std::vector<float>> state_k(seqs), state_v(seqs);
  for (int s = 0; s < seqs; ++s) {
    state_k[s].resize(static_cast<size_t>(num_states) * kv_stride);
    state_v[s].resize(static_cast<size_t>(num_states) * kv_stride);
    for (float& e : state_k[s]) e = dist(rng);
    for (float& e : state_v[s]) e = dist(rng);
    ref::NormalizeHeads(state_k[s].data(), num_states, kv_stride, heads, head_dim);
  }
  std::vector<const float*> k_ptrs(tokens), v_ptrs(tokens);
  for (int s = 0; s < seqs; ++s) {
    for (int t = first_token[s]; t < first_token[s + 1]; ++t) {
      k_ptrs[t] = state_k[s].data();
      v_ptrs[t] = state_v[s].data();
    }
  }
  std::vector<float> scale(heads);
  for (int h = 0; h < heads; ++h) scale[h] = (h % 3 == 1 ? -1.0f : 1.0f) * scale_dist(rng);
  std::vector<int> zeros(tokens, 0);
  std::vector<float> out = PoisonedRows(tokens, out_stride, width, width);

  CrossAttentionArgs a;
  a.q = q.data();
  a.q_stride = q_stride;
  a.state_k = k_ptrs.data();
  a.state_v = v_ptrs.data();
  a.kv_stride = kv_stride;
  a.num_states = num_states;
  a.tokens = tokens;
  a.num_heads = heads;
  a.head_dim = head_dim;
  a.scale = scale.data();
  a.zeros = zeros.data();
  a.out = out.data() + width;
  a.out_stride = out_stride;
  a.keys_per_split = keys_per_split;
  std::vector<float> workspace(CrossAttentionWorkspaceFloats(tokens, heads, head_dim, num_states, keys_per_split),
                               kNaN);
  a.workspace = workspace.empty() ? nullptr : workspace.data();
  ASSERT_EQ(LaunchCrossAttention(a, nullptr), cudaSuccess);

  for (int s = 0; s < seqs; ++s) {
    const int m = first_token[s + 1] - first_token[s];
    std::vector<float> want(static_cast<size_t>(m) * width);
    cpu::AttentionArgs r;  // BrtRunner's cross-attention arguments
    r.q = q.data() + static_cast<size_t>(first_token[s]) * q_stride;
    r.q_stride = q_stride;
    r.k = state_k[s].data();
    r.v = state_v[s].data();
    r.kv_stride = kv_stride;
    r.kv_rows = num_states;
    r.m = m;
    r.num_heads = heads;
    r.head_dim = head_dim;
    r.num_keys = num_states;
    r.first_key = 0;
    r.key_step = 0;
    r.bias = nullptr;
    r.scale = scale.data();
    r.out = want.data();
    r.out_stride = width;
    ref::Attention(r);
    for (int i = 0; i < m; ++i) {
      const int t = first_token[s] + i;
      const float* row = out.data() + static_cast<size_t>(t) * out_stride;
      ASSERT_TRUE(HeadsNear(row + width, want.data() + static_cast<size_t>(i) * width, width, head_dim, tol))
          << "sequence " << s << " token " << t;
      ASSERT_TRUE(Untouched(row, 0, width)) << "wrote into the self-attention half, token " << t;
      ASSERT_TRUE(Untouched(row, 2 * width, out_stride)) << "wrote outside the row, token " << t;
    }
  }
}

TEST(CudaSimtCrossAttentionTest, MatchesReferenceForStateSizes) {
  uint32_t seed = 4000;
  for (int num_states : {1, 16, 33, 64}) {
    for (int head_dim : {33, 64}) {
      for (int kps : {0, 8}) RunCrossCase(3, 3, head_dim, num_states, kps, seed++);
    }
  }
}

TEST(CudaSimtCrossAttentionTest, ArgsAreTheDecodeKernelsWithTheStateLayout) {
  CrossAttentionArgs c;
  const int zeros[2] = {0, 0};
  c.zeros = zeros;
  c.num_states = 17;
  c.tokens = 2;
  const DecodeAttentionArgs a = MakeCrossAttentionDecodeArgs(c);
  EXPECT_EQ(a.kv_rows, 17);
  EXPECT_EQ(a.num_keys, 17);
  EXPECT_EQ(a.batch, 2);
  EXPECT_EQ(a.first_key, zeros);
  EXPECT_EQ(a.bias, nullptr);
  EXPECT_EQ(LaunchCrossAttention(CrossAttentionArgs{}, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace blockserve::cuda
