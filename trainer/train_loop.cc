// RunTraining: the document-sequential training loop (BRT, Reformer) with eval, checkpoints, resume and DDP.
#include "trainer/train_loop.h"

#include <ATen/autocast_mode.h>

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/thread_pool.h"
#include "base/tokenizer.h"
#include "models/checkpoint_layout.h"
#include "models/model_dir.h"
#include "nlohmann/json.hpp"
#include "trainer/checkpoint_io.h"
#include "trainer/corpus.h"
#include "trainer/distributed.h"
#include "trainer/plot.h"
#include "trainer/token_data.h"

namespace blockserve::trainer {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr double kLn2 = 0.69314718055994530942;

std::string FormatDuration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

// The BLAS library libtorch actually loaded (from /proc/self/maps).
std::string LoadedBlas() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("libblas") != std::string::npos || line.find("openblas") != std::string::npos) {
      return line.substr(line.find('/'));
    }
  }
  return "unknown";
}

torch::Tensor ToTensor(const std::vector<int32_t>& v, int64_t rows, int64_t cols) {
  return torch::from_blob(const_cast<int32_t*>(v.data()), {rows, cols}, torch::kInt32).to(torch::kInt64);
}

torch::Tensor StartTensor(const std::vector<uint8_t>& start) {
  return torch::from_blob(const_cast<uint8_t*>(start.data()), {static_cast<int64_t>(start.size())}, torch::kUInt8)
      .to(torch::kBool);
}

// Sum of cross-entropy (nats) over targets != 0.
torch::Tensor SumLoss(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}).to(torch::kFloat32), targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(0).reduction(torch::kSum));
}

// What must match for --resume to continue a run.
json RunFingerprint(const TrainOptions& o) {
  return {{"corpus", o.corpus},         {"max_corpus_bytes", o.max_corpus_bytes},
          {"heldout_fraction", o.heldout_fraction}, {"batch_size", o.batch_size},
          {"seed", o.seed},             {"world_size", o.world_size},
          {"segment_length", SegmentLength(o)},
          {"model", json::parse(ModelConfigToJson(o.model))}};
}

class Trainer {
 public:
  explicit Trainer(const TrainOptions& o) : o_(o) {}
  absl::Status Run();

 private:
  absl::Status PrepareData();
  absl::Status BuildModel();
  absl::Status SaveState(int step);
  absl::Status RestoreState(int* step);
  absl::Status Export(int step, const EvalResult* eval);
  EvalResult Evaluate(int64_t max_tokens);
  void AppendMetrics(const json& row);
  bool leader() const { return comm_->rank() == 0; }
  bool reformer() const { return o_.model.family == ModelFamily::kReformer; }
  torch::nn::Module& module() {
    if (reformer()) return **reformer_;
    return **model_;
  }
  // Training-mode logits of one batch (BRT: carrying cache_ across segments).
  torch::Tensor Forward(const torch::Tensor& inputs, const torch::Tensor& start);

  TrainOptions o_;
  std::unique_ptr<Communicator> comm_;
  std::string tokenizer_path_;
  std::vector<std::vector<int32_t>> train_docs_, heldout_docs_;
  int64_t train_tokens_ = 0;
  std::optional<BrtLm> model_;          // family brt
  std::optional<ReformerLm> reformer_;  // family reformer
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::optional<SegmentStream> stream_;
  BrtCache cache_;
  EvalResult last_eval_;
};

absl::Status Trainer::PrepareData() {
  ASSIGN_OR_RETURN(std::vector<Document> docs, LoadCorpus(o_.corpus, o_.max_corpus_bytes));
  CorpusSplit split = SplitCorpus(std::move(docs), o_.heldout_fraction, o_.seed);
  if (split.train.empty()) return absl::InvalidArgumentError("the corpus has no training documents");
  int64_t bytes = 0;
  for (const Document& d : split.train) bytes += static_cast<int64_t>(d.text.size());
  if (leader()) {
    BS_LOG(INFO) << "corpus '" << o_.corpus << "': " << split.train.size() << " training documents ("
                 << bytes / 1000 << " KB), " << split.heldout.size() << " held out";
  }
  if (leader()) {
    // The held-out documents as text, one file each, so that other tools (blockserve-eval)
    // can evaluate on exactly what the trainer evaluates on.
    const std::string dir = o_.out_dir + "/heldout";
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    for (size_t i = 0; i < split.heldout.size(); ++i) {
      std::string name = split.heldout[i].name;
      for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-' && ch != '_') ch = '_';
      }
      RETURN_IF_ERROR(WriteStringToFile(absl::StrFormat("%s/%03d_%s.txt", dir, i, name), split.heldout[i].text));
    }
  }
  tokenizer_path_ = o_.tokenizer.empty() ? o_.out_dir + "/" + kTokenizerFileName : o_.tokenizer;
  const bool have = fs::exists(tokenizer_path_);
  if (!have) {
    if (!o_.tokenizer.empty()) return absl::NotFoundError(absl::StrCat("--tokenizer ", o_.tokenizer, " not found"));
    if (leader()) {
      BS_LOG(INFO) << "training a " << o_.vocab_size << "-piece SentencePiece tokenizer";
      RETURN_IF_ERROR(TrainCorpusTokenizer(split.train, o_.vocab_size, tokenizer_path_));
    }
  }
  RETURN_IF_ERROR(comm_->Barrier());
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::Load(tokenizer_path_));
  o_.model.vocab_size = tok->vocab_size();
  ThreadPool pool(2);
  ASSIGN_OR_RETURN(train_docs_, EncodeDocuments(*tok, split.train, &pool));
  ASSIGN_OR_RETURN(heldout_docs_, EncodeDocuments(*tok, split.heldout, &pool));
  for (const auto& d : train_docs_) train_tokens_ += static_cast<int64_t>(d.size());
  if (leader()) {
    BS_LOG(INFO) << "tokenized: " << train_tokens_ << " training tokens ("
                 << absl::StrFormat("%.2f", static_cast<double>(bytes) / train_tokens_) << " bytes/token)";
  }
  const int local = o_.batch_size / o_.world_size;
  ASSIGN_OR_RETURN(stream_, SegmentStream::Create(&train_docs_, o_.batch_size, comm_->rank() * local, local,
                                                  SegmentLength(o_), o_.seed, /*loop=*/true));
  return absl::OkStatus();
}

absl::Status Trainer::BuildModel() {
  RETURN_IF_ERROR(ValidateModelConfig(o_.model));
  torch::manual_seed(o_.seed);  // identical initial weights on every rank
  if (reformer()) {
    reformer_.emplace(o_.model, o_.axial_init_std);
    (*reformer_)->set_ffn_chunk(o_.ffn_chunk);
  } else {
    model_.emplace(o_.model);
  }
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : module().named_parameters()) {
    (p.value().dim() >= 2 && p.key() != "embed.weight" ? decay : no_decay).push_back(p.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(o_.lr).betas({o_.beta1, o_.beta2}).weight_decay(o_.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(o_.lr).betas({o_.beta1, o_.beta2}).weight_decay(0.0)));
  optimizer_ = std::make_unique<torch::optim::AdamW>(std::move(groups),
                                                     torch::optim::AdamWOptions(o_.lr));
  return absl::OkStatus();
}

EvalResult Trainer::Evaluate(int64_t max_tokens) {
  const int batch = static_cast<int>(std::max<size_t>(1, std::min<size_t>(8, heldout_docs_.size())));
  if (reformer()) return EvaluateBitsPerToken(*reformer_, heldout_docs_, SegmentLength(o_), max_tokens);
  return EvaluateBitsPerToken(*model_, heldout_docs_, o_.model.brt.segment_length, batch, max_tokens);
}

torch::Tensor Trainer::Forward(const torch::Tensor& inputs, const torch::Tensor& start) {
  if (reformer()) return (*reformer_)->forward(inputs, o_.reversible);  // each row from position 0
  return (*model_)->forward(inputs, start, &cache_);
}

void Trainer::AppendMetrics(const json& row) {
  std::ofstream out(o_.out_dir + "/metrics.jsonl", std::ios::app);
  out << row.dump() << "\n";
}

// Training state lives in out_dir/train_state: weights, optimizer, and per rank the data
// stream position and the carried cache. It is written to train_state.tmp and renamed.
absl::Status Trainer::SaveState(int step) {
  const std::string tmp = o_.out_dir + "/train_state.tmp", final_dir = o_.out_dir + "/train_state";
  std::error_code ec;
  if (leader()) {
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", ec.message()));
  }
  RETURN_IF_ERROR(comm_->Barrier());
  const std::string rank_prefix = absl::StrCat(tmp, "/rank", comm_->rank());
  RETURN_IF_ERROR(WriteStringToFile(rank_prefix + ".stream", stream_->SaveState()));
  std::vector<torch::Tensor> cache;
  for (size_t i = 0; i < cache_.prev_k.size(); ++i) {
    cache.push_back(cache_.prev_k[i]);
    cache.push_back(cache_.prev_v[i]);
    cache.push_back(cache_.state[i].defined() ? cache_.state[i] : torch::zeros({0}));
  }
  torch::save(cache, rank_prefix + ".cache.pt");
  RETURN_IF_ERROR(comm_->Barrier());
  if (leader()) {
    RETURN_IF_ERROR(ExportModelDir(module(), o_.model, tmp, "", json()));
    torch::save(*optimizer_, tmp + "/optimizer.pt");
    json state = {{"step", step}, {"run", RunFingerprint(o_)}, {"tokenizer", tokenizer_path_},
                  {"last_eval_bits_per_token", last_eval_.bits_per_token}};
    RETURN_IF_ERROR(WriteStringToFile(tmp + "/state.json", state.dump(2)));
    fs::remove_all(final_dir, ec);
    fs::rename(tmp, final_dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", ec.message()));
  }
  return comm_->Barrier();
}

absl::Status Trainer::RestoreState(int* step) {
  const std::string dir = o_.out_dir + "/train_state";
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(dir + "/state.json"));
  const json state = json::parse(text, nullptr, false);
  if (state.is_discarded()) return absl::DataLossError(absl::StrCat(dir, "/state.json is corrupt"));
  if (state["run"] != RunFingerprint(o_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--resume: ", dir, " was written by a run with other settings: saved ", state["run"].dump(),
        ", now ", RunFingerprint(o_).dump()));
  }
  *step = state["step"].get<int>();
  last_eval_.bits_per_token = state.value("last_eval_bits_per_token", 0.0);
  ASSIGN_OR_RETURN(auto weights, SafetensorsFile::Open(dir + "/" + kWeightsFileName));
  RETURN_IF_ERROR(LoadWeights(module(), o_.model, *weights));
  torch::load(*optimizer_, dir + "/optimizer.pt");
  const std::string rank_prefix = absl::StrCat(dir, "/rank", comm_->rank());
  ASSIGN_OR_RETURN(std::string stream_state, ReadFileToString(rank_prefix + ".stream"));
  RETURN_IF_ERROR(stream_->RestoreState(stream_state));
  std::vector<torch::Tensor> cache;
  torch::load(cache, rank_prefix + ".cache.pt");
  cache_ = BrtCache();
  for (size_t i = 0; i + 2 < cache.size(); i += 3) {
    cache_.prev_k.push_back(cache[i]);
    cache_.prev_v.push_back(cache[i + 1]);
    cache_.state.push_back(cache[i + 2].numel() == 0 ? torch::Tensor() : cache[i + 2]);
  }
  // Keep the metrics of the steps that the saved state has seen.
  if (leader()) {
    auto metrics = ReadFileToString(o_.out_dir + "/metrics.jsonl");
    std::string kept;
    if (metrics.ok()) {
      std::istringstream lines(*metrics);
      std::string line;
      while (std::getline(lines, line)) {
        const json row = json::parse(line, nullptr, false);
        if (!row.is_discarded() && row.value("step", 0) <= *step) kept += line + "\n";
      }
    }
    RETURN_IF_ERROR(WriteStringToFile(o_.out_dir + "/metrics.jsonl", kept));
    BS_LOG(INFO) << "resumed from " << dir << " at step " << *step;
  }
  return absl::OkStatus();
}

absl::Status Trainer::Export(int step, const EvalResult* eval) {
  if (!leader()) return absl::OkStatus();
  json training = {{"corpus", o_.corpus},
                   {"steps", step},
                   {"batch_size", o_.batch_size},
                   {"segment_length", SegmentLength(o_)},
                   {"lr", o_.lr},
                   {"schedule", o_.schedule},
                   {"seed", o_.seed},
                   {"world_size", o_.world_size},
                   {"train_tokens_per_epoch", train_tokens_}};
  if (reformer()) {
    training["axial_init_std"] = o_.axial_init_std;
    training["reversible"] = o_.reversible;
  }
  if (eval != nullptr) {
    training["heldout_bits_per_token"] = eval->bits_per_token;
    training["heldout_tokens"] = eval->tokens;
  }
  return ExportModelDir(module(), o_.model, o_.out_dir, tokenizer_path_, training);
}

absl::Status Trainer::Run() {
  ASSIGN_OR_RETURN(comm_, Communicator::Create(o_.world_size, o_.rank, o_.rendezvous, o_.interface));
  std::error_code ec;
  fs::create_directories(o_.out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", o_.out_dir, ": ", ec.message()));
  // 0: the machine's cores shared by this machine's processes (libtorch's own default can be 1).
  torch::set_num_threads(o_.threads > 0 ? o_.threads
                                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                                          o_.world_size));
  RETURN_IF_ERROR(PrepareData());
  RETURN_IF_ERROR(BuildModel());
  const int local = o_.batch_size / o_.world_size;
  const int64_t N = SegmentLength(o_);
  int step = 0;
  if (o_.resume) {
    RETURN_IF_ERROR(RestoreState(&step));
  } else if (leader()) {
    fs::remove(o_.out_dir + "/metrics.jsonl", ec);
  }
  if (!reformer() && cache_.empty()) cache_ = (*model_)->NewCache(local);
  if (leader()) {
    const json config = json::parse(ModelConfigToJson(o_.model));
    BS_LOG(INFO) << "model: " << FamilyName(o_.model.family) << " family, "
                 << (reformer() ? config["reformer"]["attn_layers"].dump() : config["brt"]["model"].get<std::string>())
                 << ", " << CountParameters(o_.model) << " parameters; batch " << o_.batch_size << " x " << N
                 << " tokens, " << o_.world_size << " process(es), " << torch::get_num_threads()
                 << " thread(s) each; BLAS " << LoadedBlas();
  }
  std::vector<torch::Tensor> params = module().parameters();
  const auto t_start = Clock::now();
  double window_tokens = 0, window_nats = 0;
  auto window_start = Clock::now();
  const int first_step = step;
  SegmentStream::Batch batch;
  while (step < o_.steps) {
    const double lr = LearningRate(o_, step);
    for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    torch::manual_seed(o_.seed * 1000003ULL + static_cast<uint64_t>(step) * 7919ULL + comm_->rank());
    stream_->Next(&batch);
    const torch::Tensor inputs = ToTensor(batch.inputs, local, N);
    const torch::Tensor targets = ToTensor(batch.targets, local, N);
    module().train();
    torch::Tensor loss_sum;
    {
      at::autocast::set_cpu_enabled(o_.bf16);
      const torch::Tensor logits = Forward(inputs, StartTensor(batch.start));
      at::autocast::set_cpu_enabled(false);
      loss_sum = SumLoss(logits, targets);
    }
    // Normalized by the global token slots (not the count of real targets) so that the
    // all-reduced sum of rank gradients is exactly the single-process gradient.
    (loss_sum / static_cast<double>(o_.batch_size * N)).backward();
    RETURN_IF_ERROR(comm_->AllReduceGradients(params));
    if (o_.clip_norm > 0) torch::nn::utils::clip_grad_norm_(params, o_.clip_norm);
    optimizer_->step();
    optimizer_->zero_grad();
    std::vector<torch::Tensor> stats = {torch::stack({loss_sum.detach().to(torch::kFloat64),
                                                      torch::tensor(static_cast<double>(batch.num_targets), torch::kFloat64)})};
    RETURN_IF_ERROR(comm_->AllReduceSum(stats));
    const double nats = stats[0][0].item<double>(), count = std::max(1.0, stats[0][1].item<double>());
    ++step;
    window_nats += nats;
    window_tokens += count;
    if (leader()) {
      AppendMetrics({{"step", step}, {"loss", nats / count}, {"bits_per_token", nats / count / kLn2}, {"lr", lr},
                     {"tokens", count}});
    }
    if (leader() && (step % o_.log_every == 0 || step == o_.steps)) {
      const double dt = std::chrono::duration<double>(Clock::now() - window_start).count();
      const double total = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double eta = total / (step - first_step) * (o_.steps - step);
      std::printf("step %d/%d  loss %.4f  bits/token %.4f  lr %.2e  %.0f tokens/s  elapsed %s  eta %s\n", step,
                  o_.steps, window_nats / window_tokens, window_nats / window_tokens / kLn2, lr,
                  window_tokens / std::max(dt, 1e-9), FormatDuration(total).c_str(), FormatDuration(eta).c_str());
      std::fflush(stdout);
      window_nats = window_tokens = 0;
      window_start = Clock::now();
    }
    if (o_.eval_every > 0 && step % o_.eval_every == 0 && step < o_.steps) {
      if (leader()) {
        last_eval_ = Evaluate(o_.eval_max_tokens);
        std::printf("eval step %d  held-out bits/token %.4f  (%lld tokens)\n", step, last_eval_.bits_per_token,
                    static_cast<long long>(last_eval_.tokens));
        std::fflush(stdout);
        AppendMetrics({{"step", step}, {"eval_bits_per_token", last_eval_.bits_per_token},
                       {"eval_tokens", last_eval_.tokens}});
      }
      RETURN_IF_ERROR(comm_->Barrier());
      window_start = Clock::now();  // keep evaluation time out of the tokens/s figure
    }
    if (o_.save_every > 0 && step % o_.save_every == 0 && step < o_.steps) RETURN_IF_ERROR(SaveState(step));
    if (o_.stop_at > 0 && step == o_.stop_at && step < o_.steps) {
      RETURN_IF_ERROR(SaveState(step));
      if (leader()) std::printf("stopped at step %d of %d; continue with --resume\n", step, o_.steps);
      return absl::OkStatus();
    }
  }
  const double train_seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  RETURN_IF_ERROR(SaveState(step));
  if (leader()) {
    last_eval_ = Evaluate(0);
    std::printf("final held-out bits/token %.4f (%lld tokens); %.1f s training, %.3f s/step\n",
                last_eval_.bits_per_token, static_cast<long long>(last_eval_.tokens), train_seconds,
                train_seconds / std::max(1, step - first_step));
    AppendMetrics({{"step", step}, {"eval_bits_per_token", last_eval_.bits_per_token},
                   {"eval_tokens", last_eval_.tokens}, {"final", true},
                   {"seconds_per_step", train_seconds / std::max(1, step - first_step)}});
    RETURN_IF_ERROR(Export(step, &last_eval_));
    if (o_.plot) {
      const absl::Status plotted = WriteTrainingPlot(o_.out_dir + "/metrics.jsonl", o_.out_dir + "/curves.png");
      if (!plotted.ok()) BS_LOG(WARNING) << "no plot: " << plotted.message();
    }
    std::printf("model directory: %s\n", o_.out_dir.c_str());
  }
  return comm_->Barrier();
}

}  // namespace

double LearningRate(const TrainOptions& o, int step) {
  const double warm = o.warmup_steps > 0 ? std::min(1.0, (step + 1.0) / o.warmup_steps) : 1.0;
  if (o.schedule == "constant") return o.lr * warm;
  if (o.schedule == "rsqrt") {
    return o.lr * warm * std::sqrt(std::max(1.0, static_cast<double>(o.warmup_steps)) /
                                   std::max<double>(step + 1, std::max(1, o.warmup_steps)));
  }
  const double span = std::max(1, o.steps - o.warmup_steps);
  const double progress = std::clamp((step - o.warmup_steps) / span, 0.0, 1.0);
  const double min_lr = o.lr * o.min_lr_ratio;
  return warm * (min_lr + (o.lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

EvalResult EvaluateBitsPerToken(BrtLm& model, const std::vector<std::vector<int32_t>>& docs, int segment_length,
                                int batch, int64_t max_tokens) {
  EvalResult result;
  if (docs.empty()) return result;
  auto stream = SegmentStream::Create(&docs, batch, 0, batch, segment_length, 0, /*loop=*/false);
  if (!stream.ok()) return result;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  BrtCache cache;
  SegmentStream::Batch b;
  double nats = 0;
  while (stream->Next(&b)) {
    const torch::Tensor logits = model->forward(ToTensor(b.inputs, batch, segment_length), StartTensor(b.start), &cache);
    nats += SumLoss(logits, ToTensor(b.targets, batch, segment_length)).item<double>();
    result.tokens += b.num_targets;
    if (max_tokens > 0 && result.tokens >= max_tokens) break;
  }
  if (was_training) model->train();
  result.bits_per_token = result.tokens > 0 ? nats / result.tokens / kLn2 : 0.0;
  return result;
}

EvalResult EvaluateBitsPerToken(ReformerLm& model, const std::vector<std::vector<int32_t>>& docs,
                                int segment_length, int64_t max_tokens) {
  EvalResult result;
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double nats = 0;
  for (const std::vector<int32_t>& doc : docs) {
    const int64_t inputs = static_cast<int64_t>(doc.size()) - 1;
    for (int64_t begin = 0; begin < inputs; begin += segment_length) {
      const int64_t n = std::min<int64_t>(segment_length, inputs - begin);
      const std::vector<int32_t> in(doc.begin() + begin, doc.begin() + begin + n);
      const std::vector<int32_t> target(doc.begin() + begin + 1, doc.begin() + begin + n + 1);
      const torch::Tensor logits = model->forward(ToTensor(in, 1, n));
      nats += SumLoss(logits, ToTensor(target, 1, n)).item<double>();
      result.tokens += n;
      if (max_tokens > 0 && result.tokens >= max_tokens) break;
    }
    if (max_tokens > 0 && result.tokens >= max_tokens) break;
  }
  if (was_training) model->train();
  result.bits_per_token = result.tokens > 0 ? nats / result.tokens / kLn2 : 0.0;
  return result;
}

int SegmentLength(const TrainOptions& o) {
  return o.model.family == ModelFamily::kReformer ? o.reformer_segment_length : o.model.brt.segment_length;
}

absl::Status ValidateTrainOptions(const TrainOptions& o) {
  auto bad = [](absl::string_view flag, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
  };
  if (o.out_dir.empty()) return bad("out", "is required");
  if (o.batch_size < 1) return bad("batch", "must be at least 1");
  if (o.steps < 1) return bad("steps", "must be at least 1");
  if (!(o.lr > 0)) return bad("lr", "must be positive");
  if (o.schedule != "cosine" && o.schedule != "rsqrt" && o.schedule != "constant") {
    return bad("schedule", "must be cosine, rsqrt or constant");
  }
  if (o.heldout_fraction < 0 || o.heldout_fraction >= 1) return bad("heldout", "must be in [0, 1)");
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) return bad("rank", "must be in [0, world_size)");
  if (o.batch_size % o.world_size != 0) {
    return bad("batch", absl::StrCat("(", o.batch_size, ") must be a multiple of the number of processes (",
                                     o.world_size, ")"));
  }
  if (o.world_size > 1 && o.rendezvous.empty()) return bad("rendezvous", "is required with several processes");
  if (o.model.family == ModelFamily::kReformer &&
      (o.reformer_segment_length < 1 || o.reformer_segment_length > o.model.reformer.max_position_embeddings)) {
    return bad("segment", absl::StrCat("must be in [1, max_positions = ", o.model.reformer.max_position_embeddings,
                                       "] for a Reformer, got ", o.reformer_segment_length));
  }
  ModelConfig probe = o.model;
  probe.vocab_size = std::max(probe.vocab_size, o.vocab_size);
  return ValidateModelConfig(probe);
}

absl::Status RunTraining(const TrainOptions& options) {
  RETURN_IF_ERROR(ValidateTrainOptions(options));
  Trainer trainer(options);
  return trainer.Run();
}

}  // namespace blockserve::trainer
