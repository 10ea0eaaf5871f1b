// Turns sampled token ids into streamed text: UTF-8 safe incremental detokenization and stop
// conditions (max tokens, EOS, stop token ids, stop strings matched across token boundaries).
#ifndef BLOCKSERVE_ENGINE_OUTPUT_PROCESSOR_H_
#define BLOCKSERVE_ENGINE_OUTPUT_PROCESSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/tokenizer.h"

namespace blockserve::engine {

// Emits the text of a growing id sequence piece by piece, never emitting a broken UTF-8
// character: text is held back while the newest ids end inside a character (byte-fallback
// pieces), and released once it completes (or after kMaxPending ids, as U+FFFD).
// Thread-safety: one request's detokenizer is used by one thread at a time.
class IncrementalDetokenizer {
 public:
  static constexpr size_t kMaxPending = 6;
  // `context`: the last prompt tokens, so that the first generated piece keeps its leading
  // space (sentencepiece drops the space of a sequence's first piece).
  IncrementalDetokenizer(const Tokenizer* tokenizer, absl::Span<const int32_t> context);

  // Appends `id`; returns the newly complete text (possibly empty).
  absl::StatusOr<std::string> Push(int32_t id);
  // Returns whatever is still held back (at the end of generation).
  absl::StatusOr<std::string> Flush();

 private:
  const Tokenizer* tokenizer_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // start of the window decoded for context
  size_t read_offset_ = 0;    // ids before this have been emitted
};

// Finds stop strings in streamed text. Text that could still be the start of a stop string is
// held back; a matched stop string and everything after it is never emitted.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  struct Result {
    std::string emit;       // text that is safe to send now
    bool stopped = false;   // a stop string matched
    std::string matched;    // which one
  };
  Result Push(absl::string_view text);
  std::string Flush();      // the held-back text, when generation ends for another reason

 private:
  std::vector<std::string> stops_;
  std::string buffer_;
};

enum class FinishReason { kNone, kLength, kEos, kStopToken, kStopString, kCancelled, kError };
absl::string_view FinishReasonName(FinishReason reason);

struct StopParams {
  int max_new_tokens = 256;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;  // generation ends after one of these (not emitted)
  std::vector<std::string> stop_strings;  // matched on text; not emitted
};
absl::Status ValidateStopParams(const StopParams& params, int vocab_size);

// The per-request pipeline: ids -> text deltas -> stop decisions.
class OutputProcessor {
 public:
  OutputProcessor(const Tokenizer* tokenizer, const StopParams& params, absl::Span<const int32_t> context);
  struct Step {
    std::string text;                        // text to stream for this token
    FinishReason finish = FinishReason::kNone;
  };
  // Call once per generated token; after a finish reason other than kNone, stop calling.
  absl::StatusOr<Step> Append(int32_t id);
  int generated() const { return generated_; }

 private:
  const Tokenizer* tokenizer_;
  StopParams params_;
  IncrementalDetokenizer detok_;
  StopStringMatcher stops_;
  int generated_ = 0;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_OUTPUT_PROCESSOR_H_
