// ModelRunner: the interface the engine drives and models/ implements (one forward step).
#ifndef BLOCKSERVE_ENGINE_API_MODEL_RUNNER_H_
#define BLOCKSERVE_ENGINE_API_MODEL_RUNNER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace blockserve::engine {

// The state one sequence (session) carries between steps: for BRT the position, key/value
// rings and recurrent state. Opaque to the engine; only the runner that made it reads it.
// Thread-safety: not thread-safe; the engine hands a state to one step at a time.
class SequenceState {
 public:
  virtual ~SequenceState() = default;
  // Tokens consumed since the document start.
  virtual int64_t position() const = 0;
  // Bytes of memory this state holds (constant for BRT, growing for Reformer).
  virtual size_t byte_size() const = 0;
};

// What the engine needs to know about the loaded model.
struct ModelInfo {
  std::string family;          // "brt" or "reformer"
  std::string name;            // the model directory's name
  int vocab_size = 0;          // logits per token
  int32_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  int block_size = 1;          // prefill chunks that are multiples of it run fastest (BRT: W)
  int64_t max_position = -1;   // tokens a sequence may reach; -1: unlimited
  size_t state_bytes = 0;      // bytes of a fresh state
  bool constant_state = true;  // state_bytes does not grow with the position
  // Tokens fed at position 0 must arrive as one item: the runner's prefill of a sequence's first
  // prompt is one computation over all of it (Reformer: the full forward), so cutting it into
  // chunks would change the result. Later tokens may be cut anywhere.
  bool whole_first_prompt = false;
  int64_t num_parameters = 0;
  int d_model = 0;
  int num_layers = 0;
  std::string weight_dtype;    // "f32" or "bf16": how the runner holds the weights
  std::string device;          // "cpu", "cuda:0", ...
};

// One sequence's share of a step: feed `tokens` (at least one) to `state`, in order.
struct StepItem {
  enum class Logits { kNone, kLast, kAll };
  SequenceState* state = nullptr;
  absl::Span<const int32_t> tokens;
  Logits logits = Logits::kLast;
  // kLast: vocab_size floats for the last token; kAll: tokens.size() * vocab_size floats,
  // row r = the next-token logits after tokens[r]. Ignored for kNone.
  float* logits_out = nullptr;
};

// Thread-safety: Execute, NewState and the state functions may be called from one thread at
// a time (the engine's step loop); info() from any thread.
class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual const ModelInfo& info() const = 0;

  // A state at the document start.
  virtual std::unique_ptr<SequenceState> NewState() const = 0;
  // An independent copy (forking a session).
  virtual std::unique_ptr<SequenceState> CloneState(const SequenceState& state) const = 0;

  // Runs one step. Items name distinct states. Items with a single token are decoded
  // together (the weights are read once for all of them); longer items are prefilled. A state
  // advances only if its item succeeds; an error (bad token id, position past max_position)
  // names the item and leaves every state unchanged.
  virtual absl::Status Execute(absl::Span<const StepItem> items) = 0;

  // Snapshot bytes of a state (safetensors with metadata that ties it to this model), and
  // back. Deserialize(Serialize(s)) continues exactly like s.
  virtual absl::StatusOr<std::string> SerializeState(const SequenceState& state) const = 0;
  virtual absl::StatusOr<std::unique_ptr<SequenceState>> DeserializeState(absl::string_view bytes) const = 0;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_API_MODEL_RUNNER_H_
