// A model directory: config.json + model.safetensors + tokenizer.model, opened and cross-checked.
#ifndef BLOCKSERVE_MODELS_MODEL_DIR_H_
#define BLOCKSERVE_MODELS_MODEL_DIR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "base/tokenizer.h"
#include "models/model_config.h"

namespace blockserve {

inline constexpr char kConfigFileName[] = "config.json";
inline constexpr char kWeightsFileName[] = "model.safetensors";
inline constexpr char kTokenizerFileName[] = "tokenizer.model";

// An opened model directory. The weights stay memory-mapped for the object's lifetime.
// Thread-safety: immutable after Open; share it freely between readers.
struct ModelDir {
  std::string path;
  ModelConfig config;
  std::unique_ptr<SafetensorsFile> weights;
  std::unique_ptr<Tokenizer> tokenizer;  // null when opened with load_tokenizer = false
};

// Checks `weights` against CheckpointLayout(config): every tensor present with its shape and
// a floating dtype (F32, BF16 or F16), and nothing else. Errors name the tensor.
absl::Status ValidateWeights(const ModelConfig& config, const SafetensorsFile& weights);

// A fingerprint of a model for state snapshots: `prefix` + FNV-1a over config.json and, per
// tensor, its name, shape and first 256 bytes, as 16 hex digits. A snapshot taken with one model
// is refused by another.
std::string ModelFingerprint(absl::string_view prefix, const ModelConfig& config, const SafetensorsFile& weights);

// Opens `path`: parses config.json, maps and validates model.safetensors, and (optionally)
// loads tokenizer.model, whose vocabulary must fit in config.vocab_size.
absl::StatusOr<ModelDir> OpenModelDir(const std::string& path, bool load_tokenizer = true);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_MODEL_DIR_H_
