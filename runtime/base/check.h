// COL_CHECK / COL_DCHECK for programmer errors (broken invariants), never for bad
// input: bad input returns absl::Status. Prefixed because Catch2 owns CHECK. A failed
// check prints file:line and the condition to stderr and aborts. COL_DCHECK compiles
// away under NDEBUG (the default opt build).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace colossal::base {

[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond,
                                     const char* msg) {
  std::fprintf(stderr, "CHECK failed at %s:%d: %s%s%s\n", file, line, cond,
               msg[0] ? ": " : "", msg);
  std::fflush(stderr);
  std::abort();
}

}  // namespace colossal::base

#define COL_CHECK(cond)                                                    \
  do {                                                                     \
    if (!(cond)) ::colossal::base::CheckFailed(__FILE__, __LINE__, #cond, ""); \
  } while (0)

#define COL_CHECK_MSG(cond, msg)                                              \
  do {                                                                        \
    if (!(cond)) ::colossal::base::CheckFailed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

#define COL_CHECK_EQ(a, b) COL_CHECK((a) == (b))
#define COL_CHECK_NE(a, b) COL_CHECK((a) != (b))
#define COL_CHECK_LT(a, b) COL_CHECK((a) < (b))
#define COL_CHECK_LE(a, b) COL_CHECK((a) <= (b))
#define COL_CHECK_GT(a, b) COL_CHECK((a) > (b))
#define COL_CHECK_GE(a, b) COL_CHECK((a) >= (b))

#ifdef NDEBUG
#define COL_DCHECK(cond) \
  do {                   \
  } while (0 && (cond))
#else
#define COL_DCHECK(cond) COL_CHECK(cond)
#endif
