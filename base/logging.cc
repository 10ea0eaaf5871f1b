// Logging implementation: level from the environment, formatted single-write lines.
#include "base/logging.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace blockserve {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("BLOCKSERVE_LOG_LEVEL");
  LogLevel level = LogLevel::kInfo;
  if (env != nullptr && !ParseLogLevel(env, &level)) {
    std::fprintf(stderr, "blockserve: ignoring BLOCKSERVE_LOG_LEVEL='%s' (debug|info|warning|error)\n",
                 env);
  }
  return level;
}

std::atomic<int>& LevelStorage() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

std::atomic<LogSink> g_sink{nullptr};

char LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return 'D';
    case LogLevel::kInfo: return 'I';
    case LogLevel::kWarning: return 'W';
    case LogLevel::kError: return 'E';
  }
  return '?';
}

const char* Basename(const char* path) {
  const char* base = path;
  for (const char* p = path; *p; ++p) {
    if (*p == '/') base = p + 1;
  }
  return base;
}

}  // namespace

LogLevel GetLogLevel() { return static_cast<LogLevel>(LevelStorage().load(std::memory_order_relaxed)); }
void SetLogLevel(LogLevel level) { LevelStorage().store(static_cast<int>(level)); }
void SetLogSink(LogSink sink) { g_sink.store(sink); }

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "debug") *level = LogLevel::kDebug;
  else if (t == "info") *level = LogLevel::kInfo;
  else if (t == "warning" || t == "warn") *level = LogLevel::kWarning;
  else if (t == "error") *level = LogLevel::kError;
  else return false;
  return true;
}

namespace internal {

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm;
  localtime_r(&secs, &tm);
  stream_ << absl::StrFormat("%c%02d%02d %02d:%02d:%02d.%06d %d %s:%d] ", LevelLetter(level),
                             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                             static_cast<int>(micros), static_cast<int>(syscall(SYS_gettid)),
                             Basename(file), line);
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string line = stream_.str();
  if (LogSink sink = g_sink.load()) {
    sink(level_, line);
    return;
  }
  // One write call per line keeps lines from different threads whole.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace internal
}  // namespace blockserve
