// Token files: writer, header parser, streaming validated reader, and the
// text-or-token-file entry point.
#include "runtime/data/token_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/file_io.h"
#include "runtime/data/crc32c.h"

namespace colossal::data {
namespace {

static_assert(std::endian::native == std::endian::little,
              "token files are little-endian; a big-endian host needs byte swaps");

using checkpoint::ErrnoError;

constexpr int64_t kMaxVocab = int64_t{1} << 31;
constexpr size_t kNameOffset = 40;
constexpr size_t kChunkTokens = size_t{1} << 20;

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

uint32_t HeaderCrc(const uint8_t* header) {
  uint32_t crc = Crc32c(header, 36);
  return Crc32c(header + 40, kTokenFileHeaderBytes - 40, crc);
}

bool PrintableName(std::string_view name) {
  for (char c : name) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return !name.empty() && name.size() <= kTokenFileMaxNameBytes;
}

// An open file descriptor, closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads exactly `size` bytes at `offset` (the caller checked the file is long enough).
absl::Status ReadAt(int fd, const std::string& path, uint64_t offset, void* out, size_t size) {
  char* p = static_cast<char*>(out);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, absl::StrCat("read ", path));
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(path, ": file shrank while being read"));
    }
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

struct OpenedFile {
  uint64_t size = 0;
  bool is_token_file = false;
};

absl::StatusOr<OpenedFile> Inspect(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError(errno, absl::StrCat("stat ", path));
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a corpus file"));
  }
  OpenedFile f;
  f.size = static_cast<uint64_t>(st.st_size);
  if (f.size >= kTokenFileMagic.size()) {
    char magic[8];
    RETURN_IF_ERROR(ReadAt(fd, path, 0, magic, 8));
    f.is_token_file = std::string_view(magic, 8) == kTokenFileMagic;
  }
  return f;
}

// Parses and validates the header of a token file of `file_size` bytes.
absl::StatusOr<TokenFileHeader> ParseHeader(int fd, const std::string& path,
                                            uint64_t file_size) {
  auto invalid = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  auto data_loss = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": ", what));
  };
  if (file_size < static_cast<uint64_t>(kTokenFileHeaderBytes)) {
    return data_loss(absl::StrCat("truncated token file: expected at least ",
                                  kTokenFileHeaderBytes, " header bytes, file has ",
                                  file_size));
  }
  uint8_t raw[kTokenFileHeaderBytes];
  RETURN_IF_ERROR(ReadAt(fd, path, 0, raw, sizeof(raw)));
  TokenFileHeader h;
  h.version = Load<uint32_t>(raw + 8);
  if (h.version != kTokenFileVersion) {
    return invalid(absl::StrCat("unsupported token file version ", h.version,
                                " (this build reads version ", kTokenFileVersion, ")"));
  }
  uint32_t stored_header_crc = Load<uint32_t>(raw + 36);
  uint32_t header_crc = HeaderCrc(raw);
  if (stored_header_crc != header_crc) {
    return data_loss(absl::StrFormat("token file header checksum mismatch (stored 0x%08x, "
                                     "computed 0x%08x)",
                                     stored_header_crc, header_crc));
  }
  h.bytes_per_token = Load<uint32_t>(raw + 12);
  h.token_count = Load<uint64_t>(raw + 16);
  h.vocab_size = Load<uint64_t>(raw + 24);
  h.payload_crc32c = Load<uint32_t>(raw + 32);
  const char* name = reinterpret_cast<const char*>(raw + kNameOffset);
  size_t name_len = strnlen(name, kTokenFileMaxNameBytes);
  h.tokenizer.assign(name, name_len);
  for (size_t i = name_len; i < kTokenFileMaxNameBytes; ++i) {
    if (name[i] != '\0') return invalid("tokenizer name field is not NUL-padded");
  }
  if (!PrintableName(h.tokenizer)) {
    return invalid("tokenizer name field is empty or not printable ASCII");
  }
  if (h.vocab_size < 1 || h.vocab_size > static_cast<uint64_t>(kMaxVocab)) {
    return invalid(absl::StrCat("vocab size ", h.vocab_size, " is outside [1, ", kMaxVocab, "]"));
  }
  if (h.bytes_per_token != 1 && h.bytes_per_token != 2 && h.bytes_per_token != 4) {
    return invalid(absl::StrCat("bytes per token ", h.bytes_per_token, " is not 1, 2 or 4"));
  }
  if (static_cast<int>(h.bytes_per_token) < BytesPerToken(static_cast<int64_t>(h.vocab_size))) {
    return invalid(absl::StrCat("bytes per token ", h.bytes_per_token,
                                " cannot hold ids up to vocab size ", h.vocab_size, " - 1"));
  }
  const uint64_t payload_limit = (UINT64_MAX - kTokenFileHeaderBytes) / h.bytes_per_token;
  if (h.token_count > payload_limit) {
    return data_loss(absl::StrCat("truncated token file: header claims ", h.token_count,
                                  " tokens, file has ", file_size, " bytes"));
  }
  uint64_t expected = kTokenFileHeaderBytes + h.token_count * h.bytes_per_token;
  if (file_size < expected) {
    return data_loss(absl::StrCat("truncated token file: expected ", expected, " bytes (",
                                  kTokenFileHeaderBytes, "-byte header + ", h.token_count,
                                  " tokens x ", h.bytes_per_token, " bytes), file has ",
                                  file_size));
  }
  if (file_size > expected) {
    return data_loss(absl::StrCat(file_size - expected, " trailing bytes after the ",
                                  h.token_count, " tokens the header declares (expected ",
                                  expected, " bytes, file has ", file_size, ")"));
  }
  return h;
}

absl::StatusOr<TokenStream> LoadTokenFile(int fd, const std::string& path, uint64_t size,
                                          const Tokenizer& tokenizer) {
  ASSIGN_OR_RETURN(TokenFileHeader h, ParseHeader(fd, path, size));
  if (h.tokenizer != tokenizer.name() ||
      static_cast<int64_t>(h.vocab_size) != tokenizer.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": tokenized with '", h.tokenizer, "' (vocab ", h.vocab_size,
        ") but the tokenizer in use is '", std::string(tokenizer.name()), "' (vocab ",
        tokenizer.vocab_size(), "); re-tokenize the text or change data.tokenizer"));
  }
  if (h.token_count == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty corpus (0 tokens)"));
  }
  TokenStream out;
  out.vocab_size = static_cast<int64_t>(h.vocab_size);
  out.tokenizer = h.tokenizer;
  out.tokens.resize(h.token_count);
  std::vector<uint8_t> chunk(kChunkTokens * h.bytes_per_token);
  uint32_t crc = 0;
  int64_t bad_position = -1;
  uint32_t bad_id = 0;
  const uint32_t vocab = static_cast<uint32_t>(std::min<uint64_t>(h.vocab_size, UINT32_MAX));
  for (uint64_t first = 0; first < h.token_count; first += kChunkTokens) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkTokens, h.token_count - first));
    size_t bytes = n * h.bytes_per_token;
    RETURN_IF_ERROR(
        ReadAt(fd, path, kTokenFileHeaderBytes + first * h.bytes_per_token, chunk.data(), bytes));
    crc = Crc32c(chunk.data(), bytes, crc);
    int32_t* dst = out.tokens.data() + first;
    for (size_t i = 0; i < n; ++i) {
      uint32_t id;
      switch (h.bytes_per_token) {
        case 1: id = chunk[i]; break;
        case 2: id = Load<uint16_t>(chunk.data() + 2 * i); break;
        default: id = Load<uint32_t>(chunk.data() + 4 * i); break;
      }
      if (id >= vocab && bad_position < 0) {
        bad_position = static_cast<int64_t>(first + i);
        bad_id = id;
      }
      dst[i] = static_cast<int32_t>(id);
    }
  }
  if (crc != h.payload_crc32c) {
    return absl::DataLossError(absl::StrFormat(
        "%s: token payload checksum mismatch (header 0x%08x, computed 0x%08x): the file is "
        "corrupt",
        path, h.payload_crc32c, crc));
  }
  if (bad_position >= 0) {
    return absl::DataLossError(absl::StrCat(path, ": token id ", bad_id, " at position ",
                                            bad_position, " is >= vocab size ", h.vocab_size));
  }
  return out;
}

absl::StatusOr<TokenStream> LoadText(int fd, const std::string& path, uint64_t size,
                                     const Tokenizer& tokenizer) {
  std::string text(size, '\0');
  RETURN_IF_ERROR(ReadAt(fd, path, 0, text.data(), text.size()));
  TokenStream out;
  out.tokens = tokenizer.Encode(text);
  out.vocab_size = tokenizer.vocab_size();
  out.tokenizer = std::string(tokenizer.name());
  if (out.tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": empty corpus (", size, "-byte text file gives 0 tokens with tokenizer '",
        out.tokenizer, "')"));
  }
  return out;
}

}  // namespace

int BytesPerToken(int64_t vocab_size) {
  if (vocab_size <= 256) return 1;
  if (vocab_size <= 65536) return 2;
  return 4;
}

absl::Status WriteTokenFile(const std::string& path, std::span<const int32_t> tokens,
                            int64_t vocab_size, std::string_view tokenizer) {
  auto invalid = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("write token file ", path, ": ", what));
  };
  if (vocab_size < 1 || vocab_size > kMaxVocab) {
    return invalid(absl::StrCat("vocab size ", vocab_size, " is outside [1, ", kMaxVocab, "]"));
  }
  if (!PrintableName(tokenizer)) {
    return invalid(absl::StrCat("tokenizer name '", std::string(tokenizer),
                                "' must be 1 to 24 printable ASCII characters"));
  }
  const int bpt = BytesPerToken(vocab_size);
  std::vector<uint8_t> payload(tokens.size() * bpt);
  for (size_t i = 0; i < tokens.size(); ++i) {
    int32_t id = tokens[i];
    if (id < 0 || id >= vocab_size) {
      return invalid(absl::StrCat("token ", id, " at position ", i, " is outside [0, ",
                                  vocab_size, ")"));
    }
    switch (bpt) {
      case 1: payload[i] = static_cast<uint8_t>(id); break;
      case 2: Store<uint16_t>(payload.data() + 2 * i, static_cast<uint16_t>(id)); break;
      default: Store<uint32_t>(payload.data() + 4 * i, static_cast<uint32_t>(id)); break;
    }
  }
  uint8_t header[kTokenFileHeaderBytes] = {};
  std::memcpy(header, kTokenFileMagic.data(), 8);
  Store<uint32_t>(header + 8, kTokenFileVersion);
  Store<uint32_t>(header + 12, static_cast<uint32_t>(bpt));
  Store<uint64_t>(header + 16, tokens.size());
  Store<uint64_t>(header + 24, static_cast<uint64_t>(vocab_size));
  Store<uint32_t>(header + 32, Crc32c(payload.data(), payload.size()));
  std::memcpy(header + kNameOffset, tokenizer.data(), tokenizer.size());
  Store<uint32_t>(header + 36, HeaderCrc(header));

  ASSIGN_OR_RETURN(checkpoint::AtomicFile file, checkpoint::AtomicFile::Create(path));
  RETURN_IF_ERROR(file.Append(header, sizeof(header)));
  RETURN_IF_ERROR(file.Append(payload.data(), payload.size()));
  return file.Commit();
}

absl::StatusOr<TokenFileHeader> ReadTokenFileHeader(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, absl::StrCat("open ", path));
  ASSIGN_OR_RETURN(OpenedFile f, Inspect(fd.get(), path));
  if (!f.is_token_file) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a token file (does not start with \"", std::string(kTokenFileMagic),
        "\")"));
  }
  return ParseHeader(fd.get(), path, f.size);
}

absl::StatusOr<TokenStream> LoadTokens(const std::string& path, const Tokenizer& tokenizer) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, absl::StrCat("open corpus ", path));
  ASSIGN_OR_RETURN(OpenedFile f, Inspect(fd.get(), path));
  if (f.is_token_file) return LoadTokenFile(fd.get(), path, f.size, tokenizer);
  return LoadText(fd.get(), path, f.size, tokenizer);
}

absl::Status TokenizeFile(const std::string& in, const std::string& out,
                          const Tokenizer& tokenizer) {
  ASSIGN_OR_RETURN(TokenStream stream, LoadTokens(in, tokenizer));
  return WriteTokenFile(out, stream.tokens, stream.vocab_size, stream.tokenizer);
}

}  // namespace colossal::data
