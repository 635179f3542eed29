// Small helpers shared by the op definitions in graph/ops/ (shape checks with errors
// that name the op). Internal to graph/ops.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "graph/op_registry.h"
#include "runtime/base/status_macros.h"

namespace colossal::graph::ops {

inline absl::Status ShapeError(const std::string& op, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("op ", op, ": ", what));
}

inline absl::Status ExpectDType(const std::string& op, const char* name, const TensorType& t,
                                DType dtype) {
  if (t.dtype == dtype) return absl::OkStatus();
  return ShapeError(op, absl::StrCat(name, " must be ", std::string(kernels::DTypeName(dtype)),
                                     ", got ", std::string(kernels::DTypeName(t.dtype))));
}

inline absl::Status ExpectRankAtLeast(const std::string& op, const char* name,
                                      const TensorType& t, size_t rank) {
  if (t.shape.size() >= rank) return absl::OkStatus();
  return ShapeError(op, absl::StrCat(name, " needs at least ", rank, " dimensions, got ",
                                     ShapeString(t.shape)));
}

// All dimensions but the last.
inline Shape Leading(const Shape& s) { return Shape(s.begin(), s.end() - 1); }

inline int64_t Rows(const Shape& s) { return NumElements(Leading(s)); }

// The infer of ops only autodiff emits (backward ops): a graph file may not name them.
inline absl::StatusOr<std::vector<TensorType>> EmittedOnly(const std::vector<TensorType>&,
                                                           const Attrs&) {
  return absl::InvalidArgumentError("backward ops are emitted by autodiff only");
}

inline double Zero(const std::vector<TensorType>&, const Attrs&) { return 0.0; }

// The "group" attribute of a communication op: a non-empty string.
inline absl::StatusOr<std::string> GetGroupAttr(const Attrs& attrs, const std::string& op) {
  auto it = attrs.find("group");
  if (it == attrs.end() || !std::holds_alternative<std::string>(it->second) ||
      std::get<std::string>(it->second).empty()) {
    return ShapeError(op, "needs a string attribute 'group' (the process group it runs over)");
  }
  return std::get<std::string>(it->second);
}

}  // namespace colossal::graph::ops
