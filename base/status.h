// Status helpers over absl::Status: RETURN_IF_ERROR and ASSIGN_OR_RETURN.
#ifndef BLOCKSERVE_BASE_STATUS_H_
#define BLOCKSERVE_BASE_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define BLOCKSERVE_CONCAT_INNER_(a, b) a##b
#define BLOCKSERVE_CONCAT_(a, b) BLOCKSERVE_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function if not OK.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    const ::absl::Status blockserve_status_ = (expr);          \
    if (!blockserve_status_.ok()) return blockserve_status_;   \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error returns
// its status, otherwise moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  BLOCKSERVE_ASSIGN_OR_RETURN_IMPL_(BLOCKSERVE_CONCAT_(blockserve_statusor_, __LINE__), lhs, expr)

#define BLOCKSERVE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                      \
  if (!tmp.ok()) return std::move(tmp).status();          \
  lhs = std::move(tmp).value()

namespace blockserve {

// Returns `status` with `context` prepended to its message ("context: message"); OK stays OK.
inline absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace blockserve

#endif  // BLOCKSERVE_BASE_STATUS_H_
