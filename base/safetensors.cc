// Safetensors reader (mmap plus full header validation) and crash-safe writer.
#include "base/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/utf8.h"
#include "nlohmann/json.hpp"

namespace blockserve {
namespace {

using Json = nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
// A valid header nests 3 deep (root, entry, shape); anything far deeper is rejected early.
constexpr int kMaxHeaderDepth = 16;
constexpr size_t kMaxWriteChunk = size_t{1} << 30;

// Short description of a JSON value for error messages (numbers and literals verbatim).
std::string Describe(const Json& value) {
  if (value.is_number() || value.is_boolean() || value.is_null()) return value.dump();
  return value.type_name();
}

// A printable, quoted form of a name for error messages; always valid UTF-8.
std::string Quote(absl::string_view s) {
  return absl::StrCat("'", IsValidUtf8(s) ? absl::Utf8SafeCHexEscape(s) : absl::CHexEscape(s), "'");
}

// First pass over the header: well-formedness, nesting depth, and duplicate keys in any
// object (a DOM parse would silently keep the last of two equal keys).
class HeaderChecker : public nlohmann::json_sax<Json> {
 public:
  const std::string& error() const { return error_; }

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }

  bool start_object(std::size_t) override {
    if (!Enter()) return false;
    if (depth_ == 1) root_is_object_ = true;
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& key) override {
    if (!keys_.back().insert(key).second) {
      const bool top = root_is_object_ && depth_ == 1;
      if (top && key == kMetadataKey) {
        error_ = "'__metadata__' appears twice in the header";
      } else if (top) {
        error_ = absl::StrCat("tensor name ", Quote(key), " appears twice in the header");
      } else if (root_is_object_ && depth_ == 2 && top_key_ == kMetadataKey) {
        error_ = absl::StrCat("__metadata__ has the key ", Quote(key), " twice");
      } else if (root_is_object_ && depth_ == 2) {
        error_ = absl::StrCat("tensor ", Quote(top_key_), ": duplicate key ", Quote(key));
      } else {
        error_ = absl::StrCat("duplicate key ", Quote(key), " in the header");
      }
      return false;
    }
    if (depth_ == 1) top_key_ = key;
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const Json::exception& ex) override {
    absl::string_view what = ex.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " tag.
    const size_t tag_end = what.find("] ");
    if (!what.empty() && what[0] == '[' && tag_end != absl::string_view::npos) {
      what.remove_prefix(tag_end + 2);
    }
    // The lexer quotes the offending bytes, which may be invalid UTF-8.
    error_ = absl::StrCat("header is not valid JSON: ",
                          IsValidUtf8(what) ? std::string(what) : absl::CHexEscape(what));
    return false;
  }

 private:
  bool Enter() {
    if (++depth_ > kMaxHeaderDepth) {
      error_ = absl::StrCat("header nests deeper than ", kMaxHeaderDepth, " levels");
      return false;
    }
    return true;
  }

  int depth_ = 0;
  bool root_is_object_ = false;
  std::string top_key_;
  std::vector<std::set<std::string>> keys_;
  std::string error_;
};

// Reads a JSON value that must be an integer literal in [0, max]; false otherwise.
bool GetUnsigned(const Json& value, uint64_t max, uint64_t* out) {
  if (!value.is_number_unsigned()) return false;
  const uint64_t v = value.get<uint64_t>();
  if (v > max) return false;
  *out = v;
  return true;
}

// The write plan shared by SerializeSafetensors and WriteSafetensors.
struct Layout {
  std::string prefix;                                    // 8-byte length + padded JSON header
  std::vector<std::pair<const void*, uint64_t>> chunks;  // tensor data in file order
  uint64_t data_size = 0;
};

absl::StatusOr<Layout> PlanLayout(
    const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::set<absl::string_view> seen;
  std::vector<uint64_t> num_bytes(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string& name = tensors[i].first;
    const ConstTensorView& view = tensors[i].second;
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors writer: tensor #", i, " has an empty name"));
    }
    if (name == kMetadataKey) {
      return absl::InvalidArgumentError(
          "safetensors writer: the tensor name '__metadata__' is reserved");
    }
    if (!IsValidUtf8(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors writer: tensor name ", Quote(name), " is not valid UTF-8"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors writer: duplicate tensor name ", Quote(name)));
    }
    const uint64_t element_size = DTypeSize(view.dtype);
    absl::StatusOr<int64_t> elements = CheckedNumElements(
        view.shape, static_cast<int64_t>(std::numeric_limits<int64_t>::max() / element_size));
    if (!elements.ok()) {
      return Annotate(elements.status(), absl::StrCat("safetensors writer: tensor ", Quote(name)));
    }
    if (*elements > 0 && view.data == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors writer: tensor ", Quote(name),
                                                     " has ", *elements,
                                                     " elements but null data"));
    }
    num_bytes[i] = static_cast<uint64_t>(*elements) * element_size;
  }
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors writer: metadata entry ", Quote(key), " is not valid UTF-8"));
    }
  }

  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const size_t sa = DTypeSize(tensors[a].second.dtype);
    const size_t sb = DTypeSize(tensors[b].second.dtype);
    if (sa != sb) return sa > sb;
    return tensors[a].first < tensors[b].first;
  });

  Layout layout;
  std::string text;
  try {
    Json header = Json::object();
    if (!metadata.empty()) {
      Json meta = Json::object();
      for (const auto& [key, value] : metadata) meta[key] = value;
      header[kMetadataKey] = std::move(meta);
    }
    uint64_t offset = 0;
    for (size_t i : order) {
      const ConstTensorView& view = tensors[i].second;
      if (num_bytes[i] > std::numeric_limits<uint64_t>::max() - offset) {
        return absl::InvalidArgumentError("safetensors writer: total data size overflows");
      }
      Json entry = Json::object();
      entry["dtype"] = std::string(DTypeName(view.dtype));
      entry["shape"] = view.shape;
      entry["data_offsets"] = Json::array({offset, offset + num_bytes[i]});
      header[tensors[i].first] = std::move(entry);
      layout.chunks.emplace_back(view.data, num_bytes[i]);
      offset += num_bytes[i];
    }
    layout.data_size = offset;
    text = header.dump();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("safetensors writer: building the header: ", e.what()));
  }
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  if (text.size() > kSafetensorsMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors writer: header would be ",
                                                   text.size(), " bytes, over the limit of ",
                                                   kSafetensorsMaxHeaderBytes));
  }
  layout.prefix.resize(8);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) layout.prefix[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  layout.prefix += text;
  return layout;
}

absl::Status WriteAll(int fd, const void* data, uint64_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, kMaxWriteChunk));
    const ssize_t written = ::write(fd, p, chunk);
    if (written < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return absl::ErrnoToStatus(err, absl::StrCat("writing ", Quote(path)));
    }
    p += written;
    size -= static_cast<uint64_t>(written);
  }
  return absl::OkStatus();
}

absl::Status SyncDirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("opening directory ", Quote(dir)));
  }
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  const int err = errno;
  ::close(fd);
  // Some file systems cannot fsync a directory (EINVAL); the rename itself has happened.
  if (rc != 0 && err != EINVAL) {
    return absl::ErrnoToStatus(err, absl::StrCat("fsync of directory ", Quote(dir)));
  }
  return absl::OkStatus();
}

}  // namespace

void SafetensorsFile::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

SafetensorsFile::SafetensorsFile(std::string display_name)
    : display_name_(std::move(display_name)) {}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open safetensors file ", Quote(path)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat safetensors file ", Quote(path)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors file ", Quote(path), " is not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path));
  // Files under 8 bytes are rejected by Parse before any byte is read; mapping 0 bytes
  // would fail, so they are not mapped at all.
  if (size >= 8) {
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::ErrnoToStatus(err, absl::StrCat("cannot mmap safetensors file ", Quote(path)));
    }
    file->mapping_ = mapping;
    file->mapping_size_ = size;
  }
  ::close(fd);
  RETURN_IF_ERROR(file->Parse(static_cast<const uint8_t*>(file->mapping_), size));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(
    std::string bytes, std::string display_name) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(std::move(display_name)));
  const size_t size = bytes.size();
  const size_t rounded = (size / 64 + 1) * 64;  // never 0; a multiple of the alignment
  uint8_t* buffer = static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
  if (buffer == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", size, " bytes for ", Quote(file->display_name_)));
  }
  if (size > 0) std::memcpy(buffer, bytes.data(), size);
  file->buffer_.reset(buffer);
  bytes = std::string();  // release the caller's copy early
  RETURN_IF_ERROR(file->Parse(buffer, size));
  return file;
}

absl::Status SafetensorsFile::Parse(const uint8_t* bytes, size_t size) {
  const std::string where = absl::StrCat("safetensors file ", Quote(display_name_), ": ");
  size_bytes_ = size;
  if (size < 8) {
    return absl::DataLossError(absl::StrCat(
        where, "file is ", size, " bytes, shorter than the 8-byte header length prefix"));
  }
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  if (header_len > kSafetensorsMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(where, "header length ", header_len,
                                                   " exceeds the limit of ",
                                                   kSafetensorsMaxHeaderBytes, " bytes"));
  }
  if (header_len > size - 8) {
    return absl::DataLossError(absl::StrCat(where, "header length ", header_len,
                                            " runs past the end of the file (file is ", size,
                                            " bytes)"));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  const char* header_end = header_begin + header_len;
  data_ = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  Json header;
  {
    HeaderChecker checker;
    bool well_formed = false;
    try {
      well_formed = Json::sax_parse(header_begin, header_end, &checker);
      if (well_formed) header = Json::parse(header_begin, header_end, nullptr, false);
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "header could not be parsed: ", e.what()));
    }
    if (!well_formed) return absl::InvalidArgumentError(absl::StrCat(where, checker.error()));
    if (header.is_discarded()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "header is not valid JSON"));
    }
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "header is not a JSON object (got ", Describe(header), ")"));
  }

  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const Json& value = item.value();
    if (name == kMetadataKey) {
      if (!value.is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "__metadata__ is not an object of strings (got ", Describe(value), ")"));
      }
      for (const auto& meta : value.items()) {
        if (!meta.value().is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, "__metadata__ value for key ", Quote(meta.key()),
                           " is not a string (got ", Describe(meta.value()), ")"));
        }
        metadata_[meta.key()] = meta.value().get<std::string>();
      }
      continue;
    }

    const std::string tensor = absl::StrCat(where, "tensor ", Quote(name), ": ");
    if (!value.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensor, "entry is not a JSON object (got ", Describe(value), ")"));
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(key)) {
        return absl::InvalidArgumentError(absl::StrCat(tensor, "missing key '", key, "'"));
      }
    }
    for (const auto& field : value.items()) {
      const std::string& key = field.key();
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        return absl::InvalidArgumentError(absl::StrCat(tensor, "unexpected key ", Quote(key),
                                                       " (expected dtype, shape, data_offsets)"));
      }
    }

    Entry entry;
    const Json& dtype = value["dtype"];
    if (!dtype.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensor, "dtype is not a string (got ", Describe(dtype), ")"));
    }
    absl::StatusOr<DType> parsed = ParseDType(dtype.get<std::string>());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(tensor, parsed.status().message()));
    }
    entry.dtype = *parsed;
    const uint64_t element_size = DTypeSize(entry.dtype);

    const Json& shape = value["shape"];
    if (!shape.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensor, "shape is not an array (got ", Describe(shape), ")"));
    }
    for (size_t i = 0; i < shape.size(); ++i) {
      uint64_t dim;
      if (!GetUnsigned(shape[i], std::numeric_limits<int64_t>::max(), &dim)) {
        return absl::InvalidArgumentError(
            absl::StrCat(tensor, "shape dimension ", i,
                         " is not a non-negative 64-bit integer (got ", Describe(shape[i]), ")"));
      }
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    absl::StatusOr<int64_t> elements = CheckedNumElements(
        entry.shape, static_cast<int64_t>(std::numeric_limits<int64_t>::max() / element_size));
    if (!elements.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensor, elements.status().message(), " for dtype ", DTypeName(entry.dtype)));
    }
    const uint64_t num_bytes = static_cast<uint64_t>(*elements) * element_size;

    const Json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 ||
        !GetUnsigned(offsets[0], std::numeric_limits<uint64_t>::max(), &entry.begin) ||
        !GetUnsigned(offsets[1], std::numeric_limits<uint64_t>::max(), &entry.end)) {
      return absl::InvalidArgumentError(absl::StrCat(
          tensor, "data_offsets must be an array of two non-negative integers [begin, end] (got ",
          offsets.is_array() && offsets.size() <= 4 ? offsets.dump() : Describe(offsets), ")"));
    }
    if (entry.begin > entry.end) {
      return absl::InvalidArgumentError(absl::StrCat(tensor, "data_offsets begin ", entry.begin,
                                                     " is greater than end ", entry.end));
    }
    if (entry.end - entry.begin != num_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          tensor, "shape ", ShapeString(entry.shape), " with dtype ", DTypeName(entry.dtype),
          " needs ", num_bytes, " bytes, data_offsets span ", entry.end - entry.begin));
    }
    if (entry.end > data_size) {
      return absl::DataLossError(
          absl::StrCat(tensor, "data_offsets [", entry.begin, ", ", entry.end,
                       ") extend past the end of the data buffer (", data_size, " bytes)"));
    }
    // Both bases (an mmap page, a 64-byte aligned buffer) are aligned, so the file offset
    // decides whether typed access through the view is aligned.
    const uint64_t file_offset = 8 + header_len + entry.begin;
    if (num_bytes > 0 && file_offset % element_size != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(tensor, "data at file offset ", file_offset, " is not aligned to the ",
                       element_size, "-byte element size of ", DTypeName(entry.dtype),
                       " (rewrite the file with WriteSafetensors)"));
    }
    entries_.emplace(name, std::move(entry));
  }

  // The tensors' byte ranges must tile the data buffer exactly, as in the reference reader.
  std::vector<std::pair<const std::string*, const Entry*>> order;
  order.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) order.emplace_back(&name, &entry);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    if (a.second->begin != b.second->begin) return a.second->begin < b.second->begin;
    if (a.second->end != b.second->end) return a.second->end < b.second->end;
    return *a.first < *b.first;
  });
  uint64_t covered = 0;
  const std::pair<const std::string*, const Entry*>* previous = nullptr;
  for (const auto& current : order) {
    const Entry& e = *current.second;
    if (e.begin < covered) {
      const Entry& p = *previous->second;
      return absl::InvalidArgumentError(absl::StrCat(
          where, "tensor ", Quote(*current.first), " [", e.begin, ", ", e.end, ") overlaps tensor ",
          Quote(*previous->first), " [", p.begin, ", ", p.end, ")"));
    }
    if (e.begin > covered) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "gap in the data buffer: bytes [", covered, ", ", e.begin,
                       ") before tensor ", Quote(*current.first), " belong to no tensor"));
    }
    covered = e.end;
    previous = &current;
  }
  if (covered != data_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "data buffer has ", data_size - covered, " trailing bytes [", covered, ", ",
        data_size, ") after the last tensor",
        previous != nullptr ? absl::StrCat(" ", Quote(*previous->first)) : std::string()));
  }
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> result;
  result.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) result.push_back(name);
  return result;
}

bool SafetensorsFile::contains(absl::string_view name) const {
  return entries_.find(name) != entries_.end();
}

absl::StatusOr<ConstTensorView> SafetensorsFile::Get(absl::string_view name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor ", Quote(name),
                                            " not found in safetensors file ", Quote(display_name_),
                                            " (", entries_.size(), " tensors)"));
  }
  const Entry& e = it->second;
  return ConstTensorView{e.dtype, e.shape, data_ + e.begin};
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  ASSIGN_OR_RETURN(Layout layout, PlanLayout(tensors, metadata));
  std::string out;
  try {
    out.reserve(layout.prefix.size() + layout.data_size);
    out.append(layout.prefix);
    for (const auto& [data, num_bytes] : layout.chunks) {
      if (num_bytes > 0) out.append(static_cast<const char*>(data), num_bytes);
    }
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "safetensors writer: cannot hold ", layout.data_size, " bytes in memory: ", e.what()));
  }
  return out;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  ASSIGN_OR_RETURN(Layout layout, PlanLayout(tensors, metadata));
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot create ", Quote(tmp)));
  }
  auto fail = [&](absl::Status status) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return status;
  };
  absl::Status status = WriteAll(fd, layout.prefix.data(), layout.prefix.size(), tmp);
  for (const auto& [data, num_bytes] : layout.chunks) {
    if (!status.ok()) break;
    status = WriteAll(fd, data, num_bytes, tmp);
  }
  if (!status.ok()) return fail(status);
  int rc;
  do {
    rc = ::fsync(fd);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    return fail(absl::ErrnoToStatus(err, absl::StrCat("fsync of ", Quote(tmp))));
  }
  rc = ::close(fd);
  fd = -1;
  if (rc != 0) {
    const int err = errno;
    return fail(absl::ErrnoToStatus(err, absl::StrCat("closing ", Quote(tmp))));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    return fail(
        absl::ErrnoToStatus(err, absl::StrCat("renaming ", Quote(tmp), " to ", Quote(path))));
  }
  return SyncDirectoryOf(path);
}

}  // namespace blockserve
