// BRT state layout and its safetensors snapshot format.
#include "models/brt/brt_state.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/safetensors.h"
#include "base/status.h"
#include "base/tensor.h"
#include "models/state_snapshot.h"

namespace blockserve {
namespace {

constexpr char kStateFormat[] = "blockserve.brt_state";
constexpr char kStateFormatVersion[] = "1";

struct Part {
  std::string name;
  size_t offset;
  Shape shape;
};

std::vector<Part> Parts(const ModelConfig& config, const BrtStateLayout& layout) {
  const int64_t H = config.attn_dim(), d = config.d_model, S = config.brt.num_states;
  std::vector<Part> parts;
  for (size_t i = 0; i < layout.layers.size(); ++i) {
    const BrtStateLayout::Layer& l = layout.layers[i];
    const std::string p = absl::StrCat("layers.", i, ".");
    parts.push_back({p + "ring_k", l.ring_k, {l.ring_rows, H}});
    parts.push_back({p + "ring_v", l.ring_v, {l.ring_rows, H}});
    if (config.IsRecurrentLayer(static_cast<int>(i))) {
      parts.push_back({p + "state", l.state, {S, d}});
      parts.push_back({p + "state_k", l.state_k, {S, H}});
      parts.push_back({p + "state_v", l.state_v, {S, H}});
    }
  }
  return parts;
}

}  // namespace

BrtStateLayout BrtStateLayout::For(const ModelConfig& config) {
  const size_t H = config.attn_dim(), d = config.d_model, S = config.brt.num_states, W = config.brt.window;
  BrtStateLayout layout;
  size_t offset = 0;
  for (int i = 0; i < config.num_layers; ++i) {
    Layer l;
    const bool rec = config.IsRecurrentLayer(i);
    l.ring_rows = static_cast<int64_t>(rec ? 2 * W : W);
    l.ring_k = offset;
    offset += l.ring_rows * H;
    l.ring_v = offset;
    offset += l.ring_rows * H;
    if (rec) {
      l.state = offset;
      offset += S * d;
      l.state_k = offset;
      offset += S * H;
      l.state_v = offset;
      offset += S * H;
    }
    layout.layers.push_back(l);
  }
  layout.num_floats = offset;
  return layout;
}

std::string SerializeBrtState(const ModelConfig& config, const BrtSequenceState& state,
                              const std::string& model_fingerprint) {
  std::vector<std::pair<std::string, ConstTensorView>> tensors;
  for (const Part& part : Parts(config, state.layout())) {
    tensors.emplace_back(part.name, ConstTensorView(DType::kF32, part.shape, state.at(part.offset)));
  }
  return SerializeStateSnapshot(tensors, kStateFormat, kStateFormatVersion, state.position(), model_fingerprint);
}

absl::Status DeserializeBrtState(const ModelConfig& config, absl::string_view bytes,
                                 const std::string& model_fingerprint, BrtSequenceState* state) {
  ASSIGN_OR_RETURN(StateSnapshot snapshot,
                   OpenStateSnapshot(bytes, "BRT", kStateFormat, kStateFormatVersion, model_fingerprint));
  const SafetensorsFile& file = *snapshot.file;
  int64_t position = 0;
  if (!absl::SimpleAtoi(snapshot.position, &position) || position < 0) {
    return absl::InvalidArgumentError(absl::StrCat("BRT state snapshot: bad position '", snapshot.position, "'"));
  }
  const std::vector<Part> parts = Parts(config, state->layout());
  if (file.names().size() != parts.size()) {
    return absl::InvalidArgumentError(absl::StrCat("BRT state snapshot has ", file.names().size(),
                                                   " tensors, the model needs ", parts.size()));
  }
  for (const Part& part : parts) {
    absl::StatusOr<ConstTensorView> view = file.Get(part.name);
    if (!view.ok()) return absl::InvalidArgumentError(absl::StrCat("BRT state snapshot: ", view.status().message()));
    if (view->dtype != DType::kF32 || view->shape != part.shape) {
      return absl::InvalidArgumentError(absl::StrCat("BRT state snapshot: '", part.name, "' is ",
                                                     DTypeName(view->dtype), ShapeString(view->shape),
                                                     ", expected F32", ShapeString(part.shape)));
    }
  }
  for (const Part& part : parts) {
    const ConstTensorView view = *file.Get(part.name);
    std::memcpy(state->at(part.offset), view.data, view.num_bytes());
  }
  state->set_position(position);
  return absl::OkStatus();
}

}  // namespace blockserve
