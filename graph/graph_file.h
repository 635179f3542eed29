// Graph files (proto/graph.proto, text format): load into a Graph for a given
// micro-batch, and export a Graph's forward pass. Load errors are InvalidArgument naming
// the file and line:column (syntax errors from the text-format parser; semantic errors
// at the offending node or tensor), e.g.
//   "model.graph:41:3: node 12 (matmul): x [4, 64, 768] and w [512, 768] do not chain"
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "graph/ir.h"

namespace colossal::graph {

// Parses text-format GraphDef from `text`; `source` names it in errors.
absl::StatusOr<Graph> ParseGraphText(const std::string& text, const std::string& source,
                                     int64_t batch);
absl::StatusOr<Graph> LoadGraphFile(const std::string& path, int64_t batch);

// Text-format GraphDef of `graph`'s forward nodes. The first dimension of every input
// is written as "batch"; `dims` are copied. Fails for graphs holding backward nodes.
absl::StatusOr<std::string> ExportGraphText(const Graph& graph, const std::string& name);

}  // namespace colossal::graph
