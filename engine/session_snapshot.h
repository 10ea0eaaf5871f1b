// Session files: a session's context, checkpoints and bookkeeping as one checksummed safetensors blob.
#ifndef BLOCKSERVE_ENGINE_SESSION_SNAPSHOT_H_
#define BLOCKSERVE_ENGINE_SESSION_SNAPSHOT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/api/model_runner.h"
#include "engine/session_context.h"

namespace blockserve::engine {

// What a session file records besides the context.
struct SessionRecord {
  std::string id;
  std::string owner_hash;  // OwnerHash(owner): API keys are never written to disk
  absl::Time created, last_used;
  int64_t tokens = 0;      // context length (readable without the model)
};

std::string OwnerHash(const std::string& owner);

// Format: safetensors; tensors "state" (U8: ModelRunner::SerializeState), "pending", "recent",
// "history" (I32), "checkpoint.{i}" (U8); metadata format "blockserve.session", format_version
// "1", id, owner, created_unix_ms, last_used_unix_ms, tokens, history_start, checkpoint
// positions, and `checksum`: FNV-1a 64 over every other metadata entry and every tensor's bytes.
absl::StatusOr<std::string> SerializeSession(const ModelRunner& runner, const SessionContext& context,
                                             const SessionRecord& record);
// Checks the format and the checksum (DATA_LOSS names what is wrong) without the model.
absl::StatusOr<SessionRecord> ReadSessionRecord(absl::string_view bytes);
// Rebuilds the context (the state through ModelRunner::DeserializeState, which refuses
// another model's state with FAILED_PRECONDITION). `policy` is the server's current one.
absl::StatusOr<SessionContext> DeserializeSession(const ModelRunner& runner, absl::string_view bytes,
                                                  const CheckpointPolicy& policy, SessionRecord* record);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SESSION_SNAPSHOT_H_
