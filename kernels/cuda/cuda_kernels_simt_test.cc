// The CUDA kernels, run on the CPU SIMT harness (no GPU needed), against the scalar reference.
// Sizes include ones that are not multiples of the warp (32) or block (256) size.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_compat.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

constexpr float kEps = 1e-6f;

// Host memory stands for device memory: the harness runs the kernel on the calling thread.
TEST(CudaSimtRmsNormTest, MatchesReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  for (int rows : {1, 3}) {
    for (int n : {1, 7, 31, 32, 33, 255, 256, 257, 1000}) {
      SCOPED_TRACE(testing::Message() << "rows " << rows << " n " << n);
      std::vector<float> x(rows * n), scale(n), want(n);
      for (float& v : x) v = dist(rng);
      for (float& v : scale) v = dist(rng);
      std::vector<float> out(rows * n, std::numeric_limits<float>::quiet_NaN());  // poison
      ASSERT_EQ(LaunchRmsNorm(x.data(), scale.data(), rows, n, kEps, out.data(), nullptr), cudaSuccess);
      for (int r = 0; r < rows; ++r) {
        ref::RmsNorm(x.data() + r * n, scale.data(), n, kEps, want.data());
        for (int i = 0; i < n; ++i) {
          ASSERT_NEAR(out[r * n + i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << "row " << r << " i " << i;
        }
      }
    }
  }
}

TEST(CudaSimtRmsNormTest, InPlaceMatchesReference) {
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  const int rows = 2, n = 300;
  std::vector<float> x(rows * n), scale(n), want(rows * n);
  for (float& v : x) v = dist(rng);
  for (float& v : scale) v = dist(rng);
  for (int r = 0; r < rows; ++r) ref::RmsNorm(x.data() + r * n, scale.data(), n, kEps, want.data() + r * n);
  ASSERT_EQ(LaunchRmsNorm(x.data(), scale.data(), rows, n, kEps, x.data(), nullptr), cudaSuccess);
  for (int i = 0; i < rows * n; ++i) ASSERT_NEAR(x[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << i;
}

TEST(CudaSimtRmsNormTest, RejectsEmptyShapes) {
  float v = 1.0f;
  EXPECT_EQ(LaunchRmsNorm(&v, &v, 0, 1, kEps, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchRmsNorm(&v, &v, 1, 0, kEps, &v, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(v, 1.0f);
}

}  // namespace
}  // namespace blockserve::cuda
