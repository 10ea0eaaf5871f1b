// Whole-file reads and writes with Status errors, including a crash-safe replace.
#ifndef BLOCKSERVE_BASE_FILE_IO_H_
#define BLOCKSERVE_BASE_FILE_IO_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace blockserve {

// The bytes of `path`; NotFound naming the path if it cannot be opened.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Creates or truncates `path` and writes `contents`.
absl::Status WriteStringToFile(const std::string& path, absl::string_view contents);

// Replaces `path` so that a crash leaves either the old or the new contents: writes
// "<path>.tmp.<pid>", fsyncs it, renames it over `path`, fsyncs the directory.
absl::Status WriteStringToFileAtomically(const std::string& path, absl::string_view contents);

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_FILE_IO_H_
