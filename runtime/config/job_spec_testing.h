// Shared by the job-spec tests: a small valid spec and the parse helpers (Catch2).
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "runtime/config/job_spec.h"

namespace colossal::config::testing {

// Line numbers in the tests are 1-based lines of this text (14 is the first line a test
// appends).
inline constexpr const char* kBase = R"(name: tiny
model:
  type: gpt
  n_layer: 2
  n_head: 2
  d_model: 64
  seq_len: 32
  vocab: 256
data:
  train: data/tiny.txt
train:
  steps: 10
  global_batch: 4
)";

inline std::string Replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), to);
  return text;
}

// These helpers test the parser and the rules, so they accept features this build does
// not run yet; "refused until built" has its own test case (ParseJobSpec's default).
inline JobSpec Parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(yaml, "job.yaml", overrides, Unbuilt::kAccept);
  INFO(spec.status().message());
  REQUIRE(spec.ok());
  return *spec;
}

// The InvalidArgument message of a parse that must fail; checks it is one line.
inline std::string ErrorOf(const std::string& yaml, const std::vector<std::string>& overrides = {},
                    Unbuilt unbuilt = Unbuilt::kAccept) {
  absl::StatusOr<JobSpec> spec = ParseJobSpec(yaml, "job.yaml", overrides, unbuilt);
  REQUIRE_FALSE(spec.ok());
  REQUIRE(spec.status().code() == absl::StatusCode::kInvalidArgument);
  std::string message(spec.status().message());
  REQUIRE(message.find('\n') == std::string::npos);
  return message;
}

}  // namespace colossal::config::testing
