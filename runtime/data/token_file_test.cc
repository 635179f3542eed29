// Tests of token files: the exact bytes of a small file (golden made by an independent
// Python writer of the documented format), round trips at 1, 2 and 4 bytes per token,
// text input, and one test per error LoadTokens must report.
#include "runtime/data/token_file.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/base/env.h"
#include "runtime/checkpoint/file_io.h"
#include "runtime/data/crc32c.h"

namespace colossal::data {
namespace {

namespace fs = std::filesystem;
using checkpoint::ReadFile;
using checkpoint::WriteFileAtomic;

std::string FreshDir(const std::string& name) {
  std::string dir = *base::GetEnv(base::kEnvTestTmpDir) + "/token_file_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool Contains(const absl::Status& s, const std::string& what) {
  return std::string(s.message()).find(what) != std::string::npos;
}

// A tokenizer with any name and vocabulary (Encode/Decode unused here).
class FakeTokenizer : public Tokenizer {
 public:
  FakeTokenizer(std::string name, int64_t vocab) : name_(std::move(name)), vocab_(vocab) {}
  std::vector<int32_t> Encode(std::string_view) const override { return {}; }
  std::string Decode(std::span<const int32_t>) const override { return ""; }
  int64_t vocab_size() const override { return vocab_; }
  std::string_view name() const override { return name_; }

 private:
  std::string name_;
  int64_t vocab_;
};

// Rewrites header field bytes of a token file and fixes the header checksum, so a test
// can reach the checks behind it.
std::string Patch(std::string bytes, size_t offset, const void* value, size_t size) {
  std::memcpy(bytes.data() + offset, value, size);
  uint32_t crc = Crc32c(bytes.data(), 36);
  crc = Crc32c(bytes.data() + 40, 24, crc);
  std::memcpy(bytes.data() + 36, &crc, 4);
  return bytes;
}

TEST_CASE("BytesPerToken is the smallest width holding vocab - 1") {
  REQUIRE(BytesPerToken(1) == 1);
  REQUIRE(BytesPerToken(256) == 1);
  REQUIRE(BytesPerToken(257) == 2);
  REQUIRE(BytesPerToken(65536) == 2);
  REQUIRE(BytesPerToken(65537) == 4);
  REQUIRE(BytesPerToken(int64_t{1} << 31) == 4);
}

TEST_CASE("a token file has the documented bytes") {
  std::string dir = FreshDir("golden");
  std::vector<int32_t> tokens = {1, 2, 255};
  REQUIRE(WriteTokenFile(dir + "/t.tok", tokens, 256, "bytes").ok());
  const char golden[] =
      "\x43\x4c\x54\x4f\x4b\x45\x4e\x53\x01\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00\x00\x00"
      "\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xbb\x52\x1d\x4f\x00\x7b\x72\xec\x62\x79"
      "\x74\x65\x73\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00\x01\x02\xff";
  REQUIRE(ReadFile(dir + "/t.tok").value() == std::string(golden, sizeof(golden) - 1));
  REQUIRE_FALSE(fs::exists(dir + "/t.tok.tmp"));

  auto h = ReadTokenFileHeader(dir + "/t.tok");
  REQUIRE(h.ok());
  REQUIRE(h->version == 1);
  REQUIRE(h->bytes_per_token == 1);
  REQUIRE(h->token_count == 3);
  REQUIRE(h->vocab_size == 256);
  REQUIRE(h->payload_crc32c == 0x4f1d52bbu);
  REQUIRE(h->tokenizer == "bytes");
}

TEST_CASE("token files round-trip at 1, 2 and 4 bytes per token") {
  std::string dir = FreshDir("roundtrip");
  struct Case {
    int64_t vocab;
    uint32_t width;
  };
  for (Case c : {Case{256, 1}, Case{300, 2}, Case{65536, 2}, Case{70000, 4},
                 Case{int64_t{1} << 31, 4}}) {
    FakeTokenizer tok("fake-" + std::to_string(c.vocab), c.vocab);
    std::vector<int32_t> tokens;
    for (int64_t i = 0; i < 3000; ++i) tokens.push_back(static_cast<int32_t>((i * 7919) % c.vocab));
    tokens.push_back(static_cast<int32_t>(c.vocab - 1));
    std::string path = dir + "/" + std::to_string(c.vocab) + ".tok";
    REQUIRE(WriteTokenFile(path, tokens, c.vocab, tok.name()).ok());
    REQUIRE(fs::file_size(path) == 64 + tokens.size() * c.width);
    auto loaded = LoadTokens(path, tok);
    REQUIRE(loaded.ok());
    REQUIRE(loaded->tokens == tokens);
    REQUIRE(loaded->vocab_size == c.vocab);
    REQUIRE(loaded->tokenizer == tok.name());
  }
}

TEST_CASE("a text file is encoded with the tokenizer") {
  std::string dir = FreshDir("text");
  REQUIRE(WriteFileAtomic(dir + "/a.txt", "In the beginning\n").ok());
  ByteTokenizer bytes;
  auto loaded = LoadTokens(dir + "/a.txt", bytes);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->tokens == bytes.Encode("In the beginning\n"));
  REQUIRE(loaded->vocab_size == 256);
  REQUIRE(loaded->tokenizer == "bytes");
  // Shorter than the magic, and a prefix of it: still text.
  REQUIRE(WriteFileAtomic(dir + "/b.txt", "CLTOK").ok());
  REQUIRE(LoadTokens(dir + "/b.txt", bytes)->tokens == bytes.Encode("CLTOK"));
}

TEST_CASE("TokenizeFile turns text into a token file that loads back the same") {
  std::string dir = FreshDir("tokenize");
  std::string text = "And God said, Let there be light: and there was light.\n";
  REQUIRE(WriteFileAtomic(dir + "/in.txt", text).ok());
  ByteTokenizer bytes;
  REQUIRE(TokenizeFile(dir + "/in.txt", dir + "/out.tok", bytes).ok());
  auto h = ReadTokenFileHeader(dir + "/out.tok");
  REQUIRE(h.ok());
  REQUIRE(h->token_count == text.size());
  auto loaded = LoadTokens(dir + "/out.tok", bytes);
  REQUIRE(loaded.ok());
  REQUIRE(bytes.Decode(loaded->tokens) == text);
  // Re-tokenizing a token file in place keeps it identical.
  std::string before = ReadFile(dir + "/out.tok").value();
  REQUIRE(TokenizeFile(dir + "/out.tok", dir + "/out.tok", bytes).ok());
  REQUIRE(ReadFile(dir + "/out.tok").value() == before);

  absl::Status s = TokenizeFile(dir + "/missing.txt", dir + "/x.tok", bytes);
  REQUIRE(s.code() == absl::StatusCode::kNotFound);
  REQUIRE_FALSE(fs::exists(dir + "/x.tok"));
}

TEST_CASE("LoadTokens reports every kind of bad file, naming it") {
  std::string dir = FreshDir("errors");
  ByteTokenizer bytes;
  std::vector<int32_t> tokens = {10, 20, 30, 40};
  std::string good_path = dir + "/good.tok";
  REQUIRE(WriteTokenFile(good_path, tokens, 256, "bytes").ok());
  const std::string good = ReadFile(good_path).value();
  REQUIRE(good.size() == 68);
  std::string path = dir + "/bad.tok";
  auto load = [&](const std::string& content) {
    REQUIRE(WriteFileAtomic(path, content).ok());
    return LoadTokens(path, bytes).status();
  };

  SECTION("missing") {
    absl::Status s = LoadTokens(dir + "/nope.tok", bytes).status();
    REQUIRE(s.code() == absl::StatusCode::kNotFound);
    REQUIRE(Contains(s, dir + "/nope.tok"));
  }
  SECTION("truncated payload") {
    absl::Status s = load(good.substr(0, 66));
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    REQUIRE(s.message() == path + ": truncated token file: expected 68 bytes (64-byte header + "
                                  "4 tokens x 1 bytes), file has 66");
  }
  SECTION("truncated header") {
    absl::Status s = load(good.substr(0, 20));
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    REQUIRE(s.message() == path + ": truncated token file: expected at least 64 header bytes, "
                                  "file has 20");
  }
  SECTION("trailing bytes") {
    absl::Status s = load(good + "xy");
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    REQUIRE(Contains(s, path + ": 2 trailing bytes after the 4 tokens"));
  }
  SECTION("unsupported version") {
    uint32_t v = 2;
    absl::Status s = load(Patch(good, 8, &v, 4));
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(s.message() == path + ": unsupported token file version 2 (this build reads version 1)");
  }
  SECTION("header checksum") {
    std::string bad = good;
    bad[24] = 0x02;  // vocab 256 -> 258 without fixing the header CRC.
    absl::Status s = load(bad);
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    REQUIRE(Contains(s, path + ": token file header checksum mismatch"));
  }
  SECTION("payload checksum") {
    std::string bad = good;
    bad[65] ^= 0x01;
    absl::Status s = load(bad);
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    REQUIRE(Contains(s, path + ": token payload checksum mismatch"));
  }
  SECTION("token id >= vocab") {
    // A file whose checksums are right but whose vocab (200) is below a stored id (240).
    std::vector<int32_t> big = {1, 240, 3};
    REQUIRE(WriteTokenFile(path, big, 256, "bytes").ok());
    std::string content = ReadFile(path).value();
    uint64_t vocab = 200;
    FakeTokenizer tok200("bytes", 200);
    REQUIRE(WriteFileAtomic(path, Patch(content, 24, &vocab, 8)).ok());
    absl::Status s = LoadTokens(path, tok200).status();
    REQUIRE(s.code() == absl::StatusCode::kDataLoss);
    REQUIRE(s.message() == path + ": token id 240 at position 1 is >= vocab size 200");
  }
  SECTION("bad bytes per token") {
    uint32_t w = 3;
    absl::Status s = load(Patch(good, 12, &w, 4));
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(Contains(s, "bytes per token 3 is not 1, 2 or 4"));
    uint64_t vocab = 1000;  // Needs 2 bytes, header says 1.
    s = load(Patch(good, 24, &vocab, 8));
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(Contains(s, "bytes per token 1 cannot hold ids up to vocab size 1000"));
  }
  SECTION("tokenizer mismatch") {
    FakeTokenizer other("gpt2", 50257);
    absl::Status s = LoadTokens(good_path, other).status();
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(s.message() == good_path + ": tokenized with 'bytes' (vocab 256) but the tokenizer "
                                       "in use is 'gpt2' (vocab 50257); re-tokenize the text or "
                                       "change data.tokenizer");
    FakeTokenizer same_name("bytes", 512);
    REQUIRE(LoadTokens(good_path, same_name).status().code() ==
            absl::StatusCode::kInvalidArgument);
  }
  SECTION("empty corpus") {
    REQUIRE(WriteTokenFile(path, {}, 256, "bytes").ok());
    absl::Status s = LoadTokens(path, bytes).status();
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(s.message() == path + ": empty corpus (0 tokens)");
    s = load("");
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(s.message() ==
            path + ": empty corpus (0-byte text file gives 0 tokens with tokenizer 'bytes')");
  }
  SECTION("directory") {
    absl::Status s = LoadTokens(dir, bytes).status();
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(Contains(s, dir));
  }
}

TEST_CASE("WriteTokenFile rejects bad input and leaves nothing at the path") {
  std::string dir = FreshDir("write_errors");
  std::string path = dir + "/t.tok";
  std::vector<int32_t> tokens = {1, 2, 256};
  absl::Status s = WriteTokenFile(path, tokens, 256, "bytes");
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(s.message() == "write token file " + path + ": token 256 at position 2 is outside [0, 256)");
  std::vector<int32_t> negative = {-1};
  REQUIRE(WriteTokenFile(path, negative, 256, "bytes").code() == absl::StatusCode::kInvalidArgument);
  std::vector<int32_t> ok = {1};
  REQUIRE(WriteTokenFile(path, ok, 0, "bytes").code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(WriteTokenFile(path, ok, 256, "").code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(WriteTokenFile(path, ok, 256, "a-name-that-is-25-chars-x").code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(WriteTokenFile(path, ok, 256, "a-name-that-is-24-chars-").ok());
  fs::remove(path);
  REQUIRE(fs::is_empty(dir));

  std::ofstream(dir + "/plain") << "x";
  s = WriteTokenFile(dir + "/plain/t.tok", ok, 256, "bytes");
  REQUIRE_FALSE(s.ok());
  REQUIRE(Contains(s, dir + "/plain/t.tok"));
  REQUIRE_FALSE(fs::exists(dir + "/plain/t.tok"));
}

}  // namespace
}  // namespace colossal::data
