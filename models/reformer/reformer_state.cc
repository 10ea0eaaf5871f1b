// Reformer state: the sorted-order bucket index, the per-layer caches and their snapshots.
#include "models/reformer/reformer_state.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/safetensors.h"
#include "base/status.h"
#include "base/tensor.h"
#include "models/state_snapshot.h"

namespace blockserve {

// ---------------------------------------------------------------------------------------------
// LshBucketIndex

LshBucketIndex::LshBucketIndex(int num_buckets) : tree_(num_buckets + 1, 0), lists_(num_buckets) {
  BS_CHECK(num_buckets > 0);
  top_ = 1;
  while (top_ * 2 <= num_buckets) top_ *= 2;
}

void LshBucketIndex::Append(int bucket, int32_t position) {
  BS_CHECK(bucket >= 0 && bucket < num_buckets());
  lists_[bucket].push_back(position);
  const int n = num_buckets();
  for (int i = bucket + 1; i <= n; i += i & -i) ++tree_[i];
  ++size_;
}

int64_t LshBucketIndex::CountAtMost(int bucket) const {
  int64_t sum = 0;
  for (int i = std::min(bucket + 1, num_buckets()); i > 0; i -= i & -i) sum += tree_[i];
  return sum;
}

int LshBucketIndex::Find(int64_t rank, int64_t* within) const {
  // Largest `pos` whose prefix count (buckets [0, pos)) is <= rank; bucket `pos` holds it.
  const int n = num_buckets();
  int pos = 0;
  for (int step = top_; step > 0; step >>= 1) {
    if (pos + step <= n && tree_[pos + step] <= rank) {
      pos += step;
      rank -= tree_[pos];
    }
  }
  *within = rank;
  return pos;
}

int32_t LshBucketIndex::At(int64_t rank) const {
  int64_t within = 0;
  const int b = Find(rank, &within);
  return lists_[b][within];
}

// Window: empty buckets skipped by scanning before falling back to a Fenwick descent.
constexpr int kScanBuckets = 8;

void LshBucketIndex::Window(int64_t start, int64_t count, int32_t* out) const {
  BS_CHECK(size_ > 0);
  int64_t rank = ((start % size_) + size_) % size_;
  int64_t within = 0;
  int b = Find(rank, &within);
  const int n = num_buckets();
  for (int64_t k = 0; k < count; ++k) {
    out[k] = lists_[b][within];
    rank = rank + 1 == size_ ? 0 : rank + 1;
    // Past the end of this bucket: the next rank is in the next non-empty bucket, or, wrapped
    // to 0, in the first one. A short forward scan finds it (the next bucket, mostly, once
    // buckets hold several tokens); a Fenwick descent otherwise.
    if (++within == static_cast<int64_t>(lists_[b].size())) {
      within = 0;
      int next = b + 1;
      if (rank != 0) {
        const int scan_end = std::min(n, b + 1 + kScanBuckets);
        while (next < scan_end && lists_[next].empty()) ++next;
      }
      b = rank != 0 && next < n && !lists_[next].empty() ? next : Find(rank, &within);
    }
  }
}

size_t LshBucketIndex::byte_size() const {
  return sizeof(*this) + tree_.size() * sizeof(int32_t) + lists_.size() * sizeof(std::vector<int32_t>) +
         static_cast<size_t>(size_) * sizeof(int32_t);
}

// ---------------------------------------------------------------------------------------------
// ReformerStateShape, ReformerSequenceState

ReformerStateShape ReformerStateShape::For(const ModelConfig& config) {
  const ReformerConfig& r = config.reformer;
  ReformerStateShape s;
  s.num_layers = config.num_layers;
  for (ReformerAttention a : r.attn_layers) s.lsh.push_back(a == ReformerAttention::kLsh);
  s.heads = config.num_heads;
  s.head_dim = config.head_dim;
  s.attn_dim = config.attn_dim();
  s.hashes = r.num_hashes;
  s.num_buckets = r.total_buckets();
  s.ring_rows = static_cast<int64_t>(r.local_chunk_length) * (1 + r.local_num_chunks_before);
  return s;
}

ReformerSequenceState::ReformerSequenceState(const ReformerStateShape* shape, const void* owner)
    : shape_(shape), owner_(owner), layers_(shape->num_layers) {
  for (int i = 0; i < shape->num_layers; ++i) {
    if (!shape->lsh[i]) layers_[i].kv.assign(static_cast<size_t>(shape->ring_rows) * 2 * shape->attn_dim, 0.0f);
  }
}

size_t ReformerSequenceState::byte_size() const {
  size_t bytes = sizeof(*this) + layers_.size() * sizeof(ReformerLayerCache);
  for (const ReformerLayerCache& l : layers_) {
    bytes += l.kv.size() * sizeof(float) + l.buckets.size() * sizeof(int32_t);
    for (const LshBucketIndex& index : l.index) bytes += index.byte_size();
  }
  return bytes;
}

void ReformerSequenceState::AppendLsh(int i, const float* kv, const int32_t* buckets) {
  ReformerLayerCache& l = layers_[i];
  const size_t A = shape_->attn_dim, hr = static_cast<size_t>(shape_->heads) * shape_->hashes;
  const int32_t position = static_cast<int32_t>(l.buckets.size() / hr);
  l.kv.insert(l.kv.end(), kv, kv + 2 * A);
  l.buckets.insert(l.buckets.end(), buckets, buckets + hr);
  for (size_t j = 0; j < l.index.size(); ++j) l.index[j].Append(buckets[j], position);
}

void ReformerSequenceState::EnsureIndex(int i) {
  ReformerLayerCache& l = layers_[i];
  if (!l.index.empty()) return;
  const size_t hr = static_cast<size_t>(shape_->heads) * shape_->hashes;
  const size_t n = l.buckets.size() / hr;
  l.index.reserve(hr);
  for (size_t j = 0; j < hr; ++j) {
    l.index.emplace_back(shape_->num_buckets);
    for (size_t t = 0; t < n; ++t) l.index[j].Append(l.buckets[t * hr + j], static_cast<int32_t>(t));
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

namespace {

constexpr char kStateFormat[] = "blockserve.reformer_state";
constexpr char kStateFormatVersion[] = "1";

struct Part {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;
};

// The tensors of a state holding `n` tokens (data pointers from `state`).
std::vector<Part> Parts(const ReformerSequenceState& state, int64_t n) {
  const ReformerStateShape& s = state.shape();
  std::vector<Part> parts;
  for (int i = 0; i < s.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    const ReformerLayerCache& l = state.layer(i);
    if (s.lsh[i]) {
      parts.push_back({p + "kv", DType::kF32, {n, 2 * int64_t{s.attn_dim}}, l.kv.data()});
      parts.push_back({p + "buckets", DType::kI32, {n, s.heads, s.hashes}, l.buckets.data()});
    } else {
      parts.push_back({p + "ring", DType::kF32, {s.ring_rows, 2 * int64_t{s.attn_dim}}, l.kv.data()});
    }
  }
  return parts;
}

absl::Status Corrupt(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("Reformer state snapshot: ", what));
}

}  // namespace

std::string SerializeReformerState(const ReformerSequenceState& state, const std::string& model_fingerprint) {
  std::vector<std::pair<std::string, ConstTensorView>> tensors;
  for (const Part& part : Parts(state, state.position())) {
    tensors.emplace_back(part.name, ConstTensorView(part.dtype, part.shape, NumElements(part.shape) ? part.data : nullptr));
  }
  return SerializeStateSnapshot(tensors, kStateFormat, kStateFormatVersion, state.position(), model_fingerprint);
}

absl::Status DeserializeReformerState(absl::string_view bytes, const std::string& model_fingerprint,
                                      int64_t max_position, ReformerSequenceState* state) {
  ASSIGN_OR_RETURN(StateSnapshot snapshot,
                   OpenStateSnapshot(bytes, "Reformer", kStateFormat, kStateFormatVersion, model_fingerprint));
  const SafetensorsFile& file = *snapshot.file;
  int64_t position = 0;
  if (!absl::SimpleAtoi(snapshot.position, &position) || position < 0 || position > max_position) {
    return Corrupt(absl::StrCat("bad position '", snapshot.position, "' (the model holds ", max_position, ")"));
  }
  const ReformerStateShape& s = state->shape();
  const std::vector<Part> parts = Parts(*state, position);
  if (file.names().size() != parts.size()) {
    return Corrupt(absl::StrCat("it has ", file.names().size(), " tensors, the model needs ", parts.size()));
  }
  for (const Part& part : parts) {
    absl::StatusOr<ConstTensorView> view = file.Get(part.name);
    if (!view.ok()) return Corrupt(view.status().message());
    if (view->dtype != part.dtype || view->shape != part.shape) {
      return Corrupt(absl::StrCat("'", part.name, "' is ", DTypeName(view->dtype), ShapeString(view->shape),
                                  ", expected ", DTypeName(part.dtype), ShapeString(part.shape)));
    }
    if (part.dtype == DType::kI32) {
      const int32_t* b = static_cast<const int32_t*>(view->data);
      for (int64_t j = 0; j < NumElements(part.shape); ++j) {
        if (b[j] < 0 || b[j] >= s.num_buckets) {
          return Corrupt(absl::StrCat("'", part.name, "' holds bucket ", b[j], ", outside [0, ", s.num_buckets, ")"));
        }
      }
    }
  }
  for (int i = 0; i < s.num_layers; ++i) {
    const std::string p = absl::StrCat("layers.", i, ".");
    ReformerLayerCache& l = state->layer(i);
    l.index.clear();
    if (s.lsh[i]) {
      const ConstTensorView kv = *file.Get(p + "kv");
      const ConstTensorView b = *file.Get(p + "buckets");
      l.kv.assign(static_cast<const float*>(kv.data), static_cast<const float*>(kv.data) + kv.num_elements());
      l.buckets.assign(static_cast<const int32_t*>(b.data), static_cast<const int32_t*>(b.data) + b.num_elements());
    } else {
      const ConstTensorView ring = *file.Get(p + "ring");
      std::memcpy(l.kv.data(), ring.data, ring.num_bytes());
    }
  }
  state->set_position(position);
  return absl::OkStatus();
}

}  // namespace blockserve
