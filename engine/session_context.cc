// SessionContext bookkeeping: recent tokens, token history, checkpoints and fork planning.
#include "engine/session_context.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status.h"

namespace blockserve::engine {

SessionContext NewSessionContext(const ModelRunner& runner, const CheckpointPolicy& policy) {
  SessionContext s;
  s.state = runner.NewState();
  s.pending = {runner.info().bos_id};
  s.policy = policy;
  return s;
}

size_t SessionContext::byte_size() const {
  size_t bytes = state->byte_size() + (pending.size() + recent.size() + history.size()) * sizeof(int32_t);
  for (const Checkpoint& c : checkpoints) bytes += c.state.size();
  return bytes;
}

void SessionContext::RecordFed(absl::Span<const int32_t> tokens) {
  recent.insert(recent.end(), tokens.begin(), tokens.end());
  if (recent.size() > kRecentTokens) recent.erase(recent.begin(), recent.end() - kRecentTokens);
  if (!policy.enabled()) return;
  const int64_t before = state->position() - static_cast<int64_t>(tokens.size());
  if (history_start + static_cast<int64_t>(history.size()) != before) {
    // No history up to here (checkpoints were off when these tokens were fed): start now.
    history.clear();
    checkpoints.clear();
    history_start = before;
  }
  history.insert(history.end(), tokens.begin(), tokens.end());
}

int64_t SessionContext::earliest_fork_position() const {
  const int64_t fed = state->position();
  if (history_start + static_cast<int64_t>(history.size()) == fed) return std::max<int64_t>(1, history_start + 1);
  return fed + 1;  // only the current state (and its pending tokens) to start from
}

void SessionContext::MaybeCheckpoint(const ModelRunner& runner) {
  if (!policy.enabled()) return;
  const int64_t pos = state->position();
  if (pos == 0 || pos % policy.interval != 0) return;
  if (!checkpoints.empty() && checkpoints.back().position >= pos) return;
  absl::StatusOr<std::string> bytes = runner.SerializeState(*state);
  if (!bytes.ok()) return;  // a checkpoint is an optimisation; forks then reach back less far
  checkpoints.push_back({pos, *std::move(bytes)});
  while (static_cast<int>(checkpoints.size()) > policy.max_kept) {
    checkpoints.pop_front();
    const int64_t start = checkpoints.front().position;
    history.erase(history.begin(), history.begin() + (start - history_start));
    history_start = start;
  }
}

absl::StatusOr<ForkPlan> PlanFork(const ModelRunner& runner, const SessionContext& src, int64_t length) {
  const int64_t n = src.context_tokens();
  const int64_t earliest = src.earliest_fork_position();
  if (length < earliest || length > n) {
    return absl::OutOfRangeError(absl::StrCat(
        "position ", length, " is out of reach: this session can be cut at context lengths [", earliest, ", ", n,
        "]", src.policy.enabled() ? "" : " (no checkpoints: start the server with --checkpoint_every_blocks)"));
  }
  ForkPlan plan;
  SessionContext& ctx = plan.context;
  ctx.policy = src.policy;
  ctx.history_start = src.history_start;
  if (length == n) {
    ctx.state = runner.CloneState(*src.state);
    ctx.pending = src.pending;
    ctx.recent = src.recent;
    ctx.checkpoints = src.checkpoints;
    ctx.history = src.history;
    return plan;
  }
  // Context index i: fed tokens come from the history, the rest from `pending`.
  const int64_t fed = src.state->position();
  auto token = [&](int64_t i) { return i < fed ? src.history[i - src.history_start] : src.pending[i - fed]; };
  const int64_t target = length - 1;  // the new state's position; c[target] stays pending
  // The newest state at or before `target`: the current one, a checkpoint, or a fresh one.
  int64_t base = -1;
  const Checkpoint* from = nullptr;
  if (fed <= target) {
    base = fed;
    ctx.state = runner.CloneState(*src.state);
  } else {
    for (const Checkpoint& c : src.checkpoints) {
      if (c.position <= target) {
        from = &c;
        base = c.position;
      }
    }
    if (from != nullptr) {
      ASSIGN_OR_RETURN(ctx.state, runner.DeserializeState(from->state));
    } else if (src.history_start == 0) {
      base = 0;
      ctx.state = runner.NewState();
    } else {
      return absl::InternalError("no checkpoint before the fork position");
    }
  }
  for (const Checkpoint& c : src.checkpoints) {
    if (c.position <= base) ctx.checkpoints.push_back(c);
  }
  const bool has_history = src.history_start + static_cast<int64_t>(src.history.size()) == fed;
  if (has_history && base >= src.history_start) {
    ctx.history.assign(src.history.begin(), src.history.begin() + (base - src.history_start));
  } else {
    ctx.history_start = base;  // nothing recorded before the base
    ctx.checkpoints.clear();
  }
  if (base == fed) {
    ctx.recent = src.recent;
  } else {
    for (int64_t i = std::max<int64_t>(src.history_start, base - static_cast<int64_t>(SessionContext::kRecentTokens));
         i < base; ++i) {
      ctx.recent.push_back(token(i));
    }
  }
  ctx.pending = {token(base)};
  for (int64_t i = base + 1; i <= target; ++i) plan.to_feed.push_back(token(i));
  return plan;
}

}  // namespace blockserve::engine
