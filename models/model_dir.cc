// OpenModelDir and the checkpoint-vs-config validation.
#include "models/model_dir.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/fnv.h"
#include "base/status.h"
#include "models/checkpoint_layout.h"

namespace blockserve {

absl::Status ValidateWeights(const ModelConfig& config, const SafetensorsFile& weights) {
  std::set<std::string> expected;
  for (const TensorSpec& spec : CheckpointLayout(config)) {
    expected.insert(spec.name);
    if (!weights.contains(spec.name)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "' (shape ",
                                                     ShapeString(spec.shape), ") is missing"));
    }
    ASSIGN_OR_RETURN(ConstTensorView view, weights.Get(spec.name));
    if (view.shape != spec.shape) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "' has shape ",
                                                     ShapeString(view.shape), ", the config needs ",
                                                     ShapeString(spec.shape)));
    }
    if (view.dtype != DType::kF32 && view.dtype != DType::kBF16 && view.dtype != DType::kF16) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", spec.name, "' has dtype ",
                                                     DTypeName(view.dtype), "; weights must be F32, BF16 or F16"));
    }
  }
  std::vector<std::string> unexpected;
  for (const std::string& name : weights.names()) {
    if (expected.count(name) == 0) unexpected.push_back(name);
  }
  if (!unexpected.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        unexpected.size(), " tensor(s) not used by this config: ",
        absl::StrJoin(unexpected.begin(), unexpected.begin() + std::min<size_t>(5, unexpected.size()), ", "),
        unexpected.size() > 5 ? ", ..." : "", " (does config.json match the weights?)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelDir> OpenModelDir(const std::string& path, bool load_tokenizer) {
  ModelDir dir;
  dir.path = path;
  ASSIGN_OR_RETURN(dir.config, LoadModelConfig(absl::StrCat(path, "/", kConfigFileName)));
  const std::string weights_path = absl::StrCat(path, "/", kWeightsFileName);
  ASSIGN_OR_RETURN(dir.weights, SafetensorsFile::Open(weights_path));
  RETURN_IF_ERROR(Annotate(ValidateWeights(dir.config, *dir.weights), weights_path));
  if (load_tokenizer) {
    const std::string tok_path = absl::StrCat(path, "/", kTokenizerFileName);
    ASSIGN_OR_RETURN(dir.tokenizer, Tokenizer::Load(tok_path));
    if (dir.tokenizer->vocab_size() > dir.config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          tok_path, ": tokenizer has ", dir.tokenizer->vocab_size(), " pieces but config.json vocab_size is ",
          dir.config.vocab_size));
    }
  }
  return dir;
}

std::string ModelFingerprint(absl::string_view prefix, const ModelConfig& config, const SafetensorsFile& weights) {
  uint64_t hash = kFnvOffset;
  auto mix = [&hash](const void* data, size_t n) { hash = Fnv1a(hash, data, n); };
  const std::string json = ModelConfigToJson(config);
  mix(json.data(), json.size());
  for (const std::string& name : weights.names()) {
    mix(name.data(), name.size());
    const ConstTensorView view = *weights.Get(name);
    mix(view.shape.data(), view.shape.size() * sizeof(int64_t));
    mix(view.data, std::min<size_t>(view.num_bytes(), 256));
  }
  return absl::StrCat(prefix, absl::Hex(hash, absl::kZeroPad16));
}

}  // namespace blockserve
