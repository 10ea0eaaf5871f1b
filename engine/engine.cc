// Engine step loop: admission, step building (decode tokens + prefill chunks), sampling, outputs.
#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/logging.h"
#include "base/status.h"

namespace blockserve::engine {
namespace {

using Clock = std::chrono::steady_clock;
// A prompt passed over this many steps in a row is prefilled first in the next one.
constexpr int kStarvedSteps = 4;
double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

}  // namespace

// One request in flight. Everything here is touched by the engine thread only.
struct Engine::Sequence {
  RequestId id = 0;
  Request req;
  // Tokens to feed before sampling: the session's pending tokens, then the prompt. For kAppend
  // the last one is not fed (it becomes the session's pending token).
  std::vector<int32_t> feed;
  size_t fed = 0;
  size_t feed_limit = 0;  // feed.size(), or feed.size() - 1 for kAppend
  bool decoding = false;  // kGenerate after its prefill: feed `next` one token per step
  int32_t next = -1;
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<OutputProcessor> output;
  std::unique_ptr<SequenceState> score_state;  // kScore: a clone, the session stays unchanged
  size_t prompt_offset = 0;                    // index of the prompt's first token in `feed`
  std::vector<float> logits;
  int64_t generated = 0;
  double nats = 0;
  int64_t scored = 0;
  Clock::time_point submitted, started, first_token;
  bool has_started = false, has_first_token = false;
  int starved_steps = 0;  // consecutive steps this prompt got no prefill budget

  SequenceState* state() { return score_state ? score_state.get() : req.session->state.get(); }
};

Engine::Engine(ModelRunner* runner, const Tokenizer* tokenizer, const EngineOptions& options, StepObserver observer)
    : runner_(runner), tokenizer_(tokenizer), options_(options), observer_(std::move(observer)) {
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() { Shutdown(); }

void Engine::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s;
  s.running = running_;
  s.waiting = static_cast<int>(waiting_.size());
  s.steps = steps_;
  return s;
}

void Engine::Cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_[id] = true;
  }
  cv_.notify_all();
}

absl::StatusOr<Engine::RequestId> Engine::Submit(Request request) {
  const ModelInfo& info = runner_->info();
  if (request.session == nullptr || request.session->state == nullptr) {
    return absl::InvalidArgumentError("request without a session");
  }
  if (request.session->pending.empty()) return absl::InternalError("session has no pending token");
  if (request.kind != RequestKind::kGenerate && request.prompt.empty()) {
    return absl::InvalidArgumentError("prompt: must not be empty");
  }
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= info.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token ", i, " is ", request.prompt[i],
                                                     ", outside the vocabulary [0, ", info.vocab_size, ")"));
    }
  }
  if (request.kind == RequestKind::kGenerate) {
    RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
    RETURN_IF_ERROR(ValidateStopParams(request.stop, info.vocab_size));
  }
  if (!request.on_output) return absl::InvalidArgumentError("request without an output callback");

  auto seq = std::make_unique<Sequence>();
  seq->submitted = Clock::now();
  SessionContext& session = *request.session;
  seq->feed = session.pending;
  seq->prompt_offset = seq->feed.size();
  seq->feed.insert(seq->feed.end(), request.prompt.begin(), request.prompt.end());
  seq->feed_limit = request.kind == RequestKind::kAppend ? seq->feed.size() - 1 : seq->feed.size();
  seq->req = std::move(request);
  const int64_t tokens = static_cast<int64_t>(seq->feed.size());

  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("the engine is shutting down");
  // Requests that will start at the next step do not count as waiting.
  const int free_slots = std::max(0, options_.max_running - running_);
  if (static_cast<int>(waiting_.size()) >= options_.max_waiting + free_slots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("server full: ", waiting_.size(), " requests are already waiting (--max_waiting)"));
  }
  if (waiting_tokens_ + tokens > options_.max_waiting_tokens && !waiting_.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat("server full: ", waiting_tokens_,
                                                     " prompt tokens are already waiting (--max_waiting_tokens)"));
  }
  seq->id = next_id_++;
  waiting_tokens_ += tokens;
  const RequestId id = seq->id;
  waiting_.push_back(std::move(seq));
  cv_.notify_all();
  return id;
}

void Engine::Finish(Sequence& seq, FinishReason reason, absl::Status status) {
  SessionContext& session = *seq.req.session;
  RequestOutput out;
  out.finished = true;
  out.status = std::move(status);
  out.finish_reason = reason;
  if (seq.req.kind != RequestKind::kScore) {
    // Whatever was not fed stays pending, so the session's context is exactly what it was given
    // and what it generated.
    std::vector<int32_t> pending(seq.feed.begin() + static_cast<int64_t>(std::min(seq.fed, seq.feed.size())),
                                 seq.feed.end());
    if (seq.decoding && seq.next >= 0) pending.push_back(seq.next);
    if (pending.empty()) pending.push_back(seq.feed.back());  // unreachable: kept for the invariant
    session.pending = std::move(pending);
  }
  const auto now = Clock::now();
  out.prompt_tokens = static_cast<int64_t>(std::min(seq.fed, seq.feed.size())) - static_cast<int64_t>(seq.prompt_offset);
  out.prompt_tokens = std::max<int64_t>(0, out.prompt_tokens);
  out.generated_tokens = seq.generated;
  out.session_tokens = session.context_tokens();
  out.queue_seconds = seq.has_started ? Seconds(seq.submitted, seq.started) : Seconds(seq.submitted, now);
  if (seq.has_first_token) {
    out.first_token_seconds = Seconds(seq.submitted, seq.first_token);
    out.decode_seconds = Seconds(seq.first_token, now);
  }
  out.score_nats = seq.nats;
  out.scored_tokens = seq.scored;
  seq.req.on_output(out);
}

void Engine::Loop() {
  std::vector<std::unique_ptr<Sequence>> active;
  while (true) {
    std::map<RequestId, bool> cancelled;
    bool stopping;
    std::vector<std::unique_ptr<Sequence>> dropped;  // cancelled or expired while waiting
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !active.empty(); });
      stopping = stopping_;
      cancelled.swap(cancelled_);
      const absl::Time now = absl::Now();
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if (cancelled.count((*it)->id) > 0 || now > (*it)->req.deadline) {
          waiting_tokens_ -= static_cast<int64_t>((*it)->feed.size());
          dropped.push_back(std::move(*it));
          it = waiting_.erase(it);
        } else {
          ++it;
        }
      }
      // Admission: the highest priority first, first come first served within a priority.
      while (!waiting_.empty() && static_cast<int>(active.size()) < options_.max_running) {
        auto next = waiting_.begin();
        for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
          if ((*it)->req.priority > (*next)->req.priority) next = it;
        }
        waiting_tokens_ -= static_cast<int64_t>((*next)->feed.size());
        active.push_back(std::move(*next));
        waiting_.erase(next);
      }
      if (stopping) {
        for (auto& seq : waiting_) active.push_back(std::move(seq));
        waiting_.clear();
        waiting_tokens_ = 0;
      }
      running_ = static_cast<int>(active.size());
    }
    // Requests that never ran: they leave the session as it was.
    for (auto& seq : dropped) {
      if (cancelled.count(seq->id) > 0) {
        Finish(*seq, FinishReason::kCancelled, absl::CancelledError("cancelled while queued"));
      } else {
        Finish(*seq, FinishReason::kError, absl::DeadlineExceededError("deadline exceeded while queued"));
      }
    }
    // Cancellations, deadlines, shutdown: finished before the step.
    const absl::Time now = absl::Now();
    for (auto& seq : active) {
      if (stopping) {
        Finish(*seq, FinishReason::kCancelled, absl::UnavailableError("the server is shutting down"));
        seq.reset();
      } else if (cancelled.count(seq->id) > 0) {
        Finish(*seq, FinishReason::kCancelled, absl::CancelledError("cancelled"));
        seq.reset();
      } else if (now > seq->req.deadline) {
        Finish(*seq, FinishReason::kError,
               absl::DeadlineExceededError(seq->has_started ? "deadline exceeded while generating"
                                                            : "deadline exceeded while queued"));
        seq.reset();
      }
    }
    active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
    if (stopping) {
      std::lock_guard<std::mutex> lock(mu_);
      running_ = 0;
      return;
    }
    StepStats stats;
    if (!active.empty()) Step(active, &stats);
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_ = static_cast<int>(active.size());
      if (stats.items > 0) ++steps_;
      stats.running = running_;
      stats.waiting = static_cast<int>(waiting_.size());
    }
    if (observer_) observer_(stats);
  }
}

void Engine::Step(std::vector<std::unique_ptr<Sequence>>& active, StepStats* stats) {
  const int V = runner_->info().vocab_size;
  const int64_t block = std::max(1, runner_->info().block_size);
  const auto step_start = Clock::now();
  // Decode items first (every decoding sequence, one token), then prefill chunks (below).
  std::vector<StepItem> items;
  std::vector<Sequence*> owners;
  std::vector<int32_t> decode_tokens(active.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < active.size(); ++i) {
    Sequence& seq = *active[i];
    if (!seq.has_started) {
      seq.has_started = true;
      seq.started = step_start;
      if (seq.req.kind == RequestKind::kScore) seq.score_state = runner_->CloneState(*seq.req.session->state);
      if (seq.req.kind == RequestKind::kGenerate) {
        seq.sampler = std::make_unique<Sampler>(seq.req.sampling, options_.seed ^ (seq.id * 0x9E3779B97F4A7C15ull));
        seq.sampler->ObservePrompt(seq.req.session->recent);
        seq.sampler->ObservePrompt(seq.req.prompt);
        std::vector<int32_t> context = seq.req.session->recent;
        context.insert(context.end(), seq.req.prompt.begin(), seq.req.prompt.end());
        seq.output = std::make_unique<OutputProcessor>(tokenizer_, seq.req.stop, context);
      }
    }
    if (!seq.decoding) continue;
    decode_tokens[i] = seq.next;
    seq.logits.resize(V);
    items.push_back({seq.state(), {&decode_tokens[i], 1}, StepItem::Logits::kLast, seq.logits.data()});
    owners.push_back(&seq);
    ++tokens;
  }
  // Prefill: a smaller budget while sequences decode (their inter-token latency is the step
  // time). The shortest remaining prompts go first (a short prompt's first token does not wait
  // behind a long one); a prompt passed over for kStarvedSteps steps goes first (no starvation).
  int64_t budget = std::max<int64_t>(
      block, items.empty() ? options_.prefill_tokens_per_step : options_.prefill_tokens_with_decodes);
  std::vector<Sequence*> prefill;
  for (auto& ptr : active) {
    if (!ptr->decoding && ptr->fed < ptr->feed_limit) prefill.push_back(ptr.get());
  }
  auto remaining = [](const Sequence* q) { return static_cast<int64_t>(q->feed_limit - q->fed); };
  std::stable_sort(prefill.begin(), prefill.end(), [&](const Sequence* x, const Sequence* y) {
    const bool sx = x->starved_steps >= kStarvedSteps, sy = y->starved_steps >= kStarvedSteps;
    if (sx != sy) return sx;
    return remaining(x) < remaining(y);
  });
  // A model whose first prompt must arrive whole gets it in one grant, charged to the budget
  // in full (it may overdraw this step's budget, leaving nothing for the others).
  auto whole = [&](Sequence* q) { return runner_->info().whole_first_prompt && q->state()->position() == 0; };
  std::vector<int64_t> grant(prefill.size(), 0);
  for (size_t i = 0; i < prefill.size(); ++i) {
    const int64_t want = remaining(prefill[i]);
    grant[i] = budget <= 0 ? 0 : whole(prefill[i]) ? want : std::min(budget, want);
    budget -= grant[i];
    prefill[i]->starved_steps = grant[i] > 0 ? 0 : prefill[i]->starved_steps + 1;
  }
  for (size_t i = 0; i < prefill.size(); ++i) {
    Sequence& seq = *prefill[i];
    int64_t n = grant[i];
    if (n <= 0) continue;
    if (!whole(&seq)) {
      const int64_t pos = seq.state()->position();
      if (seq.fed + n < seq.feed_limit) {
        // Not the last chunk: stop at a block boundary when that leaves something to do.
        const int64_t aligned = (pos + n) / block * block - pos;
        if (aligned > 0) n = aligned;
      }
      if (options_.checkpoint_interval > 0) {
        // Never run past the next checkpoint position: the step ends exactly on it.
        const int64_t next = (pos / options_.checkpoint_interval + 1) * options_.checkpoint_interval;
        n = std::min<int64_t>(n, next - pos);
      }
    }
    StepItem item{seq.state(), absl::MakeConstSpan(seq.feed).subspan(seq.fed, n), StepItem::Logits::kNone, nullptr};
    const bool last = seq.fed + n == seq.feed_limit;
    if (seq.req.kind == RequestKind::kScore) {
      seq.logits.resize(static_cast<size_t>(n) * V);
      item.logits = StepItem::Logits::kAll;
      item.logits_out = seq.logits.data();
    } else if (seq.req.kind == RequestKind::kGenerate && last) {
      seq.logits.resize(V);
      item.logits = StepItem::Logits::kLast;
      item.logits_out = seq.logits.data();
    }
    items.push_back(item);
    owners.push_back(&seq);
    tokens += n;
  }
  if (!items.empty()) {
    const absl::Status status = runner_->Execute(items);
    if (!status.ok()) {
      BS_LOG(ERROR) << "step failed: " << status;
      for (Sequence* seq : owners) Finish(*seq, FinishReason::kError, Annotate(status, "model step"));
      for (auto& ptr : active) {
        for (Sequence* seq : owners) {
          if (ptr.get() == seq) ptr.reset();
        }
      }
      active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
      return;
    }
  }
  const auto step_end = Clock::now();
  stats->items = static_cast<int>(items.size());
  stats->tokens = tokens;
  stats->seconds = Seconds(step_start, step_end);

  for (size_t k = 0; k < items.size(); ++k) {
    Sequence& seq = *owners[k];
    const StepItem& item = items[k];
    if (seq.req.kind != RequestKind::kScore) {  // a score runs on a copy: the session is unchanged
      seq.req.session->RecordFed(item.tokens);
      seq.req.session->MaybeCheckpoint(*runner_);
    }
    if (!seq.decoding) {
      const size_t n = item.tokens.size();
      if (seq.req.kind == RequestKind::kScore) {
        // Row r predicts feed[fed + r + 1]; only prompt tokens are scored.
        for (size_t r = 0; r < n; ++r) {
          const size_t target = seq.fed + r + 1;
          if (target < seq.prompt_offset || target >= seq.feed.size()) continue;
          const absl::Span<const float> row(&seq.logits[r * V], V);
          seq.nats += LogSumExp(row) - row[seq.feed[target]];
          ++seq.scored;
        }
      }
      seq.fed += n;
      if (seq.fed < seq.feed_limit || seq.req.kind != RequestKind::kGenerate) continue;
      seq.decoding = true;  // the prompt is in: sample the first token below
    }
    // Generate: sample from the logits of the last fed token.
    const SampledToken sampled = seq.sampler->Sample(absl::MakeSpan(seq.logits));
    if (!seq.has_first_token) {
      seq.has_first_token = true;
      seq.first_token = Clock::now();
    }
    ++seq.generated;
    seq.next = sampled.token;
    absl::StatusOr<OutputProcessor::Step> out = seq.output->Append(sampled.token);
    // Every sampled token is delivered (it is part of the session's context), with the text it
    // completes (possibly none: a partial UTF-8 character, a possible stop-string start, or a
    // stop token whose text is never emitted).
    RequestOutput delta;
    delta.tokens.push_back({sampled.token, sampled.logprob, sampled.top});
    if (out.ok()) delta.text = std::move(out->text);
    seq.req.on_output(delta);
    if (!out.ok()) {
      Finish(seq, FinishReason::kError, out.status());
      seq.req.on_output = nullptr;  // done
    } else if (out->finish != FinishReason::kNone) {
      Finish(seq, out->finish, absl::OkStatus());
      seq.req.on_output = nullptr;  // done
    }
  }
  // Appends and scores that have fed everything are done; so are finished generations.
  for (auto& ptr : active) {
    Sequence& seq = *ptr;
    if (!seq.req.on_output) {
      ptr.reset();
      continue;
    }
    if (seq.req.kind != RequestKind::kGenerate && seq.fed >= seq.feed_limit) {
      Finish(seq, FinishReason::kNone, absl::OkStatus());
      ptr.reset();
    }
  }
  active.erase(std::remove(active.begin(), active.end(), nullptr), active.end());
}

}  // namespace blockserve::engine
