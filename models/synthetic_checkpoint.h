// Writes model directories with seeded random weights, for tests, self-checks and benchmarks.
#ifndef BLOCKSERVE_MODELS_SYNTHETIC_CHECKPOINT_H_
#define BLOCKSERVE_MODELS_SYNTHETIC_CHECKPOINT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "base/tensor.h"
#include "models/model_config.h"

namespace blockserve {

// Writes `dir`/config.json and `dir`/model.safetensors with every tensor of
// CheckpointLayout(config) filled from N(0, stddev) seeded by `seed` (norm scales and
// attention scales get 1 + N(0, stddev) so that they are non-trivial but sane). If
// `tokenizer_model` is non-empty it is copied to `dir`/tokenizer.model. `dir` must exist.
absl::Status WriteSyntheticModelDir(const ModelConfig& config, const std::string& dir, uint64_t seed,
                                    DType dtype = DType::kF32, float stddev = 0.05f,
                                    const std::string& tokenizer_model = "");

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_SYNTHETIC_CHECKPOINT_H_
