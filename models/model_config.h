// ModelConfig: the validated contents of a model directory's config.json (BRT and Reformer).
#ifndef BLOCKSERVE_MODELS_MODEL_CONFIG_H_
#define BLOCKSERVE_MODELS_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace blockserve {

// The current config.json format version; older versions are read, newer ones refused.
inline constexpr int kConfigFormatVersion = 1;

enum class ModelFamily { kBrt, kReformer };

// BRT architectures (spec-brt.md). `slide`: sliding-window attention in every layer;
// `brt`: slide + recurrent layers; `xl`: Transformer-XL baseline (slide trained with
// segment length == window). The inference math of `xl` and `slide` is identical.
enum class BrtModel { kSlide, kBrt, kXl };
enum class BrtGate { kFixed, kLstm };               // meliad "bias" and "lstm" gates
enum class BrtRecurrentVariant { kSkip, kSingle, kDual };
// What the logits are divided by: sqrt(vocab) (meliad 2022), sqrt(d_model) (meliad 2025), 1.
enum class LogitDivisor { kSqrtVocab, kSqrtDModel, kNone };

struct BrtConfig {
  BrtModel model = BrtModel::kBrt;
  int window = 512;                    // W: block length = attention window
  int segment_length = 4096;           // N: training segment (multiple of W); xl: N == W
  std::vector<int> recurrent_layers;   // 0-based, sorted, unique; empty unless model == brt
  int num_states = 512;                // S
  BrtGate gate = BrtGate::kFixed;
  BrtRecurrentVariant recurrent_variant = BrtRecurrentVariant::kSkip;
  int t5_num_buckets = 32;             // relative position bias buckets (unidirectional)
  int t5_max_distance = 128;
  LogitDivisor logit_divisor = LogitDivisor::kSqrtVocab;
  bool abs_attention_scale = false;    // meliad 2025 applies abs() to the learned scales
  float dropout = 0.05f;               // training only (vertical direction)
};

enum class ReformerAttention { kLocal, kLsh };
enum class Activation { kRelu, kGelu };

struct ReformerConfig {
  std::vector<ReformerAttention> attn_layers;  // one entry per layer
  // LSH attention
  int lsh_chunk_length = 64;
  int lsh_num_chunks_before = 1;
  int lsh_num_chunks_after = 0;                // must be 0: causal language model
  int num_hashes = 1;
  std::vector<int> num_buckets;                // one even int, or factors (each even)
  uint64_t hash_seed = 0;                      // seed the trainer drew the rotations with
  // local attention
  int local_chunk_length = 64;
  int local_num_chunks_before = 1;
  int local_num_chunks_after = 0;
  // embeddings
  std::vector<int> axial_pos_shape;            // (n1, n2): n1 * n2 = max_position_embeddings
  std::vector<int> axial_pos_embds_dim;        // (d1, d2): d1 + d2 = d_model
  int64_t max_position_embeddings = 4096;
  Activation hidden_act = Activation::kRelu;
  float dropout = 0.05f;                       // training only

  // Total number of buckets (product of num_buckets) and the rotation width
  // (sum of num_buckets): the random rotations have shape (H, dh, num_hashes, rot/2).
  int total_buckets() const;
  int rotation_size() const;
};

// The architecture of a served or trained model: every hyperparameter the forward pass
// needs. Parsed from and written to config.json (docs/checkpoint-format.md).
struct ModelConfig {
  int format_version = kConfigFormatVersion;
  ModelFamily family = ModelFamily::kBrt;
  int vocab_size = 0;    // V
  int d_model = 0;       // d
  int num_layers = 0;    // L
  int num_heads = 0;     // h
  int head_dim = 0;      // k; H = h * k
  int ffn_dim = 0;       // F
  float norm_eps = 1e-6f;  // BRT RMSNorm (1e-6); Reformer LayerNorm (HF: 1e-12)
  int32_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;
  BrtConfig brt;         // valid when family == kBrt
  ReformerConfig reformer;  // valid when family == kReformer

  int attn_dim() const { return num_heads * head_dim; }  // H
  bool IsRecurrentLayer(int layer) const;
};

// Parses config.json text; every field is range-checked and cross-checked. Errors name the
// field ("config.json: brt.window: ...").
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text);
// Reads and parses a config.json file.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);
// Checks ranges and consistency of an in-memory config (the parser calls it too).
absl::Status ValidateModelConfig(const ModelConfig& config);
// Serializes to config.json text (pretty-printed); ParseModelConfig reads it back equal.
std::string ModelConfigToJson(const ModelConfig& config);

absl::string_view FamilyName(ModelFamily family);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_MODEL_CONFIG_H_
