// BlockserveService: validation, unary handlers and the Generate/Append/Score reactors.
#include "server/blockserve_service.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/streaming_encoder.h"

namespace blockserve::server {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The API's bound on max_new_tokens (the engine's own is wider).
constexpr int kMaxNewTokens = 1 << 20;

std::string CodeName(const absl::Status& s) { return absl::StatusCodeToString(s.code()); }

v1::FinishReason FinishToProto(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kEos: return v1::FINISH_REASON_EOS;
    case engine::FinishReason::kStopToken:
    case engine::FinishReason::kStopString: return v1::FINISH_REASON_STOP;
    case engine::FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    case engine::FinishReason::kError: return v1::FINISH_REASON_ERROR;
    case engine::FinishReason::kNone: break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

absl::Time Deadline(grpc::CallbackServerContext* context) {
  const auto d = context->deadline();
  if (d == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(d);
}

int64_t UnixMillis(absl::Time t) { return absl::ToUnixMillis(t); }

void SessionToProto(const engine::SessionInfo& info, const std::string& model, v1::Session* out) {
  out->set_session_id(info.id);
  out->set_model(model);
  out->set_tokens(info.tokens);
  out->set_state_bytes(static_cast<int64_t>(info.state_bytes));
  out->set_created_unix_ms(UnixMillis(info.created));
  out->set_last_used_unix_ms(UnixMillis(info.last_used));
  out->set_busy(info.busy);
  out->set_offloaded(info.offloaded);
}

// A streaming call that fails before any work.
template <typename Response>
class ErrorWriteReactor : public grpc::ServerWriteReactor<Response> {
 public:
  explicit ErrorWriteReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

template <typename Request>
class ErrorReadReactor : public grpc::ServerReadReactor<Request> {
 public:
  explicit ErrorReadReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// Where a request's session lives: a stored session (released when the request ends) or a
// one-off context owned by the request.
struct SessionLease {
  ServingModel* model = nullptr;
  std::string id;                                   // stored session, or empty
  std::unique_ptr<engine::SessionContext> owned;    // one-off
  engine::SessionContext* context = nullptr;

  static absl::StatusOr<std::unique_ptr<SessionLease>> Take(ServingModel* model, const std::string& id,
                                                            const std::string& owner) {
    auto lease = std::make_unique<SessionLease>();
    lease->model = model;
    if (id.empty()) {
      lease->owned = std::make_unique<engine::SessionContext>(engine::NewSessionContext(*model->runner));
      lease->context = lease->owned.get();
    } else {
      ASSIGN_OR_RETURN(engine::Lease acquired, model->sessions->Acquire(id, owner));
      lease->context = acquired.context;
      lease->id = id;
    }
    return lease;
  }
  ~SessionLease() {
    if (!id.empty()) model->sessions->Release(id);
  }
};

// ---- Generate ---------------------------------------------------------------------------

class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(BlockserveService* service, ServingModel* model, std::unique_ptr<SessionLease> lease,
                  bool logprobs)
      : service_(service), model_(model), lease_(std::move(lease)), logprobs_(logprobs), start_(Clock::now()) {}

  void Start(engine::Request request) {
    request.session = lease_->context;
    request.on_output = [this](const engine::RequestOutput& out) { OnOutput(out); };
    absl::StatusOr<engine::Engine::RequestId> id = model_->engine->Submit(std::move(request));
    if (!id.ok()) {
      service_->metrics().Request("Generate", CodeName(id.status()));
      {
        std::lock_guard<std::mutex> lock(mu_);
        engine_done_ = true;
        final_status_ = ToGrpc(id.status());
      }
      lease_.reset();
      MaybeWrite();
      Unref();  // the engine's reference
      return;
    }
    bool cancel = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      id_ = *id;
      has_id_ = true;
      cancel = cancel_requested_;
    }
    if (cancel) model_->engine->Cancel(*id);
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok) {
        client_gone_ = true;
        queue_.clear();
      }
    }
    if (!ok) CancelEngine();
    MaybeWrite();
  }
  void OnCancel() override { CancelEngine(); }
  void OnDone() override { Unref(); }

 private:
  void CancelEngine() {
    engine::Engine::RequestId id = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!has_id_) {
        cancel_requested_ = true;
        return;
      }
      id = id_;
    }
    model_->engine->Cancel(id);
  }

  // Engine thread: turn the output into messages (never blocks).
  void OnOutput(const engine::RequestOutput& out) {
    const auto now = Clock::now();
    v1::GenerateResponse msg;
    if (!out.tokens.empty() || !out.text.empty()) {
      v1::Chunk* chunk = msg.mutable_chunk();
      for (const engine::GeneratedToken& t : out.tokens) {
        v1::GeneratedToken* g = chunk->add_tokens();
        g->set_token_id(t.token);
        if (logprobs_) {
          g->set_logprob(t.logprob);
          for (const auto& [id, lp] : t.top) {
            v1::TokenLogprob* alt = g->add_top();
            alt->set_token_id(id);
            alt->set_logprob(lp);
          }
        }
      }
      chunk->set_text(out.text);
      Metrics& m = service_->metrics();
      m.GenerationTokens(static_cast<int64_t>(out.tokens.size()));
      if (!has_token_) {
        m.TimeToFirstToken(Seconds(start_, now));
        has_token_ = true;
      } else {
        m.InterTokenLatency(Seconds(last_token_, now));
      }
      last_token_ = now;
    }
    v1::GenerateResponse final_msg;
    grpc::Status status;
    if (out.finished) {
      v1::Final* f = final_msg.mutable_final();
      f->set_finish_reason(FinishToProto(out.finish_reason));
      f->set_prompt_tokens(out.prompt_tokens);
      f->set_generated_tokens(out.generated_tokens);
      f->set_session_tokens(out.session_tokens);
      f->mutable_timings()->set_queue_seconds(out.queue_seconds);
      f->mutable_timings()->set_first_token_seconds(out.first_token_seconds);
      f->mutable_timings()->set_decode_seconds(out.decode_seconds);
      f->set_session_id(lease_->id);
      status = ToGrpc(out.status);
      Metrics& m = service_->metrics();
      m.PromptTokens(out.prompt_tokens);
      m.QueueTime(out.queue_seconds);
      m.RequestDuration(Seconds(start_, now));
      m.Finished(engine::FinishReasonName(out.finish_reason));
      m.Request("Generate", CodeName(out.status));
      // The engine is done with the session: it may take the next request now.
      lease_.reset();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!client_gone_) {
        if (msg.has_chunk()) queue_.push_back(std::move(msg));
        if (out.finished) queue_.push_back(std::move(final_msg));
      }
      if (out.finished) {
        engine_done_ = true;
        final_status_ = status;
      }
    }
    MaybeWrite();
    if (out.finished) Unref();  // the engine's reference
  }

  void MaybeWrite() {
    bool write = false, finish = false;
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_ || finish_called_) return;
      if (!queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        write = true;
      } else if (engine_done_) {
        finish_called_ = true;
        finish = true;
        status = final_status_;
      }
    }
    if (write) StartWrite(&current_);
    if (finish) Finish(status);
  }

  void Unref() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

  BlockserveService* service_;
  ServingModel* model_;
  std::unique_ptr<SessionLease> lease_;  // touched by Start and the engine thread only
  const bool logprobs_;
  const Clock::time_point start_;
  Clock::time_point last_token_;  // engine thread only
  bool has_token_ = false;        // engine thread only
  std::atomic<int> refs_{2};      // gRPC (OnDone) and the engine (final output)

  std::mutex mu_;
  std::deque<v1::GenerateResponse> queue_;  // guarded by mu_
  v1::GenerateResponse current_;            // being written (writing_)
  bool writing_ = false;                    // guarded by mu_
  bool engine_done_ = false;                // guarded by mu_
  bool finish_called_ = false;              // guarded by mu_
  bool client_gone_ = false;                // guarded by mu_
  bool cancel_requested_ = false;           // guarded by mu_
  bool has_id_ = false;                     // guarded by mu_
  engine::Engine::RequestId id_ = 0;        // guarded by mu_
  grpc::Status final_status_;               // guarded by mu_
};

// ---- Append -----------------------------------------------------------------------------

class AppendReactor : public grpc::ServerReadReactor<v1::AppendRequest> {
 public:
  AppendReactor(BlockserveService* service, ServingModel* model, std::string owner, absl::Time deadline,
                v1::AppendResponse* response)
      : service_(service),
        model_(model),
        owner_(std::move(owner)),
        deadline_(deadline),
        response_(response),
        encoder_(model->tokenizer.get()),
        start_(Clock::now()) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client finished sending (or the call broke: then OnCancel follows)
      absl::StatusOr<std::vector<int32_t>> rest = encoder_.Finish();
      if (!rest.ok()) return Fail(rest.status());
      pending_.insert(pending_.end(), rest->begin(), rest->end());
      if (lease_ == nullptr) return Fail(absl::InvalidArgumentError("session_id: the stream carried no message"));
      end_of_input_ = true;
      return Feed();
    }
    if (lease_ == nullptr) {
      if (request_.session_id().empty()) {
        return Fail(absl::InvalidArgumentError("session_id: required in the first Append message"));
      }
      absl::StatusOr<std::unique_ptr<SessionLease>> lease = SessionLease::Take(model_, request_.session_id(), owner_);
      if (!lease.ok()) return Fail(lease.status());
      lease_ = *std::move(lease);
    } else if (!request_.session_id().empty() && request_.session_id() != lease_->id) {
      return Fail(absl::InvalidArgumentError("session_id: differs from the stream's first message"));
    }
    if (static_cast<int64_t>(request_.ByteSizeLong()) > service_->options().max_append_message_bytes) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("an Append message is ", request_.ByteSizeLong(),
                                                          " bytes, over --max_append_message_bytes (",
                                                          service_->options().max_append_message_bytes,
                                                          "); split the input into smaller messages")));
    }
    if (request_.has_token_ids()) {
      const int V = model_->runner->info().vocab_size;
      for (int32_t id : request_.token_ids().ids()) {
        if (id < 0 || id >= V) {
          return Fail(absl::InvalidArgumentError(
              absl::StrCat("token_ids: ", id, " is outside the vocabulary [0, ", V, ")")));
        }
        pending_.push_back(id);
      }
    } else {
      absl::StatusOr<std::vector<int32_t>> ids = encoder_.Push(request_.text());
      if (!ids.ok()) return Fail(ids.status());
      pending_.insert(pending_.end(), ids->begin(), ids->end());
    }
    if (static_cast<int64_t>(pending_.size()) >= service_->options().append_chunk_tokens) return Feed();
    StartRead(&request_);
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (in_flight_) model_->engine->Cancel(in_flight_id_);
  }

  void OnDone() override { delete this; }

 private:
  // Sends the pending tokens to the engine; continues reading (or finishes) when it is done.
  void Feed() {
    if (pending_.empty()) return end_of_input_ ? Succeed() : StartRead(&request_);
    engine::Request r;
    r.kind = engine::RequestKind::kAppend;
    r.session = lease_->context;
    r.prompt = std::move(pending_);
    pending_.clear();
    appended_ += static_cast<int64_t>(r.prompt.size());
    r.deadline = deadline_;
    r.on_output = [this](const engine::RequestOutput& out) {
      if (!out.finished) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        in_flight_ = false;
      }
      service_->metrics().PromptTokens(out.prompt_tokens);
      if (!out.status.ok()) return Fail(out.status);
      if (end_of_input_) return Succeed();
      StartRead(&request_);
    };
    absl::StatusOr<engine::Engine::RequestId> id = model_->engine->Submit(std::move(r));
    if (!id.ok()) return Fail(id.status());
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ = true;
    in_flight_id_ = *id;
    if (cancelled_) model_->engine->Cancel(*id);
  }

  void Succeed() {
    response_->set_tokens_appended(appended_);
    response_->set_session_tokens(lease_->context->context_tokens());
    response_->set_seconds(Seconds(start_, Clock::now()));
    lease_.reset();
    service_->metrics().Request("Append", "OK");
    Finish(grpc::Status::OK);
  }

  void Fail(const absl::Status& status) {
    lease_.reset();
    service_->metrics().Request("Append", CodeName(status));
    Finish(ToGrpc(status));
  }

  BlockserveService* service_;
  ServingModel* model_;
  const std::string owner_;
  const absl::Time deadline_;
  v1::AppendResponse* response_;
  v1::AppendRequest request_;
  StreamingEncoder encoder_;
  std::unique_ptr<SessionLease> lease_;
  std::vector<int32_t> pending_;
  bool end_of_input_ = false;
  int64_t appended_ = 0;  // tokens received and handed to the engine
  const Clock::time_point start_;
  std::mutex mu_;
  bool cancelled_ = false;                     // guarded by mu_
  bool in_flight_ = false;                     // guarded by mu_
  engine::Engine::RequestId in_flight_id_ = 0;  // guarded by mu_
};

// ExportSession: writes the bytes in pieces of 1 MiB.
class ExportReactor : public grpc::ServerWriteReactor<v1::SessionBytes> {
 public:
  explicit ExportReactor(std::string bytes) : bytes_(std::move(bytes)) { Next(); }
  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (offset_ >= bytes_.size() && offset_ > 0) return Finish(grpc::Status::OK);
    const size_t n = std::min<size_t>(1 << 20, bytes_.size() - offset_);
    piece_.set_data(bytes_.substr(offset_, n));
    offset_ += n;
    if (n == 0) offset_ = 1;  // empty export: one empty message, then finish
    StartWrite(&piece_);
  }
  std::string bytes_;
  size_t offset_ = 0;
  v1::SessionBytes piece_;
};

// ImportSession: collects the pieces, then registers the session.
class ImportReactor : public grpc::ServerReadReactor<v1::SessionBytes> {
 public:
  ImportReactor(BlockserveService* service, ServingModel* model, std::string owner, v1::Session* response)
      : service_(service), model_(model), owner_(std::move(owner)), response_(response) {
    StartRead(&piece_);
  }
  void OnReadDone(bool ok) override {
    if (ok) {
      bytes_ += piece_.data();
      if (static_cast<int64_t>(bytes_.size()) > service_->options().max_import_bytes) {
        return Done(absl::InvalidArgumentError("ImportSession: the session is larger than --max_import_bytes"));
      }
      return StartRead(&piece_);
    }
    absl::StatusOr<engine::SessionInfo> info = model_->sessions->Import(owner_, bytes_);
    if (!info.ok()) return Done(info.status());
    SessionToProto(*info, model_->runner->info().name, response_);
    Done(absl::OkStatus());
  }
  void OnDone() override { delete this; }

 private:
  void Done(const absl::Status& status) {
    service_->metrics().Request("ImportSession", CodeName(status));
    Finish(ToGrpc(status));
  }
  BlockserveService* service_;
  ServingModel* model_;
  const std::string owner_;
  v1::Session* response_;
  v1::SessionBytes piece_;
  std::string bytes_;
};

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// The engine validates the parameters (ValidateSamplingParams, ValidateStopParams); the API adds
// its own bounds and the message prefix that names the request field.
absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::Status SamplingFromProto(const v1::SamplingParams& in, bool logprobs, int top_logprobs, int vocab_size,
                               engine::SamplingParams* out) {
  if (in.has_temperature()) out->temperature = in.temperature();
  if (in.top_k() > vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("sampling.top_k must be in [0, ", vocab_size, "]"));
  }
  out->top_k = in.top_k();
  if (in.has_top_p()) out->top_p = in.top_p();
  out->min_p = in.min_p();
  if (in.has_repetition_penalty()) out->repetition_penalty = in.repetition_penalty();
  out->presence_penalty = in.presence_penalty();
  out->frequency_penalty = in.frequency_penalty();
  if (in.has_seed()) {
    out->seed = in.seed();
    out->has_seed = true;
  }
  RETURN_IF_ERROR(Prefixed("sampling.", engine::ValidateSamplingParams(*out)));
  // top_logprobs is a field of the request itself.
  if (top_logprobs > 0 && !logprobs) return absl::InvalidArgumentError("top_logprobs needs logprobs = true");
  out->top_logprobs = top_logprobs;
  return engine::ValidateSamplingParams(*out);
}

absl::Status StopFromProto(const v1::StopParams& in, int vocab_size, engine::StopParams* out) {
  if (in.max_new_tokens() != 0) out->max_new_tokens = in.max_new_tokens();
  if (out->max_new_tokens > kMaxNewTokens) {
    return absl::InvalidArgumentError(absl::StrCat("stop.max_new_tokens must be in [1, ", kMaxNewTokens, "]"));
  }
  out->ignore_eos = in.ignore_eos();
  out->stop_token_ids.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
  out->stop_strings.assign(in.stop().begin(), in.stop().end());
  return Prefixed("stop.", engine::ValidateStopParams(*out, vocab_size));
}

BlockserveService::BlockserveService(const ServiceOptions& options, Metrics* metrics)
    : options_(options), metrics_(metrics) {}

grpc::ServerUnaryReactor* BlockserveService::FinishUnary(grpc::CallbackServerContext* context, const char* method,
                                                         const absl::Status& status) {
  metrics_->Request(method, CodeName(status));
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

absl::StatusOr<std::string> BlockserveService::Owner(grpc::CallbackServerContext* context) const {
  if (options_.api_keys.empty()) return std::string();
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError("missing API key: send metadata 'authorization: Bearer <key>'");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (value.substr(0, kBearer.size()) == kBearer) {
    const std::string key(value.substr(kBearer.size()));
    for (const std::string& k : options_.api_keys) {
      if (k == key) return key;
    }
  }
  return absl::UnauthenticatedError("invalid API key");
}

absl::StatusOr<ServingModel*> BlockserveService::Model(const std::string& name) const {
  ServingModel* model = model_.load();
  if (model == nullptr) return absl::UnavailableError("the model is loading; retry shortly");
  if (!name.empty() && name != model->runner->info().name) {
    return absl::NotFoundError(
        absl::StrCat("model '", name, "' is not served here (this server serves '", model->runner->info().name, "')"));
  }
  return model;
}

absl::StatusOr<std::vector<int32_t>> BlockserveService::Input(const ServingModel& model, const std::string& text,
                                                              const google::protobuf::RepeatedField<int32_t>& ids,
                                                              bool allow_empty) const {
  if (!text.empty() && !ids.empty()) return absl::InvalidArgumentError("text, token_ids: give one of them, not both");
  if (text.empty() && ids.empty()) {
    if (allow_empty) return std::vector<int32_t>();
    return absl::InvalidArgumentError("text, token_ids: one of them is required");
  }
  if (static_cast<int64_t>(text.size()) > options_.max_prompt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("text: ", text.size(), " bytes, over --max_prompt_bytes (",
                                                   options_.max_prompt_bytes,
                                                   "); feed long input into a session with Append first"));
  }
  if (ids.size() > options_.max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("token_ids: ", ids.size(), " tokens, over --max_prompt_tokens (",
                                                   options_.max_prompt_tokens,
                                                   "); feed long input into a session with Append first"));
  }
  if (!text.empty()) return model.tokenizer->Encode(text);
  const int V = model.runner->info().vocab_size;
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= V) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids[", i, "]: ", ids[i], " is outside the vocabulary [0, ", V, ")"));
    }
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

grpc::ServerWriteReactor<v1::GenerateResponse>* BlockserveService::Generate(grpc::CallbackServerContext* context,
                                                                            const v1::GenerateRequest* request) {
  auto fail = [&](const absl::Status& status) {
    metrics_->Request("Generate", CodeName(status));
    return new ErrorWriteReactor<v1::GenerateResponse>(ToGrpc(status));
  };
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return fail(owner.status());
  absl::StatusOr<ServingModel*> model = Model(request->model());
  if (!model.ok()) return fail(model.status());
  const int V = (*model)->runner->info().vocab_size;
  engine::Request r;
  r.kind = engine::RequestKind::kGenerate;
  absl::Status s = SamplingFromProto(request->sampling(), request->logprobs(), request->top_logprobs(), V, &r.sampling);
  if (s.ok()) s = StopFromProto(request->stop(), V, &r.stop);
  if (!s.ok()) return fail(s);
  absl::StatusOr<std::vector<int32_t>> input =
      Input(**model, request->text(), request->token_ids(), /*allow_empty=*/!request->session_id().empty());
  if (!input.ok()) return fail(input.status());
  r.prompt = *std::move(input);
  r.deadline = Deadline(context);
  if (request->priority() < -100 || request->priority() > 100) {
    return fail(absl::InvalidArgumentError("priority: must be in [-100, 100]"));
  }
  r.priority = request->priority();
  absl::StatusOr<std::unique_ptr<SessionLease>> lease = SessionLease::Take(*model, request->session_id(), *owner);
  if (!lease.ok()) return fail(lease.status());
  auto* reactor = new GenerateReactor(this, *model, *std::move(lease), request->logprobs());
  reactor->Start(std::move(r));
  return reactor;
}

grpc::ServerReadReactor<v1::AppendRequest>* BlockserveService::Append(grpc::CallbackServerContext* context,
                                                                      v1::AppendResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  absl::StatusOr<ServingModel*> model = owner.ok() ? Model("") : owner.status();
  if (!model.ok()) {
    metrics_->Request("Append", CodeName(model.status()));
    return new ErrorReadReactor<v1::AppendRequest>(ToGrpc(model.status()));
  }
  return new AppendReactor(this, *model, *owner, Deadline(context), response);
}

grpc::ServerUnaryReactor* BlockserveService::Score(grpc::CallbackServerContext* context,
                                                   const v1::ScoreRequest* request, v1::ScoreResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "Score", owner.status());
  absl::StatusOr<ServingModel*> model = Model(request->model());
  if (!model.ok()) return FinishUnary(context, "Score", model.status());
  absl::StatusOr<std::vector<int32_t>> input = Input(**model, request->text(), request->token_ids(), false);
  if (!input.ok()) return FinishUnary(context, "Score", input.status());
  absl::StatusOr<std::unique_ptr<SessionLease>> lease = SessionLease::Take(*model, request->session_id(), *owner);
  if (!lease.ok()) return FinishUnary(context, "Score", lease.status());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  engine::Request r;
  r.kind = engine::RequestKind::kScore;
  r.session = (*lease)->context;
  r.prompt = *std::move(input);
  r.deadline = Deadline(context);
  // The lease lives until the engine's final output (shared: std::function must be copyable).
  std::shared_ptr<SessionLease> shared(std::move(*lease));
  r.on_output = [this, reactor, response, shared](const engine::RequestOutput& out) mutable {
    if (!out.finished) return;
    response->set_tokens(out.scored_tokens);
    response->set_log_likelihood(-out.score_nats);
    response->set_bits_per_token(out.scored_tokens > 0 ? out.score_nats / out.scored_tokens / std::log(2.0) : 0.0);
    metrics_->PromptTokens(out.scored_tokens);
    metrics_->Request("Score", CodeName(out.status));
    shared.reset();
    reactor->Finish(ToGrpc(out.status));
  };
  absl::Status submitted = (*model)->engine->Submit(std::move(r)).status();
  if (!submitted.ok()) {
    metrics_->Request("Score", CodeName(submitted));
    reactor->Finish(ToGrpc(submitted));
  }
  return reactor;
}

grpc::ServerUnaryReactor* BlockserveService::Tokenize(grpc::CallbackServerContext* context,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "Tokenize", owner.status());
  absl::StatusOr<ServingModel*> model = Model(request->model());
  if (!model.ok()) return FinishUnary(context, "Tokenize", model.status());
  if (static_cast<int64_t>(request->text().size()) > options_.max_prompt_bytes) {
    return FinishUnary(context, "Tokenize",
                       absl::InvalidArgumentError(absl::StrCat("text: over --max_prompt_bytes (",
                                                               options_.max_prompt_bytes, ")")));
  }
  absl::StatusOr<std::vector<int32_t>> ids = (*model)->tokenizer->Encode(request->text());
  if (!ids.ok()) return FinishUnary(context, "Tokenize", ids.status());
  for (int32_t id : *ids) {
    response->add_token_ids(id);
    absl::StatusOr<std::string> piece = (*model)->tokenizer->IdToPiece(id);
    response->add_pieces(piece.ok() ? *piece : "");
  }
  return FinishUnary(context, "Tokenize", absl::OkStatus());
}

grpc::ServerUnaryReactor* BlockserveService::Detokenize(grpc::CallbackServerContext* context,
                                                        const v1::DetokenizeRequest* request,
                                                        v1::DetokenizeResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "Detokenize", owner.status());
  absl::StatusOr<ServingModel*> model = Model(request->model());
  if (!model.ok()) return FinishUnary(context, "Detokenize", model.status());
  const int V = (*model)->tokenizer->vocab_size();
  for (int i = 0; i < request->token_ids_size(); ++i) {
    if (request->token_ids(i) < 0 || request->token_ids(i) >= V) {
      return FinishUnary(context, "Detokenize",
                         absl::InvalidArgumentError(absl::StrCat("token_ids[", i, "]: ", request->token_ids(i),
                                                                 " is outside the tokenizer's vocabulary [0, ", V,
                                                                 ")")));
    }
  }
  absl::StatusOr<std::string> text = (*model)->tokenizer->Decode(
      std::vector<int32_t>(request->token_ids().begin(), request->token_ids().end()));
  if (!text.ok()) return FinishUnary(context, "Detokenize", text.status());
  response->set_text(*text);
  return FinishUnary(context, "Detokenize", absl::OkStatus());
}

grpc::ServerUnaryReactor* BlockserveService::ListModels(grpc::CallbackServerContext* context,
                                                        const v1::ListModelsRequest* /*request*/,
                                                        v1::ListModelsResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "ListModels", owner.status());
  absl::StatusOr<ServingModel*> model = Model("");
  if (!model.ok()) return FinishUnary(context, "ListModels", model.status());
  const engine::ModelInfo& info = (*model)->runner->info();
  v1::ModelInfo* m = response->add_models();
  m->set_name(info.name);
  m->set_family(info.family);
  m->set_vocab_size(info.vocab_size);
  m->set_d_model(info.d_model);
  m->set_num_layers(info.num_layers);
  m->set_num_parameters(info.num_parameters);
  m->set_block_length(info.family == "brt" ? info.block_size : 0);
  m->set_state_bytes(static_cast<int64_t>(info.state_bytes));
  m->set_max_context_tokens(info.max_position < 0 ? 0 : info.max_position);
  return FinishUnary(context, "ListModels", absl::OkStatus());
}

grpc::ServerUnaryReactor* BlockserveService::CreateSession(grpc::CallbackServerContext* context,
                                                           const v1::CreateSessionRequest* request,
                                                           v1::Session* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "CreateSession", owner.status());
  absl::StatusOr<ServingModel*> model = Model(request->model());
  if (!model.ok()) return FinishUnary(context, "CreateSession", model.status());
  absl::StatusOr<engine::SessionInfo> info = (*model)->sessions->Create(*owner);
  if (!info.ok()) return FinishUnary(context, "CreateSession", info.status());
  SessionToProto(*info, (*model)->runner->info().name, response);
  return FinishUnary(context, "CreateSession", absl::OkStatus());
}

grpc::ServerUnaryReactor* BlockserveService::GetSession(grpc::CallbackServerContext* context,
                                                        const v1::GetSessionRequest* request, v1::Session* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "GetSession", owner.status());
  absl::StatusOr<ServingModel*> model = Model("");
  if (!model.ok()) return FinishUnary(context, "GetSession", model.status());
  absl::StatusOr<engine::SessionInfo> info = (*model)->sessions->Get(request->session_id(), *owner);
  if (!info.ok()) return FinishUnary(context, "GetSession", info.status());
  SessionToProto(*info, (*model)->runner->info().name, response);
  return FinishUnary(context, "GetSession", absl::OkStatus());
}

grpc::ServerUnaryReactor* BlockserveService::ListSessions(grpc::CallbackServerContext* context,
                                                          const v1::ListSessionsRequest* /*request*/,
                                                          v1::ListSessionsResponse* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "ListSessions", owner.status());
  absl::StatusOr<ServingModel*> model = Model("");
  if (!model.ok()) return FinishUnary(context, "ListSessions", model.status());
  for (const engine::SessionInfo& info : (*model)->sessions->List(*owner)) {
    SessionToProto(info, (*model)->runner->info().name, response->add_sessions());
  }
  return FinishUnary(context, "ListSessions", absl::OkStatus());
}

grpc::ServerUnaryReactor* BlockserveService::DeleteSession(grpc::CallbackServerContext* context,
                                                           const v1::DeleteSessionRequest* request,
                                                           v1::DeleteSessionResponse* /*response*/) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "DeleteSession", owner.status());
  absl::StatusOr<ServingModel*> model = Model("");
  if (!model.ok()) return FinishUnary(context, "DeleteSession", model.status());
  return FinishUnary(context, "DeleteSession", (*model)->sessions->Delete(request->session_id(), *owner));
}

}  // namespace blockserve::server

namespace blockserve::server {

grpc::ServerUnaryReactor* BlockserveService::CompleteLease(grpc::CallbackServerContext* context, const char* method,
                                                           ServingModel* model, engine::Lease lease,
                                                           const std::string& owner, v1::Session* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto finish = [this, reactor, model, method, owner, response](const std::string& id, const absl::Status& status) {
    model->sessions->Release(id);
    absl::Status s = status;
    if (s.ok()) {
      absl::StatusOr<engine::SessionInfo> info = model->sessions->Get(id, owner);
      if (info.ok()) SessionToProto(*info, model->runner->info().name, response);
      s = info.status();
    }
    metrics_->Request(method, CodeName(s));
    reactor->Finish(ToGrpc(s));
  };
  if (lease.to_feed.empty()) {
    finish(lease.id, absl::OkStatus());
    return reactor;
  }
  engine::Request r;
  r.kind = engine::RequestKind::kAppend;
  r.session = lease.context;
  r.prompt = std::move(lease.to_feed);
  const std::string id = lease.id;
  r.on_output = [finish, id](const engine::RequestOutput& out) {
    if (out.finished) finish(id, out.status);
  };
  absl::Status submitted = model->engine->Submit(std::move(r)).status();
  if (!submitted.ok()) finish(id, submitted);
  return reactor;
}

grpc::ServerUnaryReactor* BlockserveService::ForkSession(grpc::CallbackServerContext* context,
                                                         const v1::ForkSessionRequest* request, v1::Session* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "ForkSession", owner.status());
  absl::StatusOr<ServingModel*> model = Model("");
  if (!model.ok()) return FinishUnary(context, "ForkSession", model.status());
  if (request->tokens() < 0) {
    return FinishUnary(context, "ForkSession", absl::InvalidArgumentError("tokens: must be >= 0 (0: all)"));
  }
  absl::StatusOr<engine::Lease> lease = (*model)->sessions->Fork(request->session_id(), *owner, request->tokens());
  if (!lease.ok()) return FinishUnary(context, "ForkSession", lease.status());
  return CompleteLease(context, "ForkSession", *model, *std::move(lease), *owner, response);
}

grpc::ServerUnaryReactor* BlockserveService::RewindSession(grpc::CallbackServerContext* context,
                                                           const v1::RewindSessionRequest* request,
                                                           v1::Session* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  if (!owner.ok()) return FinishUnary(context, "RewindSession", owner.status());
  absl::StatusOr<ServingModel*> model = Model("");
  if (!model.ok()) return FinishUnary(context, "RewindSession", model.status());
  if (request->tokens() < 1) {
    return FinishUnary(context, "RewindSession", absl::InvalidArgumentError("tokens: must be >= 1"));
  }
  absl::StatusOr<engine::Lease> lease = (*model)->sessions->Rewind(request->session_id(), *owner, request->tokens());
  if (!lease.ok()) return FinishUnary(context, "RewindSession", lease.status());
  return CompleteLease(context, "RewindSession", *model, *std::move(lease), *owner, response);
}

grpc::ServerWriteReactor<v1::SessionBytes>* BlockserveService::ExportSession(
    grpc::CallbackServerContext* context, const v1::ExportSessionRequest* request) {
  absl::StatusOr<std::string> owner = Owner(context);
  absl::StatusOr<ServingModel*> model = owner.ok() ? Model("") : owner.status();
  absl::StatusOr<std::string> bytes =
      model.ok() ? (*model)->sessions->Export(request->session_id(), *owner) : model.status();
  metrics_->Request("ExportSession", CodeName(bytes.status()));
  if (!bytes.ok()) return new ErrorWriteReactor<v1::SessionBytes>(ToGrpc(bytes.status()));
  return new ExportReactor(*std::move(bytes));
}

grpc::ServerReadReactor<v1::SessionBytes>* BlockserveService::ImportSession(grpc::CallbackServerContext* context,
                                                                            v1::Session* response) {
  absl::StatusOr<std::string> owner = Owner(context);
  absl::StatusOr<ServingModel*> model = owner.ok() ? Model("") : owner.status();
  if (!model.ok()) {
    metrics_->Request("ImportSession", CodeName(model.status()));
    return new ErrorReadReactor<v1::SessionBytes>(ToGrpc(model.status()));
  }
  return new ImportReactor(this, *model, *owner, response);
}

}  // namespace blockserve::server
