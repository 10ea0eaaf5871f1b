// SessionStore: live and offloaded sessions, crash-safe session files, forks, export and import.
#include "engine/session_store.h"

#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/file_io.h"
#include "base/logging.h"
#include "base/status.h"
#include "engine/session_snapshot.h"

namespace blockserve::engine {
namespace fs = std::filesystem;

namespace {
constexpr char kSuffix[] = ".session";
}  // namespace

std::string NewSessionId() {
  static std::mutex mu;
  static std::random_device device;
  std::lock_guard<std::mutex> lock(mu);
  uint64_t parts[2];
  for (uint64_t& p : parts) p = (static_cast<uint64_t>(device()) << 32) ^ device();
  return absl::StrFormat("%016x%016x", parts[0], parts[1]);
}

SessionStore::SessionStore(const ModelRunner* runner, const SessionStoreOptions& options)
    : runner_(runner), options_(options) {
  if (!options_.state_dir.empty()) {
    std::error_code ec;
    fs::create_directories(options_.state_dir, ec);
    thread_ = std::thread([this] { Loop(); });
  }
}

SessionStore::~SessionStore() { Shutdown(); }

void SessionStore::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!options_.state_dir.empty()) {
    const int written = Housekeep(/*write_all=*/true);
    BS_LOG(INFO) << "sessions: wrote " << written << " session(s) to " << options_.state_dir;
  }
}

std::string SessionStore::PathOf(const std::string& id) const {
  return (fs::path(options_.state_dir) / (id + kSuffix)).string();
}

std::string SessionStore::NewIdLocked() const {
  std::string id = NewSessionId();
  while (sessions_.count(id) > 0) id = NewSessionId();
  return id;
}

void SessionStore::Refresh(Entry* e) {
  if (e->context == nullptr) return;
  e->tokens = e->context->context_tokens();
  e->bytes = e->context->byte_size();
}

SessionInfo SessionStore::Describe(const std::string& id, const Entry& e) const {
  SessionInfo info;
  info.id = id;
  info.owner = e.owner;
  info.tokens = e.tokens;
  info.state_bytes = e.context ? e.bytes : 0;
  info.created = e.created;
  info.last_used = e.last_used;
  info.busy = e.busy;
  info.offloaded = e.context == nullptr;
  return info;
}

absl::StatusOr<SessionStore::Entry*> SessionStore::FindLocked(const std::string& id, const std::string& owner) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second->owner_hash != OwnerHash(owner)) {
    return absl::NotFoundError(absl::StrCat("session '", id, "' not found (expired, deleted or never created)"));
  }
  return it->second.get();
}

void SessionStore::SetAsideCorrupt(const std::string& path, const absl::Status& why) {
  BS_LOG(ERROR) << "refusing session file " << path << ": " << why << " (renamed to " << path << ".corrupt)";
  std::error_code ec;
  fs::rename(path, path + ".corrupt", ec);
}

absl::Status SessionStore::LoadLocked(const std::string& id, Entry* e) {
  const std::string path = PathOf(id);
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) {
    sessions_.erase(id);
    return absl::DataLossError(absl::StrCat("session '", id, "': its file is gone: ", bytes.status().message()));
  }
  SessionRecord record;
  absl::StatusOr<SessionContext> ctx = DeserializeSession(*runner_, *bytes, options_.checkpoints, &record);
  if (!ctx.ok()) {
    if (ctx.status().code() == absl::StatusCode::kDataLoss) {
      SetAsideCorrupt(path, ctx.status());
      sessions_.erase(id);
    }
    return Annotate(ctx.status(), absl::StrCat("session '", id, "'"));
  }
  e->context = std::make_unique<SessionContext>(*std::move(ctx));
  Refresh(e);
  return absl::OkStatus();
}

absl::StatusOr<int> SessionStore::LoadDirectory() {
  if (options_.state_dir.empty()) return 0;
  std::error_code ec;
  int loaded = 0;
  for (const fs::directory_entry& f : fs::directory_iterator(options_.state_dir, ec)) {
    const std::string path = f.path().string();
    if (!absl::EndsWith(path, kSuffix)) continue;
    const std::string id = f.path().stem().string();
    absl::StatusOr<std::string> bytes = ReadFileToString(path);
    absl::StatusOr<SessionRecord> record = bytes.ok() ? ReadSessionRecord(*bytes) : bytes.status();
    if (record.ok() && record->id != id) record = absl::DataLossError("the file name does not match its id");
    if (!record.ok()) {
      SetAsideCorrupt(path, record.status());
      continue;
    }
    auto e = std::make_unique<Entry>();
    e->owner_hash = record->owner_hash;
    e->created = record->created;
    e->last_used = record->last_used;
    e->tokens = record->tokens;
    e->has_file = true;
    std::lock_guard<std::mutex> lock(mu_);
    sessions_[id] = std::move(e);
    ++loaded;
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot read ", options_.state_dir, ": ", ec.message()));
  return loaded;
}

absl::StatusOr<SessionInfo> SessionStore::Create(const std::string& owner) {
  auto entry = std::make_unique<Entry>();
  entry->context = std::make_unique<SessionContext>(NewSessionContext(*runner_, options_.checkpoints));
  entry->owner = owner;
  entry->owner_hash = OwnerHash(owner);
  entry->created = entry->last_used = absl::Now();
  entry->version = 1;
  Refresh(entry.get());
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many sessions: ", sessions_.size(), " exist (--max_sessions); delete some"));
  }
  const std::string id = NewIdLocked();
  SessionInfo info = Describe(id, *entry);
  sessions_.emplace(id, std::move(entry));
  cv_.notify_all();
  return info;
}

absl::StatusOr<Lease> SessionStore::Acquire(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id, owner));
  if (e->busy) {
    return absl::FailedPreconditionError(absl::StrCat("session '", id, "' is busy: another request is running on it"));
  }
  if (e->context == nullptr) RETURN_IF_ERROR(LoadLocked(id, e));
  e->busy = true;
  e->owner = owner;
  e->last_used = absl::Now();
  return Lease{id, e->context.get(), {}};
}

void SessionStore::Release(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    it->second->busy = false;
    it->second->last_used = absl::Now();
    ++it->second->version;
    Refresh(it->second.get());
  }
  cv_.notify_all();
}

absl::StatusOr<SessionInfo> SessionStore::Get(const std::string& id, const std::string& owner) const {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id, owner));
  return Describe(id, *e);
}

std::vector<SessionInfo> SessionStore::List(const std::string& owner) const {
  const std::string hash = OwnerHash(owner);
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SessionInfo> out;
  for (const auto& [id, e] : sessions_) {
    if (e->owner_hash == hash) out.push_back(Describe(id, *e));
  }
  return out;
}

absl::Status SessionStore::Delete(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id, owner));
  if (e->busy) return absl::FailedPreconditionError(absl::StrCat("session '", id, "' is busy: cancel its request first"));
  if (e->has_file) {
    std::error_code ec;
    fs::remove(PathOf(id), ec);
  }
  sessions_.erase(id);
  return absl::OkStatus();
}

absl::StatusOr<Lease> SessionStore::Fork(const std::string& id, const std::string& owner, int64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * src, FindLocked(id, owner));
  if (src->busy) return absl::FailedPreconditionError(absl::StrCat("session '", id, "' is busy"));
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError("too many sessions (--max_sessions)");
  }
  if (src->context == nullptr) RETURN_IF_ERROR(LoadLocked(id, src));
  if (length == 0) length = src->context->context_tokens();
  ASSIGN_OR_RETURN(ForkPlan plan, PlanFork(*runner_, *src->context, length));
  auto e = std::make_unique<Entry>();
  e->context = std::make_unique<SessionContext>(std::move(plan.context));
  e->owner = owner;
  e->owner_hash = OwnerHash(owner);
  e->created = e->last_used = absl::Now();
  e->busy = true;
  e->version = 1;
  Refresh(e.get());
  const std::string new_id = NewIdLocked();
  Lease lease{new_id, e->context.get(), std::move(plan.to_feed)};
  sessions_.emplace(new_id, std::move(e));
  return lease;
}

absl::StatusOr<Lease> SessionStore::Rewind(const std::string& id, const std::string& owner, int64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id, owner));
  if (e->busy) return absl::FailedPreconditionError(absl::StrCat("session '", id, "' is busy"));
  if (e->context == nullptr) RETURN_IF_ERROR(LoadLocked(id, e));
  ASSIGN_OR_RETURN(ForkPlan plan, PlanFork(*runner_, *e->context, length));
  e->context = std::make_unique<SessionContext>(std::move(plan.context));
  Refresh(e);
  e->busy = true;
  e->last_used = absl::Now();
  return Lease{id, e->context.get(), std::move(plan.to_feed)};
}

absl::StatusOr<std::string> SessionStore::Export(const std::string& id, const std::string& owner) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Entry * e, FindLocked(id, owner));
  if (e->busy) return absl::FailedPreconditionError(absl::StrCat("session '", id, "' is busy"));
  if (e->context == nullptr) RETURN_IF_ERROR(LoadLocked(id, e));
  SessionRecord record{id, e->owner_hash, e->created, e->last_used, e->context->context_tokens()};
  return SerializeSession(*runner_, *e->context, record);
}

absl::StatusOr<SessionInfo> SessionStore::Import(const std::string& owner, absl::string_view bytes) {
  SessionRecord record;
  absl::StatusOr<SessionContext> ctx = DeserializeSession(*runner_, bytes, options_.checkpoints, &record);
  if (!ctx.ok()) return Annotate(ctx.status(), "ImportSession");
  auto e = std::make_unique<Entry>();
  e->context = std::make_unique<SessionContext>(*std::move(ctx));
  e->owner = owner;
  e->owner_hash = OwnerHash(owner);
  e->created = record.created;
  e->last_used = absl::Now();
  e->version = 1;
  Refresh(e.get());
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError("too many sessions (--max_sessions)");
  }
  // Keep the id (a load balancer may route by it) unless it is taken here.
  const std::string id = sessions_.count(record.id) == 0 && record.id.size() == 32 ? record.id : NewIdLocked();
  SessionInfo info = Describe(id, *e);
  sessions_.emplace(id, std::move(e));
  cv_.notify_all();
  return info;
}

int SessionStore::ExpireIdle(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  int removed = 0;
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (!it->second->busy && now - it->second->last_used > options_.idle_ttl) {
      if (it->second->has_file) {
        std::error_code ec;
        fs::remove(PathOf(it->first), ec);
      }
      it = sessions_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

int SessionStore::PersistAll() { return options_.state_dir.empty() ? 0 : Housekeep(/*write_all=*/true); }

int SessionStore::Housekeep(bool write_all) {
  int written = 0;
  while (true) {
    // Pick one session to write (and maybe evict): changed idle sessions whose snapshot is
    // due, then, while over the memory budget, the least recently used idle one.
    std::string id;
    bool evict = false;
    std::string bytes;
    uint64_t version = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const absl::Time now = absl::Now();
      size_t memory = 0;
      for (const auto& [key, e] : sessions_) memory += e->context ? e->bytes : 0;
      const bool over = options_.memory_budget_bytes > 0 && memory > static_cast<size_t>(options_.memory_budget_bytes);
      Entry* pick = nullptr;
      for (auto& [key, e] : sessions_) {
        if (e->busy || e->context == nullptr) continue;
        const bool changed = e->version != e->written;
        if (changed && (write_all || now - e->last_used >= options_.snapshot_interval)) {
          pick = e.get();
          id = key;
          break;
        }
      }
      if (pick == nullptr && over) {
        for (auto& [key, e] : sessions_) {
          if (e->busy || e->context == nullptr) continue;
          if (pick == nullptr || e->last_used < pick->last_used) {
            pick = e.get();
            id = key;
          }
        }
        evict = pick != nullptr;
      }
      if (pick == nullptr) return written;
      version = pick->version;
      if (evict && pick->written == version && pick->has_file) {
        pick->context.reset();  // unchanged since its last write: drop it
        continue;
      }
      SessionRecord record{id, pick->owner_hash, pick->created, pick->last_used, pick->context->context_tokens()};
      absl::StatusOr<std::string> s = SerializeSession(*runner_, *pick->context, record);
      if (!s.ok()) {
        BS_LOG(ERROR) << "cannot serialize session " << id << ": " << s.status();
        pick->written = version;  // do not retry in a loop
        continue;
      }
      bytes = *std::move(s);
    }
    const absl::Status status = WriteStringToFileAtomically(PathOf(id), bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {  // deleted meanwhile
      std::error_code ec;
      fs::remove(PathOf(id), ec);
      continue;
    }
    Entry& e = *it->second;
    if (!status.ok()) {
      BS_LOG(ERROR) << "cannot write session " << id << ": " << status;
      e.written = version;  // keep it in memory; retried after its next change
      if (evict) return written;
      continue;
    }
    ++written;
    e.has_file = true;
    e.written = version;
    if (evict && !e.busy && e.version == version) e.context.reset();
  }
}

void SessionStore::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (stopping_) break;
    lock.unlock();
    Housekeep(/*write_all=*/false);
    lock.lock();
  }
}

int SessionStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(sessions_.size());
}

int SessionStore::offloaded() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [id, e] : sessions_) n += e->context == nullptr ? 1 : 0;
  return n;
}

size_t SessionStore::memory_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t bytes = 0;
  for (const auto& [id, e] : sessions_) bytes += e->context ? e->bytes : 0;
  return bytes;
}

}  // namespace blockserve::engine
