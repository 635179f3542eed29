// Typed, located reads from a yaml-cpp tree (see yaml_reader.h). Nothing here throws:
// only accessors that cannot throw on the node kinds checked first are used.
#include "runtime/config/yaml_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossal::config::internal {
namespace {

bool IsUnder(absl::string_view path, absl::string_view root) {
  if (path.size() < root.size() || path.substr(0, root.size()) != root) return false;
  if (path.size() == root.size()) return true;
  char next = path[root.size()];
  return next == '.' || next == '[';
}

// A scalar written in quotes (or tagged !!str) is a string, never a number or a bool.
bool IsQuoted(const YAML::Node& node) {
  return node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str";
}

bool LooksBool(absl::string_view s) {
  std::string lower = absl::AsciiStrToLower(s);
  return lower == "true" || lower == "false" || lower == "yes" || lower == "no" ||
         lower == "on" || lower == "off";
}

bool AllDigits(absl::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
}

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

// Common rejection of non-scalars, quoted strings and booleans for numeric reads.
absl::Status CheckNumberLike(const YAML::Node& node, absl::string_view expected) {
  if (!node.IsScalar()) return Invalid(absl::StrCat("expected ", expected, ", got ", Describe(node)));
  if (IsQuoted(node)) {
    return Invalid(absl::StrCat("expected ", expected, ", got the string ", Describe(node),
                                " (a number is written without quotes)"));
  }
  if (LooksBool(node.Scalar())) {
    return Invalid(absl::StrCat("expected ", expected, ", got the boolean ", Describe(node)));
  }
  return absl::OkStatus();
}

}  // namespace

void YamlContext::AddOverride(std::string dotted, std::string text) {
  overrides_.emplace_back(std::move(dotted), std::move(text));
}

const std::string* YamlContext::OverrideFor(absl::string_view path) const {
  for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it) {
    if (IsUnder(path, it->first)) return &it->second;
  }
  return nullptr;
}

std::string YamlContext::Where(const YAML::Node& node, absl::string_view path) const {
  if (const std::string* text = OverrideFor(path)) return absl::StrCat("--set '", *text, "'");
  if (node.IsDefined()) {
    YAML::Mark mark = node.Mark();
    if (!mark.is_null()) return absl::StrCat(source_, ":", mark.line + 1, ":", mark.column + 1);
  }
  // A node made while applying an override (an intermediate map): blame the override.
  for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it) {
    if (!path.empty() && IsUnder(it->first, path)) return absl::StrCat("--set '", it->second, "'");
  }
  return source_;
}

void YamlContext::Note(absl::string_view path, std::string where) {
  where_.insert_or_assign(std::string(path), std::move(where));
}

std::string YamlContext::WhereKey(absl::string_view path) const {
  absl::string_view p = path;
  while (!p.empty()) {
    auto it = where_.find(p);
    if (it != where_.end()) return it->second;
    size_t cut = p.find_last_of(".[");
    p = (cut == absl::string_view::npos) ? absl::string_view() : p.substr(0, cut);
  }
  return source_;
}

absl::Status YamlContext::Error(absl::string_view where, absl::string_view path,
                                absl::string_view what) const {
  if (path.empty()) return Invalid(OneLine(absl::StrCat(where, ": ", what)));
  return Invalid(OneLine(absl::StrCat(where, ": ", path, ": ", what)));
}

std::string OneLine(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  return out;
}

std::string JoinPath(absl::string_view parent, absl::string_view key) {
  if (parent.empty()) return std::string(key);
  return absl::StrCat(parent, ".", key);
}

int EditDistance(absl::string_view a, absl::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::string NearestCandidate(absl::string_view word, const std::vector<std::string>& candidates) {
  std::string lower_word = absl::AsciiStrToLower(word);
  std::string best;
  int best_distance = 1 << 30;
  for (const std::string& candidate : candidates) {
    int distance = EditDistance(lower_word, absl::AsciiStrToLower(candidate));
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  if (best.empty()) return "";
  int limit = std::max<int>(1, static_cast<int>(std::max(word.size(), best.size())) / 3);
  return best_distance <= limit ? best : "";
}

std::string SuggestionHint(absl::string_view word, const std::vector<std::string>& candidates) {
  std::string nearest = NearestCandidate(word, candidates);
  if (!nearest.empty()) return absl::StrCat("did you mean '", nearest, "'?");
  return absl::StrCat("expected one of ", absl::StrJoin(candidates, ", "));
}

std::string Describe(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return "nothing (null)";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  std::string text = node.Scalar();
  if (text.size() > 40) text = absl::StrCat(text.substr(0, 37), "...");
  if (IsQuoted(node)) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("'", text, "'");
}

absl::StatusOr<int64_t> ScalarToInt(const YAML::Node& node) {
  if (absl::Status s = CheckNumberLike(node, "an integer"); !s.ok()) return s;
  const std::string& text = node.Scalar();
  int64_t value = 0;
  if (absl::SimpleAtoi(text, &value)) return value;
  if (AllDigits(text)) return Invalid(absl::StrCat("integer ", text, " is out of range"));
  double number = 0;
  if (absl::SimpleAtod(text, &number)) {
    return Invalid(absl::StrCat("expected an integer, got the non-integer number ", text));
  }
  return Invalid(absl::StrCat("expected an integer, got ", Describe(node)));
}

absl::StatusOr<uint64_t> ScalarToUint(const YAML::Node& node) {
  if (absl::Status s = CheckNumberLike(node, "a non-negative integer"); !s.ok()) return s;
  const std::string& text = node.Scalar();
  uint64_t value = 0;
  if (!text.empty() && text[0] != '-' && absl::SimpleAtoi(text, &value)) return value;
  int64_t negative = 0;
  if (absl::SimpleAtoi(text, &negative)) {
    return Invalid(absl::StrCat("expected a non-negative integer, got ", text));
  }
  if (AllDigits(text)) return Invalid(absl::StrCat("integer ", text, " is out of range"));
  return Invalid(absl::StrCat("expected a non-negative integer, got ", Describe(node)));
}

absl::StatusOr<double> ScalarToDouble(const YAML::Node& node) {
  if (absl::Status s = CheckNumberLike(node, "a number"); !s.ok()) return s;
  double value = 0;
  if (!absl::SimpleAtod(node.Scalar(), &value)) {
    return Invalid(absl::StrCat("expected a number, got ", Describe(node)));
  }
  if (!std::isfinite(value)) {
    return Invalid(absl::StrCat("expected a finite number, got ", Describe(node)));
  }
  return value;
}

absl::StatusOr<bool> ScalarToBool(const YAML::Node& node) {
  if (node.IsScalar() && !IsQuoted(node)) {
    const std::string& s = node.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  return Invalid(absl::StrCat("expected true or false, got ", Describe(node)));
}

absl::StatusOr<std::string> ScalarToString(const YAML::Node& node) {
  if (!node.IsScalar()) return Invalid(absl::StrCat("expected a string, got ", Describe(node)));
  return node.Scalar();
}

absl::StatusOr<MapReader> MapReader::Open(YamlContext& ctx, const YAML::Node& node,
                                          std::string path, std::string where,
                                          absl::string_view expected, bool null_is_empty) {
  MapReader reader(ctx, path);
  if (!path.empty()) ctx.Note(path, where);
  if (node.IsNull() && null_is_empty) return reader;
  if (!node.IsMap()) {
    return ctx.Error(where, path, absl::StrCat("expected ", expected, ", got ", Describe(node)));
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    Entry entry;
    entry.key_is_name = it->first.IsScalar();
    entry.key = entry.key_is_name ? it->first.Scalar() : std::string();
    entry.key_node = it->first;
    entry.value = it->second;
    reader.entries_.push_back(std::move(entry));
  }
  return reader;
}

absl::StatusOr<MapReader> MapReader::Map(absl::string_view key, absl::string_view expected) const {
  const Entry* entry = Read(key);
  if (entry == nullptr) return MapReader(*ctx_, Path(key));
  absl::StatusOr<MapReader> reader =
      Open(*ctx_, entry->value, Path(key), WhereValue(key), expected, /*null_is_empty=*/true);
  // Keys missing from the section are reported where the section is named ("train:").
  if (reader.ok()) ctx_->Note(Path(key), ctx_->Where(entry->key_node, Path(key)));
  return reader;
}

absl::Status MapReader::CheckKeys(const std::vector<std::string>& known) const {
  std::map<std::string, const Entry*> seen;
  for (const Entry& entry : entries_) {
    if (!entry.key_is_name) {
      return ctx_->Error(ctx_->Where(entry.key_node, path_), path_,
                         absl::StrCat("keys must be plain names, got ",
                                      Describe(entry.key_node), " as a key"));
    }
    const std::string path = Path(entry.key);
    const std::string where = ctx_->Where(entry.key_node, path);
    auto [it, inserted] = seen.emplace(entry.key, &entry);
    if (!inserted) {
      return ctx_->Error(where, path,
                         absl::StrCat("duplicate key (first written at ",
                                      ctx_->Where(it->second->key_node, path),
                                      "); write each key once"));
    }
    if (std::find(known.begin(), known.end(), entry.key) == known.end()) {
      return ctx_->Error(where, path,
                         absl::StrCat("unknown key '", entry.key, "'; ",
                                      SuggestionHint(entry.key, known)));
    }
  }
  return absl::OkStatus();
}

const MapReader::Entry* MapReader::Find(absl::string_view key) const {
  for (const Entry& entry : entries_) {
    if (entry.key_is_name && entry.key == key) return &entry;
  }
  return nullptr;
}

const MapReader::Entry* MapReader::Read(absl::string_view key) const {
  const Entry* entry = Find(key);
  if (entry != nullptr) ctx_->Note(Path(key), WhereValue(key));
  return entry;
}

YAML::Node MapReader::Get(absl::string_view key) const {
  const Entry* entry = Read(key);
  return entry == nullptr ? YAML::Node() : entry->value;
}

std::string MapReader::WhereValue(absl::string_view key) const {
  const Entry* entry = Find(key);
  if (entry == nullptr) return WhereMap();
  // yaml-cpp marks an empty value at the start of the next line: point at its key.
  if (entry->value.IsNull()) return ctx_->Where(entry->key_node, Path(key));
  return ctx_->Where(entry->value, Path(key));
}

absl::Status MapReader::ErrorAt(absl::string_view key, absl::string_view what) const {
  return ctx_->Error(WhereValue(key), Path(key), what);
}

absl::Status MapReader::Missing(absl::string_view key, absl::string_view expected) const {
  return ctx_->Error(WhereMap(), Path(key),
                     absl::StrCat("required key is missing; expected ", expected));
}

#define COLOSSAL_READ_SCALAR(Method, Type, Convert)                         \
  absl::Status MapReader::Method(absl::string_view key, Type* out) const {   \
    const Entry* entry = Read(key);                                         \
    if (entry == nullptr) return absl::OkStatus();                          \
    absl::StatusOr<Type> value = Convert(entry->value);                     \
    if (!value.ok()) return ErrorAt(key, value.status().message());         \
    *out = *std::move(value);                                               \
    return absl::OkStatus();                                                \
  }

COLOSSAL_READ_SCALAR(Int, int64_t, ScalarToInt)
COLOSSAL_READ_SCALAR(Uint, uint64_t, ScalarToUint)
COLOSSAL_READ_SCALAR(Double, double, ScalarToDouble)
COLOSSAL_READ_SCALAR(Bool, bool, ScalarToBool)
COLOSSAL_READ_SCALAR(String, std::string, ScalarToString)

#undef COLOSSAL_READ_SCALAR

absl::Status MapReader::StringList(absl::string_view key, std::vector<std::string>* out) const {
  const Entry* entry = Read(key);
  if (entry == nullptr) return absl::OkStatus();
  if (!entry->value.IsSequence()) {
    return ErrorAt(key, absl::StrCat("expected a list of strings such as [a, b], got ",
                                     Describe(entry->value)));
  }
  std::vector<std::string> items;
  for (size_t i = 0; i < entry->value.size(); ++i) {
    YAML::Node item = entry->value[i];
    std::string item_path = absl::StrCat(Path(key), "[", i, "]");
    absl::StatusOr<std::string> text = ScalarToString(item);
    if (!text.ok()) return ctx_->Error(ctx_->Where(item, item_path), item_path, text.status().message());
    if (text->empty()) {
      return ctx_->Error(ctx_->Where(item, item_path), item_path, "must not be empty");
    }
    items.push_back(*std::move(text));
  }
  *out = std::move(items);
  return absl::OkStatus();
}

absl::Status MapReader::IntList(absl::string_view key, std::vector<int64_t>* out) const {
  const Entry* entry = Read(key);
  if (entry == nullptr) return absl::OkStatus();
  if (!entry->value.IsSequence()) {
    return ErrorAt(key, absl::StrCat("expected a list of integers such as [2, 3], got ",
                                     Describe(entry->value)));
  }
  std::vector<int64_t> items;
  for (size_t i = 0; i < entry->value.size(); ++i) {
    YAML::Node item = entry->value[i];
    std::string item_path = absl::StrCat(Path(key), "[", i, "]");
    absl::StatusOr<int64_t> value = ScalarToInt(item);
    if (!value.ok()) return ctx_->Error(ctx_->Where(item, item_path), item_path, value.status().message());
    ctx_->Note(item_path, ctx_->Where(item, item_path));
    items.push_back(*value);
  }
  *out = std::move(items);
  return absl::OkStatus();
}

absl::StatusOr<size_t> MapReader::EnumIndex(absl::string_view key,
                                            const std::vector<std::string>& words) const {
  const Entry* entry = Read(key);
  absl::StatusOr<std::string> text = ScalarToString(entry->value);
  if (!text.ok()) {
    return ErrorAt(key, absl::StrCat("expected one of ", absl::StrJoin(words, "|"), ", got ",
                                     Describe(entry->value)));
  }
  for (size_t i = 0; i < words.size(); ++i) {
    if (words[i] == *text) return i;
  }
  std::string nearest = NearestCandidate(*text, words);
  std::string hint = nearest.empty()
                         ? absl::StrCat("expected one of ", absl::StrJoin(words, "|"))
                         : absl::StrCat("did you mean '", nearest, "'? (one of ",
                                        absl::StrJoin(words, "|"), ")");
  return ErrorAt(key, absl::StrCat("unknown value '", *text, "'; ", hint));
}

}  // namespace colossal::config::internal
