// SentencePiece tokenizer (training and inference) behind a dlmopen'ed shim; see spm_shim.h.
#ifndef BLOCKSERVE_BASE_TOKENIZER_H_
#define BLOCKSERVE_BASE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

struct spm_shim_processor;

namespace blockserve {
namespace internal {
struct SpmShimApi;  // Function table of the loaded shim (tokenizer.cc).
}  // namespace internal

// Special ids every model trained by TrainTokenizer has. The BRT loss masks token id 0, so the
// padding id must be 0.
inline constexpr int32_t kPadId = 0;
inline constexpr int32_t kUnkId = 1;
inline constexpr int32_t kBosId = 2;
inline constexpr int32_t kEosId = 3;

// Bounds TrainTokenizer accepts for TokenizerTrainOptions::vocab_size.
inline constexpr int kMinVocabSize = 8;
inline constexpr int kMaxVocabSize = 1 << 20;

// Options for TrainTokenizer. The defaults give a model that round-trips every string exactly:
// byte fallback covers any character missing from the vocabulary, the "identity" normalizer does
// no NFKC folding and whitespace runs are kept.
struct TokenizerTrainOptions {
  // Plain-text training files, one sentence per line. Must exist; paths must not contain ','
  // (sentencepiece splits its input list on commas). Spaces are fine.
  std::vector<std::string> input_files;
  // Output prefix: training writes <model_prefix>.model and <model_prefix>.vocab. Its directory
  // must exist.
  std::string model_prefix;
  // Total pieces including the 4 special pieces and, with byte_fallback, the 256 byte pieces.
  int vocab_size = 8000;
  // "unigram", "bpe", "char" or "word".
  std::string model_type = "unigram";
  // Fraction of characters the vocabulary must cover, in [0.98, 1] (sentencepiece's range).
  double character_coverage = 0.9995;
  // Adds <0x00>..<0xFF> pieces so that unknown characters are encoded as bytes instead of <unk>.
  bool byte_fallback = true;
  // Number of sentences sampled uniformly for training: 0 = all sentences, else more than 100.
  // sentencepiece samples with a fixed internal seed, so training is deterministic (equal inputs
  // and options give equal pieces and scores); there is no seed to set.
  int64_t input_sentence_size = 0;
  // Longer sentences (in bytes) are skipped during training; at least 10.
  int max_sentence_length = 16384;
  // Training threads, 1 to 128.
  int num_threads = 2;
  // sentencepiece normalization rule: "identity" (exact round trip), "nmt_nfkc", "nfkc", ...
  std::string normalization_rule_name = "identity";
  // sentencepiece collapses/strips whitespace runs when true; false keeps the text byte-exact.
  bool remove_extra_whitespaces = false;
  // When false, sentencepiece's INFO logging is suppressed (warnings and errors still print).
  bool verbose = false;
};

// Trains a SentencePiece model with pad=0, unk=1, bos=2, eos=3 and writes
// <model_prefix>.model and <model_prefix>.vocab. Invalid options give InvalidArgument; a missing
// shim library gives FailedPrecondition. Training calls are serialized process-wide.
absl::Status TrainTokenizer(const TokenizerTrainOptions& options);

// A loaded SentencePiece model.
//
// Thread safety: all methods are const and may be called concurrently from any number of threads
// (sentencepiece processors are immutable after loading and safe for concurrent Encode/Decode).
class Tokenizer {
 public:
  // Loads a .model file written by TrainTokenizer (or any SentencePiece model).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);
  // Loads a model from the bytes of a .model file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromSerialized(absl::string_view bytes);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  ~Tokenizer();

  // Encodes `text` (no BOS/EOS added). Ill-formed UTF-8 is first replaced with U+FFFD
  // (SanitizeUtf8), so any byte string is accepted.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const;

  // Decodes `ids`; control pieces (pad, bos, eos) decode to nothing and unk to " \u2047 ". An id
  // outside [0, vocab_size()) is an InvalidArgument error. The result is always valid UTF-8:
  // sentencepiece turns every byte piece that does not complete a character into U+FFFD, so
  // decoding a stream prefix that ends inside a byte-fallback character shows U+FFFD. Streaming
  // code must hold such trailing byte pieces back (IsByte) rather than decode them alone.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

  // Returns the id of `piece`, or unk_id() when it is not in the vocabulary.
  int32_t PieceToId(absl::string_view piece) const;
  // Returns the piece of `id` ("▁" marks a word start); InvalidArgument when out of range.
  absl::StatusOr<std::string> IdToPiece(int32_t id) const;

  // Per-id properties; false for out-of-range ids.
  bool IsByte(int32_t id) const;
  bool IsControl(int32_t id) const;
  bool IsUnknown(int32_t id) const;

  int vocab_size() const { return vocab_size_; }
  // Special ids; -1 when the model defines none.
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }

 private:
  Tokenizer(const internal::SpmShimApi* shim, spm_shim_processor* processor);
  int32_t IdFlags(int32_t id) const;

  const internal::SpmShimApi* shim_;  // Process-lifetime table; never null.
  spm_shim_processor* processor_;     // Owned; freed through the shim.
  int vocab_size_ = 0;
  int32_t pad_id_ = -1;
  int32_t unk_id_ = -1;
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_TOKENIZER_H_
