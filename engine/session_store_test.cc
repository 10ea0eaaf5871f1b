// SessionStore: ids, owners, busy sessions, limits and idle expiry.
#include "engine/session_store.h"

#include <set>

#include "engine/testing/fake_model_runner.h"
#include "gtest/gtest.h"

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
  EXPECT_EQ(store.state_bytes(), 50 * runner.info().state_bytes);
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
