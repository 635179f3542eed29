// CLI argument parsing and error reporting.
#include "runtime/cli/args.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace colossal::cli {

absl::StatusOr<ParsedArgs> ParseArgs(const std::string& command,
                                     const std::vector<std::string>& args,
                                     const std::set<std::string>& with_value,
                                     const std::set<std::string>& switches) {
  ParsedArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      out.positional.push_back(a);
      continue;
    }
    std::string flag = a, value;
    bool has_inline = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_inline = true;
    }
    const bool takes_value = flag == "--set" || with_value.count(flag);
    if (!takes_value && !switches.count(flag)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag, " for '", command, "'"));
    }
    if (takes_value && !has_inline) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      }
      value = args[++i];
    }
    if (!takes_value) {
      if (has_inline) return absl::InvalidArgumentError(absl::StrCat(flag, " takes no value"));
      out.switches.insert(flag);
    } else if (flag == "--set") {
      out.sets.push_back(value);
    } else {
      out.values[flag] = value;
    }
  }
  return out;
}

int ReportError(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "colossal %s: %s\n", command.c_str(), std::string(status.message()).c_str());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kUnauthenticated:
      return 2;
    default:
      return 1;
  }
}

}  // namespace colossal::cli
