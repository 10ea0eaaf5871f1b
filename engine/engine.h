// Engine: the step loop that batches generation, append and scoring requests over a ModelRunner.
#ifndef BLOCKSERVE_ENGINE_ENGINE_H_
#define BLOCKSERVE_ENGINE_ENGINE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/tokenizer.h"
#include "engine/api/model_runner.h"
#include "engine/output_processor.h"
#include "engine/sampler.h"
#include "engine/session_context.h"

namespace blockserve::engine {

enum class RequestKind {
  kGenerate,  // feed the prompt, then sample new tokens until a stop condition
  kAppend,    // feed the prompt into the session without generating
  kScore,     // log-likelihood of the prompt after the session's context (session unchanged)
};

struct GeneratedToken {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top;
};

struct RequestOutput {
  std::vector<GeneratedToken> tokens;  // new tokens of this step (generate)
  std::string text;                    // their text (UTF-8 safe; stop strings withheld)
  bool finished = false;
  // Final output only:
  absl::Status status;                 // OK, DEADLINE_EXCEEDED, or an internal error
  FinishReason finish_reason = FinishReason::kNone;
  int64_t prompt_tokens = 0;           // tokens of the request's prompt processed
  int64_t generated_tokens = 0;
  int64_t session_tokens = 0;          // the session's context length afterwards
  double queue_seconds = 0;            // submitted -> first step
  double first_token_seconds = 0;      // submitted -> first new token
  double decode_seconds = 0;           // first new token -> end
  double score_nats = 0;               // kScore: -log p(prompt | context), natural log
  int64_t scored_tokens = 0;
};

struct Request {
  RequestKind kind = RequestKind::kGenerate;
  SessionContext* session = nullptr;
  std::vector<int32_t> prompt;  // kGenerate may be empty; kAppend/kScore need >= 1 token
  SamplingParams sampling;
  StopParams stop;
  absl::Time deadline = absl::InfiniteFuture();
  // Admission order among waiting requests: higher first; FCFS within a priority.
  int priority = 0;
  // Called on the engine thread for every output, the last one with `finished` set. It must
  // not block (hand the output to a stream and return) and must not call back into Submit.
  std::function<void(const RequestOutput&)> on_output;
};

struct EngineOptions {
  int max_running = 32;               // sequences in a step
  int max_waiting = 256;              // queued requests beyond the free running slots
  int64_t max_waiting_tokens = 1 << 26;  // prompt tokens queued
  int64_t prefill_tokens_per_step = 512;  // prefill budget of a step without decodes (>= a block)
  // Prefill budget of a step that also decodes (>= a block): bounds the inter-token latency
  // of running sequences while a long prompt is prefilled.
  int64_t prefill_tokens_with_decodes = 64;
  uint64_t seed = 0x5eed;             // for requests without a seed
  // Prefill chunks never cross a multiple of this many tokens (the sessions' checkpoint
  // interval), so checkpoints land exactly on their positions. 0: only block alignment.
  int64_t checkpoint_interval = 0;
};

struct EngineStats {
  int running = 0;
  int waiting = 0;
  int64_t steps = 0;
};

// What the loop reports after each iteration (metrics). items == 0 when the iteration only
// admitted, cancelled or expired requests without running a step.
struct StepStats {
  int items = 0;          // sequences in the step (decode + prefill)
  int64_t tokens = 0;     // tokens fed
  double seconds = 0;     // model time of the step
  int running = 0;        // sequences admitted after the step
  int waiting = 0;        // requests still queued
};
using StepObserver = std::function<void(const StepStats&)>;

// Runs requests in a loop on its own thread. Each step feeds one token to every decoding
// sequence and prefill chunks of the others (up to the step's prefill budget), in one
// ModelRunner::Execute call; then samples, detokenizes and delivers outputs.
// Thread-safety: Submit, Cancel, stats and Shutdown may be called from any thread.
class Engine {
 public:
  using RequestId = uint64_t;

  Engine(ModelRunner* runner, const Tokenizer* tokenizer, const EngineOptions& options,
         StepObserver observer = nullptr);
  ~Engine();  // Shutdown()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues. Errors: InvalidArgument (bad params or token ids, naming the field),
  // ResourceExhausted (queue full), Unavailable (shutting down).
  absl::StatusOr<RequestId> Submit(Request request);
  // Finishes the request with FinishReason::kCancelled at the next step boundary. The session
  // keeps every token processed so far. Unknown or finished ids are ignored.
  void Cancel(RequestId id);
  EngineStats stats() const;
  // Cancels everything queued or running, delivers their final outputs, joins the thread.
  void Shutdown();


 private:
  struct Sequence;
  void Loop();
  // Runs one step over `active`; fills the step's part of `stats`.
  void Step(std::vector<std::unique_ptr<Sequence>>& active, StepStats* stats);
  void Finish(Sequence& seq, FinishReason reason, absl::Status status);

  ModelRunner* runner_;
  const Tokenizer* tokenizer_;
  EngineOptions options_;
  StepObserver observer_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // guarded by mu_
  int64_t waiting_tokens_ = 0;                     // guarded by mu_
  std::map<RequestId, bool> cancelled_;            // guarded by mu_: ids asked to cancel
  int running_ = 0;                                // guarded by mu_
  int64_t steps_ = 0;                              // guarded by mu_
  bool stopping_ = false;                          // guarded by mu_
  RequestId next_id_ = 1;                          // guarded by mu_
  std::thread thread_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_ENGINE_H_
