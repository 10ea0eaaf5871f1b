// Tests for trainer/corpus.h: the kjv, python and path recipes, max_bytes and SplitCorpus.
#include "trainer/corpus.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"

namespace blockserve::trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Names(const std::vector<Document>& docs) {
  std::vector<std::string> names;
  for (const Document& d : docs) names.push_back(d.name);
  return names;
}

// True when `line` starts like a `bible` reference such as "Ge1:1 " or "1Sm3:4 ".
bool StartsWithReference(absl::string_view line) {
  size_t i = 0;
  while (i < line.size() && std::isalnum(static_cast<unsigned char>(line[i])) && line[i] != ':') {
    ++i;
  }
  if (i == 0 || i >= line.size() || line[i] != ':') return false;
  return i + 1 < line.size() && std::isdigit(static_cast<unsigned char>(line[i + 1])) &&
         std::isdigit(static_cast<unsigned char>(line[i - 1]));
}

TEST(LoadCorpusTest, KjvIsOneDocumentPerBookWithoutReferences) {
  absl::StatusOr<std::vector<Document>> docs = LoadCorpus("kjv");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 66u);
  const std::vector<std::string> names = Names(*docs);
  EXPECT_EQ(names.front(), "Ge");
  EXPECT_EQ(names[1], "Exo");
  EXPECT_EQ(names[38], "Mal");  // Last book of the Old Testament.
  EXPECT_EQ(names[39], "Mat");
  EXPECT_EQ(names.back(), "Rev");
  EXPECT_TRUE(
      absl::StartsWith((*docs)[0].text, "In the beginning God created the heaven and the earth.\n"))
      << (*docs)[0].text.substr(0, 80);
  EXPECT_TRUE(absl::EndsWith(docs->back().text,
                             "The grace of our Lord Jesus Christ be with you all. Amen.\n"));
  int64_t verses = 0;
  for (const Document& doc : *docs) {
    EXPECT_FALSE(absl::StrContains(doc.text, "Ge1:1")) << doc.name;
    EXPECT_FALSE(absl::StrContains(doc.text, doc.name + "1:1 ")) << doc.name;
    for (absl::string_view line : absl::StrSplit(doc.text, '\n', absl::SkipEmpty())) {
      ++verses;
      ASSERT_FALSE(StartsWithReference(line)) << doc.name << ": " << line;
    }
  }
  EXPECT_EQ(verses, 31102);  // Verses in the KJV.
}

TEST(LoadCorpusTest, KjvMaxBytesStopsAfterTheBookThatReachesIt) {
  absl::StatusOr<std::vector<Document>> one = LoadCorpus("kjv", 1);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_THAT(Names(*one), ElementsAre("Ge"));
  const int64_t genesis_bytes = static_cast<int64_t>((*one)[0].text.size());
  absl::StatusOr<std::vector<Document>> exact = LoadCorpus("kjv", genesis_bytes);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_THAT(Names(*exact), ElementsAre("Ge"));
  absl::StatusOr<std::vector<Document>> two = LoadCorpus("kjv", genesis_bytes + 1);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_THAT(Names(*two), ElementsAre("Ge", "Exo"));
}

TEST(LoadCorpusTest, KjvWithoutBibleProgramIsFailedPrecondition) {
  const char* old_path = std::getenv("PATH");
  const std::string saved = old_path != nullptr ? old_path : "";
  setenv("PATH", "/nonexistent-blockserve-test", 1);
  absl::StatusOr<std::vector<Document>> docs = LoadCorpus("kjv");
  setenv("PATH", saved.c_str(), 1);
  EXPECT_EQ(docs.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr("scripts/install-deps.sh"));
  EXPECT_THAT(std::string(docs.status().message()), HasSubstr("not installed"));
}

TEST(LoadCorpusTest, PythonStdlibFilesSortedWithoutSitePackages) {
  absl::StatusOr<std::vector<Document>> docs = LoadCorpus("python");
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_GT(docs->size(), 100u);
  const std::vector<std::string> names = Names(*docs);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const std::string& name : names) {
    EXPECT_TRUE(absl::EndsWith(name, ".py")) << name;
    EXPECT_FALSE(absl::StrContains(name, "site-packages")) << name;
    EXPECT_FALSE(absl::StrContains(name, "dist-packages")) << name;
    EXPECT_FALSE(absl::StartsWith(name, "/")) << name;  // Relative to /usr/lib/python3.11.
  }
  auto os_py = std::find(names.begin(), names.end(), "os.py");
  ASSERT_NE(os_py, names.end());
  EXPECT_THAT((*docs)[os_py - names.begin()].text, HasSubstr("def makedirs("));
  EXPECT_NE(std::find(names.begin(), names.end(), "json/__init__.py"), names.end());

  absl::StatusOr<std::vector<Document>> small = LoadCorpus("python", 50000);
  ASSERT_TRUE(small.ok()) << small.status();
  ASSERT_LT(small->size(), docs->size());
  int64_t total = 0;
  for (size_t i = 0; i < small->size(); ++i) {
    EXPECT_EQ((*small)[i].name, names[i]);  // A prefix of the full list.
    if (i + 1 < small->size()) total += static_cast<int64_t>((*small)[i].text.size());
  }
  EXPECT_LT(total, 50000);  // Everything before the last document was below the limit.
  EXPECT_GE(total + static_cast<int64_t>(small->back().text.size()), 50000);
}

// A small tree: nested directories, a hidden file and directory, a binary and a non-UTF-8 file,
// and symlinks.
std::string MakeTree() {
  const std::string root = testing::MakeTempDir("corpus_tree");
  std::filesystem::create_directories(root + "/b/d");
  std::filesystem::create_directories(root + "/.git");
  std::filesystem::create_directories(root + "/other");
  EXPECT_TRUE(testing::WriteFile(root + "/a.txt", "alpha\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/Z.txt", "zulu\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/b.txt", "bravo\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/b/c.txt", "charlie \xC3\xA9\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/b/d/e.md", "# echo\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/.hidden.txt", "hidden\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/.git/config", "[core]\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/bin.dat", std::string("ab\0cd", 5)).ok());
  EXPECT_TRUE(testing::WriteFile(root + "/latin1.txt", "caf\xE9\n").ok());
  EXPECT_TRUE(testing::WriteFile(root + "/other/f.txt", "foxtrot\n").ok());
  std::filesystem::create_symlink(root + "/a.txt", root + "/link.txt");
  std::filesystem::create_directory_symlink(root + "/other", root + "/b/linkdir");
  return root;
}

TEST(LoadCorpusTest, DirectoryWalkSortedSkipsHiddenBinaryAndSymlinkedDirs) {
  const std::string root = MakeTree();
  absl::StatusOr<std::vector<Document>> docs = LoadCorpus(root);
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_THAT(Names(*docs), ElementsAre("Z.txt", "a.txt", "b.txt", "b/c.txt", "b/d/e.md",
                                        "link.txt", "other/f.txt"));
  EXPECT_EQ((*docs)[0].text, "zulu\n");
  EXPECT_EQ((*docs)[3].text, "charlie \xC3\xA9\n");
  EXPECT_EQ((*docs)[5].text, "alpha\n");  // The file symlink is followed.

  // A trailing slash or a hidden root directory changes nothing.
  absl::StatusOr<std::vector<Document>> slash = LoadCorpus(root + "/");
  ASSERT_TRUE(slash.ok()) << slash.status();
  EXPECT_EQ(Names(*slash), Names(*docs));
  absl::StatusOr<std::vector<Document>> hidden_root = LoadCorpus(root + "/.git");
  ASSERT_TRUE(hidden_root.ok()) << hidden_root.status();
  EXPECT_THAT(Names(*hidden_root), ElementsAre("config"));
}

TEST(LoadCorpusTest, DirectoryMaxBytes) {
  const std::string root = MakeTree();
  // "zulu\n" (5 bytes) alone reaches 5; "alpha\n" makes 11.
  absl::StatusOr<std::vector<Document>> docs = LoadCorpus(root, 5);
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_THAT(Names(*docs), ElementsAre("Z.txt"));
  docs = LoadCorpus(root, 6);
  ASSERT_TRUE(docs.ok()) << docs.status();
  EXPECT_THAT(Names(*docs), ElementsAre("Z.txt", "a.txt"));
}

TEST(LoadCorpusTest, SingleFile) {
  const std::string root = MakeTree();
  absl::StatusOr<std::vector<Document>> docs = LoadCorpus(root + "/b/c.txt");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ((*docs)[0].name, root + "/b/c.txt");
  EXPECT_EQ((*docs)[0].text, "charlie \xC3\xA9\n");

  absl::StatusOr<std::vector<Document>> binary = LoadCorpus(root + "/bin.dat");
  EXPECT_EQ(binary.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<Document>> latin1 = LoadCorpus(root + "/latin1.txt");
  EXPECT_EQ(latin1.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoadCorpusTest, ErrorsForMissingAndEmpty) {
  const std::string root = testing::MakeTempDir("corpus_errors");
  absl::StatusOr<std::vector<Document>> missing = LoadCorpus(root + "/nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(root + "/nope"));
  EXPECT_EQ(LoadCorpus("").status().code(), absl::StatusCode::kNotFound);

  // An empty directory, or one with only non-text files, has no documents.
  EXPECT_EQ(LoadCorpus(root).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(testing::WriteFile(root + "/x.bin", std::string("\0\1\2", 3)).ok());
  ASSERT_TRUE(testing::WriteFile(root + "/.y.txt", "hidden").ok());
  absl::StatusOr<std::vector<Document>> no_text = LoadCorpus(root);
  EXPECT_EQ(no_text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_text.status().message()), HasSubstr("no text documents"));
}

std::vector<Document> NumberedDocs(int n) {
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) docs.push_back({absl::StrCat("doc", 1000 + i), absl::StrCat(i)});
  return docs;
}

TEST(SplitCorpusTest, FractionOrderAndDeterminism) {
  const CorpusSplit split = SplitCorpus(NumberedDocs(20), 0.2, 7);
  ASSERT_EQ(split.heldout.size(), 4u);
  ASSERT_EQ(split.train.size(), 16u);
  std::vector<std::string> all = Names(split.train);
  const std::vector<std::string> heldout = Names(split.heldout);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));  // Original order kept.
  EXPECT_TRUE(std::is_sorted(heldout.begin(), heldout.end()));
  all.insert(all.end(), heldout.begin(), heldout.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, Names(NumberedDocs(20)));
  for (const Document& d : split.heldout)
    EXPECT_EQ(d.name, absl::StrCat("doc", 1000 + std::stoi(d.text)));

  // Same seed, same split; some other seed chooses differently.
  EXPECT_EQ(Names(SplitCorpus(NumberedDocs(20), 0.2, 7).heldout), heldout);
  bool any_different = false;
  for (uint64_t seed = 8; seed < 16; ++seed) {
    any_different |= Names(SplitCorpus(NumberedDocs(20), 0.2, seed).heldout) != heldout;
  }
  EXPECT_TRUE(any_different);
}

TEST(SplitCorpusTest, Rounding) {
  EXPECT_EQ(SplitCorpus(NumberedDocs(10), 0.25, 1).heldout.size(), 3u);  // round(2.5) = 3.
  EXPECT_EQ(SplitCorpus(NumberedDocs(10), 0.24, 1).heldout.size(), 2u);
  EXPECT_EQ(SplitCorpus(NumberedDocs(100), 0.05, 1).heldout.size(), 5u);
}

TEST(SplitCorpusTest, EdgeCases) {
  // Fraction 0 (or negative, or NaN) holds out nothing.
  for (double f : {0.0, -0.5, std::numeric_limits<double>::quiet_NaN()}) {
    const CorpusSplit split = SplitCorpus(NumberedDocs(10), f, 3);
    EXPECT_EQ(split.heldout.size(), 0u) << f;
    EXPECT_EQ(split.train.size(), 10u) << f;
  }
  // A tiny fraction still holds out one document.
  EXPECT_EQ(SplitCorpus(NumberedDocs(10), 0.001, 3).heldout.size(), 1u);
  EXPECT_EQ(SplitCorpus(NumberedDocs(2), 0.1, 3).heldout.size(), 1u);
  // Never all of them.
  for (double f : {0.99, 1.0, 5.0, std::numeric_limits<double>::infinity()}) {
    const CorpusSplit split = SplitCorpus(NumberedDocs(10), f, 3);
    EXPECT_EQ(split.heldout.size(), 9u) << f;
    EXPECT_EQ(split.train.size(), 1u) << f;
  }
  // One document stays in train; none gives two empty lists.
  const CorpusSplit one = SplitCorpus(NumberedDocs(1), 0.5, 3);
  EXPECT_EQ(one.train.size(), 1u);
  EXPECT_TRUE(one.heldout.empty());
  const CorpusSplit none = SplitCorpus({}, 0.5, 3);
  EXPECT_TRUE(none.train.empty());
  EXPECT_TRUE(none.heldout.empty());
}

}  // namespace
}  // namespace blockserve::trainer
