// Session file encoding and decoding with an integrity checksum.
#include "engine/session_snapshot.h"

#include <cstring>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/fnv.h"
#include "base/safetensors.h"
#include "base/status.h"
#include "base/tensor.h"

namespace blockserve::engine {
namespace {

constexpr char kFormat[] = "blockserve.session";
constexpr char kVersion[] = "1";

// Over the metadata (sorted, without "checksum") and the tensors (sorted by name).
std::string Checksum(const std::map<std::string, std::string>& meta,
                     const std::map<std::string, std::pair<const void*, size_t>>& tensors) {
  uint64_t h = kFnvOffset;
  for (const auto& [k, v] : meta) {
    if (k == "checksum") continue;
    h = Fnv1a(h, k.data(), k.size() + 1);
    h = Fnv1a(h, v.data(), v.size() + 1);
  }
  for (const auto& [name, data] : tensors) {
    h = Fnv1a(h, name.data(), name.size() + 1);
    h = Fnv1a(h, data.first, data.second);
  }
  return absl::StrFormat("%016x", h);
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("session file is corrupt: ", what));
}

struct Parsed {
  std::unique_ptr<SafetensorsFile> file;
  std::map<std::string, std::string> meta;
};

absl::StatusOr<Parsed> Parse(absl::string_view bytes) {
  Parsed p;
  auto file = SafetensorsFile::FromBuffer(std::string(bytes), "session file");
  if (!file.ok()) return Corrupt(file.status().message());
  p.file = *std::move(file);
  p.meta = p.file->metadata();
  if (p.meta["format"] != kFormat) return Corrupt(absl::StrCat("format '", p.meta["format"], "'"));
  if (p.meta["format_version"] != kVersion) {
    return Corrupt(absl::StrCat("format_version '", p.meta["format_version"], "' (this build reads ", kVersion, ")"));
  }
  std::map<std::string, std::pair<const void*, size_t>> tensors;
  for (const std::string& name : p.file->names()) {
    ASSIGN_OR_RETURN(ConstTensorView v, p.file->Get(name));
    tensors[name] = {v.data, v.num_bytes()};
  }
  if (Checksum(p.meta, tensors) != p.meta["checksum"]) return Corrupt("checksum mismatch");
  return p;
}

absl::StatusOr<std::vector<int32_t>> Ints(const SafetensorsFile& f, const std::string& name) {
  absl::StatusOr<ConstTensorView> v = f.Get(name);
  if (!v.ok() || v->dtype != DType::kI32 || v->rank() != 1) return Corrupt(absl::StrCat("tensor ", name));
  const auto* d = static_cast<const int32_t*>(v->data);
  return std::vector<int32_t>(d, d + v->num_elements());
}

absl::StatusOr<std::string> Bytes(const SafetensorsFile& f, const std::string& name) {
  absl::StatusOr<ConstTensorView> v = f.Get(name);
  if (!v.ok() || v->dtype != DType::kU8 || v->rank() != 1) return Corrupt(absl::StrCat("tensor ", name));
  return std::string(static_cast<const char*>(v->data), v->num_bytes());
}

int64_t MetaInt(std::map<std::string, std::string>& meta, const std::string& key, bool* ok) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(meta[key], &v)) *ok = false;
  return v;
}

}  // namespace

std::string OwnerHash(const std::string& owner) {
  const std::string salted = "blockserve-owner:" + owner;
  return absl::StrFormat("%016x", Fnv1a(kFnvOffset, salted.data(), salted.size()));
}

absl::StatusOr<std::string> SerializeSession(const ModelRunner& runner, const SessionContext& ctx,
                                             const SessionRecord& record) {
  ASSIGN_OR_RETURN(const std::string state, runner.SerializeState(*ctx.state));
  std::vector<std::pair<std::string, ConstTensorView>> tensors;
  auto ints = [&](const char* name, const std::vector<int32_t>& v) {
    tensors.emplace_back(name, ConstTensorView(DType::kI32, {static_cast<int64_t>(v.size())}, v.data()));
  };
  auto bytes = [&](std::string name, const std::string& s) {
    tensors.emplace_back(std::move(name), ConstTensorView(DType::kU8, {static_cast<int64_t>(s.size())}, s.data()));
  };
  bytes("state", state);
  ints("pending", ctx.pending);
  ints("recent", ctx.recent);
  ints("history", ctx.history);
  std::vector<std::string> positions;
  for (size_t i = 0; i < ctx.checkpoints.size(); ++i) {
    bytes(absl::StrCat("checkpoint.", i), ctx.checkpoints[i].state);
    positions.push_back(absl::StrCat(ctx.checkpoints[i].position));
  }
  std::map<std::string, std::string> meta = {
      {"format", kFormat},
      {"format_version", kVersion},
      {"id", record.id},
      {"owner", record.owner_hash},
      {"created_unix_ms", absl::StrCat(absl::ToUnixMillis(record.created))},
      {"last_used_unix_ms", absl::StrCat(absl::ToUnixMillis(record.last_used))},
      {"tokens", absl::StrCat(ctx.context_tokens())},
      {"history_start", absl::StrCat(ctx.history_start)},
      {"checkpoints", absl::StrJoin(positions, ",")}};
  std::map<std::string, std::pair<const void*, size_t>> sums;
  for (const auto& [name, view] : tensors) sums[name] = {view.data, view.num_bytes()};
  meta["checksum"] = Checksum(meta, sums);
  return SerializeSafetensors(tensors, meta);
}

absl::StatusOr<SessionRecord> ReadSessionRecord(absl::string_view bytes) {
  ASSIGN_OR_RETURN(Parsed p, Parse(bytes));
  SessionRecord r;
  bool ok = true;
  r.id = p.meta["id"];
  r.owner_hash = p.meta["owner"];
  r.created = absl::FromUnixMillis(MetaInt(p.meta, "created_unix_ms", &ok));
  r.last_used = absl::FromUnixMillis(MetaInt(p.meta, "last_used_unix_ms", &ok));
  r.tokens = MetaInt(p.meta, "tokens", &ok);
  if (!ok || r.id.empty()) return Corrupt("metadata");
  return r;
}

absl::StatusOr<SessionContext> DeserializeSession(const ModelRunner& runner, absl::string_view bytes,
                                                  const CheckpointPolicy& policy, SessionRecord* record) {
  ASSIGN_OR_RETURN(*record, ReadSessionRecord(bytes));
  ASSIGN_OR_RETURN(Parsed p, Parse(bytes));
  SessionContext ctx;
  ASSIGN_OR_RETURN(const std::string state, Bytes(*p.file, "state"));
  ASSIGN_OR_RETURN(ctx.state, runner.DeserializeState(state));
  ASSIGN_OR_RETURN(ctx.pending, Ints(*p.file, "pending"));
  ASSIGN_OR_RETURN(ctx.recent, Ints(*p.file, "recent"));
  ASSIGN_OR_RETURN(ctx.history, Ints(*p.file, "history"));
  bool ok = true;
  ctx.history_start = MetaInt(p.meta, "history_start", &ok);
  if (!ok || ctx.pending.empty()) return Corrupt("metadata");
  int i = 0;
  for (absl::string_view pos : absl::StrSplit(p.meta["checkpoints"], ',', absl::SkipEmpty())) {
    Checkpoint c;
    if (!absl::SimpleAtoi(pos, &c.position)) return Corrupt("checkpoint positions");
    ASSIGN_OR_RETURN(c.state, Bytes(*p.file, absl::StrCat("checkpoint.", i++)));
    ctx.checkpoints.push_back(std::move(c));
  }
  ctx.policy = policy;
  const bool history_ok =
      ctx.history.empty() || ctx.history_start + static_cast<int64_t>(ctx.history.size()) == ctx.state->position();
  if (ctx.context_tokens() != record->tokens || !history_ok) {
    return Corrupt("token counts disagree with the state");
  }
  return ctx;
}

}  // namespace blockserve::engine
