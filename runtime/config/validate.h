// Range and consistency checks of a parsed JobSpec (every field already holds its
// effective value). Owns: "what values are allowed" and "which fields must agree";
// does not own parsing or types (job_spec.cc, yaml_reader.cc). Errors point at the key
// through the YamlContext's recorded locations (the parent's when the key was left to
// its default). Internal to //runtime/config.
#pragma once

#include "absl/status/status.h"
#include "runtime/config/job_spec.h"
#include "runtime/config/yaml_reader.h"

namespace colossal::config::internal {

// The first violated rule, as InvalidArgument "WHERE: dotted.key: what, what is right";
// OK when the spec is valid.
// With Unbuilt::kRefuse, a valid spec that asks for a feature this build lacks fails
// last, naming the key: "KEY: ... not available yet; ...".
absl::Status ValidateJobSpec(const JobSpec& spec, const YamlContext& ctx, Unbuilt unbuilt);

}  // namespace colossal::config::internal
