// BlockserveService: the gRPC callback service (generation streams, append, score, sessions, models).
#ifndef BLOCKSERVE_SERVER_BLOCKSERVE_SERVICE_H_
#define BLOCKSERVE_SERVER_BLOCKSERVE_SERVICE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/tokenizer.h"
#include "blockserve/v1/blockserve.grpc.pb.h"
#include "engine/api/model_runner.h"
#include "engine/engine.h"
#include "engine/session_store.h"
#include "server/metrics.h"

namespace blockserve::server {

struct ServiceOptions {
  std::vector<std::string> api_keys;     // empty: no authentication
  int64_t max_prompt_bytes = 1 << 20;    // Generate/Score text; longer input goes through Append
  int64_t max_prompt_tokens = 1 << 18;   // Generate/Score token ids
  int64_t append_chunk_tokens = 16384;   // Append feeds the engine in pieces of this many tokens
  int64_t max_append_message_bytes = 4 << 20;
  int64_t max_import_bytes = int64_t{1} << 30;  // ImportSession
};

// The loaded model and everything that serves it. Owned by main; the service borrows it.
struct ServingModel {
  std::unique_ptr<engine::ModelRunner> runner;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<engine::SessionStore> sessions;
  std::unique_ptr<engine::Engine> engine;
};

// Thread-safety: gRPC calls the handlers from its own threads; the engine calls the reactors'
// output callbacks from its loop thread. Shared state is guarded inside each reactor.
class BlockserveService final : public v1::Blockserve::CallbackService {
 public:
  BlockserveService(const ServiceOptions& options, Metrics* metrics);

  // Starts serving `model` (null: every RPC answers UNAVAILABLE "model is loading").
  void SetModel(ServingModel* model) { model_.store(model); }

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* context,
                                                           const v1::GenerateRequest* request) override;
  grpc::ServerReadReactor<v1::AppendRequest>* Append(grpc::CallbackServerContext* context,
                                                     v1::AppendResponse* response) override;
  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* context, const v1::ScoreRequest* request,
                                  v1::ScoreResponse* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context, const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const v1::CreateSessionRequest* request, v1::Session* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context, const v1::GetSessionRequest* request,
                                       v1::Session* response) override;
  grpc::ServerUnaryReactor* ListSessions(grpc::CallbackServerContext* context,
                                         const v1::ListSessionsRequest* request,
                                         v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* DeleteSession(grpc::CallbackServerContext* context,
                                          const v1::DeleteSessionRequest* request,
                                          v1::DeleteSessionResponse* response) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* context, const v1::ForkSessionRequest* request,
                                        v1::Session* response) override;
  grpc::ServerUnaryReactor* RewindSession(grpc::CallbackServerContext* context,
                                          const v1::RewindSessionRequest* request, v1::Session* response) override;
  grpc::ServerWriteReactor<v1::SessionBytes>* ExportSession(grpc::CallbackServerContext* context,
                                                            const v1::ExportSessionRequest* request) override;
  grpc::ServerReadReactor<v1::SessionBytes>* ImportSession(grpc::CallbackServerContext* context,
                                                           v1::Session* response) override;

  // Helpers shared with the reactors (public for them, not an API).
  Metrics& metrics() { return *metrics_; }
  const ServiceOptions& options() const { return options_; }
  // Finishes a unary call with `status`, counting it in the request metrics.
  grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, const char* method,
                                        const absl::Status& status);

 private:
  // The caller's owner key (API key; "" without authentication) or UNAUTHENTICATED.
  absl::StatusOr<std::string> Owner(grpc::CallbackServerContext* context) const;
  // The model, checking the request's model name; UNAVAILABLE while loading, NOT_FOUND for
  // another name.
  absl::StatusOr<ServingModel*> Model(const std::string& name) const;
  // Input of Generate/Score: exactly one of text or token ids, within the limits.
  // Completes a fork or rewind lease: feeds lease.to_feed (if any), releases the session and
  // finishes the call with its description.
  grpc::ServerUnaryReactor* CompleteLease(grpc::CallbackServerContext* context, const char* method,
                                          ServingModel* model, engine::Lease lease, const std::string& owner,
                                          v1::Session* response);
  absl::StatusOr<std::vector<int32_t>> Input(const ServingModel& model, const std::string& text,
                                             const google::protobuf::RepeatedField<int32_t>& ids,
                                             bool allow_empty) const;

  ServiceOptions options_;
  Metrics* metrics_;
  std::atomic<ServingModel*> model_{nullptr};
};

// absl::Status -> grpc::Status (the codes are the same numbers).
grpc::Status ToGrpc(const absl::Status& status);
// Converts and range-checks the API's sampling and stop parameters, naming the field on error.
absl::Status SamplingFromProto(const v1::SamplingParams& in, bool logprobs, int top_logprobs, int vocab_size,
                               engine::SamplingParams* out);
absl::Status StopFromProto(const v1::StopParams& in, int vocab_size, engine::StopParams* out);

}  // namespace blockserve::server

#endif  // BLOCKSERVE_SERVER_BLOCKSERVE_SERVICE_H_
