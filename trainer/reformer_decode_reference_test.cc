// The cached-decode reference equals the full forward exactly where docs/reformer-decoding.md
// says the two definitions coincide: local-only models, a single LSH layer placed last (at
// positions whose windows coincide), and contexts of at most one chunk.
#include "trainer/reformer_decode_reference.h"

#include <random>

#include "gtest/gtest.h"

namespace blockserve::trainer {
namespace {

ModelConfig Config(std::vector<ReformerAttention> layers) {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.vocab_size = 40;
  c.d_model = 16;
  c.num_layers = static_cast<int>(layers.size());
  c.num_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 32;
  ReformerConfig& r = c.reformer;
  r.attn_layers = layers;
  r.lsh_chunk_length = 8;
  r.local_chunk_length = 8;
  r.num_hashes = 2;
  r.num_buckets = {4};
  r.axial_pos_shape = {8, 16};
  r.axial_pos_embds_dim = {6, 10};
  r.max_position_embeddings = 128;
  r.hash_seed = 3;
  EXPECT_TRUE(ValidateModelConfig(c).ok()) << ValidateModelConfig(c);
  return c;
}

std::vector<int64_t> Tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int64_t> t(n);
  for (auto& x : t) x = rng() % 40;
  return t;
}

// Logits of the last position of a full forward over `tokens`.
torch::Tensor FullLast(ReformerLm& model, const std::vector<int64_t>& tokens) {
  torch::NoGradGuard no_grad;
  const torch::Tensor ids = torch::tensor(tokens, torch::kInt64).view({1, static_cast<int64_t>(tokens.size())});
  return model->forward(ids)[0][static_cast<int64_t>(tokens.size()) - 1];
}

ReformerLm Model(std::vector<ReformerAttention> layers) {
  torch::manual_seed(9);
  ReformerLm model(Config(layers));
  model->to(torch::kFloat64);
  model->eval();
  return model;
}

TEST(ReformerDecodeReferenceTest, LocalOnlyModelsDecodeExactlyLikeTheFullForward) {
  ReformerLm model = Model({ReformerAttention::kLocal, ReformerAttention::kLocal});
  const std::vector<int64_t> tokens = Tokens(40, 1);
  ReformerDecodeReference ref(model);
  const torch::Tensor pre = ref.Prefill({tokens.begin(), tokens.begin() + 16});
  EXPECT_TRUE(torch::allclose(pre[15], FullLast(model, {tokens.begin(), tokens.begin() + 16}), 1e-9, 1e-9));
  for (int L = 16; L < 40; ++L) {
    const torch::Tensor step = ref.Step(tokens[L]);
    // Every prefix length: the full forward pads the ones that are not whole chunks.
    EXPECT_TRUE(torch::allclose(step, FullLast(model, {tokens.begin(), tokens.begin() + L + 1}), 1e-9, 1e-9))
        << "position " << L;
  }
}

TEST(ReformerDecodeReferenceTest, ALastLshLayerDecodesLikeTheFullForwardWhereTheWindowsCoincide) {
  ReformerLm model = Model({ReformerAttention::kLocal, ReformerAttention::kLsh});
  const std::vector<int64_t> tokens = Tokens(128, 2);
  ReformerDecodeReference ref(model);
  ref.Prefill({tokens.begin(), tokens.begin() + 16});
  int compared = 0, differed_elsewhere = 0;
  for (int L = 16; L < 128; ++L) {
    bool coincides = false;
    const torch::Tensor step = ref.Step(tokens[L], &coincides);
    const torch::Tensor full = FullLast(model, {tokens.begin(), tokens.begin() + L + 1});
    if (coincides) {
      ++compared;
      EXPECT_TRUE(torch::allclose(step, full, 1e-9, 1e-9))
          << "position " << L << ": max diff " << (step - full).abs().max().item<double>();
    } else if (!torch::allclose(step, full, 1e-9, 1e-9)) {
      ++differed_elsewhere;
    }
  }
  EXPECT_GE(compared, 2);
  std::printf("compared %d positions where the windows coincide; %d others differed\n", compared,
              differed_elsewhere);
}

TEST(ReformerDecodeReferenceTest, ContextsOfOneChunkDecodeLikeTheFullForward) {
  ReformerLm model = Model({ReformerAttention::kLsh, ReformerAttention::kLocal, ReformerAttention::kLsh});
  const std::vector<int64_t> tokens = Tokens(8, 3);
  ReformerDecodeReference ref(model);
  ref.Prefill({tokens[0]});
  for (int L = 1; L < 8; ++L) {
    EXPECT_TRUE(torch::allclose(ref.Step(tokens[L]), FullLast(model, {tokens.begin(), tokens.begin() + L + 1}),
                                1e-9, 1e-9))
        << "position " << L;
  }
}

TEST(ReformerDecodeReferenceTest, AnLshLayerFollowedByAttentionDecodesDifferentlyAndFinitely) {
  // The documented case where the definitions part: later tokens change earlier positions'
  // LSH outputs in the full forward, never in the cache.
  ReformerLm model = Model({ReformerAttention::kLsh, ReformerAttention::kLocal});
  const std::vector<int64_t> tokens = Tokens(64, 4);
  ReformerDecodeReference ref(model);
  ref.Prefill({tokens.begin(), tokens.begin() + 16});
  double max_diff = 0;
  for (int L = 16; L < 64; ++L) {
    const torch::Tensor step = ref.Step(tokens[L]);
    ASSERT_TRUE(torch::isfinite(step).all().item<bool>());
    if ((L + 1) % 8 == 0) {
      max_diff = std::max(max_diff,
                          (step - FullLast(model, {tokens.begin(), tokens.begin() + L + 1})).abs().max().item<double>());
    }
  }
  EXPECT_GT(max_diff, 1e-6);
  EXPECT_EQ(ref.length(), 64);
}

}  // namespace
}  // namespace blockserve::trainer
