// Scheduling simulations with a fake runner that records every step: budgets, interleaving of
// a long prefill with decodes, no starvation, and cancellation in every state.
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "base/check.h"
#include "engine/engine.h"
#include "engine/testing/fake_model_runner.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"

namespace blockserve::engine {
namespace {

using testing::FakeModelRunner;


// What one step did: tokens of each decode item and each prefill item.
struct StepRecord {
  int decodes = 0;
  std::vector<int64_t> prefills;
  int64_t prefill_tokens() const {
    int64_t n = 0;
    for (int64_t p : prefills) n += p;
    return n;
  }
};

struct Recorder {
  std::mutex mu;
  std::vector<StepRecord> steps;
  void Attach(FakeModelRunner& runner) {
    runner.observer = [this](absl::Span<const StepItem> items) {
      StepRecord r;
      for (const StepItem& item : items) {
        if (item.tokens.size() == 1 && item.logits == StepItem::Logits::kLast) {
          ++r.decodes;  // (a 1-token final prompt chunk counts here too: harmless for the checks)
        } else {
          r.prefills.push_back(static_cast<int64_t>(item.tokens.size()));
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      steps.push_back(r);
    };
  }
  std::vector<StepRecord> Take() {
    std::lock_guard<std::mutex> lock(mu);
    return steps;
  }
};

struct Pending {
  std::promise<RequestOutput> done;
  std::atomic<int> tokens{0};
  Engine::RequestId id = 0;
};

std::shared_ptr<Pending> Submit(Engine& engine, SessionContext* s, std::vector<int32_t> prompt, int max_new,
                                RequestKind kind = RequestKind::kGenerate) {
  auto p = std::make_shared<Pending>();
  Request r;
  r.kind = kind;
  r.session = s;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.stop.max_new_tokens = max_new;
  r.stop.ignore_eos = true;
  r.on_output = [p](const RequestOutput& out) {
    p->tokens += static_cast<int>(out.tokens.size());
    if (out.finished) p->done.set_value(out);
  };
  auto id = engine.Submit(std::move(r));
  EXPECT_TRUE(id.ok()) << id.status();
  p->id = id.ok() ? *id : 0;
  return p;
}

std::vector<int32_t> Tokens(int n, int seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = 4 + (i * 7 + seed) % 390;
  return t;
}

struct BudgetCase {
  const char* name;
  int block;
  int64_t budget, with_decodes;
  int decoders;       // sequences decoding while
  int prompt_tokens;  // a long prompt is prefilled
};

TEST(SchedulerTest, StepBudgetsHoldAndALongPrefillInterleavesWithDecodes) {
  const BudgetCase cases[] = {
      {"block 4, 64/8", 4, 64, 8, 3, 3000},
      {"block 16, 512/16", 16, 512, 16, 5, 5000},
      {"block 8, budget under a block", 8, 3, 2, 2, 700},
      {"no decoders", 4, 64, 8, 0, 3000},
  };
  for (const BudgetCase& c : cases) {
    FakeModelRunner runner(400, c.block);
    runner.step_delay_ms = 1;
    Recorder rec;
    rec.Attach(runner);
    EngineOptions o;
    o.prefill_tokens_per_step = c.budget;
    o.prefill_tokens_with_decodes = c.with_decodes;
    Engine engine(&runner, &blockserve::testing::TestTokenizer(), o);
    std::vector<SessionContext> sessions;
    for (int i = 0; i < c.decoders + 1; ++i) sessions.push_back(NewSessionContext(runner));
    std::vector<std::shared_ptr<Pending>> decoders;
    for (int i = 0; i < c.decoders; ++i) decoders.push_back(Submit(engine, &sessions[i], {5}, 100000));
    for (auto& d : decoders) {
      while (d->tokens < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    auto long_prompt = Submit(engine, &sessions.back(), Tokens(c.prompt_tokens, 1), 1);
    const RequestOutput out = long_prompt->done.get_future().get();
    EXPECT_TRUE(out.status.ok());
    for (auto& d : decoders) engine.Cancel(d->id);
    for (auto& d : decoders) d->done.get_future().wait();
    int mixed = 0, prefill_steps = 0;
    for (const StepRecord& s : rec.Take()) {
      const int64_t limit = std::max<int64_t>(c.block, s.decodes > 0 ? c.with_decodes : c.budget);
      EXPECT_LE(s.prefill_tokens(), limit) << c.name;
      if (!s.prefills.empty()) ++prefill_steps;
      if (!s.prefills.empty() && s.decodes == c.decoders && c.decoders > 0) ++mixed;
    }
    const int64_t per_step = std::max<int64_t>(c.block, c.decoders > 0 ? c.with_decodes : c.budget);
    EXPECT_GE(prefill_steps, (c.prompt_tokens + 1) / per_step) << c.name;
    if (c.decoders > 0) {
      EXPECT_GE(mixed, prefill_steps - 2) << c.name << ": decodes stalled during the prefill";
    }
    EXPECT_EQ(sessions.back().context_tokens(), 1 + c.prompt_tokens + 1) << c.name;
  }
}

// A model whose prefill must see the whole first prompt (Reformer): the first prompt goes in one
// item whatever the budget; later turns of the session are cut into budgeted chunks as usual.
TEST(SchedulerTest, AWholeFirstPromptModelGetsItsFirstPromptInOneItem) {
  FakeModelRunner runner(400, 16);
  runner.mutable_info().whole_first_prompt = true;
  runner.step_delay_ms = 1;
  Recorder rec;
  rec.Attach(runner);
  EngineOptions o;
  o.prefill_tokens_per_step = 64;
  o.prefill_tokens_with_decodes = 16;
  o.checkpoint_interval = 32;
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), o);
  SessionContext decoder = NewSessionContext(runner), session = NewSessionContext(runner);
  auto d = Submit(engine, &decoder, {5}, 100000);
  while (d->tokens < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(Submit(engine, &session, Tokens(1000, 1), 1)->done.get_future().get().status.ok());
  ASSERT_TRUE(Submit(engine, &session, Tokens(1000, 2), 1)->done.get_future().get().status.ok());
  engine.Cancel(d->id);
  d->done.get_future().wait();
  std::vector<int64_t> chunks;
  for (const StepRecord& s : rec.Take()) chunks.insert(chunks.end(), s.prefills.begin(), s.prefills.end());
  // The decoder's own first prompt ([BOS, 5]) comes first.
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0], 2);
  EXPECT_EQ(chunks[1], 1 + 1000);  // BOS + the first prompt, one item
  int64_t later = 0;
  for (size_t i = 2; i < chunks.size(); ++i) {
    EXPECT_LE(chunks[i], 16);  // later turns: the budget while another sequence decodes
    later += chunks[i];
  }
  EXPECT_GE(later, 900);  // the second turn (1-token items are counted as decodes by the recorder)
  EXPECT_EQ(session.context_tokens(), 1 + 1000 + 1 + 1000 + 1);
}

TEST(SchedulerTest, ShortPromptsDoNotWaitBehindALongOneAndTheLongOneIsNotStarved) {
  FakeModelRunner runner(400, 4);
  runner.step_delay_ms = 1;
  Recorder rec;
  rec.Attach(runner);
  EngineOptions o;
  o.prefill_tokens_per_step = 32;
  o.prefill_tokens_with_decodes = 32;
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), o);
  SessionContext big = NewSessionContext(runner);
  auto long_prompt = Submit(engine, &big, Tokens(4000, 2), 1);
  // A steady stream of short requests while the long prompt is prefilled.
  std::vector<SessionContext> shorts(40);
  std::vector<std::shared_ptr<Pending>> short_reqs;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 40; ++i) {
    shorts[i] = NewSessionContext(runner);
    short_reqs.push_back(Submit(engine, &shorts[i], Tokens(10, i), 3));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (auto& r : short_reqs) {
    const RequestOutput out = r->done.get_future().get();
    EXPECT_TRUE(out.status.ok());
    // Each short prompt needs one step of prefill; it does not wait for 4000 tokens (125+ steps).
    EXPECT_LT(out.first_token_seconds, 0.1);
  }
  const RequestOutput out = long_prompt->done.get_future().get();
  EXPECT_TRUE(out.status.ok());
  EXPECT_EQ(out.prompt_tokens, 4000);
  // While the shorts were arriving the long prompt still advanced every step it was in.
  int64_t long_chunks = 0;
  for (const StepRecord& s : rec.Take()) {
    for (int64_t p : s.prefills) long_chunks += p >= 4 ? 1 : 0;
  }
  EXPECT_GE(long_chunks, 4000 / 32);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 30.0);
}

TEST(SchedulerTest, HigherPriorityStartsFirstFcfsWithinAPriority) {
  FakeModelRunner runner(400, 4);
  runner.step_delay_ms = 1;
  EngineOptions o;
  o.max_running = 1;
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), o);
  std::vector<SessionContext> s;
  for (int i = 0; i < 6; ++i) s.push_back(NewSessionContext(runner));
  auto blocker = Submit(engine, &s[0], {1}, 30);
  while (blocker->tokens < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::shared_ptr<Pending>> reqs;
  const int priorities[] = {0, 5, 0, 5, -1};
  for (int i = 0; i < 5; ++i) {
    auto p = std::make_shared<Pending>();
    Request r;
    r.session = &s[i + 1];
    r.prompt = {3};
    r.sampling.temperature = 0;
    r.stop.max_new_tokens = 2;
    r.stop.ignore_eos = true;
    r.priority = priorities[i];
    r.on_output = [p, i, &mu, &order](const RequestOutput& out) {
      if (!out.finished) return;
      {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(i);
      }
      p->done.set_value(out);
    };
    ASSERT_TRUE(engine.Submit(std::move(r)).ok());
    reqs.push_back(p);
  }
  for (auto& p : reqs) p->done.get_future().wait();
  blocker->done.get_future().wait();
  EXPECT_EQ(order, (std::vector<int>{1, 3, 0, 2, 4}));
}

// Cancellation in every state a request can be in.
TEST(SchedulerTest, CancellationInEveryState) {
  enum class When { kWaiting, kPrefilling, kDecoding };
  struct Case {
    const char* name;
    When when;
  };
  for (const Case& c : {Case{"waiting", When::kWaiting}, Case{"prefilling", When::kPrefilling},
                        Case{"decoding", When::kDecoding}}) {
    FakeModelRunner runner(400, 4);
    runner.step_delay_ms = 2;
    EngineOptions o;
    o.max_running = 1;
    o.prefill_tokens_per_step = 8;
    Engine engine(&runner, &blockserve::testing::TestTokenizer(), o);
    SessionContext blocker = NewSessionContext(runner), s = NewSessionContext(runner);
    std::shared_ptr<Pending> first;
    if (c.when == When::kWaiting) first = Submit(engine, &blocker, {1}, 100000);
    if (first) {
      while (first->tokens < 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const int prompt = c.when == When::kPrefilling ? 2000 : 5;
    auto target = Submit(engine, &s, Tokens(prompt, 3), 100000);
    if (c.when == When::kPrefilling) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    if (c.when == When::kDecoding) {
      while (target->tokens < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    engine.Cancel(target->id);
    const RequestOutput out = target->done.get_future().get();
    EXPECT_EQ(out.finish_reason, FinishReason::kCancelled) << c.name;
    EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled) << c.name;
    // The session's context is everything it was given plus what it generated.
    EXPECT_EQ(s.context_tokens(), 1 + prompt + out.generated_tokens) << c.name;
    if (c.when == When::kWaiting) {
      EXPECT_EQ(out.generated_tokens, 0);
      EXPECT_EQ(s.state->position(), 0);  // never ran
    }
    if (c.when == When::kPrefilling) {
      EXPECT_EQ(out.generated_tokens, 0);
      EXPECT_GT(s.state->position(), 0);
      EXPECT_LT(s.state->position(), prompt);
    }
    if (c.when == When::kDecoding) {
      EXPECT_GE(out.generated_tokens, 3);
    }
    if (first) {
      engine.Cancel(first->id);
      first->done.get_future().wait();  // the engine is done with `blocker` before it goes
    }
  }
}

}  // namespace
}  // namespace blockserve::engine
