// Metric families and bucket layouts (CPU decode steps are milliseconds, GPU ones sub-millisecond).
#include "server/metrics.h"

#include "prometheus/text_serializer.h"

namespace blockserve::server {
namespace {

// 0.25 ms .. about 2 minutes, x2 per bucket: covers GPU steps and long CPU requests.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 0.00025; v < 150; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

Metrics::Metrics(const std::string& model) : model_(model), registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels labels = {{"model", model}};
  requests_ = &prometheus::BuildCounter()
                   .Name("blockserve_requests_total")
                   .Help("RPCs handled, by method and gRPC status code")
                   .Register(*registry_);
  finished_ = &prometheus::BuildCounter()
                   .Name("blockserve_generations_finished_total")
                   .Help("Generations finished, by finish reason")
                   .Register(*registry_);
  prompt_tokens_ = &prometheus::BuildCounter()
                        .Name("blockserve_prompt_tokens_total")
                        .Help("Input tokens processed (generate, append, score)")
                        .Register(*registry_)
                        .Add(labels);
  generation_tokens_ = &prometheus::BuildCounter()
                            .Name("blockserve_generation_tokens_total")
                            .Help("Tokens generated")
                            .Register(*registry_)
                            .Add(labels);
  auto histogram = [&](const char* name, const char* help, prometheus::Histogram::BucketBoundaries buckets) {
    return &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_).Add(labels, buckets);
  };
  ttft_ = histogram("blockserve_time_to_first_token_seconds", "Request arrival to its first generated token",
                    LatencyBuckets());
  itl_ = histogram("blockserve_inter_token_latency_seconds", "Time between consecutive generated tokens",
                   LatencyBuckets());
  e2e_ = histogram("blockserve_request_duration_seconds", "Generate request arrival to its final message",
                   LatencyBuckets());
  queue_ = histogram("blockserve_queue_seconds", "Time a request waited before its first engine step",
                     LatencyBuckets());
  step_ = histogram("blockserve_step_duration_seconds", "Duration of one engine step (model forward)",
                    LatencyBuckets());
  batch_ = histogram("blockserve_step_batch_size", "Sequences in one engine step",
                     prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256});
  auto gauge = [&](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add(labels);
  };
  running_ = gauge("blockserve_requests_running", "Requests in the engine's running batch");
  waiting_ = gauge("blockserve_requests_waiting", "Requests queued for the engine");
  sessions_ = gauge("blockserve_sessions", "Live sessions in memory");
  offloaded_ = gauge("blockserve_sessions_offloaded", "Sessions written to disk and evicted from memory");
  state_bytes_ = gauge("blockserve_session_state_bytes", "Bytes of model state held by live sessions");
}

void Metrics::Request(absl::string_view method, absl::string_view code) {
  requests_->Add({{"model", model_}, {"method", std::string(method)}, {"code", std::string(code)}}).Increment();
}

void Metrics::Finished(absl::string_view finish_reason) {
  finished_->Add({{"model", model_}, {"finish_reason", std::string(finish_reason)}}).Increment();
}

std::string Metrics::Text() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace blockserve::server
