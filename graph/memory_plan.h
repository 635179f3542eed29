// Liveness-based memory plan for every value the executor keeps in its arena (inputs,
// activations, activation gradients): one arena, each value at an offset, values whose
// lifetimes do not overlap sharing bytes. Ops may declare in-place (output, input)
// pairs; when the input dies at that node the output takes over its storage.
//
// Lifetime of a value over a schedule's positions [0, N) (schedule.h; not node ids):
// from its first writer to its last reader or writer (an asynchronous node reads and
// writes until its wait entry); inputs (filled before a run, possibly once for many runs) and graph
// outputs live for the whole schedule. Offsets are assigned
// greedily, largest first, at the lowest gap free for the whole lifetime (the
// "greedy by size" planner of TFLite), aligned to 64 bytes. A node's scratch (its op's
// working memory) is a block living at that node's position alone.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "graph/schedule.h"

namespace colossal::graph {

struct MemoryPlan {
  int64_t arena_bytes = 0;
  // Sum of all arena values' sizes: what the plan would take without reuse.
  int64_t unshared_bytes = 0;
  // Per value: byte offset into the arena, or -1 for values not in the arena (params).
  std::vector<int64_t> offset;
  // Per node id: the byte offset of its scratch (OpDef::scratch), live at its schedule
  // position only, or -1 for none.
  std::vector<int64_t> scratch_offset;
  // The largest one node's scratch (part of arena_bytes at that node's position).
  int64_t max_scratch_bytes = 0;
  // Per value: the value whose storage it shares (itself when none).
  std::vector<int> storage;
  // Peak bytes live at once during the schedule's forward part only (activation memory held
  // between forward and backward, plus the forward working set).
  int64_t forward_peak_bytes = 0;
};

bool InArena(const Value& v);

// Plans over `schedule` (validated first: InvalidArgument naming the entry).
absl::StatusOr<MemoryPlan> PlanMemory(const Graph& graph, const Schedule& schedule);
// Plans over DefaultSchedule(graph).
absl::StatusOr<MemoryPlan> PlanMemory(const Graph& graph);

}  // namespace colossal::graph
