// Lifetimes, in-place merging and greedy offset assignment.
#include "graph/memory_plan.h"

#include <algorithm>
#include <numeric>

#include "graph/op_registry.h"

namespace colossal::graph {
namespace {

constexpr int64_t kAlign = 64;

int64_t AlignUp(int64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

}  // namespace

bool InArena(const Value& v) {
  return v.kind == ValueKind::kInput || v.kind == ValueKind::kActivation ||
         v.kind == ValueKind::kGrad;
}

absl::StatusOr<MemoryPlan> PlanMemory(const Graph& graph) {
  return PlanMemory(graph, DefaultSchedule(graph));
}

absl::StatusOr<MemoryPlan> PlanMemory(const Graph& graph, const Schedule& schedule) {
  if (absl::Status s = ValidateSchedule(graph, schedule); !s.ok()) return s;
  const int num_values = static_cast<int>(graph.values().size());
  // Times are positions in the schedule, not node ids.
  const int num_nodes = static_cast<int>(schedule.entries.size());
  // An asynchronous node (a later kCommWait entry) holds its values from its post to its
  // wait.
  std::vector<int> span_end(graph.nodes().size(), -1);
  for (int n = 0; n < num_nodes; ++n) {
    if (schedule.entries[n].phase == Phase::kCommWait) span_end[schedule.entries[n].node] = n;
  }
  std::vector<int> first(num_values, -1), last(num_values, -1);
  for (int n = 0; n < num_nodes; ++n) {
    if (schedule.entries[n].phase == Phase::kCommWait) continue;
    const Node& node = graph.node(schedule.entries[n].node);
    const int end = std::max(n, span_end[schedule.entries[n].node]);
    for (int v : node.inputs) last[v] = std::max(last[v], end);
    for (int v : node.outputs) {
      if (first[v] < 0) first[v] = n;
      last[v] = std::max(last[v], end);
    }
  }
  // Inputs are filled before a run and may be read again by a later run (the loss seed
  // and positions are written once): they live for the whole schedule.
  for (int v : graph.inputs()) first[v] = 0, last[v] = num_nodes;
  for (int v : graph.outputs()) last[v] = num_nodes;
  for (int v = 0; v < num_values; ++v) {
    if (!InArena(graph.value(v)) || first[v] >= 0 || last[v] < 0) continue;
    return absl::InvalidArgumentError("value '" + graph.value(v).name +
                                      "' is read but never written");
  }

  MemoryPlan plan;
  plan.storage.resize(num_values);
  std::iota(plan.storage.begin(), plan.storage.end(), 0);
  // Group lifetime, keyed by the storage root.
  std::vector<int> g_first = first, g_last = last;
  std::vector<bool> pinned(num_values, false);  // inputs and outputs keep their own storage
  for (int v : graph.inputs()) pinned[v] = true;
  for (int v : graph.outputs()) pinned[v] = true;

  for (int n = 0; n < num_nodes; ++n) {
    if (schedule.entries[n].phase == Phase::kCommWait) continue;
    const Node& node = graph.node(schedule.entries[n].node);
    const OpDef* def = FindOp(node.op);
    for (auto [o, i] : def->in_place) {
      if (o >= static_cast<int>(node.outputs.size()) || i >= static_cast<int>(node.inputs.size()))
        continue;
      int out = node.outputs[o], in = node.inputs[i];
      int root = plan.storage[in];
      const Value& ov = graph.value(out);
      const Value& iv = graph.value(in);
      if (!InArena(ov) || !InArena(iv) || pinned[out] || pinned[root] || out == in) continue;
      if (plan.storage[out] != out || first[out] != n || g_last[root] != n) continue;
      if (ov.bytes() != graph.value(root).bytes()) continue;
      // Every other input of the node must not live in the same storage.
      bool clash = false;
      for (size_t k = 0; k < node.inputs.size(); ++k) {
        if (static_cast<int>(k) != i && plan.storage[node.inputs[k]] == root &&
            node.inputs[k] != in)
          clash = true;
      }
      if (clash) continue;
      plan.storage[out] = root;
      g_last[root] = std::max(g_last[root], last[out]);
    }
  }

  struct Block {
    int root;  // the storage root, or -1 − node for a node's scratch
    int64_t bytes;
    int first, last;
    int64_t offset = -1;
  };
  std::vector<Block> blocks;
  for (int v = 0; v < num_values; ++v) {
    const Value& value = graph.value(v);
    if (!InArena(value) || first[v] < 0) continue;
    plan.unshared_bytes += AlignUp(value.bytes());
    if (plan.storage[v] != v) continue;
    blocks.push_back({v, AlignUp(std::max<int64_t>(value.bytes(), 1)), g_first[v], g_last[v]});
  }
  auto types = [&](const std::vector<int>& ids) {
    std::vector<TensorType> t;
    for (int v : ids) t.push_back({graph.value(v).shape, graph.value(v).dtype});
    return t;
  };
  for (int n = 0; n < num_nodes; ++n) {
    const int id = schedule.entries[n].node;
    if (schedule.entries[n].phase == Phase::kCommWait) continue;
    const Node& node = graph.node(id);
    const OpDef* def = FindOp(node.op);
    if (!def->scratch) continue;
    const int64_t bytes = def->scratch(types(node.inputs), types(node.outputs), node.attrs);
    if (bytes > 0) blocks.push_back({-1 - id, AlignUp(bytes), n, std::max(n, span_end[id])});
    plan.max_scratch_bytes = std::max(plan.max_scratch_bytes, bytes);
  }
  std::vector<int> order(blocks.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return blocks[a].bytes > blocks[b].bytes;
  });
  std::vector<int> placed;
  for (int bi : order) {
    Block& b = blocks[bi];
    std::vector<std::pair<int64_t, int64_t>> busy;  // [offset, end) overlapping in time
    for (int pi : placed) {
      const Block& p = blocks[pi];
      if (p.first <= b.last && b.first <= p.last) busy.push_back({p.offset, p.offset + p.bytes});
    }
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (auto [s, e] : busy) {
      if (offset + b.bytes <= s) break;
      offset = std::max(offset, e);
    }
    b.offset = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + b.bytes);
    placed.push_back(bi);
  }

  plan.offset.assign(num_values, -1);
  std::vector<int64_t> root_offset(num_values, -1);
  plan.scratch_offset.assign(graph.nodes().size(), -1);
  for (const Block& b : blocks) {
    if (b.root >= 0) {
      root_offset[b.root] = b.offset;
    } else {
      plan.scratch_offset[-1 - b.root] = b.offset;
    }
  }
  for (int v = 0; v < num_values; ++v) {
    if (InArena(graph.value(v)) && first[v] >= 0) plan.offset[v] = root_offset[plan.storage[v]];
  }

  // Peak live bytes over the forward part of the schedule.
  for (int n = 0; n < schedule.num_forward; ++n) {
    int64_t live = 0;
    for (const Block& b : blocks) {
      if (b.first <= n && b.last >= n) live += b.bytes;
    }
    plan.forward_peak_bytes = std::max(plan.forward_peak_bytes, live);
  }
  return plan;
}

}  // namespace colossal::graph
