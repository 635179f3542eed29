// Typed reads from a yaml-cpp tree, with every error naming where the value was written.
// Owns: the error location of a dotted key ("job.yaml:7:14", "--set 'k=v'", or just the
// source), strict scalar parsing (an int is not a float, a bool or a quoted string),
// unknown-key detection with the nearest known key suggested. Does not own the job
// schema (job_spec.cc) or range and consistency checks (validate.cc).
// Internal to //runtime/config. Not thread-safe; one YamlContext per parse.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colossal::config::internal {

// Where keys were written. Locations of keys that were read are recorded, so checks
// made after parsing (validate.cc) can point at the key, or at its nearest written
// ancestor when the key was left to its default.
class YamlContext {
 public:
  explicit YamlContext(std::string source) : source_(std::move(source)) {}

  const std::string& source() const { return source_; }

  // Declares that the subtree at `dotted` came from the override `text`: errors at or
  // below it name the override instead of a line of the source.
  void AddOverride(std::string dotted, std::string text);

  // "SOURCE:LINE:COL" (1-based) for a node parsed from the source; "--set 'TEXT'" for
  // a node at or below an override; else the source alone.
  std::string Where(const YAML::Node& node, absl::string_view path) const;

  // Records that `path` was written at `where`.
  void Note(absl::string_view path, std::string where);
  bool Written(absl::string_view path) const { return where_.count(std::string(path)) > 0; }
  // The recorded location of `path`, else of its nearest recorded ancestor, else the
  // source alone.
  std::string WhereKey(absl::string_view path) const;

  // InvalidArgument "WHERE: PATH: WHAT" (one line).
  absl::Status Error(absl::string_view where, absl::string_view path,
                     absl::string_view what) const;
  // Error at the recorded location of `path` (or its nearest ancestor's).
  absl::Status ErrorKey(absl::string_view path, absl::string_view what) const {
    return Error(WhereKey(path), path, what);
  }

 private:
  const std::string* OverrideFor(absl::string_view path) const;

  std::string source_;
  std::vector<std::pair<std::string, std::string>> overrides_;  // dotted path, text
  std::map<std::string, std::string, std::less<>> where_;
};

// Debian's absl has its own absl::string_view (not std::string_view): this views a
// std::string_view (the public API's type) as one, for absl::StrCat and friends.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// `text` with control characters escaped (\n, \t, \xNN), so that every message stays on
// one line whatever the YAML or the override held.
std::string OneLine(absl::string_view text);

// Joins a parent path and a key: ("train", "steps") -> "train.steps"; ("", "name") -> "name".
std::string JoinPath(absl::string_view parent, absl::string_view key);

// Levenshtein distance with adjacent transpositions (optimal string alignment).
int EditDistance(absl::string_view a, absl::string_view b);
// The candidate nearest to `word` when it is close enough to be a likely typo, else "".
std::string NearestCandidate(absl::string_view word, const std::vector<std::string>& candidates);
// "did you mean 'x'?" when a candidate is close, else "expected one of a, b, c".
std::string SuggestionHint(absl::string_view word, const std::vector<std::string>& candidates);

// A short description of a node for "got ..." in messages: "'abc'", "a list", "a map",
// "nothing (null)".
std::string Describe(const YAML::Node& node);

// Strict scalar conversions. `what` on error is the reason without location
// ("expected an integer, got 1.5").
absl::StatusOr<int64_t> ScalarToInt(const YAML::Node& node);
absl::StatusOr<uint64_t> ScalarToUint(const YAML::Node& node);
absl::StatusOr<double> ScalarToDouble(const YAML::Node& node);
absl::StatusOr<bool> ScalarToBool(const YAML::Node& node);
absl::StatusOr<std::string> ScalarToString(const YAML::Node& node);

// A map of the tree, read key by key. Keys are checked against a known list once
// (CheckKeys); reads of absent keys leave the output unchanged (the default).
class MapReader {
 public:
  // `node` (written at `where`) must be a map; a null node (a key with nothing after
  // it) reads as an empty map when `null_is_empty`. Records `where` under `path` (the
  // root, path "", records nothing: its absent keys are located by the source alone).
  // `expected` completes "expected ..., got a list".
  static absl::StatusOr<MapReader> Open(YamlContext& ctx, const YAML::Node& node,
                                        std::string path, std::string where,
                                        absl::string_view expected, bool null_is_empty);

  // The map under `key` (absent: an empty reader, so every read keeps its default).
  // Its location, for keys missing from it, is where `key` is written.
  absl::StatusOr<MapReader> Map(absl::string_view key, absl::string_view expected) const;

  const std::string& path() const { return path_; }
  std::string Path(absl::string_view key) const { return JoinPath(path_, key); }

  // Rejects keys that are not strings, duplicate keys, and keys not in `known` (with
  // the nearest known key suggested).
  absl::Status CheckKeys(const std::vector<std::string>& known) const;

  bool Has(absl::string_view key) const { return Find(key) != nullptr; }
  // The value node of `key` (undefined node when absent).
  YAML::Node Get(absl::string_view key) const;
  // Where the value of `key` was written (its key's mark when the value is null).
  std::string WhereValue(absl::string_view key) const;
  // Where the map itself was written (for absent keys).
  std::string WhereMap() const { return ctx_->WhereKey(path_); }

  // InvalidArgument at the value of `key` (or at the map when `key` is absent).
  absl::Status ErrorAt(absl::string_view key, absl::string_view what) const;
  // "required key is missing; expected WHAT" at the map.
  absl::Status Missing(absl::string_view key, absl::string_view expected) const;

  absl::Status Int(absl::string_view key, int64_t* out) const;
  absl::Status Uint(absl::string_view key, uint64_t* out) const;
  absl::Status Double(absl::string_view key, double* out) const;
  absl::Status Bool(absl::string_view key, bool* out) const;
  absl::Status String(absl::string_view key, std::string* out) const;
  absl::Status StringList(absl::string_view key, std::vector<std::string>* out) const;
  absl::Status IntList(absl::string_view key, std::vector<int64_t>* out) const;

  // Reads one of `names` (each paired with its value) into *out.
  template <typename E>
  absl::Status Enum(absl::string_view key,
                    const std::vector<std::pair<std::string, E>>& names, E* out) const {
    if (!Has(key)) return absl::OkStatus();
    std::vector<std::string> words;
    for (const auto& [name, value] : names) words.push_back(name);
    absl::StatusOr<size_t> index = EnumIndex(key, words);
    if (!index.ok()) return index.status();
    *out = names[*index].second;
    return absl::OkStatus();
  }

 private:
  struct Entry {
    bool key_is_name = true;  // a scalar key
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };

  MapReader(YamlContext& ctx, std::string path) : ctx_(&ctx), path_(std::move(path)) {}
  const Entry* Find(absl::string_view key) const;
  // Notes the value's location and returns it, or nullptr when absent.
  const Entry* Read(absl::string_view key) const;
  absl::StatusOr<size_t> EnumIndex(absl::string_view key,
                                   const std::vector<std::string>& words) const;

  YamlContext* ctx_;
  std::string path_;
  std::vector<Entry> entries_;
};

}  // namespace colossal::config::internal
