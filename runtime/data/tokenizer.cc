// The byte tokenizer and the tokenizer registry.
#include "runtime/data/tokenizer.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossal::data {

std::vector<int32_t> ByteTokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::Decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && id < 256) {
      out.push_back(static_cast<char>(id));
    } else {
      out.append(kReplacementChar);
    }
  }
  return out;
}

std::vector<std::string> KnownTokenizers() { return {std::string(ByteTokenizer::kName)}; }

absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer(std::string_view name) {
  if (name == ByteTokenizer::kName) return std::make_unique<ByteTokenizer>();
  return absl::InvalidArgumentError(absl::StrCat("unknown tokenizer '", std::string(name),
                                                 "' (known: ",
                                                 absl::StrJoin(KnownTokenizers(), ", "), ")"));
}

}  // namespace colossal::data
