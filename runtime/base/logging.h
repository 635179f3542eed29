// Logging through spdlog with the job/rank/step context on every line.
// Call InitLogging once per process; SetLogContext / SetLogStep update the context
// (thread-safe: the context is read under a lock by the formatter).
// Use the LOG_* macros (they forward to spdlog's fmt-style API).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "absl/strings/string_view.h"

namespace colossal::base {

// Sets the pattern and the level (COLOSSAL_LOG_LEVEL, default info); logs to stderr.
void InitLogging();

// Context shown as "[job rank=R step=S]"; empty job and rank < 0 are left out.
void SetLogContext(std::string_view job, int rank);
void SetLogStep(int64_t step);

}  // namespace colossal::base

// Debian's absl::string_view is its own type (not std::string_view): teach fmt to print
// it, so `LOG_ERROR("{}", status.message())` works.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<std::string_view>::format(std::string_view(s.data(), s.size()), ctx);
  }
};

#define LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
