// blockserve-bench: decode tokens/s at several batch sizes, prefill tokens/s and decode time at long
// contexts, printed beside the memory-bandwidth floor this machine measures for the same weights.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "base/thread_pool.h"
#include "engine/api/model_runner.h"
#include "models/brt/brt_runner.h"
#include "models/checkpoint_layout.h"
#include "models/model_runner_factory.h"
#include "models/synthetic_checkpoint.h"

ABSL_FLAG(std::string, model, "", "Model directory; empty: a synthetic model (--synthetic).");
ABSL_FLAG(std::string, synthetic, "50m", "Synthetic preset when --model is empty: 50m | small | tiny (BRT), "
          "reformer-small | reformer-tiny (Reformer, 131072 positions).");
ABSL_FLAG(std::string, dtype, "f32", "Weights as f32 or bf16.");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all).");
ABSL_FLAG(std::string, batches, "1,8,32", "Decode batch sizes.");
ABSL_FLAG(int, steps, 24, "Timed decode steps per batch size (the median is reported).");
ABSL_FLAG(int, prefill_tokens, 2048, "Prompt length of the prefill measurement (0: skip).");
ABSL_FLAG(std::string, contexts, "", "Comma-separated context lengths (e.g. 1024,1000000): decode time per token "
                                     "at batch 1 after prefilling that many tokens.");
ABSL_FLAG(int, bandwidth_mib, 1024, "Buffer size of the memory-bandwidth measurement.");

namespace blockserve {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Read bandwidth of this machine with `threads` readers over a buffer much larger than the
// caches: the best of five passes, in bytes per second.
double MeasureReadBandwidth(size_t bytes, int threads) {
  const size_t n = bytes / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i * 2654435761u;
  ThreadPool pool(std::max(1, threads - 1));
  std::vector<uint64_t> sums(64, 0);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = Clock::now();
    pool.ParallelFor(static_cast<int64_t>(n), static_cast<int64_t>(n / threads + 1), [&](int64_t b, int64_t e) {
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      int64_t i = b;
      for (; i + 4 <= e; i += 4) {
        a0 += buf[i];
        a1 += buf[i + 1];
        a2 += buf[i + 2];
        a3 += buf[i + 3];
      }
      for (; i < e; ++i) a0 += buf[i];
      sums[(b * 7) % 64] += a0 + a1 + a2 + a3;
    });
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / Seconds(t0, Clock::now()));
  }
  volatile uint64_t sink = sums[0];
  (void)sink;
  return best;
}

// Reformer presets: [local, lsh] x 2, chunks of 64, 2 hash rounds, 2048 buckets (factorized), and
// 131072 positions so that decode can be timed past 64K tokens of context.
absl::StatusOr<ModelConfig> ReformerPreset(const std::string& name) {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.norm_eps = 1e-12f;
  ReformerConfig& r = c.reformer;
  if (name == "reformer-small") {
    c.vocab_size = 2048;
    c.d_model = 256;
    c.num_heads = 4;
    c.head_dim = 64;
    c.ffn_dim = 1024;
  } else {
    c.vocab_size = 512;
    c.d_model = 64;
    c.num_heads = 2;
    c.head_dim = 32;
    c.ffn_dim = 128;
  }
  c.num_layers = 4;
  r.attn_layers = {ReformerAttention::kLocal, ReformerAttention::kLsh, ReformerAttention::kLocal,
                   ReformerAttention::kLsh};
  r.lsh_chunk_length = 64;
  r.local_chunk_length = 64;
  r.num_hashes = 2;
  r.num_buckets = {32, 64};
  r.max_position_embeddings = 131072;
  r.axial_pos_shape = {256, 512};
  r.axial_pos_embds_dim = {c.d_model / 4, c.d_model - c.d_model / 4};
  r.dropout = 0.0f;
  RETURN_IF_ERROR(ValidateModelConfig(c));
  return c;
}

absl::StatusOr<ModelConfig> Preset(const std::string& name) {
  if (name == "reformer-small" || name == "reformer-tiny") return ReformerPreset(name);
  ModelConfig c;
  c.family = ModelFamily::kBrt;
  c.brt.model = BrtModel::kBrt;
  c.brt.gate = BrtGate::kFixed;
  c.brt.recurrent_variant = BrtRecurrentVariant::kSkip;
  if (name == "50m") {  // about 50M parameters
    c.vocab_size = 8192;
    c.d_model = 640;
    c.num_layers = 8;
    c.num_heads = 10;
    c.head_dim = 64;
    c.ffn_dim = 2560;
    c.brt.window = 128;
    c.brt.num_states = 128;
    c.brt.recurrent_layers = {5};
  } else if (name == "small") {
    c.vocab_size = 2048;
    c.d_model = 256;
    c.num_layers = 4;
    c.num_heads = 4;
    c.head_dim = 64;
    c.ffn_dim = 1024;
    c.brt.window = 64;
    c.brt.num_states = 64;
    c.brt.recurrent_layers = {2};
  } else if (name == "tiny") {
    c.vocab_size = 512;
    c.d_model = 64;
    c.num_layers = 2;
    c.num_heads = 2;
    c.head_dim = 32;
    c.ffn_dim = 128;
    c.brt.window = 64;
    c.brt.num_states = 16;
    c.brt.recurrent_layers = {1};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--synthetic: unknown preset '", name, "' (50m, small, tiny)"));
  }
  c.brt.segment_length = 4 * c.brt.window;
  RETURN_IF_ERROR(ValidateModelConfig(c));
  return c;
}

absl::StatusOr<std::vector<int>> ParseInts(const std::string& flag, const std::string& text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", part, "' is not a positive integer"));
    }
    out.push_back(v);
  }
  return out;
}

// Prefills `n` random tokens into `state` in prompts of up to 65536 tokens (one prompt for a
// model whose first prompt must be whole); returns seconds.
double PrefillRandom(engine::ModelRunner& runner, engine::SequenceState* state, int64_t n, std::mt19937& rng) {
  const int V = runner.info().vocab_size;
  std::vector<int32_t> tokens(runner.info().whole_first_prompt ? n : std::min<int64_t>(n, 65536));
  const auto t0 = Clock::now();
  for (int64_t done = 0; done < n;) {
    const int64_t m = std::min<int64_t>(tokens.size(), n - done);
    for (int64_t i = 0; i < m; ++i) tokens[i] = static_cast<int32_t>(rng() % V);
    engine::StepItem item;
    item.state = state;
    item.tokens = absl::MakeConstSpan(tokens.data(), m);
    item.logits = engine::StepItem::Logits::kNone;
    BS_CHECK(runner.Execute({&item, 1}).ok());
    done += m;
  }
  return Seconds(t0, Clock::now());
}

// Median seconds of `steps` decode steps over `states` (one random token each, logits kept).
double TimeDecode(engine::ModelRunner& runner, std::vector<std::unique_ptr<engine::SequenceState>>& states,
                  int steps, std::mt19937& rng) {
  const int V = runner.info().vocab_size;
  const size_t B = states.size();
  std::vector<int32_t> tokens(B);
  std::vector<float> logits(B * V);
  std::vector<engine::StepItem> items(B);
  std::vector<double> times;
  for (int s = 0; s < steps + 2; ++s) {  // two warm-up steps
    for (size_t b = 0; b < B; ++b) {
      tokens[b] = static_cast<int32_t>(rng() % V);
      items[b] = {states[b].get(), {&tokens[b], 1}, engine::StepItem::Logits::kLast, &logits[b * V]};
    }
    const auto t0 = Clock::now();
    BS_CHECK(runner.Execute(items).ok());
    if (s >= 2) times.push_back(Seconds(t0, Clock::now()));
  }
  return Median(times);
}

absl::Status Run() {
  RunnerOptions options;
  ASSIGN_OR_RETURN(options.weight_dtype, ParseWeightDType(absl::GetFlag(FLAGS_dtype)));
  options.num_threads = absl::GetFlag(FLAGS_threads);
  const int threads = options.num_threads > 0 ? options.num_threads
                                               : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  ASSIGN_OR_RETURN(const std::vector<int> batches, ParseInts("batches", absl::GetFlag(FLAGS_batches)));
  ASSIGN_OR_RETURN(const std::vector<int> contexts, ParseInts("contexts", absl::GetFlag(FLAGS_contexts)));
  const int steps = std::max(1, absl::GetFlag(FLAGS_steps));

  std::string dir = absl::GetFlag(FLAGS_model);
  std::string label = dir;
  if (dir.empty()) {
    const std::string preset = absl::GetFlag(FLAGS_synthetic);
    ASSIGN_OR_RETURN(const ModelConfig config, Preset(preset));
    char tmpl[] = "/tmp/blockserve_bench_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    dir = tmpl;
    RETURN_IF_ERROR(WriteSyntheticModelDir(config, dir, /*seed=*/1));
    label = absl::StrCat("synthetic ", preset);
  }
  ASSIGN_OR_RETURN(auto runner, LoadModelRunner(dir, options));
  if (absl::GetFlag(FLAGS_model).empty()) std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
  const engine::ModelInfo& info = runner->info();
  auto* brt = dynamic_cast<BrtRunner*>(runner.get());
  // Bytes a decode step must read: the BRT runner knows; otherwise every parameter but the
  // embedding table (one row is gathered), at the weights' width.
  const double weight_bytes =
      brt != nullptr ? static_cast<double>(brt->weights().decode_weight_bytes())
                     : static_cast<double>(info.num_parameters - int64_t{info.vocab_size} * info.d_model) *
                           (info.weight_dtype == "bf16" ? 2 : 4);

  std::printf("model: %s (%s), %.1fM parameters, weights %s, %d threads, SIMD dispatch at run time\n", label.c_str(),
              info.family.c_str(), info.num_parameters / 1e6, info.weight_dtype.c_str(), threads);
  std::printf("state bytes per sequence: %zu (constant in the context length: %s)\n", info.state_bytes,
              info.constant_state ? "yes" : "no");
  const double bandwidth = MeasureReadBandwidth(static_cast<size_t>(absl::GetFlag(FLAGS_bandwidth_mib)) << 20, threads);
  const double floor_s = weight_bytes / bandwidth;
  std::printf("memory read bandwidth (measured, %d threads): %.2f GB/s\n", threads, bandwidth / 1e9);
  std::printf("weight bytes read per decode step: %.1f MB -> bandwidth floor %.2f ms/step (%.1f tok/s at batch 1)\n",
              weight_bytes / 1e6, floor_s * 1e3, 1.0 / floor_s);

  std::mt19937 rng(5);
  double batch1 = 0;
  std::printf("\n%-8s %12s %14s %14s %16s\n", "batch", "ms/step", "tokens/s", "x floor", "x batch-1 tok/s");
  for (int B : batches) {
    std::vector<std::unique_ptr<engine::SequenceState>> states;
    for (int b = 0; b < B; ++b) {
      states.push_back(runner->NewState());
      PrefillRandom(*runner, states.back().get(), 1 + rng() % (2 * info.block_size), rng);
    }
    const double t = TimeDecode(*runner, states, steps, rng);
    const double tps = B / t;
    if (B == 1) batch1 = tps;
    std::printf("%-8d %12.2f %14.1f %14.2f %16s\n", B, t * 1e3, tps, t / floor_s,
                batch1 > 0 ? absl::StrCat(absl::SixDigits(tps / batch1)).c_str() : "-");
  }

  const int prefill = absl::GetFlag(FLAGS_prefill_tokens);
  if (prefill > 0) {
    std::vector<double> times;
    for (int rep = 0; rep < 3; ++rep) {
      auto state = runner->NewState();
      times.push_back(PrefillRandom(*runner, state.get(), prefill, rng));
    }
    std::printf("\nprefill: %d tokens in %.3f s = %.1f tokens/s (median of 3)\n", prefill, Median(times),
                prefill / Median(times));
  }

  if (!contexts.empty()) {
    std::printf("\n%-12s %14s %16s %12s\n", "context", "prefill s", "decode ms/tok", "state bytes");
    double first = 0;
    for (int ctx : contexts) {
      std::vector<std::unique_ptr<engine::SequenceState>> states;
      states.push_back(runner->NewState());
      const double p = PrefillRandom(*runner, states[0].get(), ctx, rng);
      const double t = TimeDecode(*runner, states, std::max(steps, 200), rng);
      if (first == 0) first = t;
      std::printf("%-12d %14.2f %16.4f %12zu   (%.3f x the first context)\n", ctx, p, t * 1e3,
                  states[0]->byte_size(), t / first);
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace blockserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Decode and prefill speed of a model beside this machine's memory-bandwidth floor.\n"
      "  blockserve-bench [--model DIR | --synthetic 50m|small|tiny] [--dtype f32|bf16] [--batches 1,8,32]\n"
      "                   [--prefill_tokens 2048] [--contexts 1024,1000000]");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = blockserve::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "blockserve-bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
