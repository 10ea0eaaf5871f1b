// A Reformer through blockserve-server: concurrent multi-turn sessions (batched decode) give what
// the runner gives one sequence at a time, sessions survive offload and a restart exactly, the
// metrics and the CLI work, and the session state grows with the context.
#include <sys/wait.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/check.h"
#include "gtest/gtest.h"
#include "models/model_runner_factory.h"
#include "models/synthetic_checkpoint.h"
#include "testing/server_fixture.h"
#include "testing/test_util.h"

namespace blockserve {
namespace {

namespace v1 = ::blockserve::v1;
using testing::BinDir;
using testing::CreateSession;
using testing::Generate;
using testing::Generation;
using testing::GreedyRequest;
using testing::HttpGet;
using testing::ServerProcess;
using testing::SessionTokens;

// Four layers [local, lsh] x 2 with chunks of 8, 2 hash rounds, 8 buckets, 1024 positions.
const std::string& ReformerDir() {
  static const std::string* dir = [] {
    ModelConfig c;
    c.family = ModelFamily::kReformer;
    c.vocab_size = 400;
    c.d_model = 32;
    c.num_layers = 4;
    c.num_heads = 2;
    c.head_dim = 16;
    c.ffn_dim = 64;
    c.norm_eps = 1e-12f;
    ReformerConfig& r = c.reformer;
    r.attn_layers = {ReformerAttention::kLocal, ReformerAttention::kLsh, ReformerAttention::kLocal,
                     ReformerAttention::kLsh};
    r.lsh_chunk_length = 8;
    r.local_chunk_length = 8;
    r.num_hashes = 2;
    r.num_buckets = {8};
    r.max_position_embeddings = 1024;
    r.axial_pos_shape = {32, 32};
    r.axial_pos_embds_dim = {8, 24};
    BS_CHECK(ValidateModelConfig(c).ok());
    auto* d = new std::string(testing::MakeTempDir("server_reformer") + "/tiny-reformer");
    std::filesystem::create_directories(*d);
    auto tok = testing::SmallKjvTokenizer(400);
    BS_CHECK(tok.ok());
    BS_CHECK(WriteSyntheticModelDir(c, *d, 5, DType::kF32, 0.3f, *tok).ok());
    return d;
  }();
  return *dir;
}

std::vector<int32_t> Prompt(int conversation, int turn) {
  // A first prompt of 30 tokens (several chunks, padded), later prompts of 5.
  std::vector<int32_t> p(turn == 0 ? 30 : 5);
  for (size_t i = 0; i < p.size(); ++i) p[i] = 4 + static_cast<int32_t>((conversation * 37 + turn * 11 + i * 7) % 390);
  return p;
}

// What a session must produce, computed with the runner directly, one sequence alone: the
// session feeds [pending] + prompt each turn (the first prompt as the prefill), then greedy
// tokens one at a time; the last sampled token stays pending.
std::vector<std::vector<int32_t>> ReferenceTurns(engine::ModelRunner& runner, int conversation, int turns,
                                                 int max_new) {
  const int V = runner.info().vocab_size;
  auto state = runner.NewState();
  std::vector<int32_t> pending = {runner.info().bos_id};
  std::vector<std::vector<int32_t>> out;
  std::vector<float> logits(V);
  auto feed = [&](const std::vector<int32_t>& tokens) {
    engine::StepItem item{state.get(), absl::MakeConstSpan(tokens), engine::StepItem::Logits::kLast, logits.data()};
    BS_CHECK(runner.Execute({&item, 1}).ok());
  };
  for (int t = 0; t < turns; ++t) {
    std::vector<int32_t> in = pending;
    const std::vector<int32_t> prompt = Prompt(conversation, t);
    in.insert(in.end(), prompt.begin(), prompt.end());
    feed(in);
    std::vector<int32_t> generated;
    for (int i = 0; i < max_new; ++i) {
      const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      generated.push_back(next);
      if (i + 1 < max_new) feed({next});
    }
    pending = {generated.back()};
    out.push_back(generated);
  }
  return out;
}

std::unique_ptr<engine::ModelRunner> InProcessRunner() {
  RunnerOptions options;
  options.num_threads = 1;
  auto runner = LoadModelRunner(ReformerDir(), options);
  BS_CHECK(runner.ok());
  return std::move(*runner);
}

// A metric's value from the Prometheus text (the first sample line starting with `name`).
double Metric(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (line.empty() || (line[0] != ' ' && line[0] != '{')) continue;
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) return v;
  }
  return -1;
}

constexpr int kMaxNew = 12;

TEST(ServerReformerTest, ConcurrentSessionsAreBatchedAndEachGetsWhatItGetsAlone) {
  ServerProcess server(ReformerDir(), {});
  {
    grpc::ClientContext ctx;
    v1::ListModelsResponse models;
    ASSERT_TRUE(server.stub().ListModels(&ctx, v1::ListModelsRequest(), &models).ok());
    ASSERT_EQ(models.models_size(), 1);
    EXPECT_EQ(models.models(0).family(), "reformer");
  }
  constexpr int kConversations = 8, kTurns = 3;
  std::vector<std::string> ids(kConversations);
  std::vector<std::vector<std::vector<int32_t>>> got(kConversations);
  std::vector<int64_t> bytes_after_first(kConversations), bytes_after_last(kConversations);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConversations; ++c) {
    threads.emplace_back([&, c] {
      ids[c] = CreateSession(server.stub());
      for (int t = 0; t < kTurns; ++t) {
        const Generation g = Generate(server.stub(), GreedyRequest(ids[c], Prompt(c, t), kMaxNew));
        EXPECT_TRUE(g.status.ok()) << g.status.error_message();
        got[c].push_back(g.tokens);
        grpc::ClientContext ctx;
        v1::GetSessionRequest get;
        get.set_session_id(ids[c]);
        v1::Session info;
        EXPECT_TRUE(server.stub().GetSession(&ctx, get, &info).ok());
        (t == 0 ? bytes_after_first : bytes_after_last)[c] = info.state_bytes();
      }
    });
  }
  for (auto& t : threads) t.join();
  auto runner = InProcessRunner();
  for (int c = 0; c < kConversations; ++c) {
    EXPECT_EQ(got[c], ReferenceTurns(*runner, c, kTurns, kMaxNew)) << "conversation " << c;
    EXPECT_EQ(SessionTokens(server.stub(), ids[c]), 1 + 30 + kMaxNew + 2 * (5 + kMaxNew));
    EXPECT_GT(bytes_after_last[c], bytes_after_first[c]) << "the Reformer state grows with the context";
  }
  const std::string metrics = HttpGet(server.metrics_port(), "/metrics");
  const double batch_sum = Metric(metrics, "blockserve_step_batch_size_sum"),
               batch_count = Metric(metrics, "blockserve_step_batch_size_count");
  ASSERT_GT(batch_count, 0) << metrics.substr(0, 2000);
  EXPECT_GT(batch_sum / batch_count, 1.5) << "concurrent sessions were not batched";
  EXPECT_GT(Metric(metrics, "blockserve_session_state_bytes"), 0);
  EXPECT_NE(metrics.find("model=\"tiny-reformer\""), std::string::npos);
  std::printf("mean batch %.2f over %.0f steps\n", batch_sum / batch_count, batch_count);
}

TEST(ServerReformerTest, SessionsSurviveOffloadAndARestartExactly) {
  const std::string dir = testing::MakeTempDir("reformer_state");
  constexpr int kConversations = 6;
  std::vector<std::string> ids(kConversations);
  std::vector<std::vector<std::vector<int32_t>>> got(kConversations);
  {
    // Room for about two sessions in memory: the others are offloaded to disk between turns.
    ServerProcess server(ReformerDir(), {"--state_dir=" + dir, "--session_memory_bytes=90000",
                                         "--snapshot_interval_seconds=3600"});
    for (int t = 0; t < 2; ++t) {
      for (int c = 0; c < kConversations; ++c) {
        if (t == 0) ids[c] = CreateSession(server.stub());
        const Generation g = Generate(server.stub(), GreedyRequest(ids[c], Prompt(c, t), kMaxNew));
        ASSERT_TRUE(g.status.ok()) << g.status.error_message();
        got[c].push_back(g.tokens);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    grpc::ClientContext ctx;
    v1::ListSessionsResponse list;
    ASSERT_TRUE(server.stub().ListSessions(&ctx, v1::ListSessionsRequest(), &list).ok());
    int offloaded = 0;
    for (const auto& s : list.sessions()) offloaded += s.offloaded() ? 1 : 0;
    EXPECT_GE(offloaded, 3);
  }  // SIGTERM: every session is written
  ServerProcess restarted(ReformerDir(), {"--state_dir=" + dir});
  for (int c = 0; c < kConversations; ++c) {
    const Generation g = Generate(restarted.stub(), GreedyRequest(ids[c], Prompt(c, 2), kMaxNew));
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    got[c].push_back(g.tokens);
  }
  auto runner = InProcessRunner();
  for (int c = 0; c < kConversations; ++c) {
    EXPECT_EQ(got[c], ReferenceTurns(*runner, c, 3, kMaxNew)) << "conversation " << c;
  }
}

int RunCommand(const std::string& cmd, std::string* out) {
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  char buf[512];
  out->clear();
  while (fgets(buf, sizeof(buf), pipe) != nullptr) *out += buf;
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ServerReformerTest, TheCliTalksToAReformer) {
  ServerProcess server(ReformerDir(), {});
  const std::string cli = absl::StrCat(BinDir(), "/blockserve-cli --server=127.0.0.1:", server.port(), " ");
  std::string out;
  ASSERT_EQ(RunCommand(cli + "models", &out), 0) << out;
  EXPECT_NE(out.find("reformer"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(cli + "session create", &out), 0) << out;
  const std::string session(absl::StripAsciiWhitespace(out));
  for (const char* prompt : {"In the beginning God created the heaven and the earth.", "And the earth"}) {
    ASSERT_EQ(RunCommand(cli + "generate --session=" + session + " --max_tokens=9 --temperature=0 --ignore_eos '" +
                             prompt + "'",
                         &out),
              0)
        << out;
    EXPECT_NE(out.find("generated_tokens=9"), std::string::npos) << out;
  }
  ASSERT_EQ(RunCommand(cli + "score --session=" + session + " the waters", &out), 0) << out;
  EXPECT_NE(out.find("bits_per_token="), std::string::npos) << out;
  ASSERT_EQ(RunCommand(cli + "session get " + session, &out), 0) << out;
  EXPECT_NE(out.find(session), std::string::npos) << out;
}

}  // namespace
}  // namespace blockserve
