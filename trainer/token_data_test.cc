// Tests for trainer/token_data.h: corpus tokenizer training, encoding and SegmentStream batching.
#include "trainer/token_data.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/thread_pool.h"
#include "base/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"
#include "trainer/corpus.h"

namespace blockserve::trainer {
namespace {

using ::testing::HasSubstr;
using Docs = std::vector<std::vector<int32_t>>;
using Batch = SegmentStream::Batch;

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ---------------------------------------------------------------------------------------------
// TrainCorpusTokenizer and EncodeDocuments

TEST(TrainCorpusTokenizerTest, TrainsEncodesAndCleansUp) {
  absl::StatusOr<std::vector<Document>> kjv = LoadCorpus("kjv", 200000);  // Genesis and Exodus.
  ASSERT_TRUE(kjv.ok()) << kjv.status();
  std::vector<Document> docs = *kjv;
  // A long line with spaces and a long one without (multi-byte characters) are split for training.
  std::string spaced, unspaced;
  for (int i = 0; i < 2000; ++i) spaced += "lorem ipsum ";
  for (int i = 0; i < 3000; ++i) unspaced += "\xC3\xA9";
  docs.push_back({"long", spaced + "\n" + unspaced + "\n"});

  const std::string dir = testing::MakeTempDir("tok_train");
  const std::string model = dir + "/kjv.model";
  ASSERT_TRUE(TrainCorpusTokenizer(docs, 600, model).ok());
  EXPECT_THAT(DirEntries(dir), ::testing::ElementsAre("kjv.model"));

  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::Load(model);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 600);

  absl::StatusOr<Docs> serial = EncodeDocuments(**tok, docs, nullptr);
  ASSERT_TRUE(serial.ok()) << serial.status();
  ThreadPool pool(3);
  absl::StatusOr<Docs> parallel = EncodeDocuments(**tok, docs, &pool);
  ASSERT_TRUE(parallel.ok()) << parallel.status();
  EXPECT_EQ(*serial, *parallel);
  ASSERT_EQ(serial->size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::vector<int32_t>& ids = (*serial)[i];
    ASSERT_GE(ids.size(), 3u);
    EXPECT_EQ(ids.front(), kBosId);
    EXPECT_EQ(ids.back(), kEosId);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), kPadId), 0);
    absl::StatusOr<std::string> text = (*tok)->Decode(ids);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, docs[i].text) << docs[i].name;  // Newlines round-trip (as bytes).
  }

  // Retraining with line sampling replaces the model in place; still nothing else left.
  ASSERT_TRUE(TrainCorpusTokenizer(docs, 500, model, /*max_sentences=*/1000).ok());
  EXPECT_THAT(DirEntries(dir), ::testing::ElementsAre("kjv.model"));
  tok = Tokenizer::Load(model);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 500);
}

TEST(TrainCorpusTokenizerTest, Deterministic) {
  absl::StatusOr<std::vector<Document>> kjv = LoadCorpus("kjv", 1);  // Genesis.
  ASSERT_TRUE(kjv.ok()) << kjv.status();
  const std::string dir = testing::MakeTempDir("tok_determinism");
  // Same path: byte-identical files.
  ASSERT_TRUE(TrainCorpusTokenizer(*kjv, 400, dir + "/a.model").ok());
  absl::StatusOr<std::string> first = testing::ReadFile(dir + "/a.model");
  ASSERT_TRUE(TrainCorpusTokenizer(*kjv, 400, dir + "/a.model").ok());
  absl::StatusOr<std::string> second = testing::ReadFile(dir + "/a.model");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_GT(first->size(), 1000u);
  EXPECT_TRUE(*first == *second);
  // Another path: the file records its training paths, but the pieces are the same.
  ASSERT_TRUE(TrainCorpusTokenizer(*kjv, 400, dir + "/b.model").ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> a = Tokenizer::Load(dir + "/a.model");
  absl::StatusOr<std::unique_ptr<Tokenizer>> b = Tokenizer::Load(dir + "/b.model");
  ASSERT_TRUE(a.ok() && b.ok());
  for (int32_t id = 0; id < 400; ++id) {
    ASSERT_EQ(*(*a)->IdToPiece(id), *(*b)->IdToPiece(id)) << id;
  }
}

TEST(TrainCorpusTokenizerTest, Errors) {
  const std::string dir = testing::MakeTempDir("tok_errors");
  const std::vector<Document> empty = {{"a", ""}, {"b", "\n\n"}};
  EXPECT_EQ(TrainCorpusTokenizer(empty, 300, dir + "/t.model").code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<Document> docs = {{"a", "some text\nmore text\n"}};
  EXPECT_EQ(TrainCorpusTokenizer(docs, 3, dir + "/t.model").code(),
            absl::StatusCode::kInvalidArgument);  // vocab_size below the minimum.
  EXPECT_TRUE(DirEntries(dir).empty());
  EXPECT_FALSE(TrainCorpusTokenizer(docs, 300, dir + "/no/such/dir/t.model").ok());
}

TEST(EncodeDocumentsTest, EmptyInputAndEmptyDocument) {
  absl::StatusOr<std::string> model = testing::SmallKjvTokenizer();
  ASSERT_TRUE(model.ok()) << model.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::Load(*model);
  ASSERT_TRUE(tok.ok()) << tok.status();
  absl::StatusOr<Docs> none = EncodeDocuments(**tok, {}, nullptr);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  absl::StatusOr<Docs> empty_doc =
      EncodeDocuments(**tok, std::vector<Document>{Document{"e", ""}}, nullptr);
  ASSERT_TRUE(empty_doc.ok());
  ASSERT_EQ(empty_doc->size(), 1u);
  EXPECT_EQ((*empty_doc)[0], (std::vector<int32_t>{kBosId, kEosId}));
}

// ---------------------------------------------------------------------------------------------
// SegmentStream

constexpr int kN = 4;

// Document i holds the tokens (i + 1) * 1000 + k, k = 0 .. length - 1 (never 0, the pad id).
Docs MakeDocs(const std::vector<int>& lengths) {
  Docs docs;
  for (size_t i = 0; i < lengths.size(); ++i) {
    std::vector<int32_t> d(lengths[i]);
    for (int k = 0; k < lengths[i]; ++k) d[k] = static_cast<int32_t>((i + 1) * 1000 + k);
    docs.push_back(std::move(d));
  }
  return docs;
}

int DocOf(int32_t token) { return token / 1000 - 1; }

// Lengths around the segment length: 1, N, N+1, 3N+5 and others, plus an empty document.
const std::vector<int> kLengths = {1, kN, kN + 1, 3 * kN + 5, 2, 9, 0, 3, 8, 6, 11, kN - 1};

SegmentStream MustCreate(const Docs* docs, int global_slots, int first_slot, int local_slots,
                         int segment_length, uint64_t seed, bool loop) {
  absl::StatusOr<SegmentStream> s = SegmentStream::Create(docs, global_slots, first_slot,
                                                          local_slots, segment_length, seed, loop);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(s).value();
}

// One row of a batch.
struct Row {
  std::vector<int32_t> inputs, targets;
  bool start = false;
  bool active = false;
  bool operator==(const Row& o) const {
    return inputs == o.inputs && targets == o.targets && start == o.start && active == o.active;
  }
};

Row RowOf(const Batch& b, int slot, int n) {
  Row r;
  r.inputs.assign(b.inputs.begin() + slot * n, b.inputs.begin() + (slot + 1) * n);
  r.targets.assign(b.targets.begin() + slot * n, b.targets.begin() + (slot + 1) * n);
  r.start = b.start[slot] != 0;
  r.active = b.active[slot] != 0;
  return r;
}

// Checks the shape and num_targets of `b`.
void CheckBatch(const Batch& b, int local_slots, int n) {
  ASSERT_EQ(b.inputs.size(), static_cast<size_t>(local_slots * n));
  ASSERT_EQ(b.targets.size(), static_cast<size_t>(local_slots * n));
  ASSERT_EQ(b.start.size(), static_cast<size_t>(local_slots));
  ASSERT_EQ(b.active.size(), static_cast<size_t>(local_slots));
  EXPECT_EQ(b.num_targets,
            std::count_if(b.targets.begin(), b.targets.end(), [](int32_t t) { return t != 0; }));
}

// Runs `stream` for up to `max_steps` batches (stopping after Next returns false) and returns
// the rows per local slot.
std::vector<std::vector<Row>> Collect(SegmentStream& stream, int max_steps, int* steps = nullptr) {
  std::vector<std::vector<Row>> rows(stream.local_slots());
  Batch b;
  int done = 0;
  for (; done < max_steps; ++done) {
    const bool more = stream.Next(&b);
    CheckBatch(b, stream.local_slots(), stream.segment_length());
    if (!more) {
      EXPECT_EQ(std::count(b.active.begin(), b.active.end(), 1), 0);
      break;
    }
    for (int s = 0; s < stream.local_slots(); ++s) {
      rows[s].push_back(RowOf(b, s, stream.segment_length()));
    }
  }
  if (steps != nullptr) *steps = done;
  return rows;
}

// The rows a slot reading `doc` must produce (the spec's formula, written out independently).
std::vector<Row> ExpectedRows(const std::vector<int32_t>& doc, int n) {
  std::vector<Row> rows;
  const int len = static_cast<int>(doc.size());
  for (int p = 0; p == 0 || p + 1 < len; p += n) {
    Row r;
    r.start = p == 0;
    r.active = true;
    for (int i = 0; i < n; ++i) {
      r.inputs.push_back(p + i < len ? doc[p + i] : 0);
      r.targets.push_back(p + i + 1 < len ? doc[p + i + 1] : 0);
    }
    rows.push_back(r);
  }
  return rows;
}

// The documents a slot read, rebuilt from its active rows: a start row opens a document with its
// first input, then every non-pad target is the next token.
Docs Reconstruct(const std::vector<Row>& rows) {
  Docs docs;
  for (const Row& r : rows) {
    if (!r.active) continue;
    if (r.start) docs.push_back({r.inputs[0]});
    EXPECT_FALSE(docs.empty()) << "first active row does not start a document";
    if (docs.empty()) continue;
    for (int32_t t : r.targets) {
      if (t != 0) docs.back().push_back(t);
    }
  }
  return docs;
}

// The document indices each global slot reads with loop = false: g, g + G, ... (empty skipped).
std::vector<int> SequentialOrder(const Docs& docs, int global_slots, int g) {
  std::vector<int> order;
  for (size_t i = g; i < docs.size(); i += global_slots) {
    if (!docs[i].empty()) order.push_back(static_cast<int>(i));
  }
  return order;
}

TEST(SegmentStreamTest, ReconstructsEveryDocumentWithoutLoop) {
  const Docs docs = MakeDocs(kLengths);
  constexpr int kG = 3;
  SegmentStream stream = MustCreate(&docs, kG, 0, kG, kN, 1, /*loop=*/false);
  int steps = 0;
  const std::vector<std::vector<Row>> rows = Collect(stream, 1000, &steps);
  ASSERT_LT(steps, 1000);
  for (int g = 0; g < kG; ++g) {
    const std::vector<int> order = SequentialOrder(docs, kG, g);
    // Exact rows, then all-zero inactive rows once the slot has run out.
    std::vector<Row> expected;
    Docs expected_docs;
    for (int d : order) {
      const std::vector<Row> r = ExpectedRows(docs[d], kN);
      expected.insert(expected.end(), r.begin(), r.end());
      expected_docs.push_back(docs[d]);
    }
    ASSERT_LE(expected.size(), rows[g].size()) << "slot " << g;
    for (size_t i = 0; i < rows[g].size(); ++i) {
      if (i < expected.size()) {
        EXPECT_EQ(rows[g][i], expected[i]) << "slot " << g << " row " << i;
      } else {
        EXPECT_EQ(rows[g][i],
                  (Row{std::vector<int32_t>(kN, 0), std::vector<int32_t>(kN, 0), false, false}))
            << "slot " << g << " row " << i;
      }
    }
    EXPECT_EQ(Reconstruct(rows[g]), expected_docs) << "slot " << g;
  }
}

TEST(SegmentStreamTest, SegmentsPerDocumentAndPadding) {
  struct Case {
    int length;
    int segments;
    int last_real_inputs;   // Non-pad inputs in the last segment.
    int last_real_targets;  // Non-pad targets in the last segment.
  };
  for (const Case& c :
       {Case{1, 1, 1, 0}, Case{2, 1, 2, 1}, Case{kN, 1, kN, kN - 1}, Case{kN + 1, 1, kN, kN},
        Case{kN + 2, 2, 2, 1}, Case{3 * kN + 5, 4, kN, kN}}) {
    const Docs docs = MakeDocs({c.length});
    SegmentStream stream = MustCreate(&docs, 1, 0, 1, kN, 0, /*loop=*/false);
    int steps = 0;
    const std::vector<Row> rows = Collect(stream, 100, &steps)[0];
    ASSERT_EQ(steps, c.segments) << "length " << c.length;
    ASSERT_EQ(static_cast<int>(rows.size()), c.segments);
    for (int i = 0; i < c.segments; ++i) EXPECT_EQ(rows[i].start, i == 0);
    const Row& last = rows.back();
    EXPECT_EQ(std::count(last.inputs.begin(), last.inputs.end(), 0), kN - c.last_real_inputs)
        << "length " << c.length;
    EXPECT_EQ(std::count(last.targets.begin(), last.targets.end(), 0), kN - c.last_real_targets)
        << "length " << c.length;
    EXPECT_EQ(Reconstruct(rows), docs);
    // Every token but the first is a target exactly once.
    int targets = 0;
    for (const Row& r : rows) targets += kN - std::count(r.targets.begin(), r.targets.end(), 0);
    EXPECT_EQ(targets, c.length - 1);
  }
}

TEST(SegmentStreamTest, LoopFalseTerminatesAndExtraSlotsAreInactive) {
  const Docs docs = MakeDocs({5, 2});
  // Four global slots, two documents: slots 2 and 3 never get one.
  SegmentStream stream = MustCreate(&docs, 4, 0, 4, kN, 0, /*loop=*/false);
  Batch b;
  ASSERT_TRUE(stream.Next(&b));
  EXPECT_EQ(b.active, (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(b.start, (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(b.num_targets, 4 + 1);
  // Both documents fit one segment, so the stream is done.
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(stream.Next(&b));
    EXPECT_EQ(b.active, (std::vector<uint8_t>(4, 0)));
    EXPECT_EQ(b.start, (std::vector<uint8_t>(4, 0)));
    EXPECT_EQ(b.inputs, std::vector<int32_t>(4 * kN, 0));
    EXPECT_EQ(b.targets, std::vector<int32_t>(4 * kN, 0));
    EXPECT_EQ(b.num_targets, 0);
  }
  // A process whose only slot has no document returns false at once.
  SegmentStream idle = MustCreate(&docs, 4, 3, 1, kN, 0, /*loop=*/false);
  EXPECT_FALSE(idle.Next(&b));
}

// The order of document starts a single-slot stream reads in `num_docs` documents.
std::vector<int> StartOrder(SegmentStream& stream, int num_docs) {
  std::vector<int> order;
  Batch b;
  while (static_cast<int>(order.size()) < num_docs) {
    EXPECT_TRUE(stream.Next(&b));
    if (b.start[0]) order.push_back(DocOf(b.inputs[0]));
  }
  return order;
}

TEST(SegmentStreamTest, EpochsAreDifferentPermutations) {
  const Docs docs = MakeDocs(std::vector<int>(20, 2));  // One segment each.
  SegmentStream stream = MustCreate(&docs, 1, 0, 1, kN, 42, /*loop=*/true);
  const std::vector<int> order = StartOrder(stream, 60);
  std::vector<int> identity(20);
  std::iota(identity.begin(), identity.end(), 0);
  std::vector<std::vector<int>> epochs;
  for (int e = 0; e < 3; ++e) {
    epochs.emplace_back(order.begin() + 20 * e, order.begin() + 20 * (e + 1));
    std::vector<int> sorted = epochs.back();
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, identity) << "epoch " << e << " is not a permutation";
  }
  EXPECT_NE(epochs[0], identity);  // Epoch 0 is shuffled too.
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);

  // The same seed gives the same order; another seed a different one.
  SegmentStream same = MustCreate(&docs, 1, 0, 1, kN, 42, /*loop=*/true);
  EXPECT_EQ(StartOrder(same, 60), order);
  SegmentStream other = MustCreate(&docs, 1, 0, 1, kN, 43, /*loop=*/true);
  EXPECT_NE(StartOrder(other, 60), order);
}

TEST(SegmentStreamTest, LoopDealsTheShuffledOrderRoundRobin) {
  // No empty documents, so a one-slot stream reads exactly the concatenated order.
  const Docs docs = MakeDocs({1, kN, kN + 1, 3 * kN + 5, 2, 9});
  SegmentStream single = MustCreate(&docs, 1, 0, 1, kN, 9, /*loop=*/true);
  const std::vector<int> order = StartOrder(single, 7 * 40);
  for (int G : {2, 3, 7}) {  // 7 > number of documents: slots start in later epochs.
    SegmentStream stream = MustCreate(&docs, G, 0, G, kN, 9, /*loop=*/true);
    const std::vector<std::vector<Row>> rows = Collect(stream, 60);
    for (int g = 0; g < G; ++g) {
      const Docs read = Reconstruct(rows[g]);
      ASSERT_GE(read.size(), 5u);
      for (size_t k = 0; k + 1 < read.size(); ++k) {  // The last one may be unfinished.
        ASSERT_LT(k * G + g, order.size());
        EXPECT_EQ(read[k], docs[order[k * G + g]]) << "G " << G << " slot " << g << " item " << k;
      }
      // Exact rows too.
      std::vector<Row> expected;
      for (size_t k = 0; expected.size() < rows[g].size(); ++k) {
        const std::vector<Row> r = ExpectedRows(docs[order[k * G + g]], kN);
        expected.insert(expected.end(), r.begin(), r.end());
      }
      expected.resize(rows[g].size());
      EXPECT_EQ(rows[g], expected) << "G " << G << " slot " << g;
    }
  }
}

TEST(SegmentStreamTest, SameSeedSameBatches) {
  const Docs docs = MakeDocs(kLengths);
  SegmentStream a = MustCreate(&docs, 3, 0, 3, kN, 5, /*loop=*/true);
  SegmentStream b = MustCreate(&docs, 3, 0, 3, kN, 5, /*loop=*/true);
  Batch ba, bb;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(a.Next(&ba));
    ASSERT_TRUE(b.Next(&bb));
    ASSERT_EQ(ba.inputs, bb.inputs) << i;
    ASSERT_EQ(ba.targets, bb.targets) << i;
    ASSERT_EQ(ba.start, bb.start) << i;
    ASSERT_EQ(ba.num_targets, bb.num_targets) << i;
  }
}

// Slots split across processes give the rows of one process that owns them all.
void CheckSplit(const Docs& docs, int global_slots, int per_process, bool loop) {
  SegmentStream whole = MustCreate(&docs, global_slots, 0, global_slots, kN, 3, loop);
  std::vector<SegmentStream> parts;
  for (int first = 0; first < global_slots; first += per_process) {
    parts.push_back(MustCreate(&docs, global_slots, first, per_process, kN, 3, loop));
  }
  Batch bw, bp;
  for (int step = 0; step < 150; ++step) {
    const bool more = whole.Next(&bw);
    bool any_part = false;
    int64_t part_targets = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
      any_part |= parts[p].Next(&bp);
      part_targets += bp.num_targets;
      for (int s = 0; s < per_process; ++s) {
        const int g = static_cast<int>(p) * per_process + s;
        ASSERT_EQ(RowOf(bp, s, kN), RowOf(bw, g, kN)) << "step " << step << " slot " << g;
      }
    }
    ASSERT_EQ(any_part, more) << "step " << step;
    ASSERT_EQ(part_targets, bw.num_targets) << "step " << step;
    if (!more) return;
  }
  EXPECT_TRUE(loop) << "loop = false stream did not finish";
}

TEST(SegmentStreamTest, ProcessSplitEqualsOneProcess) {
  const Docs docs = MakeDocs(kLengths);
  for (bool loop : {false, true}) {
    CheckSplit(docs, 2, 1, loop);
    CheckSplit(docs, 4, 2, loop);
    CheckSplit(docs, 6, 3, loop);
  }
}

TEST(SegmentStreamTest, SaveRestoreContinuesExactly) {
  const Docs docs = MakeDocs(kLengths);
  for (bool loop : {false, true}) {
    for (int steps_before : {0, 1, 7, 23}) {
      SegmentStream original = MustCreate(&docs, 5, 1, 3, kN, 11, loop);
      Collect(original, steps_before);
      const std::string state = original.SaveState();
      const std::vector<std::vector<Row>> expected = Collect(original, 40);

      // A fresh stream, and one that has moved elsewhere, both continue identically.
      SegmentStream fresh = MustCreate(&docs, 5, 1, 3, kN, 11, loop);
      ASSERT_TRUE(fresh.RestoreState(state).ok()) << state;
      EXPECT_EQ(Collect(fresh, 40), expected) << "loop " << loop << " after " << steps_before;
      SegmentStream moved = MustCreate(&docs, 5, 1, 3, kN, 11, loop);
      Collect(moved, 13);
      ASSERT_TRUE(moved.RestoreState(state).ok()) << state;
      EXPECT_EQ(Collect(moved, 40), expected) << "loop " << loop << " after " << steps_before;
    }
  }
  // Saving after the end of a loop = false stream restores the finished state.
  SegmentStream done = MustCreate(&docs, 2, 0, 2, kN, 0, /*loop=*/false);
  Collect(done, 1000);
  SegmentStream restored = MustCreate(&docs, 2, 0, 2, kN, 0, /*loop=*/false);
  ASSERT_TRUE(restored.RestoreState(done.SaveState()).ok());
  Batch b;
  EXPECT_FALSE(restored.Next(&b));
}

TEST(SegmentStreamTest, RestoreRejectsOtherStreams) {
  const Docs docs = MakeDocs(kLengths);
  SegmentStream source = MustCreate(&docs, 4, 2, 2, kN, 7, /*loop=*/true);
  Collect(source, 5);
  const std::string state = source.SaveState();

  Docs fewer = docs;
  fewer.pop_back();
  Docs longer = docs;
  longer[3].push_back(77);
  struct Case {
    const Docs* docs;
    int global_slots, first_slot, local_slots, segment_length;
    uint64_t seed;
    bool loop;
    const char* field;
  };
  for (const Case& c :
       {Case{&docs, 5, 2, 2, kN, 7, true, "global_slots"},
        Case{&docs, 4, 1, 2, kN, 7, true, "first_slot"},
        Case{&docs, 4, 2, 1, kN, 7, true, "local slots"},
        Case{&docs, 4, 2, 2, kN * 2, 7, true, "segment_length"},
        Case{&docs, 4, 2, 2, kN, 8, true, "seed"}, Case{&docs, 4, 2, 2, kN, 7, false, "loop"},
        Case{&fewer, 4, 2, 2, kN, 7, true, "num_docs"},
        Case{&longer, 4, 2, 2, kN, 7, true, "doc_lengths_hash"}}) {
    SegmentStream other = MustCreate(c.docs, c.global_slots, c.first_slot, c.local_slots,
                                     c.segment_length, c.seed, c.loop);
    const absl::Status status = other.RestoreState(state);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.field));
  }

  // Malformed states are rejected and leave the stream as it was.
  SegmentStream target = MustCreate(&docs, 4, 2, 2, kN, 7, /*loop=*/true);
  SegmentStream twin = MustCreate(&docs, 4, 2, 2, kN, 7, /*loop=*/true);
  for (const std::string& bad :
       {std::string(""), std::string("garbage"),
        absl::StrReplaceAll(state, {{"dealt=", "dealt=x"}}),
        absl::StrReplaceAll(state, {{"offset=", "offset=1"}}),
        absl::StrReplaceAll(state, {{"dealt=", "dealt=-"}}),
        absl::StrReplaceAll(state, {{"slot=2", "slot=1"}}), state.substr(0, state.size() / 2)}) {
    EXPECT_EQ(target.RestoreState(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // A position past the end of its document.
  std::string past_end = state;
  const size_t pos = past_end.find("offset=");
  past_end.replace(pos, past_end.find('\n', pos) - pos, "offset=4000");
  EXPECT_EQ(target.RestoreState(past_end).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Collect(target, 30), Collect(twin, 30));
}

TEST(SegmentStreamTest, CreateErrors) {
  const Docs docs = MakeDocs({3, 4});
  const Docs empty_docs = MakeDocs({0, 0});
  EXPECT_FALSE(SegmentStream::Create(nullptr, 1, 0, 1, kN, 0, true).ok());
  EXPECT_FALSE(SegmentStream::Create(&docs, 0, 0, 1, kN, 0, true).ok());
  EXPECT_FALSE(SegmentStream::Create(&docs, 2, 0, 0, kN, 0, true).ok());
  EXPECT_FALSE(SegmentStream::Create(&docs, 2, 1, 2, kN, 0, true).ok());
  EXPECT_FALSE(SegmentStream::Create(&docs, 2, -1, 1, kN, 0, true).ok());
  EXPECT_FALSE(SegmentStream::Create(&docs, 2, 0, 1, 0, 0, true).ok());
  EXPECT_FALSE(SegmentStream::Create(&empty_docs, 1, 0, 1, kN, 0, true).ok());
  // Without looping, empty documents are fine: the stream is simply finished.
  absl::StatusOr<SegmentStream> finished =
      SegmentStream::Create(&empty_docs, 1, 0, 1, kN, 0, false);
  ASSERT_TRUE(finished.ok());
  Batch b;
  EXPECT_FALSE(finished->Next(&b));
  const Docs no_docs;
  absl::StatusOr<SegmentStream> nothing = SegmentStream::Create(&no_docs, 1, 0, 1, kN, 0, false);
  ASSERT_TRUE(nothing.ok());
  EXPECT_FALSE(nothing->Next(&b));
  EXPECT_FALSE(SegmentStream::Create(&no_docs, 1, 0, 1, kN, 0, true).ok());
}

}  // namespace
}  // namespace blockserve::trainer
