// The per-sequence Reformer cache (docs/reformer-decoding.md): per LSH layer every token's
// normalized key, value and buckets, with a sorted-order index per (head, round); per local
// layer a ring of the last positions' keys and values. Grows linearly with the position.
#ifndef BLOCKSERVE_MODELS_REFORMER_REFORMER_STATE_H_
#define BLOCKSERVE_MODELS_REFORMER_REFORMER_STATE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/api/model_runner.h"
#include "models/model_config.h"

namespace blockserve {

// The cached tokens of one (LSH layer, head, round) in their sorted order: by bucket, then
// by position. A Fenwick tree of per-bucket counts gives a bucket's first sorted rank in
// O(log NB); per-bucket position lists (ascending, since tokens arrive in position order)
// map a rank back to a position. A decode step's window of W consecutive ranks costs
// O(W + log NB) per crossed bucket boundary instead of a re-sort.
// Thread-safety: none.
class LshBucketIndex {
 public:
  LshBucketIndex() = default;
  explicit LshBucketIndex(int num_buckets);

  int num_buckets() const { return static_cast<int>(lists_.size()); }
  int64_t size() const { return size_; }
  // Adds a token. Its position must exceed every position added before, so it sorts last
  // within its bucket. bucket in [0, num_buckets).
  void Append(int bucket, int32_t position);
  // Number of tokens whose bucket is <= `bucket` (the rank just past that bucket's tokens).
  int64_t CountAtMost(int bucket) const;
  // The position at sorted rank `rank`, in [0, size()).
  int32_t At(int64_t rank) const;
  // out[k] = the position at sorted rank (start + k) mod size() for k in [0, count): the
  // window wraps around within the sorted order; `start` may be negative or >= size() and
  // `count` may exceed size() (ranks then repeat). Requires size() > 0.
  void Window(int64_t start, int64_t count, int32_t* out) const;
  // Memory held: the tree, the list headers and the positions.
  size_t byte_size() const;

 private:
  // The bucket holding sorted rank `rank` (< size()) and the rank within that bucket
  // (Fenwick descent: the smallest bucket whose inclusive prefix count exceeds `rank`).
  int Find(int64_t rank, int64_t* within) const;

  std::vector<int32_t> tree_;                // 1-based Fenwick tree over the bucket counts
  std::vector<std::vector<int32_t>> lists_;  // per bucket: positions, ascending
  int64_t size_ = 0;
  int top_ = 0;                              // highest power of two <= num_buckets
};

// Shapes of a Reformer state, from the config (shared by the runner's states).
struct ReformerStateShape {
  int num_layers = 0;
  std::vector<bool> lsh;       // per layer
  int heads = 0, head_dim = 0, attn_dim = 0;  // H, dh, A = H * dh
  int hashes = 0;              // nh
  int num_buckets = 0;         // NB (product of the factors)
  int64_t ring_rows = 0;       // local layers: c_l * (1 + local_num_chunks_before)

  static ReformerStateShape For(const ModelConfig& config);
};

// One layer's cache.
//  - LSH: `kv` (n, 2A), token t's row [k̂ (A) | v (A)], heads contiguous, k̂ = qk normalized to
//    unit length (spec-reformer.md §1.1); `buckets` (n, H, nh), no round offsets; `index` the
//    H * nh sorted-order indexes (h * nh + r), built from `buckets` on first need (a window
//    over more than one chunk) and then kept up to date. Empty otherwise.
//  - Local: `kv` the ring (R, 2A), position p in row p mod R: [k / sqrt(dh) | v].
struct ReformerLayerCache {
  std::vector<float> kv;
  std::vector<int32_t> buckets;
  std::vector<LshBucketIndex> index;
};

// Thread-safety: none (one step at a time, see engine::SequenceState).
class ReformerSequenceState final : public engine::SequenceState {
 public:
  ReformerSequenceState(const ReformerStateShape* shape, const void* owner);

  int64_t position() const override { return position_; }
  // The cached data: grows linearly with the position once the indexes exist (their trees
  // and list headers are a constant per (layer, head, round)). Vector capacities may hold up
  // to twice the reported payload while growing.
  size_t byte_size() const override;

  void set_position(int64_t p) { position_ = p; }
  const ReformerStateShape& shape() const { return *shape_; }
  // The runner that made this state (states are not portable between runners in memory).
  const void* owner() const { return owner_; }
  ReformerLayerCache& layer(int i) { return layers_[i]; }
  const ReformerLayerCache& layer(int i) const { return layers_[i]; }

  // Appends one token to LSH layer `i`: row `kv` (2A floats) and its buckets (H * nh).
  // The token's position is the number of tokens the layer holds.
  void AppendLsh(int i, const float* kv, const int32_t* buckets);
  // Builds layer `i`'s sorted-order indexes from its buckets if they do not exist yet.
  void EnsureIndex(int i);

 private:
  const ReformerStateShape* shape_;
  const void* owner_;
  int64_t position_ = 0;
  std::vector<ReformerLayerCache> layers_;
};

// Snapshot format: safetensors with, per LSH layer, "layers.{i}.kv" F32 (n, 2A) and
// "layers.{i}.buckets" I32 (n, H, nh), per local layer "layers.{i}.ring" F32 (R, 2A), and
// metadata {format: "blockserve.reformer_state", format_version: "1", position, model}
// (`model`: the fingerprint of the model the state belongs to). The indexes are rebuilt.
std::string SerializeReformerState(const ReformerSequenceState& state, const std::string& model_fingerprint);
// Restores into `state` (fresh, made for the same config). Errors: not a snapshot / corrupt
// (InvalidArgument, naming the problem), another model (FailedPrecondition).
absl::Status DeserializeReformerState(absl::string_view bytes, const std::string& model_fingerprint,
                                      int64_t max_position, ReformerSequenceState* state);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_REFORMER_REFORMER_STATE_H_
