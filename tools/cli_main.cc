// blockserve-cli: command-line client of the blockserve gRPC server (generate, sessions...).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/file_io.h"
#include "base/utf8.h"
#include "blockserve/v1/blockserve.grpc.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/util/json_util.h"

// Global flags.
ABSL_FLAG(std::string, server, "localhost:50051", "Server address (host:port).");
ABSL_FLAG(std::string, api_key, "",
          "API key, sent as 'authorization: Bearer KEY' (default: $BLOCKSERVE_API_KEY).");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CA that signed the server's certificate; enables TLS.");
ABSL_FLAG(double, timeout, 0, "Deadline of each RPC in seconds (0: none).");
ABSL_FLAG(std::string, model, "", "Model name for requests (empty: the server's model).");
ABSL_FLAG(bool, json, false, "Print responses as JSON (one message per line).");
// generate / append / score.
ABSL_FLAG(std::string, session, "", "Session id; for generate, 'new' creates one first.");
ABSL_FLAG(std::vector<std::string>, tokens, {}, "Comma-separated token ids, instead of text.");
ABSL_FLAG(int, max_tokens, 0, "Maximum new tokens (0: the server's default, 256).");
ABSL_FLAG(std::optional<float>, temperature, std::nullopt, "Sampling temperature (0: greedy).");
ABSL_FLAG(int, top_k, 0, "Top-k (0: off).");
ABSL_FLAG(std::optional<float>, top_p, std::nullopt, "Top-p (nucleus) in (0, 1].");
ABSL_FLAG(float, min_p, 0, "Min-p in [0, 1].");
ABSL_FLAG(std::optional<float>, repetition_penalty, std::nullopt, "Repetition penalty in (0, 10].");
ABSL_FLAG(float, presence_penalty, 0, "Presence penalty in [-10, 10].");
ABSL_FLAG(float, frequency_penalty, 0, "Frequency penalty in [-10, 10].");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt, "Sampling seed.");
ABSL_FLAG(std::vector<std::string>, stop, {}, "Comma-separated stop strings.");
ABSL_FLAG(std::vector<std::string>, stop_token_ids, {}, "Comma-separated stop token ids.");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating after the end-of-sequence token.");
ABSL_FLAG(bool, logprobs, false, "Return the log-probability of each new token.");
ABSL_FLAG(int, top_logprobs, 0, "Also return this many most likely alternatives (0..20).");

namespace blockserve {
namespace {

namespace v1 = ::blockserve::v1;
using Clock = std::chrono::steady_clock;

constexpr char kUsage[] = R"(a command-line client of the blockserve gRPC server.

usage: blockserve-cli [GLOBAL FLAGS] COMMAND [ARGS...] [COMMAND FLAGS]

global flags:
  --server=HOST:PORT   server address [localhost:50051]
  --api_key=KEY        sent as "authorization: Bearer KEY" [$BLOCKSERVE_API_KEY]
  --tls_ca=FILE        PEM CA certificate; enables TLS (default: plaintext)
  --timeout=SECONDS    deadline of each RPC (0: none) [0]
  --model=NAME         model for requests (empty: the server's model)
  --json               print response messages as JSON lines

commands:
  generate [PROMPT...|-]     prompt from the arguments (joined by spaces), or stdin (none or "-");
                             streams the text to stdout, then a summary line to stderr
      --session=ID|new       continue a session; "new" creates one (prints "session: ID" to stderr)
      --tokens=1,2,3         token ids instead of text
      --max_tokens=N --temperature=T --top_k=K --top_p=P --min_p=P --repetition_penalty=R
      --presence_penalty=P --frequency_penalty=F --seed=S --stop=a,b --stop_token_ids=1,2
      --ignore_eos --logprobs --top_logprobs=N
      --json                 print every response message as a JSON line instead of the text
  append --session=ID [FILE...|-]
                             feeds files (or stdin) into the session in 64 KiB messages
  score [TEXT...|-] [--session=ID] [--tokens=1,2,3]
                             prints tokens, log_likelihood and bits_per_token
  tokenize [TEXT...|-]       prints the token ids (--json: ids and pieces)
  detokenize ID...           prints the text of the token ids
  session create             prints the new session's id
  session fork ID [TOKENS]   a new session holding the first TOKENS context tokens of ID (all)
  session rewind ID TOKENS   cut ID back to its first TOKENS context tokens
  session export ID FILE     write the session to FILE (to move it to another server)
  session import FILE        register an exported session here; prints its id
  session get ID | list | delete ID
  models                     lists the served models
  health                     grpc.health.v1.Health/Check; prints SERVING, NOT_SERVING...;
                             exits 0 only when SERVING

exit status: 0 ok, 1 RPC or I/O error, 2 usage error, 130 generate/append interrupted (Ctrl-C).)";

// A usage error: prints `message` and the usage, returns exit code 2.
int UsageError(const std::string& message) {
  std::fprintf(stderr, "blockserve-cli: %s\n\n%s\n", message.c_str(), kUsage);
  return 2;
}

// gRPC and absl number their status codes alike.
std::string StatusCodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

int RpcError(const char* rpc, const grpc::Status& status) {
  std::fprintf(stderr, "blockserve-cli: %s: %s: %s\n", rpc, StatusCodeName(status.error_code()).c_str(),
               status.error_message().c_str());
  return 1;
}

// absl::ParseCommandLine exits 1 on an undefined flag or a bad value; checking first lets
// usage errors exit 2. Returns the error, or "" when every flag is known and parses.
std::string CheckFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    absl::string_view name = arg.substr(0, eq);
    // absl's built-in usage flags (--helpfull, --version...) are not in the registry.
    if (absl::StartsWith(name, "help") || name == "version" || name == "only_check_args") continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::ConsumePrefix(&name, "no")) {  // --noflag for a bool flag
      flag = absl::FindCommandLineFlag(name);
      if (flag != nullptr && flag->IsOfType<bool>() && eq == absl::string_view::npos) continue;
      flag = nullptr;
    }
    if (flag == nullptr) return absl::StrCat("unknown flag: ", argv[i]);
    std::string value;
    if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::StrCat("missing value for --", name);
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) return absl::StrCat("--", name, ": ", error);
  }
  return "";
}

// Comma-separated (or repeated) integers; false on a bad one.
bool ParseIds(const std::vector<std::string>& items, std::vector<int32_t>* ids) {
  for (const std::string& item : items) {
    for (absl::string_view s : absl::StrSplit(item, ',', absl::SkipWhitespace())) {
      int32_t id;
      if (!absl::SimpleAtoi(s, &id)) return false;
      ids->push_back(id);
    }
  }
  return true;
}

std::string ReadAll(FILE* f) {
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return out;
}

// The arguments from `first` on, joined by spaces; stdin when there are none or just "-".
// False (after saying why) when it is not UTF-8, which proto3 strings must be.
bool TextFromArgs(const std::vector<char*>& args, size_t first, std::string* text) {
  if (args.size() <= first || (args.size() == first + 1 && std::strcmp(args[first], "-") == 0)) {
    *text = ReadAll(stdin);
  } else {
    *text = absl::StrJoin(args.begin() + first, args.end(), " ");
  }
  if (IsValidUtf8(*text)) return true;
  std::fprintf(stderr, "blockserve-cli: the input text is not valid UTF-8\n");
  return false;
}

void PrintJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::printf("%s\n", json.c_str());
  std::fflush(stdout);
}

// Ctrl-C while a streaming call runs: the handler writes to a pipe (async-signal-safe); a
// thread reading the pipe calls TryCancel on the active context.
std::mutex g_active_mu;
grpc::ClientContext* g_active = nullptr;
int g_cancel_pipe[2] = {-1, -1};
volatile sig_atomic_t g_interrupted = 0;

void OnSigint(int) {
  g_interrupted = 1;
  const char byte = 'c';
  [[maybe_unused]] const ssize_t written = write(g_cancel_pipe[1], &byte, 1);
  signal(SIGINT, SIG_DFL);  // a second Ctrl-C kills the process
}

// While alive, Ctrl-C cancels `context` instead of killing the process.
class CancelOnSigint {
 public:
  explicit CancelOnSigint(grpc::ClientContext* context) {
    static std::once_flag once;
    std::call_once(once, [] {
      if (pipe(g_cancel_pipe) != 0) return;
      std::thread([] {
        char byte;
        while (read(g_cancel_pipe[0], &byte, 1) == 1) {
          std::lock_guard<std::mutex> lock(g_active_mu);
          if (g_active != nullptr) g_active->TryCancel();
        }
      }).detach();
    });
    std::lock_guard<std::mutex> lock(g_active_mu);
    g_active = context;
    struct sigaction old;
    // Not where SIGINT is ignored (a background job): keep ignoring it.
    installed_ = g_cancel_pipe[1] >= 0 && sigaction(SIGINT, nullptr, &old) == 0 &&
                 old.sa_handler != SIG_IGN && signal(SIGINT, OnSigint) != SIG_ERR;
  }
  ~CancelOnSigint() {
    if (installed_) signal(SIGINT, SIG_DFL);
    std::lock_guard<std::mutex> lock(g_active_mu);
    g_active = nullptr;
  }
  CancelOnSigint(const CancelOnSigint&) = delete;
  CancelOnSigint& operator=(const CancelOnSigint&) = delete;

 private:
  bool installed_ = false;
};

class Cli {
 public:
  Cli(std::shared_ptr<grpc::Channel> channel, std::string api_key, double timeout)
      : channel_(channel),
        stub_(v1::Blockserve::NewStub(channel)),
        api_key_(std::move(api_key)),
        timeout_(timeout) {}

  int Run(const std::vector<char*>& args);

 private:
  void Prepare(grpc::ClientContext* context) const {
    if (!api_key_.empty()) context->AddMetadata("authorization", "Bearer " + api_key_);
    if (timeout_ > 0) {
      context->set_deadline(std::chrono::system_clock::now() +
                            std::chrono::microseconds(static_cast<int64_t>(timeout_ * 1e6)));
    }
  }
  // A unary call: prints the error and returns false if it fails.
  template <typename Request, typename Response, typename Method>
  bool Call(const char* name, Method method, const Request& request, Response* response) {
    grpc::ClientContext context;
    Prepare(&context);
    const grpc::Status status = ((*stub_).*method)(&context, request, response);
    if (!status.ok()) RpcError(name, status);
    return status.ok();
  }

  // With --json, prints `message` as JSON; otherwise calls `text`.
  template <typename Message, typename Text>
  void Print(const Message& message, Text text) const {
    if (json_) return PrintJson(message);
    text();
  }

  int Generate(const std::vector<char*>& args);
  int Append(const std::vector<char*>& args);
  int Score(const std::vector<char*>& args);
  int Tokenize(const std::vector<char*>& args);
  int Detokenize(const std::vector<char*>& args);
  int SessionCommand(const std::vector<char*>& args);
  int Models();
  int Health();

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Blockserve::Stub> stub_;
  const std::string api_key_;
  const double timeout_;
  const std::string model_ = absl::GetFlag(FLAGS_model);
  const bool json_ = absl::GetFlag(FLAGS_json);
};

int Cli::Run(const std::vector<char*>& args) {
  if (args.size() < 2) return UsageError("no command given");
  const std::string command = args[1];
  if (command == "generate") return Generate(args);
  if (command == "append") return Append(args);
  if (command == "score") return Score(args);
  if (command == "tokenize") return Tokenize(args);
  if (command == "detokenize") return Detokenize(args);
  if (command == "session") return SessionCommand(args);
  if (command == "models" || command == "health") {
    if (args.size() > 2) return UsageError(absl::StrCat(command, " takes no arguments"));
    return command == "models" ? Models() : Health();
  }
  return UsageError(absl::StrCat("unknown command: ", command));
}

const char* FinishName(v1::FinishReason reason) {
  static constexpr const char* kNames[] = {"unspecified", "length",    "eos",
                                           "stop",        "cancelled", "error"};
  return reason >= 0 && reason < 6 ? kNames[reason] : "unspecified";
}

int Cli::Generate(const std::vector<char*>& args) {
  v1::GenerateRequest request;
  request.set_model(model_);
  std::vector<int32_t> ids;
  if (!ParseIds(absl::GetFlag(FLAGS_tokens), &ids)) return UsageError("--tokens: bad token id");
  if (!ids.empty()) {
    if (args.size() > 2) return UsageError("generate: give either a prompt or --tokens, not both");
    request.mutable_token_ids()->Add(ids.begin(), ids.end());
  }
  std::vector<int32_t> stop_ids;
  if (!ParseIds(absl::GetFlag(FLAGS_stop_token_ids), &stop_ids)) {
    return UsageError("--stop_token_ids: bad token id");
  }
  v1::SamplingParams& sampling = *request.mutable_sampling();
  if (auto t = absl::GetFlag(FLAGS_temperature)) sampling.set_temperature(*t);
  sampling.set_top_k(absl::GetFlag(FLAGS_top_k));
  if (auto p = absl::GetFlag(FLAGS_top_p)) sampling.set_top_p(*p);
  sampling.set_min_p(absl::GetFlag(FLAGS_min_p));
  if (auto r = absl::GetFlag(FLAGS_repetition_penalty)) sampling.set_repetition_penalty(*r);
  sampling.set_presence_penalty(absl::GetFlag(FLAGS_presence_penalty));
  sampling.set_frequency_penalty(absl::GetFlag(FLAGS_frequency_penalty));
  if (auto s = absl::GetFlag(FLAGS_seed)) sampling.set_seed(*s);
  v1::StopParams& stop = *request.mutable_stop();
  stop.set_max_new_tokens(absl::GetFlag(FLAGS_max_tokens));
  stop.set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  stop.mutable_stop_token_ids()->Add(stop_ids.begin(), stop_ids.end());
  for (const std::string& s : absl::GetFlag(FLAGS_stop)) stop.add_stop(s);
  request.set_logprobs(absl::GetFlag(FLAGS_logprobs));
  request.set_top_logprobs(absl::GetFlag(FLAGS_top_logprobs));
  if (ids.empty() && !TextFromArgs(args, 2, request.mutable_text())) return 1;

  std::string session_id = absl::GetFlag(FLAGS_session);
  if (session_id == "new") {
    v1::CreateSessionRequest create;
    create.set_model(model_);
    v1::Session session;
    if (!Call("CreateSession", &v1::Blockserve::Stub::CreateSession, create, &session)) return 1;
    session_id = session.session_id();
    std::fprintf(stderr, "session: %s\n", session_id.c_str());
  }
  request.set_session_id(session_id);

  grpc::ClientContext context;
  Prepare(&context);
  const Clock::time_point start = Clock::now();
  std::optional<Clock::time_point> first_token;
  int64_t tokens_seen = 0;
  double logprob_sum = 0;
  bool ends_with_newline = true;
  std::optional<v1::Final> final_message;
  grpc::Status status;
  {
    CancelOnSigint cancel_on_sigint(&context);
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
        stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      if (json_) PrintJson(response);
      if (response.has_chunk()) {
        const v1::Chunk& chunk = response.chunk();
        if (chunk.tokens_size() > 0 && !first_token) first_token = Clock::now();
        tokens_seen += chunk.tokens_size();
        for (const v1::GeneratedToken& token : chunk.tokens()) logprob_sum += token.logprob();
        if (!json_ && !chunk.text().empty()) {
          std::fwrite(chunk.text().data(), 1, chunk.text().size(), stdout);
          std::fflush(stdout);
          ends_with_newline = chunk.text().back() == '\n';
        }
      } else if (response.has_final()) {
        final_message = response.final();
      }
    }
    status = reader->Finish();
  }
  const bool interrupted = g_interrupted != 0;
  if (!json_ && !ends_with_newline && isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  std::fflush(stdout);
  // Piped stdout keeps the exact text; the summary on stderr starts on its own line when both
  // streams share a terminal or a log.
  const bool summary_newline = !json_ && !ends_with_newline && !isatty(STDOUT_FILENO);
  if (!status.ok() && !interrupted) return RpcError("Generate", status);

  // The summary: the server's Final, or what this client saw when the call was cancelled.
  auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  std::string finish = "cancelled", prompt_tokens = "?", session_tokens = "?";
  int64_t generated = tokens_seen;
  double ttft = first_token ? seconds(*first_token - start) : 0;
  double decode = first_token ? seconds(Clock::now() - *first_token) : 0;
  if (final_message) {
    const v1::Final& f = *final_message;
    finish = FinishName(f.finish_reason());
    prompt_tokens = absl::StrCat(f.prompt_tokens());
    session_tokens = absl::StrCat(f.session_tokens());
    generated = f.generated_tokens();
    ttft = f.timings().first_token_seconds();
    decode = f.timings().decode_seconds();
  }
  // Decode time runs from the first new token to the end: the rate is of the tokens after it.
  std::string summary = absl::StrFormat(
      "[finish=%s prompt_tokens=%s generated_tokens=%d session_tokens=%s ttft=%.3fs decode=%.3fs "
      "tok/s=%.1f",
      finish, prompt_tokens, generated, session_tokens, ttft, decode,
      decode > 0 && generated > 1 ? (generated - 1) / decode : 0.0);
  if (request.logprobs() && tokens_seen > 0) {
    absl::StrAppendFormat(&summary, " mean_logprob=%.4f", logprob_sum / tokens_seen);
  }
  std::fprintf(stderr, "%s%s]\n", summary_newline ? "\n" : "", summary.c_str());
  return interrupted ? 130 : 0;
}

int Cli::Append(const std::vector<char*>& args) {
  const std::string session_id = absl::GetFlag(FLAGS_session);
  if (session_id.empty() || session_id == "new") return UsageError("append needs --session=ID");
  std::vector<std::string> paths(args.begin() + 2, args.end());
  if (paths.empty()) paths.push_back("-");
  std::vector<FILE*> files;  // all opened before the call starts
  for (const std::string& path : paths) {
    files.push_back(path == "-" ? stdin : std::fopen(path.c_str(), "rb"));
    if (files.back() == nullptr) {
      std::fprintf(stderr, "blockserve-cli: cannot open %s: %s\n", path.c_str(),
                   std::strerror(errno));
      return 1;
    }
  }

  grpc::ClientContext context;
  Prepare(&context);
  v1::AppendResponse response;
  grpc::Status status;
  std::string io_error;
  {
    CancelOnSigint cancel_on_sigint(&context);
    std::unique_ptr<grpc::ClientWriter<v1::AppendRequest>> writer =
        stub_->Append(&context, &response);
    bool first = true, open = true;
    // Pieces end on UTF-8 character boundaries (proto3 strings must be valid UTF-8); the
    // incomplete tail of one read is carried into the next message.
    std::string pending;
    auto send = [&](absl::string_view text) {
      v1::AppendRequest message;
      if (first) message.set_session_id(session_id);
      first = false;
      message.set_text(std::string(text));
      open = writer->Write(message);
    };
    std::vector<char> buf(64 << 10);
    for (size_t i = 0; i < files.size() && open && io_error.empty(); ++i) {
      size_t n;
      while (open && (n = std::fread(buf.data(), 1, buf.size() - pending.size(), files[i])) > 0) {
        pending.append(buf.data(), n);
        const size_t complete = Utf8CompletePrefixLength(pending);
        if (complete == 0) continue;
        if (!IsValidUtf8(absl::string_view(pending).substr(0, complete))) {
          io_error = absl::StrCat(paths[i], ": not valid UTF-8 text");
          break;
        }
        send(absl::string_view(pending).substr(0, complete));
        pending.erase(0, complete);
      }
      if (std::ferror(files[i])) {
        io_error = absl::StrCat("cannot read ", paths[i], ": ", std::strerror(errno));
      }
      if (files[i] != stdin) std::fclose(files[i]);
    }
    if (io_error.empty() && !pending.empty()) io_error = "input ends inside a UTF-8 character";
    if (!io_error.empty()) {
      context.TryCancel();
    } else if (open && (first || !pending.empty())) {
      send(pending);  // the rest, or one message naming the session for an empty input
    }
    if (open) writer->WritesDone();
    status = writer->Finish();
  }
  if (!io_error.empty()) {
    std::fprintf(stderr, "blockserve-cli: %s\n", io_error.c_str());
    return 1;
  }
  if (g_interrupted) {
    std::fprintf(stderr, "blockserve-cli: Append: interrupted\n");
    return 130;
  }
  if (!status.ok()) return RpcError("Append", status);
  Print(response, [&] {
    std::printf("tokens_appended=%lld session_tokens=%lld seconds=%.3f\n",
                static_cast<long long>(response.tokens_appended()),
                static_cast<long long>(response.session_tokens()), response.seconds());
  });
  return 0;
}

int Cli::Score(const std::vector<char*>& args) {
  v1::ScoreRequest request;
  request.set_model(model_);
  request.set_session_id(absl::GetFlag(FLAGS_session));
  std::vector<int32_t> ids;
  if (!ParseIds(absl::GetFlag(FLAGS_tokens), &ids)) return UsageError("--tokens: bad token id");
  if (!ids.empty()) {
    if (args.size() > 2) return UsageError("score: give either a text or --tokens, not both");
    request.mutable_token_ids()->Add(ids.begin(), ids.end());
  } else {
    if (!TextFromArgs(args, 2, request.mutable_text())) return 1;
  }
  v1::ScoreResponse response;
  if (!Call("Score", &v1::Blockserve::Stub::Score, request, &response)) return 1;
  Print(response, [&] {
    std::printf("tokens=%lld log_likelihood=%.6f bits_per_token=%.6f\n",
                static_cast<long long>(response.tokens()), response.log_likelihood(),
                response.bits_per_token());
  });
  return 0;
}

int Cli::Tokenize(const std::vector<char*>& args) {
  v1::TokenizeRequest request;
  request.set_model(model_);
  if (!TextFromArgs(args, 2, request.mutable_text())) return 1;
  v1::TokenizeResponse response;
  if (!Call("Tokenize", &v1::Blockserve::Stub::Tokenize, request, &response)) return 1;
  Print(response, [&] { std::printf("%s\n", absl::StrJoin(response.token_ids(), " ").c_str()); });
  return 0;
}

int Cli::Detokenize(const std::vector<char*>& args) {
  v1::DetokenizeRequest request;
  request.set_model(model_);
  std::vector<int32_t> ids;
  if (!ParseIds(std::vector<std::string>(args.begin() + 2, args.end()), &ids)) {
    return UsageError("detokenize: token ids must be integers");
  }
  if (ids.empty()) return UsageError("detokenize needs token ids");
  request.mutable_token_ids()->Add(ids.begin(), ids.end());
  v1::DetokenizeResponse response;
  if (!Call("Detokenize", &v1::Blockserve::Stub::Detokenize, request, &response)) return 1;
  Print(response, [&] {
    const std::string& text = response.text();
    std::fwrite(text.data(), 1, text.size(), stdout);
    if (isatty(STDOUT_FILENO) && (text.empty() || text.back() != '\n')) std::fputc('\n', stdout);
  });
  return 0;
}

void PrintSession(const v1::Session& s) {
  std::printf(
      "%s model=%s tokens=%lld state_bytes=%lld created_unix_ms=%lld last_used_unix_ms=%lld "
      "busy=%s offloaded=%s\n",
      s.session_id().c_str(), s.model().c_str(), static_cast<long long>(s.tokens()),
      static_cast<long long>(s.state_bytes()), static_cast<long long>(s.created_unix_ms()),
      static_cast<long long>(s.last_used_unix_ms()), s.busy() ? "true" : "false",
      s.offloaded() ? "true" : "false");
}

int Cli::SessionCommand(const std::vector<char*>& args) {
  const std::string sub = args.size() > 2 ? args[2] : "";
  // Arguments after the subcommand: [min, max].
  const std::map<std::string, std::pair<size_t, size_t>> arity = {
      {"create", {0, 0}}, {"list", {0, 0}},   {"get", {1, 1}},    {"delete", {1, 1}},
      {"fork", {1, 2}},   {"rewind", {2, 2}}, {"export", {2, 2}}, {"import", {1, 1}}};
  auto it = arity.find(sub);
  if (it == arity.end()) {
    return UsageError(sub.empty() ? "session needs create, get, list, delete, fork, rewind, export or import"
                                  : absl::StrCat("unknown session command: ", sub));
  }
  const size_t given = args.size() - 3;
  if (given < it->second.first || given > it->second.second) {
    return UsageError(absl::StrCat("session ", sub, ": wrong number of arguments (see --help)"));
  }
  int64_t tokens = 0;
  if ((sub == "fork" && given == 2) || sub == "rewind") {
    if (!absl::SimpleAtoi(args[4], &tokens) || tokens < 0) {
      return UsageError(absl::StrCat("session ", sub, ": TOKENS must be a non-negative integer"));
    }
  }
  using Stub = v1::Blockserve::Stub;
  v1::Session session;
  if (sub == "create") {
    v1::CreateSessionRequest request;
    request.set_model(model_);
    if (!Call("CreateSession", &Stub::CreateSession, request, &session)) return 1;
    Print(session, [&] { std::printf("%s\n", session.session_id().c_str()); });
  } else if (sub == "get") {
    v1::GetSessionRequest request;
    request.set_session_id(args[3]);
    if (!Call("GetSession", &Stub::GetSession, request, &session)) return 1;
    Print(session, [&] { PrintSession(session); });
  } else if (sub == "list") {
    v1::ListSessionsResponse response;
    if (!Call("ListSessions", &Stub::ListSessions, v1::ListSessionsRequest(), &response)) return 1;
    Print(response, [&] {
      for (const v1::Session& s : response.sessions()) PrintSession(s);
    });
  } else if (sub == "delete") {
    v1::DeleteSessionRequest request;
    request.set_session_id(args[3]);
    v1::DeleteSessionResponse response;
    if (!Call("DeleteSession", &Stub::DeleteSession, request, &response)) return 1;
    Print(response, [&] { std::printf("deleted %s\n", args[3]); });
  } else if (sub == "fork") {
    v1::ForkSessionRequest request;
    request.set_session_id(args[3]);
    request.set_tokens(tokens);
    if (!Call("ForkSession", &Stub::ForkSession, request, &session)) return 1;
    Print(session, [&] { PrintSession(session); });
  } else if (sub == "rewind") {
    v1::RewindSessionRequest request;
    request.set_session_id(args[3]);
    request.set_tokens(tokens);
    if (!Call("RewindSession", &Stub::RewindSession, request, &session)) return 1;
    Print(session, [&] { PrintSession(session); });
  } else if (sub == "export") {
    grpc::ClientContext context;
    Prepare(&context);
    v1::ExportSessionRequest request;
    request.set_session_id(args[3]);
    auto reader = stub_->ExportSession(&context, request);
    std::string bytes;
    v1::SessionBytes piece;
    while (reader->Read(&piece)) bytes += piece.data();
    const grpc::Status status = reader->Finish();
    if (!status.ok()) return RpcError("ExportSession", status);
    const absl::Status written = WriteStringToFileAtomically(args[4], bytes);
    if (!written.ok()) {
      std::fprintf(stderr, "blockserve-cli: %s\n", std::string(written.message()).c_str());
      return 1;
    }
    std::printf("exported %s: %zu bytes to %s\n", args[3], bytes.size(), args[4]);
  } else {  // import
    absl::StatusOr<std::string> bytes = ReadFileToString(args[3]);
    if (!bytes.ok()) {
      std::fprintf(stderr, "blockserve-cli: %s\n", std::string(bytes.status().message()).c_str());
      return 1;
    }
    grpc::ClientContext context;
    Prepare(&context);
    auto writer = stub_->ImportSession(&context, &session);
    for (size_t off = 0; off < bytes->size(); off += 1 << 20) {
      v1::SessionBytes piece;
      piece.set_data(bytes->substr(off, 1 << 20));
      if (!writer->Write(piece)) break;
    }
    writer->WritesDone();
    const grpc::Status status = writer->Finish();
    if (!status.ok()) return RpcError("ImportSession", status);
    Print(session, [&] { std::printf("%s\n", session.session_id().c_str()); });
  }
  return 0;
}

int Cli::Models() {
  v1::ListModelsResponse response;
  using Stub = v1::Blockserve::Stub;
  if (!Call("ListModels", &Stub::ListModels, v1::ListModelsRequest(), &response)) return 1;
  Print(response, [&] {
    for (const v1::ModelInfo& m : response.models()) {
      std::printf(
          "%s family=%s vocab_size=%d d_model=%d num_layers=%d num_parameters=%lld "
          "block_length=%d state_bytes=%lld max_context_tokens=%lld\n",
          m.name().c_str(), m.family().c_str(), m.vocab_size(), m.d_model(), m.num_layers(),
          static_cast<long long>(m.num_parameters()), m.block_length(),
          static_cast<long long>(m.state_bytes()), static_cast<long long>(m.max_context_tokens()));
    }
  });
  return 0;
}

// grpc.health.v1.Health/Check for service "" without the health proto: the request
// HealthCheckRequest{service=""} is zero bytes; the response's field 1 (varint) is the status.
int Cli::Health() {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext context;
  Prepare(&context);
  grpc::Slice empty;
  const grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                    &response, [&done](grpc::Status status) { done.set_value(std::move(status)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return RpcError("Health/Check", status);
  // The response as unknown fields (no health proto here); field 1 is a varint.
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  google::protobuf::UnknownFieldSet fields;
  uint64_t serving_status = 0;  // absent: UNKNOWN
  if (fields.ParseFromString(bytes)) {
    for (int i = 0; i < fields.field_count(); ++i) {
      const google::protobuf::UnknownField& field = fields.field(i);
      if (field.number() == 1 && field.type() == google::protobuf::UnknownField::TYPE_VARINT) {
        serving_status = field.varint();
      }
    }
  }
  static constexpr const char* kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  std::printf("%s\n", serving_status < 4 ? kNames[serving_status] : "UNKNOWN");
  return serving_status == 1 ? 0 : 1;
}

}  // namespace
}  // namespace blockserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(blockserve::kUsage);
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "-h") {
      std::printf("blockserve-cli: %s\n", blockserve::kUsage);
      return 0;
    }
  }
  const std::string flag_error = blockserve::CheckFlags(argc, argv);
  if (!flag_error.empty()) return blockserve::UsageError(flag_error);
  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_timeout) < 0) return blockserve::UsageError("--timeout must be >= 0");

  std::string api_key = absl::GetFlag(FLAGS_api_key);
  if (api_key.empty() && std::getenv("BLOCKSERVE_API_KEY") != nullptr)
    api_key = std::getenv("BLOCKSERVE_API_KEY");
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (const std::string ca = absl::GetFlag(FLAGS_tls_ca); !ca.empty()) {
    const absl::StatusOr<std::string> pem = blockserve::ReadFileToString(ca);
    if (!pem.ok()) {
      std::fprintf(stderr, "blockserve-cli: --tls_ca: %s\n",
                   std::string(pem.status().message()).c_str());
      return 1;
    }
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = *pem;
    credentials = grpc::SslCredentials(options);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(64 << 20);
  blockserve::Cli cli(
      grpc::CreateCustomChannel(absl::GetFlag(FLAGS_server), credentials, channel_args),
      std::move(api_key), absl::GetFlag(FLAGS_timeout));
  return cli.Run(args);
}
