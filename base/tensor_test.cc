// Tests for DType tables, shapes, Tensor storage and half/bfloat16 conversions.
#include "base/tensor.h"

#include <cmath>
#include <cstring>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockserve {
namespace {

using ::testing::HasSubstr;

TEST(DTypeTest, NamesRoundTripAndSizes) {
  for (DType d : AllDTypes()) {
    auto parsed = ParseDType(DTypeName(d));
    ASSERT_TRUE(parsed.ok()) << DTypeName(d);
    EXPECT_EQ(*parsed, d);
  }
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kI64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
  auto bad = ParseDType("F8_E4M3X");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown dtype 'F8_E4M3X'"));
}

TEST(ShapeTest, ElementsAndOverflow) {
  EXPECT_EQ(NumElements({}), 1);
  EXPECT_EQ(NumElements({2, 3, 4}), 24);
  EXPECT_EQ(NumElements({5, 0}), 0);
  EXPECT_EQ(ShapeString({2, 3}), "[2, 3]");
  EXPECT_FALSE(CheckedNumElements({1LL << 40, 1LL << 40}).ok());
  EXPECT_FALSE(CheckedNumElements({-1, 2}).ok());
  EXPECT_EQ(*CheckedNumElements({1LL << 20, 1LL << 20}), 1LL << 40);
}

TEST(TensorTest, AlignedZeroedAndTypedAccess) {
  Tensor t(DType::kF32, {3, 5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  EXPECT_EQ(t.num_bytes(), 60u);
  auto span = t.as<float>();
  ASSERT_EQ(span.size(), 15u);
  for (float v : span) EXPECT_EQ(v, 0.0f);
  span[7] = 2.5f;
  ConstTensorView view = static_cast<const Tensor&>(t).view();
  EXPECT_EQ(view.dim(-1), 5);
  EXPECT_EQ(view.as<float>()[7], 2.5f);
  Tensor moved = std::move(t);
  EXPECT_EQ(moved.as<float>()[7], 2.5f);
}

TEST(HalfTest, MatchesCompilerFloat16OnRandomAndEdgeValues) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -2.0f, 65504.0f, 65519.0f, 65520.0f, 1e-8f,
                               5.96e-8f, 2.98e-8f, 6.1e-5f, 6.0e-5f, INFINITY, -INFINITY};
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, sizeof(f));
    if (!std::isnan(f)) values.push_back(f);
  }
  std::uniform_real_distribution<float> small(-70000.0f, 70000.0f);
  for (int i = 0; i < 100000; ++i) values.push_back(small(rng) * std::pow(2.0f, -float(i % 30)));
  for (float f : values) {
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t ref_bits;
    std::memcpy(&ref_bits, &ref, sizeof(ref_bits));
    ASSERT_EQ(FloatToHalf(f), ref_bits) << "f=" << f;
  }
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(NAN))));
}

TEST(HalfTest, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    _Float16 ref;
    const uint16_t hb = static_cast<uint16_t>(h);
    std::memcpy(&ref, &hb, sizeof(ref));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(static_cast<float>(ref)));
      continue;
    }
    ASSERT_EQ(f, static_cast<float>(ref)) << h;
    ASSERT_EQ(FloatToHalf(f), h) << h;
  }
}

TEST(BF16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBF16(1.0f), 0x3F80);
  EXPECT_EQ(BF16ToFloat(0x3F80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(FloatToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  // 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6: rounds up to even.
  EXPECT_EQ(FloatToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(NAN))));
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 10.0f);
  for (int i = 0; i < 10000; ++i) {
    const float f = dist(rng);
    const float r = BF16ToFloat(FloatToBF16(f));
    EXPECT_LE(std::fabs(r - f), std::fabs(f) * std::ldexp(1.0f, -8));
  }
}

}  // namespace
}  // namespace blockserve
