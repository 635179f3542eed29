// A small argument parser for the CLI: positional arguments, `--flag value`,
// `--flag=value`, repeatable `--set k=v`, and boolean switches. Unknown flags are
// errors naming the flag and the command.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::cli {

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;   // --flag value
  std::vector<std::string> sets;               // every --set
  std::set<std::string> switches;              // --flag (no value)

  bool Has(const std::string& flag) const { return switches.count(flag) || values.count(flag); }
  std::string Get(const std::string& flag, const std::string& fallback = "") const {
    auto it = values.find(flag);
    return it == values.end() ? fallback : it->second;
  }
};

// `with_value` lists flags that take a value; `switches` those that do not; "--set" is
// always accepted and repeatable.
absl::StatusOr<ParsedArgs> ParseArgs(const std::string& command,
                                     const std::vector<std::string>& args,
                                     const std::set<std::string>& with_value,
                                     const std::set<std::string>& switches);

// Maps a Status to the exit code: 2 for bad input, 1 otherwise; prints
// "colossal <command>: <message>" to stderr.
int ReportError(const std::string& command, const absl::Status& status);

}  // namespace colossal::cli
