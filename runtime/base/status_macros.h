// Status plumbing for code that returns absl::Status / absl::StatusOr<T>.
// Failures from outside the process (files, peers, bad input, timeouts) travel as
// Status; programmer bugs use COL_CHECK (check.h) instead.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define COLOSSAL_STATUS_CONCAT_INNER(a, b) a##b
#define COLOSSAL_STATUS_CONCAT(a, b) COLOSSAL_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    ::absl::Status colossal_status_ = (expr);                   \
    if (!colossal_status_.ok()) return colossal_status_;        \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates the StatusOr `expr`; returns its status when
// it is an error, else moves its value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr)                                                   \
  COLOSSAL_ASSIGN_OR_RETURN_IMPL(COLOSSAL_STATUS_CONCAT(colossal_statusor_, __LINE__), \
                                 lhs, expr)

#define COLOSSAL_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()
