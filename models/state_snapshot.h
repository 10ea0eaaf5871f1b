// The snapshot envelope shared by the runners' state formats: a safetensors file whose
// metadata is {format, format_version, position, model} (`model`: the fingerprint of the
// model the state belongs to). Each runner defines its tensors.
#ifndef BLOCKSERVE_MODELS_STATE_SNAPSHOT_H_
#define BLOCKSERVE_MODELS_STATE_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/safetensors.h"
#include "base/tensor.h"

namespace blockserve {

// `tensors` with the envelope's metadata. Names and views must be valid (they are fixed by
// each format), so this does not fail.
std::string SerializeStateSnapshot(const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
                                   absl::string_view format, absl::string_view format_version, int64_t position,
                                   const std::string& model_fingerprint);

struct StateSnapshot {
  std::unique_ptr<SafetensorsFile> file;
  std::string position;  // the metadata's position, unparsed ("" when absent)
};

// Opens `bytes` as a snapshot of `format` at `format_version` taken from the model
// `model_fingerprint`; `family` ("BRT", "Reformer") names the state in errors. Errors: not
// such a snapshot or another format_version (InvalidArgument), another model
// (FailedPrecondition).
absl::StatusOr<StateSnapshot> OpenStateSnapshot(absl::string_view bytes, absl::string_view family,
                                                absl::string_view format, absl::string_view format_version,
                                                const std::string& model_fingerprint);

}  // namespace blockserve

#endif  // BLOCKSERVE_MODELS_STATE_SNAPSHOT_H_
