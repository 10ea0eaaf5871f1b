// CUDA kernels against the scalar reference; skips with a message when there is no device.
#include <cuda_runtime.h>

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/reference/ops_ref.h"

namespace blockserve::cuda {
namespace {

TEST(CudaDeviceTest, QueryNeverCrashesAndExplainsAbsence) {
  const CudaAvailability a = QueryCudaDevices();
  if (a.device_count == 0) {
    EXPECT_FALSE(a.reason.empty());
  } else {
    std::string description;
    ASSERT_TRUE(DescribeDevice(0, &description).ok());
    EXPECT_FALSE(description.empty());
  }
  EXPECT_TRUE(CudaStatus(cudaSuccess, "x").ok());
  EXPECT_EQ(CudaStatus(cudaErrorMemoryAllocation, "alloc").code(), absl::StatusCode::kResourceExhausted);
}

TEST(CudaRmsNormTest, MatchesReference) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  for (int n : {1, 31, 32, 33, 255, 256, 1000, 4096}) {
    const int rows = 5;
    std::vector<float> x(rows * n), scale(n), out(rows * n, -7.0f), want(n);
    for (float& v : x) v = dist(rng);
    for (float& v : scale) v = dist(rng);
    float *dx, *dscale, *dout;
    ASSERT_TRUE(CudaStatus(cudaMalloc(&dx, x.size() * 4), "malloc").ok());
    ASSERT_TRUE(CudaStatus(cudaMalloc(&dscale, scale.size() * 4), "malloc").ok());
    ASSERT_TRUE(CudaStatus(cudaMalloc(&dout, out.size() * 4), "malloc").ok());
    cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dscale, scale.data(), scale.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dout, out.data(), out.size() * 4, cudaMemcpyHostToDevice);
    ASSERT_TRUE(CudaStatus(LaunchRmsNorm(dx, dscale, rows, n, 1e-6f, dout, nullptr), "launch").ok());
    ASSERT_TRUE(CudaStatus(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost), "copy").ok());
    cudaFree(dx);
    cudaFree(dscale);
    cudaFree(dout);
    for (int r = 0; r < rows; ++r) {
      ref::RmsNorm(x.data() + r * n, scale.data(), n, 1e-6f, want.data());
      for (int i = 0; i < n; ++i) ASSERT_NEAR(out[r * n + i], want[i], 1e-4f * (1 + std::fabs(want[i])));
    }
  }
}

}  // namespace
}  // namespace blockserve::cuda
