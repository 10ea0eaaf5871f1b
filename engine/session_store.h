// SessionStore: sessions by unguessable id, with owners, a memory budget (LRU offload to disk
// snapshots), persistence across restarts, forks, rewinds, export and import.
#ifndef BLOCKSERVE_ENGINE_SESSION_STORE_H_
#define BLOCKSERVE_ENGINE_SESSION_STORE_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/api/model_runner.h"
#include "engine/session_context.h"

namespace blockserve::engine {

struct SessionStoreOptions {
  int max_sessions = 1024;                   // in memory and on disk together
  absl::Duration idle_ttl = absl::Hours(1);  // idle sessions older than this are deleted
  // Directory of session files ("": sessions live in memory only, nothing survives a restart).
  std::string state_dir;
  // Bytes of live sessions (states, checkpoints, histories) kept in memory; beyond it the least
  // recently used idle sessions are written to state_dir and evicted. 0: no limit.
  int64_t memory_budget_bytes = 0;
  // A changed idle session is written to state_dir at most this long after its last request
  // (so a crash loses at most this much). Zero: right after every request.
  absl::Duration snapshot_interval = absl::Seconds(10);
  CheckpointPolicy checkpoints;
};

struct SessionInfo {
  std::string id;
  std::string owner;
  int64_t tokens = 0;       // context length
  size_t state_bytes = 0;   // memory while live (0 while offloaded)
  absl::Time created, last_used;
  bool busy = false;
  bool offloaded = false;
};

// A session handed to a request: its context is the caller's alone until Release.
struct Lease {
  std::string id;
  SessionContext* context = nullptr;
  // For forks and rewinds: tokens the caller must feed (kAppend) before releasing, to reach
  // the requested position.
  std::vector<int32_t> to_feed;
};

// A session is used by one request at a time: Acquire marks it busy until Release. Ids are 128
// random bits (hex). A session belongs to the owner (API key) that created it; other owners see
// NOT_FOUND, as for an unknown id. Session files are written crash-safely (temporary file,
// fsync, rename) with a checksum; a corrupt file is reported, renamed to *.corrupt and never
// loaded.
// Thread-safety: every method may be called from any thread. A background thread writes and
// evicts idle sessions; Shutdown() stops it (and, with a state_dir, writes every session).
class SessionStore {
 public:
  SessionStore(const ModelRunner* runner, const SessionStoreOptions& options);
  ~SessionStore();

  // Registers the session files found in state_dir (restart); returns how many, and logs and
  // sets aside corrupt ones.
  absl::StatusOr<int> LoadDirectory();

  // RESOURCE_EXHAUSTED when max_sessions exist.
  absl::StatusOr<SessionInfo> Create(const std::string& owner);
  // NOT_FOUND (unknown id or another owner), FAILED_PRECONDITION (busy), DATA_LOSS (its file is
  // corrupt: the session is then gone). Loads an offloaded session back transparently.
  absl::StatusOr<Lease> Acquire(const std::string& id, const std::string& owner);
  void Release(const std::string& id);
  absl::StatusOr<SessionInfo> Get(const std::string& id, const std::string& owner) const;
  std::vector<SessionInfo> List(const std::string& owner) const;
  // FAILED_PRECONDITION while busy. Removes its file too.
  absl::Status Delete(const std::string& id, const std::string& owner);
  // A new session holding the first `length` context tokens of `id` (0: all of them), busy
  // until Release; feed lease.to_feed first. OUT_OF_RANGE when the length is out of reach.
  absl::StatusOr<Lease> Fork(const std::string& id, const std::string& owner, int64_t length);
  // Cuts `id` back to its first `length` tokens; busy until Release, feed lease.to_feed first.
  absl::StatusOr<Lease> Rewind(const std::string& id, const std::string& owner, int64_t length);
  // The session as a portable blob (the session file format), and back as a new session.
  absl::StatusOr<std::string> Export(const std::string& id, const std::string& owner);
  absl::StatusOr<SessionInfo> Import(const std::string& owner, absl::string_view bytes);

  // Deletes idle sessions unused for longer than idle_ttl; returns how many.
  int ExpireIdle(absl::Time now);
  // Writes every changed idle session now (graceful shutdown, tests). Returns how many.
  int PersistAll();
  // Stops the background thread, then PersistAll() when a state_dir is set.
  void Shutdown();

  int size() const;           // sessions, live or offloaded
  int offloaded() const;      // sessions on disk only
  size_t memory_bytes() const;  // bytes held by live sessions

 private:
  struct Entry {
    std::unique_ptr<SessionContext> context;  // null while offloaded
    std::string owner;
    std::string owner_hash;
    absl::Time created, last_used;
    bool busy = false;
    // Context length and memory, refreshed whenever the store has the context to itself
    // (creation, load, release): a busy context belongs to its request and is not read.
    int64_t tokens = 0;
    size_t bytes = 0;
    uint64_t version = 0;      // bumped on every release (context may have changed)
    uint64_t written = 0;      // version last written to disk (0: never)
    bool has_file = false;
  };
  SessionInfo Describe(const std::string& id, const Entry& e) const;
  static void Refresh(Entry* e);
  absl::StatusOr<Entry*> FindLocked(const std::string& id, const std::string& owner) const;
  // Loads an offloaded entry's file (called with mu_ held).
  absl::Status LoadLocked(const std::string& id, Entry* e);
  std::string PathOf(const std::string& id) const;
  void SetAsideCorrupt(const std::string& path, const absl::Status& why);
  // Background: writes changed idle sessions whose snapshot is due, evicts LRU idle sessions
  // over the memory budget. Returns how many sessions were written.
  int Housekeep(bool write_all);
  void Loop();
  std::string NewIdLocked() const;

  const ModelRunner* runner_;
  SessionStoreOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::unique_ptr<Entry>> sessions_;  // guarded by mu_
  bool stopping_ = false;                                   // guarded by mu_
  std::thread thread_;
};

// 128 random bits as 32 hex digits.
std::string NewSessionId();

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SESSION_STORE_H_
