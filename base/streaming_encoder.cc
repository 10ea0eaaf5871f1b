// StreamingEncoder: commits buffered text up to its last space and encodes it behind a sentinel.
#include "base/streaming_encoder.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status.h"
#include "base/utf8.h"

namespace blockserve {
namespace {

// U+2581, the mark sentencepiece substitutes for ' ' (and adds as the dummy prefix).
constexpr absl::string_view kSpaceMark = "\xE2\x96\x81";
// U+E000 (private use): never in a vocabulary trained on ordinary text, so it is always its own
// segment (byte fallback or unk) and pieces on either side of it are independent.
constexpr absl::string_view kSentinel = "\xEE\x80\x80";

}  // namespace

StreamingEncoder::StreamingEncoder(const Tokenizer* tokenizer, size_t max_pending_bytes)
    : tokenizer_(tokenizer), max_pending_bytes_(max_pending_bytes) {}

absl::Status StreamingEncoder::CheckTokenizer(const Tokenizer& tokenizer) {
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.IsByte(id) || tokenizer.IsControl(id) || tokenizer.IsUnknown(id)) continue;
    ASSIGN_OR_RETURN(const std::string piece, tokenizer.IdToPiece(id));
    const absl::string_view view(piece);
    const size_t mark = view.find(kSpaceMark, 1);
    if (mark != absl::string_view::npos) {
      return absl::FailedPreconditionError(absl::StrCat(
          "StreamingEncoder: piece ", id, " '", piece,
          "' has U+2581 after its start (model not trained with split_by_whitespace?)"));
    }
    if (view.find(kSentinel) != absl::string_view::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat("StreamingEncoder: piece ", id, " contains the sentinel U+E000"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> StreamingEncoder::EncodePrefix(size_t length) {
  const absl::string_view text(pending_.data(), length);
  // The first commit starts the text, so Encode's dummy prefix belongs to it.
  if (!started_) return tokenizer_->Encode(text);
  if (!have_sentinel_ids_) {
    ASSIGN_OR_RETURN(sentinel_ids_, tokenizer_->Encode(kSentinel));
    have_sentinel_ids_ = true;
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(absl::StrCat(kSentinel, text)));
  if (ids.size() < sentinel_ids_.size() ||
      !std::equal(sentinel_ids_.begin(), sentinel_ids_.end(), ids.begin())) {
    return absl::InternalError(
        "StreamingEncoder: the sentinel U+E000 merged with the following text; the model is not "
        "suitable for streaming (see StreamingEncoder::CheckTokenizer)");
  }
  ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(sentinel_ids_.size()));
  return ids;
}

absl::StatusOr<std::vector<int32_t>> StreamingEncoder::Push(absl::string_view text) {
  const size_t old_size = pending_.size();
  pending_.append(text.data(), text.size());
  // Cut before the last ' ' at index >= 1 (a cut at 0 would commit nothing; for the first commit
  // it would also separate the dummy prefix from a leading space). Earlier bytes were scanned.
  size_t cut = 0;
  const size_t scan_from = std::max<size_t>(scanned_, 1);
  if (pending_.size() > scan_from) {
    const size_t space = absl::string_view(pending_).substr(scan_from).rfind(' ');
    if (space != absl::string_view::npos) cut = scan_from + space;
  }
  if (pending_.size() - cut > max_pending_bytes_) {
    // No space close enough to the end: commit all complete characters (not exact, see header).
    cut = std::max(cut, Utf8CompletePrefixLength(pending_));
  }
  if (cut == 0) {
    scanned_ = pending_.size();
    return std::vector<int32_t>();
  }
  absl::StatusOr<std::vector<int32_t>> ids = EncodePrefix(cut);
  if (!ids.ok()) {
    pending_.resize(old_size);
    return ids.status();
  }
  started_ = true;
  pending_.erase(0, cut);
  // The tail holds no ' ' after its first byte: the cut was at the last one, or past it.
  scanned_ = pending_.size();
  return ids;
}

absl::StatusOr<std::vector<int32_t>> StreamingEncoder::Finish() {
  std::vector<int32_t> ids;
  if (!pending_.empty()) {
    ASSIGN_OR_RETURN(ids, EncodePrefix(pending_.size()));
  }
  pending_.clear();
  scanned_ = 0;
  started_ = false;
  return ids;
}

}  // namespace blockserve
