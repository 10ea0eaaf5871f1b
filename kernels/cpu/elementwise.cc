// Elementwise ops per SIMD target (Highway dispatch); the f32 gather is a plain row copy.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/elementwise.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "base/check.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/cpu/elementwise.h"

HWY_BEFORE_NAMESPACE();
namespace blockserve::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Floats in the widest vector of any target: room for one (padded) tail vector.
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

// sigmoid(v) and 1 - sigmoid(v) = sigmoid(-v), both accurate for any sign (no overflow):
// e = exp(-|v|), s = 1 / (1 + e); for v >= 0 they are (s, e * s), else (e * s, s).
HWY_INLINE void SigmoidPair(DF df, VF v, VF& sig, VF& one_minus_sig) {
  const VF one = hn::Set(df, 1.0f);
  const VF e = hn::Exp(df, hn::Neg(hn::Abs(v)));
  const VF s = hn::Div(one, hn::Add(one, e));
  const VF es = hn::Mul(e, s);
  const auto nonneg = hn::Ge(v, hn::Zero(df));
  sig = hn::IfThenElse(nonneg, s, es);
  one_minus_sig = hn::IfThenElse(nonneg, es, s);
}
HWY_INLINE VF Sigmoid(DF df, VF v) {
  VF sig, one_minus_sig;
  SigmoidPair(df, v, sig, one_minus_sig);
  return sig;
}

// Applies `op` (vector -> vector) to x[0, n) in place; the tail goes through a zero-padded vector.
template <class Op>
HWY_INLINE void UnaryInPlace(float* x, size_t n, const Op& op) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(op(df, hn::LoadU(df, x + i)), df, x + i);
  if (i < n) {
    HWY_ALIGN float buf[kMaxLanes] = {};
    std::copy(x + i, x + n, buf);
    hn::Store(op(df, hn::Load(df, buf)), df, buf);
    std::copy(buf, buf + (n - i), x + i);
  }
}

void NormalizeHeadsImpl(float* x, size_t rows, size_t stride, size_t num_heads, size_t head_dim) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t h = 0; h < num_heads; ++h) {
      float* xh = x + r * stride + h * head_dim;
      auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
      size_t i = 0;
      for (; i + 2 * lanes <= head_dim; i += 2 * lanes) {
        const auto a = hn::LoadU(df, xh + i);
        const auto b = hn::LoadU(df, xh + i + lanes);
        acc0 = hn::MulAdd(a, a, acc0);
        acc1 = hn::MulAdd(b, b, acc1);
      }
      for (; i + lanes <= head_dim; i += lanes) {
        const auto a = hn::LoadU(df, xh + i);
        acc0 = hn::MulAdd(a, a, acc0);
      }
      float sum_sq = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
      for (; i < head_dim; ++i) sum_sq += xh[i] * xh[i];
      const float inv = 1.0f / std::sqrt(sum_sq + 1e-6f);
      const auto vinv = hn::Set(df, inv);
      i = 0;
      for (; i + lanes <= head_dim; i += lanes)
        hn::StoreU(hn::Mul(hn::LoadU(df, xh + i), vinv), df, xh + i);
      for (; i < head_dim; ++i) xh[i] *= inv;
    }
  }
}

void ReluImpl(float* x, size_t n) {
  UnaryInPlace(x, n, [](DF df, VF v) HWY_ATTR { return hn::Max(v, hn::Zero(df)); });
}

void TanhImpl(float* x, size_t n) {
  UnaryInPlace(x, n, [](DF df, VF v) HWY_ATTR { return hn::Tanh(df, v); });
}

void AddInPlaceImpl(float* y, const float* x, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes)
    hn::StoreU(hn::Add(hn::LoadU(df, y + i), hn::LoadU(df, x + i)), df, y + i);
  for (; i < n; ++i) y[i] += x[i];
}

void ScaleImpl(float* x, size_t n, float s) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const auto vs = hn::Set(df, s);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), vs), df, x + i);
  for (; i < n; ++i) x[i] *= s;
}

HWY_INLINE float DotOne(const float* a, const float* b, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  VF acc0 = hn::Zero(df), acc1 = hn::Zero(df), acc2 = hn::Zero(df), acc3 = hn::Zero(df);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
    acc1 = hn::MulAdd(hn::LoadU(df, a + i + lanes), hn::LoadU(df, b + i + lanes), acc1);
    acc2 = hn::MulAdd(hn::LoadU(df, a + i + 2 * lanes), hn::LoadU(df, b + i + 2 * lanes), acc2);
    acc3 = hn::MulAdd(hn::LoadU(df, a + i + 3 * lanes), hn::LoadU(df, b + i + 3 * lanes), acc3);
  }
  for (; i + lanes <= n; i += lanes) acc0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc0);
  if (i < n) {
    HWY_ALIGN float ta[kMaxLanes] = {}, tb[kMaxLanes] = {};
    std::copy(a + i, a + n, ta);
    std::copy(b + i, b + n, tb);
    acc1 = hn::MulAdd(hn::Load(df, ta), hn::Load(df, tb), acc1);
  }
  const VF sum = hn::Add(hn::Add(acc0, acc1), hn::Add(acc2, acc3));
  return hn::GetLane(hn::SumOfLanes(df, sum));
}

float DotImpl(const float* a, const float* b, size_t n) { return DotOne(a, b, n); }

void DotRowsImpl(const float* q, const float* const* rows, size_t count, size_t n, float* out) {
  for (size_t j = 0; j < count; ++j) out[j] = DotOne(q, rows[j], n);
}

// out[i, i + k * lanes) for k < kBlocks (the columns from i) = sum_j weights[j] * rows[j][...],
// the sum in j order, one MulAdd per term (as Axpy into zeros).
template <size_t kBlocks>
HWY_INLINE void WeightedSumBlock(const float* weights, const float* const* rows, size_t count, size_t i,
                                 float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  VF acc[kBlocks];
  for (size_t k = 0; k < kBlocks; ++k) acc[k] = hn::Zero(df);
  for (size_t j = 0; j < count; ++j) {
    const VF w = hn::Set(df, weights[j]);
    for (size_t k = 0; k < kBlocks; ++k) acc[k] = hn::MulAdd(w, hn::LoadU(df, rows[j] + i + k * lanes), acc[k]);
  }
  for (size_t k = 0; k < kBlocks; ++k) hn::StoreU(acc[k], df, out + i + k * lanes);
}

void WeightedSumRowsImpl(const float* weights, const float* const* rows, size_t count, size_t n, float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) WeightedSumBlock<4>(weights, rows, count, i, out);
  for (; i + lanes <= n; i += lanes) WeightedSumBlock<1>(weights, rows, count, i, out);
  if (i < n) {  // the tail columns through a padded vector
    VF acc = hn::Zero(df);
    for (size_t j = 0; j < count; ++j) {
      HWY_ALIGN float t[kMaxLanes] = {};
      std::copy(rows[j] + i, rows[j] + n, t);
      acc = hn::MulAdd(hn::Set(df, weights[j]), hn::Load(df, t), acc);
    }
    HWY_ALIGN float t[kMaxLanes];
    hn::Store(acc, df, t);
    std::copy(t, t + (n - i), out + i);
  }
}

void AxpyImpl(float alpha, const float* x, float* y, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const VF va = hn::Set(df, alpha);
  size_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    const VF y0 = hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i));
    const VF y1 = hn::MulAdd(va, hn::LoadU(df, x + i + lanes), hn::LoadU(df, y + i + lanes));
    hn::StoreU(y0, df, y + i);
    hn::StoreU(y1, df, y + i + lanes);
  }
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  if (i < n) {  // the tail through padded vectors: rounded as the body
    HWY_ALIGN float tx[kMaxLanes] = {}, ty[kMaxLanes] = {};
    std::copy(x + i, x + n, tx);
    std::copy(y + i, y + n, ty);
    hn::Store(hn::MulAdd(va, hn::Load(df, tx), hn::Load(df, ty)), df, ty);
    std::copy(ty, ty + (n - i), y + i);
  }
}

void GateFixedImpl(const float* state, const float* y, const float* bias, size_t rows, size_t d,
                   float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  // g and 1 - g per column, computed once (padded to whole vectors).
  const size_t padded = (d + lanes - 1) / lanes * lanes;
  thread_local std::vector<float> gates;
  if (gates.size() < 2 * padded) gates.resize(2 * padded);
  float* g = gates.data();
  float* omg = g + padded;
  for (size_t c = 0; c < padded; c += lanes) {
    HWY_ALIGN float buf[kMaxLanes] = {};
    std::copy(bias + c, bias + std::min(d, c + lanes), buf);
    VF sig, one_minus_sig;
    SigmoidPair(df, hn::Load(df, buf), sig, one_minus_sig);
    hn::StoreU(sig, df, g + c);
    hn::StoreU(one_minus_sig, df, omg + c);
  }
  for (size_t r = 0; r < rows; ++r) {
    const float* sr = state + r * d;
    const float* yr = y + r * d;
    float* outr = out + r * d;
    size_t c = 0;
    for (; c + lanes <= d; c += lanes) {
      const auto v = hn::MulAdd(hn::LoadU(df, sr + c), hn::LoadU(df, g + c),
                                hn::Mul(hn::LoadU(df, yr + c), hn::LoadU(df, omg + c)));
      hn::StoreU(v, df, outr + c);
    }
    for (; c < d; ++c) outr[c] = sr[c] * g[c] + yr[c] * omg[c];
  }
}

void GateLstmImpl(const float* state, const float* y, const float* forget_pre,
                  const float* input_pre, size_t n, float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const auto one = hn::Set(df, 1.0f);
  const auto gate = [&](const float* s, const float* yy, const float* fp, const float* ip)
                        HWY_ATTR {
                          const auto f = Sigmoid(df, hn::Add(hn::LoadU(df, fp), one));
                          const auto in = Sigmoid(df, hn::Sub(hn::LoadU(df, ip), one));
                          return hn::MulAdd(hn::LoadU(df, s), f, hn::Mul(hn::LoadU(df, yy), in));
                        };
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(gate(state + i, y + i, forget_pre + i, input_pre + i), df, out + i);
  }
  if (i < n) {
    const size_t rest = n - i;
    HWY_ALIGN float bs[kMaxLanes] = {}, by[kMaxLanes] = {}, bf[kMaxLanes] = {}, bi[kMaxLanes] = {};
    std::copy(state + i, state + n, bs);
    std::copy(y + i, y + n, by);
    std::copy(forget_pre + i, forget_pre + n, bf);
    std::copy(input_pre + i, input_pre + n, bi);
    hn::Store(gate(bs, by, bf, bi), df, bs);
    std::copy(bs, bs + rest, out + i);
  }
}

void GatherRowsBF16Impl(const uint16_t* table, size_t d, const int32_t* ids, size_t n, float* out) {
  const DF df;
  const hn::Rebind<hwy::bfloat16_t, DF> dbf;
  const size_t lanes = hn::Lanes(df);
  for (size_t r = 0; r < n; ++r) {
    BS_DCHECK(ids[r] >= 0);
    const uint16_t* src = table + static_cast<size_t>(ids[r]) * d;
    float* dst = out + r * d;
    size_t i = 0;
    for (; i + lanes <= d; i += lanes) {
      hn::StoreU(
          hn::PromoteTo(df, hn::LoadU(dbf, reinterpret_cast<const hwy::bfloat16_t*>(src + i))), df,
          dst + i);
    }
    for (; i < d; ++i) {
      const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
      std::memcpy(&dst[i], &bits, sizeof(float));
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace blockserve::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace blockserve::cpu {
HWY_EXPORT(NormalizeHeadsImpl);
HWY_EXPORT(ReluImpl);
HWY_EXPORT(TanhImpl);
HWY_EXPORT(AddInPlaceImpl);
HWY_EXPORT(ScaleImpl);
HWY_EXPORT(DotImpl);
HWY_EXPORT(AxpyImpl);
HWY_EXPORT(DotRowsImpl);
HWY_EXPORT(WeightedSumRowsImpl);
HWY_EXPORT(GateFixedImpl);
HWY_EXPORT(GateLstmImpl);
HWY_EXPORT(GatherRowsBF16Impl);

void NormalizeHeads(float* x, size_t rows, size_t stride, size_t num_heads, size_t head_dim) {
  HWY_DYNAMIC_DISPATCH(NormalizeHeadsImpl)(x, rows, stride, num_heads, head_dim);
}
void Relu(float* x, size_t n) { HWY_DYNAMIC_DISPATCH(ReluImpl)(x, n); }
void Tanh(float* x, size_t n) { HWY_DYNAMIC_DISPATCH(TanhImpl)(x, n); }
void AddInPlace(float* y, const float* x, size_t n) {
  HWY_DYNAMIC_DISPATCH(AddInPlaceImpl)(y, x, n);
}
void Scale(float* x, size_t n, float s) { HWY_DYNAMIC_DISPATCH(ScaleImpl)(x, n, s); }
float Dot(const float* a, const float* b, size_t n) { return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n); }
void Axpy(float alpha, const float* x, float* y, size_t n) { HWY_DYNAMIC_DISPATCH(AxpyImpl)(alpha, x, y, n); }
void DotRows(const float* q, const float* const* rows, size_t count, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(DotRowsImpl)(q, rows, count, n, out);
}
void WeightedSumRows(const float* weights, const float* const* rows, size_t count, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(WeightedSumRowsImpl)(weights, rows, count, n, out);
}
void GateFixed(const float* state, const float* y, const float* bias, size_t rows, size_t d,
               float* out) {
  HWY_DYNAMIC_DISPATCH(GateFixedImpl)(state, y, bias, rows, d, out);
}
void GateLstm(const float* state, const float* y, const float* forget_pre, const float* input_pre,
              size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(GateLstmImpl)(state, y, forget_pre, input_pre, n, out);
}
void GatherRowsF32(const float* table, size_t d, const int32_t* ids, size_t n, float* out) {
  for (size_t r = 0; r < n; ++r) {
    BS_DCHECK(ids[r] >= 0);
    std::memcpy(out + r * d, table + static_cast<size_t>(ids[r]) * d, d * sizeof(float));
  }
}
void GatherRowsBF16(const uint16_t* table, size_t d, const int32_t* ids, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(GatherRowsBF16Impl)(table, d, ids, n, out);
}
}  // namespace blockserve::cpu
#endif  // HWY_ONCE
