// Server test helpers: child-process server, synthetic model, stub wrappers.
#include "testing/server_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "gtest/gtest.h"
#include "models/synthetic_checkpoint.h"
#include "testing/test_util.h"

namespace blockserve::testing {

std::string BinDir() {
  const char* b = std::getenv("BLOCKSERVE_BINARY_DIR");
  return b ? std::string(b) + "/bin" : "bin";
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// GET http://127.0.0.1:port/path; returns the body ("" on failure).
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  (void)!write(fd, req.data(), req.size());
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, n);
  close(fd);
  const size_t body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

ServerProcess::ServerProcess(const std::string& model_dir, std::vector<std::string> extra) {
  metrics_port_ = FreePort();
  const std::string port_file = MakeTempDir("server_port") + "/port";
  std::vector<std::string> args = {BinDir() + "/blockserve-server", "--model=" + model_dir, "--host=127.0.0.1",
                                   "--port=0", "--port_file=" + port_file,
                                   absl::StrCat("--metrics_port=", metrics_port_), "--threads=1",
                                   "--grace_seconds=2"};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = fork();
  if (pid_ == 0) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  for (int i = 0; i < 600 && port_ == 0; ++i) {
    auto text = ReadFile(port_file);
    if (text.ok() && !text->empty()) port_ = std::atoi(text->c_str());
    if (port_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(port_, 0) << "the server did not start";
  grpc::ChannelArguments ch;
  ch.SetMaxReceiveMessageSize(64 << 20);
  channel_ = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials(), ch);
  stub_ = v1::Blockserve::NewStub(channel_);
}

ServerProcess::~ServerProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "server exit status " << status;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "the server did not stop within 30 s of SIGTERM";
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
}

void ServerProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool ServerProcess::alive() const { return pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == 0; }

ModelConfig TestConfig() {
  ModelConfig c;
  c.family = ModelFamily::kBrt;
  c.vocab_size = 400;
  c.d_model = 32;
  c.num_layers = 2;
  c.num_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 64;
  c.brt.model = BrtModel::kBrt;
  c.brt.window = 32;
  c.brt.segment_length = 128;
  c.brt.num_states = 8;
  c.brt.recurrent_layers = {1};
  return c;
}

const std::string& ModelDir() {
  static const std::string* dir = [] {
    auto* d = new std::string(MakeTempDir("server_model") + "/tiny-brt");
    std::filesystem::create_directories(*d);
    auto tok = SmallKjvTokenizer(400);
    BS_CHECK(tok.ok());
    BS_CHECK(WriteSyntheticModelDir(TestConfig(), *d, 3, DType::kF32, 0.3f, *tok).ok());
    return d;
  }();
  return *dir;
}


Generation Generate(v1::Blockserve::Stub& stub, const v1::GenerateRequest& req, int deadline_ms,
                    const std::string& api_key) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  auto reader = stub.Generate(&ctx, req);
  Generation g;
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    if (msg.has_chunk()) {
      ++g.chunks;
      g.final_last = false;
      for (const auto& t : msg.chunk().tokens()) g.tokens.push_back(t.token_id());
      g.text += msg.chunk().text();
    } else {
      g.final = msg.final();
      g.final_last = true;
    }
  }
  g.status = reader->Finish();
  return g;
}

v1::GenerateRequest GreedyRequest(const std::string& session, std::vector<int32_t> ids, int max_new) {
  v1::GenerateRequest r;
  r.set_session_id(session);
  for (int32_t id : ids) r.add_token_ids(id);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stop()->set_max_new_tokens(max_new);
  r.mutable_stop()->set_ignore_eos(true);
  return r;
}

std::string CreateSession(v1::Blockserve::Stub& stub, const std::string& api_key) {
  grpc::ClientContext ctx;
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  v1::Session s;
  const grpc::Status st = stub.CreateSession(&ctx, v1::CreateSessionRequest(), &s);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return s.session_id();
}

int64_t SessionTokens(v1::Blockserve::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  v1::GetSessionRequest req;
  req.set_session_id(id);
  v1::Session s;
  return stub.GetSession(&ctx, req, &s).ok() ? s.tokens() : -1;
}


}  // namespace blockserve::testing
