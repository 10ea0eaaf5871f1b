// Opens a model directory and builds the ModelRunner of its family.
#ifndef BLOCKSERVE_MODELS_MODEL_RUNNER_FACTORY_H_
#define BLOCKSERVE_MODELS_MODEL_RUNNER_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/api/model_runner.h"
#include "models/brt/brt_runner.h"
#include "models/reformer/reformer_runner.h"

namespace blockserve {

// Opens `dir` (config.json + model.safetensors; the tokenizer is not needed here), validates
// the weights against the config, and builds a CPU runner. Errors name the directory.
absl::StatusOr<std::unique_ptr<engine::ModelRunner>> LoadModelRunner(const std::string& dir,
                                                                     const RunnerOptions& options);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_MODEL_RUNNER_FACTORY_H_
