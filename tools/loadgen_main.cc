// blockserve-loadgen: a load generator for blockserve-server. Closed loop (N clients, each
// sending its next request when the previous one ends) or open loop (Poisson arrivals); measures
// time to first token, inter-token latency, end-to-end latency and throughput on the client, and
// optionally runs one long background prefill beside the load to measure its interference.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/file_io.h"
#include "base/utf8.h"
#include "blockserve/v1/blockserve.grpc.pb.h"

// Connection.
ABSL_FLAG(std::string, server, "localhost:50051", "Server address (host:port).");
ABSL_FLAG(std::string, api_key, "",
          "API key, sent as 'authorization: Bearer KEY' (default: $BLOCKSERVE_API_KEY).");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CA that signed the server's certificate; enables TLS.");
ABSL_FLAG(std::string, model, "", "Model name for requests (empty: the server's model).");
// Load shape.
ABSL_FLAG(int, concurrency, 0,
          "Closed loop: this many clients, each sending its next request when the previous one "
          "finishes (default 1 when --rate is not given).");
ABSL_FLAG(double, rate, 0, "Open loop: Poisson arrivals at this many requests per second.");
ABSL_FLAG(int, max_inflight, 128,
          "Open loop: at most this many requests in flight; later arrivals wait in the client.");
ABSL_FLAG(std::optional<int64_t>, requests, std::nullopt,
          "Measured requests in all (default 100 unless --duration_seconds is given).");
ABSL_FLAG(double, duration_seconds, 0,
          "Stop sending new requests after this many seconds (0: run --requests).");
ABSL_FLAG(int, warmup_requests, 0, "Requests sent (and not measured) before the measured run.");
ABSL_FLAG(double, timeout_seconds, 0, "Deadline of each request in seconds (0: none).");
// Requests.
ABSL_FLAG(int, prompt_tokens, 16,
          "Random token ids in [4, vocab) per request, unless --prompt_text/--prompt_file.");
ABSL_FLAG(std::string, prompt_text, "", "The prompt text of every request.");
ABSL_FLAG(std::string, prompt_file, "", "A file holding the prompt text of every request.");
ABSL_FLAG(int, max_tokens, 128,
          "New tokens per request (sent with ignore_eos: every request generates exactly this).");
ABSL_FLAG(float, temperature, 0, "Sampling temperature (0: greedy).");
ABSL_FLAG(std::string, sessions, "none",
          "none: one-off requests; new: CreateSession for every request (deleted after it); "
          "multiturn: each client keeps a session for --turns requests.");
ABSL_FLAG(int, turns, 4, "--sessions=multiturn: requests per session (the first and follow-ups).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the prompts, the arrivals and the sampling.");
// Report.
ABSL_FLAG(double, slo_ttft_ms, 0, "Goodput: time to first token at most this (0: no limit).");
ABSL_FLAG(double, slo_itl_ms, 0,
          "Goodput: mean inter-token latency of the request at most this (0: no limit).");
ABSL_FLAG(bool, json, false, "Print one JSON object instead of the table.");
// Background prefill.
ABSL_FLAG(int64_t, background_prefill_tokens, 0,
          "One extra client feeds this many random tokens while the load runs (0: none).");
ABSL_FLAG(std::string, background_via, "generate",
          "generate: one Generate with max_new_tokens 1 (at most the server's "
          "--max_prompt_tokens); append: Append into a new session, 16384 ids a message.");
ABSL_FLAG(double, background_delay_seconds, 1,
          "Start the background prefill this long after the measured load starts.");

namespace blockserve {
namespace {

namespace v1 = ::blockserve::v1;
using Clock = std::chrono::steady_clock;

constexpr char kUsage[] = R"(a load generator for blockserve-server.

usage: blockserve-loadgen --server=HOST:PORT [FLAGS]

  closed loop:  --concurrency=N             N clients, each sends its next request when its
                                            previous one ends
  open loop:    --rate=R [--max_inflight=M] Poisson arrivals, R requests/s
  how much:     --requests=M | --duration_seconds=S   [--warmup_requests=W]
  requests:     --prompt_tokens=P | --prompt_text=T | --prompt_file=F
                --max_tokens=T (ignore_eos: exactly T new tokens) --temperature=0
                --sessions=none|new|multiturn [--turns=K]
  report:       --slo_ttft_ms --slo_itl_ms (goodput) --json
  interference: --background_prefill_tokens=K [--background_via=generate|append]
                [--background_delay_seconds=1]

Measured on the client: TTFT = send -> first chunk with tokens; ITL = gap between chunks with
tokens divided by the tokens of the later chunk, one sample per token (the first chunk's tokens
give none); E2E = send -> end of the stream. Exit status: 0 when every measured request
succeeded, 1 when some failed, 2 on a usage error.)";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "blockserve-loadgen: %s\n\n%s\n", message.c_str(), kUsage);
  return 2;
}

// gRPC and absl number their status codes alike.
std::string StatusCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

enum class SessionMode { kNone, kNew, kMultiturn };

struct Config {
  std::string api_key;
  std::string model;
  double timeout_seconds = 0;
  int vocab_size = 0;
  int prompt_tokens = 0;
  std::string prompt_text;  // used when not empty
  int max_tokens = 0;
  float temperature = 0;
  SessionMode sessions = SessionMode::kNone;
  int turns = 1;
  uint64_t seed = 0;
};

// One measured Generate (or the session call before it that failed).
struct Result {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string error;  // "RPC: message" when code is not OK
  double send = 0;    // seconds since the phase started
  double ttft = -1;   // -1: no token arrived
  double e2e = 0;
  int64_t tokens = 0;
  std::vector<float> itl;     // seconds, one per token after the first chunk
  std::vector<float> itl_at;  // when each of those tokens arrived (seconds since the phase start)
  bool ok() const { return code == grpc::StatusCode::OK; }
};

void Prepare(const Config& config, grpc::ClientContext* context) {
  if (!config.api_key.empty()) context->AddMetadata("authorization", "Bearer " + config.api_key);
  if (config.timeout_seconds > 0) {
    context->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(config.timeout_seconds * 1e6)));
  }
}

void RandomTokens(int vocab_size, int64_t n, std::mt19937_64* rng,
                  google::protobuf::RepeatedField<int32_t>* out) {
  std::uniform_int_distribution<int32_t> dist(4, vocab_size - 1);
  out->Reserve(static_cast<int>(n));
  for (int64_t i = 0; i < n; ++i) out->Add(dist(*rng));
}

// One client: runs requests one at a time; in multiturn mode keeps its conversation's session.
class Worker {
 public:
  Worker(const Config& config, std::shared_ptr<grpc::Channel> channel, uint64_t seed,
         Clock::time_point t0)
      : config_(config), stub_(v1::Blockserve::NewStub(channel)), rng_(seed), t0_(t0) {}
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker() { DropSession(); }

  Result RunOne(int64_t index) {
    Result result;
    std::string session_id;
    if (config_.sessions == SessionMode::kNew ||
        (config_.sessions == SessionMode::kMultiturn &&
         (session_.empty() || turns_done_ >= config_.turns))) {
      DropSession();
      result.send = Seconds(Clock::now() - t0_);
      grpc::ClientContext context;
      Prepare(config_, &context);
      v1::CreateSessionRequest request;
      request.set_model(config_.model);
      v1::Session session;
      const grpc::Status status = stub_->CreateSession(&context, request, &session);
      if (!status.ok()) {
        result.code = status.error_code();
        result.error = "CreateSession: " + status.error_message();
        return result;
      }
      session_ = session.session_id();
      turns_done_ = 0;
    }
    if (config_.sessions != SessionMode::kNone) session_id = session_;

    v1::GenerateRequest request;
    request.set_model(config_.model);
    request.set_session_id(session_id);
    if (!config_.prompt_text.empty()) {
      request.set_text(config_.prompt_text);
    } else {
      RandomTokens(config_.vocab_size, config_.prompt_tokens, &rng_, request.mutable_token_ids());
    }
    request.mutable_sampling()->set_temperature(config_.temperature);
    request.mutable_sampling()->set_seed(config_.seed * 1000003 + static_cast<uint64_t>(index));
    request.mutable_stop()->set_max_new_tokens(config_.max_tokens);
    request.mutable_stop()->set_ignore_eos(true);

    grpc::ClientContext context;
    Prepare(config_, &context);
    const Clock::time_point start = Clock::now();
    result.send = Seconds(start - t0_);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    v1::GenerateResponse response;
    std::optional<Clock::time_point> last;
    while (reader->Read(&response)) {
      if (!response.has_chunk() || response.chunk().tokens_size() == 0) continue;
      const Clock::time_point now = Clock::now();
      const int n = response.chunk().tokens_size();
      result.tokens += n;
      if (!last) {
        result.ttft = Seconds(now - start);
      } else {
        const float gap = static_cast<float>(Seconds(now - *last) / n);
        const float at = static_cast<float>(Seconds(now - t0_));
        for (int i = 0; i < n; ++i) {
          result.itl.push_back(gap);
          result.itl_at.push_back(at);
        }
      }
      last = now;
    }
    const grpc::Status status = reader->Finish();
    result.e2e = Seconds(Clock::now() - start);
    if (!status.ok()) {
      result.code = status.error_code();
      result.error = "Generate: " + status.error_message();
    }
    if (config_.sessions == SessionMode::kNew || !status.ok()) {
      DropSession();
    } else {
      ++turns_done_;
    }
    return result;
  }

  // Deletes the session this client holds, if any (errors ignored: it expires anyway).
  void DropSession() {
    if (session_.empty()) return;
    grpc::ClientContext context;
    Prepare(config_, &context);
    v1::DeleteSessionRequest request;
    request.set_session_id(session_);
    v1::DeleteSessionResponse response;
    (void)stub_->DeleteSession(&context, request, &response);
    session_.clear();
  }

 private:
  const Config& config_;
  std::unique_ptr<v1::Blockserve::Stub> stub_;
  std::mt19937_64 rng_;
  const Clock::time_point t0_;
  std::string session_;
  int turns_done_ = 0;
};

// Channels for the clients: one connection per 32 of them (a local subchannel pool keeps
// channels from sharing one connection).
class Channels {
 public:
  Channels(const std::string& target, std::shared_ptr<grpc::ChannelCredentials> credentials)
      : target_(target), credentials_(std::move(credentials)) {}
  std::shared_ptr<grpc::Channel> Get(int client) {
    const size_t i = static_cast<size_t>(client / 32);
    while (channels_.size() <= i) channels_.push_back(Make());
    return channels_[i];
  }
  std::shared_ptr<grpc::Channel> Make() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(target_, credentials_, args);
  }

 private:
  const std::string target_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
};

struct Phase {
  std::vector<Result> results;
  double duration = 0;           // start -> the last request ended
  int64_t delayed_arrivals = 0;  // open loop: arrivals that waited for a free slot
  double max_arrival_wait = 0;   // open loop: longest such wait (seconds)
};

// How many requests a phase runs, and until when it sends new ones.
struct Budget {
  int64_t requests = -1;  // -1: unbounded
  double seconds = 0;     // 0: unbounded
};

class Collector {
 public:
  void Add(Result r) {
    std::lock_guard<std::mutex> lock(mu_);
    results_.push_back(std::move(r));
  }
  std::vector<Result> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(results_);
  }

 private:
  std::mutex mu_;
  std::vector<Result> results_;
};

Phase RunClosedLoop(const Config& config, Channels* channels, int clients, Budget budget,
                    uint64_t seed, Clock::time_point t0) {
  std::atomic<int64_t> next{0};
  Collector collector;
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int c = 0; c < clients; ++c) {
    workers.push_back(std::make_unique<Worker>(config, channels->Get(c), seed + c, t0));
  }
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      while (true) {
        if (budget.seconds > 0 && Seconds(Clock::now() - t0) >= budget.seconds) break;
        const int64_t index = next.fetch_add(1);
        if (budget.requests >= 0 && index >= budget.requests) break;
        collector.Add(workers[c]->RunOne(index));
      }
      workers[c]->DropSession();
    });
  }
  for (std::thread& t : threads) t.join();
  Phase phase;
  phase.results = collector.Take();
  for (const Result& r : phase.results) phase.duration = std::max(phase.duration, r.send + r.e2e);
  return phase;
}

Phase RunOpenLoop(const Config& config, Channels* channels, double rate, int max_inflight,
                  Budget budget, uint64_t seed, Clock::time_point t0) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int64_t, Clock::time_point>> queue;  // index, arrival time
  bool closed = false;
  Phase phase;
  Collector collector;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int c = 0; c < max_inflight; ++c) {
    workers.push_back(std::make_unique<Worker>(config, channels->Get(c), seed + c, t0));
  }
  std::vector<std::thread> threads;
  for (int c = 0; c < max_inflight; ++c) {
    threads.emplace_back([&, c] {
      while (true) {
        std::pair<int64_t, Clock::time_point> item;
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return closed || !queue.empty(); });
          if (queue.empty()) break;
          item = queue.front();
          queue.pop_front();
          const double wait = Seconds(Clock::now() - item.second);
          if (wait > 1e-3) {
            ++phase.delayed_arrivals;
            phase.max_arrival_wait = std::max(phase.max_arrival_wait, wait);
          }
        }
        collector.Add(workers[c]->RunOne(item.first));
      }
      workers[c]->DropSession();
    });
  }
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::exponential_distribution<double> gap(rate);
  double at = 0;
  for (int64_t i = 0; budget.requests < 0 || i < budget.requests; ++i) {
    if (i > 0) at += gap(rng);
    if (budget.seconds > 0 && at >= budget.seconds) break;
    const Clock::time_point when =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at));
    std::this_thread::sleep_until(when);
    {
      std::lock_guard<std::mutex> lock(mu);
      queue.emplace_back(i, when);
    }
    cv.notify_one();
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    closed = true;
  }
  cv.notify_all();
  for (std::thread& t : threads) t.join();
  phase.results = collector.Take();
  for (const Result& r : phase.results) phase.duration = std::max(phase.duration, r.send + r.e2e);
  return phase;
}

// The background prefill: one long input fed while the load runs.
struct Background {
  std::string via;
  int64_t tokens = 0;
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string error;
  double start = 0;  // seconds since the measured phase started
  double end = 0;
  int64_t tokens_processed = 0;  // as the server reports
};

void RunBackground(const Config& config, std::shared_ptr<grpc::Channel> channel,
                   Clock::time_point t0, double delay, Background* bg) {
  std::unique_ptr<v1::Blockserve::Stub> stub = v1::Blockserve::NewStub(channel);
  std::mt19937_64 rng(config.seed ^ 0x5bd1e995ULL);
  // The input is drawn before the clock starts.
  google::protobuf::RepeatedField<int32_t> ids;
  RandomTokens(config.vocab_size, bg->tokens, &rng, &ids);
  std::this_thread::sleep_until(
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(delay)));
  grpc::Status status;
  if (bg->via == "generate") {
    v1::GenerateRequest request;
    request.set_model(config.model);
    *request.mutable_token_ids() = std::move(ids);
    request.mutable_sampling()->set_temperature(0);
    request.mutable_stop()->set_max_new_tokens(1);
    request.mutable_stop()->set_ignore_eos(true);
    grpc::ClientContext context;
    Prepare(config, &context);
    bg->start = Seconds(Clock::now() - t0);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      if (response.has_final()) bg->tokens_processed = response.final().prompt_tokens();
    }
    status = reader->Finish();
    bg->end = Seconds(Clock::now() - t0);
  } else {
    std::string session_id;
    {
      grpc::ClientContext context;
      Prepare(config, &context);
      v1::CreateSessionRequest request;
      request.set_model(config.model);
      v1::Session session;
      status = stub->CreateSession(&context, request, &session);
      session_id = session.session_id();
    }
    bg->start = bg->end = Seconds(Clock::now() - t0);
    if (status.ok()) {
      // Append is not bounded by the deadline of the load's requests.
      grpc::ClientContext context;
      if (!config.api_key.empty()) {
        context.AddMetadata("authorization", "Bearer " + config.api_key);
      }
      v1::AppendResponse response;
      bg->start = Seconds(Clock::now() - t0);
      std::unique_ptr<grpc::ClientWriter<v1::AppendRequest>> writer =
          stub->Append(&context, &response);
      constexpr int kIdsPerMessage = 16384;
      bool open = true;
      for (int i = 0; open && (i < ids.size() || i == 0); i += kIdsPerMessage) {
        v1::AppendRequest message;
        if (i == 0) message.set_session_id(session_id);
        const int n = std::min(kIdsPerMessage, ids.size() - i);
        message.mutable_token_ids()->mutable_ids()->Add(ids.begin() + i, ids.begin() + i + n);
        open = writer->Write(message);
      }
      if (open) writer->WritesDone();
      status = writer->Finish();
      bg->end = Seconds(Clock::now() - t0);
      bg->tokens_processed = response.tokens_appended();
      grpc::ClientContext delete_context;
      Prepare(config, &delete_context);
      v1::DeleteSessionRequest request;
      request.set_session_id(session_id);
      v1::DeleteSessionResponse deleted;
      (void)stub->DeleteSession(&delete_context, request, &deleted);
    }
  }
  bg->code = status.error_code();
  if (!status.ok()) bg->error = status.error_message();
}

struct Stats {
  size_t n = 0;
  double mean = NAN, p50 = NAN, p90 = NAN, p99 = NAN, max = NAN;
};

// Percentiles by linear interpolation between the closest ranks.
Stats Summarize(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  auto pct = [&](double p) {
    const double pos = p / 100 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
  };
  s.p50 = pct(50);
  s.p90 = pct(90);
  s.p99 = pct(99);
  s.max = v.back();
  return s;
}

std::string Num(double x, int decimals = 3) {
  return std::isfinite(x) ? absl::StrFormat("%.*f", decimals, x) : "null";
}

std::string StatsJson(const Stats& s) {
  return absl::StrFormat(R"({"n": %d, "mean": %s, "p50": %s, "p90": %s, "p99": %s, "max": %s})",
                         s.n, Num(s.mean), Num(s.p50), Num(s.p90), Num(s.p99), Num(s.max));
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string StatsRow(const char* name, const Stats& s) {
  auto cell = [](double x) { return std::isfinite(x) ? Num(x) : std::string("-"); };
  return absl::StrFormat("  %-10s %10s %10s %10s %10s %10s\n", name, cell(s.p50), cell(s.p90),
                         cell(s.p99), cell(s.mean), cell(s.max));
}

int Run(std::vector<char*> args) {
  if (args.size() > 1) return UsageError(absl::StrCat("unexpected argument: ", args[1]));
  Config config;
  config.api_key = absl::GetFlag(FLAGS_api_key);
  if (config.api_key.empty() && std::getenv("BLOCKSERVE_API_KEY") != nullptr) {
    config.api_key = std::getenv("BLOCKSERVE_API_KEY");
  }
  config.model = absl::GetFlag(FLAGS_model);
  config.timeout_seconds = absl::GetFlag(FLAGS_timeout_seconds);
  config.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  config.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  config.temperature = absl::GetFlag(FLAGS_temperature);
  config.turns = absl::GetFlag(FLAGS_turns);
  config.seed = absl::GetFlag(FLAGS_seed);
  const std::string sessions = absl::GetFlag(FLAGS_sessions);
  if (sessions == "none") {
    config.sessions = SessionMode::kNone;
  } else if (sessions == "new") {
    config.sessions = SessionMode::kNew;
  } else if (sessions == "multiturn") {
    config.sessions = SessionMode::kMultiturn;
  } else {
    return UsageError("--sessions must be none, new or multiturn");
  }
  int concurrency = absl::GetFlag(FLAGS_concurrency);
  const double rate = absl::GetFlag(FLAGS_rate);
  const int max_inflight = absl::GetFlag(FLAGS_max_inflight);
  if (concurrency < 0 || rate < 0) return UsageError("--concurrency and --rate must be >= 0");
  if (concurrency > 0 && rate > 0) return UsageError("give --concurrency or --rate, not both");
  if (rate == 0 && concurrency == 0) concurrency = 1;
  if (max_inflight < 1) return UsageError("--max_inflight must be >= 1");
  const std::optional<int64_t> requests_flag = absl::GetFlag(FLAGS_requests);
  const double duration_flag = absl::GetFlag(FLAGS_duration_seconds);
  if (duration_flag < 0) return UsageError("--duration_seconds must be >= 0");
  if (requests_flag && *requests_flag < 1) return UsageError("--requests must be >= 1");
  Budget budget;
  budget.seconds = duration_flag;
  budget.requests = requests_flag ? *requests_flag : (duration_flag > 0 ? -1 : 100);
  const int warmup = absl::GetFlag(FLAGS_warmup_requests);
  if (warmup < 0) return UsageError("--warmup_requests must be >= 0");
  if (config.max_tokens < 1) return UsageError("--max_tokens must be >= 1");
  if (config.prompt_tokens < 0) return UsageError("--prompt_tokens must be >= 0");
  if (config.turns < 1) return UsageError("--turns must be >= 1");
  if (config.temperature < 0) return UsageError("--temperature must be >= 0");
  if (config.timeout_seconds < 0) return UsageError("--timeout_seconds must be >= 0");
  const std::string prompt_file = absl::GetFlag(FLAGS_prompt_file);
  config.prompt_text = absl::GetFlag(FLAGS_prompt_text);
  if (!prompt_file.empty()) {
    if (!config.prompt_text.empty()) return UsageError("give --prompt_text or --prompt_file");
    absl::StatusOr<std::string> text = ReadFileToString(prompt_file);
    if (!text.ok()) {
      std::fprintf(stderr, "blockserve-loadgen: --prompt_file: %s\n",
                   std::string(text.status().message()).c_str());
      return 1;
    }
    config.prompt_text = std::move(*text);
    if (config.prompt_text.empty()) return UsageError("--prompt_file is empty");
  }
  if (!IsValidUtf8(config.prompt_text)) return UsageError("the prompt text is not valid UTF-8");
  if (config.prompt_text.empty() && config.prompt_tokens == 0 &&
      config.sessions != SessionMode::kMultiturn) {
    return UsageError(
        "requests need a prompt: --prompt_tokens > 0, --prompt_text or --prompt_file");
  }
  const int64_t bg_tokens = absl::GetFlag(FLAGS_background_prefill_tokens);
  const std::string bg_via = absl::GetFlag(FLAGS_background_via);
  const double bg_delay = absl::GetFlag(FLAGS_background_delay_seconds);
  if (bg_tokens < 0) return UsageError("--background_prefill_tokens must be >= 0");
  if (bg_via != "generate" && bg_via != "append") {
    return UsageError("--background_via must be generate or append");
  }
  if (bg_delay < 0) return UsageError("--background_delay_seconds must be >= 0");

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
    const absl::StatusOr<std::string> pem = ReadFileToString(ca);
    if (!pem.ok()) {
      std::fprintf(stderr, "blockserve-loadgen: --tls_ca: %s\n",
                   std::string(pem.status().message()).c_str());
      return 1;
    }
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = *pem;
    credentials = grpc::SslCredentials(options);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  const std::string target = absl::GetFlag(FLAGS_server);
  Channels channels(target, credentials);

  // The model's vocabulary, for the random prompts.
  std::string model_name;
  {
    std::unique_ptr<v1::Blockserve::Stub> stub = v1::Blockserve::NewStub(channels.Get(0));
    grpc::ClientContext context;
    Prepare(config, &context);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    context.set_wait_for_ready(true);  // the server may still be starting
    v1::ListModelsResponse response;
    const grpc::Status status = stub->ListModels(&context, v1::ListModelsRequest(), &response);
    if (!status.ok()) {
      std::fprintf(stderr, "blockserve-loadgen: ListModels: %s: %s\n",
                   StatusCodeName(status.error_code()).c_str(), status.error_message().c_str());
      return 1;
    }
    for (const v1::ModelInfo& m : response.models()) {
      if (config.model.empty() || m.name() == config.model) {
        config.vocab_size = m.vocab_size();
        model_name = m.name();
        break;
      }
    }
    if (model_name.empty()) {
      std::fprintf(stderr, "blockserve-loadgen: the server has no model named '%s'\n",
                   config.model.c_str());
      return 1;
    }
    if (config.vocab_size <= 4) {
      std::fprintf(stderr, "blockserve-loadgen: vocabulary of %d is too small\n",
                   config.vocab_size);
      return 1;
    }
  }
  const int clients = rate > 0 ? max_inflight : concurrency;

  if (warmup > 0) {
    Budget warmup_budget;
    warmup_budget.requests = warmup;
    const Phase w = RunClosedLoop(config, &channels, std::min(clients, warmup), warmup_budget,
                                  config.seed + 7777777, Clock::now());
    int64_t failed = 0;
    for (const Result& r : w.results) failed += r.ok() ? 0 : 1;
    if (failed > 0) {
      std::fprintf(stderr, "blockserve-loadgen: warmup: %lld of %d requests failed\n",
                   static_cast<long long>(failed), warmup);
    }
  }

  Background bg;
  bg.via = bg_via;
  bg.tokens = bg_tokens;
  std::thread bg_thread;
  const Clock::time_point t0 = Clock::now();
  if (bg_tokens > 0) {
    bg_thread = std::thread(RunBackground, std::cref(config), channels.Make(), t0, bg_delay, &bg);
  }
  Phase phase = rate > 0
                    ? RunOpenLoop(config, &channels, rate, max_inflight, budget, config.seed, t0)
                    : RunClosedLoop(config, &channels, concurrency, budget, config.seed, t0);
  if (bg_thread.joinable()) bg_thread.join();

  // Aggregate.
  int64_t ok = 0, failed = 0, tokens = 0, good = 0, short_requests = 0;
  std::map<std::string, int64_t> errors;
  std::map<std::string, std::string> first_error;
  std::vector<double> ttft, itl, e2e, itl_during, itl_outside;
  const double slo_ttft = absl::GetFlag(FLAGS_slo_ttft_ms);
  const double slo_itl = absl::GetFlag(FLAGS_slo_itl_ms);
  double load_end = 0;  // the last token or end of any request
  for (const Result& r : phase.results) {
    tokens += r.tokens;
    load_end = std::max(load_end, r.send + r.e2e);
    if (!r.ok()) {
      ++failed;
      const std::string code = StatusCodeName(r.code);
      if (errors[code]++ == 0) first_error[code] = r.error;
      continue;
    }
    ++ok;
    if (r.tokens < config.max_tokens) ++short_requests;
    if (r.ttft >= 0) ttft.push_back(r.ttft * 1e3);
    e2e.push_back(r.e2e * 1e3);
    double itl_sum = 0;
    for (size_t i = 0; i < r.itl.size(); ++i) {
      const double ms = r.itl[i] * 1e3;
      itl.push_back(ms);
      itl_sum += ms;
      if (bg_tokens > 0) {
        (r.itl_at[i] >= bg.start && r.itl_at[i] <= bg.end ? itl_during : itl_outside).push_back(ms);
      }
    }
    const double mean_itl = r.itl.empty() ? 0 : itl_sum / static_cast<double>(r.itl.size());
    const bool ttft_ok = slo_ttft <= 0 || (r.ttft >= 0 && r.ttft * 1e3 <= slo_ttft);
    const bool itl_ok = slo_itl <= 0 || mean_itl <= slo_itl;
    if (ttft_ok && itl_ok) ++good;
  }
  const double duration = phase.duration;
  const double req_per_s = duration > 0 ? static_cast<double>(ok) / duration : NAN;
  const double tok_per_s = duration > 0 ? static_cast<double>(tokens) / duration : NAN;
  const double goodput = duration > 0 ? static_cast<double>(good) / duration : NAN;
  const Stats ttft_s = Summarize(ttft), itl_s = Summarize(itl), e2e_s = Summarize(e2e);
  const Stats during_s = Summarize(itl_during), outside_s = Summarize(itl_outside);
  const bool bg_outlasted = bg_tokens > 0 && bg.code == grpc::StatusCode::OK && bg.end > load_end;
  if (bg_outlasted) {
    std::fprintf(stderr,
                 "blockserve-loadgen: warning: the background prefill ended %.2f s after the "
                 "load; give more --requests or --duration_seconds\n",
                 bg.end - load_end);
  }
  for (const auto& [code, message] : first_error) {
    std::fprintf(stderr, "blockserve-loadgen: %s (e.g.): %s\n", code.c_str(), message.c_str());
  }

  const std::string load =
      rate > 0
          ? absl::StrFormat("open loop, Poisson %.3g req/s, max_inflight %d", rate, max_inflight)
          : absl::StrFormat("closed loop, concurrency %d", concurrency);
  const std::string prompt = config.prompt_text.empty()
                                 ? absl::StrFormat("%d random tokens", config.prompt_tokens)
                                 : absl::StrFormat("text of %d bytes", config.prompt_text.size());
  if (absl::GetFlag(FLAGS_json)) {
    std::string out = "{";
    absl::StrAppendFormat(&out, R"("server": %s, "model": %s, "vocab_size": %d, )",
                          JsonString(target), JsonString(model_name), config.vocab_size);
    absl::StrAppendFormat(
        &out,
        R"("config": {"mode": "%s", "concurrency": %d, "rate": %s, "max_inflight": %d, )"
        R"("requests": %s, "duration_seconds": %s, "warmup_requests": %d, "prompt_tokens": %d, )"
        R"("prompt_text_bytes": %d, "max_tokens": %d, "temperature": %s, "sessions": "%s", )"
        R"("turns": %d, "seed": %d, "slo_ttft_ms": %s, "slo_itl_ms": %s}, )",
        rate > 0 ? "open" : "closed", rate > 0 ? 0 : concurrency, Num(rate), max_inflight,
        budget.requests < 0 ? "null" : absl::StrCat(budget.requests), Num(budget.seconds), warmup,
        config.prompt_text.empty() ? config.prompt_tokens : 0, config.prompt_text.size(),
        config.max_tokens, Num(config.temperature), sessions, config.turns, config.seed,
        Num(slo_ttft), Num(slo_itl));
    std::vector<std::string> error_items;
    for (const auto& [code, n] : errors)
      error_items.push_back(absl::StrFormat("\"%s\": %d", code, n));
    absl::StrAppendFormat(
        &out,
        R"("requests_ok": %d, "requests_failed": %d, "errors": {%s}, "short_requests": %d, )"
        R"("duration_s": %s, "request_throughput": %s, "output_tokens": %d, )"
        R"("output_token_throughput": %s, "goodput_requests": %d, "goodput": %s, )",
        ok, failed, absl::StrJoin(error_items, ", "), short_requests, Num(duration), Num(req_per_s),
        tokens, Num(tok_per_s), good, Num(goodput));
    if (rate > 0) {
      absl::StrAppendFormat(&out, R"("delayed_arrivals": %d, "max_arrival_wait_s": %s, )",
                            phase.delayed_arrivals, Num(phase.max_arrival_wait));
    }
    absl::StrAppendFormat(&out, R"("ttft_ms": %s, "itl_ms": %s, "e2e_ms": %s)", StatsJson(ttft_s),
                          StatsJson(itl_s), StatsJson(e2e_s));
    if (bg_tokens > 0) {
      absl::StrAppendFormat(
          &out,
          R"(, "background": {"via": "%s", "tokens": %d, "tokens_processed": %d, "ok": %s, )"
          R"("code": "%s", "start_s": %s, "end_s": %s, "duration_s": %s, "tokens_per_s": %s, )"
          R"("outlasted_load": %s, "itl_ms_during": %s, "itl_ms_outside": %s})",
          bg.via, bg.tokens, bg.tokens_processed,
          bg.code == grpc::StatusCode::OK ? "true" : "false", StatusCodeName(bg.code),
          Num(bg.start), Num(bg.end), Num(bg.end - bg.start),
          Num(bg.end > bg.start ? static_cast<double>(bg.tokens_processed) / (bg.end - bg.start)
                                : NAN,
              1),
          bg_outlasted ? "true" : "false", StatsJson(during_s), StatsJson(outside_s));
    }
    out += "}\n";
    std::fputs(out.c_str(), stdout);
  } else {
    std::string out;
    absl::StrAppendFormat(&out, "blockserve-loadgen: %s, model %s (vocab %d)\n", target, model_name,
                          config.vocab_size);
    absl::StrAppendFormat(&out, "load: %s; prompt %s, max_tokens %d, temperature %g, sessions %s",
                          load, prompt, config.max_tokens, config.temperature, sessions);
    if (config.sessions == SessionMode::kMultiturn)
      absl::StrAppendFormat(&out, " (%d turns)", config.turns);
    if (warmup > 0) absl::StrAppendFormat(&out, ", %d warmup requests", warmup);
    out += "\n\n";
    absl::StrAppendFormat(&out, "  %-26s %d\n", "requests ok", ok);
    std::vector<std::string> error_items;
    for (const auto& [code, n] : errors) error_items.push_back(absl::StrFormat("%s %d", code, n));
    absl::StrAppendFormat(
        &out, "  %-26s %d%s\n", "requests failed", failed,
        failed > 0 ? absl::StrCat("  (", absl::StrJoin(error_items, ", "), ")") : "");
    if (short_requests > 0) {
      absl::StrAppendFormat(&out, "  %-26s %d\n", "ok with < max_tokens", short_requests);
    }
    absl::StrAppendFormat(&out, "  %-26s %s s\n", "duration", Num(duration));
    absl::StrAppendFormat(&out, "  %-26s %s req/s\n", "request throughput", Num(req_per_s));
    absl::StrAppendFormat(&out, "  %-26s %s tok/s  (%d tokens)\n", "output token throughput",
                          Num(tok_per_s, 1), tokens);
    std::string slo;
    if (slo_ttft > 0) slo = absl::StrFormat("TTFT <= %g ms", slo_ttft);
    if (slo_itl > 0)
      absl::StrAppend(&slo, slo.empty() ? "" : ", ", absl::StrFormat("mean ITL <= %g ms", slo_itl));
    absl::StrAppendFormat(&out, "  %-26s %s req/s  (%d of %d requests; %s)\n", "goodput",
                          Num(goodput), good, ok + failed, slo.empty() ? "no SLO given" : slo);
    if (rate > 0) {
      absl::StrAppendFormat(&out, "  %-26s %d (longest wait %s s)\n", "arrivals held by cap",
                            phase.delayed_arrivals, Num(phase.max_arrival_wait));
    }
    absl::StrAppendFormat(&out, "\n  %-10s %10s %10s %10s %10s %10s\n", "(ms)", "p50", "p90", "p99",
                          "mean", "max");
    out += StatsRow("TTFT", ttft_s);
    out += StatsRow("ITL", itl_s);
    out += StatsRow("E2E", e2e_s);
    if (bg_tokens > 0) {
      out += StatsRow("ITL bg-on", during_s);
      out += StatsRow("ITL bg-off", outside_s);
      absl::StrAppendFormat(&out, "\nbackground prefill: %d tokens via %s: ", bg.tokens, bg.via);
      if (bg.code == grpc::StatusCode::OK) {
        absl::StrAppendFormat(
            &out, "%s s (from %s s to %s s of the load), %s tok/s; %d ITL samples during it\n",
            Num(bg.end - bg.start), Num(bg.start), Num(bg.end),
            Num(bg.end > bg.start ? static_cast<double>(bg.tokens_processed) / (bg.end - bg.start)
                                  : NAN,
                1),
            during_s.n);
      } else {
        absl::StrAppendFormat(&out, "failed: %s: %s\n", StatusCodeName(bg.code), bg.error);
      }
    }
    std::fputs(out.c_str(), stdout);
  }
  std::fflush(stdout);
  return failed > 0 || (bg_tokens > 0 && bg.code != grpc::StatusCode::OK) ? 1 : 0;
}

}  // namespace
}  // namespace blockserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(blockserve::kUsage);
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      std::printf("blockserve-loadgen: %s\n", blockserve::kUsage);
      return 0;
    }
  }
  return blockserve::Run(absl::ParseCommandLine(argc, argv));
}
