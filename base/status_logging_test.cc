// Tests for the Status macros and the logging layer.
#include <string>
#include <vector>

#include "base/logging.h"
#include "base/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockserve {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckQuarter(int x, int* out) {
  RETURN_IF_ERROR(Quarter(x).status());
  *out = *Quarter(x);
  return absl::OkStatus();
}

TEST(StatusTest, MacrosPropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(12), 3);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  int out = 0;
  EXPECT_TRUE(CheckQuarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_FALSE(CheckQuarter(2, &out).ok());
  EXPECT_EQ(Annotate(absl::NotFoundError("x"), "loading y").message(), "loading y: x");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "ctx").ok());
}

std::vector<std::string>* g_lines = nullptr;
void Capture(LogLevel, const std::string& line) { g_lines->push_back(line); }

TEST(LoggingTest, LevelsFilterAndLinesCarryLocation) {
  std::vector<std::string> lines;
  g_lines = &lines;
  SetLogSink(&Capture);
  SetLogLevel(LogLevel::kWarning);
  int evaluated = 0;
  BS_LOG(INFO) << "hidden " << ++evaluated;
  BS_LOG(WARNING) << "shown " << 42;
  BS_LOG(ERROR) << "also shown";
  SetLogLevel(LogLevel::kInfo);
  SetLogSink(nullptr);
  EXPECT_EQ(evaluated, 0) << "disabled log arguments must not be evaluated";
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0][0], 'W');
  EXPECT_THAT(lines[0], HasSubstr("status_logging_test.cc:"));
  EXPECT_THAT(lines[0], HasSubstr("] shown 42\n"));
  EXPECT_EQ(lines[1][0], 'E');
  LogLevel level;
  EXPECT_TRUE(ParseLogLevel("DEBUG", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
}

}  // namespace
}  // namespace blockserve
