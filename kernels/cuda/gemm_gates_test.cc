// The cuBLAS GEMM wrapper (kernels/cuda/gemm.h) and the BRT state gates (kernels/cuda/gates.cuh) on
// a real device against the scalar references. The device tests skip with the reason when there
// is no CUDA device (cudaGetDeviceCount fails); CublasStatus and the failure of GemmHandle::Create
// without a device are checked everywhere.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "base/tensor.h"  // FloatToBF16 / BF16ToFloat
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/gates.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

using test_util::DeviceBuffer;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(CublasStatusTest, MapsStatusesToCodes) {
  EXPECT_TRUE(CublasStatus(CUBLAS_STATUS_SUCCESS, "x").ok());
  const absl::Status alloc = CublasStatus(CUBLAS_STATUS_ALLOC_FAILED, "cublasCreate");
  EXPECT_EQ(alloc.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(alloc.message().find("cublasCreate"), absl::string_view::npos) << alloc;
  EXPECT_NE(alloc.message().find("CUBLAS_STATUS_ALLOC_FAILED"), absl::string_view::npos) << alloc;
  EXPECT_EQ(CublasStatus(CUBLAS_STATUS_INVALID_VALUE, "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CublasStatus(CUBLAS_STATUS_NOT_INITIALIZED, "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CublasStatus(CUBLAS_STATUS_EXECUTION_FAILED, "x").code(), absl::StatusCode::kInternal);
}

TEST(GemmHandleTest, CreateReportsNoDeviceAsStatus) {
  const CudaAvailability avail = QueryCudaDevices();
  if (avail.device_count > 0) GTEST_SKIP() << "a device is present";
  const auto handle = GemmHandle::Create(nullptr);
  EXPECT_FALSE(handle.ok());
  if (!handle.ok()) {
    EXPECT_NE(handle.status().message().find("cublasCreate"), absl::string_view::npos) << handle.status();
  }
}

void RunGemmCase(GemmHandle& g, int m, int k, int n) {
  SCOPED_TRACE(testing::Message() << "m " << m << " k " << k << " n " << n);
  std::mt19937 rng(static_cast<uint32_t>(m * 7919 + k * 31 + n));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(m) * k), w(static_cast<size_t>(n) * k), w_widened(w.size());
  std::vector<uint16_t> w_bf16(w.size());
  for (float& v : x) v = dist(rng);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i] = dist(rng);
    w_bf16[i] = FloatToBF16(w[i]);
    w_widened[i] = BF16ToFloat(w_bf16[i]);
  }
  const size_t outs = static_cast<size_t>(m) * n;
  std::vector<float> want(outs), want_bf16(outs), abs_sum(outs);
  ref::Gemm(x.data(), m, k, w.data(), n, want.data());
  ref::Gemm(x.data(), m, k, w_widened.data(), n, want_bf16.data());
  for (int r = 0; r < m; ++r) {
    for (int o = 0; o < n; ++o) {
      double s = 0.0;
      for (int i = 0; i < k; ++i) s += std::fabs(static_cast<double>(x[r * k + i]) * w[o * k + i]);
      abs_sum[static_cast<size_t>(r) * n + o] = static_cast<float>(s);
    }
  }
  DeviceBuffer<float> dx(x), dw(w), dy(std::vector<float>(outs, kNaN));
  DeviceBuffer<uint16_t> dwb(w_bf16);
  ASSERT_TRUE(dx.ok() && dw.ok() && dy.ok() && dwb.ok());

  ASSERT_TRUE(g.GemmF32(dx.get(), m, k, dw.get(), n, dy.get()).ok());
  std::vector<float> y = dy.ToHost();
  // cuBLAS fp32 (no TF32 by default): accumulation-order rounding only.
  for (size_t i = 0; i < outs; ++i) ASSERT_NEAR(y[i], want[i], 1e-5f * abs_sum[i] + 1e-30f) << "f32 " << i;

  g.set_bf16_activations(Bf16Activations::kSplit);
  ASSERT_TRUE(g.GemmBF16(dx.get(), m, k, dwb.get(), n, dy.get()).ok());
  y = dy.ToHost();
  // x as hi + lo (about 2^-16 relative each) against the widened weights.
  for (size_t i = 0; i < outs; ++i) ASSERT_NEAR(y[i], want_bf16[i], 3e-5f * abs_sum[i] + 1e-30f) << "bf16 split " << i;

  g.set_bf16_activations(Bf16Activations::kRound);
  ASSERT_TRUE(g.GemmBF16(dx.get(), m, k, dwb.get(), n, dy.get()).ok());
  y = dy.ToHost();
  // x rounded to bf16: up to 2^-9 relative per product.
  for (size_t i = 0; i < outs; ++i) ASSERT_NEAR(y[i], want_bf16[i], 0x1p-8f * abs_sum[i] + 1e-30f) << "bf16 round " << i;
  g.set_bf16_activations(Bf16Activations::kSplit);
}

TEST(GemmHandleTest, MatchesReference) {
  SKIP_WITHOUT_DEVICE();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    auto handle = GemmHandle::Create(stream);
    ASSERT_TRUE(handle.ok()) << handle.status();
    for (int m : {1, 3, 17, 128}) {
      for (int k : {1, 64, 129, 1024}) {
        for (int n : {1, 33, 300}) RunGemmCase(**handle, m, k, n);
      }
    }
    // Reserved scratch, then a GEMM inside it.
    ASSERT_TRUE((*handle)->ReserveBf16(256, 1024, 1024).ok());
    RunGemmCase(**handle, 200, 1000, 1000);
    float v = 1.0f;
    EXPECT_EQ((*handle)->GemmF32(&v, 0, 1, &v, 1, &v).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
}

TEST(CudaGatesTest, MatchReference) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(41);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  for (int rows : {1, 5}) {
    for (int d : {7, 257, 1000}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " d " << d);
      const size_t total = static_cast<size_t>(rows) * d;
      std::vector<float> state(total), y(total), bias(d), fp(total), ip(total);
      for (float& v : state) v = dist(rng);
      for (float& v : y) v = dist(rng);
      for (float& v : bias) v = dist(rng);
      for (float& v : fp) v = dist(rng);
      for (float& v : ip) v = dist(rng);
      bias[0] = 60.0f;
      fp[0] = -90.0f;
      DeviceBuffer<float> ds(state), dy(y), db(bias), dfp(fp), dip(ip), dout(std::vector<float>(total, kNaN));
      ASSERT_TRUE(ds.ok() && dy.ok() && db.ok() && dfp.ok() && dip.ok() && dout.ok());
      std::vector<float> want(total);

      ASSERT_EQ(LaunchGateFixed(ds.get(), dy.get(), db.get(), rows, d, dout.get(), nullptr), cudaSuccess);
      std::vector<float> got = dout.ToHost();
      ref::GateFixed(state.data(), y.data(), bias.data(), rows, d, want.data());
      for (size_t i = 0; i < total; ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-6f * (std::fabs(state[i]) + std::fabs(y[i])) + 1e-30f) << "fixed " << i;
      }
      ASSERT_EQ(LaunchGateLstm(ds.get(), dy.get(), dfp.get(), dip.get(), static_cast<long long>(total), ds.get(),
                               nullptr),
                cudaSuccess);  // in place on state
      got = ds.ToHost();
      ref::GateLstm(state.data(), y.data(), fp.data(), ip.data(), total, want.data());
      for (size_t i = 0; i < total; ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-6f * (std::fabs(state[i]) + std::fabs(y[i])) + 1e-30f) << "lstm " << i;
      }
    }
  }
}

}  // namespace
}  // namespace blockserve::cuda
