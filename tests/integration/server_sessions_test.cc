// Sessions through blockserve-server: 16 at once equal each alone, restarts continue exactly,
// SIGKILL never leaves a corrupt session, forks and rewinds, moving a session between servers,
// and a memory budget that offloads to disk.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "testing/server_fixture.h"
#include "testing/test_util.h"

namespace blockserve {
namespace {

namespace v1 = ::blockserve::v1;
using testing::CreateSession;
using testing::Generate;
using testing::Generation;
using testing::GreedyRequest;
using testing::ModelDir;
using testing::ServerProcess;
using testing::SessionTokens;

// One conversation: its context as token ids (context[0] is the bos) and its turns.
struct Conversation {
  std::string id;
  std::vector<int32_t> context;
};

std::vector<int32_t> Prompt(int conversation, int turn) {
  return {static_cast<int32_t>(20 + conversation), static_cast<int32_t>(200 + turn), 7};
}

// Runs `turn` of a conversation in its session; appends prompt and output to its context.
std::vector<int32_t> Turn(v1::Blockserve::Stub& stub, Conversation* c, int index, int turn, int max_new = 12) {
  const std::vector<int32_t> prompt = Prompt(index, turn);
  const Generation g = Generate(stub, GreedyRequest(c->id, prompt, max_new));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  c->context.insert(c->context.end(), prompt.begin(), prompt.end());
  c->context.insert(c->context.end(), g.tokens.begin(), g.tokens.end());
  EXPECT_EQ(g.final.session_tokens(), static_cast<int64_t>(c->context.size()));
  return g.tokens;
}

// Greedy continuation of a one-off context (what a session with this context must produce).
std::vector<int32_t> Reference(v1::Blockserve::Stub& stub, const std::vector<int32_t>& context, int n) {
  const Generation g = Generate(stub, GreedyRequest("", std::vector<int32_t>(context.begin() + 1, context.end()), n));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  return g.tokens;
}

std::vector<int32_t> Continue(v1::Blockserve::Stub& stub, const std::string& session, int n) {
  const Generation g = Generate(stub, GreedyRequest(session, {}, n));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  return g.tokens;
}

TEST(ServerSessionsTest, SixteenSessionsAtOnceGenerateWhatEachGeneratesAlone) {
  ServerProcess server(ModelDir(), {});
  auto& stub = server.stub();
  std::vector<Conversation> alone(16), together(16);
  for (int c = 0; c < 16; ++c) {
    alone[c] = {CreateSession(stub), {2}};
    for (int t = 0; t < 3; ++t) Turn(stub, &alone[c], c, t, 40);
  }
  for (int c = 0; c < 16; ++c) together[c] = {CreateSession(stub), {2}};
  std::vector<std::thread> threads;
  for (int c = 0; c < 16; ++c) {
    threads.emplace_back([&, c] {
      for (int t = 0; t < 3; ++t) Turn(stub, &together[c], c, t, 40);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < 16; ++c) EXPECT_EQ(together[c].context, alone[c].context) << c;
}

TEST(ServerSessionsTest, AGracefulRestartContinuesEverySessionExactly) {
  const std::string dir = testing::MakeTempDir("state");
  std::vector<Conversation> conversations(6);
  {
    ServerProcess server(ModelDir(), {"--state_dir=" + dir, "--snapshot_interval_seconds=3600"});
    for (int c = 0; c < 6; ++c) {
      conversations[c] = {CreateSession(server.stub()), {2}};
      for (int t = 0; t < 2; ++t) Turn(server.stub(), &conversations[c], c, t);
    }
  }  // SIGTERM: every session is written
  ServerProcess restarted(ModelDir(), {"--state_dir=" + dir});
  for (int c = 0; c < 6; ++c) {
    Conversation& conv = conversations[c];
    ASSERT_EQ(SessionTokens(restarted.stub(), conv.id), static_cast<int64_t>(conv.context.size())) << c;
    EXPECT_EQ(Continue(restarted.stub(), conv.id, 10), Reference(restarted.stub(), conv.context, 10)) << c;
  }
}

TEST(ServerSessionsTest, SigkillDuringWritesLeavesEverySessionAtASnapshotNeverCorrupt) {
  const std::string dir = testing::MakeTempDir("crash");
  const int kSessions = 8;
  std::vector<Conversation> conversations(kSessions);
  // Context lengths each session had after a completed turn (any of them may be on disk).
  std::vector<std::vector<std::vector<int32_t>>> seen(kSessions);
  std::mutex mu;
  {
    // Every request writes its session, and a budget of about two sessions keeps evicting.
    ServerProcess server(ModelDir(), {"--state_dir=" + dir, "--snapshot_interval_seconds=0",
                                      "--session_memory_bytes=200000"});
    for (int c = 0; c < kSessions; ++c) {
      conversations[c] = {CreateSession(server.stub()), {2}};
      seen[c].push_back(conversations[c].context);
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < kSessions; ++c) {
      clients.emplace_back([&, c] {
        for (int t = 0; !stop; ++t) {
          Conversation copy;
          {
            std::lock_guard<std::mutex> lock(mu);
            copy = conversations[c];
          }
          const std::vector<int32_t> prompt = Prompt(c, t);
          const Generation g = Generate(server.stub(), GreedyRequest(copy.id, prompt, 6), 10000);
          if (!g.status.ok()) return;  // the server is gone
          std::lock_guard<std::mutex> lock(mu);
          conversations[c].context.insert(conversations[c].context.end(), prompt.begin(), prompt.end());
          conversations[c].context.insert(conversations[c].context.end(), g.tokens.begin(), g.tokens.end());
          seen[c].push_back(conversations[c].context);
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    server.Kill();  // in the middle of requests and session writes
    stop = true;
    for (std::thread& t : clients) t.join();
  }
  ServerProcess restarted(ModelDir(), {"--state_dir=" + dir});
  int restored = 0;
  for (int c = 0; c < kSessions; ++c) {
    const int64_t tokens = SessionTokens(restarted.stub(), conversations[c].id);
    ASSERT_GT(tokens, 0) << "session " << c << " was lost";
    ++restored;
    // It is one of the states it had after a completed request (or one being written when
    // killed, whose reply never arrived: at most one turn newer).
    const std::vector<int32_t>* match = nullptr;
    for (const auto& ctx : seen[c]) {
      if (static_cast<int64_t>(ctx.size()) == tokens) match = &ctx;
    }
    if (match == nullptr) {
      ASSERT_EQ(tokens, static_cast<int64_t>(seen[c].back().size()) + 3 + 6) << "session " << c;
      continue;  // the in-flight turn: its output is unknown to the client, nothing to compare
    }
    EXPECT_EQ(Continue(restarted.stub(), conversations[c].id, 8), Reference(restarted.stub(), *match, 8)) << c;
  }
  EXPECT_EQ(restored, kSessions);
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    EXPECT_FALSE(absl::EndsWith(f.path().string(), ".corrupt")) << f.path();
  }
}

TEST(ServerSessionsTest, ForkRewindAndMoveASessionToAnotherServer) {
  ServerProcess a(ModelDir(), {"--checkpoint_every_blocks=1", "--max_checkpoints=2"});
  ServerProcess b(ModelDir(), {});
  Conversation conv{CreateSession(a.stub()), {2}};
  for (int t = 0; t < 6; ++t) Turn(a.stub(), &conv, 0, t, 20);  // 139 tokens: blocks of 32
  const int64_t n = static_cast<int64_t>(conv.context.size());
  ASSERT_EQ(n, 139);
  // 138 fed: checkpoints at 96 and 128 are kept, so forks reach back to length 97.
  for (int64_t length : {n, n - 1, n - 11, n - 20, int64_t{97}}) {
    grpc::ClientContext ctx;
    v1::ForkSessionRequest req;
    req.set_session_id(conv.id);
    req.set_tokens(length);
    v1::Session fork;
    const grpc::Status st = a.stub().ForkSession(&ctx, req, &fork);
    ASSERT_TRUE(st.ok()) << length << ": " << st.error_message();
    EXPECT_EQ(fork.tokens(), length);
    const std::vector<int32_t> prefix(conv.context.begin(), conv.context.begin() + length);
    EXPECT_EQ(Continue(a.stub(), fork.session_id(), 10), Reference(a.stub(), prefix, 10)) << length;
  }
  EXPECT_EQ(SessionTokens(a.stub(), conv.id), n);  // forks leave the original alone
  {
    grpc::ClientContext ctx;
    v1::ForkSessionRequest req;
    req.set_session_id(conv.id);
    req.set_tokens(96);  // before the oldest kept checkpoint
    v1::Session fork;
    EXPECT_EQ(a.stub().ForkSession(&ctx, req, &fork).error_code(), grpc::OUT_OF_RANGE);
  }
  {
    grpc::ClientContext ctx;
    v1::RewindSessionRequest req;
    req.set_session_id(conv.id);
    req.set_tokens(n - 30);
    v1::Session rewound;
    ASSERT_TRUE(a.stub().RewindSession(&ctx, req, &rewound).ok());
    EXPECT_EQ(rewound.tokens(), n - 30);
    conv.context.resize(n - 30);
    EXPECT_EQ(Continue(a.stub(), conv.id, 10), Reference(a.stub(), conv.context, 10));
  }
  // Export from a, import into b, continue there: the same tokens as continuing on a.
  const std::vector<int32_t> prompt = {99, 98};
  std::string bytes;
  {
    grpc::ClientContext ctx;
    v1::ExportSessionRequest req;
    req.set_session_id(conv.id);
    auto reader = a.stub().ExportSession(&ctx, req);
    v1::SessionBytes piece;
    while (reader->Read(&piece)) bytes += piece.data();
    ASSERT_TRUE(reader->Finish().ok());
  }
  ASSERT_GT(bytes.size(), 1000u);
  v1::Session moved;
  {
    grpc::ClientContext ctx;
    auto writer = b.stub().ImportSession(&ctx, &moved);
    for (size_t off = 0; off < bytes.size(); off += 4096) {
      v1::SessionBytes piece;
      piece.set_data(bytes.substr(off, 4096));
      ASSERT_TRUE(writer->Write(piece));
    }
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  EXPECT_EQ(moved.session_id(), conv.id);
  EXPECT_EQ(moved.tokens(), SessionTokens(a.stub(), conv.id));
  const Generation on_a = Generate(a.stub(), GreedyRequest(conv.id, prompt, 12));
  const Generation on_b = Generate(b.stub(), GreedyRequest(moved.session_id(), prompt, 12));
  ASSERT_TRUE(on_b.status.ok()) << on_b.status.error_message();
  EXPECT_EQ(on_a.tokens, on_b.tokens);
  // A damaged blob is refused.
  {
    grpc::ClientContext ctx;
    v1::Session none;
    auto writer = b.stub().ImportSession(&ctx, &none);
    v1::SessionBytes piece;
    piece.set_data(bytes.substr(0, bytes.size() / 2));
    writer->Write(piece);
    writer->WritesDone();
    EXPECT_EQ(writer->Finish().error_code(), grpc::DATA_LOSS);
  }
}

TEST(ServerSessionsTest, ThirtyTwoConversationsWithRoomForFourInMemory) {
  ServerProcess unlimited(ModelDir(), {});
  std::vector<Conversation> want(32);
  for (int c = 0; c < 32; ++c) want[c] = {CreateSession(unlimited.stub()), {2}};
  for (int t = 0; t < 3; ++t) {
    for (int c = 0; c < 32; ++c) Turn(unlimited.stub(), &want[c], c, t);
  }
  grpc::ClientContext ctx;
  v1::GetSessionRequest get;
  get.set_session_id(want[0].id);
  v1::Session info;
  ASSERT_TRUE(unlimited.stub().GetSession(&ctx, get, &info).ok());
  const std::string budget = absl::StrCat("--session_memory_bytes=", 4 * info.state_bytes());
  ServerProcess limited(ModelDir(), {"--state_dir=" + testing::MakeTempDir("offload"), budget,
                                     "--snapshot_interval_seconds=3600"});
  std::vector<Conversation> got(32);
  for (int c = 0; c < 32; ++c) got[c] = {CreateSession(limited.stub()), {2}};
  for (int t = 0; t < 3; ++t) {
    for (int c = 0; c < 32; ++c) Turn(limited.stub(), &got[c], c, t);
  }
  for (int c = 0; c < 32; ++c) EXPECT_EQ(got[c].context, want[c].context) << c;
  // Most of them are on disk now.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  grpc::ClientContext list_ctx;
  v1::ListSessionsResponse list;
  ASSERT_TRUE(limited.stub().ListSessions(&list_ctx, v1::ListSessionsRequest(), &list).ok());
  int offloaded = 0;
  for (const auto& s : list.sessions()) offloaded += s.offloaded() ? 1 : 0;
  EXPECT_GE(offloaded, 26);
}

}  // namespace
}  // namespace blockserve
