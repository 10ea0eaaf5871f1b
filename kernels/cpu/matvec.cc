// Batched GEMV per SIMD target: each ~64 KiB block of weight rows is read once for the whole batch.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/matvec.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <algorithm>

#include "hwy/highway.h"
#include "kernels/cpu/matvec.h"

HWY_BEFORE_NAMESPACE();
namespace blockserve::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Loads `lanes` weights starting at w + i as f32 vectors (f32 or bf16 source).
template <class D>
HWY_INLINE hn::Vec<D> LoadWeights(D df, const float* w, size_t i) {
  return hn::LoadU(df, w + i);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadWeights(D df, const uint16_t* w, size_t i) {
  const hn::Rebind<hwy::bfloat16_t, D> dbf;
  return hn::PromoteTo(df, hn::LoadU(dbf, reinterpret_cast<const hwy::bfloat16_t*>(w + i)));
}
HWY_INLINE float ScalarWeight(const float* w, size_t i) { return w[i]; }
HWY_INLINE float ScalarWeight(const uint16_t* w, size_t i) {
  const uint32_t bits = static_cast<uint32_t>(w[i]) << 16;
  float f;
  hwy::CopyBytes<sizeof(f)>(&bits, &f);
  return f;
}

// Up to kTile batch rows per pass over a weight row.
constexpr size_t kTile = 4;
// Weight rows are visited in blocks of about this many bytes (kept in L2 while every batch tile
// reads them), so each block comes from DRAM once for the whole batch.
constexpr size_t kBlockBytes = 64 * 1024;

// y[b][o] for the up to kTile batch rows starting at b0 (nb of them) and weight row `row`.
// Each batch row has its own accumulator and the same operation order, so its result does not
// depend on nb or on its position in the tile (bit-identical for every batch size).
template <typename W>
HWY_INLINE void DotTile(const W* row, const float* x, size_t b0, size_t nb, size_t in, float* y,
                        size_t out, size_t o) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  size_t i = 0;
  for (; i + lanes <= in; i += lanes) {
    const auto wv = LoadWeights(df, row, i);
    a0 = hn::MulAdd(wv, hn::LoadU(df, x + (b0 + 0) * in + i), a0);
    if (nb > 1) a1 = hn::MulAdd(wv, hn::LoadU(df, x + (b0 + 1) * in + i), a1);
    if (nb > 2) a2 = hn::MulAdd(wv, hn::LoadU(df, x + (b0 + 2) * in + i), a2);
    if (nb > 3) a3 = hn::MulAdd(wv, hn::LoadU(df, x + (b0 + 3) * in + i), a3);
  }
  float sums[kTile] = {hn::GetLane(hn::SumOfLanes(df, a0)), hn::GetLane(hn::SumOfLanes(df, a1)),
                       hn::GetLane(hn::SumOfLanes(df, a2)), hn::GetLane(hn::SumOfLanes(df, a3))};
  for (; i < in; ++i) {
    const float wi = ScalarWeight(row, i);
    for (size_t b = 0; b < nb; ++b) sums[b] += wi * x[(b0 + b) * in + i];
  }
  for (size_t b = 0; b < nb; ++b) y[(b0 + b) * out + o] = sums[b];
}

// A full tile of four weight rows x four batch rows (16 accumulators): each x vector load
// serves four rows, so batched decode is bound by the FMAs rather than the loads. Every
// (row, batch) accumulator runs exactly the operations of DotTile, so results are bit-identical.
template <typename W>
HWY_INLINE void DotTile4x4(const W* w, const float* x, size_t b0, size_t in, float* y, size_t out,
                           size_t o) {
  const hn::ScalableTag<float> df;
  const size_t lanes = hn::Lanes(df);
  const W* r0 = w + o * in;
  const W* r1 = r0 + in;
  const W* r2 = r1 + in;
  const W* r3 = r2 + in;
  const float* x0 = x + (b0 + 0) * in;
  const float* x1 = x + (b0 + 1) * in;
  const float* x2 = x + (b0 + 2) * in;
  const float* x3 = x + (b0 + 3) * in;
  auto a00 = hn::Zero(df), a01 = hn::Zero(df), a02 = hn::Zero(df), a03 = hn::Zero(df);
  auto a10 = hn::Zero(df), a11 = hn::Zero(df), a12 = hn::Zero(df), a13 = hn::Zero(df);
  auto a20 = hn::Zero(df), a21 = hn::Zero(df), a22 = hn::Zero(df), a23 = hn::Zero(df);
  auto a30 = hn::Zero(df), a31 = hn::Zero(df), a32 = hn::Zero(df), a33 = hn::Zero(df);
  size_t i = 0;
  for (; i + lanes <= in; i += lanes) {
    const auto w0 = LoadWeights(df, r0, i), w1 = LoadWeights(df, r1, i);
    const auto w2 = LoadWeights(df, r2, i), w3 = LoadWeights(df, r3, i);
    auto xv = hn::LoadU(df, x0 + i);
    a00 = hn::MulAdd(w0, xv, a00);
    a10 = hn::MulAdd(w1, xv, a10);
    a20 = hn::MulAdd(w2, xv, a20);
    a30 = hn::MulAdd(w3, xv, a30);
    xv = hn::LoadU(df, x1 + i);
    a01 = hn::MulAdd(w0, xv, a01);
    a11 = hn::MulAdd(w1, xv, a11);
    a21 = hn::MulAdd(w2, xv, a21);
    a31 = hn::MulAdd(w3, xv, a31);
    xv = hn::LoadU(df, x2 + i);
    a02 = hn::MulAdd(w0, xv, a02);
    a12 = hn::MulAdd(w1, xv, a12);
    a22 = hn::MulAdd(w2, xv, a22);
    a32 = hn::MulAdd(w3, xv, a32);
    xv = hn::LoadU(df, x3 + i);
    a03 = hn::MulAdd(w0, xv, a03);
    a13 = hn::MulAdd(w1, xv, a13);
    a23 = hn::MulAdd(w2, xv, a23);
    a33 = hn::MulAdd(w3, xv, a33);
  }
  const W* rows[4] = {r0, r1, r2, r3};
  const float* xs[4] = {x0, x1, x2, x3};
  const float sums[4][4] = {
      {hn::GetLane(hn::SumOfLanes(df, a00)), hn::GetLane(hn::SumOfLanes(df, a01)),
       hn::GetLane(hn::SumOfLanes(df, a02)), hn::GetLane(hn::SumOfLanes(df, a03))},
      {hn::GetLane(hn::SumOfLanes(df, a10)), hn::GetLane(hn::SumOfLanes(df, a11)),
       hn::GetLane(hn::SumOfLanes(df, a12)), hn::GetLane(hn::SumOfLanes(df, a13))},
      {hn::GetLane(hn::SumOfLanes(df, a20)), hn::GetLane(hn::SumOfLanes(df, a21)),
       hn::GetLane(hn::SumOfLanes(df, a22)), hn::GetLane(hn::SumOfLanes(df, a23))},
      {hn::GetLane(hn::SumOfLanes(df, a30)), hn::GetLane(hn::SumOfLanes(df, a31)),
       hn::GetLane(hn::SumOfLanes(df, a32)), hn::GetLane(hn::SumOfLanes(df, a33))}};
  for (size_t r = 0; r < 4; ++r) {
    for (size_t b = 0; b < 4; ++b) {
      float sum = sums[r][b];
      for (size_t j = i; j < in; ++j) sum += ScalarWeight(rows[r], j) * xs[b][j];
      y[(b0 + b) * out + o + r] = sum;
    }
  }
}

// Blocks of weight rows (outer) x batch tiles of kTile x rows of the block (inner).
template <typename W>
void MatVecRows(const W* w, const float* x, size_t batch, size_t out, size_t in, float* y,
                size_t row_begin, size_t row_end) {
  row_end = std::min(row_end, out);
  if (row_begin >= row_end || batch == 0) return;
  const size_t row_bytes = std::max<size_t>(1, in * sizeof(W));
  const size_t block_rows = std::max<size_t>(1, kBlockBytes / row_bytes);
  for (size_t r0 = row_begin; r0 < row_end; r0 += block_rows) {
    const size_t r1 = std::min(row_end, r0 + block_rows);
    for (size_t b0 = 0; b0 < batch; b0 += kTile) {
      const size_t nb = std::min(kTile, batch - b0);
      size_t o = r0;
      if (nb == kTile) {
        for (; o + 4 <= r1; o += 4) DotTile4x4(w, x, b0, in, y, out, o);
      }
      for (; o < r1; ++o) DotTile(w + o * in, x, b0, nb, in, y, out, o);
    }
  }
}

void MatVecF32Impl(const float* w, const float* x, size_t batch, size_t out, size_t in, float* y,
                   size_t row_begin, size_t row_end) {
  MatVecRows(w, x, batch, out, in, y, row_begin, row_end);
}
void MatVecBF16Impl(const uint16_t* w, const float* x, size_t batch, size_t out, size_t in,
                    float* y, size_t row_begin, size_t row_end) {
  MatVecRows(w, x, batch, out, in, y, row_begin, row_end);
}

}  // namespace HWY_NAMESPACE
}  // namespace blockserve::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace blockserve::cpu {
HWY_EXPORT(MatVecF32Impl);
HWY_EXPORT(MatVecBF16Impl);

void MatVecF32(const float* w, const float* x, size_t batch, size_t out, size_t in, float* y,
               size_t row_begin, size_t row_end) {
  HWY_DYNAMIC_DISPATCH(MatVecF32Impl)(w, x, batch, out, in, y, row_begin, row_end);
}
void MatVecBF16(const uint16_t* w, const float* x, size_t batch, size_t out, size_t in, float* y,
                size_t row_begin, size_t row_end) {
  HWY_DYNAMIC_DISPATCH(MatVecBF16Impl)(w, x, batch, out, in, y, row_begin, row_end);
}
}  // namespace blockserve::cpu
#endif  // HWY_ONCE
