// Step item checks and model info of the CPU runners.
#include "models/cpu_runner_common.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "models/checkpoint_layout.h"

namespace blockserve {

absl::Status CheckStepItem(const engine::StepItem& item, size_t i, const void* own_state, int vocab_size,
                           std::vector<const void*>* seen) {
  if (own_state == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("step item ", i, ": the state was not made by this runner"));
  }
  // A step holds a few dozen items: a linear scan finds repeated states without allocating.
  if (std::find(seen->begin(), seen->end(), own_state) != seen->end()) {
    return absl::InvalidArgumentError(absl::StrCat("step item ", i, ": the same state appears twice in one step"));
  }
  seen->push_back(own_state);
  if (item.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("step item ", i, ": no tokens"));
  for (size_t t = 0; t < item.tokens.size(); ++t) {
    if (item.tokens[t] < 0 || item.tokens[t] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("step item ", i, ": token ", t, " is ", item.tokens[t],
                                                     ", outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  if (item.logits != engine::StepItem::Logits::kNone && item.logits_out == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("step item ", i, ": logits requested without a buffer"));
  }
  return absl::OkStatus();
}

engine::ModelInfo CpuModelInfo(const ModelConfig& config, const std::string& name, WeightDType weight_dtype) {
  engine::ModelInfo info;
  info.name = name;
  info.vocab_size = config.vocab_size;
  info.pad_id = config.pad_id;
  info.unk_id = config.unk_id;
  info.bos_id = config.bos_id;
  info.eos_id = config.eos_id;
  info.num_parameters = CountParameters(config);
  info.d_model = config.d_model;
  info.num_layers = config.num_layers;
  info.weight_dtype = std::string(WeightDTypeName(weight_dtype));
  info.device = "cpu";
  return info;
}

}  // namespace blockserve
