// Leveled logging to stderr: BS_LOG(INFO) << "text"; one line per message, thread-safe.
#ifndef BLOCKSERVE_BASE_LOGGING_H_
#define BLOCKSERVE_BASE_LOGGING_H_

#include <sstream>
#include <string>

#include "absl/strings/string_view.h"

namespace blockserve {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// The minimum level written; starts from $BLOCKSERVE_LOG_LEVEL (debug|info|warning|error),
// default info. Thread-safe.
LogLevel GetLogLevel();
void SetLogLevel(LogLevel level);
// Parses "debug", "info", "warning"/"warn", "error"; false on anything else.
bool ParseLogLevel(absl::string_view text, LogLevel* level);

// Where lines go; tests capture them. nullptr restores stderr. Not for hot paths.
using LogSink = void (*)(LogLevel level, const std::string& line);
void SetLogSink(LogSink sink);

namespace internal {
// Collects one message and writes it, with level, time, thread and location, on destruction.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
// Turns `BS_LOG(x) << a << b` into a void expression so that it can sit in a ternary.
struct LogVoidify {
  void operator&(std::ostream&) {}
};
}  // namespace internal

}  // namespace blockserve

#define BS_LOG_LEVEL_DEBUG ::blockserve::LogLevel::kDebug
#define BS_LOG_LEVEL_INFO ::blockserve::LogLevel::kInfo
#define BS_LOG_LEVEL_WARNING ::blockserve::LogLevel::kWarning
#define BS_LOG_LEVEL_ERROR ::blockserve::LogLevel::kError

// BS_LOG(INFO) << ...; arguments are not evaluated when the level is disabled.
#define BS_LOG(severity)                                                           \
  (BS_LOG_LEVEL_##severity < ::blockserve::GetLogLevel())                          \
      ? (void)0                                                                    \
      : ::blockserve::internal::LogVoidify() &                                     \
            ::blockserve::internal::LogMessage(BS_LOG_LEVEL_##severity, __FILE__, \
                                               __LINE__)                           \
                .stream()

#endif  // BLOCKSERVE_BASE_LOGGING_H_
