// In-process tests of the training loop: schedule, evaluation, export/reload, resume.
#include "trainer/train_loop.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "testing/test_util.h"
#include "trainer/checkpoint_io.h"

namespace blockserve::trainer {
namespace {

using ::testing::HasSubstr;

// A small corpus directory of KJV books (4 documents) so that runs take seconds.
std::string SmallCorpus() {
  static const std::string dir = [] {
    const std::string d = testing::MakeTempDir("blockserve_corpus");
    const char* books[] = {"Rut1:1-Rut4:22", "Jon1:1-Jon4:11", "Joe1:1-Joe3:21", "Obad1:1-Obad1:21",
                           "Hag1:1-Hag2:23"};
    int i = 0;
    for (const char* range : books) {
      auto text = testing::KjvText(range);
      EXPECT_TRUE(text.ok()) << text.status();
      EXPECT_TRUE(testing::WriteFile(d + "/book" + std::to_string(i++) + ".txt", text.ok() ? *text : "x").ok());
    }
    return d;
  }();
  return dir;
}

TrainOptions TinyOptions(const std::string& out) {
  TrainOptions o;
  o.corpus = SmallCorpus();
  o.heldout_fraction = 0.2;
  o.vocab_size = 400;
  o.out_dir = out;
  o.model.family = ModelFamily::kBrt;
  o.model.vocab_size = 400;
  o.model.d_model = 32;
  o.model.num_layers = 2;
  o.model.num_heads = 2;
  o.model.head_dim = 16;
  o.model.ffn_dim = 64;
  o.model.brt.model = BrtModel::kBrt;
  o.model.brt.window = 16;
  o.model.brt.segment_length = 32;
  o.model.brt.num_states = 8;
  o.model.brt.recurrent_layers = {1};
  o.model.brt.dropout = 0.1f;
  o.batch_size = 2;
  o.steps = 8;
  o.warmup_steps = 2;
  o.lr = 3e-3;
  o.log_every = 4;
  o.threads = 1;
  o.plot = false;
  return o;
}

TrainOptions TinyReformerOptions(const std::string& out) {
  TrainOptions o = TinyOptions(out);
  ModelConfig& c = o.model;
  c.family = ModelFamily::kReformer;
  c.norm_eps = 1e-12f;
  c.reformer.attn_layers = {ReformerAttention::kLocal, ReformerAttention::kLsh};
  c.reformer.lsh_chunk_length = 8;
  c.reformer.local_chunk_length = 8;
  c.reformer.num_hashes = 2;
  c.reformer.num_buckets = {4};
  c.reformer.hash_seed = 7;
  c.reformer.max_position_embeddings = 64;
  c.reformer.axial_pos_shape = {8, 8};
  c.reformer.axial_pos_embds_dim = {8, 24};
  c.reformer.dropout = 0.0f;
  o.reformer_segment_length = 32;
  return o;
}

std::vector<nlohmann::json> ReadMetrics(const std::string& dir) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

TEST(ScheduleTest, WarmupCosineAndRsqrt) {
  TrainOptions o;
  o.lr = 1.0;
  o.steps = 110;
  o.warmup_steps = 10;
  o.min_lr_ratio = 0.1;
  EXPECT_NEAR(LearningRate(o, 0), 0.1, 1e-12);
  EXPECT_NEAR(LearningRate(o, 9), 1.0, 1e-12);
  EXPECT_NEAR(LearningRate(o, 60), 0.55, 1e-12);  // cosine midpoint between 1 and 0.1
  EXPECT_NEAR(LearningRate(o, 110), 0.1, 1e-12);
  o.schedule = "rsqrt";
  EXPECT_NEAR(LearningRate(o, 9), 1.0, 1e-12);
  EXPECT_NEAR(LearningRate(o, 39), 0.5, 1e-12);  // sqrt(10 / 40)
  o.schedule = "constant";
  EXPECT_NEAR(LearningRate(o, 100), 1.0, 1e-12);
}

TEST(TrainOptionsTest, BadOptionsAreRejectedWithTheFlagName) {
  TrainOptions o = TinyOptions("/tmp/x");
  o.batch_size = 3;
  o.world_size = 2;
  o.rendezvous = "/tmp/r";
  EXPECT_THAT(std::string(ValidateTrainOptions(o).message()), HasSubstr("--batch: (3) must be a multiple"));
  o = TinyOptions("");
  EXPECT_THAT(std::string(ValidateTrainOptions(o).message()), HasSubstr("--out: is required"));
  o = TinyOptions("/tmp/x");
  o.schedule = "linear";
  EXPECT_THAT(std::string(ValidateTrainOptions(o).message()), HasSubstr("--schedule"));
  o = TinyOptions("/tmp/x");
  o.model.brt.segment_length = 20;
  EXPECT_THAT(std::string(ValidateTrainOptions(o).message()), HasSubstr("brt.segment_length"));
}

TEST(EvaluateTest, MatchesAManualSumOverEveryTarget) {
  torch::manual_seed(1);
  TrainOptions o = TinyOptions("/tmp/unused");
  BrtLm model(o.model);
  std::vector<std::vector<int32_t>> docs = {{2, 5, 6, 7, 3}, {2, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                                                              22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
                                                              36, 37, 38, 39, 40, 41, 42, 3}};
  const EvalResult r = EvaluateBitsPerToken(model, docs, 32, 2);
  EXPECT_EQ(r.tokens, 4 + 35);
  // Reference: each document alone, one long forward (a multiple of W, padded with 0).
  torch::NoGradGuard no_grad;
  model->eval();
  double nats = 0;
  for (const auto& d : docs) {
    const int64_t len = 64;
    std::vector<int64_t> in(len, 0);
    for (size_t i = 0; i < d.size(); ++i) in[i] = d[i];
    BrtCache cache;
    const torch::Tensor logits = model->forward(torch::tensor(in).view({1, len}), torch::tensor({true}), &cache);
    const torch::Tensor logp = torch::log_softmax(logits[0], -1);
    for (size_t i = 0; i + 1 < d.size(); ++i) nats -= logp[i][d[i + 1]].item<double>();
  }
  EXPECT_NEAR(r.bits_per_token, nats / 39 / std::log(2.0), 1e-4);
}

TEST(TrainLoopTest, ExportedDirectoryReloadsWithIdenticalLogits) {
  const std::string out = testing::MakeTempDir("blockserve_train");
  TrainOptions o = TinyOptions(out);
  ASSERT_TRUE(RunTraining(o).ok());
  auto loaded = LoadBrtLm(out);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto again = LoadBrtLm(out + "/train_state");
  ASSERT_TRUE(again.ok()) << again.status();
  (*loaded)->eval();
  (*again)->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor tokens = torch::randint(4, 400, {1, 64});
  BrtCache c1, c2;
  const torch::Tensor a = (*loaded)->forward(tokens, torch::tensor({true}), &c1);
  const torch::Tensor b = (*again)->forward(tokens, torch::tensor({true}), &c2);
  EXPECT_TRUE(torch::equal(a, b));
  // The recorded final evaluation is what the exported weights give.
  std::ifstream in(out + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["training"]["steps"], 8);
  // The held-out documents are kept as text (5 books, 20%: one).
  int heldout_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(out + "/heldout")) heldout_files += e.is_regular_file();
  EXPECT_EQ(heldout_files, 1);
  EXPECT_GT(config["training"]["heldout_bits_per_token"].get<double>(), 0.0);
}

TEST(TrainLoopTest, ResumeContinuesTheSameLossCurve) {
  const std::string straight = testing::MakeTempDir("blockserve_straight");
  TrainOptions o = TinyOptions(straight);
  ASSERT_TRUE(RunTraining(o).ok());

  const std::string split = testing::MakeTempDir("blockserve_split");
  TrainOptions first = TinyOptions(split);
  first.save_every = 3;
  first.stop_at = 5;
  ASSERT_TRUE(RunTraining(first).ok());  // saves at 3 and stops (saving) after step 5
  TrainOptions second = TinyOptions(split);
  second.resume = true;
  ASSERT_TRUE(RunTraining(second).ok());  // resumes at 5, runs to 8

  std::vector<double> a, b;
  for (const auto& row : ReadMetrics(straight)) {
    if (row.contains("loss")) a.push_back(row["loss"].get<double>());
  }
  for (const auto& row : ReadMetrics(split)) {
    if (row.contains("loss")) b.push_back(row["loss"].get<double>());
  }
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * std::fabs(a[i])) << "step " << i + 1;
}

TEST(TrainLoopTest, Bf16AutocastTrainsCloseToFp32) {
  std::vector<double> losses[2];
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    const std::string out = testing::MakeTempDir("blockserve_bf16");
    TrainOptions o = TinyOptions(out);
    o.steps = 4;
    o.bf16 = bf16 == 1;
    ASSERT_TRUE(RunTraining(o).ok());
    for (const auto& row : ReadMetrics(out)) {
      if (row.contains("loss")) losses[bf16].push_back(row["loss"].get<double>());
    }
  }
  ASSERT_EQ(losses[1].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(std::isfinite(losses[1][i]));
    EXPECT_NEAR(losses[1][i], losses[0][i], 0.05 * losses[0][i]) << "step " << i + 1;
  }
  EXPECT_NE(losses[1], losses[0]) << "autocast had no effect";
}

TEST(TrainLoopTest, ResumeRefusesOtherSettings) {
  const std::string out = testing::MakeTempDir("blockserve_other");
  TrainOptions o = TinyOptions(out);
  o.steps = 2;
  ASSERT_TRUE(RunTraining(o).ok());
  TrainOptions changed = TinyOptions(out);
  changed.resume = true;
  changed.seed = 99;
  const absl::Status st = RunTraining(changed);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(st.message()), HasSubstr("written by a run with other settings"));
}

TEST(ReformerTrainingTest, EvaluationCutsDocumentsIntoIndependentSegments) {
  torch::manual_seed(2);
  TrainOptions o = TinyReformerOptions("/tmp/unused");
  ReformerLm model(o.model);
  std::vector<std::vector<int32_t>> docs = {{2, 5, 6, 7, 3}, {}};
  for (int t = 0; t < 45; ++t) docs[1].push_back(2 + (t * 7) % 300);
  const EvalResult r = EvaluateBitsPerToken(model, docs, /*segment_length=*/16);
  EXPECT_EQ(r.tokens, 4 + 44);
  torch::NoGradGuard no_grad;
  model->eval();
  double nats = 0;
  for (const auto& d : docs) {
    for (size_t begin = 0; begin + 1 < d.size(); begin += 16) {
      const size_t n = std::min<size_t>(16, d.size() - 1 - begin);
      std::vector<int64_t> in(d.begin() + begin, d.begin() + begin + n);
      const torch::Tensor logp =
          torch::log_softmax(model->forward(torch::tensor(in).view({1, static_cast<int64_t>(n)}))[0], -1);
      for (size_t i = 0; i < n; ++i) nats -= logp[i][d[begin + i + 1]].item<double>();
    }
  }
  EXPECT_NEAR(r.bits_per_token, nats / 48 / std::log(2.0), 1e-5);
}

TEST(ReformerTrainingTest, TrainsExportsReloadsAndResumes) {
  const std::string straight = testing::MakeTempDir("blockserve_reformer");
  TrainOptions o = TinyReformerOptions(straight);
  ASSERT_TRUE(RunTraining(o).ok());
  auto loaded = LoadReformerLm(straight);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ReformerLm fresh(o.model);
  // The exported rotations are the model's (a buffer), and the weights moved off their init.
  EXPECT_TRUE(torch::equal((*loaded)->named_buffers()["layers.1.attn.rotations"],
                           fresh->named_buffers()["layers.1.attn.rotations"]));
  EXPECT_FALSE(torch::equal((*loaded)->lm_head->weight, fresh->lm_head->weight));
  std::ifstream in(straight + "/config.json");
  const nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["family"], "reformer");
  EXPECT_EQ(config["training"]["segment_length"], 32);
  const double bits = config["training"]["heldout_bits_per_token"].get<double>();
  EXPECT_GT(bits, 0.0);
  EXPECT_LT(bits, std::log2(400.0));  // learned something in 8 steps
  // Resume gives the same loss curve as the straight run.
  const std::string split = testing::MakeTempDir("blockserve_reformer_split");
  TrainOptions first = TinyReformerOptions(split);
  first.stop_at = 5;
  ASSERT_TRUE(RunTraining(first).ok());
  TrainOptions second = TinyReformerOptions(split);
  second.resume = true;
  ASSERT_TRUE(RunTraining(second).ok());
  std::vector<double> a, b;
  for (const auto& row : ReadMetrics(straight)) {
    if (row.contains("loss")) a.push_back(row["loss"].get<double>());
  }
  for (const auto& row : ReadMetrics(split)) {
    if (row.contains("loss")) b.push_back(row["loss"].get<double>());
  }
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6 * std::fabs(a[i])) << "step " << i + 1;
}

TEST(ReformerTrainingTest, SegmentLongerThanThePositionsIsRejected) {
  TrainOptions o = TinyReformerOptions("/tmp/x");
  o.reformer_segment_length = 65;
  EXPECT_THAT(std::string(ValidateTrainOptions(o).message()), HasSubstr("--segment: must be in [1, max_positions = 64]"));
}

}  // namespace
}  // namespace blockserve::trainer
