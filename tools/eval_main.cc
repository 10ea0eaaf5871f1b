// blockserve-eval: bits per token of a model on text files (teacher forced, the trainer's eval protocol).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/file_io.h"
#include "base/status.h"
#include "base/tokenizer.h"
#include "engine/api/model_runner.h"
#include "engine/sampler.h"
#include "models/model_dir.h"
#include "models/model_runner_factory.h"

ABSL_FLAG(std::string, model, "", "Model directory (config.json, model.safetensors, tokenizer.model).");
ABSL_FLAG(std::string, text, "", "Comma-separated text files; each file is one document.");
ABSL_FLAG(std::string, dtype, "f32", "Weights as f32 or bf16.");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all).");
ABSL_FLAG(int64_t, max_tokens, 0, "Stop after this many predicted tokens (0: all).");
ABSL_FLAG(int, chunk, 2048, "Tokens per forward call (bounds the logits buffer; BRT only).");
ABSL_FLAG(int64_t, prefill, 0, "Reformer: only the first N inputs of each segment are the prefill (full forward); "
          "the rest go through the cached decode step (0: the whole segment is the prefill).");
ABSL_FLAG(int64_t, segment, 0, "Reformer: tokens per independent segment, each from position 0 as the trainer "
          "evaluates (0: the model's max positions).");

namespace blockserve {
namespace {

struct EvalTotals {
  double nats = 0;
  int64_t tokens = 0;
};

// Each document is [bos] + ids + [eos]; every token after bos is predicted from the ones
// before it, with the state reset at the document start (as the trainer's eval does). BRT: the
// state carries across chunks of `chunk` tokens. Reformer (`segment` > 0): every segment of
// `segment` inputs is an independent sequence prefilled from position 0 in one item, as the
// trainer's Reformer evaluation runs one full forward per segment.
// With `prefill` > 0 only a segment's first `prefill` inputs are its prefill; the rest are fed
// after it, i.e. through the Reformer's cached decode step (docs/reformer-decoding.md).
absl::Status EvaluateDocument(engine::ModelRunner& runner, const std::vector<int32_t>& doc, int chunk,
                              int64_t segment, int64_t prefill, int64_t max_tokens, EvalTotals* totals) {
  const int V = runner.info().vocab_size;
  const int64_t piece = segment > 0 ? segment : chunk;
  std::unique_ptr<engine::SequenceState> state;  // BRT: one per document; Reformer: one per segment
  std::vector<float> logits(static_cast<size_t>(piece) * V);
  const int64_t inputs = static_cast<int64_t>(doc.size()) - 1;
  for (int64_t begin = 0; begin < inputs; begin += piece) {
    const int64_t n = std::min<int64_t>(piece, inputs - begin);
    if (state == nullptr || segment > 0) state = runner.NewState();
    const int64_t first = segment > 0 && prefill > 0 ? std::min(prefill, n) : n;
    for (int64_t at = 0; at < n;) {
      const int64_t m = at == 0 ? first : n - at;
      engine::StepItem item;
      item.state = state.get();
      item.tokens = absl::MakeConstSpan(doc).subspan(begin + at, m);
      item.logits = engine::StepItem::Logits::kAll;
      item.logits_out = &logits[at * V];
      RETURN_IF_ERROR(runner.Execute({&item, 1}));
      at += m;
    }
    for (int64_t r = 0; r < n; ++r) {
      const absl::Span<const float> row(&logits[r * V], V);
      totals->nats += engine::LogSumExp(row) - row[doc[begin + r + 1]];
      if (++totals->tokens == max_tokens) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status Run() {
  const std::string dir = absl::GetFlag(FLAGS_model), text = absl::GetFlag(FLAGS_text);
  if (dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (text.empty()) return absl::InvalidArgumentError("--text is required");
  const int chunk = absl::GetFlag(FLAGS_chunk);
  if (chunk < 1) return absl::InvalidArgumentError("--chunk must be >= 1");
  RunnerOptions options;
  ASSIGN_OR_RETURN(options.weight_dtype, ParseWeightDType(absl::GetFlag(FLAGS_dtype)));
  options.num_threads = absl::GetFlag(FLAGS_threads);
  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(dir + "/" + kTokenizerFileName));
  ASSIGN_OR_RETURN(auto runner, LoadModelRunner(dir, options));
  const engine::ModelInfo& info = runner->info();
  const int64_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
  int64_t segment = 0;
  if (info.whole_first_prompt) {
    segment = absl::GetFlag(FLAGS_segment) > 0 ? absl::GetFlag(FLAGS_segment) : info.max_position;
    if (info.max_position > 0 && segment > info.max_position) {
      return absl::InvalidArgumentError(absl::StrCat("--segment ", segment, " exceeds the model's ", info.max_position,
                                                     " positions"));
    }
  }
  EvalTotals totals;
  int documents = 0;
  const auto start = std::chrono::steady_clock::now();
  for (absl::string_view path : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    ASSIGN_OR_RETURN(const std::string content, ReadFileToString(std::string(path)));
    std::vector<int32_t> doc = {info.bos_id};
    ASSIGN_OR_RETURN(const std::vector<int32_t> ids, tokenizer->Encode(content));
    doc.insert(doc.end(), ids.begin(), ids.end());
    doc.push_back(info.eos_id);
    RETURN_IF_ERROR(EvaluateDocument(*runner, doc, chunk, segment, absl::GetFlag(FLAGS_prefill), max_tokens, &totals));
    ++documents;
    if (max_tokens > 0 && totals.tokens >= max_tokens) break;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double bits = totals.tokens > 0 ? totals.nats / totals.tokens / std::log(2.0) : 0.0;
  std::printf("model=%s documents=%d tokens=%lld bits_per_token=%.6f seconds=%.2f tokens_per_second=%.1f\n",
              info.name.c_str(), documents, static_cast<long long>(totals.tokens), bits, seconds,
              seconds > 0 ? totals.tokens / seconds : 0.0);
  return absl::OkStatus();
}

}  // namespace
}  // namespace blockserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Bits per token of a model on text files (each file one document, teacher forced).\n"
      "  blockserve-eval --model DIR --text FILE[,FILE...] [--dtype f32|bf16] [--segment N (Reformer)]");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = blockserve::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "blockserve-eval: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
