// BRT multi-head attention per SIMD target: SIMD q.k dots, vector exp, SIMD value accumulation.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <algorithm>
#include <cmath>
#include <vector>

#include "base/check.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/cpu/attention.h"

HWY_BEFORE_NAMESPACE();
namespace blockserve::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The floor of the softmax maximum and the logit of the implicit "attend to nothing" slot.
constexpr float kMinLogit = -1000.0f;

// sum_d a[d] * b[d] in fp32 with a fixed operation order for a given n.
HWY_INLINE float Dot(const float* a, const float* b, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  size_t d = 0;
  for (; d + 2 * lanes <= n; d += 2 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + d), hn::LoadU(df, b + d), acc0);
    acc1 = hn::MulAdd(hn::LoadU(df, a + d + lanes), hn::LoadU(df, b + d + lanes), acc1);
  }
  for (; d + lanes <= n; d += lanes)
    acc0 = hn::MulAdd(hn::LoadU(df, a + d), hn::LoadU(df, b + d), acc0);
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// acc[d] += w * x[d] for d in [0, n).
// oh[d] = sum_j w[j] * v[row_j][col + d] over the query's keys (rows start, start+1, ... mod
// kv_rows), accumulated in registers four vectors at a time; each element sees the same FMA
// sequence (from zero, keys in order) whatever the chunking.
HWY_INLINE void WeightedSum(const AttentionArgs& a, const float* w, size_t start, size_t kv_rows,
                            size_t col, float* oh) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const size_t head_dim = a.head_dim;
  size_t d0 = 0;
  for (; d0 + 4 * lanes <= head_dim; d0 += 4 * lanes) {
    auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    size_t row = start;
    for (size_t j = 0; j < a.num_keys; ++j) {
      const float* vp = a.v + row * a.kv_stride + col + d0;
      const auto vw = hn::Set(df, w[j]);
      a0 = hn::MulAdd(vw, hn::LoadU(df, vp), a0);
      a1 = hn::MulAdd(vw, hn::LoadU(df, vp + lanes), a1);
      a2 = hn::MulAdd(vw, hn::LoadU(df, vp + 2 * lanes), a2);
      a3 = hn::MulAdd(vw, hn::LoadU(df, vp + 3 * lanes), a3);
      if (++row == kv_rows) row = 0;
    }
    hn::StoreU(a0, df, oh + d0);
    hn::StoreU(a1, df, oh + d0 + lanes);
    hn::StoreU(a2, df, oh + d0 + 2 * lanes);
    hn::StoreU(a3, df, oh + d0 + 3 * lanes);
  }
  for (; d0 + lanes <= head_dim; d0 += lanes) {
    auto acc = hn::Zero(df);
    size_t row = start;
    for (size_t j = 0; j < a.num_keys; ++j) {
      acc = hn::MulAdd(hn::Set(df, w[j]), hn::LoadU(df, a.v + row * a.kv_stride + col + d0), acc);
      if (++row == kv_rows) row = 0;
    }
    hn::StoreU(acc, df, oh + d0);
  }
  for (; d0 < head_dim; ++d0) {
    float acc = 0.0f;
    size_t row = start;
    for (size_t j = 0; j < a.num_keys; ++j) {
      acc += w[j] * a.v[row * a.kv_stride + col + d0];
      if (++row == kv_rows) row = 0;
    }
    oh[d0] = acc;
  }
}

void AttentionQueries(const AttentionArgs& a, size_t query_begin, size_t query_end) {
  query_end = std::min(query_end, a.m);
  if (query_begin >= query_end || a.num_heads == 0 || a.head_dim == 0) return;
  BS_CHECK_MSG(a.scale != nullptr, "Attention needs the per-head scale");
  BS_CHECK_MSG(a.num_keys == 0 || a.kv_rows > 0, "Attention with keys needs kv_rows > 0");
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const size_t head_dim = a.head_dim;
  const size_t num_keys = a.num_keys;
  // Logits padded to whole vectors; the padding's exp is exactly 0 and adds nothing to the sum.
  const size_t padded = (num_keys + lanes - 1) / lanes * lanes;
  thread_local std::vector<float> logits;
  if (logits.size() < padded) logits.resize(padded);
  float* const lg = logits.data();
  const size_t kv_rows = std::max<size_t>(a.kv_rows, 1);

  for (size_t i = query_begin; i < query_end; ++i) {
    const float* q_row = a.q + i * a.q_stride;
    float* out_row = a.out + i * a.out_stride;
    // (first_key + i * key_step) % kv_rows without overflow.
    const size_t start =
        (a.first_key % kv_rows + (i % kv_rows) * (a.key_step % kv_rows) % kv_rows) % kv_rows;
    for (size_t h = 0; h < a.num_heads; ++h) {
      const size_t col = h * head_dim;
      const float* qh = q_row + col;
      const float* bias = a.bias != nullptr ? a.bias + h * num_keys : nullptr;
      const float scale = a.scale[h];
      float mx = kMinLogit;
      size_t row = start;
      for (size_t j = 0; j < num_keys; ++j) {
        const float dot = Dot(qh, a.k + row * a.kv_stride + col, head_dim);
        const float logit = (bias != nullptr ? dot + bias[j] : dot) * scale;
        lg[j] = logit;
        mx = std::max(mx, logit);
        if (++row == kv_rows) row = 0;
      }
      for (size_t j = num_keys; j < padded; ++j) lg[j] = mx;  // padding: masked to 0 below
      const auto vmx = hn::Set(df, mx);
      auto vsum = hn::Zero(df);
      for (size_t j = 0; j < padded; j += lanes) {
        auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, lg + j), vmx));
        if (j + lanes > num_keys) e = hn::IfThenElseZero(hn::FirstN(df, num_keys - j), e);
        hn::StoreU(e, df, lg + j);
        vsum = hn::Add(vsum, e);
      }
      const float denom = hn::GetLane(hn::SumOfLanes(df, vsum)) + std::exp(kMinLogit - mx);
      float* oh = out_row + col;
      WeightedSum(a, lg, start, kv_rows, col, oh);
      const float inv = 1.0f / denom;
      const auto vinv = hn::Set(df, inv);
      size_t d = 0;
      for (; d + lanes <= head_dim; d += lanes)
        hn::StoreU(hn::Mul(hn::LoadU(df, oh + d), vinv), df, oh + d);
      for (; d < head_dim; ++d) oh[d] *= inv;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace blockserve::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace blockserve::cpu {
HWY_EXPORT(AttentionQueries);

void Attention(const AttentionArgs& args, size_t query_begin, size_t query_end) {
  HWY_DYNAMIC_DISPATCH(AttentionQueries)(args, query_begin, query_end);
}
}  // namespace blockserve::cpu
#endif  // HWY_ONCE
