// RMSNorm compiled once per SIMD target by Highway's foreach_target; dispatched at runtime.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/rms_norm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include "hwy/highway.h"
#include "kernels/cpu/rms_norm.h"

HWY_BEFORE_NAMESPACE();
namespace blockserve::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void RmsNormRows(const float* x, const float* scale, size_t rows, size_t n, float eps, float* out) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* outr = out + r * n;
    auto acc0 = hn::Zero(df);
    auto acc1 = hn::Zero(df);
    size_t i = 0;
    for (; i + 2 * lanes <= n; i += 2 * lanes) {
      const auto a = hn::LoadU(df, xr + i);
      const auto b = hn::LoadU(df, xr + i + lanes);
      acc0 = hn::MulAdd(a, a, acc0);
      acc1 = hn::MulAdd(b, b, acc1);
    }
    for (; i + lanes <= n; i += lanes) {
      const auto a = hn::LoadU(df, xr + i);
      acc0 = hn::MulAdd(a, a, acc0);
    }
    float sum_sq = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
    for (; i < n; ++i) sum_sq += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
    const auto vinv = hn::Set(df, inv);
    i = 0;
    for (; i + lanes <= n; i += lanes) {
      const auto v = hn::Mul(hn::Mul(hn::LoadU(df, xr + i), vinv), hn::LoadU(df, scale + i));
      hn::StoreU(v, df, outr + i);
    }
    for (; i < n; ++i) outr[i] = xr[i] * inv * scale[i];
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace blockserve::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace blockserve::cpu {
HWY_EXPORT(RmsNormRows);

void RmsNorm(const float* x, const float* scale, size_t rows, size_t n, float eps, float* out) {
  HWY_DYNAMIC_DISPATCH(RmsNormRows)(x, scale, rows, n, eps, out);
}
}  // namespace blockserve::cpu
#endif  // HWY_ONCE
