// Tests of the byte tokenizer and the registry.
#include "runtime/data/tokenizer.h"

#include <catch2/catch.hpp>

namespace colossal::data {
namespace {

TEST_CASE("ByteTokenizer maps bytes to their values and back") {
  ByteTokenizer tok;
  REQUIRE(tok.vocab_size() == 256);
  REQUIRE(tok.name() == "bytes");
  std::string text = "Hi \xC3\xA9\n";  // "Hi é\n": UTF-8 bytes stay separate tokens.
  std::vector<int32_t> ids = tok.Encode(text);
  REQUIRE(ids == std::vector<int32_t>{72, 105, 32, 0xC3, 0xA9, 10});
  REQUIRE(tok.Decode(ids) == text);
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::vector<int32_t> all_ids = tok.Encode(all);
  for (int b = 0; b < 256; ++b) REQUIRE(all_ids[b] == b);
  REQUIRE(tok.Decode(all_ids) == all);
  REQUIRE(tok.Encode("").empty());
}

TEST_CASE("ByteTokenizer decodes unknown ids as U+FFFD") {
  ByteTokenizer tok;
  std::vector<int32_t> ids = {65, 256, 66, -1, 300, 67};
  REQUIRE(tok.Decode(ids) == "A\xEF\xBF\xBD" "B\xEF\xBF\xBD\xEF\xBF\xBD" "C");
}

TEST_CASE("MakeTokenizer knows bytes and lists the known names otherwise") {
  auto tok = MakeTokenizer("bytes");
  REQUIRE(tok.ok());
  REQUIRE((*tok)->name() == "bytes");
  REQUIRE((*tok)->vocab_size() == 256);
  auto bad = MakeTokenizer("gpt2");
  REQUIRE(bad.status().code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(bad.status().message() == "unknown tokenizer 'gpt2' (known: bytes)");
}

}  // namespace
}  // namespace colossal::data
