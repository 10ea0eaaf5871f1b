// Pieces shared by the CPU ModelRunners (BRT, Reformer): step item checks and model info.
#ifndef BLOCKSERVE_MODELS_CPU_RUNNER_COMMON_H_
#define BLOCKSERVE_MODELS_CPU_RUNNER_COMMON_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/api/model_runner.h"
#include "models/model_config.h"
#include "models/weight_store.h"

namespace blockserve {

// Checks item `i` of a step: `own_state` is the item's state when the runner made it (else
// null), not seen before in the step (`seen`: the states of items 0..i-1, appended to),
// tokens present and inside [0, vocab_size), a logits buffer when logits are requested.
absl::Status CheckStepItem(const engine::StepItem& item, size_t i, const void* own_state, int vocab_size,
                           std::vector<const void*>* seen);

// The ModelInfo fields that follow from the config and options alone; the runner sets the
// family's (family, block_size, max_position, state_bytes, constant_state, whole_first_prompt).
engine::ModelInfo CpuModelInfo(const ModelConfig& config, const std::string& name, WeightDType weight_dtype);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_CPU_RUNNER_COMMON_H_
