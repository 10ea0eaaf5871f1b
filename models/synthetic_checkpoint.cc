// WriteSyntheticModelDir: seeded random weights in the checkpoint layout of a config.
#include "models/synthetic_checkpoint.h"

#include <fstream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file_io.h"
#include "base/safetensors.h"
#include "base/status.h"
#include "models/checkpoint_layout.h"
#include "models/model_dir.h"

namespace blockserve {
namespace {

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", from));
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", to));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteSyntheticModelDir(const ModelConfig& config, const std::string& dir, uint64_t seed,
                                    DType dtype, float stddev, const std::string& tokenizer_model) {
  RETURN_IF_ERROR(ValidateModelConfig(config));
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError("synthetic weights must be F32, BF16 or F16");
  }
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<Tensor> storage;
  std::vector<std::pair<std::string, ConstTensorView>> tensors;
  for (const TensorSpec& spec : CheckpointLayout(config)) {
    Tensor t(dtype, spec.shape);
    const bool around_one = absl::EndsWith(spec.name, ".scale") || absl::EndsWith(spec.name, "scale2") ||
                            absl::StrContains(spec.name, "norm.weight");
    const int64_t n = NumElements(spec.shape);
    for (int64_t i = 0; i < n; ++i) {
      const float v = (around_one ? 1.0f : 0.0f) + dist(rng);
      if (dtype == DType::kF32) {
        t.as<float>()[i] = v;
      } else {
        t.as<uint16_t>()[i] = dtype == DType::kBF16 ? FloatToBF16(v) : FloatToHalf(v);
      }
    }
    storage.push_back(std::move(t));
    tensors.emplace_back(spec.name, storage.back().view());
  }
  RETURN_IF_ERROR(WriteStringToFile(absl::StrCat(dir, "/", kConfigFileName), ModelConfigToJson(config)));
  RETURN_IF_ERROR(WriteSafetensors(absl::StrCat(dir, "/", kWeightsFileName), tensors,
                                   {{"format", "blockserve"}, {"synthetic_seed", absl::StrCat(seed)}}));
  if (!tokenizer_model.empty()) {
    RETURN_IF_ERROR(CopyFile(tokenizer_model, absl::StrCat(dir, "/", kTokenizerFileName)));
  }
  return absl::OkStatus();
}

}  // namespace blockserve
