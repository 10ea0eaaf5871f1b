// FakeModelRunner: a deterministic ModelRunner for engine tests (logits from a hash of the history).
#ifndef BLOCKSERVE_ENGINE_TESTING_FAKE_MODEL_RUNNER_H_
#define BLOCKSERVE_ENGINE_TESTING_FAKE_MODEL_RUNNER_H_

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/api/model_runner.h"

namespace blockserve::engine::testing {

// The state is the position and a hash of every token fed so far, so the logits (and greedy
// tokens) depend on the whole history, like a real recurrent model's.
class FakeState final : public SequenceState {
 public:
  int64_t position() const override { return position_; }
  size_t byte_size() const override { return sizeof(*this); }
  int64_t position_ = 0;
  uint64_t hash_ = 1469598103934665603ull;
};

// Thread-safety: Execute from one thread at a time (as ModelRunner requires).
class FakeModelRunner final : public ModelRunner {
 public:
  explicit FakeModelRunner(int vocab_size, int block_size = 4) {
    info_.family = "fake";
    info_.name = "fake";
    info_.vocab_size = vocab_size;
    info_.block_size = block_size;
    info_.state_bytes = sizeof(FakeState);
    info_.device = "cpu";
  }
  const ModelInfo& info() const override { return info_; }
  ModelInfo& mutable_info() { return info_; }  // set before the engine starts
  std::unique_ptr<SequenceState> NewState() const override { return std::make_unique<FakeState>(); }
  std::unique_ptr<SequenceState> CloneState(const SequenceState& s) const override {
    return std::make_unique<FakeState>(static_cast<const FakeState&>(s));
  }
  absl::Status Execute(absl::Span<const StepItem> items) override {
    for (const StepItem& item : items) {
      for (int32_t t : item.tokens) {
        if (t < 0 || t >= info_.vocab_size) return absl::InvalidArgumentError(absl::StrCat("bad token ", t));
      }
    }
    if (step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms));
    ++steps;
    if (observer) observer(items);
    for (const StepItem& item : items) {
      max_batch = std::max<int>(max_batch, static_cast<int>(items.size()));
      auto* s = static_cast<FakeState*>(item.state);
      for (size_t i = 0; i < item.tokens.size(); ++i) {
        s->hash_ = (s->hash_ ^ static_cast<uint64_t>(item.tokens[i] + 1)) * 1099511628211ull;
        ++s->position_;
        const bool want = item.logits == StepItem::Logits::kAll ||
                          (item.logits == StepItem::Logits::kLast && i + 1 == item.tokens.size());
        if (!want) continue;
        float* out = item.logits_out + (item.logits == StepItem::Logits::kAll ? i * info_.vocab_size : 0);
        Logits(s->hash_, out);
      }
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> SerializeState(const SequenceState& s) const override {
    const auto& f = static_cast<const FakeState&>(s);
    return absl::StrCat(f.position_, ":", f.hash_);
  }
  absl::StatusOr<std::unique_ptr<SequenceState>> DeserializeState(absl::string_view bytes) const override {
    auto s = std::make_unique<FakeState>();
    const size_t colon = bytes.find(':');
    if (colon == absl::string_view::npos) return absl::InvalidArgumentError("bad fake state");
    s->position_ = std::stoll(std::string(bytes.substr(0, colon)));
    s->hash_ = std::stoull(std::string(bytes.substr(colon + 1)));
    return s;
  }

  // Deterministic pseudo-random logits in [-4, 4) from the history hash.
  void Logits(uint64_t hash, float* out) const {
    uint64_t x = hash;
    for (int v = 0; v < info_.vocab_size; ++v) {
      x ^= x >> 33;
      x *= 0xff51afd7ed558ccdull;
      x ^= x >> 33;
      out[v] = static_cast<float>((x >> 40) % 8000) / 1000.0f - 4.0f;
    }
  }

  // Sees every step's items before they run (on the engine thread); set before submitting.
  std::function<void(absl::Span<const StepItem>)> observer;
  std::atomic<int> step_delay_ms{0};
  std::atomic<int> steps{0};
  std::atomic<int> max_batch{0};

 private:
  ModelInfo info_;
};

}  // namespace blockserve::engine::testing

#endif  // BLOCKSERVE_ENGINE_TESTING_FAKE_MODEL_RUNNER_H_
