// The tensor names and shapes a model.safetensors must hold for a given ModelConfig.
#ifndef BLOCKSERVE_MODELS_CHECKPOINT_LAYOUT_H_
#define BLOCKSERVE_MODELS_CHECKPOINT_LAYOUT_H_

#include <string>
#include <vector>

#include "base/tensor.h"
#include "models/model_config.h"

namespace blockserve {

// One tensor of a checkpoint. Linear weights are stored (out, in), as torch.nn.Linear:
// y = x @ W^T. docs/checkpoint-format.md documents every entry.
struct TensorSpec {
  std::string name;
  Shape shape;
};

// Every tensor of a checkpoint for `config`, in a stable order (embeddings, layers, head).
std::vector<TensorSpec> CheckpointLayout(const ModelConfig& config);

// Total number of parameters in the layout (counting the embedding).
int64_t CountParameters(const ModelConfig& config);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_CHECKPOINT_LAYOUT_H_
