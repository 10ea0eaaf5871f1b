// Test helpers implementation.
#include "testing/test_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/file_io.h"
#include "base/status.h"
#include "base/tokenizer.h"

namespace blockserve::testing {
namespace {

std::mutex g_mu;
std::vector<std::string>* g_dirs = nullptr;

void RemoveDirs() {
  if (g_dirs == nullptr || std::getenv("BLOCKSERVE_KEEP_TEST_DIRS") != nullptr) return;
  for (const std::string& d : *g_dirs) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
}

}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = absl::StrCat(tmp != nullptr && tmp[0] ? tmp : "/tmp", "/", prefix, "_XXXXXX");
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_dirs == nullptr) {
    g_dirs = new std::vector<std::string>();
    std::atexit(&RemoveDirs);
  }
  g_dirs->push_back(buf.data());
  return buf.data();
}

absl::StatusOr<std::string> KjvText(const std::string& range) {
  const std::string cmd = absl::StrCat("bible -f \"", range, "\" 2>/dev/null");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return absl::FailedPreconditionError("cannot run `bible`");
  std::string text;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) text.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0 || text.size() < 1000) {
    return absl::FailedPreconditionError(absl::StrCat(
        "`", cmd, "` failed (rc ", rc, ", ", text.size(),
        " bytes): install the bible-kjv package (scripts/install-deps.sh)"));
  }
  return text;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  return WriteStringToFile(path, text);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) { return ReadFileToString(path); }

absl::StatusOr<std::string> SmallKjvTokenizer(int vocab_size) {
  static std::mutex mu;
  static std::map<int, std::string>* cache = new std::map<int, std::string>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(vocab_size);
  if (it != cache->end()) return it->second;
  const std::string dir = MakeTempDir("blockserve_tok");
  ASSIGN_OR_RETURN(std::string text, KjvText("Gen1:1-Gen50:26"));
  RETURN_IF_ERROR(WriteFile(dir + "/genesis.txt", text));
  TokenizerTrainOptions options;
  options.input_files = {dir + "/genesis.txt"};
  options.model_prefix = dir + "/tok";
  options.vocab_size = vocab_size;
  RETURN_IF_ERROR(TrainTokenizer(options));
  (*cache)[vocab_size] = dir + "/tok.model";
  return dir + "/tok.model";
}

const Tokenizer& TestTokenizer() {
  static const Tokenizer* tokenizer = [] {
    absl::StatusOr<std::string> path = SmallKjvTokenizer(400);
    BS_CHECK_MSG(path.ok(), "cannot train the test tokenizer");
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load(*path);
    BS_CHECK_MSG(t.ok(), "cannot load the test tokenizer");
    return t->release();
  }();
  return *tokenizer;
}

}  // namespace blockserve::testing
