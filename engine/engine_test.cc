// Engine with a fake runner: streaming, sessions across turns, append, score, cancel, limits.
#include "engine/engine.h"

#include <future>
#include <mutex>
#include <vector>

#include "base/check.h"
#include "engine/testing/fake_model_runner.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"

namespace blockserve::engine {
namespace {

using testing::FakeModelRunner;


// Collects a request's outputs; Wait() returns the final one.
struct Collector {
  std::mutex mu;
  std::vector<RequestOutput> outputs;
  std::promise<RequestOutput> done;
  std::function<void(const RequestOutput&)> Callback() {
    return [this](const RequestOutput& out) {
      std::lock_guard<std::mutex> lock(mu);
      outputs.push_back(out);
      if (out.finished) done.set_value(out);
    };
  }
  RequestOutput Wait() { return done.get_future().get(); }
  std::vector<int32_t> Tokens() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<int32_t> t;
    for (const auto& o : outputs) {
      for (const auto& g : o.tokens) t.push_back(g.token);
    }
    return t;
  }
};

Request Greedy(SessionContext* session, std::vector<int32_t> prompt, int max_new) {
  Request r;
  r.session = session;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.stop.max_new_tokens = max_new;
  r.stop.ignore_eos = true;
  return r;
}

std::vector<int32_t> RunRequest(Engine& engine, Request r, RequestOutput* final_out = nullptr) {
  Collector c;
  r.on_output = c.Callback();
  auto id = engine.Submit(std::move(r));
  EXPECT_TRUE(id.ok()) << id.status();
  RequestOutput out = c.Wait();
  if (final_out) *final_out = out;
  return c.Tokens();
}

TEST(EngineTest, StreamsTokensAndFinishesAtTheLengthLimit) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  SessionContext s = NewSessionContext(runner);
  Collector c;
  Request r = Greedy(&s, {10, 11, 12}, 7);
  r.on_output = c.Callback();
  ASSERT_TRUE(engine.Submit(std::move(r)).ok());
  const RequestOutput out = c.Wait();
  EXPECT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.finish_reason, FinishReason::kLength);
  EXPECT_EQ(out.generated_tokens, 7);
  EXPECT_EQ(out.prompt_tokens, 3);
  EXPECT_EQ(c.Tokens().size(), 7u);
  EXPECT_GE(c.outputs.size(), 8u);  // one per token, then the final one
  // Context: bos + prompt + 7 generated (the last one pending).
  EXPECT_EQ(out.session_tokens, 1 + 3 + 7);
  EXPECT_EQ(s.context_tokens(), 11);
  EXPECT_EQ(s.pending.size(), 1u);
}

TEST(EngineTest, ThreeTurnsEqualOneGenerationOverTheConcatenation) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  SessionContext turns = NewSessionContext(runner);
  std::vector<int32_t> all;
  std::vector<int32_t> prompts[3] = {{5, 6, 7}, {8}, {9, 10, 11, 12, 13}};
  std::vector<int32_t> last;
  for (int t = 0; t < 3; ++t) {
    last = RunRequest(engine, Greedy(&turns, prompts[t], 6));
    all.insert(all.end(), prompts[t].begin(), prompts[t].end());
    if (t < 2) all.insert(all.end(), last.begin(), last.end());
  }
  SessionContext once = NewSessionContext(runner);
  EXPECT_EQ(RunRequest(engine, Greedy(&once, all, 6)), last);
}

TEST(EngineTest, AppendThenGenerateEqualsGenerateWithThePrompt) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  std::vector<int32_t> text(1000);
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<int32_t>(4 + i * 7 % 390);
  SessionContext a = NewSessionContext(runner);
  Request append;
  append.kind = RequestKind::kAppend;
  append.session = &a;
  append.prompt = std::vector<int32_t>(text.begin(), text.begin() + 600);
  RequestOutput out;
  RunRequest(engine, append, &out);
  EXPECT_EQ(out.prompt_tokens, 599);  // the last appended token stays pending
  EXPECT_EQ(a.context_tokens(), 601);
  append.prompt = std::vector<int32_t>(text.begin() + 600, text.end());
  RunRequest(engine, append, &out);
  const std::vector<int32_t> got = RunRequest(engine, Greedy(&a, {}, 5));
  SessionContext b = NewSessionContext(runner);
  EXPECT_EQ(RunRequest(engine, Greedy(&b, text, 5)), got);
}

TEST(EngineTest, ScoreDoesNotChangeTheSession) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  SessionContext s = NewSessionContext(runner);
  RunRequest(engine, Greedy(&s, {1, 2, 3}, 2));
  const int64_t before = s.context_tokens();
  const std::string state_before = *runner.SerializeState(*s.state);
  Request score;
  score.kind = RequestKind::kScore;
  score.session = &s;
  score.prompt = {20, 21, 22, 23};
  RequestOutput out;
  RunRequest(engine, score, &out);
  EXPECT_EQ(out.scored_tokens, 4);
  EXPECT_GT(out.score_nats, 0.0);
  EXPECT_EQ(s.context_tokens(), before);
  EXPECT_EQ(*runner.SerializeState(*s.state), state_before);
  // The same score twice.
  RequestOutput again;
  RunRequest(engine, score, &again);
  EXPECT_EQ(again.score_nats, out.score_nats);
}

TEST(EngineTest, ConcurrentSessionsGenerateWhatTheyGenerateAlone) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  std::vector<std::vector<int32_t>> alone;
  for (int i = 0; i < 8; ++i) {
    SessionContext s = NewSessionContext(runner);
    alone.push_back(RunRequest(engine, Greedy(&s, {static_cast<int32_t>(10 + i)}, 12)));
  }
  std::vector<SessionContext> sessions;
  for (int i = 0; i < 8; ++i) sessions.push_back(NewSessionContext(runner));
  std::vector<std::unique_ptr<Collector>> collectors;
  runner.step_delay_ms = 2;
  for (int i = 0; i < 8; ++i) {
    collectors.push_back(std::make_unique<Collector>());
    Request r = Greedy(&sessions[i], {static_cast<int32_t>(10 + i)}, 12);
    r.on_output = collectors.back()->Callback();
    ASSERT_TRUE(engine.Submit(std::move(r)).ok());
  }
  for (int i = 0; i < 8; ++i) {
    collectors[i]->Wait();
    EXPECT_EQ(collectors[i]->Tokens(), alone[i]) << i;
  }
  EXPECT_GT(runner.max_batch.load(), 1);  // they really ran together
}

TEST(EngineTest, CancelStopsWithinAStepAndKeepsTheGeneratedTokens) {
  FakeModelRunner runner(400);
  runner.step_delay_ms = 5;
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  SessionContext s = NewSessionContext(runner);
  Collector c;
  Request r = Greedy(&s, {3, 4}, 100000);
  r.on_output = c.Callback();
  auto id = engine.Submit(std::move(r));
  ASSERT_TRUE(id.ok());
  while (c.Tokens().size() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  engine.Cancel(*id);
  const RequestOutput out = c.Wait();
  EXPECT_EQ(out.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(s.context_tokens(), 1 + 2 + out.generated_tokens);
  EXPECT_EQ(static_cast<int64_t>(c.Tokens().size()), out.generated_tokens);
  for (int i = 0; i < 100 && engine.stats().running != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(engine.stats().running, 0);
}

TEST(EngineTest, QueueLimitsDeadlinesAndValidation) {
  FakeModelRunner runner(400);
  runner.step_delay_ms = 20;
  EngineOptions options;
  options.max_running = 1;
  options.max_waiting = 1;
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), options);
  SessionContext a = NewSessionContext(runner), b = NewSessionContext(runner), c = NewSessionContext(runner);
  Collector ca, cb;
  Request ra = Greedy(&a, {1}, 50);
  ra.on_output = ca.Callback();
  ASSERT_TRUE(engine.Submit(std::move(ra)).ok());
  while (engine.stats().running == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  Request rb = Greedy(&b, {1}, 5);
  rb.deadline = absl::Now() + absl::Milliseconds(30);  // passes while queued behind `a`
  rb.on_output = cb.Callback();
  ASSERT_TRUE(engine.Submit(std::move(rb)).ok());
  Request rc = Greedy(&c, {1}, 5);
  rc.on_output = [](const RequestOutput&) {};
  EXPECT_EQ(engine.Submit(std::move(rc)).status().code(), absl::StatusCode::kResourceExhausted);
  const RequestOutput out = cb.Wait();
  EXPECT_EQ(out.status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(out.generated_tokens, 0);
  ca.Wait();

  Request bad = Greedy(&c, {400}, 5);
  bad.on_output = [](const RequestOutput&) {};
  EXPECT_EQ(engine.Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.prompt = {1};
  bad.sampling.top_p = 2;
  EXPECT_EQ(engine.Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.sampling.top_p = 1;
  bad.stop.max_new_tokens = 0;
  EXPECT_EQ(engine.Submit(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.context_tokens(), 1);  // untouched
}

TEST(EngineTest, ShutdownFinishesEverything) {
  FakeModelRunner runner(400);
  runner.step_delay_ms = 5;
  auto engine = std::make_unique<Engine>(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  SessionContext s = NewSessionContext(runner);
  Collector c;
  Request r = Greedy(&s, {3}, 100000);
  r.on_output = c.Callback();
  ASSERT_TRUE(engine->Submit(std::move(r)).ok());
  engine->Shutdown();
  const RequestOutput out = c.Wait();
  EXPECT_EQ(out.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable);
  Request late = Greedy(&s, {3}, 1);
  late.on_output = [](const RequestOutput&) {};
  EXPECT_EQ(engine->Submit(late).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace blockserve::engine
