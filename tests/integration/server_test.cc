// blockserve-server over loopback: streaming, sessions across turns, a 20 MB Append, errors under
// load, cancellation, metrics, authentication and limits, and a Python client.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/streaming_encoder.h"
#include "base/tokenizer.h"
#include "blockserve/v1/blockserve.grpc.pb.h"
#include "engine/engine.h"
#include "grpcpp/grpcpp.h"
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
using testing::ModelDir;
using testing::ServerProcess;
using testing::SessionTokens;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new ServerProcess(ModelDir(), {}); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  static ServerProcess* server_;
};
ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, AStreamedGenerationArrivesInSeveralMessagesBeforeTheFinal) {
  v1::GenerateRequest req;
  req.set_text("In the beginning God created");
  req.mutable_stop()->set_max_new_tokens(20);
  req.mutable_stop()->set_ignore_eos(true);
  req.mutable_sampling()->set_seed(1);
  req.set_logprobs(true);
  req.set_top_logprobs(3);
  const Generation g = Generate(server_->stub(), req);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_GE(g.chunks, 2);
  EXPECT_TRUE(g.final_last);
  EXPECT_EQ(g.tokens.size(), 20u);
  EXPECT_EQ(g.final.generated_tokens(), 20);
  EXPECT_EQ(g.final.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_GT(g.final.prompt_tokens(), 0);
  // Same seed, same tokens.
  EXPECT_EQ(Generate(server_->stub(), req).tokens, g.tokens);
}

TEST_F(ServerTest, ThreeTurnsInASessionEqualOneGenerationOverTheConcatenation) {
  const std::string session = CreateSession(server_->stub());
  const std::vector<int32_t> prompts[3] = {{100, 101, 102, 103}, {50}, {200, 201, 202, 7, 8, 9}};
  std::vector<int32_t> all, last;
  for (int t = 0; t < 3; ++t) {
    const Generation g = Generate(server_->stub(), GreedyRequest(session, prompts[t], 40));
    ASSERT_TRUE(g.status.ok()) << g.status.error_message();
    last = g.tokens;
    all.insert(all.end(), prompts[t].begin(), prompts[t].end());
    if (t < 2) all.insert(all.end(), last.begin(), last.end());
    EXPECT_EQ(g.final.session_tokens(), SessionTokens(server_->stub(), session));
  }
  // 1 + 4 + 40 + 1 + 40 + 6 + 40 tokens: crosses several blocks of W = 32.
  EXPECT_EQ(SessionTokens(server_->stub(), session), 132);
  const Generation once = Generate(server_->stub(), GreedyRequest("", all, 40));
  ASSERT_TRUE(once.status.ok());
  EXPECT_EQ(once.tokens, last);
}

TEST_F(ServerTest, TwentyMegabytesAppendedThenGenerateMatchesTheEngineDirectly) {
  auto bible = testing::KjvText("Gen1:1-Rev22:21");
  ASSERT_TRUE(bible.ok()) << bible.status();
  std::string text;
  while (text.size() < (20u << 20)) text += *bible;
  const std::string session = CreateSession(server_->stub());
  const auto t0 = std::chrono::steady_clock::now();
  {
    grpc::ClientContext ctx;
    v1::AppendResponse resp;
    auto writer = server_->stub().Append(&ctx, &resp);
    for (size_t off = 0; off < text.size(); off += 65536) {
      v1::AppendRequest msg;
      if (off == 0) msg.set_session_id(session);
      msg.set_text(text.substr(off, 65536));
      ASSERT_TRUE(writer->Write(msg));
    }
    writer->WritesDone();
    const grpc::Status st = writer->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_GT(resp.tokens_appended(), 5000000);
    EXPECT_EQ(resp.session_tokens(), SessionTokens(server_->stub(), session));
    std::printf("appended %zu bytes = %lld tokens in %.1f s\n", text.size(),
                static_cast<long long>(resp.tokens_appended()),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const Generation g = Generate(server_->stub(), GreedyRequest(session, {}, 24));
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();

  // The same text through the engine in this process.
  RunnerOptions options;
  options.num_threads = 1;
  auto runner = LoadModelRunner(ModelDir(), options);
  ASSERT_TRUE(runner.ok());
  auto tokenizer = Tokenizer::Load(ModelDir() + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok());
  engine::Engine eng(runner->get(), tokenizer->get(), engine::EngineOptions());
  engine::SessionContext ctx = engine::NewSessionContext(**runner);
  StreamingEncoder encoder(tokenizer->get());
  std::vector<int32_t> ids;
  for (size_t off = 0; off < text.size(); off += 1 << 20) {
    auto part = encoder.Push(absl::string_view(text).substr(off, 1 << 20));
    ASSERT_TRUE(part.ok());
    ids.insert(ids.end(), part->begin(), part->end());
  }
  auto rest = encoder.Finish();
  ids.insert(ids.end(), rest->begin(), rest->end());
  auto run = [&](engine::Request r) {
    std::promise<engine::RequestOutput> done;
    std::vector<int32_t> tokens;
    r.session = &ctx;
    r.on_output = [&](const engine::RequestOutput& out) {
      for (const auto& t : out.tokens) tokens.push_back(t.token);
      if (out.finished) done.set_value(out);
    };
    EXPECT_TRUE(eng.Submit(std::move(r)).ok());
    EXPECT_TRUE(done.get_future().get().status.ok());
    return tokens;
  };
  engine::Request append;
  append.kind = engine::RequestKind::kAppend;
  append.prompt = ids;
  run(append);
  engine::Request gen;
  gen.sampling.temperature = 0;
  gen.stop.max_new_tokens = 24;
  gen.stop.ignore_eos = true;
  EXPECT_EQ(run(gen), g.tokens);
  EXPECT_EQ(ctx.context_tokens(), SessionTokens(server_->stub(), session));
}

TEST_F(ServerTest, ErrorsHaveTheirStatusAndAThousandBadRequestsHurtNothing) {
  auto& stub = server_->stub();
  const std::string session = CreateSession(stub);
  ASSERT_TRUE(Generate(stub, GreedyRequest(session, {5, 6, 7}, 5)).status.ok());
  const int64_t tokens = SessionTokens(stub, session);

  struct Case {
    const char* name;
    std::function<void(v1::GenerateRequest*)> edit;
    grpc::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-1); }, grpc::INVALID_ARGUMENT},
      {"top_p", [](auto* r) { r->mutable_sampling()->set_top_p(1.5f); }, grpc::INVALID_ARGUMENT},
      {"top_k", [](auto* r) { r->mutable_sampling()->set_top_k(100000); }, grpc::INVALID_ARGUMENT},
      {"min_p", [](auto* r) { r->mutable_sampling()->set_min_p(2); }, grpc::INVALID_ARGUMENT},
      {"max_new_tokens", [](auto* r) { r->mutable_stop()->set_max_new_tokens(-3); }, grpc::INVALID_ARGUMENT},
      {"token id", [](auto* r) { r->add_token_ids(400); }, grpc::INVALID_ARGUMENT},
      {"negative id", [](auto* r) { r->add_token_ids(-1); }, grpc::INVALID_ARGUMENT},
      {"text and ids", [](auto* r) { r->set_text("x"); r->add_token_ids(1); }, grpc::INVALID_ARGUMENT},
      {"top_logprobs", [](auto* r) { r->set_logprobs(true); r->set_top_logprobs(99); }, grpc::INVALID_ARGUMENT},
      {"stop id", [](auto* r) { r->mutable_stop()->add_stop_token_ids(1000); }, grpc::INVALID_ARGUMENT},
      {"empty stop", [](auto* r) { r->mutable_stop()->add_stop(""); }, grpc::INVALID_ARGUMENT},
      {"huge text", [](auto* r) { r->set_text(std::string(2 << 20, 'a')); }, grpc::INVALID_ARGUMENT},
      {"unknown session", [](auto* r) { r->set_session_id("00000000000000000000000000000000"); },
       grpc::NOT_FOUND},
      {"other model", [](auto* r) { r->set_model("gpt-17"); }, grpc::NOT_FOUND},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest r = GreedyRequest(session, {}, 3);
    c.edit(&r);
    const Generation g = Generate(stub, r);
    EXPECT_EQ(g.status.error_code(), c.code) << c.name << ": " << g.status.error_message();
    EXPECT_FALSE(g.status.error_message().empty()) << c.name;
    if (std::string(c.name) == "huge text") {
      EXPECT_NE(g.status.error_message().find("Append"), std::string::npos) << g.status.error_message();
    }
  }
  // A second Generate on a busy session.
  {
    grpc::ClientContext ctx;
    auto reader = stub.Generate(&ctx, GreedyRequest(session, {1}, 1000000));
    v1::GenerateResponse msg;
    ASSERT_TRUE(reader->Read(&msg));
    EXPECT_EQ(Generate(stub, GreedyRequest(session, {1}, 3)).status.error_code(), grpc::FAILED_PRECONDITION);
    grpc::ClientContext del_ctx;
    v1::DeleteSessionRequest del;
    del.set_session_id(session);
    v1::DeleteSessionResponse del_resp;
    EXPECT_EQ(stub.DeleteSession(&del_ctx, del, &del_resp).error_code(), grpc::FAILED_PRECONDITION);
    ctx.TryCancel();
    while (reader->Read(&msg)) {
    }
    reader->Finish();
  }
  // Deadline while generating.
  EXPECT_EQ(Generate(stub, GreedyRequest("", {1}, 1000000), /*deadline_ms=*/300).status.error_code(),
            grpc::DEADLINE_EXCEEDED);
  // Wait for the cancelled stream to release the session, then note its context.
  for (int i = 0; i < 100 && [&] {
         grpc::ClientContext c;
         v1::GetSessionRequest g;
         g.set_session_id(session);
         v1::Session s;
         return stub.GetSession(&c, g, &s).ok() && s.busy();
       }();
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int64_t before_flood = SessionTokens(stub, session);
  EXPECT_GT(before_flood, tokens);  // the cancelled stream kept what it generated

  // 1,000 malformed or out-of-range requests of every kind.
  std::mt19937 rng(7);
  for (int i = 0; i < 1000; ++i) {
    v1::GenerateRequest r = GreedyRequest(rng() % 2 ? session : "", {}, 3);
    cases[rng() % 11].edit(&r);  // the invalid-argument cases
    if (rng() % 5 == 0) r.set_session_id(absl::StrCat("bogus", i));
    if (rng() % 7 == 0) {
      grpc::ClientContext ctx;
      v1::ScoreRequest s;
      s.set_session_id(session);
      s.add_token_ids(-5);
      v1::ScoreResponse resp;
      EXPECT_FALSE(stub.Score(&ctx, s, &resp).ok());
      continue;
    }
    const Generation g = Generate(stub, r);
    ASSERT_FALSE(g.status.ok()) << i;
  }
  ASSERT_TRUE(server_->alive());
  EXPECT_EQ(SessionTokens(stub, session), before_flood);
  const Generation after = Generate(stub, GreedyRequest(session, {9}, 4));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.final.session_tokens(), before_flood + 1 + 4);
}

double GaugeValue(const std::string& metrics, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, name + "{") || absl::StartsWith(line, name + " ")) {
      return std::atof(std::string(line.substr(line.rfind(' ') + 1)).c_str());
    }
  }
  return -1;
}

TEST_F(ServerTest, CancelMidStreamBringsTheRunningGaugeBackToZero) {
  grpc::ClientContext ctx;
  auto reader = server_->stub().Generate(&ctx, GreedyRequest("", {1, 2}, 1000000));
  v1::GenerateResponse msg;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&msg));
  EXPECT_EQ(GaugeValue(HttpGet(server_->metrics_port(), "/metrics"), "blockserve_requests_running"), 1);
  const auto cancelled_at = std::chrono::steady_clock::now();
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::CANCELLED);
  double running = -1;
  while (std::chrono::steady_clock::now() - cancelled_at < std::chrono::seconds(5)) {
    running = GaugeValue(HttpGet(server_->metrics_port(), "/metrics"), "blockserve_requests_running");
    if (running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(running, 0);
  std::printf("running gauge back to 0 after %.1f ms\n",
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - cancelled_at).count());
}

TEST_F(ServerTest, MetricsAreValidPrometheusTextWithEveryFamily) {
  ASSERT_TRUE(Generate(server_->stub(), GreedyRequest("", {3}, 5)).status.ok());
  const std::string text = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_FALSE(text.empty());
  const std::regex sample(R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?([0-9.eE+-]+|\+Inf|-Inf|NaN)( [0-9]+)?$)re");
  const std::regex meta(R"re(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)re");
  int samples = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::string l(line);
    if (l[0] == '#') {
      EXPECT_TRUE(std::regex_match(l, meta)) << l;
    } else {
      EXPECT_TRUE(std::regex_match(l, sample)) << l;
      ++samples;
    }
  }
  EXPECT_GT(samples, 50);
  for (const char* family :
       {"blockserve_requests_total", "blockserve_generations_finished_total", "blockserve_prompt_tokens_total",
        "blockserve_generation_tokens_total", "blockserve_time_to_first_token_seconds",
        "blockserve_inter_token_latency_seconds", "blockserve_request_duration_seconds", "blockserve_queue_seconds",
        "blockserve_step_duration_seconds", "blockserve_step_batch_size", "blockserve_requests_running",
        "blockserve_requests_waiting", "blockserve_sessions", "blockserve_sessions_offloaded",
        "blockserve_session_state_bytes"}) {
    EXPECT_NE(text.find(absl::StrCat("# TYPE ", family, " ")), std::string::npos) << family;
  }
  EXPECT_NE(text.find("model=\"tiny-brt\""), std::string::npos);
  EXPECT_NE(text.find("code=\"INVALID_ARGUMENT\""), std::string::npos);
}

TEST_F(ServerTest, APythonClientGeneratedFromTheProtosStreamsAndHealthAndReflectionAnswer) {
  const char* src = std::getenv("BLOCKSERVE_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  const std::string cmd = absl::StrCat("/usr/bin/python3 ", src, "/tests/integration/python_client_test.py ", src,
                                       " ", server_->port(), " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  EXPECT_EQ(pclose(pipe), 0) << out;
  std::printf("%s", out.c_str());
}

// Runs a command; returns its exit status and fills `out` with stdout+stderr.
int RunCommand(const std::string& cmd, std::string* out) {
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  char buf[512];
  out->clear();
  while (fgets(buf, sizeof(buf), pipe) != nullptr) *out += buf;
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(ServerTest, TheCliStreamsContinuesSessionsAndReportsErrors) {
  const std::string cli = absl::StrCat(BinDir(), "/blockserve-cli --server=127.0.0.1:", server_->port(), " ");
  std::string out;
  ASSERT_EQ(RunCommand(cli + "health", &out), 0) << out;
  EXPECT_NE(out.find("SERVING"), std::string::npos);
  ASSERT_EQ(RunCommand(cli + "session create", &out), 0) << out;
  const std::string session(absl::StripAsciiWhitespace(out));
  ASSERT_EQ(session.size(), 32u) << out;
  ASSERT_EQ(RunCommand(cli + "generate --session=" + session + " --max_tokens=7 --temperature=0 --ignore_eos "
                                 "In the beginning",
                       &out),
            0)
      << out;
  EXPECT_NE(out.find("finish=length"), std::string::npos) << out;
  EXPECT_NE(out.find("generated_tokens=7"), std::string::npos) << out;
  ASSERT_EQ(RunCommand(cli + "session get " + session, &out), 0) << out;
  EXPECT_NE(out.find(session), std::string::npos);
  ASSERT_EQ(RunCommand(cli + "score --session=" + session + " God created the heaven", &out), 0) << out;
  EXPECT_NE(out.find("bits_per_token="), std::string::npos) << out;
  EXPECT_EQ(RunCommand(cli + "generate --session=0123 x", &out), 1);
  EXPECT_NE(out.find("NOT_FOUND"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(cli + "generate --top_p=7 x", &out), 1);
  EXPECT_NE(out.find("sampling.top_p"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(cli + "frobnicate", &out), 2);
  // Fork, export and import through the CLI.
  ASSERT_EQ(RunCommand(cli + "session fork " + session, &out), 0) << out;
  EXPECT_NE(out.find("tokens="), std::string::npos) << out;
  const std::string file = testing::MakeTempDir("cli_export") + "/s.session";
  ASSERT_EQ(RunCommand(cli + "session export " + session + " " + file, &out), 0) << out;
  ASSERT_EQ(RunCommand(cli + "session import " + file, &out), 0) << out;
  const std::string imported(absl::StripAsciiWhitespace(out));
  EXPECT_EQ(imported.size(), 32u);
  EXPECT_NE(imported, session);  // the id is taken here, so the import got a new one
  EXPECT_EQ(SessionTokens(server_->stub(), imported), SessionTokens(server_->stub(), session));
  EXPECT_EQ(RunCommand(cli + "session rewind " + session + " x", &out), 2);
  ASSERT_EQ(RunCommand(cli + "session delete " + session, &out), 0) << out;
}

TEST_F(ServerTest, TheLoadGeneratorReportsLatenciesAndThroughput) {
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat(BinDir(), "/blockserve-loadgen --server=127.0.0.1:", server_->port(),
                                    " --concurrency=4 --requests=12 --max_tokens=16 --prompt_tokens=8 --json"),
                       &out),
            0)
      << out;
  const size_t json = out.find('{');
  ASSERT_NE(json, std::string::npos) << out;
  const std::string j = out.substr(json);
  EXPECT_NE(j.find("\"requests_ok\": 12"), std::string::npos) << j;
  EXPECT_NE(j.find("\"requests_failed\": 0"), std::string::npos) << j;
  EXPECT_NE(j.find("\"output_tokens\": 192"), std::string::npos) << j;
  for (const char* key : {"\"ttft_ms\"", "\"itl_ms\"", "\"e2e_ms\"", "\"p99\""}) {
    EXPECT_NE(j.find(key), std::string::npos) << key << " in " << j;
  }
}

// --device=cuda without a usable GPU (or without CUDA in the build) fails at start with the
// reason; an unknown device is refused.
TEST(ServerDeviceTest, CudaWithoutAGpuFailsWithTheReason) {
  std::string out;
  const std::string server = absl::StrCat(BinDir(), "/blockserve-server --model=", ModelDir(), " --port=0 --metrics_port=0");
  EXPECT_EQ(RunCommand(server + " --device=cuda", &out), 1) << out;
  EXPECT_NE(out.find("device cuda: "), std::string::npos) << out;
  EXPECT_NE(out.find("use --device=cpu"), std::string::npos) << out;
  EXPECT_EQ(RunCommand(server + " --device=tpu", &out), 1) << out;
  EXPECT_NE(out.find("device 'tpu': must be cpu or cuda"), std::string::npos) << out;
}

TEST(ServerTlsTest, ServesOverTlsWithTheGivenCertificate) {
  const std::string dir = testing::MakeTempDir("tls");
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                                    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ", dir,
                                    "/key.pem -out ", dir, "/cert.pem"),
                       &out),
            0)
      << out;
  ServerProcess server(ModelDir(), {"--tls_cert=" + dir + "/cert.pem", "--tls_key=" + dir + "/key.pem"});
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = *testing::ReadFile(dir + "/cert.pem");
  auto channel = grpc::CreateChannel(absl::StrCat("localhost:", server.port()), grpc::SslCredentials(ssl));
  auto stub = v1::Blockserve::NewStub(channel);
  const Generation g = Generate(*stub, GreedyRequest("", {1, 2}, 3));
  EXPECT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.tokens.size(), 3u);
  // A plaintext client cannot talk to it.
  EXPECT_FALSE(Generate(server.stub(), GreedyRequest("", {1}, 1), 3000).status.ok());
}

TEST(ServerLimitsTest, AuthenticationSessionsOwnersAndAFullServer) {
  ServerProcess server(ModelDir(), {"--api_keys=alpha,beta", "--max_running=1", "--max_waiting=1",
                                    "--max_sessions=2"});
  auto& stub = server.stub();
  EXPECT_EQ(Generate(stub, GreedyRequest("", {1}, 2)).status.error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(Generate(stub, GreedyRequest("", {1}, 2), 60000, "wrong").status.error_code(), grpc::UNAUTHENTICATED);
  EXPECT_TRUE(Generate(stub, GreedyRequest("", {1}, 2), 60000, "alpha").status.ok());
  // Sessions belong to their key.
  const std::string mine = CreateSession(stub, "alpha");
  EXPECT_EQ(Generate(stub, GreedyRequest(mine, {1}, 2), 60000, "beta").status.error_code(), grpc::NOT_FOUND);
  EXPECT_TRUE(Generate(stub, GreedyRequest(mine, {1}, 2), 60000, "alpha").status.ok());
  CreateSession(stub, "beta");
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer alpha");
    v1::Session s;
    EXPECT_EQ(stub.CreateSession(&ctx, v1::CreateSessionRequest(), &s).error_code(), grpc::RESOURCE_EXHAUSTED);
  }
  // One running, one waiting, the third is refused at once.
  grpc::ClientContext c1, c2;
  c1.AddMetadata("authorization", "Bearer alpha");
  c2.AddMetadata("authorization", "Bearer alpha");
  auto r1 = stub.Generate(&c1, GreedyRequest("", {1}, 1000000));
  v1::GenerateResponse msg;
  ASSERT_TRUE(r1->Read(&msg));
  auto r2 = stub.Generate(&c2, GreedyRequest("", {2}, 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Generate(stub, GreedyRequest("", {3}, 5), 60000, "alpha").status.error_code(),
            grpc::RESOURCE_EXHAUSTED);
  c1.TryCancel();
  while (r1->Read(&msg)) {
  }
  r1->Finish();
  int r2_tokens = 0;
  while (r2->Read(&msg)) {
    if (msg.has_chunk()) r2_tokens += msg.chunk().tokens_size();
  }
  EXPECT_TRUE(r2->Finish().ok());
  EXPECT_EQ(r2_tokens, 5);
}

}  // namespace
}  // namespace blockserve
