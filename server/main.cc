// blockserve-server: loads a model directory and serves it over gRPC, with health, reflection and metrics.
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file_io.h"
#include "base/logging.h"
#include "base/status.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "models/model_dir.h"
#include "models/model_runner_factory.h"
#include "prometheus/exposer.h"
#include "server/blockserve_service.h"
#include "server/metrics.h"

ABSL_FLAG(std::string, model, "", "Model directory (config.json, model.safetensors, tokenizer.model). Required.");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 50051, "gRPC port (0: pick a free one and print it).");
ABSL_FLAG(int, metrics_port, 9464, "Prometheus /metrics port (0: off).");
ABSL_FLAG(std::string, port_file, "", "Write the bound gRPC port to this file once serving (for scripts and tests).");
ABSL_FLAG(std::string, dtype, "f32", "Weights as f32 or bf16.");
ABSL_FLAG(int, threads, 0, "CPU threads for the model (0: all cores).");
ABSL_FLAG(std::string, device, "cpu", "Where the model runs: cpu, or cuda (fails with the reason when no GPU can be "
          "used).");
ABSL_FLAG(int, max_running, 32, "Sequences decoded together in one step.");
ABSL_FLAG(int, max_waiting, 256, "Requests allowed to wait; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, prefill_tokens_per_step, 512, "Prompt tokens prefilled per engine step when nothing decodes.");
ABSL_FLAG(int64_t, prefill_tokens_with_decodes, 64, "Prompt tokens prefilled per engine step while other sequences "
          "decode (at least one block; bounds their inter-token latency during a long prefill).");
ABSL_FLAG(int, max_sessions, 1024, "Live sessions; creating more gets RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, session_ttl_seconds, 3600, "Idle sessions are deleted after this long.");
ABSL_FLAG(std::string, state_dir, "", "Directory for session files: offloaded sessions, and every session at shutdown "
          "(restored at the next start). Empty: sessions live in memory only.");
ABSL_FLAG(int64_t, session_memory_bytes, 0, "Memory for live sessions; beyond it the least recently used idle ones are "
          "written to --state_dir and evicted (0: no limit).");
ABSL_FLAG(int, snapshot_interval_seconds, 10, "With --state_dir: a changed idle session is written within this long "
          "(what a crash can lose); 0: after every request.");
ABSL_FLAG(int, checkpoint_every_blocks, 0, "Keep a session checkpoint every K blocks so sessions can be forked or "
          "rewound (recomputing at most K blocks); 0: off.");
ABSL_FLAG(int, max_checkpoints, 4, "Checkpoints kept per session (the oldest go first).");
ABSL_FLAG(int64_t, max_prompt_bytes, 1 << 20, "Largest text in Generate/Score/Tokenize; more goes through Append.");
ABSL_FLAG(int64_t, max_prompt_tokens, 1 << 18, "Most token ids in Generate/Score.");
ABSL_FLAG(int64_t, max_message_bytes, 64 << 20, "Largest gRPC message the server accepts.");
ABSL_FLAG(std::string, api_keys, "", "Comma-separated API keys; when set, requests need 'authorization: Bearer <key>'.");
ABSL_FLAG(std::string, api_keys_file, "", "File with one API key per line (adds to --api_keys).");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve TLS (with --tls_key).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert.");
ABSL_FLAG(int, grace_seconds, 10, "On SIGTERM/SIGINT: time given to running streams before they are cancelled.");

namespace blockserve::server {
namespace {

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }

absl::StatusOr<std::vector<std::string>> ApiKeys() {
  std::vector<std::string> keys;
  for (absl::string_view k : absl::StrSplit(absl::GetFlag(FLAGS_api_keys), ',', absl::SkipWhitespace())) {
    keys.emplace_back(absl::StripAsciiWhitespace(k));
  }
  const std::string file = absl::GetFlag(FLAGS_api_keys_file);
  if (!file.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(file));
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
      keys.emplace_back(absl::StripAsciiWhitespace(line));
    }
    if (keys.empty()) return absl::InvalidArgumentError(absl::StrCat("--api_keys_file ", file, " holds no keys"));
  }
  return keys;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials() {
  const std::string cert = absl::GetFlag(FLAGS_tls_cert), key = absl::GetFlag(FLAGS_tls_key);
  if (cert.empty() != key.empty()) return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  if (cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadFileToString(cert));
  ASSIGN_OR_RETURN(pair.private_key, ReadFileToString(key));
  options.pem_key_cert_pairs.push_back(pair);
  return grpc::SslServerCredentials(options);
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) return absl::InvalidArgumentError("--model is required (a model directory)");
  ServiceOptions service_options;
  ASSIGN_OR_RETURN(service_options.api_keys, ApiKeys());
  service_options.max_prompt_bytes = absl::GetFlag(FLAGS_max_prompt_bytes);
  service_options.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  RunnerOptions runner_options;
  ASSIGN_OR_RETURN(runner_options.weight_dtype, ParseWeightDType(absl::GetFlag(FLAGS_dtype)));
  runner_options.num_threads = absl::GetFlag(FLAGS_threads);
  runner_options.device = absl::GetFlag(FLAGS_device);
  ASSIGN_OR_RETURN(auto credentials, Credentials());

  // The metrics carry the model's name (the directory name) from the start.
  std::string name = std::filesystem::path(dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(dir).lexically_normal().parent_path().filename().string();
  Metrics metrics(name);
  std::unique_ptr<prometheus::Exposer> exposer;
  if (absl::GetFlag(FLAGS_metrics_port) > 0) {
    const std::string address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_metrics_port));
    try {
      exposer = std::make_unique<prometheus::Exposer>(address);
    } catch (const std::exception& e) {
      return absl::UnavailableError(absl::StrCat("--metrics_port: cannot listen on ", address, ": ", e.what()));
    }
    exposer->RegisterCollectable(metrics.registry());
  }

  // Serve health (NOT_SERVING) and reflection while the model loads.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  BlockserveService service(service_options, &metrics);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)), credentials,
                           &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(absl::GetFlag(FLAGS_max_message_bytes), INT32_MAX)));
  builder.SetMaxSendMessageSize(static_cast<int>(std::min<int64_t>(absl::GetFlag(FLAGS_max_message_bytes), INT32_MAX)));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_host), ":",
                                               absl::GetFlag(FLAGS_port), " (in use?)"));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  BS_LOG(INFO) << "listening on " << absl::GetFlag(FLAGS_host) << ":" << port
               << (absl::GetFlag(FLAGS_tls_cert).empty() ? " (plaintext)" : " (TLS)") << "; metrics on "
               << (exposer ? absl::StrCat(":", absl::GetFlag(FLAGS_metrics_port), "/metrics") : "off")
               << "; API keys: " << (service_options.api_keys.empty() ? "off" : absl::StrCat(service_options.api_keys.size()));

  // Load the model.
  const auto load_start = std::chrono::steady_clock::now();
  ServingModel model;
  ASSIGN_OR_RETURN(model.tokenizer, Tokenizer::Load(dir + "/" + kTokenizerFileName));
  ASSIGN_OR_RETURN(model.runner, LoadModelRunner(dir, runner_options));
  engine::SessionStoreOptions store_options;
  store_options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  store_options.idle_ttl = absl::Seconds(absl::GetFlag(FLAGS_session_ttl_seconds));
  store_options.state_dir = absl::GetFlag(FLAGS_state_dir);
  store_options.memory_budget_bytes = absl::GetFlag(FLAGS_session_memory_bytes);
  store_options.snapshot_interval = absl::Seconds(absl::GetFlag(FLAGS_snapshot_interval_seconds));
  const int64_t block = model.runner->info().block_size;
  store_options.checkpoints.interval = absl::GetFlag(FLAGS_checkpoint_every_blocks) * block;
  store_options.checkpoints.max_kept = absl::GetFlag(FLAGS_max_checkpoints);
  if (store_options.memory_budget_bytes > 0 && store_options.state_dir.empty()) {
    return absl::InvalidArgumentError("--session_memory_bytes needs --state_dir (where evicted sessions go)");
  }
  model.sessions = std::make_unique<engine::SessionStore>(model.runner.get(), store_options);
  ASSIGN_OR_RETURN(const int restored, model.sessions->LoadDirectory());
  if (!store_options.state_dir.empty()) {
    BS_LOG(INFO) << "sessions: " << restored << " restored from " << store_options.state_dir;
  }
  engine::EngineOptions engine_options;
  engine_options.max_running = absl::GetFlag(FLAGS_max_running);
  engine_options.max_waiting = absl::GetFlag(FLAGS_max_waiting);
  engine_options.prefill_tokens_per_step = absl::GetFlag(FLAGS_prefill_tokens_per_step);
  engine_options.prefill_tokens_with_decodes = absl::GetFlag(FLAGS_prefill_tokens_with_decodes);
  engine_options.checkpoint_interval = store_options.checkpoints.enabled() ? store_options.checkpoints.interval : 0;
  model.engine = std::make_unique<engine::Engine>(
      model.runner.get(), model.tokenizer.get(), engine_options, [&metrics](const engine::StepStats& s) {
        if (s.items > 0) metrics.Step(s.items, s.seconds);
        metrics.SetRunning(s.running);
        metrics.SetWaiting(s.waiting);
      });
  const engine::ModelInfo& info = model.runner->info();
  BS_LOG(INFO) << "model " << info.name << ": " << info.family << ", " << info.num_parameters / 1e6
               << "M parameters, weights " << info.weight_dtype << " on " << info.device << ", vocab "
               << info.vocab_size << ", block " << info.block_size << ", state " << info.state_bytes
               << " bytes/session; loaded in "
               << std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count() << " s";
  BS_LOG(INFO) << "engine: max_running " << engine_options.max_running << ", max_waiting "
               << engine_options.max_waiting << ", prefill " << engine_options.prefill_tokens_per_step
               << " tokens/step (" << engine_options.prefill_tokens_with_decodes
               << " while decoding); sessions: max " << store_options.max_sessions << ", idle TTL "
               << absl::GetFlag(FLAGS_session_ttl_seconds) << " s, memory "
               << (store_options.memory_budget_bytes > 0 ? absl::StrCat(store_options.memory_budget_bytes, " bytes")
                                                         : "unlimited")
               << ", checkpoints every " << absl::GetFlag(FLAGS_checkpoint_every_blocks) << " block(s)";
  service.SetModel(&model);
  health->SetServingStatus(true);
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) RETURN_IF_ERROR(WriteStringToFileAtomically(port_file, absl::StrCat(port, "\n")));
  BS_LOG(INFO) << "serving on port " << port;

  // Housekeeping until a signal: session expiry and gauges.
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  auto last_sweep = std::chrono::steady_clock::now();
  while (g_signal.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (std::chrono::steady_clock::now() - last_sweep > std::chrono::seconds(5)) {
      const int expired = model.sessions->ExpireIdle(absl::Now());
      if (expired > 0) BS_LOG(INFO) << "expired " << expired << " idle session(s)";
      last_sweep = std::chrono::steady_clock::now();
    }
    const int offloaded = model.sessions->offloaded();
    metrics.SetSessions(model.sessions->size() - offloaded, offloaded,
                        static_cast<double>(model.sessions->memory_bytes()));
  }
  BS_LOG(INFO) << "signal " << g_signal.load() << ": draining (grace " << absl::GetFlag(FLAGS_grace_seconds) << " s)";
  health->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_grace_seconds)));
  model.engine->Shutdown();
  model.sessions->Shutdown();  // with --state_dir: every session is written
  service.SetModel(nullptr);
  BS_LOG(INFO) << "stopped";
  return absl::OkStatus();
}

}  // namespace
}  // namespace blockserve::server

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Serves a blockserve model directory over gRPC (API: docs/api.md).\n"
      "  blockserve-server --model DIR [--port 50051] [--metrics_port 9464] [--api_keys k1,k2] ...");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = blockserve::server::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "blockserve-server: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
