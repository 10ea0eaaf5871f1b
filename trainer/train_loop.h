// The training loop of both families (BRT, Reformer): data, optimizer, schedule, evaluation, checkpoints, resume, DDP.
#ifndef BLOCKSERVE_TRAINER_TRAIN_LOOP_H_
#define BLOCKSERVE_TRAINER_TRAIN_LOOP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "models/model_config.h"
#include "trainer/brt_model.h"
#include "trainer/reformer_model.h"

namespace blockserve::trainer {

struct TrainOptions {
  // Data.
  std::string corpus = "kjv";        // "kjv", "python", or a file / directory of documents
  int64_t max_corpus_bytes = 0;      // 0: the whole corpus
  double heldout_fraction = 0.1;     // documents held out for evaluation
  int vocab_size = 2000;             // SentencePiece vocabulary trained on the training split
  std::string tokenizer;             // reuse this .model instead of training one

  // Model: every architecture field; vocab_size is taken from the tokenizer.
  ModelConfig model;
  // Reformer: tokens per training sequence (each an independent sequence from position 0; BRT
  // uses model.brt.segment_length and carries its state across segments).
  int reformer_segment_length = 512;
  bool reversible = true;            // Reformer: the memory-saving reversible backward
  double axial_init_std = ReformerLmImpl::kDefaultAxialInitStd;  // Reformer: position table init
  int ffn_chunk = 0;                 // Reformer: chunked feed-forward (positions per chunk; 0: off)

  // Optimization (AdamW).
  int batch_size = 4;                // global batch slots (documents read in parallel)
  int steps = 1000;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;         // cosine: final lr = lr * min_lr_ratio
  int warmup_steps = 100;
  std::string schedule = "cosine";   // cosine | rsqrt | constant (all after linear warmup)
  double weight_decay = 0.01;        // on matrices only
  double beta1 = 0.9, beta2 = 0.98;
  double clip_norm = 1.0;            // global gradient norm; 0 disables
  uint64_t seed = 1;                 // weights, data order, dropout: same seed, same run
  bool bf16 = false;                 // CPU autocast to bfloat16 for the forward pass

  // Bookkeeping.
  std::string out_dir;               // the model directory (plus metrics, state, plot)
  int log_every = 10;
  int eval_every = 0;                // 0: evaluate at the end only
  int64_t eval_max_tokens = 0;       // cap for evaluations during training (0: all held-out)
  int save_every = 0;                // 0: save at the end only
  bool resume = false;               // continue from out_dir/train_state
  int stop_at = 0;                   // >0: save the state and stop after this step (resume later)
  int threads = 0;                   // intra-op threads per process (0: cores / world_size)
  bool plot = true;                  // write curves.png with gnuplot

  // Distributed data parallel (one process per rank).
  int world_size = 1;
  int rank = 0;
  std::string rendezvous;            // shared file for the Gloo rendezvous
  std::string interface = "lo";
};

// The training segment length: model.brt.segment_length (BRT) or reformer_segment_length.
int SegmentLength(const TrainOptions& options);

// Checks the options (ranges, batch divisible by world size, model dims) without touching files.
absl::Status ValidateTrainOptions(const TrainOptions& options);

// Runs training as described by `options`; see docs/training.md for the output directory.
absl::Status RunTraining(const TrainOptions& options);

// The learning rate at `step` (0-based).
double LearningRate(const TrainOptions& options, int step);

struct EvalResult {
  double bits_per_token = 0;
  int64_t tokens = 0;
};
// Teacher-forced bits per token over `docs` (token ids with BOS/EOS) with the training
// protocol: each document read from its start in segments of `segment_length` tokens, the
// cache carried across segments. Stops after the segment that reaches `max_tokens` (0: all).
EvalResult EvaluateBitsPerToken(BrtLm& model, const std::vector<std::vector<int32_t>>& docs,
                                int segment_length, int batch, int64_t max_tokens = 0);

// The Reformer's protocol (blockserve-eval runs the same one through the engine): a document's
// inputs are all its tokens but the last; they are cut from the start into segments of
// `segment_length`, each run as an independent sequence from position 0 (one full forward, no
// padding beyond the model's own), every input predicting the token after it.
EvalResult EvaluateBitsPerToken(ReformerLm& model, const std::vector<std::vector<int32_t>>& docs,
                                int segment_length, int64_t max_tokens = 0);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_TRAIN_LOOP_H_
