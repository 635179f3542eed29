// The bytes one rank sends per run of a graph's communication ops, by process group,
// read off the graph: each op's collectives at the volumes of the bandwidth-optimal
// (ring) algorithms (parallel::SentByRing) — what Communicator::bytes_sent counts for
// payloads above the small-message threshold. `colossal graph` and the tensor-parallel
// benchmark print it beside the measured figures; tests hold them equal.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "graph/ir.h"

namespace colossal::graph {

// Group name → ranks in it (every group a communication op of `graph` names).
using GroupSizes = std::map<std::string, int>;

// Bytes this rank sends per forward + backward of `graph`, by group name. A group the
// sizes do not name counts as one rank (nothing sent).
std::map<std::string, int64_t> CommBytesPerRun(const Graph& graph, const GroupSizes& sizes);

}  // namespace colossal::graph
