// The per-sequence BRT state (spec-brt.md §3.4): key/value rings and recurrent state, fixed size.
#ifndef BLOCKSERVE_MODELS_BRT_BRT_STATE_H_
#define BLOCKSERVE_MODELS_BRT_BRT_STATE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/api/model_runner.h"
#include "models/model_config.h"

namespace blockserve {

// Where each part of a state lives in its one float buffer. Every layer keeps a ring of the
// keys/values of its last R tokens (R = W; 2W in recurrent layers, whose block-end update
// reads the previous and the current block): the token at position p sits in row p mod R.
// Rows of positions before the document start are zero (unmasked, as in training).
// Recurrent layers add the state C entering the current block (S, d) and its projected,
// normalized keys and values (S, H).
struct BrtStateLayout {
  struct Layer {
    int64_t ring_rows = 0;
    size_t ring_k = 0, ring_v = 0;           // offsets of (ring_rows, H)
    size_t state = 0, state_k = 0, state_v = 0;  // recurrent: offsets of (S, d), (S, H), (S, H)
  };
  std::vector<Layer> layers;
  size_t num_floats = 0;

  static BrtStateLayout For(const ModelConfig& config);
};

// Thread-safety: none (one step at a time, see engine::SequenceState).
class BrtSequenceState final : public engine::SequenceState {
 public:
  BrtSequenceState(const BrtStateLayout* layout, const void* owner) : layout_(layout), owner_(owner),
      data_(layout->num_floats, 0.0f) {}

  int64_t position() const override { return position_; }
  size_t byte_size() const override { return sizeof(*this) + data_.size() * sizeof(float); }

  void set_position(int64_t p) { position_ = p; }
  const BrtStateLayout& layout() const { return *layout_; }
  // The runner that made this state (states are not portable between runners in memory).
  const void* owner() const { return owner_; }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float* at(size_t offset) { return data_.data() + offset; }
  const float* at(size_t offset) const { return data_.data() + offset; }

 private:
  const BrtStateLayout* layout_;
  const void* owner_;
  int64_t position_ = 0;
  std::vector<float> data_;
};

// Snapshot format: safetensors with one F32 tensor per part ("layers.{i}.ring_k",
// "layers.{i}.ring_v", "layers.{i}.state", "layers.{i}.state_k", "layers.{i}.state_v") and
// metadata {format: "blockserve.brt_state", format_version: "1", position, model}, where
// `model` is the fingerprint of the model the state belongs to.
std::string SerializeBrtState(const ModelConfig& config, const BrtSequenceState& state,
                              const std::string& model_fingerprint);
// Restores into `state` (made for the same config). Errors: not a snapshot / corrupt
// (DataLoss or InvalidArgument, naming the problem), another model (FailedPrecondition).
absl::Status DeserializeBrtState(const ModelConfig& config, absl::string_view bytes,
                                 const std::string& model_fingerprint, BrtSequenceState* state);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_BRT_BRT_STATE_H_
