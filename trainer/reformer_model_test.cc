// ReformerLm: checkpoint names and shapes, axial positions, causality of local layers, training.
#include "trainer/reformer_model.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <atomic>
#include <map>
#include <set>

#include "c10/core/CPUAllocator.h"
#include "gtest/gtest.h"
#include "models/checkpoint_layout.h"
#include "models/model_dir.h"
#include "trainer/checkpoint_io.h"

namespace blockserve::trainer {
namespace {

ModelConfig TinyReformer(std::vector<ReformerAttention> layers) {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.vocab_size = 50;
  c.d_model = 16;
  c.num_layers = static_cast<int>(layers.size());
  c.num_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 32;
  c.norm_eps = 1e-12f;
  ReformerConfig& r = c.reformer;
  r.attn_layers = layers;
  r.lsh_chunk_length = 8;
  r.local_chunk_length = 8;
  r.num_hashes = 2;
  r.num_buckets = {4};
  r.axial_pos_shape = {8, 8};
  r.axial_pos_embds_dim = {6, 10};
  r.max_position_embeddings = 64;
  r.hash_seed = 5;
  EXPECT_TRUE(ValidateModelConfig(c).ok()) << ValidateModelConfig(c);
  return c;
}

TEST(ReformerModelTest, TensorsAreExactlyTheCheckpointLayout) {
  const ModelConfig c = TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLsh});
  ReformerLm model(c);
  std::map<std::string, std::vector<int64_t>> have;
  for (const auto& p : model->named_parameters()) have[p.key()] = p.value().sizes().vec();
  for (const auto& b : model->named_buffers()) have[b.key()] = b.value().sizes().vec();
  std::map<std::string, std::vector<int64_t>> want;
  for (const TensorSpec& t : CheckpointLayout(c)) want[t.name] = t.shape;
  EXPECT_EQ(have, want);
  // The rotations are fixed: not trained, the same for the same seed, different per layer.
  for (const auto& p : model->named_parameters()) EXPECT_EQ(p.key().find("rotations"), std::string::npos);
  ReformerLm again(c);
  const auto& r1 = model->layers[1]->as<ReformerLayer>()->attn->rotations;
  EXPECT_TRUE(torch::equal(r1, again->layers[1]->as<ReformerLayer>()->attn->rotations));
}

TEST(ReformerModelTest, ExportsAModelDirectoryThatValidates) {
  const ModelConfig c = TinyReformer({ReformerAttention::kLsh, ReformerAttention::kLocal});
  ReformerLm model(c);
  const std::string dir = std::filesystem::temp_directory_path() / ("reformer_export_" + std::to_string(getpid()));
  ASSERT_TRUE(ExportModelDir(*model, c, dir, "", nlohmann::json()).ok());
  absl::StatusOr<ModelDir> opened = OpenModelDir(dir, /*load_tokenizer=*/false);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->config.family, ModelFamily::kReformer);
  absl::StatusOr<ConstTensorView> rot = opened->weights->Get("layers.0.attn.rotations");
  ASSERT_TRUE(rot.ok());
  const torch::Tensor& want = model->layers[0]->as<ReformerLayer>()->attn->rotations;
  EXPECT_EQ(std::memcmp(rot->data, want.data_ptr<float>(), rot->num_bytes()), 0);
  std::filesystem::remove_all(dir);
}

TEST(ReformerModelTest, AxialPositionsConcatenateTheTwoTables) {
  ReformerLm model(TinyReformer({ReformerAttention::kLocal}));
  const torch::Tensor pos = model->Positions(64);
  ASSERT_EQ(pos.sizes(), (std::vector<int64_t>{64, 16}));
  for (int p : {0, 7, 8, 19, 63}) {
    EXPECT_TRUE(torch::equal(pos[p].narrow(0, 0, 6), model->axial0[p / 8])) << p;
    EXPECT_TRUE(torch::equal(pos[p].narrow(0, 6, 10), model->axial1[p % 8])) << p;
  }
}

TEST(ReformerModelTest, LocalLayersAreCausalAndLshLayersRun) {
  torch::manual_seed(1);
  ReformerLm local(TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLocal}));
  local->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor tokens = torch::randint(0, 50, {2, 32}, torch::kInt64);
  const torch::Tensor a = local->forward(tokens);
  ASSERT_EQ(a.sizes(), (std::vector<int64_t>{2, 32, 50}));
  torch::Tensor changed = tokens.clone();
  changed.narrow(1, 20, 12).fill_(7);
  const torch::Tensor b = local->forward(changed);
  EXPECT_TRUE(torch::allclose(a.narrow(1, 0, 20), b.narrow(1, 0, 20), 1e-6, 1e-6));  // the past is unchanged
  EXPECT_FALSE(torch::allclose(a.narrow(1, 20, 12), b.narrow(1, 20, 12)));
  ReformerLm mixed(TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLsh, ReformerAttention::kLocal}));
  const torch::Tensor m = mixed->forward(tokens);
  EXPECT_TRUE(torch::isfinite(m).all().item<bool>());
  // The first token depends on nothing later, whatever the hashing does.
  EXPECT_TRUE(torch::allclose(m.narrow(1, 0, 1), mixed->forward(changed).narrow(1, 0, 1), 1e-6, 1e-6));
}

TEST(ReformerModelTest, PaddedForwardsKeepTheRealPositions) {
  torch::manual_seed(2);
  torch::NoGradGuard no_grad;
  const torch::Tensor tokens = torch::randint(0, 50, {1, 32}, torch::kInt64);
  // Local layers: a padded prefix equals the prefix of the whole-chunk forward.
  ReformerLm local(TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLocal}));
  local->eval();
  const torch::Tensor whole = local->forward(tokens);
  for (int64_t L : {5, 11, 13, 27}) {
    EXPECT_TRUE(torch::allclose(local->forward(tokens.narrow(1, 0, L)), whole.narrow(1, 0, L), 1e-5, 1e-6)) << L;
  }
  // With LSH the pads shift chunk boundaries but never feed a real position: changing the pad
  // id changes nothing.
  ModelConfig c = TinyReformer({ReformerAttention::kLsh, ReformerAttention::kLocal});
  torch::manual_seed(4);
  ReformerLm lsh(c);
  lsh->eval();
  const torch::Tensor a = lsh->forward(tokens.narrow(1, 0, 27));
  c.pad_id = 9;
  torch::manual_seed(4);  // the same weights
  ReformerLm lsh9(c);
  lsh9->eval();
  EXPECT_TRUE(torch::allclose(a, lsh9->forward(tokens.narrow(1, 0, 27)), 1e-6, 1e-6));
}

// The chunked feed-forward gives the same outputs and gradients (reversible backward included).
TEST(ReformerModelTest, ChunkedFeedForwardChangesNothing) {
  torch::manual_seed(6);
  ReformerLm model(TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLsh}));
  model->to(torch::kFloat64);
  const torch::Tensor tokens = torch::randint(0, 50, {2, 32}, torch::kInt64);
  std::vector<torch::Tensor> outs, grads;
  for (int64_t chunk : {0, 5, 16}) {
    model->set_ffn_chunk(chunk);
    model->zero_grad();
    const torch::Tensor out = model->forward(tokens, /*reversible=*/true);
    out.pow(2).mean().backward();
    outs.push_back(out.detach());
    grads.push_back(model->layers[0]->as<ReformerLayer>()->ffn[0]->as<torch::nn::Linear>()->weight.grad().clone());
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    EXPECT_TRUE(torch::allclose(outs[i], outs[0], 1e-12, 1e-12)) << i;
    EXPECT_TRUE(torch::allclose(grads[i], grads[0], 1e-10, 1e-12)) << i;
  }
}

TEST(ReformerModelTest, TheReversibleBackwardGivesTheOrdinaryGradients) {
  torch::manual_seed(3);
  ReformerLm model(TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLsh, ReformerAttention::kLocal}));
  model->to(torch::kFloat64);
  const torch::Tensor tokens = torch::randint(0, 50, {2, 32}, torch::kInt64);
  auto grads = [&](bool reversible) {
    model->zero_grad();
    model->forward(tokens, reversible).pow(2).mean().backward();
    std::map<std::string, torch::Tensor> g;
    for (const auto& p : model->named_parameters()) g[p.key()] = p.value().grad().clone();
    return g;
  };
  const auto plain = grads(false), rev = grads(true);
  ASSERT_EQ(plain.size(), rev.size());
  int nonzero = 0;
  for (const auto& [name, g] : plain) {
    EXPECT_TRUE(torch::allclose(rev.at(name), g, 1e-7, 1e-9)) << name << ": max diff "
                                                               << (rev.at(name) - g).abs().max().item<double>();
    nonzero += g.abs().sum().item<double>() > 0 ? 1 : 0;
  }
  EXPECT_GT(nonzero, static_cast<int>(plain.size()) - 2);
  // The forward values are the same too.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(model->forward(tokens, true), model->forward(tokens, false)));
}

// Counts the bytes the CPU allocator holds (current and peak) while installed.
class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}
  c10::DataPtr allocate(size_t n) const override {
    auto* holder = new Holder{inner_->allocate(n), n, this};
    const int64_t now = current_.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return {holder->inner.get(), holder, &Delete, c10::Device(c10::DeviceType::CPU)};
  }
  void ResetPeak() { peak_.store(current_.load()); }
  int64_t peak() const { return peak_.load(); }
  int64_t current() const { return current_.load(); }

 private:
  struct Holder {
    c10::DataPtr inner;
    size_t n;
    const CountingAllocator* owner;
  };
  static void Delete(void* ctx) {
    auto* h = static_cast<Holder*>(ctx);
    h->owner->current_.fetch_sub(static_cast<int64_t>(h->n));
    delete h;
  }
  c10::Allocator* inner_;
  mutable std::atomic<int64_t> current_{0}, peak_{0};
};

TEST(ReformerModelTest, ReversibleActivationMemoryDoesNotGrowWithTheNumberOfLayers) {
  static CountingAllocator* counting = new CountingAllocator(c10::GetCPUAllocator());  // lives forever
  c10::SetCPUAllocator(counting, /*priority=*/10);
  torch::set_num_threads(1);
  // Peak bytes above the model and its gradients during forward + backward, per layer count.
  auto peak = [&](int num_layers, bool reversible) {
    std::vector<ReformerAttention> layers(num_layers, ReformerAttention::kLocal);
    torch::manual_seed(5);
    ModelConfig c = TinyReformer(layers);
    ReformerLm model(c);
    const torch::Tensor tokens = torch::randint(0, 50, {8, 64}, torch::kInt64);
    model->forward(tokens, reversible).pow(2).mean().backward();  // gradients allocated once
    const int64_t base = counting->current();
    counting->ResetPeak();
    model->forward(tokens, reversible).pow(2).mean().backward();
    return counting->peak() - base;
  };
  const int64_t plain2 = peak(2, false), plain8 = peak(8, false);
  const int64_t rev2 = peak(2, true), rev8 = peak(8, true);
  std::printf("peak activation bytes, 2 -> 8 layers: ordinary %lld -> %lld, reversible %lld -> %lld\n",
              static_cast<long long>(plain2), static_cast<long long>(plain8), static_cast<long long>(rev2),
              static_cast<long long>(rev8));
  EXPECT_GT(plain8, plain2 * 2);            // the ordinary backward keeps every layer's activations
  EXPECT_LT(rev8, rev2 + (rev2 / 4));       // the reversible one does not grow with the layers
  EXPECT_LT(rev8 * 2, plain8);
}

TEST(ReformerModelTest, ItLearnsARepeatedSequence) {
  torch::manual_seed(2);
  ReformerLm model(TinyReformer({ReformerAttention::kLocal, ReformerAttention::kLsh}));
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(3e-3));
  const torch::Tensor tokens = torch::arange(32, torch::kInt64).remainder(10).view({1, 32}).repeat({4, 1});
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    const torch::Tensor logits = model->forward(tokens.narrow(1, 0, 32));
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.narrow(1, 0, 31).reshape({-1, 50}), tokens.narrow(1, 1, 31).reshape({-1}));
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  EXPECT_LT(last, first * 0.5) << first << " -> " << last;
}

}  // namespace
}  // namespace blockserve::trainer
