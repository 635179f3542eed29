// Token files: a corpus tokenized once and stored as fixed-width ids, plus the one
// entry point that turns a data path (token file or raw text) into tokens. Owns the
// on-disk format and its validation; not batching (loader.h) or tokenization itself
// (tokenizer.h).
//
// Format, version 1 (all integers little-endian):
//   offset size  field
//        0    8  magic "CLTOKENS"
//        8    4  u32 format version (1)
//       12    4  u32 bytes per token: 1, 2 or 4, the smallest holding vocab_size - 1
//       16    8  u64 token count
//       24    8  u64 vocab size (1 .. 2^31)
//       32    4  u32 CRC-32C of the payload (crc32c.h)
//       36    4  u32 CRC-32C of the header bytes [0, 36) and [40, 64)
//       40   24  tokenizer name, ASCII, NUL-padded (1 to 24 characters)
//       64       payload: token count × bytes per token, unsigned ids
// The file is exactly 64 + count × bytes-per-token bytes long.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/data/tokenizer.h"

namespace colossal::data {

inline constexpr std::string_view kTokenFileMagic = "CLTOKENS";
inline constexpr uint32_t kTokenFileVersion = 1;
inline constexpr int64_t kTokenFileHeaderBytes = 64;
inline constexpr size_t kTokenFileMaxNameBytes = 24;

// A whole corpus in memory.
struct TokenStream {
  std::vector<int32_t> tokens;
  int64_t vocab_size = 0;
  std::string tokenizer;
};

// The decoded header of a token file.
struct TokenFileHeader {
  uint32_t version = 0;
  uint32_t bytes_per_token = 0;
  uint64_t token_count = 0;
  uint64_t vocab_size = 0;
  uint32_t payload_crc32c = 0;
  std::string tokenizer;
};

// 1, 2 or 4: the fewest bytes that hold every id below `vocab_size`.
int BytesPerToken(int64_t vocab_size);

// Writes `tokens` as a token file, atomically: `path + ".tmp"`, fsync, rename, fsync
// the directory; on any error nothing new is at `path` (runtime/checkpoint/file_io.h).
// InvalidArgument (naming `path`) when vocab_size is outside [1, 2^31], the tokenizer
// name is empty, longer than 24 bytes or not printable ASCII, or a token is outside
// [0, vocab_size) (the message gives its position and value).
absl::Status WriteTokenFile(const std::string& path, std::span<const int32_t> tokens,
                            int64_t vocab_size, std::string_view tokenizer);

// Reads and validates only the header of the token file at `path` (see LoadTokens for
// the errors; payload checks are not done).
absl::StatusOr<TokenFileHeader> ReadTokenFileHeader(const std::string& path);

// Loads the corpus at `path`. A file that starts with kTokenFileMagic is a token file;
// anything else is text and is encoded with `tokenizer` (so a text file that happens
// to begin with "CLTOKENS" is not supported). Errors, each one line naming the file:
//   NotFound (or the errno's code) — missing or unreadable file;
//   DataLoss — truncated (expected vs actual bytes), trailing bytes, header or payload
//              checksum mismatch, a token id >= vocab size;
//   InvalidArgument — unsupported format version, bad bytes-per-token or vocab size,
//              a tokenizer (name or vocab size) other than `tokenizer`'s, an empty
//              corpus (0 tokens, or an empty text file).
// The payload is streamed in chunks (peak memory ≈ the returned tokens).
absl::StatusOr<TokenStream> LoadTokens(const std::string& path, const Tokenizer& tokenizer);

// `colossal tokenize`: LoadTokens(in) then WriteTokenFile(out) with the tokenizer's
// name and vocab size. `out` may equal `in` (the write is atomic).
absl::Status TokenizeFile(const std::string& in, const std::string& out,
                          const Tokenizer& tokenizer);

}  // namespace colossal::data
