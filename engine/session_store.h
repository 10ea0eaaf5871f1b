// SessionStore: live sessions (their model state and context) by unguessable id, with owners and idle expiry.
#ifndef BLOCKSERVE_ENGINE_SESSION_STORE_H_
#define BLOCKSERVE_ENGINE_SESSION_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/api/model_runner.h"
#include "engine/engine.h"

namespace blockserve::engine {

struct SessionStoreOptions {
  int max_sessions = 1024;
  absl::Duration idle_ttl = absl::Hours(1);  // idle sessions older than this are deleted
};

struct SessionInfo {
  std::string id;
  std::string owner;
  int64_t tokens = 0;       // context length
  size_t state_bytes = 0;
  absl::Time created, last_used;
  bool busy = false;
};

// Sessions live in memory. A session is used by one request at a time: Acquire marks it busy
// until Release. Ids are 128 random bits (hex). A session belongs to the owner (API key) that
// created it; other owners see NOT_FOUND, as for an unknown id.
// Thread-safety: all methods may be called from any thread. The SessionContext returned by
// Acquire is the caller's alone until Release.
class SessionStore {
 public:
  SessionStore(const ModelRunner* runner, const SessionStoreOptions& options);

  // RESOURCE_EXHAUSTED when max_sessions are live.
  absl::StatusOr<SessionInfo> Create(const std::string& owner);
  // NOT_FOUND (unknown id or another owner), FAILED_PRECONDITION (a request is running on it).
  absl::StatusOr<SessionContext*> Acquire(const std::string& id, const std::string& owner);
  void Release(const std::string& id);
  absl::StatusOr<SessionInfo> Get(const std::string& id, const std::string& owner) const;
  std::vector<SessionInfo> List(const std::string& owner) const;
  // FAILED_PRECONDITION while busy.
  absl::Status Delete(const std::string& id, const std::string& owner);
  // Deletes idle sessions unused for longer than idle_ttl; returns how many.
  int ExpireIdle(absl::Time now);

  int size() const;
  size_t state_bytes() const;

 private:
  struct Entry {
    SessionContext context;
    std::string owner;
    absl::Time created, last_used;
    bool busy = false;
  };
  SessionInfo Describe(const std::string& id, const Entry& e) const;
  absl::StatusOr<Entry*> Find(const std::string& id, const std::string& owner) const;

  const ModelRunner* runner_;
  SessionStoreOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> sessions_;  // guarded by mu_
};

// 128 random bits as 32 hex digits.
std::string NewSessionId();

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SESSION_STORE_H_
