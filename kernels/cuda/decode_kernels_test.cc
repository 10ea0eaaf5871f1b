// The BRT decode kernels on a real device against the scalar reference; every test skips with the
// reason when there is no CUDA device (cudaGetDeviceCount fails).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"  // AttentionArgs only (the scalar reference takes it)
#include "kernels/cuda/add_rms_norm.cuh"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/decode_attention.cuh"
#include "kernels/cuda/gather_rows.cuh"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

using test_util::DeviceBuffer;

TEST(CudaDecodeAttentionTest, MatchesReference) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int window : {1, 31, 100, 512}) {
    for (int kps : {0, 13}) {
      SCOPED_TRACE(testing::Message() << "W " << window << " keys_per_split " << kps);
      const int batch = 3, heads = 5, kd = 64, width = heads * kd, rows = window + 3;
      std::vector<float> q(batch * width);
      for (float& e : q) e = dist(rng);
      ref::NormalizeHeads(q.data(), batch, width, heads, kd);
      std::vector<float> bias(heads * window), scale(heads);
      for (float& e : bias) e = 2.0f * dist(rng);
      for (int h = 0; h < heads; ++h) scale[h] = 0.5f + h;
      std::vector<std::vector<float>> k(batch), v(batch);
      std::vector<int> first(batch);
      for (int b = 0; b < batch; ++b) {
        k[b].assign(static_cast<size_t>(rows) * width, 0.0f);
        v[b].assign(static_cast<size_t>(rows) * width, 0.0f);
        const int filled = b == 0 ? window / 2 : rows;  // sequence 0: before the ring is full
        for (int r = 0; r < filled; ++r) {
          for (int i = 0; i < width; ++i) {
            k[b][r * width + i] = dist(rng);
            v[b][r * width + i] = dist(rng);
          }
        }
        ref::NormalizeHeads(k[b].data(), rows, width, heads, kd);
        first[b] = (b * 17) % rows;
      }
      DeviceBuffer<float> dq(q), dbias(bias), dscale(scale), dout(std::vector<float>(batch * width, NAN));
      DeviceBuffer<float> dk0(k[0]), dk1(k[1]), dk2(k[2]), dv0(v[0]), dv1(v[1]), dv2(v[2]);
      DeviceBuffer<const float*> dkp(std::vector<const float*>{dk0.get(), dk1.get(), dk2.get()});
      DeviceBuffer<const float*> dvp(std::vector<const float*>{dv0.get(), dv1.get(), dv2.get()});
      DeviceBuffer<int> dfirst(first);
      DeviceBuffer<float> dws(std::vector<float>(DecodeAttentionWorkspaceFloats(batch, heads, kd, window, kps), NAN));
      ASSERT_TRUE(dq.ok() && dk2.ok() && dv2.ok() && dkp.ok() && dvp.ok() && dfirst.ok() && dout.ok() && dws.ok());
      DecodeAttentionArgs a;
      a.q = dq.get();
      a.q_stride = width;
      a.k = dkp.get();
      a.v = dvp.get();
      a.kv_stride = width;
      a.kv_rows = rows;
      a.first_key = dfirst.get();
      a.batch = batch;
      a.num_heads = heads;
      a.head_dim = kd;
      a.num_keys = window;
      a.bias = dbias.get();
      a.scale = dscale.get();
      a.out = dout.get();
      a.out_stride = width;
      a.keys_per_split = kps;
      a.workspace = dws.get();
      ASSERT_TRUE(CudaStatus(LaunchDecodeAttention(a, nullptr), "launch").ok());
      ASSERT_TRUE(CudaStatus(cudaDeviceSynchronize(), "sync").ok());
      const std::vector<float> out = dout.ToHost();
      std::vector<float> want(width);
      for (int b = 0; b < batch; ++b) {
        cpu::AttentionArgs r;
        r.q = q.data() + b * width;
        r.q_stride = width;
        r.k = k[b].data();
        r.v = v[b].data();
        r.kv_stride = width;
        r.kv_rows = rows;
        r.m = 1;
        r.num_heads = heads;
        r.head_dim = kd;
        r.num_keys = window;
        r.first_key = first[b];
        r.bias = bias.data();
        r.scale = scale.data();
        r.out = want.data();
        r.out_stride = width;
        ref::Attention(r);
        for (int i = 0; i < width; ++i) {
          ASSERT_NEAR(out[b * width + i], want[i], 1e-4f * (1 + std::fabs(want[i]))) << b << " " << i;
        }
      }
    }
  }
}

TEST(CudaAddRmsNormTest, MatchesReference) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(8);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  for (int n : {1, 33, 257, 4096}) {
    const int rows = 4;
    std::vector<float> x(rows * n), res(rows * n), scale(n), sum(rows * n), want(n);
    for (float& e : x) e = dist(rng);
    for (float& e : res) e = dist(rng);
    for (float& e : scale) e = dist(rng);
    for (int i = 0; i < rows * n; ++i) sum[i] = x[i] + res[i];
    DeviceBuffer<float> dx(x), dres(res), dscale(scale), dout(std::vector<float>(rows * n, NAN));
    ASSERT_TRUE(dx.ok() && dres.ok() && dscale.ok() && dout.ok());
    ASSERT_TRUE(CudaStatus(LaunchAddRmsNorm(dx.get(), dres.get(), dscale.get(), rows, n, 1e-6f, dout.get(), nullptr),
                           "launch")
                    .ok());
    const std::vector<float> gx = dx.ToHost(), out = dout.ToHost();
    for (int r = 0; r < rows; ++r) {
      ref::RmsNorm(sum.data() + r * n, scale.data(), n, 1e-6f, want.data());
      for (int i = 0; i < n; ++i) {
        ASSERT_EQ(gx[r * n + i], sum[r * n + i]);
        ASSERT_NEAR(out[r * n + i], want[i], 1e-4f * (1 + std::fabs(want[i])));
      }
    }
  }
}

TEST(CudaGatherRowsTest, MatchesReferenceExactly) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int vocab = 1000, d = 130, n = 77;
  std::vector<float> table(vocab * d), want(n * d);
  for (float& e : table) e = dist(rng);
  std::vector<int32_t> ids(n);
  std::uniform_int_distribution<int32_t> id_dist(0, vocab - 1);
  for (int32_t& id : ids) id = id_dist(rng);
  ids[0] = vocab - 1;
  DeviceBuffer<float> dtable(table), dout(std::vector<float>(n * d, NAN));
  DeviceBuffer<int32_t> dids(ids);
  ASSERT_TRUE(dtable.ok() && dout.ok() && dids.ok());
  ASSERT_TRUE(CudaStatus(LaunchGatherRows(dtable.get(), d, dids.get(), n, dout.get(), nullptr), "launch").ok());
  ref::GatherRows(table.data(), d, ids.data(), n, want.data());
  EXPECT_EQ(dout.ToHost(), want);
}

}  // namespace
}  // namespace blockserve::cuda
