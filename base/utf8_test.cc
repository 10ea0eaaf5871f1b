// Tests for base/utf8.h: table tests plus exhaustive and randomized cross-checks.
#include "base/utf8.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve {
namespace {

// "R" in the expectations below.
const std::string kR(kUtf8ReplacementChar);

// Independent reference validator: decodes the code point arithmetically and checks minimality,
// the surrogate gap and the U+10FFFF ceiling (instead of the implementation's byte ranges).
bool ReferenceIsValid(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t j = 1; j < len; ++j) {
      const uint8_t c = static_cast<uint8_t>(s[i + j]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Encodes any value below 2^21 with the generic UTF-8 bit layout (also surrogates).
std::string EncodeCodePoint(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

struct ValidityCase {
  const char* name;
  std::string text;
  bool valid;
};

TEST(Utf8Test, IsValidUtf8Table) {
  const std::vector<ValidityCase> cases = {
      {"empty", "", true},
      {"ascii", "In the beginning", true},
      {"embedded NUL", std::string("a\0b", 3), true},
      {"e acute", "caf\xC3\xA9", true},
      {"CJK", "\xE6\x97\xA5\xE6\x9C\xAC", true},
      {"emoji", "\xF0\x9F\x98\x80", true},
      {"U+0080", "\xC2\x80", true},
      {"U+07FF", "\xDF\xBF", true},
      {"U+0800", "\xE0\xA0\x80", true},
      {"U+D7FF", "\xED\x9F\xBF", true},
      {"U+E000", "\xEE\x80\x80", true},
      {"U+FFFF", "\xEF\xBF\xBF", true},
      {"U+10000", "\xF0\x90\x80\x80", true},
      {"U+10FFFF", "\xF4\x8F\xBF\xBF", true},
      {"0xFF", "\xFF", false},
      {"0xFF 0xFE", "\xFF\xFE", false},
      {"stray continuation", std::string("a\x80") + "b", false},
      {"overlong NUL", "\xC0\x80", false},
      {"overlong slash", "\xC0\xAF", false},
      {"overlong C1", "\xC1\xBF", false},
      {"overlong 3-byte", "\xE0\x80\xAF", false},
      {"overlong 3-byte max", "\xE0\x9F\xBF", false},
      {"overlong 4-byte", "\xF0\x80\x80\xAF", false},
      {"overlong 4-byte max", "\xF0\x8F\xBF\xBF", false},
      {"high surrogate", "\xED\xA0\x80", false},
      {"low surrogate", "\xED\xBF\xBF", false},
      {"above U+10FFFF", "\xF4\x90\x80\x80", false},
      {"F5 lead", "\xF5\x80\x80\x80", false},
      {"truncated 2-byte", "\xC3", false},
      {"truncated 3-byte", "\xE6\x97", false},
      {"truncated 3-byte then ascii", std::string("\xE6\x97") + "a", false},
      {"truncated 4-byte", "\xF0\x9F\x98", false},
      {"too many continuations", "\xC3\xA9\x80", false},
  };
  for (const ValidityCase& c : cases) {
    EXPECT_EQ(IsValidUtf8(c.text), c.valid) << c.name;
    EXPECT_EQ(ReferenceIsValid(c.text), c.valid) << "reference disagrees with table: " << c.name;
  }
}

TEST(Utf8Test, EveryScalarValueIsValidAndEverySurrogateIsNot) {
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    ASSERT_EQ(IsValidUtf8(EncodeCodePoint(cp)), !surrogate) << "U+" << std::hex << cp;
  }
  for (uint32_t cp = 0x110000; cp < 0x200000; cp += 0x1111) {
    ASSERT_FALSE(IsValidUtf8(EncodeCodePoint(cp))) << "U+" << std::hex << cp;
  }
}

TEST(Utf8Test, AllStringsUpToThreeBytesMatchReference) {
  std::string s;
  for (int a = 0; a < 256; ++a) {
    s.assign(1, static_cast<char>(a));
    ASSERT_EQ(IsValidUtf8(s), ReferenceIsValid(s)) << a;
    for (int b = 0; b < 256; ++b) {
      s.assign({static_cast<char>(a), static_cast<char>(b)});
      ASSERT_EQ(IsValidUtf8(s), ReferenceIsValid(s)) << a << " " << b;
      for (int c = 0; c < 256; ++c) {
        s.assign({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
        ASSERT_EQ(IsValidUtf8(s), ReferenceIsValid(s)) << a << " " << b << " " << c;
      }
    }
  }
}

struct SanitizeCase {
  const char* name;
  std::string input;
  std::string expected;
};

// Expected outputs agree with Python's bytes.decode("utf-8", "replace") (maximal subparts).
TEST(Utf8Test, SanitizeUtf8Table) {
  const std::vector<SanitizeCase> cases = {
      {"empty", "", ""},
      {"valid unchanged", "caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80",
       "caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80"},
      {"embedded NUL", std::string("a\0b", 3), std::string("a\0b", 3)},
      {"FF FE", "\xFF\xFE", kR + kR},
      {"truncated 3-byte", "\xE6\x97", kR},
      {"truncated 3-byte then ascii", std::string("\xE6\x97") + "a", kR + "a"},
      {"truncated 2-byte", "\xC3", kR},
      {"truncated 4-byte", "\xF0\x9F\x98", kR},
      {"truncated 4-byte then emoji", "\xF0\x9F\x98\xF0\x9F\x98\x80", kR + "\xF0\x9F\x98\x80"},
      {"overlong slash", "\xC0\xAF", kR + kR},
      {"overlong C1", "\xC1\xBF", kR + kR},
      {"overlong 3-byte", "\xE0\x80\x80", kR + kR + kR},
      {"overlong 3-byte max", "\xE0\x9F\xBF", kR + kR + kR},
      {"overlong 4-byte", "\xF0\x8F\xBF\xBF", kR + kR + kR + kR},
      {"surrogate", "\xED\xA0\x80", kR + kR + kR},
      {"low surrogate", "\xED\xBF\xBF", kR + kR + kR},
      {"above U+10FFFF", "\xF4\x90\x80\x80", kR + kR + kR + kR},
      {"F5 lead", "\xF5\x80\x80\x80", kR + kR + kR + kR},
      {"stray continuation", std::string("a\x80") + "b", "a" + kR + "b"},
      {"continuation run", "\x80\x80\x80\x80\x80", kR + kR + kR + kR + kR},
      {"valid then truncated", "\xC3\xA9\xE6\x97", "\xC3\xA9" + kR},
      {"truncated, ascii, lead", std::string("\xF0\x9F\x98") + "a\xE6", kR + "a" + kR},
      {"lead then truncated", "\xE6\xE6\x97", kR + kR},
  };
  for (const SanitizeCase& c : cases) {
    const std::string out = SanitizeUtf8(c.input);
    EXPECT_EQ(out, c.expected) << c.name;
    EXPECT_TRUE(IsValidUtf8(out)) << c.name;
  }
}

struct PrefixCase {
  const char* name;
  std::string text;
  size_t expected;
};

TEST(Utf8Test, Utf8CompletePrefixLengthTable) {
  const std::vector<PrefixCase> cases = {
      {"empty", "", 0},
      {"ascii", "abc", 3},
      {"complete 2-byte", "\xC3\xA9", 2},
      {"cut 2-byte", "\xC3", 0},
      {"ascii then cut 2-byte", "a\xC3", 1},
      {"complete 3-byte", "\xE6\x97\xA5", 3},
      {"cut 3-byte after 1", "a\xE6", 1},
      {"cut 3-byte after 2", "a\xE6\x97", 1},
      {"complete 4-byte", "\xF0\x9F\x98\x80", 4},
      {"cut 4-byte after 1", "a\xF0", 1},
      {"cut 4-byte after 2", "a\xF0\x9F", 1},
      {"cut 4-byte after 3", "a\xF0\x9F\x98", 1},
      {"two chars then cut", "\xE6\x97\xA5\xE6\x9C", 3},
      {"E0 with valid second byte", "x\xE0\xA0", 1},
      {"F4 with valid second byte", "x\xF4\x8F", 1},
      // Tails that can never be completed are not held back.
      {"FF", "a\xFF", 2},
      {"stray continuation", "a\x80", 2},
      {"C0 lead", "a\xC0", 2},
      {"F5 lead", "a\xF5", 2},
      {"overlong 3-byte prefix", "a\xE0\x80", 3},
      {"surrogate prefix", "a\xED\xA0", 3},
      {"above U+10FFFF prefix", "a\xF4\x90", 3},
      {"overlong 4-byte prefix", "a\xF0\x80", 3},
      {"continuations only", "\x80\x80\x80", 3},
      {"extra continuation after complete", "\xE6\x97\xA5\x80", 4},
      {"lead after invalid byte", "\xFF\xE6\x97", 1},
  };
  for (const PrefixCase& c : cases) {
    EXPECT_EQ(Utf8CompletePrefixLength(c.text), c.expected) << c.name;
  }
}

TEST(Utf8Test, CompletePrefixOfValidTextIsLastCharBoundary) {
  const std::string text = "a\xC3\xA9\xE6\x97\xA5 \xF0\x9F\x98\x80\xF4\x8F\xBF\xBFz\xC2\x80";
  std::vector<size_t> boundaries = {0};
  for (size_t i = 1; i <= text.size(); ++i) {
    const bool continuation = i < text.size() && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80;
    if (!continuation) boundaries.push_back(i);
  }
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    size_t expected = 0;
    for (size_t b : boundaries) {
      if (b <= cut) expected = b;
    }
    EXPECT_EQ(Utf8CompletePrefixLength(text.substr(0, cut)), expected) << "cut at " << cut;
  }
}

// Bytes that exercise every branch of the decoder.
constexpr uint8_t kInterestingBytes[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                         0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE6,
                                         0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF};

std::string RandomBytes(std::mt19937& rng, size_t max_len) {
  std::uniform_int_distribution<size_t> len_dist(0, max_len);
  std::uniform_int_distribution<size_t> byte_dist(0, sizeof(kInterestingBytes) - 1);
  std::string s(len_dist(rng), '\0');
  for (char& c : s) c = static_cast<char>(kInterestingBytes[byte_dist(rng)]);
  return s;
}

TEST(Utf8Test, SanitizeProperties) {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 20000; ++iter) {
    const std::string s = RandomBytes(rng, 12);
    const std::string out = SanitizeUtf8(s);
    ASSERT_TRUE(IsValidUtf8(out));
    ASSERT_EQ(IsValidUtf8(s), ReferenceIsValid(s));
    if (IsValidUtf8(s)) {
      ASSERT_EQ(out, s);
    }
    ASSERT_EQ(SanitizeUtf8(out), out);
  }
}

// Sanitizing a byte stream chunk by chunk, holding back incomplete tails, equals sanitizing the
// whole stream at once: the property streaming detokenization relies on.
TEST(Utf8Test, StreamingWithCompletePrefixMatchesWholeSanitize) {
  std::mt19937 rng(99);
  for (int iter = 0; iter < 20000; ++iter) {
    const std::string stream = RandomBytes(rng, 16);
    std::string pending;
    std::string emitted;
    size_t pos = 0;
    while (pos < stream.size()) {
      const size_t chunk = std::uniform_int_distribution<size_t>(1, 4)(rng);
      pending += stream.substr(pos, chunk);
      pos += chunk;
      const size_t n = Utf8CompletePrefixLength(pending);
      ASSERT_GE(n + 3, pending.size());
      emitted += SanitizeUtf8(absl::string_view(pending).substr(0, n));
      pending.erase(0, n);
    }
    emitted += SanitizeUtf8(pending);  // End of stream: flush whatever is left.
    ASSERT_EQ(emitted, SanitizeUtf8(stream));
  }
}

}  // namespace
}  // namespace blockserve
