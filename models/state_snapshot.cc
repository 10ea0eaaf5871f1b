// The state snapshot envelope: metadata written on serialize, checked on restore.
#include "models/state_snapshot.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace blockserve {

std::string SerializeStateSnapshot(const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
                                   absl::string_view format, absl::string_view format_version, int64_t position,
                                   const std::string& model_fingerprint) {
  const std::map<std::string, std::string> metadata = {{"format", std::string(format)},
                                                       {"format_version", std::string(format_version)},
                                                       {"position", absl::StrCat(position)},
                                                       {"model", model_fingerprint}};
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors, metadata);
  // Only malformed names or views fail, and the formats' are fixed and valid.
  BS_CHECK_MSG(bytes.ok(), bytes.status().ToString().c_str());
  return *std::move(bytes);
}

absl::StatusOr<StateSnapshot> OpenStateSnapshot(absl::string_view bytes, absl::string_view family,
                                                absl::string_view format, absl::string_view format_version,
                                                const std::string& model_fingerprint) {
  auto file_or = SafetensorsFile::FromBuffer(std::string(bytes), "state snapshot");
  if (!file_or.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a ", family, " state snapshot: ", file_or.status().message()));
  }
  const auto& meta = (*file_or)->metadata();
  auto get = [&](const char* key) -> std::string {
    auto it = meta.find(key);
    return it == meta.end() ? "" : it->second;
  };
  if (get("format") != format) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a ", family, " state snapshot (format '", get("format"), "')"));
  }
  if (get("format_version") != format_version) {
    return absl::InvalidArgumentError(absl::StrCat(family, " state snapshot: format_version '",
                                                   get("format_version"), "' is not supported (this build reads ",
                                                   format_version, ")"));
  }
  if (get("model") != model_fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat("the snapshot belongs to model ", get("model"),
                                                      ", not to the loaded model ", model_fingerprint));
  }
  return StateSnapshot{*std::move(file_or), get("position")};
}

}  // namespace blockserve
