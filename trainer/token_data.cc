// Tokenizer training on a corpus, parallel document encoding and the SegmentStream batcher.
#include "trainer/token_data.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/logging.h"
#include "base/status.h"

namespace blockserve::trainer {
namespace {

namespace fs = std::filesystem;

// Longest line written to the tokenizer training file, in bytes.
constexpr size_t kMaxTrainingLine = 4096;
// sentencepiece training threads. Fixed rather than taken from the machine: the unigram EM sums
// per-thread statistics, so the thread count could change the model's last bits.
constexpr int kTrainThreads = 8;
constexpr absl::string_view kStateHeader = "SegmentStream/1";

// Removes the listed files when destroyed (temporary files on every return path).
class FileRemover {
 public:
  explicit FileRemover(std::vector<std::string> paths) : paths_(std::move(paths)) {}
  ~FileRemover() {
    for (const std::string& path : paths_) {
      std::error_code ec;
      fs::remove(path, ec);
    }
  }
  FileRemover(const FileRemover&) = delete;
  FileRemover& operator=(const FileRemover&) = delete;

 private:
  std::vector<std::string> paths_;
};

// Writes `line` (no '\n' inside) as one or more lines of at most kMaxTrainingLine bytes, cut at
// the last space of the second half of a window when there is one (the space is dropped), else
// at a UTF-8 character boundary. Returns the number of lines written.
int64_t WriteTrainingLine(absl::string_view line, FILE* out) {
  int64_t lines = 0;
  while (!line.empty()) {
    size_t cut = line.size();
    size_t skip = 0;
    if (line.size() > kMaxTrainingLine) {
      const size_t space = line.rfind(' ', kMaxTrainingLine);
      if (space != absl::string_view::npos && space >= kMaxTrainingLine / 2) {
        cut = space;
        skip = 1;
      } else {
        cut = kMaxTrainingLine;
        while (cut > kMaxTrainingLine - 4 &&
               (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) {
          --cut;
        }
      }
    }
    std::fwrite(line.data(), 1, cut, out);
    std::fputc('\n', out);
    ++lines;
    line.remove_prefix(cut + skip);
  }
  return lines;
}

// splitmix64's finalizer: a bijective 64-bit mix.
uint64_t Mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// An unbiased integer in [0, bound) from `rng` (bound > 0), identical on every standard library.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound.
  while (true) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

// Parses "<key><integer>" into `*value`.
bool ParseField(absl::string_view field, absl::string_view key, int64_t* value) {
  return absl::ConsumePrefix(&field, key) && absl::SimpleAtoi(field, value);
}

uint64_t HashLengths(const std::vector<std::vector<int32_t>>& docs) {
  uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a over the 64-bit lengths.
  for (const std::vector<int32_t>& d : docs) {
    uint64_t len = d.size();
    for (int i = 0; i < 8; ++i) {
      h = (h ^ (len & 0xFF)) * 0x100000001B3ULL;
      len >>= 8;
    }
  }
  return h;
}

}  // namespace

absl::Status TrainCorpusTokenizer(const std::vector<Document>& docs, int vocab_size,
                                  const std::string& model_path, int64_t max_sentences) {
  if (model_path.empty()) {
    return absl::InvalidArgumentError("TrainCorpusTokenizer: empty model_path");
  }
  const std::string stem = absl::StrCat(model_path, ".tmp", getpid());
  const std::string text_path = stem + ".txt";
  const std::string prefix = stem + "-spm";
  FileRemover remover({text_path, prefix + ".model", prefix + ".vocab"});

  std::unique_ptr<FILE, int (*)(FILE*)> out(std::fopen(text_path.c_str(), "wb"), &std::fclose);
  if (out == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("TrainCorpusTokenizer: cannot create '",
                                                   text_path, "' next to the model path"));
  }
  int64_t num_lines = 0;
  for (const Document& doc : docs) {
    for (absl::string_view line : absl::StrSplit(doc.text, '\n', absl::SkipEmpty())) {
      num_lines += WriteTrainingLine(line, out.get());
    }
  }
  const bool write_failed = std::ferror(out.get()) != 0;
  if (std::fclose(out.release()) != 0 || write_failed) {
    return absl::DataLossError(
        absl::StrCat("TrainCorpusTokenizer: error writing '", text_path, "'"));
  }
  if (num_lines == 0) {
    return absl::InvalidArgumentError("TrainCorpusTokenizer: the documents hold no text");
  }

  TokenizerTrainOptions options;
  options.input_files = {text_path};
  options.model_prefix = prefix;
  options.vocab_size = vocab_size;
  options.model_type = "unigram";
  options.byte_fallback = true;
  options.input_sentence_size = max_sentences > 0 && num_lines > max_sentences ? max_sentences : 0;
  options.num_threads = kTrainThreads;
  BS_LOG(INFO) << "training a " << vocab_size << "-piece tokenizer on " << docs.size()
               << " documents (" << num_lines << " lines"
               << (options.input_sentence_size > 0
                       ? absl::StrCat(", sampling ", options.input_sentence_size)
                       : std::string())
               << ")";
  RETURN_IF_ERROR(Annotate(TrainTokenizer(options), "TrainCorpusTokenizer"));
  std::error_code ec;
  fs::rename(prefix + ".model", model_path, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("TrainCorpusTokenizer: cannot move ", prefix,
                                            ".model to '", model_path, "': ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeDocuments(const Tokenizer& tok,
                                                                  const std::vector<Document>& docs,
                                                                  ThreadPool* pool) {
  const int32_t bos = tok.bos_id();
  const int32_t eos = tok.eos_id();
  if (bos < 0 || eos < 0) {
    return absl::FailedPreconditionError("EncodeDocuments: the tokenizer has no BOS or EOS id");
  }
  std::vector<std::vector<int32_t>> encoded(docs.size());
  std::vector<absl::Status> errors(docs.size());
  auto encode = [&](size_t i) {
    absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(docs[i].text);
    if (!ids.ok()) {
      errors[i] = ids.status();
      return;
    }
    std::vector<int32_t>& row = encoded[i];
    row.reserve(ids->size() + 2);
    row.push_back(bos);
    row.insert(row.end(), ids->begin(), ids->end());
    row.push_back(eos);
  };
  if (pool == nullptr || docs.size() < 2) {
    for (size_t i = 0; i < docs.size(); ++i) encode(i);
  } else {
    // Documents vary a lot in size, so workers pull them one at a time instead of taking fixed
    // ranges.
    std::atomic<size_t> next{0};
    pool->ParallelFor(pool->num_threads() + 1, 1, [&](int64_t begin, int64_t end) {
      for (size_t i = next.fetch_add(1); i < docs.size(); i = next.fetch_add(1)) encode(i);
    });
  }
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!errors[i].ok()) {
      return Annotate(errors[i],
                      absl::StrCat("EncodeDocuments: document ", i, " ('", docs[i].name, "')"));
    }
  }
  return encoded;
}

// ---------------------------------------------------------------------------------------------
// SegmentStream

absl::StatusOr<SegmentStream> SegmentStream::Create(const std::vector<std::vector<int32_t>>* docs,
                                                    int global_slots, int first_slot,
                                                    int local_slots, int segment_length,
                                                    uint64_t seed, bool loop) {
  if (docs == nullptr) return absl::InvalidArgumentError("SegmentStream: docs is null");
  if (docs->size() >= std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SegmentStream: too many documents (", docs->size(), ")"));
  }
  if (global_slots < 1 || local_slots < 1 || first_slot < 0 ||
      first_slot > global_slots - local_slots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SegmentStream: local slots [", first_slot, ", ", int64_t{first_slot} + local_slots,
        ") must be a non-empty range inside the ", global_slots, " global slots"));
  }
  if (segment_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SegmentStream: segment_length ", segment_length, " must be positive"));
  }
  if (loop && std::all_of(docs->begin(), docs->end(),
                          [](const std::vector<int32_t>& d) { return d.empty(); })) {
    return absl::InvalidArgumentError(
        "SegmentStream: loop = true needs at least one non-empty document");
  }
  return SegmentStream(docs, global_slots, first_slot, local_slots, segment_length, seed, loop);
}

SegmentStream::SegmentStream(const std::vector<std::vector<int32_t>>* docs, int global_slots,
                             int first_slot, int local_slots, int segment_length, uint64_t seed,
                             bool loop)
    : docs_(docs),
      global_slots_(global_slots),
      first_slot_(first_slot),
      local_slots_(local_slots),
      segment_length_(segment_length),
      seed_(seed),
      loop_(loop),
      lengths_hash_(HashLengths(*docs)),
      slots_(local_slots) {
  for (int i = 0; i < local_slots_; ++i) Seek(i, 0);
  TrimPermutations();
}

int64_t SegmentStream::OrderItem(int64_t item) {
  const int64_t n = static_cast<int64_t>(docs_->size());
  if (!loop_) return item < n ? item : -1;
  const int64_t epoch = item / n;
  auto it = permutations_.find(epoch);
  if (it == permutations_.end()) {
    std::vector<uint32_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
    std::mt19937_64 rng(Mix64(seed_ ^ Mix64(static_cast<uint64_t>(epoch))));
    for (int64_t i = n - 1; i > 0; --i) {
      std::swap(order[i], order[UniformBelow(rng, static_cast<uint64_t>(i) + 1)]);
    }
    it = permutations_.emplace(epoch, std::move(order)).first;
  }
  return it->second[item % n];
}

void SegmentStream::Seek(int local, int64_t dealt) {
  Slot& slot = slots_[local];
  const int64_t g = first_slot_ + local;
  slot.offset = 0;
  for (;; ++dealt) {
    const int64_t doc = OrderItem(dealt * global_slots_ + g);
    if (doc < 0 || !(*docs_)[doc].empty()) {
      slot.dealt = dealt;
      slot.doc = doc;
      return;
    }
  }
}

void SegmentStream::TrimPermutations() {
  if (permutations_.empty()) return;
  const int64_t n = static_cast<int64_t>(docs_->size());
  int64_t min_epoch = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < local_slots_; ++i) {
    min_epoch = std::min(min_epoch, (slots_[i].dealt * global_slots_ + first_slot_ + i) / n);
  }
  permutations_.erase(permutations_.begin(), permutations_.lower_bound(min_epoch));
}

bool SegmentStream::Next(Batch* out) {
  const size_t n = static_cast<size_t>(segment_length_);
  out->inputs.assign(local_slots_ * n, 0);
  out->targets.assign(local_slots_ * n, 0);
  out->start.assign(local_slots_, 0);
  out->active.assign(local_slots_, 0);
  out->num_targets = 0;
  bool any_active = false;
  bool moved = false;
  for (int i = 0; i < local_slots_; ++i) {
    Slot& slot = slots_[i];
    if (slot.doc < 0) continue;
    any_active = true;
    const std::vector<int32_t>& d = (*docs_)[slot.doc];
    const size_t len = d.size();
    const size_t p = static_cast<size_t>(slot.offset);
    int32_t* inputs = out->inputs.data() + i * n;
    int32_t* targets = out->targets.data() + i * n;
    const size_t num_inputs = std::min(n, len - p);  // p < len always.
    const size_t num_targets = std::min(n, len - p - 1);
    std::copy_n(d.data() + p, num_inputs, inputs);
    std::copy_n(d.data() + p + 1, num_targets, targets);
    out->num_targets +=
        std::count_if(targets, targets + num_targets, [](int32_t t) { return t != 0; });
    out->start[i] = p == 0;
    out->active[i] = 1;
    slot.offset += segment_length_;
    if (static_cast<size_t>(slot.offset) + 1 >= len) {
      Seek(i, slot.dealt + 1);
      moved = true;
    }
  }
  if (moved) TrimPermutations();
  return any_active;
}

std::string SegmentStream::ParamsLine() const {
  return absl::StrFormat(
      "global_slots=%d first_slot=%d local_slots=%d segment_length=%d seed=%u loop=%d "
      "num_docs=%u doc_lengths_hash=%016x",
      global_slots_, first_slot_, local_slots_, segment_length_, seed_, loop_ ? 1 : 0,
      docs_->size(), lengths_hash_);
}

std::string SegmentStream::SaveState() const {
  std::string state = absl::StrCat(kStateHeader, "\n", ParamsLine(), "\n");
  for (int i = 0; i < local_slots_; ++i) {
    absl::StrAppend(&state, "slot=", first_slot_ + i, " dealt=", slots_[i].dealt,
                    " offset=", slots_[i].offset, "\n");
  }
  return state;
}

absl::Status SegmentStream::RestoreState(absl::string_view state) {
  auto error = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("SegmentStream::RestoreState: ", what));
  };
  std::vector<absl::string_view> lines = absl::StrSplit(state, '\n', absl::SkipEmpty());
  if (lines.empty() || lines[0] != kStateHeader) {
    return error(
        absl::StrCat("not a SegmentStream state (expected a first line '", kStateHeader, "')"));
  }
  if (lines.size() != 2 + static_cast<size_t>(local_slots_)) {
    return error(absl::StrCat("the state has ", static_cast<int64_t>(lines.size()) - 2,
                              " slot lines; this stream has ", local_slots_, " local slots"));
  }
  // The parameter line must match field by field; report the first difference.
  const std::vector<absl::string_view> saved = absl::StrSplit(lines[1], ' ');
  const std::string own_line = ParamsLine();
  const std::vector<absl::string_view> own = absl::StrSplit(own_line, ' ');
  for (size_t f = 0; f < std::max(saved.size(), own.size()); ++f) {
    const absl::string_view a = f < saved.size() ? saved[f] : absl::string_view("(missing)");
    const absl::string_view b = f < own.size() ? own[f] : absl::string_view("(missing)");
    if (a != b) {
      return error(absl::StrCat("the state was saved by a different stream: it has '", a,
                                "' where this stream has '", b, "'"));
    }
  }
  // Parse every slot before changing anything.
  std::vector<std::pair<int64_t, int64_t>> positions;  // (dealt, offset) per local slot.
  for (int i = 0; i < local_slots_; ++i) {
    const absl::string_view line = lines[2 + i];
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    int64_t slot = -1, dealt = -1, offset = -1;
    if (fields.size() != 3 || !ParseField(fields[0], "slot=", &slot) ||
        !ParseField(fields[1], "dealt=", &dealt) || !ParseField(fields[2], "offset=", &offset)) {
      return error(absl::StrCat("malformed slot line '", line, "'"));
    }
    const int64_t max_dealt = std::numeric_limits<int64_t>::max() / 2 / global_slots_;
    if (slot != first_slot_ + i || dealt < 0 || dealt > max_dealt || offset < 0 ||
        offset % segment_length_ != 0) {
      return error(absl::StrCat("invalid slot line '", line, "' (expected slot ", first_slot_ + i,
                                ", dealt >= 0, offset a multiple of ", segment_length_, ")"));
    }
    positions.emplace_back(dealt, offset);
  }
  // Keep the old position so that the stream is unchanged if a saved one turns out invalid.
  std::vector<Slot> previous = slots_;
  for (int i = 0; i < local_slots_; ++i) {
    Seek(i, positions[i].first);
    Slot& slot = slots_[i];
    const int64_t offset = positions[i].second;
    // Seek skips empty documents, so a saved item that is one (or does not exist) moves `dealt`.
    bool ok = slot.dealt == positions[i].first;
    if (ok && slot.doc < 0) ok = offset == 0;
    if (ok && slot.doc >= 0) {
      ok = offset == 0 || offset + 1 < static_cast<int64_t>((*docs_)[slot.doc].size());
    }
    if (!ok) {
      slots_ = std::move(previous);
      TrimPermutations();
      return error(absl::StrCat("slot ", first_slot_ + i, " position (dealt ", positions[i].first,
                                ", offset ", positions[i].second, ") does not fit the documents"));
    }
    slot.offset = offset;
  }
  TrimPermutations();
  return absl::OkStatus();
}

}  // namespace blockserve::trainer
