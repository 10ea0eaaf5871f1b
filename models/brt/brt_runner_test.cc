// BrtRunner on seeded random checkpoints: decode == prefill, batch invariance, snapshots,
// constant state size, input errors. (Agreement with the trainer: tests/integration.)
#include "models/brt/brt_runner.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "base/safetensors.h"
#include "gtest/gtest.h"
#include "models/model_runner_factory.h"
#include "models/synthetic_checkpoint.h"
#include "testing/test_util.h"

namespace blockserve {
namespace {

using engine::ModelRunner;
using engine::SequenceState;
using engine::StepItem;

ModelConfig TinyConfig(BrtModel model = BrtModel::kBrt, BrtRecurrentVariant variant = BrtRecurrentVariant::kSkip,
                       BrtGate gate = BrtGate::kFixed, int window = 8) {
  ModelConfig c;
  c.family = ModelFamily::kBrt;
  c.vocab_size = 64;
  c.d_model = 32;
  c.num_layers = 3;
  c.num_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 48;
  c.brt.model = model;
  c.brt.window = window;
  c.brt.segment_length = 4 * window;
  c.brt.num_states = 6;
  c.brt.gate = gate;
  c.brt.recurrent_variant = variant;
  if (model == BrtModel::kBrt) c.brt.recurrent_layers = {1};
  c.brt.t5_max_distance = 20;
  if (model == BrtModel::kXl) c.brt.segment_length = window;
  return c;
}

std::unique_ptr<ModelRunner> MakeRunner(const ModelConfig& config, uint64_t seed = 7,
                                        WeightDType dtype = WeightDType::kF32, int threads = 2) {
  const std::string dir = testing::MakeTempDir("brt_runner");
  const absl::Status written = WriteSyntheticModelDir(config, dir, seed, DType::kF32, /*stddev=*/0.3f);
  EXPECT_TRUE(written.ok()) << written;
  RunnerOptions options;
  options.weight_dtype = dtype;
  options.num_threads = threads;
  auto runner = LoadModelRunner(dir, options);
  EXPECT_TRUE(runner.ok()) << runner.status();
  return runner.ok() ? *std::move(runner) : nullptr;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// Logits after every token, fed in chunks of the given sizes (cycled).
std::vector<float> RunChunks(ModelRunner& runner, SequenceState* state, const std::vector<int32_t>& tokens,
                             const std::vector<int>& chunks) {
  const int V = runner.info().vocab_size;
  std::vector<float> logits(tokens.size() * V);
  size_t done = 0, c = 0;
  while (done < tokens.size()) {
    const size_t n = std::min<size_t>(chunks[c++ % chunks.size()], tokens.size() - done);
    StepItem item;
    item.state = state;
    item.tokens = absl::MakeConstSpan(tokens).subspan(done, n);
    item.logits = StepItem::Logits::kAll;
    item.logits_out = &logits[done * V];
    const absl::Status s = runner.Execute({&item, 1});
    EXPECT_TRUE(s.ok()) << s;
    done += n;
  }
  return logits;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

int Argmax(const float* x, int n) { return static_cast<int>(std::max_element(x, x + n) - x); }

struct Arch {
  const char* name;
  BrtModel model;
  BrtRecurrentVariant variant;
  BrtGate gate;
};
const Arch kArchs[] = {
    {"slide", BrtModel::kSlide, BrtRecurrentVariant::kSkip, BrtGate::kFixed},
    {"skip_fixed", BrtModel::kBrt, BrtRecurrentVariant::kSkip, BrtGate::kFixed},
    {"skip_lstm", BrtModel::kBrt, BrtRecurrentVariant::kSkip, BrtGate::kLstm},
    {"single_fixed", BrtModel::kBrt, BrtRecurrentVariant::kSingle, BrtGate::kFixed},
    {"dual_lstm", BrtModel::kBrt, BrtRecurrentVariant::kDual, BrtGate::kLstm},
};

TEST(BrtRunnerTest, DecodeEqualsBlockParallelPrefillForEveryVariant) {
  for (const Arch& arch : kArchs) {
    auto runner = MakeRunner(TinyConfig(arch.model, arch.variant, arch.gate));
    ASSERT_NE(runner, nullptr);
    // 45 tokens with W = 8: five block ends, and a trailing partial block.
    const std::vector<int32_t> tokens = RandomTokens(45, 64, 3);
    auto prefill_state = runner->NewState();
    const std::vector<float> prefill = RunChunks(*runner, prefill_state.get(), tokens, {45});
    auto decode_state = runner->NewState();
    const std::vector<float> decode = RunChunks(*runner, decode_state.get(), tokens, {1});
    auto mixed_state = runner->NewState();
    const std::vector<float> mixed = RunChunks(*runner, mixed_state.get(), tokens, {3, 10, 1, 7, 2});
    EXPECT_LE(MaxAbsDiff(prefill, decode), 1e-4f) << arch.name;
    EXPECT_LE(MaxAbsDiff(prefill, mixed), 1e-4f) << arch.name;
    EXPECT_EQ(prefill_state->position(), 45);
    EXPECT_EQ(decode_state->position(), 45);
    // The logits are not degenerate: they vary across positions.
    EXPECT_GT(MaxAbsDiff(std::vector<float>(prefill.begin(), prefill.begin() + 64),
                         std::vector<float>(prefill.end() - 64, prefill.end())),
              1e-3f);
  }
}

TEST(BrtRunnerTest, TheRecurrentStateCarriesInformationAcrossBlocks) {
  // Two prompts that differ only in their first block: with W = 8 the window of the last
  // token never sees that block, so only the recurrent state can tell them apart.
  auto runner = MakeRunner(TinyConfig());
  std::vector<int32_t> a = RandomTokens(40, 64, 5), b = a;
  for (int i = 0; i < 8; ++i) b[i] = (a[i] + 1) % 64;
  auto sa = runner->NewState(), sb = runner->NewState();
  const std::vector<float> la = RunChunks(*runner, sa.get(), a, {40});
  const std::vector<float> lb = RunChunks(*runner, sb.get(), b, {40});
  EXPECT_GT(MaxAbsDiff(std::vector<float>(la.end() - 64, la.end()), std::vector<float>(lb.end() - 64, lb.end())),
            1e-5f);
  // A sliding-window model forgets it.
  auto slide = MakeRunner(TinyConfig(BrtModel::kSlide));
  auto ta = slide->NewState(), tb = slide->NewState();
  const std::vector<float> ma = RunChunks(*slide, ta.get(), a, {40});
  const std::vector<float> mb = RunChunks(*slide, tb.get(), b, {40});
  EXPECT_EQ(std::vector<float>(ma.end() - 64, ma.end()), std::vector<float>(mb.end() - 64, mb.end()));
}

TEST(BrtRunnerTest, BatchInvariance) {
  auto runner = MakeRunner(TinyConfig(BrtModel::kBrt, BrtRecurrentVariant::kDual, BrtGate::kLstm));
  const int V = 64;
  // The probe sequence alone.
  const std::vector<int32_t> prompt = RandomTokens(13, V, 9);
  auto alone = runner->NewState();
  std::vector<float> last(V);
  {
    StepItem item{alone.get(), prompt, StepItem::Logits::kLast, last.data()};
    ASSERT_TRUE(runner->Execute({&item, 1}).ok());
  }
  // The same prompt, then decoded inside a batch of 9 with 8 others at random positions.
  auto probe = runner->NewState();
  std::vector<std::unique_ptr<SequenceState>> others;
  std::mt19937 rng(1);
  {
    std::vector<float> scratch(V);
    StepItem item{probe.get(), prompt, StepItem::Logits::kLast, scratch.data()};
    ASSERT_TRUE(runner->Execute({&item, 1}).ok());
    for (int i = 0; i < 8; ++i) {
      others.push_back(runner->NewState());
      const std::vector<int32_t> p = RandomTokens(1 + static_cast<int>(rng() % 30), V, 100 + i);
      StepItem o{others.back().get(), p, StepItem::Logits::kNone, nullptr};
      ASSERT_TRUE(runner->Execute({&o, 1}).ok());
    }
  }
  std::vector<float> batch_last(V);
  int32_t tok_alone = Argmax(last.data(), V), tok_batch = tok_alone;
  for (int step = 0; step < 20; ++step) {
    StepItem a{alone.get(), {&tok_alone, 1}, StepItem::Logits::kLast, last.data()};
    ASSERT_TRUE(runner->Execute({&a, 1}).ok());
    std::vector<StepItem> items;
    std::vector<int32_t> other_tokens(8);
    std::vector<std::vector<float>> other_logits(8, std::vector<float>(V));
    const size_t probe_at = step % 9;
    for (int i = 0; i < 8; ++i) {
      other_tokens[i] = static_cast<int32_t>(rng() % V);
      items.push_back({others[i].get(), {&other_tokens[i], 1}, StepItem::Logits::kLast, other_logits[i].data()});
    }
    items.insert(items.begin() + probe_at,
                 StepItem{probe.get(), {&tok_batch, 1}, StepItem::Logits::kLast, batch_last.data()});
    ASSERT_TRUE(runner->Execute(items).ok());
    EXPECT_LE(MaxAbsDiff(last, batch_last), 1e-5f) << "step " << step;
    tok_alone = Argmax(last.data(), V);
    tok_batch = Argmax(batch_last.data(), V);
    ASSERT_EQ(tok_alone, tok_batch) << "step " << step;
  }
  EXPECT_EQ(probe->position(), alone->position());
}

// Greedy continuation of `state` for `n` tokens starting from `first`.
std::vector<int32_t> Greedy(ModelRunner& runner, SequenceState* state, int32_t first, int n,
                            std::vector<float>* all_logits = nullptr) {
  const int V = runner.info().vocab_size;
  std::vector<float> logits(V);
  std::vector<int32_t> out;
  int32_t tok = first;
  for (int i = 0; i < n; ++i) {
    StepItem item{state, {&tok, 1}, StepItem::Logits::kLast, logits.data()};
    EXPECT_TRUE(runner.Execute({&item, 1}).ok());
    if (all_logits) all_logits->insert(all_logits->end(), logits.begin(), logits.end());
    tok = Argmax(logits.data(), V);
    out.push_back(tok);
  }
  return out;
}

TEST(BrtRunnerTest, SnapshotMidBlockRestoresBitExactly) {
  auto runner = MakeRunner(TinyConfig(BrtModel::kBrt, BrtRecurrentVariant::kSingle, BrtGate::kFixed));
  const std::vector<int32_t> prompt = RandomTokens(13, 64, 21);  // 13 = mid-block (W = 8)
  auto state = runner->NewState();
  {
    std::vector<float> logits(64);
    StepItem item{state.get(), prompt, StepItem::Logits::kLast, logits.data()};
    ASSERT_TRUE(runner->Execute({&item, 1}).ok());
  }
  absl::StatusOr<std::string> bytes = runner->SerializeState(*state);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto restored = runner->DeserializeState(*bytes);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->position(), 13);
  // Round trip of the bytes themselves.
  absl::StatusOr<std::string> again = runner->SerializeState(**restored);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*bytes, *again);
  auto clone = runner->CloneState(*state);
  std::vector<float> la, lb, lc;
  const std::vector<int32_t> a = Greedy(*runner, state.get(), 5, 30, &la);
  const std::vector<int32_t> b = Greedy(*runner, restored->get(), 5, 30, &lb);
  const std::vector<int32_t> c = Greedy(*runner, clone.get(), 5, 30, &lc);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(la, lb);  // bit-exact
  EXPECT_EQ(la, lc);
}

TEST(BrtRunnerTest, SnapshotErrors) {
  auto runner = MakeRunner(TinyConfig());
  auto other = MakeRunner(TinyConfig(), /*seed=*/8);  // same shapes, other weights
  auto state = runner->NewState();
  absl::StatusOr<std::string> bytes = runner->SerializeState(*state);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(other->DeserializeState(*bytes).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(runner->DeserializeState("garbage").status().code(), absl::StatusCode::kInvalidArgument);
  std::string truncated = bytes->substr(0, bytes->size() - 4);
  EXPECT_EQ(runner->DeserializeState(truncated).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(other->SerializeState(*state).ok());  // a state of another runner
  // A snapshot of another architecture (slide) does not fit a BRT runner.
  auto slide = MakeRunner(TinyConfig(BrtModel::kSlide));
  absl::StatusOr<std::string> slide_bytes = slide->SerializeState(*slide->NewState());
  ASSERT_TRUE(slide_bytes.ok());
  EXPECT_FALSE(runner->DeserializeState(*slide_bytes).ok());
}

TEST(BrtRunnerTest, BadStepItemsAreRejectedWithoutTouchingAnyState) {
  auto runner = MakeRunner(TinyConfig());
  auto a = runner->NewState(), b = runner->NewState();
  const std::string before = *runner->SerializeState(*a);
  std::vector<int32_t> good = {1, 2, 3}, bad = {4, 64};
  std::vector<float> logits(3 * 64);
  std::vector<StepItem> items = {{a.get(), good, StepItem::Logits::kNone, nullptr},
                                 {b.get(), bad, StepItem::Logits::kNone, nullptr}};
  absl::Status s = runner->Execute(items);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("outside the vocabulary"), std::string::npos) << s;
  EXPECT_EQ(*runner->SerializeState(*a), before);
  EXPECT_EQ(a->position(), 0);
  items = {{a.get(), good, StepItem::Logits::kNone, nullptr}, {a.get(), good, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  items = {{a.get(), {}, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  items = {{a.get(), good, StepItem::Logits::kLast, nullptr}};
  EXPECT_EQ(runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  auto other = MakeRunner(TinyConfig());
  auto foreign = other->NewState();
  items = {{foreign.get(), good, StepItem::Logits::kNone, nullptr}};
  EXPECT_EQ(runner->Execute(items).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->position(), 0);
}

TEST(BrtRunnerTest, StateSizeIsConstantUpToAMillionTokens) {
  ModelConfig c = TinyConfig(BrtModel::kBrt, BrtRecurrentVariant::kSkip, BrtGate::kFixed, /*window=*/64);
  c.d_model = 16;
  c.num_layers = 2;
  c.head_dim = 4;
  c.ffn_dim = 16;
  c.brt.recurrent_layers = {1};
  auto runner = MakeRunner(c, 7, WeightDType::kF32, /*threads=*/1);
  auto short_state = runner->NewState(), long_state = runner->NewState();
  const std::vector<int32_t> tokens = RandomTokens(100, 64, 2);
  StepItem item{short_state.get(), tokens, StepItem::Logits::kNone, nullptr};
  ASSERT_TRUE(runner->Execute({&item, 1}).ok());
  // 1,000,000 tokens by prefill, in prompts of 50,000.
  const std::vector<int32_t> chunk = RandomTokens(50000, 64, 3);
  for (int i = 0; i < 20; ++i) {
    StepItem big{long_state.get(), chunk, StepItem::Logits::kNone, nullptr};
    ASSERT_TRUE(runner->Execute({&big, 1}).ok());
  }
  EXPECT_EQ(short_state->position(), 100);
  EXPECT_EQ(long_state->position(), 1000000);
  EXPECT_EQ(short_state->byte_size(), long_state->byte_size());
  EXPECT_EQ(short_state->byte_size(), runner->info().state_bytes);
  // Snapshots differ only by the digits of the position in their metadata.
  EXPECT_NEAR(static_cast<double>(runner->SerializeState(*short_state)->size()),
              static_cast<double>(runner->SerializeState(*long_state)->size()), 16.0);
  // The state is still finite and usable.
  std::vector<float> logits(64);
  int32_t t = 1;
  StepItem next{long_state.get(), {&t, 1}, StepItem::Logits::kLast, logits.data()};
  ASSERT_TRUE(runner->Execute({&next, 1}).ok());
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(BrtRunnerTest, Bf16WeightsStayCloseToF32) {
  const ModelConfig c = TinyConfig(BrtModel::kBrt, BrtRecurrentVariant::kDual, BrtGate::kFixed);
  auto f32 = MakeRunner(c, 7, WeightDType::kF32);
  auto bf16 = MakeRunner(c, 7, WeightDType::kBF16);
  EXPECT_EQ(bf16->info().weight_dtype, "bf16");
  const std::vector<int32_t> tokens = RandomTokens(30, 64, 4);
  auto s1 = f32->NewState(), s2 = bf16->NewState();
  const std::vector<float> l1 = RunChunks(*f32, s1.get(), tokens, {30});
  const std::vector<float> l2 = RunChunks(*bf16, s2.get(), tokens, {30});
  const float diff = MaxAbsDiff(l1, l2);
  EXPECT_LE(diff, 0.05f);
  EXPECT_GT(diff, 0.0f);  // it really ran in bf16
}

TEST(BrtRunnerTest, InfoDescribesTheModel) {
  auto runner = MakeRunner(TinyConfig());
  const engine::ModelInfo& info = runner->info();
  EXPECT_EQ(info.family, "brt");
  EXPECT_EQ(info.vocab_size, 64);
  EXPECT_EQ(info.block_size, 8);
  EXPECT_TRUE(info.constant_state);
  EXPECT_EQ(info.device, "cpu");
  EXPECT_GT(info.state_bytes, 0u);
  EXPECT_GT(info.num_parameters, 0);
}

}  // namespace
}  // namespace blockserve
