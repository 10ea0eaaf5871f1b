// BS_CHECK macros for programmer errors (never for user input or file contents).
#ifndef BLOCKSERVE_BASE_CHECK_H_
#define BLOCKSERVE_BASE_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace blockserve::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond, const char* msg) {
  std::fprintf(stderr, "CHECK failed at %s:%d: %s%s%s\n", file, line, cond, msg[0] ? ": " : "",
               msg);
  std::fflush(stderr);
  std::abort();
}
}  // namespace blockserve::internal

// BS_CHECK(cond) / BS_CHECK_MSG(cond, "text"): abort with location when an invariant is broken.
#define BS_CHECK(cond) \
  ((cond) ? (void)0 : ::blockserve::internal::CheckFailed(__FILE__, __LINE__, #cond, ""))
#define BS_CHECK_MSG(cond, msg) \
  ((cond) ? (void)0 : ::blockserve::internal::CheckFailed(__FILE__, __LINE__, #cond, msg))
#ifdef NDEBUG
#define BS_DCHECK(cond) ((void)0)
#else
#define BS_DCHECK(cond) BS_CHECK(cond)
#endif

#endif  // BLOCKSERVE_BASE_CHECK_H_
