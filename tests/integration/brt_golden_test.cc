// The engine (models/, C++ kernels) against the trainer (libtorch) on checkpoints the trainer
// exports: logits over several block boundaries and bits/token from blockserve-eval.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/tokenizer.h"
#include "gtest/gtest.h"
#include "models/model_runner_factory.h"
#include "testing/test_util.h"
#include "trainer/brt_model.h"
#include "trainer/checkpoint_io.h"
#include "trainer/train_loop.h"

namespace blockserve {
namespace {

using engine::StepItem;

ModelConfig GoldenConfig(BrtModel model, BrtRecurrentVariant variant, BrtGate gate, bool abs_scale) {
  ModelConfig c;
  c.family = ModelFamily::kBrt;
  c.vocab_size = 400;
  c.d_model = 48;
  c.num_layers = 3;
  c.num_heads = 3;
  c.head_dim = 16;
  c.ffn_dim = 96;
  c.brt.model = model;
  c.brt.window = 16;
  c.brt.segment_length = model == BrtModel::kXl ? 16 : 64;
  c.brt.num_states = 8;
  c.brt.gate = gate;
  c.brt.recurrent_variant = variant;
  if (model == BrtModel::kBrt) c.brt.recurrent_layers = {1};
  // Few buckets so that the logarithmic buckets and the cap are exercised inside W = 16.
  c.brt.t5_num_buckets = 8;
  c.brt.t5_max_distance = 12;
  c.brt.abs_attention_scale = abs_scale;
  c.brt.dropout = 0.1f;  // must not matter at inference
  // Every logit convention (and larger logits than /sqrt(V) gives).
  if (model == BrtModel::kSlide) c.brt.logit_divisor = LogitDivisor::kNone;
  if (variant == BrtRecurrentVariant::kDual) c.brt.logit_divisor = LogitDivisor::kSqrtDModel;
  return c;
}

// A trainer model with every parameter moved off its init (norm and attention scales, gates,
// T5 table), exported to a model directory with the test tokenizer.
std::string ExportPerturbedModel(const ModelConfig& config, trainer::BrtLm* out_model) {
  torch::manual_seed(17);
  trainer::BrtLm model(config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) {
      p.value().add_(torch::randn_like(p.value()) * 0.3);
      // Some learned attention scales negative: abs_attention_scale must matter.
      if (p.key().find("scale") != std::string::npos && p.key().find("norm") == std::string::npos) {
        p.value().mul_(2.0);
        p.value()[0] = -p.value()[0];
      }
    }
  }
  const std::string dir = testing::MakeTempDir("brt_golden");
  absl::StatusOr<std::string> tokenizer = testing::SmallKjvTokenizer(400);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  const absl::Status s = trainer::ExportModelDir(model, dir, *tokenizer, nlohmann::json::object());
  EXPECT_TRUE(s.ok()) << s;
  *out_model = model;
  return dir;
}

std::vector<int32_t> KjvTokens(int n) {
  absl::StatusOr<std::string> tok_path = testing::SmallKjvTokenizer(400);
  auto tokenizer = Tokenizer::Load(*tok_path);
  EXPECT_TRUE(tokenizer.ok());
  absl::StatusOr<std::string> text = testing::KjvText("Gen1:1-Gen3:24");
  EXPECT_TRUE(text.ok());
  std::vector<int32_t> ids = {2};  // bos
  const absl::StatusOr<std::vector<int32_t>> encoded = (*tokenizer)->Encode(*text);
  EXPECT_TRUE(encoded.ok());
  if (encoded.ok()) ids.insert(ids.end(), encoded->begin(), encoded->end());
  EXPECT_GE(static_cast<int>(ids.size()), n);
  ids.resize(n);
  return ids;
}

struct Arch {
  const char* name;
  BrtModel model;
  BrtRecurrentVariant variant;
  BrtGate gate;
  bool abs_scale;
};

class GoldenTest : public ::testing::TestWithParam<Arch> {};

TEST_P(GoldenTest, EngineLogitsEqualTrainerLogitsAcrossBlockBoundaries) {
  const Arch arch = GetParam();
  const ModelConfig config = GoldenConfig(arch.model, arch.variant, arch.gate, arch.abs_scale);
  trainer::BrtLm model(nullptr);
  const std::string dir = ExportPerturbedModel(config, &model);
  const int N = config.brt.segment_length, segments = 128 / N;
  const std::vector<int32_t> tokens = KjvTokens(128);  // 8 blocks of W = 16: 7 block ends inside

  // Trainer: segment by segment with the carried cache, as in training and its eval.
  torch::NoGradGuard no_grad;
  model->eval();
  trainer::BrtCache cache;
  std::vector<float> want;
  for (int s = 0; s < segments; ++s) {
    std::vector<int64_t> seg(tokens.begin() + s * N, tokens.begin() + (s + 1) * N);
    const torch::Tensor input = torch::tensor(seg, torch::kInt64).view({1, N});
    const torch::Tensor start = torch::tensor({s == 0}, torch::kBool);
    const torch::Tensor logits = model->forward(input, start, &cache).contiguous();
    want.insert(want.end(), logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
  }

  RunnerOptions options;
  options.num_threads = 2;
  auto runner = LoadModelRunner(dir, options);
  ASSERT_TRUE(runner.ok()) << runner.status();
  const int V = config.vocab_size;
  // Block-parallel prefill of the whole text, and token-by-token decode.
  for (int chunk : {128, 1}) {
    auto state = (*runner)->NewState();
    std::vector<float> got(tokens.size() * V);
    for (size_t i = 0; i < tokens.size(); i += chunk) {
      StepItem item;
      item.state = state.get();
      item.tokens = absl::MakeConstSpan(tokens).subspan(i, chunk);
      item.logits = StepItem::Logits::kAll;
      item.logits_out = &got[i * V];
      ASSERT_TRUE((*runner)->Execute({&item, 1}).ok());
    }
    float max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      max_diff = std::max(max_diff, std::fabs(got[i] - want[i]));
      max_abs = std::max(max_abs, std::fabs(want[i]));
    }
    EXPECT_LE(max_diff, 1e-3f) << arch.name << " chunk " << chunk;
    EXPECT_GT(max_abs, 0.1f) << "degenerate logits";
    std::printf("%s chunk=%d: max |engine - trainer| = %.3g (max |logit| %.3g)\n", arch.name, chunk, max_diff,
                max_abs);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Archs, GoldenTest,
    ::testing::Values(Arch{"slide", BrtModel::kSlide, BrtRecurrentVariant::kSkip, BrtGate::kFixed, false},
                      Arch{"xl", BrtModel::kXl, BrtRecurrentVariant::kSkip, BrtGate::kFixed, false},
                      Arch{"skip_fixed", BrtModel::kBrt, BrtRecurrentVariant::kSkip, BrtGate::kFixed, false},
                      Arch{"skip_lstm_abs", BrtModel::kBrt, BrtRecurrentVariant::kSkip, BrtGate::kLstm, true},
                      Arch{"single_lstm", BrtModel::kBrt, BrtRecurrentVariant::kSingle, BrtGate::kLstm, false},
                      Arch{"dual_fixed", BrtModel::kBrt, BrtRecurrentVariant::kDual, BrtGate::kFixed, false}),
    [](const ::testing::TestParamInfo<Arch>& info) { return std::string(info.param.name); });

// blockserve-eval (the engine) and EvaluateBitsPerToken (the trainer) on the same document.
TEST(GoldenEvalTest, BlockserveEvalMatchesTheTrainersEval) {
  const ModelConfig config = GoldenConfig(BrtModel::kBrt, BrtRecurrentVariant::kSkip, BrtGate::kFixed, false);
  trainer::BrtLm model(nullptr);
  const std::string dir = ExportPerturbedModel(config, &model);
  absl::StatusOr<std::string> text = testing::KjvText("Ruth1:1-Ruth4:22");
  ASSERT_TRUE(text.ok());
  const std::string text_path = testing::MakeTempDir("brt_eval") + "/ruth.txt";
  ASSERT_TRUE(testing::WriteFile(text_path, *text).ok());

  auto tokenizer = Tokenizer::Load(dir + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok());
  std::vector<int32_t> doc = {config.bos_id};
  const absl::StatusOr<std::vector<int32_t>> encoded = (*tokenizer)->Encode(*text);
  ASSERT_TRUE(encoded.ok());
  doc.insert(doc.end(), encoded->begin(), encoded->end());
  doc.push_back(config.eos_id);
  ASSERT_GT(doc.size(), 1000u);
  const trainer::EvalResult want =
      trainer::EvaluateBitsPerToken(model, {doc}, config.brt.segment_length, /*batch=*/1);

  const char* bin = std::getenv("BLOCKSERVE_BINARY_DIR");
  ASSERT_NE(bin, nullptr);
  const std::string cmd = absl::StrCat(bin, "/bin/blockserve-eval --model ", dir, " --text ", text_path,
                                       " --chunk 100 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[512];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  ASSERT_EQ(pclose(pipe), 0) << output;
  double bits = -1;
  long long tokens = -1;
  const size_t at = output.find("tokens=");
  ASSERT_NE(at, std::string::npos) << output;
  ASSERT_EQ(std::sscanf(output.c_str() + at, "tokens=%lld bits_per_token=%lf", &tokens, &bits), 2) << output;
  EXPECT_EQ(tokens, want.tokens);
  EXPECT_NEAR(bits, want.bits_per_token, 0.001) << output;
  std::printf("trainer eval %.6f bits/token over %lld tokens; blockserve-eval: %s", want.bits_per_token,
              static_cast<long long>(want.tokens), output.c_str());
}

TEST(GoldenEvalTest, BlockserveEvalReportsBadInput) {
  const char* bin = std::getenv("BLOCKSERVE_BINARY_DIR");
  ASSERT_NE(bin, nullptr);
  const std::string cmd = absl::StrCat(bin, "/bin/blockserve-eval --model /nonexistent --text /nonexistent 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string output;
  char buf[512];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  EXPECT_NE(pclose(pipe), 0);
  EXPECT_NE(output.find("/nonexistent"), std::string::npos) << output;
}

}  // namespace
}  // namespace blockserve
