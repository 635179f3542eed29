// Tests of the Status macros and the environment table.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"

namespace colossal::base {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckEven(int x) {
  RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST_CASE("ASSIGN_OR_RETURN passes values and errors through") {
  REQUIRE(Quarter(8).value() == 2);
  REQUIRE(Quarter(6).status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(CheckEven(4).ok());
  REQUIRE(absl::IsInvalidArgument(CheckEven(3)));
}

TEST_CASE("GetEnv reads table knobs and treats empty as unset") {
  setenv("COLOSSAL_PROGRESS", "1", 1);
  REQUIRE(GetEnv(kEnvProgress) == std::optional<std::string>("1"));
  setenv("COLOSSAL_PROGRESS", "", 1);
  REQUIRE_FALSE(GetEnv(kEnvProgress).has_value());
  unsetenv("COLOSSAL_PROGRESS");
  REQUIRE_FALSE(GetEnv(kEnvProgress).has_value());
}

TEST_CASE("logging initialises with a context") {
  InitLogging();
  SetLogContext("job", 3);
  SetLogStep(7);
  LOG_INFO("hello {}", 1);
  SetLogContext("", -1);
  SetLogStep(-1);
}

}  // namespace
}  // namespace colossal::base
