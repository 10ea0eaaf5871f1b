// Export of a trained BrtLm to a model directory, and loading weights back.
#ifndef BLOCKSERVE_TRAINER_CHECKPOINT_IO_H_
#define BLOCKSERVE_TRAINER_CHECKPOINT_IO_H_

#include <string>

#include "absl/status/statusor.h"
#include "base/safetensors.h"
#include "nlohmann/json.hpp"
#include "trainer/brt_model.h"
#include "trainer/reformer_model.h"

namespace blockserve::trainer {

// Writes `dir`/config.json (with `training` recorded under "training"), model.safetensors
// (F32, names of docs/checkpoint-format.md) and, if `tokenizer_model` is non-empty, a copy of it
// as tokenizer.model. Creates `dir` if needed. Each file is replaced atomically.
absl::Status ExportModelDir(BrtLm& model, const std::string& dir, const std::string& tokenizer_model,
                            const nlohmann::json& training);

// The same for any model module whose parameter and buffer names are the checkpoint names of
// `config` (docs/checkpoint-format.md), e.g. ReformerLm.
absl::Status ExportModelDir(torch::nn::Module& model, const ModelConfig& config, const std::string& dir,
                            const std::string& tokenizer_model, const nlohmann::json& training);

// Copies every tensor of `weights` into the parameters of `model` (converting BF16/F16 to the
// parameter dtype). The set of names and shapes must equal the model's.
absl::Status LoadWeights(BrtLm& model, const SafetensorsFile& weights);

// The same for any model module whose parameter and buffer names are the checkpoint names of
// `config` (ReformerLm): parameters and buffers (the LSH rotations) are loaded.
absl::Status LoadWeights(torch::nn::Module& model, const ModelConfig& config, const SafetensorsFile& weights);

// Builds a ReformerLm from a model directory.
absl::StatusOr<ReformerLm> LoadReformerLm(const std::string& dir);

// Builds a BrtLm from a model directory (config.json + model.safetensors).
absl::StatusOr<BrtLm> LoadBrtLm(const std::string& dir);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_CHECKPOINT_IO_H_
