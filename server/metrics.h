// Prometheus metrics of the server (prometheus-cpp registry; the exposer serves /metrics).
#ifndef BLOCKSERVE_SERVER_METRICS_H_
#define BLOCKSERVE_SERVER_METRICS_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace blockserve::server {

// Every metric carries a `model` label. Names follow the Prometheus conventions
// (blockserve_*_total counters, *_seconds histograms).
// Thread-safety: prometheus-cpp metrics are thread-safe; so is every method here.
class Metrics {
 public:
  explicit Metrics(const std::string& model);

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  // The current values in the Prometheus text format (what /metrics serves).
  std::string Text() const;

  void Request(absl::string_view method, absl::string_view code);
  void Finished(absl::string_view finish_reason);
  void PromptTokens(int64_t n) { prompt_tokens_->Increment(static_cast<double>(n)); }
  void GenerationTokens(int64_t n) { generation_tokens_->Increment(static_cast<double>(n)); }
  void TimeToFirstToken(double s) { ttft_->Observe(s); }
  void InterTokenLatency(double s) { itl_->Observe(s); }
  void RequestDuration(double s) { e2e_->Observe(s); }
  void QueueTime(double s) { queue_->Observe(s); }
  void Step(int batch, double seconds) {
    step_->Observe(seconds);
    batch_->Observe(batch);
  }
  void SetRunning(int n) { running_->Set(n); }
  void SetWaiting(int n) { waiting_->Set(n); }
  void SetSessions(int live, int offloaded, double state_bytes) {
    sessions_->Set(live);
    offloaded_->Set(offloaded);
    state_bytes_->Set(state_bytes);
  }

 private:
  std::string model_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* finished_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* e2e_;
  prometheus::Histogram* queue_;
  prometheus::Histogram* step_;
  prometheus::Histogram* batch_;
  prometheus::Gauge* running_;
  prometheus::Gauge* waiting_;
  prometheus::Gauge* sessions_;
  prometheus::Gauge* offloaded_;
  prometheus::Gauge* state_bytes_;
};

}  // namespace blockserve::server

#endif  // BLOCKSERVE_SERVER_METRICS_H_
