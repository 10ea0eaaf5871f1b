// Parsing, validation and serialization of config.json for both model families.
#include "models/model_config.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/file_io.h"
#include "base/status.h"
#include "nlohmann/json.hpp"

namespace blockserve {
namespace {

using json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, ": ", what));
}

// Reads the fields of one JSON object, remembering which keys were consumed so that
// unknown (misspelled) keys are reported instead of silently ignored.
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string prefix) : object_(object), prefix_(std::move(prefix)) {}

  std::string Path(absl::string_view key) const { return absl::StrCat(prefix_, key); }
  bool Has(absl::string_view key) const { return object_.contains(std::string(key)); }

  const json* Find(absl::string_view key) {
    auto it = object_.find(std::string(key));
    if (it == object_.end()) return nullptr;
    used_.insert(std::string(key));
    return &*it;
  }

  // Integer in [lo, hi]; `required` fields must be present, others keep *out.
  template <typename T>
  absl::Status Int(absl::string_view key, int64_t lo, int64_t hi, bool required, T* out) {
    const json* v = Find(key);
    if (v == nullptr) {
      return required ? FieldError(Path(key), "is required") : absl::OkStatus();
    }
    if (!v->is_number_integer()) {
      return FieldError(Path(key), absl::StrCat("must be an integer, got ", v->dump()));
    }
    const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX
                          ? INT64_MAX
                          : v->get<int64_t>();
    if (x < lo || x > hi) {
      return FieldError(Path(key), absl::StrCat("must be in [", lo, ", ", hi, "], got ", v->dump()));
    }
    *out = static_cast<T>(x);
    return absl::OkStatus();
  }

  absl::Status Uint64(absl::string_view key, uint64_t* out) {
    const json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<int64_t>() >= 0)) {
      return FieldError(Path(key), absl::StrCat("must be a non-negative integer, got ", v->dump()));
    }
    *out = v->get<uint64_t>();
    return absl::OkStatus();
  }

  // Float in the range (lo, hi] if lo_open, else [lo, hi].
  absl::Status Float(absl::string_view key, double lo, double hi, bool lo_open, float* out) {
    const json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return FieldError(Path(key), absl::StrCat("must be a number, got ", v->dump()));
    const double x = v->get<double>();
    if (!(lo_open ? x > lo : x >= lo) || !(x <= hi)) {
      return FieldError(Path(key), absl::StrCat("must be in ", lo_open ? "(" : "[", lo, ", ", hi,
                                                "], got ", v->dump()));
    }
    *out = static_cast<float>(x);
    return absl::OkStatus();
  }

  absl::Status Bool(absl::string_view key, bool* out) {
    const json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return FieldError(Path(key), absl::StrCat("must be true or false, got ", v->dump()));
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  // A string that must be one of `names`; *out receives its index.
  template <typename Enum>
  absl::Status Choice(absl::string_view key, const std::vector<std::string>& names, bool required,
                      Enum* out) {
    const json* v = Find(key);
    if (v == nullptr) return required ? FieldError(Path(key), "is required") : absl::OkStatus();
    const std::string allowed = absl::StrCat("one of \"", absl::StrJoin(names, "\", \""), "\"");
    if (!v->is_string()) return FieldError(Path(key), absl::StrCat("must be ", allowed, ", got ", v->dump()));
    const std::string s = v->get<std::string>();
    for (size_t i = 0; i < names.size(); ++i) {
      if (s == names[i]) {
        *out = static_cast<Enum>(i);
        return absl::OkStatus();
      }
    }
    return FieldError(Path(key), absl::StrCat("must be ", allowed, ", got \"", s, "\""));
  }

  // An array of integers, each in [lo, hi].
  absl::Status IntList(absl::string_view key, int64_t lo, int64_t hi, std::vector<int>* out) {
    const json* v = Find(key);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_array()) return FieldError(Path(key), absl::StrCat("must be an array of integers, got ", v->dump()));
    out->clear();
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      const std::string path = absl::StrCat(Path(key), "[", i, "]");
      if (!e.is_number_integer()) return FieldError(path, absl::StrCat("must be an integer, got ", e.dump()));
      const int64_t x = e.get<int64_t>();
      if (x < lo || x > hi) {
        return FieldError(path, absl::StrCat("must be in [", lo, ", ", hi, "], got ", e.dump()));
      }
      out->push_back(static_cast<int>(x));
    }
    return absl::OkStatus();
  }

  // Reports keys that no reader consumed (skipping those in `ignored`).
  absl::Status CheckNoUnknown(const std::set<std::string>& ignored = {}) const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (used_.count(it.key()) == 0 && ignored.count(it.key()) == 0) {
        return FieldError(Path(it.key()), "unknown field (misspelled, or from a newer format version?)");
      }
    }
    return absl::OkStatus();
  }

 private:
  const json& object_;
  std::string prefix_;
  std::set<std::string> used_;
};

const std::vector<std::string> kFamilies = {"brt", "reformer"};
const std::vector<std::string> kBrtModels = {"slide", "brt", "xl"};
const std::vector<std::string> kGates = {"fixed", "lstm"};
const std::vector<std::string> kVariants = {"skip", "single", "dual"};
const std::vector<std::string> kDivisors = {"sqrt_vocab", "sqrt_d_model", "none"};
const std::vector<std::string> kAttention = {"local", "lsh"};
const std::vector<std::string> kActivations = {"relu", "gelu"};

absl::Status ParseBrt(const json& j, BrtConfig* brt) {
  if (!j.is_object()) return FieldError("brt", "must be an object");
  ObjectReader r(j, "brt.");
  RETURN_IF_ERROR(r.Choice("model", kBrtModels, /*required=*/true, &brt->model));
  RETURN_IF_ERROR(r.Int("window", 1, 1 << 16, true, &brt->window));
  brt->segment_length = brt->window * (brt->model == BrtModel::kXl ? 1 : 8);
  RETURN_IF_ERROR(r.Int("segment_length", 1, 1 << 22, false, &brt->segment_length));
  RETURN_IF_ERROR(r.IntList("recurrent_layers", 0, 1 << 16, &brt->recurrent_layers));
  RETURN_IF_ERROR(r.Int("num_states", 1, 1 << 16, false, &brt->num_states));
  RETURN_IF_ERROR(r.Choice("gate", kGates, false, &brt->gate));
  RETURN_IF_ERROR(r.Choice("recurrent_variant", kVariants, false, &brt->recurrent_variant));
  RETURN_IF_ERROR(r.Int("t5_num_buckets", 2, 1024, false, &brt->t5_num_buckets));
  RETURN_IF_ERROR(r.Int("t5_max_distance", 2, 1 << 20, false, &brt->t5_max_distance));
  RETURN_IF_ERROR(r.Choice("logit_divisor", kDivisors, false, &brt->logit_divisor));
  RETURN_IF_ERROR(r.Bool("abs_attention_scale", &brt->abs_attention_scale));
  RETURN_IF_ERROR(r.Float("dropout", 0.0, 0.9, false, &brt->dropout));
  return r.CheckNoUnknown();
}

absl::Status ParseReformer(const json& j, ReformerConfig* rf) {
  if (!j.is_object()) return FieldError("reformer", "must be an object");
  ObjectReader r(j, "reformer.");
  const json* layers = r.Find("attn_layers");
  if (layers == nullptr) return FieldError("reformer.attn_layers", "is required");
  if (!layers->is_array()) return FieldError("reformer.attn_layers", "must be an array of \"local\"/\"lsh\"");
  rf->attn_layers.clear();
  for (size_t i = 0; i < layers->size(); ++i) {
    const json& e = (*layers)[i];
    const std::string path = absl::StrCat("reformer.attn_layers[", i, "]");
    if (e == "local") rf->attn_layers.push_back(ReformerAttention::kLocal);
    else if (e == "lsh") rf->attn_layers.push_back(ReformerAttention::kLsh);
    else return FieldError(path, absl::StrCat("must be \"local\" or \"lsh\", got ", e.dump()));
  }
  RETURN_IF_ERROR(r.Int("lsh_chunk_length", 1, 1 << 16, false, &rf->lsh_chunk_length));
  RETURN_IF_ERROR(r.Int("lsh_num_chunks_before", 0, 16, false, &rf->lsh_num_chunks_before));
  RETURN_IF_ERROR(r.Int("lsh_num_chunks_after", 0, 16, false, &rf->lsh_num_chunks_after));
  RETURN_IF_ERROR(r.Int("num_hashes", 1, 64, false, &rf->num_hashes));
  if (const json* nb = r.Find("num_buckets")) {
    if (nb->is_number_integer()) {
      rf->num_buckets = {static_cast<int>(std::clamp<int64_t>(nb->get<int64_t>(), -1, 1 << 30))};
    } else if (nb->is_array()) {
      RETURN_IF_ERROR(r.IntList("num_buckets", -(1 << 30), 1 << 30, &rf->num_buckets));
    } else {
      return FieldError("reformer.num_buckets", absl::StrCat("must be an even integer or a list of even "
                                                            "integers, got ", nb->dump()));
    }
  }
  RETURN_IF_ERROR(r.Uint64("hash_seed", &rf->hash_seed));
  RETURN_IF_ERROR(r.Int("local_chunk_length", 1, 1 << 16, false, &rf->local_chunk_length));
  RETURN_IF_ERROR(r.Int("local_num_chunks_before", 0, 16, false, &rf->local_num_chunks_before));
  RETURN_IF_ERROR(r.Int("local_num_chunks_after", 0, 16, false, &rf->local_num_chunks_after));
  RETURN_IF_ERROR(r.IntList("axial_pos_shape", 1, 1 << 30, &rf->axial_pos_shape));
  RETURN_IF_ERROR(r.IntList("axial_pos_embds_dim", 1, 1 << 16, &rf->axial_pos_embds_dim));
  RETURN_IF_ERROR(r.Int("max_position_embeddings", 1, int64_t{1} << 40, false, &rf->max_position_embeddings));
  RETURN_IF_ERROR(r.Choice("hidden_act", kActivations, false, &rf->hidden_act));
  RETURN_IF_ERROR(r.Float("dropout", 0.0, 0.9, false, &rf->dropout));
  return r.CheckNoUnknown();
}

absl::Status ValidateBrt(const ModelConfig& c) {
  const BrtConfig& b = c.brt;
  if (b.segment_length % b.window != 0) {
    return FieldError("brt.segment_length", absl::StrCat("must be a multiple of brt.window (", b.window,
                                                         "), got ", b.segment_length));
  }
  if (b.model == BrtModel::kXl && b.segment_length != b.window) {
    return FieldError("brt.segment_length", absl::StrCat("must equal brt.window (", b.window,
                                                         ") for model \"xl\", got ", b.segment_length));
  }
  if (b.model == BrtModel::kBrt && b.recurrent_layers.empty()) {
    return FieldError("brt.recurrent_layers", "model \"brt\" needs at least one recurrent layer");
  }
  if (b.model != BrtModel::kBrt && !b.recurrent_layers.empty()) {
    return FieldError("brt.recurrent_layers", absl::StrCat("must be empty for model \"",
                                                           kBrtModels[static_cast<int>(b.model)],
                                                           "\" (use model \"brt\")"));
  }
  for (size_t i = 0; i < b.recurrent_layers.size(); ++i) {
    const int layer = b.recurrent_layers[i];
    if (layer < 0 || layer >= c.num_layers) {
      return FieldError(absl::StrCat("brt.recurrent_layers[", i, "]"),
                        absl::StrCat("must be a layer index in [0, ", c.num_layers - 1, "], got ", layer));
    }
    if (i > 0 && layer <= b.recurrent_layers[i - 1]) {
      return FieldError("brt.recurrent_layers", "must be sorted and without duplicates");
    }
  }
  if (b.t5_num_buckets % 2 != 0) {
    return FieldError("brt.t5_num_buckets", absl::StrCat("must be even, got ", b.t5_num_buckets));
  }
  if (b.t5_max_distance <= b.t5_num_buckets / 2) {
    return FieldError("brt.t5_max_distance",
                      absl::StrCat("must be greater than t5_num_buckets / 2 (", b.t5_num_buckets / 2,
                                   "), got ", b.t5_max_distance));
  }
  return absl::OkStatus();
}

absl::Status ValidateReformer(const ModelConfig& c) {
  const ReformerConfig& r = c.reformer;
  if (static_cast<int>(r.attn_layers.size()) != c.num_layers) {
    return FieldError("reformer.attn_layers", absl::StrCat("has ", r.attn_layers.size(),
                                                           " entries but num_layers is ", c.num_layers));
  }
  // The full forward (trainer and engine) looks back exactly one chunk, as HF's defaults do.
  if (r.lsh_num_chunks_before != 1) {
    return FieldError("reformer.lsh_num_chunks_before",
                      absl::StrCat("must be 1 (the only value implemented), got ", r.lsh_num_chunks_before));
  }
  if (r.local_num_chunks_before != 1) {
    return FieldError("reformer.local_num_chunks_before",
                      absl::StrCat("must be 1 (the only value implemented), got ", r.local_num_chunks_before));
  }
  if (r.lsh_num_chunks_after != 0) {
    return FieldError("reformer.lsh_num_chunks_after", "must be 0 (a causal language model cannot attend to later chunks)");
  }
  if (r.local_num_chunks_after != 0) {
    return FieldError("reformer.local_num_chunks_after", "must be 0 (a causal language model cannot attend to later chunks)");
  }
  const bool has_lsh = std::count(r.attn_layers.begin(), r.attn_layers.end(), ReformerAttention::kLsh) > 0;
  if (has_lsh && r.num_buckets.empty()) {
    return FieldError("reformer.num_buckets", "is required when any layer is \"lsh\" (decoding needs a fixed bucket count)");
  }
  if (r.num_buckets.size() > 2) {
    return FieldError("reformer.num_buckets", absl::StrCat("takes one integer or two factors, got ", r.num_buckets.size()));
  }
  int64_t total = 1;
  for (size_t i = 0; i < r.num_buckets.size(); ++i) {
    const int nb = r.num_buckets[i];
    if (nb < 2 || nb % 2 != 0 || nb > (1 << 16)) {
      return FieldError(r.num_buckets.size() == 1 ? std::string("reformer.num_buckets")
                                                  : absl::StrCat("reformer.num_buckets[", i, "]"),
                        absl::StrCat("must be an even integer in [2, 65536], got ", nb));
    }
    total *= nb;
  }
  if (total > (1 << 24)) return FieldError("reformer.num_buckets", "product must be at most 16777216");
  if (r.axial_pos_shape.size() != 2) {
    return FieldError("reformer.axial_pos_shape", absl::StrCat("must hold 2 integers, got ", r.axial_pos_shape.size()));
  }
  if (r.axial_pos_embds_dim.size() != 2) {
    return FieldError("reformer.axial_pos_embds_dim", absl::StrCat("must hold 2 integers, got ", r.axial_pos_embds_dim.size()));
  }
  const int64_t positions = int64_t{r.axial_pos_shape[0]} * r.axial_pos_shape[1];
  if (positions != r.max_position_embeddings) {
    return FieldError("reformer.axial_pos_shape",
                      absl::StrCat("product ", positions, " must equal max_position_embeddings (",
                                   r.max_position_embeddings, ")"));
  }
  if (r.axial_pos_embds_dim[0] + r.axial_pos_embds_dim[1] != c.d_model) {
    return FieldError("reformer.axial_pos_embds_dim",
                      absl::StrCat("must sum to d_model (", c.d_model, "), got ", r.axial_pos_embds_dim[0],
                                   " + ", r.axial_pos_embds_dim[1]));
  }
  if (r.max_position_embeddings % r.lsh_chunk_length != 0 && has_lsh) {
    return FieldError("reformer.lsh_chunk_length",
                      absl::StrCat("must divide max_position_embeddings (", r.max_position_embeddings,
                                   "), got ", r.lsh_chunk_length));
  }
  return absl::OkStatus();
}

}  // namespace

int ReformerConfig::total_buckets() const {
  int total = 1;
  for (int nb : num_buckets) total *= nb;
  return num_buckets.empty() ? 0 : total;
}

int ReformerConfig::rotation_size() const {
  int sum = 0;
  for (int nb : num_buckets) sum += nb;
  return sum;
}

bool ModelConfig::IsRecurrentLayer(int layer) const {
  return family == ModelFamily::kBrt &&
         std::binary_search(brt.recurrent_layers.begin(), brt.recurrent_layers.end(), layer);
}

absl::string_view FamilyName(ModelFamily family) {
  return family == ModelFamily::kBrt ? "brt" : "reformer";
}

absl::Status ValidateModelConfig(const ModelConfig& c) {
  if (c.format_version < 1 || c.format_version > kConfigFormatVersion) {
    return FieldError("format_version", absl::StrCat("this build reads versions 1..", kConfigFormatVersion,
                                                     ", got ", c.format_version));
  }
  if (c.vocab_size < 4 || c.vocab_size > (1 << 22)) {
    return FieldError("vocab_size", absl::StrCat("must be in [4, 4194304], got ", c.vocab_size));
  }
  const std::pair<const char*, int32_t> ids[] = {
      {"special_ids.pad", c.pad_id}, {"special_ids.unk", c.unk_id}, {"special_ids.bos", c.bos_id}, {"special_ids.eos", c.eos_id}};
  std::set<int32_t> seen;
  for (const auto& [name, id] : ids) {
    if (id < 0 || id >= c.vocab_size) {
      return FieldError(name, absl::StrCat("must be a token id in [0, ", c.vocab_size - 1, "], got ", id));
    }
    if (!seen.insert(id).second) return FieldError(name, absl::StrCat("id ", id, " is used twice"));
  }
  if (c.family == ModelFamily::kBrt && c.pad_id != 0) {
    return FieldError("special_ids.pad", "must be 0 for BRT (the loss masks token id 0)");
  }
  return c.family == ModelFamily::kBrt ? ValidateBrt(c) : ValidateReformer(c);
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  const json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: must be a JSON object");
  ModelConfig c;
  ObjectReader r(j, "");
  RETURN_IF_ERROR(r.Int("format_version", 1, 1 << 20, true, &c.format_version));
  if (c.format_version > kConfigFormatVersion) {
    return FieldError("format_version", absl::StrCat("this build reads versions 1..", kConfigFormatVersion,
                                                     ", got ", c.format_version, " (upgrade blockserve)"));
  }
  RETURN_IF_ERROR(r.Choice("family", kFamilies, true, &c.family));
  RETURN_IF_ERROR(r.Int("vocab_size", 4, 1 << 22, true, &c.vocab_size));
  RETURN_IF_ERROR(r.Int("d_model", 2, 1 << 16, true, &c.d_model));
  RETURN_IF_ERROR(r.Int("num_layers", 1, 1024, true, &c.num_layers));
  RETURN_IF_ERROR(r.Int("num_heads", 1, 1024, true, &c.num_heads));
  RETURN_IF_ERROR(r.Int("head_dim", 1, 4096, true, &c.head_dim));
  RETURN_IF_ERROR(r.Int("ffn_dim", 1, 1 << 20, true, &c.ffn_dim));
  if (c.family == ModelFamily::kReformer) c.norm_eps = 1e-12f;
  RETURN_IF_ERROR(r.Float("norm_eps", 0.0, 0.1, /*lo_open=*/true, &c.norm_eps));
  if (const json* ids = r.Find("special_ids")) {
    if (!ids->is_object()) return FieldError("special_ids", "must be an object {pad, unk, bos, eos}");
    ObjectReader s(*ids, "special_ids.");
    RETURN_IF_ERROR(s.Int("pad", -(1LL << 31), (1LL << 31) - 1, false, &c.pad_id));
    RETURN_IF_ERROR(s.Int("unk", -(1LL << 31), (1LL << 31) - 1, false, &c.unk_id));
    RETURN_IF_ERROR(s.Int("bos", -(1LL << 31), (1LL << 31) - 1, false, &c.bos_id));
    RETURN_IF_ERROR(s.Int("eos", -(1LL << 31), (1LL << 31) - 1, false, &c.eos_id));
    RETURN_IF_ERROR(s.CheckNoUnknown());
  }
  const char* section = c.family == ModelFamily::kBrt ? "brt" : "reformer";
  const char* other = c.family == ModelFamily::kBrt ? "reformer" : "brt";
  if (r.Has(other)) {
    return FieldError(other, absl::StrCat("section does not belong in a \"", section, "\" config"));
  }
  const json* family_section = r.Find(section);
  if (family_section == nullptr) return FieldError(section, "section is required");
  if (c.family == ModelFamily::kBrt) {
    RETURN_IF_ERROR(ParseBrt(*family_section, &c.brt));
  } else {
    RETURN_IF_ERROR(ParseReformer(*family_section, &c.reformer));
  }
  // "training" and "metadata" are free-form records for people; the engine ignores them.
  RETURN_IF_ERROR(r.CheckNoUnknown({"training", "metadata"}));
  RETURN_IF_ERROR(ValidateModelConfig(c));
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto config = ParseModelConfig(text);
  if (!config.ok()) return Annotate(config.status(), path);
  return config;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j;
  j["format_version"] = c.format_version;
  j["family"] = std::string(FamilyName(c.family));
  j["vocab_size"] = c.vocab_size;
  j["d_model"] = c.d_model;
  j["num_layers"] = c.num_layers;
  j["num_heads"] = c.num_heads;
  j["head_dim"] = c.head_dim;
  j["ffn_dim"] = c.ffn_dim;
  j["norm_eps"] = c.norm_eps;
  j["special_ids"] = {{"pad", c.pad_id}, {"unk", c.unk_id}, {"bos", c.bos_id}, {"eos", c.eos_id}};
  if (c.family == ModelFamily::kBrt) {
    const BrtConfig& b = c.brt;
    j["brt"] = {{"model", kBrtModels[static_cast<int>(b.model)]},
                {"window", b.window},
                {"segment_length", b.segment_length},
                {"recurrent_layers", b.recurrent_layers},
                {"num_states", b.num_states},
                {"gate", kGates[static_cast<int>(b.gate)]},
                {"recurrent_variant", kVariants[static_cast<int>(b.recurrent_variant)]},
                {"t5_num_buckets", b.t5_num_buckets},
                {"t5_max_distance", b.t5_max_distance},
                {"logit_divisor", kDivisors[static_cast<int>(b.logit_divisor)]},
                {"abs_attention_scale", b.abs_attention_scale},
                {"dropout", b.dropout}};
  } else {
    const ReformerConfig& r = c.reformer;
    std::vector<std::string> layers;
    for (ReformerAttention a : r.attn_layers) layers.push_back(kAttention[static_cast<int>(a)]);
    j["reformer"] = {{"attn_layers", layers},
                     {"lsh_chunk_length", r.lsh_chunk_length},
                     {"lsh_num_chunks_before", r.lsh_num_chunks_before},
                     {"lsh_num_chunks_after", r.lsh_num_chunks_after},
                     {"num_hashes", r.num_hashes},
                     {"hash_seed", r.hash_seed},
                     {"local_chunk_length", r.local_chunk_length},
                     {"local_num_chunks_before", r.local_num_chunks_before},
                     {"local_num_chunks_after", r.local_num_chunks_after},
                     {"axial_pos_shape", r.axial_pos_shape},
                     {"axial_pos_embds_dim", r.axial_pos_embds_dim},
                     {"max_position_embeddings", r.max_position_embeddings},
                     {"hidden_act", kActivations[static_cast<int>(r.hidden_act)]},
                     {"dropout", r.dropout}};
    if (!r.num_buckets.empty()) {
      j["reformer"]["num_buckets"] =
          r.num_buckets.size() == 1 ? json(r.num_buckets[0]) : json(r.num_buckets);
    }
  }
  return j.dump(2) + "\n";
}

}  // namespace blockserve
