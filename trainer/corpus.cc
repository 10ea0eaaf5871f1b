// Corpus loading (KJV via `bible`, Python stdlib, files and directories) and train/held-out split.
#include "trainer/corpus.h"

#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/utf8.h"

namespace blockserve::trainer {
namespace {

namespace fs = std::filesystem;

constexpr char kKjvRange[] = "Gen1:1-Rev22:21";
constexpr char kPythonStdlibDir[] = "/usr/lib/python3.11";
constexpr char kInstallHint[] = "run scripts/install-deps.sh to install it";

// Bytes read before the NUL check; a binary file is usually rejected without reading the rest.
constexpr size_t kSniffBytes = 64 * 1024;

// Closes a popen'ed pipe if the caller did not (early returns).
struct PipeCloser {
  void operator()(FILE* f) const {
    if (f != nullptr) pclose(f);
  }
};

// An unbiased integer in [0, bound) from `rng` (bound > 0). Written out instead of
// std::uniform_int_distribution so that results are identical across standard libraries.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound.
  while (true) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

// Splits a `bible` output line "1Sm3:4 And ..." into the book abbreviation ("1Sm") and the verse
// text ("And ..."). Returns false when the line does not start with such a reference.
bool SplitVerseReference(absl::string_view line, absl::string_view* book, absl::string_view* text) {
  const size_t space = line.find(' ');
  const absl::string_view ref = line.substr(0, space);
  const size_t colon = ref.find(':');
  if (colon == absl::string_view::npos || colon + 1 >= ref.size()) return false;
  for (size_t i = colon + 1; i < ref.size(); ++i) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(ref[i]))) return false;
  }
  size_t chapter_start = colon;
  while (chapter_start > 0 &&
         absl::ascii_isdigit(static_cast<unsigned char>(ref[chapter_start - 1]))) {
    --chapter_start;
  }
  if (chapter_start == colon || chapter_start == 0) return false;
  bool has_letter = false;
  for (size_t i = 0; i < chapter_start; ++i) {
    const unsigned char c = static_cast<unsigned char>(ref[i]);
    if (!absl::ascii_isalnum(c)) return false;
    has_letter = has_letter || absl::ascii_isalpha(c);
  }
  if (!has_letter) return false;
  *book = ref.substr(0, chapter_start);
  *text = space == absl::string_view::npos ? absl::string_view() : line.substr(space + 1);
  return true;
}

// Turns the whole `bible -f` output into one document per book.
absl::StatusOr<std::vector<Document>> ParseBibleOutput(absl::string_view output) {
  std::vector<Document> books;
  size_t pos = 0;
  int64_t line_number = 0;
  while (pos < output.size()) {
    size_t end = output.find('\n', pos);
    if (end == absl::string_view::npos) end = output.size();
    const absl::string_view line =
        absl::StripTrailingAsciiWhitespace(output.substr(pos, end - pos));
    pos = end + 1;
    ++line_number;
    if (line.empty()) continue;
    absl::string_view book, text;
    if (!SplitVerseReference(line, &book, &text)) {
      // Not seen with bible-kjv 4.x, but a wrapped verse would continue the previous line.
      if (books.empty()) {
        return absl::InternalError(absl::StrCat("unexpected `bible` output at line ", line_number,
                                                ": '", line.substr(0, 80), "'"));
      }
      std::string& doc = books.back().text;
      if (!doc.empty() && doc.back() == '\n') doc.back() = ' ';
      absl::StrAppend(&doc, line, "\n");
      continue;
    }
    if (books.empty() || books.back().name != book) {
      for (const Document& seen : books) {
        if (seen.name == book) {
          return absl::InternalError(
              absl::StrCat("`bible` output returns to book '", book, "' at line ", line_number));
        }
      }
      books.push_back(Document{std::string(book), std::string()});
    }
    absl::StrAppend(&books.back().text, text, "\n");
  }
  return books;
}

absl::StatusOr<std::vector<Document>> LoadKjv(int64_t max_bytes) {
  const std::string command = absl::StrCat("bible -f \"", kKjvRange, "\" 2>/dev/null");
  std::unique_ptr<FILE, PipeCloser> pipe(popen(command.c_str(), "r"));
  if (pipe == nullptr) {
    return absl::InternalError(absl::StrCat("cannot run `", command, "`: ", std::strerror(errno)));
  }
  std::string output;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe.get())) > 0) output.append(buf, n);
  const int rc = pclose(pipe.release());
  if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
    const bool missing = rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 127;
    return absl::FailedPreconditionError(
        absl::StrCat("corpus 'kjv': ",
                     missing ? "the `bible` program (Debian package bible-kjv) is not installed"
                             : absl::StrCat("`", command, "` failed (wait status ", rc, ")"),
                     "; ", kInstallHint));
  }
  ASSIGN_OR_RETURN(std::vector<Document> books, ParseBibleOutput(output));
  if (books.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("corpus 'kjv': `", command, "` printed nothing; ", kInstallHint));
  }
  if (max_bytes > 0) {
    int64_t total = 0;
    size_t keep = 0;
    while (keep < books.size() && total < max_bytes) {
      total += static_cast<int64_t>(books[keep].text.size());
      ++keep;
    }
    books.resize(keep);
  }
  return books;
}

bool IsHidden(const fs::path& path) {
  const std::string name = path.filename().string();
  return !name.empty() && name[0] == '.';
}

// Reads `path` into `*text`. Returns false (and leaves `*text` unspecified) when the file holds a
// NUL byte or is not valid UTF-8; an unreadable file is an error.
absl::StatusOr<bool> ReadTextFile(const fs::path& path, std::string* text) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot open '", path.string(), "'"));
  }
  text->clear();
  char buf[kSniffBytes];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), file.get())) > 0) {
    if (std::memchr(buf, '\0', n) != nullptr) return false;
    text->append(buf, n);
  }
  if (std::ferror(file.get())) {
    return absl::DataLossError(absl::StrCat("error reading '", path.string(), "'"));
  }
  return IsValidUtf8(*text);
}

// Lists the regular files under `root` (recursively, hidden entries and directories for which
// `skip_dir(name)` is true left out, only files for which `keep_file(name)` is true), as
// (path relative to root, full path), sorted by the relative path.
absl::StatusOr<std::vector<std::pair<std::string, fs::path>>> ListFiles(
    const fs::path& root, const std::function<bool(const std::string&)>& skip_dir,
    const std::function<bool(const std::string&)>& keep_file) {
  std::vector<std::pair<std::string, fs::path>> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot list '", root.string(), "': ", ec.message()));
  }
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      return absl::InternalError(
          absl::StrCat("error walking '", root.string(), "': ", ec.message()));
    }
    const fs::directory_entry& entry = *it;
    const std::string name = entry.path().filename().string();
    std::error_code type_ec;
    const bool is_symlink = entry.is_symlink(type_ec);
    const bool is_dir = entry.is_directory(type_ec);  // Follows symlinks.
    if (IsHidden(entry.path()) || (is_dir && !is_symlink && skip_dir(name))) {
      if (is_dir && !is_symlink) it.disable_recursion_pending();
      continue;
    }
    if (is_dir || !entry.is_regular_file(type_ec) || !keep_file(name)) continue;
    files.emplace_back(entry.path().lexically_relative(root).generic_string(), entry.path());
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("error walking '", root.string(), "': ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Loads the text files under `root` as documents (see LoadCorpus).
absl::StatusOr<std::vector<Document>> LoadDirectory(
    const fs::path& root, int64_t max_bytes,
    const std::function<bool(const std::string&)>& skip_dir,
    const std::function<bool(const std::string&)>& keep_file) {
  ASSIGN_OR_RETURN(auto files, ListFiles(root, skip_dir, keep_file));
  std::vector<Document> docs;
  int64_t total = 0;
  int64_t skipped = 0;
  for (const auto& [relative, path] : files) {
    if (max_bytes > 0 && total >= max_bytes) break;
    Document doc{relative, std::string()};
    ASSIGN_OR_RETURN(const bool is_text, ReadTextFile(path, &doc.text));
    if (!is_text) {
      ++skipped;
      continue;
    }
    total += static_cast<int64_t>(doc.text.size());
    docs.push_back(std::move(doc));
  }
  BS_LOG(INFO) << "corpus '" << root.string() << "': " << docs.size() << " documents, " << total
               << " bytes; skipped " << skipped << " binary or non-UTF-8 files";
  return docs;
}

}  // namespace

absl::StatusOr<std::vector<Document>> LoadCorpus(const std::string& spec, int64_t max_bytes) {
  std::vector<Document> docs;
  if (spec == "kjv") {
    ASSIGN_OR_RETURN(docs, LoadKjv(max_bytes));
  } else if (spec == "python") {
    std::error_code ec;
    if (!fs::is_directory(kPythonStdlibDir, ec)) {
      return absl::FailedPreconditionError(
          absl::StrCat("corpus 'python': directory ", kPythonStdlibDir,
                       " not found (Debian package python3.11); ", kInstallHint));
    }
    ASSIGN_OR_RETURN(
        docs, LoadDirectory(
                  kPythonStdlibDir, max_bytes,
                  [](const std::string& dir) {
                    return dir == "site-packages" || dir == "dist-packages" || dir == "__pycache__";
                  },
                  [](const std::string& file) {
                    return file.size() > 3 && file.compare(file.size() - 3, 3, ".py") == 0;
                  }));
  } else {
    std::error_code ec;
    const fs::path path(spec);
    const fs::file_status status = fs::status(path, ec);
    if (spec.empty() || !fs::exists(status)) {
      return absl::NotFoundError(absl::StrCat(
          "corpus '", spec, "': no such file or directory (expected 'kjv', 'python' or a path)"));
    }
    if (fs::is_directory(status)) {
      ASSIGN_OR_RETURN(docs, LoadDirectory(
                                 path, max_bytes, [](const std::string&) { return false; },
                                 [](const std::string&) { return true; }));
    } else if (fs::is_regular_file(status)) {
      Document doc{spec, std::string()};
      ASSIGN_OR_RETURN(const bool is_text, ReadTextFile(path, &doc.text));
      if (!is_text) {
        return absl::InvalidArgumentError(
            absl::StrCat("corpus '", spec,
                         "': the file is not UTF-8 text (it has a NUL byte or invalid UTF-8)"));
      }
      docs.push_back(std::move(doc));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("corpus '", spec, "': not a regular file or directory"));
    }
  }
  if (docs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("corpus '", spec, "' has no text documents"));
  }
  return docs;
}

CorpusSplit SplitCorpus(std::vector<Document> docs, double heldout_fraction, uint64_t seed) {
  const size_t n = docs.size();
  size_t num_heldout = 0;
  if (n >= 2 && heldout_fraction > 0) {  // False for NaN.
    const double wanted = std::round(heldout_fraction * static_cast<double>(n));
    num_heldout = wanted >= static_cast<double>(n - 1)
                      ? n - 1
                      : std::max<size_t>(1, static_cast<size_t>(wanted));
  }
  // Partial Fisher-Yates: the first num_heldout entries of `order` are a uniform random subset.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < num_heldout; ++i) {
    const size_t j = i + static_cast<size_t>(UniformBelow(rng, n - i));
    std::swap(order[i], order[j]);
  }
  std::vector<bool> heldout(n, false);
  for (size_t i = 0; i < num_heldout; ++i) heldout[order[i]] = true;
  CorpusSplit split;
  split.heldout.reserve(num_heldout);
  split.train.reserve(n - num_heldout);
  for (size_t i = 0; i < n; ++i) {
    (heldout[i] ? split.heldout : split.train).push_back(std::move(docs[i]));
  }
  return split;
}

}  // namespace blockserve::trainer
