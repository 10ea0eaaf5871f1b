// blockserve-train: trains a BRT (slide / brt / xl) or a Reformer on a corpus and writes a servable model dir.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "trainer/train_loop.h"

extern char** environ;

ABSL_FLAG(std::string, out, "", "Output model directory (config.json, model.safetensors, tokenizer.model, "
                                "metrics.jsonl, curves.png, train_state/).");
ABSL_FLAG(std::string, corpus, "kjv", "kjv | python | a text file | a directory of text files (one document each).");
ABSL_FLAG(int64_t, max_corpus_bytes, 0, "Use only the first N bytes of documents (0: all).");
ABSL_FLAG(double, heldout, 0.1, "Fraction of documents held out for evaluation.");
ABSL_FLAG(int, vocab, 2000, "SentencePiece vocabulary size (trained on the training documents).");
ABSL_FLAG(std::string, tokenizer, "", "Use this SentencePiece .model instead of training one.");
ABSL_FLAG(std::string, model, "brt", "Architecture: brt | slide | xl (BRT family) | reformer.");
ABSL_FLAG(int, d_model, 256, "Embedding width d.");
ABSL_FLAG(int, layers, 6, "Number of layers.");
ABSL_FLAG(int, heads, 4, "Attention heads.");
ABSL_FLAG(int, head_dim, 64, "Width of each head.");
ABSL_FLAG(int, ffn, 1024, "FFN hidden width.");
ABSL_FLAG(int, window, 64, "Block length W = attention window.");
ABSL_FLAG(int, segment, 256, "Training segment length N (BRT: a multiple of W, xl: N = W; reformer: tokens per "
          "independent training sequence, at most --max_positions).");
ABSL_FLAG(std::string, attn_layers, "local,lsh", "Reformer: attention of each layer, lsh or local, repeated to "
          "--layers (HF's attn_layers pattern).");
ABSL_FLAG(int, lsh_chunk, 64, "Reformer: LSH chunk length.");
ABSL_FLAG(int, local_chunk, 64, "Reformer: local attention chunk length.");
ABSL_FLAG(int, hashes, 2, "Reformer: LSH hash rounds.");
ABSL_FLAG(std::string, buckets, "", "Reformer: LSH buckets, one even number or two factors 'a,b' (default: "
          "2 * segment / lsh_chunk, at least 2).");
ABSL_FLAG(int, max_positions, 4096, "Reformer: positions of the axial embedding (its two factors are chosen "
          "as close to the square root as possible).");
ABSL_FLAG(std::string, act, "relu", "Reformer: feed-forward activation, relu | gelu.");
ABSL_FLAG(double, axial_init_std, 0.02, "Reformer: std of the axial position tables at init (HF: 1.0).");
ABSL_FLAG(int, ffn_chunk, 0, "Reformer: run the feed-forward over this many positions at a time (0: all).");
ABSL_FLAG(bool, reversible, true, "Reformer: reversible layers (recompute activations in the backward pass).");
ABSL_FLAG(int, states, 64, "Recurrent state vectors S.");
ABSL_FLAG(std::string, recurrent_layers, "", "Comma-separated 0-based recurrent layer indices (brt; default L-3 "
                                             "clamped to 0, as meliad's -3).");
ABSL_FLAG(std::string, gate, "fixed", "Recurrent gate: fixed | lstm.");
ABSL_FLAG(std::string, variant, "skip", "Recurrent variant: skip | single | dual.");
ABSL_FLAG(std::string, logit_divisor, "sqrt_vocab", "sqrt_vocab (meliad 2022) | sqrt_d_model | none.");
ABSL_FLAG(double, dropout, 0.05, "Dropout in the vertical direction (pre-attention, attention, post-FFN, final).");
ABSL_FLAG(int, batch, 4, "Global batch: documents read in parallel (split across processes).");
ABSL_FLAG(int, steps, 1000, "Training steps.");
ABSL_FLAG(double, lr, 1e-3, "Peak learning rate (AdamW).");
ABSL_FLAG(double, min_lr_ratio, 0.1, "Cosine schedule: final lr / peak lr.");
ABSL_FLAG(int, warmup, 100, "Linear warmup steps.");
ABSL_FLAG(std::string, schedule, "cosine", "cosine | rsqrt | constant (after warmup).");
ABSL_FLAG(double, weight_decay, 0.01, "AdamW weight decay on matrices.");
ABSL_FLAG(double, clip, 1.0, "Gradient-norm clipping (0: off).");
ABSL_FLAG(uint64_t, seed, 1, "Seed of weights, data order and dropout.");
ABSL_FLAG(bool, bf16, false, "Run the forward pass under CPU bfloat16 autocast.");
ABSL_FLAG(int, log_every, 10, "Print a progress line every N steps.");
ABSL_FLAG(int, eval_every, 0, "Evaluate held-out bits/token every N steps (0: at the end only).");
ABSL_FLAG(int64_t, eval_max_tokens, 20000, "Token cap for evaluations during training (the final one uses all).");
ABSL_FLAG(int, save_every, 0, "Save a resumable training state every N steps (0: at the end only).");
ABSL_FLAG(bool, resume, false, "Continue from <out>/train_state.");
ABSL_FLAG(int, stop_at, 0, "Save the training state and stop after this step (continue with --resume).");
ABSL_FLAG(int, threads, 0, "Intra-op threads per process (0: the cores divided among the processes).");
ABSL_FLAG(bool, plot, true, "Write curves.png with gnuplot.");
ABSL_FLAG(int, nproc, 1, "Data-parallel processes to launch on this machine (Gloo).");
ABSL_FLAG(int, world_size, 1, "Set by --nproc: total processes.");
ABSL_FLAG(int, rank, 0, "Set by --nproc: this process's rank.");
ABSL_FLAG(std::string, rendezvous, "", "Set by --nproc: rendezvous file shared by the processes.");

namespace blockserve::trainer {
namespace {

absl::StatusOr<std::vector<int>> IntList(absl::string_view flag, absl::string_view text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int value;
    if (!absl::SimpleAtoi(part, &value)) {
      return absl::InvalidArgumentError(absl::StrCat("--", flag, ": '", part, "' is not an integer"));
    }
    out.push_back(value);
  }
  return out;
}

// The Reformer part of the config from the --attn_layers ... flags (validated later).
absl::Status ReformerFromFlags(TrainOptions* o) {
  ModelConfig& c = o->model;
  ReformerConfig& r = c.reformer;
  c.family = ModelFamily::kReformer;
  c.norm_eps = 1e-12f;
  std::vector<ReformerAttention> pattern;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_attn_layers), ',', absl::SkipEmpty())) {
    if (part == "lsh") pattern.push_back(ReformerAttention::kLsh);
    else if (part == "local") pattern.push_back(ReformerAttention::kLocal);
    else return absl::InvalidArgumentError(absl::StrCat("--attn_layers: '", part, "' is not lsh or local"));
  }
  if (pattern.empty()) return absl::InvalidArgumentError("--attn_layers: needs at least one of lsh, local");
  for (int i = 0; i < c.num_layers; ++i) r.attn_layers.push_back(pattern[i % pattern.size()]);
  r.lsh_chunk_length = absl::GetFlag(FLAGS_lsh_chunk);
  r.local_chunk_length = absl::GetFlag(FLAGS_local_chunk);
  r.num_hashes = absl::GetFlag(FLAGS_hashes);
  o->reformer_segment_length = absl::GetFlag(FLAGS_segment);
  o->reversible = absl::GetFlag(FLAGS_reversible);
  o->axial_init_std = absl::GetFlag(FLAGS_axial_init_std);
  o->ffn_chunk = absl::GetFlag(FLAGS_ffn_chunk);
  if (r.lsh_chunk_length < 1 || r.local_chunk_length < 1) {
    return absl::InvalidArgumentError("--lsh_chunk and --local_chunk must be positive");
  }
  ASSIGN_OR_RETURN(r.num_buckets, IntList("buckets", absl::GetFlag(FLAGS_buckets)));
  if (r.num_buckets.empty()) {
    const int n = 2 * std::max(1, o->reformer_segment_length / r.lsh_chunk_length);
    r.num_buckets = {std::max(2, n + n % 2)};
  }
  const int positions = absl::GetFlag(FLAGS_max_positions);
  if (positions < 1) return absl::InvalidArgumentError("--max_positions must be positive");
  int n1 = static_cast<int>(std::sqrt(static_cast<double>(positions)));
  while (positions % n1 != 0) --n1;
  r.max_position_embeddings = positions;
  r.axial_pos_shape = {n1, positions / n1};
  r.axial_pos_embds_dim = {c.d_model / 4, c.d_model - c.d_model / 4};
  r.hash_seed = absl::GetFlag(FLAGS_seed);
  const std::string act = absl::GetFlag(FLAGS_act);
  if (act == "relu") r.hidden_act = Activation::kRelu;
  else if (act == "gelu") r.hidden_act = Activation::kGelu;
  else return absl::InvalidArgumentError("--act must be relu or gelu");
  r.dropout = 0.0f;  // the Reformer trainer applies no dropout (docs/training.md)
  return absl::OkStatus();
}

void FillCommonOptions(TrainOptions* out);

absl::StatusOr<TrainOptions> OptionsFromFlags() {
  TrainOptions o;
  o.out_dir = absl::GetFlag(FLAGS_out);
  o.corpus = absl::GetFlag(FLAGS_corpus);
  o.max_corpus_bytes = absl::GetFlag(FLAGS_max_corpus_bytes);
  o.heldout_fraction = absl::GetFlag(FLAGS_heldout);
  o.vocab_size = absl::GetFlag(FLAGS_vocab);
  o.tokenizer = absl::GetFlag(FLAGS_tokenizer);
  ModelConfig& c = o.model;
  c.family = ModelFamily::kBrt;
  c.vocab_size = o.vocab_size;
  c.d_model = absl::GetFlag(FLAGS_d_model);
  c.num_layers = absl::GetFlag(FLAGS_layers);
  c.num_heads = absl::GetFlag(FLAGS_heads);
  c.head_dim = absl::GetFlag(FLAGS_head_dim);
  c.ffn_dim = absl::GetFlag(FLAGS_ffn);
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model == "reformer") {
    RETURN_IF_ERROR(ReformerFromFlags(&o));
    FillCommonOptions(&o);
    return o;
  }
  if (model == "brt") c.brt.model = BrtModel::kBrt;
  else if (model == "slide") c.brt.model = BrtModel::kSlide;
  else if (model == "xl") c.brt.model = BrtModel::kXl;
  else return absl::InvalidArgumentError(absl::StrCat("--model must be brt, slide, xl or reformer, got '", model, "'"));
  c.brt.window = absl::GetFlag(FLAGS_window);
  c.brt.segment_length = absl::GetFlag(FLAGS_segment);
  c.brt.num_states = absl::GetFlag(FLAGS_states);
  if (c.brt.model == BrtModel::kBrt) {
    const std::string layers = absl::GetFlag(FLAGS_recurrent_layers);
    if (layers.empty()) {
      c.brt.recurrent_layers = {std::max(0, c.num_layers - 3)};
    } else {
      for (absl::string_view part : absl::StrSplit(layers, ',')) {
        int index;
        if (!absl::SimpleAtoi(part, &index)) {
          return absl::InvalidArgumentError(absl::StrCat("--recurrent_layers: '", part, "' is not an integer"));
        }
        c.brt.recurrent_layers.push_back(index);
      }
    }
  }
  const std::string gate = absl::GetFlag(FLAGS_gate), variant = absl::GetFlag(FLAGS_variant),
                    divisor = absl::GetFlag(FLAGS_logit_divisor);
  if (gate == "fixed") c.brt.gate = BrtGate::kFixed;
  else if (gate == "lstm") c.brt.gate = BrtGate::kLstm;
  else return absl::InvalidArgumentError("--gate must be fixed or lstm");
  if (variant == "skip") c.brt.recurrent_variant = BrtRecurrentVariant::kSkip;
  else if (variant == "single") c.brt.recurrent_variant = BrtRecurrentVariant::kSingle;
  else if (variant == "dual") c.brt.recurrent_variant = BrtRecurrentVariant::kDual;
  else return absl::InvalidArgumentError("--variant must be skip, single or dual");
  if (divisor == "sqrt_vocab") c.brt.logit_divisor = LogitDivisor::kSqrtVocab;
  else if (divisor == "sqrt_d_model") c.brt.logit_divisor = LogitDivisor::kSqrtDModel;
  else if (divisor == "none") c.brt.logit_divisor = LogitDivisor::kNone;
  else return absl::InvalidArgumentError("--logit_divisor must be sqrt_vocab, sqrt_d_model or none");
  c.brt.dropout = static_cast<float>(absl::GetFlag(FLAGS_dropout));
  FillCommonOptions(&o);
  return o;
}

void FillCommonOptions(TrainOptions* out) {
  TrainOptions& o = *out;
  o.batch_size = absl::GetFlag(FLAGS_batch);
  o.steps = absl::GetFlag(FLAGS_steps);
  o.lr = absl::GetFlag(FLAGS_lr);
  o.min_lr_ratio = absl::GetFlag(FLAGS_min_lr_ratio);
  o.warmup_steps = absl::GetFlag(FLAGS_warmup);
  o.schedule = absl::GetFlag(FLAGS_schedule);
  o.weight_decay = absl::GetFlag(FLAGS_weight_decay);
  o.clip_norm = absl::GetFlag(FLAGS_clip);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.bf16 = absl::GetFlag(FLAGS_bf16);
  o.log_every = std::max(1, absl::GetFlag(FLAGS_log_every));
  o.eval_every = absl::GetFlag(FLAGS_eval_every);
  o.eval_max_tokens = absl::GetFlag(FLAGS_eval_max_tokens);
  o.save_every = absl::GetFlag(FLAGS_save_every);
  o.resume = absl::GetFlag(FLAGS_resume);
  o.stop_at = absl::GetFlag(FLAGS_stop_at);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.plot = absl::GetFlag(FLAGS_plot);
  o.world_size = absl::GetFlag(FLAGS_world_size);
  o.rank = absl::GetFlag(FLAGS_rank);
  o.rendezvous = absl::GetFlag(FLAGS_rendezvous);
}

// --nproc N: re-executes this binary N-1 times as ranks 1..N-1 and becomes rank 0.
std::vector<pid_t> LaunchWorkers(int argc, char** argv, int nproc, const std::string& rendezvous) {
  std::vector<pid_t> pids;
  for (int rank = 1; rank < nproc; ++rank) {
    std::vector<std::string> args(argv, argv + argc);
    args.push_back("--nproc=1");
    args.push_back(absl::StrCat("--world_size=", nproc));
    args.push_back(absl::StrCat("--rank=", rank));
    args.push_back(absl::StrCat("--rendezvous=", rendezvous));
    std::vector<char*> cargs;
    for (std::string& a : args) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargs.data(), environ) == 0) pids.push_back(pid);
  }
  return pids;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Trains a Block-Recurrent Transformer or a Reformer and writes a servable model directory.\n"
      "  blockserve-train --out=DIR [--corpus=kjv|python|PATH] [--model=brt|slide|xl] [--steps=N] ...\n"
      "See docs/training.md.");
  absl::ParseCommandLine(argc, argv);
  auto options = OptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "blockserve-train: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  const int nproc = absl::GetFlag(FLAGS_nproc);
  std::vector<pid_t> workers;
  if (nproc > 1) {
    options->world_size = nproc;
    options->rank = 0;
    options->rendezvous = absl::StrCat(options->out_dir.empty() ? "/tmp" : options->out_dir, "/.rendezvous.",
                                       getpid());
    std::error_code ec;
    std::filesystem::create_directories(options->out_dir, ec);
    std::filesystem::remove(options->rendezvous, ec);
  }
  if (const absl::Status st = ValidateTrainOptions(*options); !st.ok()) {
    std::fprintf(stderr, "blockserve-train: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  if (nproc > 1) workers = LaunchWorkers(argc, argv, nproc, options->rendezvous);
  const absl::Status status = RunTraining(*options);
  int rc = status.ok() ? 0 : 1;
  if (!status.ok()) std::fprintf(stderr, "blockserve-train: %s\n", status.ToString().c_str());
  for (pid_t pid : workers) {
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
      std::fprintf(stderr, "blockserve-train: worker process %d failed\n", static_cast<int>(pid));
      rc = 1;
    }
  }
  if (nproc > 1) {
    std::error_code ec;
    std::filesystem::remove(options->rendezvous, ec);
  }
  return rc;
}

}  // namespace
}  // namespace blockserve::trainer

int main(int argc, char** argv) { return blockserve::trainer::Main(argc, argv); }
