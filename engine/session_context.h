// SessionContext: one session's model state, its unfed context tokens, and block-boundary checkpoints.
#ifndef BLOCKSERVE_ENGINE_SESSION_CONTEXT_H_
#define BLOCKSERVE_ENGINE_SESSION_CONTEXT_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/api/model_runner.h"

namespace blockserve::engine {

// Where checkpoints are taken: every `interval` fed tokens (a multiple of the block length, so
// that a checkpoint is a block boundary), keeping the newest `max_kept`. interval 0: none.
struct CheckpointPolicy {
  int64_t interval = 0;
  int max_kept = 0;
  bool enabled() const { return interval > 0 && max_kept > 0; }
};

// A snapshot of the state after `position` fed tokens (ModelRunner::SerializeState bytes).
struct Checkpoint {
  int64_t position = 0;
  std::string state;
};

// A session's model state and the context tokens not yet fed to it. Invariant: `pending` is
// never empty (a new session holds [bos]; after a generation it holds the last sampled token;
// after an append, the last appended token), so a generation always has a token whose logits
// give the first new token. The context of a session is everything fed plus `pending`.
// With a checkpoint policy, the session also keeps checkpoints and every fed token since the
// oldest one (`history`, starting at context index `history_start`; position 0 is always
// available as a fresh state), so it can be forked or rewound to any position after that,
// recomputing at most `interval` tokens.
// Thread-safety: owned by the caller; while a request on it is queued or running the engine
// has exclusive use (the caller must not touch it until the request's final output).
struct SessionContext {
  std::unique_ptr<SequenceState> state;
  std::vector<int32_t> pending;
  // The last few context tokens (for the detokenizer's leading-space context and repetition
  // penalties), at most kRecentTokens.
  std::vector<int32_t> recent;
  static constexpr size_t kRecentTokens = 64;

  CheckpointPolicy policy;
  std::deque<Checkpoint> checkpoints;  // oldest first, positions increasing
  int64_t history_start = 0;           // context index of history[0]
  std::vector<int32_t> history;        // fed tokens [history_start, position)

  int64_t context_tokens() const { return state->position() + static_cast<int64_t>(pending.size()); }
  // Bytes held in memory: the state, the checkpoints and the token history.
  size_t byte_size() const;
  // Records tokens just fed to the state (recent tokens, history).
  void RecordFed(absl::Span<const int32_t> tokens);
  // Takes a checkpoint if the state is at a checkpoint position it has none for.
  void MaybeCheckpoint(const ModelRunner& runner);
  // The earliest context length this session can be forked or rewound to (>= 1: the bos):
  // just after the oldest checkpoint while the history reaches back to it, else the state.
  int64_t earliest_fork_position() const;
};

// A new session context at the document start.
SessionContext NewSessionContext(const ModelRunner& runner, const CheckpointPolicy& policy = {});

// A copy of `source` truncated to its first `length` context tokens (earliest_fork_position()
// <= length <= context_tokens()): the state of the newest checkpoint at or before length - 1
// (or a fresh one), and in `to_feed` the tokens to append to it (kAppend) to reach `length`
// exactly (at most policy.interval of them). Cloning at the full length needs no recompute.
struct ForkPlan {
  SessionContext context;
  std::vector<int32_t> to_feed;
};
absl::StatusOr<ForkPlan> PlanFork(const ModelRunner& runner, const SessionContext& source, int64_t length);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SESSION_CONTEXT_H_
