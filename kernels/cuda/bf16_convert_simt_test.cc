// The fp32 -> bf16 split kernel (kernels/cuda/bf16_convert.cu) on the CPU SIMT harness. The
// reference rounding is written here independently (nearest bf16 by value, ties to even).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/bf16_convert.cuh"
#include "kernels/cuda/cuda_compat.cuh"

namespace blockserve::cuda {
namespace {

float Widen(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// The nearest bf16 of a finite f by comparing the two truncation neighbours (ties: even mantissa).
uint16_t NearestBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint16_t down = static_cast<uint16_t>(bits >> 16);  // toward zero
  const uint16_t up = static_cast<uint16_t>(down + 1);      // away from zero
  if ((bits & 0xffffu) == 0) return down;
  const double dd = std::fabs(static_cast<double>(f) - Widen(down));
  const double du = std::fabs(static_cast<double>(f) - Widen(up));
  if (dd != du) return dd < du ? down : up;
  return (down & 1) == 0 ? down : up;
}

TEST(CudaSimtBf16ConvertTest, SplitMatchesNearestEven) {
  std::mt19937 rng(31);
  std::normal_distribution<float> dist(0.0f, 10.0f);
  for (long long n : {1LL, 255LL, 257LL, 1000LL}) {
    SCOPED_TRACE(testing::Message() << "n " << n);
    std::vector<float> x(n);
    for (float& v : x) v = dist(rng);
    x[0] = 1.0f + 1.0f / 256;  // a tie: rounds to even (1.0)
    if (n > 3) {
      x[1] = -0.0f;
      x[2] = 1.2345e-39f;  // subnormal
    }
    std::vector<uint16_t> hi(n, 0xdead), lo(n, 0xdead);
    ASSERT_EQ(LaunchSplitToBf16(x.data(), n, hi.data(), lo.data(), nullptr), cudaSuccess);
    for (long long i = 0; i < n; ++i) {
      const uint16_t want_hi = NearestBf16(x[i]);
      ASSERT_EQ(hi[i], want_hi) << "element " << i << " x " << x[i];
      if (std::isinf(Widen(want_hi))) {
        EXPECT_EQ(lo[i], 0) << i;
        continue;
      }
      const float residue = x[i] - Widen(want_hi);
      ASSERT_EQ(lo[i], NearestBf16(residue)) << "element " << i;
      // hi + lo carries ~16 significant bits (not for subnormals, whose bf16 spacing is fixed).
      if (std::fabs(x[i]) > 1e-30f) {
        ASSERT_LE(std::fabs(static_cast<double>(Widen(hi[i])) + Widen(lo[i]) - x[i]), std::fabs(x[i]) * 0x1p-16) << i;
      }
    }
    EXPECT_EQ(hi[0], 0x3f80);
  }
}

TEST(CudaSimtBf16ConvertTest, NaNStaysQuietNaNAndLoIsOptional) {
  const float x[3] = {std::numeric_limits<float>::quiet_NaN(), 2.5f, -std::numeric_limits<float>::infinity()};
  uint16_t hi[3] = {0, 0, 0};
  ASSERT_EQ(LaunchSplitToBf16(x, 3, hi, nullptr, nullptr), cudaSuccess);
  EXPECT_TRUE(std::isnan(Widen(hi[0])));
  EXPECT_EQ(hi[1], 0x4020);
  EXPECT_EQ(hi[2], 0xff80);
  EXPECT_EQ(LaunchSplitToBf16(x, 0, hi, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchSplitToBf16(nullptr, 3, hi, nullptr, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace blockserve::cuda
