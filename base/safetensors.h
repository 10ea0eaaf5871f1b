// Reads (memory-mapped, fully validated) and writes (crash-safe) Hugging Face safetensors files.
#ifndef BLOCKSERVE_BASE_SAFETENSORS_H_
#define BLOCKSERVE_BASE_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/tensor.h"

namespace blockserve {

// Upper bound on the JSON header length accepted on read (and produced on write).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// A safetensors file: 8-byte little-endian header length N, N bytes of JSON header, then
// the data buffer. Open() validates the whole header against the data buffer (dtypes,
// shapes, byte counts, ranges that tile the buffer exactly, no duplicate names, string
// metadata, every tensor aligned to its element size), so after a successful Open every
// name in names() can be read with Get().
//
// Thread-safety: immutable after Open/FromBuffer; any number of threads may call the const
// accessors concurrently. Views returned by Get() point into the file's mapping (or owned
// buffer) and are valid only while this object lives. A file opened with Open() must not
// be truncated by another process while mapped (reads would fault with SIGBUS).
class SafetensorsFile {
 public:
  // Memory-maps `path` read-only and validates it. Errors name the file (and the tensor).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Same validation over in-memory bytes, which are copied into an owned, 64-byte aligned
  // buffer. `display_name` stands in for the path in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(std::string bytes,
                                                                     std::string display_name);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // The path given to Open, or the display name given to FromBuffer.
  const std::string& display_name() const { return display_name_; }
  // The "__metadata__" object (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(absl::string_view name) const;
  // A zero-copy view of tensor `name`; NotFound (naming tensor and file) if absent.
  absl::StatusOr<ConstTensorView> Get(absl::string_view name) const;
  // Size of the whole file (or buffer) in bytes.
  size_t size_bytes() const { return size_bytes_; }

 private:
  struct Entry {
    DType dtype = DType::kF32;
    Shape shape;
    uint64_t begin = 0;  // offsets within the data buffer, end exclusive
    uint64_t end = 0;
  };
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };

  explicit SafetensorsFile(std::string display_name);
  // Validates `size` bytes at `bytes` (which this object keeps alive) and fills the index.
  absl::Status Parse(const uint8_t* bytes, size_t size);

  std::string display_name_;
  void* mapping_ = nullptr;  // from mmap (Open), or null
  size_t mapping_size_ = 0;
  std::unique_ptr<uint8_t, FreeDeleter> buffer_;  // owned copy (FromBuffer), or null
  const uint8_t* data_ = nullptr;                 // start of the data buffer
  size_t size_bytes_ = 0;
  std::map<std::string, Entry, std::less<>> entries_;
  std::map<std::string, std::string> metadata_;
};

// Serializes `tensors` (name, view) and `metadata` to safetensors bytes. Layout: tensors
// sorted by element size descending, then by name, so each is aligned to its element size;
// the header is padded with spaces so the data buffer starts at a multiple of 8. Rejects
// empty, duplicate and "__metadata__" names, names or metadata that are not valid UTF-8,
// negative dims, and views with null data but a non-zero element count.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
    const std::map<std::string, std::string>& metadata);

// Writes the same bytes to `path` crash-safely: streams to "<path>.tmp.<pid>", fsyncs it,
// renames it over `path`, then fsyncs the directory. On error the temporary file is removed
// and any existing `path` is untouched. Concurrent writers of one path within one process
// are not supported (they would share the temporary name).
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, ConstTensorView>>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_SAFETENSORS_H_
