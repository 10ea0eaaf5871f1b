// Training corpora as lists of text documents: KJV books, Python stdlib files, or files on disk.
#ifndef BLOCKSERVE_TRAINER_CORPUS_H_
#define BLOCKSERVE_TRAINER_CORPUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace blockserve::trainer {

// One document: the unit a SegmentStream slot reads from start to end.
// Thread safety: a plain value type.
struct Document {
  std::string name;  // "Ge", "json/decoder.py", "sub/notes.txt", ...
  std::string text;  // Valid UTF-8 without NUL bytes.
};

// Loads the documents named by `spec`:
//   "kjv"    The King James Bible (Debian package bible-kjv, through `bible -f`): one document per
//            book (66), in Bible order, named by the book abbreviation that `bible` prints ("Ge",
//            "Exo", ..., "Rev"). Each verse is one line ending in '\n', without its "Ge1:1 "
//            reference. A missing `bible` program is FailedPrecondition.
//   "python" The Python standard library sources of Debian's python3.11: every *.py file under
//            /usr/lib/python3.11 except site-packages/ and dist-packages/, one document per file,
//            named by the path relative to that directory and sorted by it. A missing directory
//            is FailedPrecondition.
//   else     A path. A regular file is one document named by `spec`. A directory is walked
//            recursively: regular files (symlinks to files are followed, symlinks to directories
//            are not), skipping hidden entries (name starting with '.') and files that contain a
//            NUL byte or are not valid UTF-8 (the number skipped is logged). Documents are named
//            by their path relative to the directory and sorted by it (byte order). A missing path
//            is NotFound. (To load a file or directory named "kjv" or "python", write "./kjv".)
// When `max_bytes` > 0, documents are added in order only while the total text size is below
// `max_bytes` (so the last one added may cross it). An empty result is InvalidArgument.
absl::StatusOr<std::vector<Document>> LoadCorpus(const std::string& spec, int64_t max_bytes = 0);

// A train / held-out partition of a corpus.
// Thread safety: a plain value type.
struct CorpusSplit {
  std::vector<Document> train;
  std::vector<Document> heldout;
};

// Moves round(heldout_fraction * n) documents, chosen pseudo-randomly from `seed`, to `heldout`
// and the rest to `train`; both keep the input order. The same (docs.size(), fraction, seed) always
// gives the same choice, on every platform. At least one document is held out when n >= 2 and
// heldout_fraction > 0, and never all of them (n == 1 keeps the document in `train`). A fraction
// <= 0 (or NaN) holds out nothing; a fraction >= 1 holds out all but one.
CorpusSplit SplitCorpus(std::vector<Document> docs, double heldout_fraction, uint64_t seed);

}  // namespace blockserve::trainer

#endif  // BLOCKSERVE_TRAINER_CORPUS_H_
