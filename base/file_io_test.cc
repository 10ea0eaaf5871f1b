// Tests for the whole-file helpers.
#include "base/file_io.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_util.h"

namespace blockserve {
namespace {

using ::testing::HasSubstr;

TEST(FileIoTest, RoundTripsBinaryAndReplacesAtomically) {
  const std::string dir = testing::MakeTempDir();
  const std::string path = dir + "/f.bin";
  const std::string bytes("a\0b\xff\n", 5);
  ASSERT_TRUE(WriteStringToFile(path, bytes).ok());
  EXPECT_EQ(*ReadFileToString(path), bytes);
  ASSERT_TRUE(WriteStringToFileAtomically(path, "new").ok());
  EXPECT_EQ(*ReadFileToString(path), "new");
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1) << "no temporary file may be left behind";
}

TEST(FileIoTest, ErrorsNameThePath) {
  auto missing = ReadFileToString("/nonexistent/x");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("/nonexistent/x"));
  EXPECT_THAT(std::string(WriteStringToFile("/nonexistent/x", "y").message()), HasSubstr("/nonexistent/x"));
  EXPECT_THAT(std::string(WriteStringToFileAtomically("/nonexistent/x", "y").message()),
              HasSubstr("/nonexistent/x"));
}

}  // namespace
}  // namespace blockserve
