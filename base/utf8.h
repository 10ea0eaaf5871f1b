// UTF-8 validation, U+FFFD sanitization and complete-prefix detection for streaming text.
#ifndef BLOCKSERVE_BASE_UTF8_H_
#define BLOCKSERVE_BASE_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace blockserve {

// The replacement character U+FFFD, UTF-8 encoded.
inline constexpr absl::string_view kUtf8ReplacementChar = "\xEF\xBF\xBD";

// Returns true if `text` is well-formed UTF-8 (RFC 3629): no overlong encodings, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated or stray continuation bytes.
bool IsValidUtf8(absl::string_view text);

// Returns `text` with every ill-formed sequence replaced by U+FFFD, following the Unicode
// "maximal subpart" practice (also used by WHATWG and Python's errors="replace"): a truncated but
// otherwise valid prefix of a multi-byte character becomes one U+FFFD; any other invalid byte
// becomes one U+FFFD each. Well-formed input is returned unchanged.
std::string SanitizeUtf8(absl::string_view text);

// Returns the length of the longest prefix of `text` that does not end inside an incomplete
// multi-byte sequence, i.e. `text.size()` minus the length of a trailing, still-completable
// prefix of a multi-byte character (0 to 3 bytes). Trailing bytes that can never become valid
// (stray continuation bytes, 0xC0/0xC1/0xF5..0xFF, bad second bytes) are not held back: more
// input cannot fix them. Intended for streaming detokenization: emit text[0, n) now, keep the
// rest until more bytes arrive.
size_t Utf8CompletePrefixLength(absl::string_view text);

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_UTF8_H_
