// Test helpers for blockserve-server: a child-process server on ephemeral ports, a small
// synthetic model, and thin wrappers over the generated stubs.
#ifndef BLOCKSERVE_TESTS_TESTING_SERVER_FIXTURE_H_
#define BLOCKSERVE_TESTS_TESTING_SERVER_FIXTURE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "blockserve/v1/blockserve.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "models/model_config.h"

namespace blockserve::testing {

namespace v1 = ::blockserve::v1;

// $BLOCKSERVE_BINARY_DIR/bin.
std::string BinDir();
// A TCP port that was free a moment ago.
int FreePort();
// GET http://127.0.0.1:port/path; returns the body ("" on failure).
std::string HttpGet(int port, const std::string& path);

// A blockserve-server child process on ephemeral ports; stopped with SIGTERM (and checked to
// exit 0) by the destructor unless Kill() was called.
class ServerProcess {
 public:
  ServerProcess(const std::string& model_dir, std::vector<std::string> extra);
  ~ServerProcess();
  // SIGKILL, no cleanup: a crash.
  void Kill();
  bool alive() const;
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  v1::Blockserve::Stub& stub() { return *stub_; }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0, metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Blockserve::Stub> stub_;
};

// A tiny BRT (vocab 400, W = 32) with seeded random weights and the test tokenizer, written
// once per process.
ModelConfig TestConfig();
const std::string& ModelDir();

struct Generation {
  grpc::Status status;
  int chunks = 0;
  bool final_last = false;
  v1::Final final;
  std::vector<int32_t> tokens;
  std::string text;
};

Generation Generate(v1::Blockserve::Stub& stub, const v1::GenerateRequest& req, int deadline_ms = 60000,
                    const std::string& api_key = "");
v1::GenerateRequest GreedyRequest(const std::string& session, std::vector<int32_t> ids, int max_new);
std::string CreateSession(v1::Blockserve::Stub& stub, const std::string& api_key = "");
// The session's context length, or -1 when GetSession fails.
int64_t SessionTokens(v1::Blockserve::Stub& stub, const std::string& id);

}  // namespace blockserve::testing

#endif  // BLOCKSERVE_TESTS_TESTING_SERVER_FIXTURE_H_
