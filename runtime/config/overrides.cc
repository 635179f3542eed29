// `--set` overrides: parse "key.path=value" and graft the value into the YAML tree.
#include "runtime/config/overrides.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace colossal::config::internal {
namespace {

absl::Status OverrideError(absl::string_view text, absl::string_view what) {
  return absl::InvalidArgumentError(OneLine(absl::StrCat("--set '", text, "': ", what)));
}

bool IsKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

}  // namespace

absl::StatusOr<Override> ParseOverride(absl::string_view text) {
  constexpr absl::string_view kForm = "expected KEY.PATH=VALUE such as train.steps=10";
  size_t eq = text.find('=');
  if (eq == absl::string_view::npos) {
    return OverrideError(text, absl::StrCat("no '=' found; ", kForm));
  }
  Override result;
  result.text = std::string(text);
  result.dotted = std::string(absl::StripAsciiWhitespace(text.substr(0, eq)));
  absl::string_view value_text = absl::StripAsciiWhitespace(text.substr(eq + 1));
  if (result.dotted.empty()) return OverrideError(text, absl::StrCat("empty key; ", kForm));
  for (absl::string_view key : absl::StrSplit(result.dotted, '.')) {
    if (key.empty()) {
      return OverrideError(text, absl::StrCat("key '", result.dotted, "' has an empty part; ", kForm));
    }
    for (char c : key) {
      if (!IsKeyChar(c)) {
        return OverrideError(text, absl::StrCat("key '", result.dotted, "' contains '",
                                                std::string(1, c),
                                                "'; keys are letters, digits, '_' and '-' "
                                                "joined by '.'"));
      }
    }
    result.keys.emplace_back(key);
  }
  if (value_text.empty()) {
    return OverrideError(text, absl::StrCat("no value after '='; ", kForm));
  }
  try {
    result.value = YAML::Load(std::string(value_text));
  } catch (const YAML::Exception& e) {
    std::string where = e.mark.is_null()
                            ? std::string()
                            : absl::StrCat(" at column ", e.mark.column + 1, " of the value");
    return OverrideError(text, absl::StrCat("value '", value_text, "' is not valid YAML (", e.msg,
                                            where, "); write scalars, [lists] or {maps}"));
  }
  return result;
}

absl::Status ApplyOverrides(YAML::Node& root, const std::vector<std::string>& overrides,
                            YamlContext& ctx) {
  for (const std::string& text : overrides) {
    absl::StatusOr<Override> parsed = ParseOverride(text);
    if (!parsed.ok()) return parsed.status();
    const Override& o = *parsed;
    try {
      // Node copies share their target; reset() rebinds `node` rather than assigning
      // through it (assignment would overwrite the parent's content).
      YAML::Node node;
      node.reset(root);
      for (size_t i = 0; i + 1 < o.keys.size(); ++i) {
        YAML::Node child = node[o.keys[i]];
        if (!child.IsDefined() || child.IsNull()) {
          child = YAML::Node(YAML::NodeType::Map);
        } else if (!child.IsMap()) {
          std::string prefix =
              absl::StrJoin(o.keys.begin(), o.keys.begin() + static_cast<long>(i) + 1, ".");
          return OverrideError(text, absl::StrCat(prefix, " is ", Describe(child),
                                                  ", not a map, so it has no key '",
                                                  o.keys[i + 1], "'; set ", prefix,
                                                  "={...} instead"));
        }
        node.reset(child);
      }
      node[o.keys.back()] = o.value;
    } catch (const YAML::Exception& e) {
      return OverrideError(text, absl::StrCat("cannot apply (", e.msg, ")"));
    }
    ctx.AddOverride(o.dotted, o.text);
  }
  return absl::OkStatus();
}

}  // namespace colossal::config::internal
