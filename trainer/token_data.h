// Tokenized training data: tokenizer training on a corpus, document encoding, segment batching.
#ifndef BLOCKSERVE_TRAINER_TOKEN_DATA_H_
#define BLOCKSERVE_TRAINER_TOKEN_DATA_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/thread_pool.h"
#include "base/tokenizer.h"
#include "trainer/corpus.h"

namespace blockserve::trainer {

// Trains a byte-fallback unigram SentencePiece model of `vocab_size` pieces on `docs` and writes it
// to exactly `model_path` (replacing any file there). The documents are written one line per text
// line (empty lines dropped; lines over 4096 bytes split, preferably at a space, never inside a
// UTF-8 character) to a temporary file next to `model_path`; when there are more than
// `max_sentences` lines (and max_sentences > 0), sentencepiece samples `max_sentences` of them,
// which must then be more than 100. Temporary files are removed on success and on error.
// Deterministic: equal documents, vocab_size and max_sentences give the same pieces and scores
// (the file bytes may still differ: sentencepiece records the temporary training paths in it).
absl::Status TrainCorpusTokenizer(const std::vector<Document>& docs, int vocab_size,
                                  const std::string& model_path, int64_t max_sentences = 2000000);

// Encodes each document as [bos_id] + tok.Encode(text) + [eos_id]. Documents are spread over
// `pool` (nullptr: the calling thread only); the result is the same either way. The first failing
// document (in order) gives the error.
absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeDocuments(const Tokenizer& tok,
                                                                  const std::vector<Document>& docs,
                                                                  ThreadPool* pool);

// Document-sequential batching of token documents into fixed-length segments, as in meliad
// (spec-brt.md §3.1): each batch slot reads one document from start to end, one segment of N
// tokens per Next(), then moves on to its next document.
//
// Document order. With loop = true the stream is an endless sequence of epochs; epoch e is a
// permutation of all document indices drawn by Fisher-Yates from a std::mt19937_64 seeded with a
// mix of (seed, e) (no std:: distributions, so every standard library gives the same order). With
// loop = false there is a single epoch in the original order. The concatenated order is dealt
// round-robin to the G global slots: global slot g reads the order's items g, g+G, g+2G, ...; with
// loop = false a slot that runs out of documents becomes inactive. Empty documents are skipped.
// Since each global slot's sequence depends only on (docs, G, seed, loop), data-parallel
// processes that each own a range of slots together produce exactly the batches of one process
// owning all of them.
//
// Segments. A slot at document d, offset p (p = 0, N, 2N, ...) yields inputs[i] = d[p + i] and
// targets[i] = d[p + i + 1], both 0 (the pad id, ignored by the loss) past the document's end, and
// start = (p == 0). A document of length L therefore takes ceil((L - 1) / N) segments (one for
// L = 1); a segment never mixes two documents, and the tail of the last one is padding.
//
// Deviation from meliad: meliad's segments hold d[p .. p+N) and predict inside the segment only,
// so the first token of every segment has no loss (a 1-token gap per segment, spec-brt.md §5.6).
// Here the targets are shifted by one across the boundary: a segment's last position predicts the
// next segment's first input, so every token of a document except the first is a target exactly
// once and there is no gap.
//
// Thread safety: not thread-safe; use one stream per thread. The documents are not owned: they
// must outlive the stream and not change while it is used.
class SegmentStream {
 public:
  // One segment per local slot; row-major (slot, position) with N positions per slot.
  struct Batch {
    std::vector<int32_t> inputs;   // local_slots * N.
    std::vector<int32_t> targets;  // local_slots * N; 0 = padding (no loss).
    std::vector<uint8_t> start;    // local_slots: 1 when the row starts a new document (reset the
                                   // carried recurrent state and K/V cache).
    std::vector<uint8_t> active;   // local_slots: 0 for an exhausted slot (all-zero row).
    int64_t num_targets = 0;       // Number of targets != 0.
  };

  // Makes a stream over `docs` for the local slots [first_slot, first_slot + local_slots) of
  // `global_slots` slots, with segments of `segment_length` tokens. InvalidArgument for null or
  // too many (>= 2^32) documents, slot ranges outside [0, global_slots), segment_length < 1, or
  // loop = true with only empty documents.
  static absl::StatusOr<SegmentStream> Create(const std::vector<std::vector<int32_t>>* docs,
                                              int global_slots, int first_slot, int local_slots,
                                              int segment_length, uint64_t seed, bool loop);

  SegmentStream(SegmentStream&&) = default;
  SegmentStream& operator=(SegmentStream&&) = default;

  // Fills `out` with the next segment of every local slot. Returns false (with all rows inactive)
  // only when loop = false and every local slot has run out of documents.
  bool Next(Batch* out);

  // The stream's position as text; RestoreState on a stream made with the same arguments (and
  // documents of the same lengths) continues exactly where this one is.
  std::string SaveState() const;
  // Restores a SaveState() string. InvalidArgument, naming the field, when the state comes from a
  // stream with different parameters (global/first/local slots, segment length, seed, loop, number
  // or lengths of documents) or is malformed; the stream is unchanged on error.
  absl::Status RestoreState(absl::string_view state);

  int global_slots() const { return global_slots_; }
  int first_slot() const { return first_slot_; }
  int local_slots() const { return local_slots_; }
  int segment_length() const { return segment_length_; }

 private:
  // Position of one local slot.
  struct Slot {
    int64_t dealt = 0;   // This slot reads dealt item number `dealt` (0-based) of its sequence.
    int64_t doc = -1;    // Index into *docs_ of that item; -1 when inactive.
    int64_t offset = 0;  // Position of the next segment in the document.
  };

  SegmentStream(const std::vector<std::vector<int32_t>>* docs, int global_slots, int first_slot,
                int local_slots, int segment_length, uint64_t seed, bool loop);

  // The document at index `item` of the concatenated order, or -1 past its end (loop = false).
  int64_t OrderItem(int64_t item);
  // Sets slot `local` to the first non-empty document at or after its dealt item `dealt`.
  void Seek(int local, int64_t dealt);
  // Drops cached permutations of epochs no slot reads any more.
  void TrimPermutations();
  std::string ParamsLine() const;

  const std::vector<std::vector<int32_t>>* docs_;  // Not owned.
  int global_slots_;
  int first_slot_;
  int local_slots_;
  int segment_length_;
  uint64_t seed_;
  bool loop_;
  uint64_t lengths_hash_;  // Fingerprint of the document lengths, checked by RestoreState.
  std::vector<Slot> slots_;
  std::map<int64_t, std::vector<uint32_t>> permutations_;  // Epoch -> order (loop = true).
};

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_TOKEN_DATA_H_
