// StreamingEncoder: tokenizes text that arrives in arbitrary chunks, equal to one Encode call.
#ifndef BLOCKSERVE_BASE_STREAMING_ENCODER_H_
#define BLOCKSERVE_BASE_STREAMING_ENCODER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/tokenizer.h"

namespace blockserve {

// Tokenizes a long text pushed in chunks of any size (boundaries may fall inside a word or a
// UTF-8 character) while holding back only a short tail. The concatenation of the ids returned by
// all Push calls and the final Finish call equals `tokenizer->Encode(whole_text)` exactly, as long
// as no run of text without an ASCII space (' ') exceeds `max_pending_bytes` and the text is not
// so long that Encode itself loses float precision (several hundred KB; see "Very long texts").
//
// How: with split_by_whitespace (the sentencepiece default) no vocabulary piece contains the
// whitespace mark U+2581 except as its first character, so every segmentation of the text breaks
// right before each ' ' and the text before and after such a point are tokenized independently.
// The encoder commits the buffered text up to its last ' '. The first commit is encoded as is (it
// takes the dummy-prefix U+2581 that Encode adds to the whole text); later commits are encoded
// behind a sentinel character that no piece contains (a private-use code point, which byte
// fallback spells as bytes) and the sentinel's ids are dropped, which removes the dummy prefix.
//
// Requirements on the model, all met by models from TrainTokenizer with default options: no piece
// contains U+2581 after its first character (split_by_whitespace=true, no user-defined pieces
// with inner spaces; CheckTokenizer verifies this), whitespace is not folded
// (remove_extra_whitespaces=false) and the normalizer does not rewrite text across a space
// ("identity" normalization). Both unigram and BPE models qualify.
//
// Very long texts (unigram models): sentencepiece's Viterbi sums piece scores in float32 over the
// whole input, so one Encode call of a multi-megabyte text loses precision far into it and picks
// worse segmentations there (on the whole 4.4 MB KJV Bible with a 400-piece model, from about
// byte 575000 on; for 20 MB it even returns 0.35% more ids). No chunked encoder can reproduce that
// drift. This encoder restarts the sum at every commit, so its ids match Encode(whole_text) while
// Encode itself is precise (tested up to 522 KB) and beyond that are the better segmentation.
// They do not depend on the chunking for pushes of up to 64 KiB (tested on the whole Bible with
// 1 to 64 Ki byte chunks); pushes of ~1 MB can differ from that at a few near-ties.
//
// Long runs without a space: when the buffered text after its last ' ' exceeds
// `max_pending_bytes`, the encoder commits it anyway, at the last complete UTF-8 character (an
// incomplete trailing character, at most 3 bytes, stays buffered). The word that straddles that
// cut may then be segmented differently from Encode(whole_text), so exactness is NOT guaranteed
// for such text; the ids still decode to the same text (no space is inserted at the cut).
// Invariant after every successful Push: pending_bytes() <= max(max_pending_bytes, 3).
//
// Ill-formed UTF-8 is replaced by U+FFFD as in Tokenizer::Encode; cutting before an ASCII space
// does not change that replacement, so exactness holds for such input too.
//
// Shapes: input is a byte stream; output is a flat id sequence with no BOS/EOS.
// Thread safety: not thread-safe (Push/Finish mutate the buffer); use one encoder per stream.
// Distinct encoders may share one Tokenizer concurrently. The tokenizer must outlive the encoder.
class StreamingEncoder {
 public:
  explicit StreamingEncoder(const Tokenizer* tokenizer, size_t max_pending_bytes = 1 << 20);

  StreamingEncoder(const StreamingEncoder&) = delete;
  StreamingEncoder& operator=(const StreamingEncoder&) = delete;

  // Adds text; returns the ids that are now final (may be empty). On error the encoder is left
  // as it was before the call (the text is not buffered).
  absl::StatusOr<std::vector<int32_t>> Push(absl::string_view text);

  // End of text: returns the remaining ids and resets the encoder, which can then encode a new
  // text. On error the encoder keeps its buffered text.
  absl::StatusOr<std::vector<int32_t>> Finish();

  // Bytes buffered and not yet tokenized.
  size_t pending_bytes() const { return pending_.size(); }

  // Checks that `tokenizer`'s vocabulary allows exact streaming: no piece contains U+2581 after
  // its first character and none contains the sentinel. FailedPrecondition names the first
  // offending piece. Costs one IdToPiece call per vocabulary entry; call once per loaded model.
  // (The normalizer settings cannot be inspected through Tokenizer; see the class comment.)
  static absl::Status CheckTokenizer(const Tokenizer& tokenizer);

 private:
  // Encodes pending_[0, length) as the continuation of the text committed so far.
  absl::StatusOr<std::vector<int32_t>> EncodePrefix(size_t length);

  const Tokenizer* tokenizer_;
  size_t max_pending_bytes_;
  std::string pending_;
  // pending_[1, scanned_) holds no ' ' (so each Push scans only its own bytes).
  size_t scanned_ = 0;
  // True once some text of the current stream was committed: later commits continue it.
  bool started_ = false;
  // Ids of the sentinel alone (with its dummy prefix); computed on first use.
  std::vector<int32_t> sentinel_ids_;
  bool have_sentinel_ids_ = false;
};

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_STREAMING_ENCODER_H_
