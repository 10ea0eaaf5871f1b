// The BRT state gate kernels (kernels/cuda/gates.cu) on the CPU SIMT harness against the scalar
// references ref::GateFixed / ref::GateLstm. Host memory stands for device memory; outputs are
// poisoned with NaN first; sizes include ones that are not multiples of the block size (256) and
// one beyond the grid cap, so the grid-stride loop runs more than once per thread.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_compat.cuh"
#include "kernels/cuda/gates.cuh"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// fp32 sigmoids and one fused multiply-add against the double reference: a few ulp of the terms.
float Tol(float state, float y) { return 1e-6f * (std::fabs(state) + std::fabs(y)) + 1e-30f; }

// Gate pre-activations: mostly moderate, some far in the saturated tails (stability of 1 - g).
std::vector<float> GateInputs(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    v[i] = dist(rng);
    if (i % 11 == 3) v[i] = 40.0f;
    if (i % 11 == 7) v[i] = -95.0f;
    if (i % 13 == 5) v[i] = 0.0f;
  }
  return v;
}

std::vector<float> Normal(std::mt19937& rng, size_t n, float sd) {
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> v(n);
  for (float& e : v) e = dist(rng);
  return v;
}

TEST(CudaSimtGateFixedTest, MatchesReference) {
  std::mt19937 rng(21);
  for (int rows : {1, 3, 5}) {
    for (int d : {1, 7, 31, 255, 256, 257, 1000}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " d " << d);
      const size_t total = static_cast<size_t>(rows) * d;
      const std::vector<float> state = Normal(rng, total, 1.0f), y = Normal(rng, total, 3.0f);
      const std::vector<float> bias = GateInputs(rng, d);
      std::vector<float> out(total, kNaN), want(total);
      ASSERT_EQ(LaunchGateFixed(state.data(), y.data(), bias.data(), rows, d, out.data(), nullptr), cudaSuccess);
      ref::GateFixed(state.data(), y.data(), bias.data(), rows, d, want.data());
      for (size_t i = 0; i < total; ++i) ASSERT_NEAR(out[i], want[i], Tol(state[i], y[i])) << "element " << i;
    }
  }
}

TEST(CudaSimtGateFixedTest, InPlaceOnStateAndOnY) {
  std::mt19937 rng(22);
  const int rows = 3, d = 333;
  const size_t total = static_cast<size_t>(rows) * d;
  const std::vector<float> state = Normal(rng, total, 1.0f), y = Normal(rng, total, 1.0f);
  const std::vector<float> bias = GateInputs(rng, d);
  std::vector<float> want(total);
  ref::GateFixed(state.data(), y.data(), bias.data(), rows, d, want.data());
  std::vector<float> s = state;
  ASSERT_EQ(LaunchGateFixed(s.data(), y.data(), bias.data(), rows, d, s.data(), nullptr), cudaSuccess);
  for (size_t i = 0; i < total; ++i) ASSERT_NEAR(s[i], want[i], Tol(state[i], y[i])) << "out = state, " << i;
  std::vector<float> yy = y;
  ASSERT_EQ(LaunchGateFixed(state.data(), yy.data(), bias.data(), rows, d, yy.data(), nullptr), cudaSuccess);
  for (size_t i = 0; i < total; ++i) ASSERT_NEAR(yy[i], want[i], Tol(state[i], y[i])) << "out = y, " << i;
}

TEST(CudaSimtGateLstmTest, MatchesReference) {
  std::mt19937 rng(23);
  // 8192 * 256 + 77: more elements than the grid cap has threads.
  for (long long n : {1LL, 7LL, 255LL, 256LL, 257LL, 3000LL, 8192LL * 256 + 77}) {
    SCOPED_TRACE(testing::Message() << "n " << n);
    const std::vector<float> state = Normal(rng, n, 1.0f), y = Normal(rng, n, 3.0f);
    const std::vector<float> fp = GateInputs(rng, n), ip = GateInputs(rng, n);
    std::vector<float> out(n, kNaN), want(n);
    ASSERT_EQ(LaunchGateLstm(state.data(), y.data(), fp.data(), ip.data(), n, out.data(), nullptr), cudaSuccess);
    ref::GateLstm(state.data(), y.data(), fp.data(), ip.data(), n, want.data());
    for (long long i = 0; i < n; ++i) ASSERT_NEAR(out[i], want[i], Tol(state[i], y[i])) << "element " << i;
  }
}

TEST(CudaSimtGateLstmTest, InPlaceOnState) {
  std::mt19937 rng(24);
  const long long n = 517;
  const std::vector<float> state = Normal(rng, n, 1.0f), y = Normal(rng, n, 1.0f);
  const std::vector<float> fp = GateInputs(rng, n), ip = GateInputs(rng, n);
  std::vector<float> want(n), s = state;
  ref::GateLstm(state.data(), y.data(), fp.data(), ip.data(), n, want.data());
  ASSERT_EQ(LaunchGateLstm(s.data(), y.data(), fp.data(), ip.data(), n, s.data(), nullptr), cudaSuccess);
  for (long long i = 0; i < n; ++i) ASSERT_NEAR(s[i], want[i], Tol(state[i], y[i])) << i;
}

TEST(CudaSimtGatesTest, RejectsEmptyShapesAndNulls) {
  float v = 1.0f;
  EXPECT_EQ(LaunchGateFixed(&v, &v, &v, 0, 1, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchGateFixed(&v, &v, &v, 1, 0, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchGateFixed(&v, nullptr, &v, 1, 1, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchGateLstm(&v, &v, &v, &v, 0, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchGateLstm(&v, &v, nullptr, &v, 1, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(v, 1.0f);
}

}  // namespace
}  // namespace blockserve::cuda
