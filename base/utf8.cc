// UTF-8 helpers: a single table-free decoder step shared by validation, sanitization and prefixes.
#include "base/utf8.h"

#include <cstdint>

namespace blockserve {
namespace {

// Result of examining the sequence that starts at one position.
struct SequenceInfo {
  // Bytes the caller should advance: the whole character if `valid`, else the maximal subpart.
  size_t length;
  bool valid;
  // True if the sequence is a proper prefix of a valid character that the input cut short.
  bool truncated;
};

// text[pos, end) without the bounds check of substr() (callers guarantee pos <= size).
absl::string_view Tail(absl::string_view text, size_t pos) {
  return absl::string_view(text.data() + pos, text.size() - pos);
}

// Examines the UTF-8 sequence at the start of `text` (which must not be empty).
SequenceInfo ExamineSequence(absl::string_view text) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return {1, true, false};
  size_t need;
  uint8_t second_lo = 0x80;
  uint8_t second_hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 3;
    if (lead == 0xE0) second_lo = 0xA0;  // Excludes overlong 3-byte forms.
    if (lead == 0xED) second_hi = 0x9F;  // Excludes the surrogates U+D800..U+DFFF.
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 4;
    if (lead == 0xF0) second_lo = 0x90;  // Excludes overlong 4-byte forms.
    if (lead == 0xF4) second_hi = 0x8F;  // Excludes code points above U+10FFFF.
  } else {
    // Stray continuation byte, overlong 2-byte lead (0xC0, 0xC1) or 0xF5..0xFF.
    return {1, false, false};
  }
  size_t matched = 1;
  while (matched < need && matched < text.size()) {
    const uint8_t b = byte(matched);
    const uint8_t lo = matched == 1 ? second_lo : 0x80;
    const uint8_t hi = matched == 1 ? second_hi : 0xBF;
    if (b < lo || b > hi) break;
    ++matched;
  }
  if (matched == need) return {need, true, false};
  return {matched, false, matched == text.size()};
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (static_cast<uint8_t>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const SequenceInfo info = ExamineSequence(Tail(text, i));
    if (!info.valid) return false;
    i += info.length;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    // Copy the longest run of valid characters in one append.
    size_t run_end = i;
    SequenceInfo info{0, true, false};
    while (run_end < text.size()) {
      if (static_cast<uint8_t>(text[run_end]) < 0x80) {
        ++run_end;
        continue;
      }
      info = ExamineSequence(Tail(text, run_end));
      if (!info.valid) break;
      run_end += info.length;
    }
    out.append(text.data() + i, run_end - i);
    if (run_end == text.size()) break;
    out.append(kUtf8ReplacementChar.data(), kUtf8ReplacementChar.size());
    i = run_end + info.length;
  }
  return out;
}

size_t Utf8CompletePrefixLength(absl::string_view text) {
  const size_t n = text.size();
  // Step back over at most three trailing continuation bytes to the candidate lead byte.
  size_t start = n;
  while (start > 0 && n - start < 3 && (static_cast<uint8_t>(text[start - 1]) & 0xC0) == 0x80) {
    --start;
  }
  if (start == 0) return n;
  const size_t lead = start - 1;
  const SequenceInfo info = ExamineSequence(Tail(text, lead));
  if (info.truncated && lead + info.length == n) return lead;
  return n;
}

}  // namespace blockserve
