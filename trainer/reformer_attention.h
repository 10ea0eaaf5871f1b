// Reformer attention in libtorch (spec-reformer.md §1-2): angular LSH hashing with fixed
// rotations, sorting by (bucket, position), chunked attention with causal and self masks,
// combination of hash rounds; and local (chunked) attention.
#ifndef BLOCKSERVE_TRAINER_REFORMER_ATTENTION_H_
#define BLOCKSERVE_TRAINER_REFORMER_ATTENTION_H_

#include <torch/torch.h>

#include <vector>

#include "models/model_config.h"

namespace blockserve::trainer {

// Mask values of HF's fp32 path (replacement, not subtraction).
inline constexpr double kReformerMaskValue = -1e9;
inline constexpr double kReformerSelfMaskValue = -1e5;

// LSH keys: x scaled to unit length per vector (last axis), as x * rsqrt(mean(x^2) + 1e-6) /
// sqrt(dh) (spec §1.1; TRAX and HF).
torch::Tensor NormalizeKeys(const torch::Tensor& x);

// Total buckets of a bucket spec: the int, or the product of the factors (each even).
int64_t TotalBuckets(const std::vector<int>& num_buckets);
// Rotation columns: the int, or the sum of the factors.
int64_t RotationSize(const std::vector<int>& num_buckets);

// Buckets of every position in every round (spec §1.2).
// qk: (B, H, L, dh) unnormalized shared query/keys; rotations: (H, dh, nh, RotationSize/2).
// Returns int64 (B, H, nh, L) in [0, TotalBuckets): argmax over [xR; -xR] per factor, the
// factors combined as mixed-radix digits (first factor least significant).
torch::Tensor LshHash(const torch::Tensor& qk, const torch::Tensor& rotations, const std::vector<int>& num_buckets);

struct LshAttentionResult {
  torch::Tensor out;      // (B, H, L, dh)
  torch::Tensor buckets;  // (B, H, nh, L), undefined when L <= chunk (plain attention)
};

// Causal LSH self-attention (spec §1.10), chunks attend to [previous chunk, own chunk] of the
// sorted order (wrapping around), keys unit-normalized, queries raw, no 1/sqrt(dh); causal mask
// -1e9 and self mask -1e5 by replacement; rounds combined with weights softmax(lse_r). When
// the real length is at most `chunk`: full causal attention with the same masks, no hashing
// (as HF).
// qk, v: (B, H, L, dh). The first `valid_length` positions are real (-1: all L); the rest are
// right padding: each pad gets the pad bucket TotalBuckets(num_buckets) in every round, so it
// sorts after every real token of its round, and is masked as a key by causality. L must be a
// multiple of `chunk` when valid_length > chunk. The returned buckets hold the pad bucket at pads.
LshAttentionResult LshAttention(const torch::Tensor& qk, const torch::Tensor& v, const torch::Tensor& rotations,
                                const std::vector<int>& num_buckets, int chunk, int64_t valid_length = -1);

// Causal local attention (spec §2): keys scaled by 1/sqrt(dh), chunks of `chunk` attend to
// [previous chunk, own chunk] (position p sees [chunk*(p/chunk - 1), p]), no self mask.
// q, k, v: (B, H, L, dh); L a multiple of `chunk` when L > chunk. Right padding needs no
// treatment: a real position never sees a later one.
torch::Tensor LocalAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int chunk);

// The length a forward pass over `length` real tokens runs at (docs/reformer-decoding.md,
// "Prefill"): with m the lcm of the chunk lengths in use (LSH and/or local), `length` rounded
// up to a multiple of m when it exceeds the smallest chunk length; otherwise `length`.
int64_t ReformerPaddedLength(const ModelConfig& config, int64_t length);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_REFORMER_ATTENTION_H_
