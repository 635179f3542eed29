// Default schedules, phases and schedule validation.
#include "graph/schedule.h"

#include "absl/strings/str_cat.h"

namespace colossal::graph {

std::string_view PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kForward: return "forward";
    case Phase::kBackwardInput: return "backward-input";
    case Phase::kBackwardWeight: return "backward-weight";
    case Phase::kRecompute: return "recompute";
    case Phase::kComm: return "comm";
  }
  return "?";
}

Phase NodePhase(const Graph& graph, int node) {
  const Node& n = graph.node(node);
  if (!n.backward) return Phase::kForward;
  bool weight_only = !n.outputs.empty();
  for (int v : n.outputs) weight_only = weight_only && graph.value(v).kind == ValueKind::kParamGrad;
  return weight_only ? Phase::kBackwardWeight : Phase::kBackwardInput;
}

Schedule DefaultSchedule(const Graph& graph) {
  Schedule s;
  const int num_nodes = static_cast<int>(graph.nodes().size());
  for (int pass = 0; pass < 2; ++pass) {
    for (int n = 0; n < num_nodes; ++n) {
      if (graph.node(n).backward == (pass == 1)) s.entries.push_back({n, NodePhase(graph, n)});
    }
    if (pass == 0) s.num_forward = static_cast<int>(s.entries.size());
  }
  return s;
}

absl::Status ValidateSchedule(const Graph& graph, const Schedule& schedule) {
  const int num_nodes = static_cast<int>(graph.nodes().size());
  const int num_entries = static_cast<int>(schedule.entries.size());
  if (schedule.num_forward < 0 || schedule.num_forward > num_entries) {
    return absl::InvalidArgumentError(absl::StrCat("schedule: num_forward ", schedule.num_forward,
                                                   " is outside [0, ", num_entries, "]"));
  }
  std::vector<bool> seen(num_nodes, false);
  std::vector<bool> written(graph.values().size(), false);
  for (int v : graph.inputs()) written[v] = true;
  for (int v : graph.params()) written[v] = true;
  for (int t = 0; t < num_entries; ++t) {
    const int n = schedule.entries[t].node;
    if (n < 0 || n >= num_nodes) {
      return absl::InvalidArgumentError(absl::StrCat("schedule entry ", t, ": no node ", n));
    }
    const Node& node = graph.node(n);
    const std::string what = absl::StrCat("schedule entry ", t, " (node ", n, ", ", node.op, ")");
    if (seen[n]) return absl::InvalidArgumentError(absl::StrCat(what, ": runs a second time"));
    seen[n] = true;
    if (node.backward != (t >= schedule.num_forward)) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, node.backward ? ": a backward node in the forward part"
                              : ": a forward node in the backward part"));
    }
    for (int v : node.inputs) {
      // Parameter gradients are accumulated across micro-steps: they are "written" from
      // the store's point of view even before their first writer of this step.
      const ValueKind kind = graph.value(v).kind;
      if (!written[v] && kind != ValueKind::kParamGrad) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": reads '", graph.value(v).name, "' before any node writes it"));
      }
    }
    for (int v : node.outputs) written[v] = true;
  }
  for (int n = 0; n < num_nodes; ++n) {
    if (!seen[n]) {
      return absl::InvalidArgumentError(
          absl::StrCat("schedule: node ", n, " (", graph.node(n).op, ") is never run"));
    }
  }
  // Values are written more than once (accumulated gradients): every node that reads or
  // writes a value must keep its order, relative to each writer of that value, that the
  // id order gives it.
  std::vector<int> pos(num_nodes);
  for (int t = 0; t < num_entries; ++t) pos[schedule.entries[t].node] = t;
  std::vector<std::vector<int>> writers(graph.values().size());
  for (int n = 0; n < num_nodes; ++n) {
    for (int v : graph.node(n).outputs) writers[v].push_back(n);
  }
  for (int n = 0; n < num_nodes; ++n) {
    const Node& node = graph.node(n);
    for (const std::vector<int>* values : {&node.inputs, &node.outputs}) {
      for (int v : *values) {
        for (int w : writers[v]) {
          if (w == n || (w < n) == (pos[w] < pos[n])) continue;
          return absl::InvalidArgumentError(absl::StrCat(
              "schedule entry ", pos[n], " (node ", n, ", ", node.op, ") and entry ", pos[w],
              " (node ", w, ", ", graph.node(w).op, ", which writes '", graph.value(v).name,
              "') run in the opposite order of their dependency"));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace colossal::graph
