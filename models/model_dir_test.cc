// Tests for opening model directories and checking weights against the config.
#include "models/model_dir.h"

#include "absl/strings/str_cat.h"
#include "base/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/checkpoint_layout.h"
#include "models/synthetic_checkpoint.h"
#include "testing/test_util.h"

namespace blockserve {
namespace {

using ::testing::HasSubstr;

ModelConfig TinyBrt() {
  ModelConfig c;
  c.family = ModelFamily::kBrt;
  c.vocab_size = 400;
  c.d_model = 32;
  c.num_layers = 3;
  c.num_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 64;
  c.brt.model = BrtModel::kBrt;
  c.brt.window = 8;
  c.brt.segment_length = 32;
  c.brt.recurrent_layers = {1};
  c.brt.num_states = 4;
  c.brt.gate = BrtGate::kLstm;
  c.brt.recurrent_variant = BrtRecurrentVariant::kDual;
  return c;
}

ModelConfig TinyReformer() {
  ModelConfig c;
  c.family = ModelFamily::kReformer;
  c.vocab_size = 320;
  c.d_model = 16;
  c.num_layers = 2;
  c.num_heads = 2;
  c.head_dim = 8;
  c.ffn_dim = 32;
  c.norm_eps = 1e-12f;
  c.reformer.attn_layers = {ReformerAttention::kLocal, ReformerAttention::kLsh};
  c.reformer.num_buckets = {2, 4};
  c.reformer.num_hashes = 2;
  c.reformer.lsh_chunk_length = 4;
  c.reformer.local_chunk_length = 4;
  c.reformer.axial_pos_shape = {4, 8};
  c.reformer.axial_pos_embds_dim = {8, 8};
  c.reformer.max_position_embeddings = 32;
  return c;
}

// Writes a safetensors file holding the layout of `config`, edited by `edit`.
void WriteEdited(const ModelConfig& config, const std::string& path,
                 const std::function<void(std::vector<TensorSpec>&, std::vector<DType>&)>& edit) {
  std::vector<TensorSpec> specs = CheckpointLayout(config);
  std::vector<DType> dtypes(specs.size(), DType::kF32);
  edit(specs, dtypes);
  std::vector<Tensor> storage;
  std::vector<std::pair<std::string, ConstTensorView>> tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    storage.emplace_back(dtypes[i], specs[i].shape);
    tensors.emplace_back(specs[i].name, storage.back().view());
  }
  ASSERT_TRUE(WriteSafetensors(path, tensors, {}).ok());
}

TEST(ModelDirTest, SyntheticBrtDirectoryOpensWithTokenizer) {
  auto tok = testing::SmallKjvTokenizer(400);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(WriteSyntheticModelDir(TinyBrt(), dir, 1, DType::kBF16, 0.05f, *tok).ok());
  auto opened = OpenModelDir(dir);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(ModelConfigToJson(opened->config), ModelConfigToJson(TinyBrt()));
  ASSERT_NE(opened->tokenizer, nullptr);
  EXPECT_EQ(opened->tokenizer->vocab_size(), 400);
  auto view = opened->weights->Get("layers.1.rec.ffn_gate.forget.weight");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->dtype, DType::kBF16);
  EXPECT_EQ(view->shape, (Shape{32, 64}));
  // Random, not zeros.
  EXPECT_NE(view->as<uint16_t>()[0], 0);
}

TEST(ModelDirTest, SyntheticReformerDirectoryOpens) {
  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(WriteSyntheticModelDir(TinyReformer(), dir, 2).ok());
  auto opened = OpenModelDir(dir, /*load_tokenizer=*/false);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto rot = opened->weights->Get("layers.1.attn.rotations");
  ASSERT_TRUE(rot.ok());
  EXPECT_EQ(rot->shape, (Shape{2, 8, 2, 3}));
}

TEST(ModelDirTest, WeightProblemsAreNamed) {
  const ModelConfig config = TinyBrt();
  struct Case {
    const char* what;
    std::function<void(std::vector<TensorSpec>&, std::vector<DType>&)> edit;
    const char* message;
  };
  const Case cases[] = {
      {"missing", [](auto& s, auto& d) { s.erase(s.begin() + 2); d.pop_back(); },
       "tensor 'layers.0.attn.q.weight' (shape [32, 32]) is missing"},
      {"wrong shape", [](auto& s, auto&) { s[0].shape = {399, 32}; },
       "tensor 'embed.weight' has shape [399, 32], the config needs [400, 32]"},
      {"wrong dtype", [](auto&, auto& d) { d[1] = DType::kI32; },
       "has dtype I32; weights must be F32, BF16 or F16"},
      {"extra", [](auto& s, auto& d) { s.push_back({"layers.0.attn.q2.weight", {32, 32}}); d.push_back(DType::kF32); },
       "1 tensor(s) not used by this config: layers.0.attn.q2.weight"},
  };
  for (const Case& c : cases) {
    const std::string dir = testing::MakeTempDir();
    ASSERT_TRUE(testing::WriteFile(dir + "/config.json", ModelConfigToJson(config)).ok());
    WriteEdited(config, dir + "/model.safetensors", c.edit);
    auto opened = OpenModelDir(dir, false);
    ASSERT_FALSE(opened.ok()) << c.what;
    EXPECT_THAT(std::string(opened.status().message()), HasSubstr(c.message)) << c.what;
    EXPECT_THAT(std::string(opened.status().message()), HasSubstr("model.safetensors")) << c.what;
  }
}

TEST(ModelDirTest, MissingFilesAndOversizedTokenizer) {
  const std::string empty = testing::MakeTempDir();
  auto no_config = OpenModelDir(empty);
  EXPECT_EQ(no_config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(no_config.status().message()), HasSubstr("config.json"));

  const std::string dir = testing::MakeTempDir();
  ASSERT_TRUE(testing::WriteFile(dir + "/config.json", ModelConfigToJson(TinyBrt())).ok());
  auto no_weights = OpenModelDir(dir);
  ASSERT_FALSE(no_weights.ok());
  EXPECT_THAT(std::string(no_weights.status().message()), HasSubstr("model.safetensors"));

  // A tokenizer with more pieces than the embedding has rows.
  ModelConfig small = TinyBrt();
  small.vocab_size = 300;
  auto tok = testing::SmallKjvTokenizer(400);
  ASSERT_TRUE(tok.ok()) << tok.status();
  ASSERT_TRUE(WriteSyntheticModelDir(small, dir, 3, DType::kF32, 0.05f, *tok).ok());
  auto too_big = OpenModelDir(dir);
  ASSERT_FALSE(too_big.ok());
  EXPECT_THAT(std::string(too_big.status().message()),
              HasSubstr("tokenizer has 400 pieces but config.json vocab_size is 300"));
}

}  // namespace
}  // namespace blockserve
