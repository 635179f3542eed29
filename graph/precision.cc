#include "graph/precision.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace colossal::graph {

absl::StatusOr<int> SetComputePrecision(Graph& graph, DType dtype) {
  if (dtype == DType::kF32) return 0;
  if (dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("compute precision must be bf16 or f16, got ",
                                                   std::string(kernels::DTypeName(dtype))));
  }
  const std::string name = dtype == DType::kBF16 ? "bf16" : "f16";
  int marked = 0;
  for (int n = 0; n < static_cast<int>(graph.nodes().size()); ++n) {
    Node& node = graph.mutable_node(n);
    if (node.backward) {
      return absl::FailedPreconditionError("SetComputePrecision runs before autodiff (the graph has backward nodes)");
    }
    if (node.op != "matmul") continue;
    node.attrs["compute"] = name;
    ++marked;
  }
  return marked;
}

}  // namespace colossal::graph
