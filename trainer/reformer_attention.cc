// Reformer LSH and local attention (libtorch): hashing, sorting, chunk windows, masks, rounds.
#include "trainer/reformer_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace blockserve::trainer {
namespace {

// [x of the previous chunk (wrapping around); x of the own chunk] along the chunk-length axis.
// x: (..., n_chunks, c, ...rest) with the chunk axis at `dim`.
torch::Tensor LookBack(const torch::Tensor& x, int64_t dim) {
  return torch::cat({torch::roll(x, 1, dim), x}, dim + 1);
}

// Applies the causal (and optionally self) mask by replacement. q_pos: (..., c), k_pos: (..., k).
torch::Tensor Mask(torch::Tensor dots, const torch::Tensor& q_pos, const torch::Tensor& k_pos, bool self_mask) {
  const torch::Tensor qp = q_pos.unsqueeze(-1), kp = k_pos.unsqueeze(-2);
  dots = torch::where(qp < kp, torch::full_like(dots, kReformerMaskValue), dots);
  if (self_mask) dots = torch::where(qp == kp, torch::full_like(dots, kReformerSelfMaskValue), dots);
  return dots;
}


}  // namespace

torch::Tensor NormalizeKeys(const torch::Tensor& x) {
  const int64_t dh = x.size(-1);
  return x * torch::rsqrt(x.square().mean(-1, /*keepdim=*/true) + 1e-6) / std::sqrt(static_cast<double>(dh));
}

int64_t TotalBuckets(const std::vector<int>& num_buckets) {
  int64_t n = 1;
  for (int f : num_buckets) n *= f;
  return n;
}

int64_t RotationSize(const std::vector<int>& num_buckets) {
  int64_t n = 0;
  for (int f : num_buckets) n += f;
  return n;
}

torch::Tensor LshHash(const torch::Tensor& qk, const torch::Tensor& rotations, const std::vector<int>& num_buckets) {
  // rot: (B, H, nh, L, rot/2)
  const torch::Tensor rot = torch::einsum("bhld,hdnr->bhnlr", {qk.detach(), rotations});
  torch::Tensor buckets = torch::zeros({qk.size(0), qk.size(1), rotations.size(2), qk.size(2)}, torch::kInt64);
  int64_t offset = 0, radix = 1;
  for (int f : num_buckets) {
    const torch::Tensor part = rot.narrow(-1, offset, f / 2);
    buckets = buckets + radix * torch::argmax(torch::cat({part, -part}, -1), -1);
    offset += f / 2;
    radix *= f;
  }
  return buckets;
}

LshAttentionResult LshAttention(const torch::Tensor& qk, const torch::Tensor& v, const torch::Tensor& rotations,
                                const std::vector<int>& num_buckets, int chunk, int64_t valid_length) {
  const int64_t B = qk.size(0), H = qk.size(1), L = qk.size(2), dh = qk.size(3);
  if (valid_length < 0) valid_length = L;
  TORCH_CHECK(valid_length <= L, "LSH attention: valid length ", valid_length, " exceeds ", L);
  LshAttentionResult result;
  const torch::Tensor positions = torch::arange(L, torch::kInt64);
  if (valid_length <= chunk) {
    // Pads (if any) come after every real position: the causal mask hides them.
    torch::Tensor dots = torch::matmul(qk, NormalizeKeys(qk).transpose(-1, -2));
    dots = Mask(dots, positions, positions, /*self_mask=*/true);
    result.out = torch::matmul(torch::softmax(dots, -1), v);
    return result;
  }
  TORCH_CHECK(L % chunk == 0, "LSH attention: length ", L, " is not a multiple of the chunk ", chunk);
  const int64_t nh = rotations.size(2), NB = TotalBuckets(num_buckets), n = nh * L, nc = n / chunk;
  result.buckets = LshHash(qk, rotations, num_buckets);
  if (valid_length < L) result.buckets.narrow(-1, valid_length, L - valid_length).fill_(NB);
  // Sort by (bucket + round offset, position): one sequence of nh * L slots, round-major; a
  // round has NB + 1 buckets (the last one for pads).
  const torch::Tensor round_offset = (torch::arange(nh, torch::kInt64) * (NB + 1)).view({1, 1, nh, 1});
  const torch::Tensor flat = (result.buckets + round_offset).view({B, H, n});
  const torch::Tensor ticker = torch::arange(n, torch::kInt64);
  const torch::Tensor key = flat * L + (ticker % L);
  const torch::Tensor perm = std::get<1>(key.sort(-1));          // sorted slot -> flat index
  const torch::Tensor undo = std::get<1>(perm.sort(-1));          // flat index -> sorted slot
  const torch::Tensor pos = perm % L;                             // (B, H, n): position of each slot
  const torch::Tensor idx = pos.unsqueeze(-1).expand({B, H, n, dh});
  const torch::Tensor sq = qk.gather(2, idx), sv = v.gather(2, idx);
  const torch::Tensor sk = NormalizeKeys(sq);
  // Chunks: (B, H, nc, c, dh); keys/values/positions of [previous; own] chunk.
  const torch::Tensor Q = sq.view({B, H, nc, chunk, dh});
  const torch::Tensor K = LookBack(sk.view({B, H, nc, chunk, dh}), 2);
  const torch::Tensor V = LookBack(sv.view({B, H, nc, chunk, dh}), 2);
  const torch::Tensor qpos = pos.view({B, H, nc, chunk});
  const torch::Tensor kpos = LookBack(qpos, 2);
  torch::Tensor dots = torch::matmul(Q, K.transpose(-1, -2));     // (B, H, nc, c, 2c)
  dots = Mask(dots, qpos, kpos, /*self_mask=*/true);
  const torch::Tensor lse = torch::logsumexp(dots, -1, /*keepdim=*/true);
  // Probabilities by softmax (max subtracted), not exp(dots - lse): when a query sees only
  // itself, lse is near the self-mask value -1e5, where a float32 ulp is 0.008, and
  // exp(dots - lse) would then scale its value by up to 0.4%.
  const torch::Tensor o = torch::matmul(torch::softmax(dots, -1), V).view({B, H, n, dh});
  // Back to the original order, then combine the rounds.
  const torch::Tensor o_orig = o.gather(2, undo.unsqueeze(-1).expand({B, H, n, dh})).view({B, H, nh, L, dh});
  const torch::Tensor lse_orig = lse.view({B, H, n}).gather(2, undo).view({B, H, nh, L, 1});
  const torch::Tensor w = torch::softmax(lse_orig, 2);
  result.out = (w * o_orig).sum(2);
  return result;
}

torch::Tensor LocalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int chunk) {
  const int64_t B = q.size(0), H = q.size(1), L = q.size(2), dh = q.size(3);
  const torch::Tensor ks = k / std::sqrt(static_cast<double>(dh));
  const torch::Tensor positions = torch::arange(L, torch::kInt64);
  if (L <= chunk) {
    torch::Tensor dots = torch::matmul(q, ks.transpose(-1, -2));
    dots = Mask(dots, positions, positions, /*self_mask=*/false);
    return torch::matmul(torch::softmax(dots, -1), v);
  }
  TORCH_CHECK(L % chunk == 0, "local attention: length ", L, " is not a multiple of the chunk ", chunk);
  const int64_t nc = L / chunk;
  const torch::Tensor Q = q.view({B, H, nc, chunk, dh});
  const torch::Tensor K = LookBack(ks.view({B, H, nc, chunk, dh}), 2);
  const torch::Tensor V = LookBack(v.view({B, H, nc, chunk, dh}), 2);
  const torch::Tensor qpos = positions.view({nc, chunk});
  const torch::Tensor kpos = LookBack(qpos, 0);
  torch::Tensor dots = torch::matmul(Q, K.transpose(-1, -2));
  dots = Mask(dots, qpos, kpos, /*self_mask=*/false);
  return torch::matmul(torch::softmax(dots, -1), V).view({B, H, L, dh});
}

int64_t ReformerPaddedLength(const ModelConfig& config, int64_t length) {
  const ReformerConfig& r = config.reformer;
  int64_t lcm = 1, smallest = 0;
  auto use = [&](int64_t chunk) {
    lcm = std::lcm(lcm, chunk);
    smallest = smallest == 0 ? chunk : std::min(smallest, chunk);
  };
  for (ReformerAttention a : r.attn_layers) use(a == ReformerAttention::kLsh ? r.lsh_chunk_length : r.local_chunk_length);
  if (smallest == 0 || length <= smallest) return length;
  return (length + lcm - 1) / lcm * lcm;
}

}  // namespace blockserve::trainer
