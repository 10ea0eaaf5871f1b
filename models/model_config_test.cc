// Tests for config.json parsing: valid configs round trip, every invalid field is named.
#include "models/model_config.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/checkpoint_layout.h"
#include "nlohmann/json.hpp"

namespace blockserve {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

json ValidBrt() {
  return json::parse(R"({
    "format_version": 1, "family": "brt", "vocab_size": 1000, "d_model": 64, "num_layers": 4,
    "num_heads": 4, "head_dim": 16, "ffn_dim": 256, "norm_eps": 1e-6,
    "special_ids": {"pad": 0, "unk": 1, "bos": 2, "eos": 3},
    "brt": {"model": "brt", "window": 32, "segment_length": 128, "recurrent_layers": [2],
            "num_states": 16, "gate": "fixed", "recurrent_variant": "skip",
            "t5_num_buckets": 32, "t5_max_distance": 128, "logit_divisor": "sqrt_vocab",
            "abs_attention_scale": false, "dropout": 0.05},
    "training": {"anything": ["goes", 1]}
  })");
}

json ValidReformer() {
  return json::parse(R"({
    "format_version": 1, "family": "reformer", "vocab_size": 320, "d_model": 256, "num_layers": 6,
    "num_heads": 2, "head_dim": 64, "ffn_dim": 512, "norm_eps": 1e-12,
    "reformer": {"attn_layers": ["local", "lsh", "local", "lsh", "local", "lsh"],
                 "lsh_chunk_length": 64, "lsh_num_chunks_before": 1, "lsh_num_chunks_after": 0,
                 "num_hashes": 1, "num_buckets": [64, 128], "hash_seed": 7,
                 "local_chunk_length": 64, "local_num_chunks_before": 1, "local_num_chunks_after": 0,
                 "axial_pos_shape": [512, 1024], "axial_pos_embds_dim": [64, 192],
                 "max_position_embeddings": 524288, "hidden_act": "relu", "dropout": 0.05}
  })");
}

TEST(ModelConfigTest, ValidBrtParsesAndRoundTrips) {
  auto c = ParseModelConfig(ValidBrt().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->family, ModelFamily::kBrt);
  EXPECT_EQ(c->attn_dim(), 64);
  EXPECT_TRUE(c->IsRecurrentLayer(2));
  EXPECT_FALSE(c->IsRecurrentLayer(1));
  auto again = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ModelConfigToJson(*again), ModelConfigToJson(*c));
  EXPECT_EQ(again->brt.window, 32);
  EXPECT_EQ(again->norm_eps, 1e-6f);
}

TEST(ModelConfigTest, ValidReformerParsesAndRoundTrips) {
  auto c = ParseModelConfig(ValidReformer().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->reformer.total_buckets(), 8192);
  EXPECT_EQ(c->reformer.rotation_size(), 192);
  auto again = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ModelConfigToJson(*again), ModelConfigToJson(*c));
  // A single int bucket count is also accepted.
  json j = ValidReformer();
  j["reformer"]["num_buckets"] = 64;
  auto single = ParseModelConfig(j.dump());
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ(single->reformer.rotation_size(), 64);
}

TEST(ModelConfigTest, DefaultsFillOptionalFields) {
  json j = ValidBrt();
  j.erase("special_ids");
  j.erase("norm_eps");
  for (const char* k : {"segment_length", "num_states", "gate", "recurrent_variant", "t5_num_buckets",
                        "t5_max_distance", "logit_divisor", "abs_attention_scale", "dropout"}) {
    j["brt"].erase(k);
  }
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->brt.segment_length, 8 * 32);
  EXPECT_EQ(c->brt.num_states, 512);
  EXPECT_EQ(c->brt.t5_num_buckets, 32);
  EXPECT_EQ(c->eos_id, 3);
}

struct BadCase {
  const char* name;
  bool reformer;
  std::function<void(json&)> mutate;
  const char* message;  // expected substring of the error
};

class InvalidConfigTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(InvalidConfigTest, IsRejectedWithAMessageNamingTheField) {
  const BadCase& bad = GetParam();
  json j = bad.reformer ? ValidReformer() : ValidBrt();
  bad.mutate(j);
  auto c = ParseModelConfig(j.dump());
  ASSERT_FALSE(c.ok()) << bad.name << " was accepted";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(bad.message)) << bad.name;
}

#define SET(path, value) [](json& j) { j path = json::parse(value); }
#define DEL(obj, key) [](json& j) { j obj.erase(key); }

const BadCase kBadCases[] = {
    {"format_version_missing", false, DEL(, "format_version"), "format_version: is required"},
    {"format_version_future", false, SET(["format_version"], "2"), "format_version: this build reads versions 1..1"},
    {"format_version_string", false, SET(["format_version"], "\"1\""), "format_version: must be an integer"},
    {"family_unknown", false, SET(["family"], "\"mamba\""), "family: must be one of \"brt\", \"reformer\", got \"mamba\""},
    {"family_missing", false, DEL(, "family"), "family: is required"},
    {"vocab_zero", false, SET(["vocab_size"], "0"), "vocab_size: must be in [4, 4194304], got 0"},
    {"vocab_float", false, SET(["vocab_size"], "1000.5"), "vocab_size: must be an integer"},
    {"d_model_negative", false, SET(["d_model"], "-64"), "d_model: must be in [2, 65536]"},
    {"num_layers_zero", false, SET(["num_layers"], "0"), "num_layers: must be in [1, 1024]"},
    {"num_heads_huge", false, SET(["num_heads"], "100000"), "num_heads: must be in [1, 1024]"},
    {"head_dim_zero", false, SET(["head_dim"], "0"), "head_dim: must be in [1, 4096]"},
    {"ffn_dim_missing", false, DEL(, "ffn_dim"), "ffn_dim: is required"},
    {"norm_eps_zero", false, SET(["norm_eps"], "0"), "norm_eps: must be in (0, 0.1]"},
    {"norm_eps_string", false, SET(["norm_eps"], "\"small\""), "norm_eps: must be a number"},
    {"unknown_top_field", false, SET(["num_layer"], "4"), "num_layer: unknown field"},
    {"special_id_out_of_vocab", false, SET(["special_ids"]["eos"], "5000"), "special_ids.eos: must be a token id in [0, 999]"},
    {"special_id_duplicate", false, SET(["special_ids"]["bos"], "1"), "special_ids.bos: id 1 is used twice"},
    {"special_ids_unknown_key", false, SET(["special_ids"]["sep"], "7"), "special_ids.sep: unknown field"},
    {"brt_pad_nonzero", false, SET(["special_ids"], R"({"pad": 5, "unk": 1, "bos": 2, "eos": 3})"), "special_ids.pad: must be 0 for BRT"},
    {"brt_section_missing", false, DEL(, "brt"), "brt: section is required"},
    {"brt_with_reformer_section", false, SET(["reformer"], "{}"), "reformer: section does not belong in a \"brt\" config"},
    {"brt_model_unknown", false, SET(["brt"]["model"], "\"rnn\""), "brt.model: must be one of \"slide\", \"brt\", \"xl\""},
    {"brt_window_zero", false, SET(["brt"]["window"], "0"), "brt.window: must be in [1, 65536]"},
    {"brt_segment_not_multiple", false, SET(["brt"]["segment_length"], "100"), "brt.segment_length: must be a multiple of brt.window (32)"},
    {"brt_xl_segment", false, [](json& j) { j["brt"]["model"] = "xl"; j["brt"]["recurrent_layers"] = json::array(); }, "brt.segment_length: must equal brt.window (32) for model \"xl\""},
    {"brt_no_recurrent_layers", false, SET(["brt"]["recurrent_layers"], "[]"), "brt.recurrent_layers: model \"brt\" needs at least one recurrent layer"},
    {"slide_with_recurrent_layers", false, SET(["brt"]["model"], "\"slide\""), "brt.recurrent_layers: must be empty for model \"slide\""},
    {"brt_recurrent_layer_out_of_range", false, SET(["brt"]["recurrent_layers"], "[4]"), "brt.recurrent_layers[0]: must be a layer index in [0, 3], got 4"},
    {"brt_recurrent_layer_negative", false, SET(["brt"]["recurrent_layers"], "[-3]"), "brt.recurrent_layers[0]: must be in [0, 65536], got -3"},
    {"brt_recurrent_layers_unsorted", false, SET(["brt"]["recurrent_layers"], "[3, 1]"), "brt.recurrent_layers: must be sorted and without duplicates"},
    {"brt_recurrent_layers_not_array", false, SET(["brt"]["recurrent_layers"], "2"), "brt.recurrent_layers: must be an array of integers"},
    {"brt_num_states_zero", false, SET(["brt"]["num_states"], "0"), "brt.num_states: must be in [1, 65536]"},
    {"brt_gate_unknown", false, SET(["brt"]["gate"], "\"gru\""), "brt.gate: must be one of \"fixed\", \"lstm\", got \"gru\""},
    {"brt_variant_unknown", false, SET(["brt"]["recurrent_variant"], "\"triple\""), "brt.recurrent_variant: must be one of \"skip\", \"single\", \"dual\""},
    {"brt_t5_buckets_odd", false, SET(["brt"]["t5_num_buckets"], "31"), "brt.t5_num_buckets: must be even, got 31"},
    {"brt_t5_max_distance_small", false, SET(["brt"]["t5_max_distance"], "16"), "brt.t5_max_distance: must be greater than t5_num_buckets / 2 (16), got 16"},
    {"brt_logit_divisor_unknown", false, SET(["brt"]["logit_divisor"], "\"sqrt_d\""), "brt.logit_divisor: must be one of \"sqrt_vocab\", \"sqrt_d_model\", \"none\""},
    {"brt_abs_scale_not_bool", false, SET(["brt"]["abs_attention_scale"], "1"), "brt.abs_attention_scale: must be true or false"},
    {"brt_dropout_one", false, SET(["brt"]["dropout"], "1.0"), "brt.dropout: must be in [0, 0.9]"},
    {"brt_unknown_field", false, SET(["brt"]["windw"], "32"), "brt.windw: unknown field"},
    {"brt_section_not_object", false, SET(["brt"], "[]"), "brt: must be an object"},
    {"reformer_attn_layers_missing", true, DEL(["reformer"], "attn_layers"), "reformer.attn_layers: is required"},
    {"reformer_attn_layers_count", true, SET(["reformer"]["attn_layers"], R"(["lsh"])"), "reformer.attn_layers: has 1 entries but num_layers is 6"},
    {"reformer_attn_layer_unknown", true, SET(["reformer"]["attn_layers"][2], "\"full\""), "reformer.attn_layers[2]: must be \"local\" or \"lsh\""},
    {"reformer_lsh_chunks_after", true, SET(["reformer"]["lsh_num_chunks_after"], "1"), "reformer.lsh_num_chunks_after: must be 0"},
    {"reformer_local_chunks_after", true, SET(["reformer"]["local_num_chunks_after"], "1"), "reformer.local_num_chunks_after: must be 0"},
    {"reformer_lsh_chunks_before", true, SET(["reformer"]["lsh_num_chunks_before"], "2"), "reformer.lsh_num_chunks_before: must be 1"},
    {"reformer_local_chunks_before", true, SET(["reformer"]["local_num_chunks_before"], "0"), "reformer.local_num_chunks_before: must be 1"},
    {"reformer_buckets_odd", true, SET(["reformer"]["num_buckets"], "63"), "reformer.num_buckets: must be an even integer in [2, 65536], got 63"},
    {"reformer_bucket_factor_odd", true, SET(["reformer"]["num_buckets"], "[64, 7]"), "reformer.num_buckets[1]: must be an even integer"},
    {"reformer_buckets_three_factors", true, SET(["reformer"]["num_buckets"], "[2, 2, 2]"), "reformer.num_buckets: takes one integer or two factors, got 3"},
    {"reformer_buckets_missing", true, DEL(["reformer"], "num_buckets"), "reformer.num_buckets: is required when any layer is \"lsh\""},
    {"reformer_buckets_string", true, SET(["reformer"]["num_buckets"], "\"auto\""), "reformer.num_buckets: must be an even integer or a list"},
    {"reformer_num_hashes_zero", true, SET(["reformer"]["num_hashes"], "0"), "reformer.num_hashes: must be in [1, 64]"},
    {"reformer_hash_seed_negative", true, SET(["reformer"]["hash_seed"], "-1"), "reformer.hash_seed: must be a non-negative integer"},
    {"reformer_chunk_zero", true, SET(["reformer"]["lsh_chunk_length"], "0"), "reformer.lsh_chunk_length: must be in [1, 65536]"},
    {"reformer_chunk_not_dividing", true, SET(["reformer"]["lsh_chunk_length"], "96"), "reformer.lsh_chunk_length: must divide max_position_embeddings"},
    {"reformer_axial_shape_product", true, SET(["reformer"]["axial_pos_shape"], "[512, 512]"), "reformer.axial_pos_shape: product 262144 must equal max_position_embeddings (524288)"},
    {"reformer_axial_shape_len", true, SET(["reformer"]["axial_pos_shape"], "[524288]"), "reformer.axial_pos_shape: must hold 2 integers, got 1"},
    {"reformer_axial_dim_sum", true, SET(["reformer"]["axial_pos_embds_dim"], "[64, 64]"), "reformer.axial_pos_embds_dim: must sum to d_model (256), got 64 + 64"},
    {"reformer_axial_dim_zero", true, SET(["reformer"]["axial_pos_embds_dim"], "[0, 256]"), "reformer.axial_pos_embds_dim[0]: must be in [1, 65536]"},
    {"reformer_activation_unknown", true, SET(["reformer"]["hidden_act"], "\"swish\""), "reformer.hidden_act: must be one of \"relu\", \"gelu\""},
    {"reformer_unknown_field", true, SET(["reformer"]["n_hashes"], "2"), "reformer.n_hashes: unknown field"},
    {"reformer_with_brt_section", true, SET(["brt"], "{}"), "brt: section does not belong in a \"reformer\" config"},
};

INSTANTIATE_TEST_SUITE_P(AllFields, InvalidConfigTest, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(ModelConfigTest, NotJsonOrNotObject) {
  EXPECT_THAT(std::string(ParseModelConfig("{\"family\": ").status().message()), HasSubstr("not valid JSON"));
  EXPECT_THAT(std::string(ParseModelConfig("[1, 2]").status().message()), HasSubstr("must be a JSON object"));
  EXPECT_THAT(std::string(LoadModelConfig("/nonexistent/config.json").status().message()),
              HasSubstr("cannot open /nonexistent/config.json"));
}

TEST(CheckpointLayoutTest, BrtParameterCountsMatchTheSpec) {
  // spec-brt.md §1.5: medium_150M has 12 x 12,585,224 + 1,024 non-embedding parameters, and
  // one fixed:skip recurrent layer adds about 9.44M.
  json j = ValidBrt();
  j["vocab_size"] = 32128;
  j["d_model"] = 1024;
  j["num_layers"] = 12;
  j["num_heads"] = 8;
  j["head_dim"] = 128;
  j["ffn_dim"] = 4096;
  j["brt"]["window"] = 512;
  j["brt"]["segment_length"] = 4096;
  j["brt"]["num_states"] = 512;
  j["brt"]["model"] = "slide";
  j["brt"]["recurrent_layers"] = json::array();
  auto slide = ParseModelConfig(j.dump());
  ASSERT_TRUE(slide.ok()) << slide.status();
  const int64_t embed = 32128LL * 1024;
  EXPECT_EQ(CountParameters(*slide) - embed, 12LL * 12585224 + 1024);
  j["brt"]["model"] = "brt";
  j["brt"]["recurrent_layers"] = {9};
  auto rec = ParseModelConfig(j.dump());
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(CountParameters(*rec) - CountParameters(*slide), 9439256);
}

TEST(CheckpointLayoutTest, ReformerCountMatchesCrimeAndPunishment) {
  auto c = ParseModelConfig(ValidReformer().dump());
  ASSERT_TRUE(c.ok()) << c.status();
  int64_t rotations = 0;
  for (const TensorSpec& spec : CheckpointLayout(*c)) {
    if (spec.name.find("rotations") != std::string::npos) rotations += NumElements(spec.shape);
  }
  EXPECT_EQ(rotations, 3 * 2 * 64 * 1 * 96);
  // spec-reformer.md §5.4: 2,748,224 trained parameters (our rotations are stored on top).
  EXPECT_EQ(CountParameters(*c) - rotations, 2748224);
}

TEST(CheckpointLayoutTest, EveryVariantAndGateHasDistinctNames) {
  for (const char* variant : {"skip", "single", "dual"}) {
    for (const char* gate : {"fixed", "lstm"}) {
      json j = ValidBrt();
      j["brt"]["recurrent_variant"] = variant;
      j["brt"]["gate"] = gate;
      auto c = ParseModelConfig(j.dump());
      ASSERT_TRUE(c.ok()) << c.status();
      std::set<std::string> names;
      for (const TensorSpec& spec : CheckpointLayout(*c)) {
        EXPECT_TRUE(names.insert(spec.name).second) << "duplicate " << spec.name;
        for (int64_t dim : spec.shape) EXPECT_GT(dim, 0) << spec.name;
      }
      EXPECT_EQ(names.count("layers.2.rec.out.weight"), std::string(variant) == "single" ? 0u : 1u);
      EXPECT_EQ(names.count("layers.2.rec.gate.input.weight"),
                std::string(gate) == "lstm" && std::string(variant) != "single" ? 1u : 0u);
      EXPECT_EQ(names.count("layers.2.rec.ffn_norm.scale"), std::string(variant) == "dual" ? 1u : 0u);
      EXPECT_EQ(names.count("layers.1.attn.q2.weight"), 0u);
      EXPECT_EQ(names.count("layers.2.attn.q2.weight"), 1u);
    }
  }
}

// docs/checkpoint-format.md must document every tensor name the layout can produce.
TEST(CheckpointLayoutTest, EveryTensorNameIsDocumented) {
  const char* src = std::getenv("BLOCKSERVE_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run through ctest (sets BLOCKSERVE_SOURCE_DIR)";
  std::ifstream in(std::string(src) + "/docs/checkpoint-format.md");
  ASSERT_TRUE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  std::vector<json> configs = {ValidReformer()};
  for (const char* variant : {"skip", "single", "dual"}) {
    for (const char* gate : {"fixed", "lstm"}) {
      json j = ValidBrt();
      j["brt"]["recurrent_variant"] = variant;
      j["brt"]["gate"] = gate;
      configs.push_back(j);
    }
  }
  const std::regex layer_prefix("^layers\\.[0-9]+\\.");
  for (const json& j : configs) {
    auto c = ParseModelConfig(j.dump());
    ASSERT_TRUE(c.ok()) << c.status();
    for (const TensorSpec& spec : CheckpointLayout(*c)) {
      const std::string generic = std::regex_replace(spec.name, layer_prefix, "layers.{i}.");
      const std::string suffix = std::regex_replace(spec.name, layer_prefix, "");
      const bool documented = doc.find("`" + generic + "`") != std::string::npos ||
                              (generic != spec.name && doc.find("`" + suffix + "`") != std::string::npos);
      EXPECT_TRUE(documented) << spec.name << " is not in docs/checkpoint-format.md";
    }
  }
}

}  // namespace
}  // namespace blockserve
