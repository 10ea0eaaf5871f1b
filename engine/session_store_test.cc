// SessionStore: ids, owners, busy sessions, limits and idle expiry.
#include "engine/session_store.h"

#include <set>

#include <filesystem>
#include <future>
#include <thread>

#include "base/check.h"
#include "engine/engine.h"
#include "engine/testing/fake_model_runner.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"

namespace blockserve::engine {
namespace {

TEST(SessionStoreTest, CreateAcquireReleaseDelete) {
  testing::FakeModelRunner runner(100);
  SessionStore store(&runner, SessionStoreOptions());
  auto info = store.Create("alice");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->id.size(), 32u);
  EXPECT_EQ(info->tokens, 1);  // bos pending
  auto ctx = store.Acquire(info->id, "alice");
  ASSERT_TRUE(ctx.ok());
  EXPECT_EQ(store.Acquire(info->id, "alice").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Delete(info->id, "alice").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store.Get(info->id, "alice")->busy);
  store.Release(info->id);
  EXPECT_FALSE(store.Get(info->id, "alice")->busy);
  // Another owner sees nothing.
  EXPECT_EQ(store.Acquire(info->id, "bob").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Get(info->id, "bob").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.List("bob").empty());
  EXPECT_EQ(store.List("alice").size(), 1u);
  EXPECT_EQ(store.Delete(info->id, "bob").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.Delete(info->id, "alice").ok());
  EXPECT_EQ(store.Get(info->id, "alice").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Acquire("nope", "alice").status().code(), absl::StatusCode::kNotFound);
}

TEST(SessionStoreTest, IdsAreDistinctAndLimitsHold) {
  testing::FakeModelRunner runner(100);
  SessionStoreOptions options;
  options.max_sessions = 50;
  SessionStore store(&runner, options);
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) ids.insert(store.Create("")->id);
  EXPECT_EQ(ids.size(), 50u);
  EXPECT_EQ(store.Create("").status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store.size(), 50);
  EXPECT_GE(store.memory_bytes(), 50 * runner.info().state_bytes);
  EXPECT_EQ(store.offloaded(), 0);
}

TEST(SessionStoreTest, IdleSessionsExpireBusyOnesDoNot) {
  testing::FakeModelRunner runner(100);
  SessionStoreOptions options;
  options.idle_ttl = absl::Seconds(10);
  SessionStore store(&runner, options);
  const std::string idle = store.Create("")->id, busy = store.Create("")->id;
  ASSERT_TRUE(store.Acquire(busy, "").ok());
  EXPECT_EQ(store.ExpireIdle(absl::Now()), 0);
  EXPECT_EQ(store.ExpireIdle(absl::Now() + absl::Seconds(11)), 1);
  EXPECT_FALSE(store.Get(idle, "").ok());
  EXPECT_TRUE(store.Get(busy, "").ok());
}

}  // namespace
}  // namespace blockserve::engine

// ---- with the engine: forks, rewinds, offload, restarts -------------------------------------
namespace blockserve::engine {
namespace {

using testing::FakeModelRunner;


// Runs one request to the end; returns its generated tokens.
std::vector<int32_t> RunOn(Engine& engine, SessionContext* ctx, RequestKind kind, std::vector<int32_t> prompt,
                           int max_new = 8) {
  Request r;
  r.kind = kind;
  r.session = ctx;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.stop.max_new_tokens = max_new;
  r.stop.ignore_eos = true;
  std::promise<void> done;
  std::vector<int32_t> tokens;
  r.on_output = [&](const RequestOutput& out) {
    for (const auto& t : out.tokens) tokens.push_back(t.token);
    if (out.finished) {
      EXPECT_TRUE(out.status.ok()) << out.status;
      done.set_value();
    }
  };
  EXPECT_TRUE(engine.Submit(std::move(r)).ok());
  done.get_future().wait();
  return tokens;
}

// Greedy continuation of a fresh session fed `context` (context[0] is the bos).
std::vector<int32_t> Reference(Engine& engine, const ModelRunner& runner, const std::vector<int32_t>& context,
                               int n) {
  SessionContext fresh = NewSessionContext(runner);
  return RunOn(engine, &fresh, RequestKind::kGenerate, std::vector<int32_t>(context.begin() + 1, context.end()), n);
}

TEST(SessionStoreEngineTest, ForksAndRewindsContinueLikeTheOriginalFromThatPoint) {
  FakeModelRunner runner(400, /*block_size=*/4);
  SessionStoreOptions options;
  options.checkpoints = {8, 3};  // every 2 blocks, keep 3
  SessionStore store(&runner, options);
  EngineOptions eo;
  eo.checkpoint_interval = 8;
  eo.prefill_tokens_per_step = 12;
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), eo);
  const std::string id = store.Create("")->id;
  std::vector<int32_t> context = {runner.info().bos_id};
  {
    Lease lease = *store.Acquire(id, "");
    for (int turn = 0; turn < 3; ++turn) {
      std::vector<int32_t> prompt;
      for (int i = 0; i < 9; ++i) prompt.push_back(10 + turn * 9 + i);
      const std::vector<int32_t> out = RunOn(engine, lease.context, RequestKind::kGenerate, prompt, 7);
      context.insert(context.end(), prompt.begin(), prompt.end());
      context.insert(context.end(), out.begin(), out.end());
    }
    EXPECT_EQ(lease.context->context_tokens(), static_cast<int64_t>(context.size()));
    EXPECT_EQ(lease.context->checkpoints.size(), 3u);
    store.Release(id);
  }
  const SessionInfo info = *store.Get(id, "");
  const int64_t n = info.tokens;
  ASSERT_EQ(n, 49);
  // 48 tokens fed: checkpoints at 32, 40 and 48 are kept, so forks reach back to length 33.
  EXPECT_EQ(store.Fork(id, "", 32).status().code(), absl::StatusCode::kOutOfRange);
  for (int64_t length : {33, 34, 39, 40, 41, 42, 47, 48, 49}) {
    absl::StatusOr<Lease> fork = store.Fork(id, "", length);
    ASSERT_TRUE(fork.ok()) << fork.status();
    EXPECT_LE(fork->to_feed.size(), 8u);
    if (!fork->to_feed.empty()) RunOn(engine, fork->context, RequestKind::kAppend, fork->to_feed);
    EXPECT_EQ(fork->context->context_tokens(), length);
    const std::vector<int32_t> got = RunOn(engine, fork->context, RequestKind::kGenerate, {}, 6);
    store.Release(fork->id);
    const std::vector<int32_t> want =
        Reference(engine, runner, std::vector<int32_t>(context.begin(), context.begin() + length), 6);
    EXPECT_EQ(got, want) << "fork at " << length;
  }
  // The original is untouched; then rewind it.
  EXPECT_EQ(store.Get(id, "")->tokens, n);
  absl::StatusOr<Lease> rewound = store.Rewind(id, "", 37);
  ASSERT_TRUE(rewound.ok()) << rewound.status();
  if (!rewound->to_feed.empty()) RunOn(engine, rewound->context, RequestKind::kAppend, rewound->to_feed);
  const std::vector<int32_t> got = RunOn(engine, rewound->context, RequestKind::kGenerate, {77}, 6);
  store.Release(id);
  std::vector<int32_t> ref_context(context.begin(), context.begin() + 37);
  ref_context.push_back(77);
  EXPECT_EQ(got, Reference(engine, runner, ref_context, 6));
  EXPECT_EQ(store.Get(id, "")->tokens, 37 + 1 + 6);
}

std::string TempDir(const std::string& name) { return blockserve::testing::MakeTempDir(name); }

TEST(SessionStoreEngineTest, ThirtyTwoConversationsWithRoomForFourOffloadAndStayCorrect) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  auto run_all = [&](SessionStore& store, bool check_budget, int64_t budget) {
    std::vector<std::string> ids;
    for (int s = 0; s < 32; ++s) ids.push_back(store.Create("")->id);
    std::vector<std::vector<int32_t>> outputs(32);
    auto settle = [&] {  // the store's thread writes and evicts in the background
      for (int i = 0; i < 200 && store.memory_bytes() > static_cast<size_t>(budget); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    };
    for (int turn = 0; turn < 3; ++turn) {
      if (check_budget) {
        settle();
        EXPECT_LE(store.memory_bytes(), static_cast<size_t>(budget));
        if (turn > 0) {
          EXPECT_GE(store.offloaded(), 8);  // this turn loads them back
        }
      }
      for (int s = 0; s < 32; ++s) {
        absl::StatusOr<Lease> lease = store.Acquire(ids[s], "");
        EXPECT_TRUE(lease.ok()) << lease.status();
        const std::vector<int32_t> out =
            RunOn(engine, lease->context, RequestKind::kGenerate, {static_cast<int32_t>(5 + s), 6 + turn}, 5);
        outputs[s].insert(outputs[s].end(), out.begin(), out.end());
        store.Release(ids[s]);
      }
    }
    if (check_budget) {
      settle();
      EXPECT_LE(store.memory_bytes(), static_cast<size_t>(budget));
      EXPECT_GE(store.offloaded(), 28);  // room for four of the 32
    }
    return outputs;
  };
  SessionStore unlimited(&runner, SessionStoreOptions());
  const auto want = run_all(unlimited, false, 0);
  SessionStoreOptions options;
  options.state_dir = TempDir("offload");
  options.snapshot_interval = absl::Hours(1);
  // Room for four sessions as large as they are at the end.
  options.memory_budget_bytes = 4 * static_cast<int64_t>(unlimited.memory_bytes() / 32);
  SessionStore limited(&runner, options);
  EXPECT_EQ(run_all(limited, true, options.memory_budget_bytes), want);
}

TEST(SessionStoreEngineTest, SessionsSurviveARestartAndCorruptFilesAreRefused) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  const std::string dir = TempDir("persist");
  SessionStoreOptions options;
  options.state_dir = dir;
  options.snapshot_interval = absl::Hours(1);
  std::vector<std::string> ids;
  std::vector<std::vector<int32_t>> contexts;
  {
    SessionStore store(&runner, options);
    for (int s = 0; s < 5; ++s) {
      ids.push_back(store.Create("key" + std::to_string(s % 2))->id);
      Lease lease = *store.Acquire(ids.back(), "key" + std::to_string(s % 2));
      std::vector<int32_t> ctx = {runner.info().bos_id, 40, static_cast<int32_t>(41 + s)};
      const std::vector<int32_t> out = RunOn(engine, lease.context, RequestKind::kGenerate, {40, 41 + s}, 4 + s);
      ctx.insert(ctx.end(), out.begin(), out.end());
      contexts.push_back(ctx);
      store.Release(ids.back());
    }
    store.Shutdown();  // writes every session
  }
  // Corrupt one file: flip a byte in the middle.
  {
    const std::string path = dir + "/" + ids[4] + ".session";
    std::string bytes = *blockserve::testing::ReadFile(path);
    bytes[bytes.size() / 2] ^= 0x20;
    ASSERT_TRUE(blockserve::testing::WriteFile(path, bytes).ok());
  }
  SessionStore restarted(&runner, options);
  absl::StatusOr<int> loaded = restarted.LoadDirectory();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, 4);
  EXPECT_TRUE(std::filesystem::exists(dir + "/" + ids[4] + ".session.corrupt"));
  EXPECT_EQ(restarted.Get(ids[4], "key0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(restarted.offloaded(), 4);
  for (int s = 0; s < 4; ++s) {
    const std::string owner = "key" + std::to_string(s % 2);
    EXPECT_EQ(restarted.Get(ids[s], s % 2 ? "key0" : "key1").status().code(), absl::StatusCode::kNotFound);
    absl::StatusOr<Lease> lease = restarted.Acquire(ids[s], owner);
    ASSERT_TRUE(lease.ok()) << lease.status();
    EXPECT_EQ(lease->context->context_tokens(), static_cast<int64_t>(contexts[s].size()));
    const std::vector<int32_t> got = RunOn(engine, lease->context, RequestKind::kGenerate, {}, 5);
    restarted.Release(ids[s]);
    EXPECT_EQ(got, Reference(engine, runner, contexts[s], 5)) << s;
  }
  // A file corrupted while its session is offloaded: DATA_LOSS at the next use, then gone.
  restarted.PersistAll();
  SessionStoreOptions evicting = options;
  evicting.memory_budget_bytes = 1;
  {
    SessionStore store(&runner, evicting);
    ASSERT_EQ(*store.LoadDirectory(), 4);
    const std::string path = dir + "/" + ids[0] + ".session";
    std::string bytes = *blockserve::testing::ReadFile(path);
    bytes.resize(bytes.size() - 10);
    ASSERT_TRUE(blockserve::testing::WriteFile(path, bytes).ok());
    EXPECT_EQ(store.Acquire(ids[0], "key0").status().code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(store.Get(ids[0], "key0").status().code(), absl::StatusCode::kNotFound);
  }
}

TEST(SessionStoreEngineTest, ExportImportMovesASessionBetweenStores) {
  FakeModelRunner runner(400);
  Engine engine(&runner, &blockserve::testing::TestTokenizer(), EngineOptions());
  SessionStore a(&runner, SessionStoreOptions()), b(&runner, SessionStoreOptions());
  const std::string id = a.Create("k")->id;
  Lease lease = *a.Acquire(id, "k");
  std::vector<int32_t> ctx = {runner.info().bos_id, 9, 8, 7};
  const std::vector<int32_t> out = RunOn(engine, lease.context, RequestKind::kGenerate, {9, 8, 7}, 6);
  ctx.insert(ctx.end(), out.begin(), out.end());
  EXPECT_EQ(a.Export(id, "k").status().code(), absl::StatusCode::kFailedPrecondition);  // busy
  a.Release(id);
  absl::StatusOr<std::string> bytes = a.Export(id, "k");
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(a.Export(id, "other").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<SessionInfo> imported = b.Import("k2", *bytes);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->id, id);  // the id travels with it
  EXPECT_EQ(imported->tokens, static_cast<int64_t>(ctx.size()));
  Lease moved = *b.Acquire(id, "k2");
  EXPECT_EQ(RunOn(engine, moved.context, RequestKind::kGenerate, {}, 5), Reference(engine, runner, ctx, 5));
  b.Release(id);
  std::string broken = *bytes;
  broken[broken.size() / 3] ^= 1;
  EXPECT_EQ(b.Import("k2", broken).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(b.Import("k2", "not a session").ok());
}

}  // namespace
}  // namespace blockserve::engine
