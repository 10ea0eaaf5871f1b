// The Reformer engine (models/reformer, C++) against the trainer (libtorch) on checkpoints the
// trainer exports: the full forward (prefill, teacher-forced eval), the cached decode against
// ReformerDecodeReference, the cases where the two coincide, and blockserve-eval's bits/token.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/tokenizer.h"
#include "gtest/gtest.h"
#include "models/model_runner_factory.h"
#include "testing/test_util.h"
#include "trainer/checkpoint_io.h"
#include "trainer/reformer_attention.h"
#include "trainer/reformer_decode_reference.h"
#include "trainer/reformer_model.h"
#include "trainer/train_loop.h"

namespace blockserve {
namespace {

using engine::StepItem;
constexpr ReformerAttention kLsh = ReformerAttention::kLsh;
constexpr ReformerAttention kLocal = ReformerAttention::kLocal;

// Chunks of 8 (LSH) and 6 (local): prompts are padded to multiples of 24 once longer than 6.
ModelConfig GoldenConfig(std::vector<ReformerAttention> layers, std::vector<int> buckets) {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.vocab_size = 400;
  c.d_model = 32;
  c.num_layers = static_cast<int>(layers.size());
  c.num_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 64;
  c.norm_eps = 1e-12f;
  ReformerConfig& r = c.reformer;
  r.attn_layers = std::move(layers);
  r.lsh_chunk_length = 8;
  r.local_chunk_length = 6;
  r.num_hashes = 2;
  r.num_buckets = std::move(buckets);
  r.hash_seed = 11;
  r.max_position_embeddings = 192;
  r.axial_pos_shape = {12, 16};
  r.axial_pos_embds_dim = {8, 24};
  r.hidden_act = Activation::kGelu;
  return c;
}

// A trainer model with every parameter moved off its init, exported with the test tokenizer.
std::string ExportPerturbedModel(const ModelConfig& config, trainer::ReformerLm* out) {
  torch::manual_seed(23);
  trainer::ReformerLm model(config);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->named_parameters()) p.value().add_(torch::randn_like(p.value()) * 0.3);
  }
  model->eval();
  const std::string dir = testing::MakeTempDir("reformer_golden");
  absl::StatusOr<std::string> tokenizer = testing::SmallKjvTokenizer(400);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  const absl::Status s = trainer::ExportModelDir(*model, config, dir, *tokenizer, nlohmann::json::object());
  EXPECT_TRUE(s.ok()) << s;
  *out = model;
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

std::unique_ptr<engine::ModelRunner> Runner(const std::string& dir) {
  RunnerOptions options;
  options.num_threads = 2;
  auto runner = LoadModelRunner(dir, options);
  EXPECT_TRUE(runner.ok()) << runner.status();
  return runner.ok() ? std::move(*runner) : nullptr;
}

// Feeds `tokens` to `state` as one item; returns all rows of logits.
std::vector<float> Feed(engine::ModelRunner& runner, engine::SequenceState* state,
                        absl::Span<const int32_t> tokens) {
  std::vector<float> out(tokens.size() * runner.info().vocab_size);
  StepItem item;
  item.state = state;
  item.tokens = tokens;
  item.logits = StepItem::Logits::kAll;
  item.logits_out = out.data();
  const absl::Status s = runner.Execute({&item, 1});
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// The trainer's full forward over `tokens` (B = 1), as float rows.
std::vector<float> FullForward(trainer::ReformerLm& model, absl::Span<const int32_t> tokens) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids(tokens.begin(), tokens.end());
  const torch::Tensor logits =
      model->forward(torch::tensor(ids, torch::kInt64).view({1, static_cast<int64_t>(ids.size())})).contiguous();
  return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
}

float MaxDiff(const float* a, const float* b, size_t n, float* max_abs = nullptr) {
  float d = 0;
  for (size_t i = 0; i < n; ++i) {
    d = std::max(d, std::fabs(a[i] - b[i]));
    if (max_abs != nullptr) *max_abs = std::max(*max_abs, std::fabs(b[i]));
  }
  return d;
}

struct Arch {
  const char* name;
  std::vector<ReformerAttention> layers;
  std::vector<int> buckets;
};

class ReformerGoldenTest : public ::testing::TestWithParam<Arch> {};

// Prefill = the trainer's full forward, for whole-chunk lengths and padded ones.
TEST_P(ReformerGoldenTest, PrefillLogitsEqualTheTrainersFullForward) {
  const Arch arch = GetParam();
  const ModelConfig config = GoldenConfig(arch.layers, arch.buckets);
  trainer::ReformerLm model(nullptr);
  const std::string dir = ExportPerturbedModel(config, &model);
  auto runner = Runner(dir);
  ASSERT_NE(runner, nullptr);
  const std::vector<int32_t> tokens = KjvTokens(192);
  const int V = config.vocab_size;
  for (int L : {5, 8, 48, 75, 96, 131, 192}) {
    const std::vector<float> want = FullForward(model, absl::MakeConstSpan(tokens).first(L));
    auto state = runner->NewState();
    const std::vector<float> got = Feed(*runner, state.get(), absl::MakeConstSpan(tokens).first(L));
    float max_abs = 0;
    const float diff = MaxDiff(got.data(), want.data(), static_cast<size_t>(L) * V, &max_abs);
    EXPECT_LE(diff, 1e-3f) << arch.name << " L=" << L;

    EXPECT_GT(max_abs, 0.1f) << "degenerate logits";
    EXPECT_EQ(state->position(), L);
    std::printf("%s prefill L=%d (padded to %lld): max |engine - trainer| = %.3g (max |logit| %.3g)\n", arch.name,
                L, static_cast<long long>(trainer::ReformerPaddedLength(config, L)), diff, max_abs);
  }
}

// Cached decode = ReformerDecodeReference at every position, whether the later tokens come one
// per step, in multi-token items, or batched with another sequence.
TEST_P(ReformerGoldenTest, CachedDecodeEqualsTheTrainersReferenceAtEveryPosition) {
  const Arch arch = GetParam();
  const ModelConfig config = GoldenConfig(arch.layers, arch.buckets);
  trainer::ReformerLm model(nullptr);
  const std::string dir = ExportPerturbedModel(config, &model);
  auto runner = Runner(dir);
  ASSERT_NE(runner, nullptr);
  const int V = config.vocab_size, total = 150, prompt = 21;  // the prompt is padded to 24
  const std::vector<int32_t> tokens = KjvTokens(total);
  trainer::ReformerDecodeReference ref(model);
  std::vector<float> want;
  {
    std::vector<int64_t> ids(tokens.begin(), tokens.begin() + prompt);
    const torch::Tensor pre = ref.Prefill(ids).contiguous();
    want.assign(pre.data_ptr<float>(), pre.data_ptr<float>() + pre.numel());
    for (int t = prompt; t < total; ++t) {
      const torch::Tensor step = ref.Step(tokens[t]).contiguous();
      want.insert(want.end(), step.data_ptr<float>(), step.data_ptr<float>() + V);
    }
  }
  // (a) one token per step; (b) items of 7 tokens; (c) one token per step in a batch with
  // another sequence that is at another position.
  auto a = runner->NewState(), b = runner->NewState(), c = runner->NewState(), other = runner->NewState();
  std::vector<float> got_a = Feed(*runner, a.get(), absl::MakeConstSpan(tokens).first(prompt));
  std::vector<float> got_b = got_a, got_c = got_a;
  Feed(*runner, b.get(), absl::MakeConstSpan(tokens).first(prompt));
  Feed(*runner, c.get(), absl::MakeConstSpan(tokens).first(prompt));
  Feed(*runner, other.get(), absl::MakeConstSpan(tokens).subspan(40, 30));
  for (int t = prompt; t < total; ++t) {
    const std::vector<float> row = Feed(*runner, a.get(), absl::MakeConstSpan(tokens).subspan(t, 1));
    got_a.insert(got_a.end(), row.begin(), row.end());
  }
  for (int t = prompt; t < total; t += 7) {
    const int n = std::min(7, total - t);
    const std::vector<float> rows = Feed(*runner, b.get(), absl::MakeConstSpan(tokens).subspan(t, n));
    got_b.insert(got_b.end(), rows.begin(), rows.end());
  }
  for (int t = prompt; t < total; ++t) {
    std::vector<float> row(V), other_row(V);
    const int32_t other_token = tokens[(t * 13) % total];
    StepItem items[2];
    items[0] = {other.get(), {&other_token, 1}, StepItem::Logits::kLast, other_row.data()};
    items[1] = {c.get(), {&tokens[t], 1}, StepItem::Logits::kLast, row.data()};
    ASSERT_TRUE(runner->Execute(items).ok());
    got_c.insert(got_c.end(), row.begin(), row.end());
  }
  float worst = 0;
  for (int t = 0; t < total; ++t) {
    const float da = MaxDiff(&got_a[t * V], &want[t * V], V), db = MaxDiff(&got_b[t * V], &want[t * V], V),
                dc = MaxDiff(&got_c[t * V], &want[t * V], V);
    EXPECT_LE(da, 1e-3f) << arch.name << " position " << t;
    EXPECT_LE(db, 1e-3f) << arch.name << " position " << t << " (7-token items)";
    EXPECT_LE(dc, 1e-3f) << arch.name << " position " << t << " (batched)";
    worst = std::max({worst, da, db, dc});
  }
  // The batch does not change a sequence's numbers at all.
  EXPECT_EQ(got_a, got_c) << arch.name;
  std::printf("%s cached decode, positions 0..%d: max |engine - reference| = %.3g\n", arch.name, total - 1, worst);
}

INSTANTIATE_TEST_SUITE_P(
    Patterns, ReformerGoldenTest,
    ::testing::Values(Arch{"local_only", {kLocal, kLocal}, {}}, Arch{"lsh_only", {kLsh, kLsh}, {8}},
                      Arch{"local_lsh_lsh", {kLocal, kLsh, kLsh}, {4, 4}},
                      Arch{"lsh_local_lsh_local", {kLsh, kLocal, kLsh, kLocal}, {8}}),
    [](const ::testing::TestParamInfo<Arch>& info) { return std::string(info.param.name); });

// Where the definitions provably coincide, engine decode = the full forward over the prefix:
// local-only models everywhere; one LSH layer placed last where its windows coincide (the
// reference says where); contexts of at most one chunk.
TEST(ReformerCoincidenceTest, EngineDecodeEqualsTheFullForwardWhereTheyCoincide) {
  const std::vector<int32_t> tokens = KjvTokens(120);
  struct Case {
    const char* name;
    std::vector<ReformerAttention> layers;
    int prompt, total;
  };
  for (const Case& cs : {Case{"local_only", {kLocal, kLocal}, 10, 120}, Case{"last_lsh", {kLocal, kLsh}, 16, 120},
                         Case{"one_chunk", {kLsh, kLocal, kLsh}, 1, 6}}) {
    const ModelConfig config = GoldenConfig(cs.layers, {8});
    trainer::ReformerLm model(nullptr);
    const std::string dir = ExportPerturbedModel(config, &model);
    auto runner = Runner(dir);
    ASSERT_NE(runner, nullptr);
    const int V = config.vocab_size;
    trainer::ReformerDecodeReference ref(model);
    ref.Prefill(std::vector<int64_t>(tokens.begin(), tokens.begin() + cs.prompt));
    auto state = runner->NewState();
    Feed(*runner, state.get(), absl::MakeConstSpan(tokens).first(cs.prompt));
    int compared = 0;
    for (int t = cs.prompt; t < cs.total; ++t) {
      bool coincides = false;
      ref.Step(tokens[t], &coincides);
      const std::vector<float> got = Feed(*runner, state.get(), absl::MakeConstSpan(tokens).subspan(t, 1));
      if (!coincides) continue;
      const std::vector<float> full = FullForward(model, absl::MakeConstSpan(tokens).first(t + 1));
      EXPECT_LE(MaxDiff(got.data(), &full[static_cast<size_t>(t) * V], V), 1e-3f) << cs.name << " position " << t;
      ++compared;
    }
    if (std::string(cs.name) == "last_lsh") {
      EXPECT_GE(compared, 20) << "too few coinciding positions to mean anything";
      EXPECT_LT(compared, cs.total - cs.prompt) << "every position coincided: the case is not exercised";
    } else {
      EXPECT_EQ(compared, cs.total - cs.prompt) << cs.name;  // these coincide everywhere
    }
    std::printf("%s: engine decode == full forward at %d of %d positions\n", cs.name, compared, cs.total - cs.prompt);
  }
}

std::string RunEval(const std::string& args) {
  const char* bin = std::getenv("BLOCKSERVE_BINARY_DIR");
  EXPECT_NE(bin, nullptr);
  const std::string cmd = absl::StrCat(bin, "/bin/blockserve-eval ", args, " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string output;
  char buf[512];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  EXPECT_EQ(pclose(pipe), 0) << output;
  return output;
}

// blockserve-eval (engine prefill per segment) and the trainer's Reformer evaluation.
TEST(ReformerGoldenEvalTest, BlockserveEvalMatchesTheTrainersEval) {
  const ModelConfig config = GoldenConfig({kLocal, kLsh, kLsh}, {4, 4});
  trainer::ReformerLm model(nullptr);
  const std::string dir = ExportPerturbedModel(config, &model);
  absl::StatusOr<std::string> text = testing::KjvText("Ruth1:1-Ruth4:22");
  ASSERT_TRUE(text.ok());
  const std::string text_path = testing::MakeTempDir("reformer_eval") + "/ruth.txt";
  ASSERT_TRUE(testing::WriteFile(text_path, *text).ok());
  auto tokenizer = Tokenizer::Load(dir + "/tokenizer.model");
  ASSERT_TRUE(tokenizer.ok());
  std::vector<int32_t> doc = {config.bos_id};
  const absl::StatusOr<std::vector<int32_t>> encoded = (*tokenizer)->Encode(*text);
  ASSERT_TRUE(encoded.ok());
  doc.insert(doc.end(), encoded->begin(), encoded->end());
  doc.push_back(config.eos_id);
  ASSERT_GT(doc.size(), 1000u);
  for (int segment : {96, 100}) {  // whole chunks, and padded segments
    const trainer::EvalResult want = trainer::EvaluateBitsPerToken(model, {doc}, segment);
    const std::string output =
        RunEval(absl::StrCat("--model ", dir, " --text ", text_path, " --segment ", segment));
    double bits = -1;
    long long n = -1;
    const size_t at = output.find("tokens=");
    ASSERT_NE(at, std::string::npos) << output;
    ASSERT_EQ(std::sscanf(output.c_str() + at, "tokens=%lld bits_per_token=%lf", &n, &bits), 2) << output;
    EXPECT_EQ(n, want.tokens);
    EXPECT_NEAR(bits, want.bits_per_token, 0.001) << output;
    std::printf("segment %d: trainer eval %.6f bits/token over %lld tokens; blockserve-eval: %s", segment,
                want.bits_per_token, static_cast<long long>(want.tokens), output.c_str());
  }
}

double EvalBits(const std::string& args) {
  const std::string output = RunEval(args);
  double bits = -1;
  const size_t at = output.find("bits_per_token=");
  EXPECT_NE(at, std::string::npos) << output;
  if (at != std::string::npos) std::sscanf(output.c_str() + at, "bits_per_token=%lf", &bits);
  return bits;
}

// blockserve-eval --prefill N runs all but a segment's first N inputs through the cached step:
// for a local-only model that is the full forward's number; with LSH layers it is another one.
TEST(ReformerGoldenEvalTest, CachedDecodeEvaluationEqualsTheFullForwardOnlyWhereItMust) {
  absl::StatusOr<std::string> text = testing::KjvText("Obad1:1-Obad1:21");
  ASSERT_TRUE(text.ok());
  const std::string text_path = testing::MakeTempDir("reformer_cached_eval") + "/obadiah.txt";
  ASSERT_TRUE(testing::WriteFile(text_path, *text).ok());
  for (bool lsh : {false, true}) {
    const ModelConfig config =
        lsh ? GoldenConfig({kLocal, kLsh, kLsh}, {8}) : GoldenConfig({kLocal, kLocal}, {});
    trainer::ReformerLm model(nullptr);
    const std::string dir = ExportPerturbedModel(config, &model);
    const std::string common = absl::StrCat("--model ", dir, " --text ", text_path, " --segment 96");
    const double full = EvalBits(common), cached = EvalBits(common + " --prefill 1");
    if (lsh) {
      EXPECT_GT(std::fabs(full - cached), 1e-4) << "the cached path should differ from the full forward";
    } else {
      EXPECT_NEAR(full, cached, 1e-4);
    }
    std::printf("%s: full forward %.6f bits/token, cached decode %.6f\n", lsh ? "local+lsh" : "local only", full,
                cached);
  }
}

}  // namespace
}  // namespace blockserve
