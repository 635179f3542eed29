// Tokenizers: text ↔ token ids. Owns the Tokenizer interface, the byte tokenizer and
// the name → tokenizer registry (the job YAML's `data.tokenizer`). Does not own token
// files (token_file.h) or batching (loader.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::data {

// The UTF-8 replacement character U+FFFD, written by Decode for ids a tokenizer does
// not know (a model's vocabulary may be larger than its tokenizer's, so sampled ids can
// fall outside it).
inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Stateless after construction: every method is const and safe to call from several
// threads at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`, each in [0, vocab_size()).
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;
  // The text of `ids`; an id outside [0, vocab_size()) becomes kReplacementChar.
  virtual std::string Decode(std::span<const int32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // The registry name ("bytes"), also stored in token files.
  virtual std::string_view name() const = 0;
};

// Token = byte value, vocabulary 256. Encode never fails and Decode(Encode(s)) == s
// for every byte string (UTF-8 or not).
class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr std::string_view kName = "bytes";

  std::vector<int32_t> Encode(std::string_view text) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
  int64_t vocab_size() const override { return 256; }
  std::string_view name() const override { return kName; }
};

// Names MakeTokenizer accepts, in the order error messages list them.
std::vector<std::string> KnownTokenizers();

// The tokenizer called `name`. InvalidArgument naming the known ones otherwise.
absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(std::string_view name);

}  // namespace colossal::data
