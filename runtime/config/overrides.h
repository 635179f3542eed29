// `--set dotted.key=value` overrides, applied to a parsed YAML tree before it is read.
// Owns: parsing an override string and grafting its value into the tree (making the
// maps on its way); records each override in the YamlContext so later errors about its
// keys name the override. Does not own which keys exist (job_spec.cc checks the tree).
// Internal to //runtime/config.
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/config/yaml_reader.h"

namespace colossal::config::internal {

struct Override {
  std::string text;                // as given, for error messages
  std::vector<std::string> keys;   // "train.steps" -> {"train", "steps"}
  std::string dotted;              // "train.steps"
  YAML::Node value;                // the value, parsed as YAML
};

// Splits "key.path=value" at the first '='; the value is YAML (scalar, [list], {map}).
// Errors (InvalidArgument, "--set 'TEXT': ..."): no '=', an empty key or key part, a
// missing value, a value that is not valid YAML.
absl::StatusOr<Override> ParseOverride(absl::string_view text);

// Parses and applies `overrides` in order to `root` (a map); a later override of the
// same key wins. Setting below a key whose value is not a map (a scalar or a list) is
// an error naming the override; an intermediate key that is absent or null becomes a map.
absl::Status ApplyOverrides(YAML::Node& root, const std::vector<std::string>& overrides,
                            YamlContext& ctx);

}  // namespace colossal::config::internal
