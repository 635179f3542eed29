// rpc helpers: status mapping, address parsing, listener security policy, token checks.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "runtime/base/env.h"
#include "runtime/rpc/rpc.h"

namespace colossal::rpc {
namespace {

TEST_CASE("status codes map one to one in both directions") {
  for (int c = 0; c <= 16; ++c) {
    absl::Status s(static_cast<absl::StatusCode>(c), c ? "msg" : "");
    grpc::Status g = ToGrpc(s);
    REQUIRE(static_cast<int>(g.error_code()) == c);
    REQUIRE(FromGrpc(g) == s);
  }
}

TEST_CASE("host:port parsing and loopback detection") {
  REQUIRE(SplitHostPort("127.0.0.1:29500").value() == std::make_pair(std::string("127.0.0.1"), 29500));
  REQUIRE(SplitHostPort("[::1]:80").value() == std::make_pair(std::string("::1"), 80));
  REQUIRE_FALSE(SplitHostPort("nohost").ok());
  REQUIRE_FALSE(SplitHostPort("h:99999").ok());
  REQUIRE(IsLoopbackHost("127.0.0.2"));
  REQUIRE(IsLoopbackHost("localhost"));
  REQUIRE_FALSE(IsLoopbackHost("10.0.0.1"));
  REQUIRE_FALSE(IsLoopbackHost("0.0.0.0"));
}

TEST_CASE("listening beyond loopback needs a token and TLS, or --insecure") {
  REQUIRE(MakeServerCredentials("127.0.0.1:0", {}).ok());
  auto open = MakeServerCredentials("0.0.0.0:29500", {});
  REQUIRE(absl::IsFailedPrecondition(open.status()));
  REQUIRE_THAT(std::string(open.status().message()), Catch::Contains("--token-file"));
  SecurityOptions token_only;
  token_only.token_file = "/dev/null";
  auto no_tls = MakeServerCredentials("0.0.0.0:29500", token_only);
  REQUIRE_THAT(std::string(no_tls.status().message()), Catch::Contains("TLS"));
  SecurityOptions insecure;
  insecure.insecure = true;
  REQUIRE(MakeServerCredentials("0.0.0.0:29500", insecure).ok());
}

TEST_CASE("token files are trimmed; empty and missing ones are errors") {
  const auto dir = std::filesystem::path(base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp"));
  const auto path = (dir / "token").string();
  std::ofstream(path) << "  s3cret\n";
  REQUIRE(ReadToken(path).value() == "s3cret");
  std::ofstream(path) << "\n";
  REQUIRE(absl::IsInvalidArgument(ReadToken(path).status()));
  REQUIRE(absl::IsNotFound(ReadToken((dir / "absent").string()).status()));
  REQUIRE(ReadToken("").value().empty());
}

TEST_CASE("ValidUtf8 keeps valid text and replaces each invalid byte") {
  REQUIRE(ValidUtf8("plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80") ==
          "plain, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80");
  REQUIRE(ValidUtf8("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
  REQUIRE(ValidUtf8("\xC3") == "\xEF\xBF\xBD");                 // truncated
  REQUIRE(ValidUtf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  REQUIRE(ValidUtf8("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

}  // namespace
}  // namespace colossal::rpc
