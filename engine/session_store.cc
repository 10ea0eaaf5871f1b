// SessionStore: in-memory sessions with owners, busy marking and idle expiry.
#include "engine/session_store.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace blockserve::engine {

std::string NewSessionId() {
  static std::mutex mu;
  static std::random_device device;
  std::lock_guard<std::mutex> lock(mu);
  uint64_t parts[2];
  for (uint64_t& p : parts) p = (static_cast<uint64_t>(device()) << 32) ^ device();
  return absl::StrFormat("%016x%016x", parts[0], parts[1]);
}

SessionStore::SessionStore(const ModelRunner* runner, const SessionStoreOptions& options)
    : runner_(runner), options_(options) {}

SessionInfo SessionStore::Describe(const std::string& id, const Entry& e) const {
  SessionInfo info;
  info.id = id;
  info.owner = e.owner;
  info.tokens = e.context.context_tokens();
  info.state_bytes = e.context.state->byte_size();
  info.created = e.created;
  info.last_used = e.last_used;
  info.busy = e.busy;
  return info;
}

absl::StatusOr<SessionStore::Entry*> SessionStore::Find(const std::string& id, const std::string& owner) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->owner != owner) {
    return absl::NotFoundError(absl::StrCat("session '", id, "' not found (expired, deleted or never created)"));
  }
  return it->second.get();
}

absl::StatusOr<SessionInfo> SessionStore::Create(const std::string& owner) {
  auto entry = std::make_unique<Entry>();
  entry->context = NewSessionContext(*runner_);
  entry->owner = owner;
  entry->created = entry->last_used = absl::Now();
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many sessions: ", sessions_.size(), " are live (--max_sessions); delete some"));
  }
  std::string id = NewSessionId();
  while (sessions_.count(id) > 0) id = NewSessionId();
  SessionInfo info = Describe(id, *entry);
  sessions_.emplace(id, std::move(entry));
  return info;
}

absl::StatusOr<SessionContext*> SessionStore::Acquire(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Entry*> e = Find(id, owner);
  if (!e.ok()) return e.status();
  if ((*e)->busy) {
    return absl::FailedPreconditionError(
        absl::StrCat("session '", id, "' is busy: another request is running on it"));
  }
  (*e)->busy = true;
  (*e)->last_used = absl::Now();
  return &(*e)->context;
}

void SessionStore::Release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  it->second->busy = false;
  it->second->last_used = absl::Now();
}

absl::StatusOr<SessionInfo> SessionStore::Get(const std::string& id, const std::string& owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Entry*> e = Find(id, owner);
  if (!e.ok()) return e.status();
  return Describe(id, **e);
}

std::vector<SessionInfo> SessionStore::List(const std::string& owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SessionInfo> out;
  for (const auto& [id, e] : sessions_) {
    if (e->owner == owner) out.push_back(Describe(id, *e));
  }
  return out;
}

absl::Status SessionStore::Delete(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Entry*> e = Find(id, owner);
  if (!e.ok()) return e.status();
  if ((*e)->busy) {
    return absl::FailedPreconditionError(absl::StrCat("session '", id, "' is busy: cancel its request first"));
  }
  sessions_.erase(id);
  return absl::OkStatus();
}

int SessionStore::ExpireIdle(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  int removed = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (!it->second->busy && now - it->second->last_used > options_.idle_ttl) {
      it = sessions_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

int SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(sessions_.size());
}

size_t SessionStore::state_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t bytes = 0;
  for (const auto& [id, e] : sessions_) bytes += e->context.state->byte_size();
  return bytes;
}

}  // namespace blockserve::engine
