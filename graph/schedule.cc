// Default schedules, phases and schedule validation.
#include "graph/schedule.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "graph/op_registry.h"

namespace colossal::graph {

std::string_view PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kForward: return "forward";
    case Phase::kBackwardInput: return "backward-input";
    case Phase::kBackwardWeight: return "backward-weight";
    case Phase::kRecompute: return "recompute";
    case Phase::kComm: return "comm";
    case Phase::kCommWait: return "comm-wait";
  }
  return "?";
}

Phase NodePhase(const Graph& graph, int node) {
  const Node& n = graph.node(node);
  if (!n.backward) return Phase::kForward;
  if (n.recompute_of >= 0) return Phase::kRecompute;
  bool weight_only = !n.outputs.empty();
  for (int v : n.outputs) weight_only = weight_only && graph.value(v).kind == ValueKind::kParamGrad;
  return weight_only ? Phase::kBackwardWeight : Phase::kBackwardInput;
}

Schedule DefaultSchedule(const Graph& graph) {
  Schedule s;
  const int num_nodes = static_cast<int>(graph.nodes().size());
  for (int n = 0; n < num_nodes; ++n) {
    if (!graph.node(n).backward) s.entries.push_back({n, Phase::kForward});
  }
  s.num_forward = static_cast<int>(s.entries.size());
  // Recompute clones run right before the first backward node that reads what they
  // write, each after the clones it reads.
  std::vector<int> clone_writer(graph.values().size(), -1);
  for (int n = 0; n < num_nodes; ++n) {
    if (graph.node(n).recompute_of < 0) continue;
    for (int v : graph.node(n).outputs) clone_writer[v] = n;
  }
  std::vector<bool> placed(num_nodes, false);
  std::vector<int> stack;
  auto place = [&](int node) {
    // Depth first over the unplaced clones `node` reads; `node` last.
    stack.push_back(node);
    while (!stack.empty()) {
      const int top = stack.back();
      bool ready = true;
      for (int v : graph.node(top).inputs) {
        const int w = clone_writer[v];
        if (w >= 0 && !placed[w] && w != top) {
          stack.push_back(w);
          ready = false;
          break;
        }
      }
      if (!ready) continue;
      stack.pop_back();
      if (!placed[top]) {
        placed[top] = true;
        s.entries.push_back({top, NodePhase(graph, top)});
      }
    }
  };
  for (int n = 0; n < num_nodes; ++n) {
    if (graph.node(n).backward && graph.node(n).recompute_of < 0) place(n);
  }
  for (int n = 0; n < num_nodes; ++n) {
    if (graph.node(n).recompute_of >= 0 && !placed[n]) place(n);  // read by nothing
  }
  return s;
}

namespace {

bool Contains(const std::vector<int>& values, int v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

// Whether `other` must stay on its side of asynchronous node `node`'s span: it writes an
// input of it, or reads or writes an output.
bool Touches(const Node& other, const Node& node) {
  for (int v : other.outputs) {
    if (Contains(node.inputs, v) || Contains(node.outputs, v)) return true;
  }
  for (int v : other.inputs) {
    if (Contains(node.outputs, v)) return true;
  }
  return false;
}

// Whether `node` can be posted and waited for later: it can start, and its outputs are
// activations or activation gradients that it alone writes, overwriting them.
bool CanOverlap(const Graph& graph, int node, const std::vector<int>& writers_of) {
  const Node& n = graph.node(node);
  const OpDef* def = FindOp(n.op);
  if (def == nullptr || !def->start) return false;
  for (size_t o = 0; o < n.outputs.size(); ++o) {
    const Value& v = graph.value(n.outputs[o]);
    if (v.kind == ValueKind::kParamGrad || n.OutputAccumulate(static_cast<int>(o)) != Accumulate::kNo ||
        writers_of[v.id] != 1) {
      return false;
    }
  }
  return true;
}

}  // namespace

Schedule OverlapCommunication(const Graph& graph, const Schedule& schedule) {
  std::vector<int> writers_of(graph.values().size(), 0);
  for (const Node& n : graph.nodes()) {
    for (int v : n.outputs) ++writers_of[v];
  }
  Schedule s = schedule;
  std::vector<bool> waited(graph.nodes().size(), false);
  for (const ScheduleEntry& e : s.entries) {
    if (e.phase == Phase::kCommWait) waited[e.node] = true;
  }
  // Candidates in schedule order; positions are looked up afresh as entries move.
  std::vector<int> candidates;
  for (const ScheduleEntry& e : s.entries) {
    if (e.phase != Phase::kCommWait && !waited[e.node] && CanOverlap(graph, e.node, writers_of)) {
      candidates.push_back(e.node);
    }
  }
  for (int c : candidates) {
    const Node& node = graph.node(c);
    auto& entries = s.entries;
    const int at = static_cast<int>(
        std::find_if(entries.begin(), entries.end(),
                     [&](const ScheduleEntry& e) { return e.node == c && e.phase != Phase::kCommWait; }) -
        entries.begin());
    const bool forward = at < s.num_forward;
    const int part_begin = forward ? 0 : s.num_forward;
    const int part_end = forward ? s.num_forward : static_cast<int>(entries.size());
    // Post right after the last entry it depends on...
    int start = at;
    while (start > part_begin && !Touches(graph.node(entries[start - 1].node), node)) --start;
    // ...and wait right before the first entry that depends on it.
    int wait = at + 1;
    while (wait < part_end && !Touches(graph.node(entries[wait].node), node)) ++wait;
    // Entries strictly between the post and the wait, once the node sits at `start`.
    if (wait - start - 1 < 1) continue;
    ScheduleEntry self = entries[at];
    self.phase = Phase::kComm;
    entries.erase(entries.begin() + at);
    entries.insert(entries.begin() + start, self);
    entries.insert(entries.begin() + wait, ScheduleEntry{c, Phase::kCommWait});
    if (forward) ++s.num_forward;
  }
  return s;
}

Schedule SplitBackward(const Graph& graph, const Schedule& schedule) {
  Schedule s = schedule;
  const int begin = schedule.num_forward, end = static_cast<int>(schedule.entries.size());
  // From the last entry back: a W node moves when nothing that stays after it conflicts;
  // so does a recompute clone that only moving entries read (what only the weight
  // gradients need is then recomputed when they run, not held from B to W). Clones that
  // communicate stay (their collective and its wait keep their places).
  std::vector<bool> moves(end, false);
  std::vector<bool> written(graph.values().size(), false), read(graph.values().size(), false);
  for (int t = end - 1; t >= begin; --t) {
    const ScheduleEntry& e = schedule.entries[t];
    const Node& n = graph.node(e.node);
    const OpDef* def = FindOp(n.op);
    const bool movable = e.phase == Phase::kBackwardWeight ||
                         (e.phase == Phase::kRecompute && (def == nullptr || !def->communicates));
    if (movable) {
      bool conflict = false;
      for (int v : n.inputs) conflict |= written[v];
      for (int v : n.outputs) conflict |= written[v] || read[v];
      if (!conflict) {
        moves[t] = true;
        continue;
      }
    }
    for (int v : n.inputs) read[v] = true;
    for (int v : n.outputs) written[v] = true;
  }
  s.entries.resize(begin);
  for (int t = begin; t < end; ++t) {
    if (!moves[t]) s.entries.push_back(schedule.entries[t]);
  }
  s.num_backward_input = static_cast<int>(s.entries.size()) - begin;
  for (int t = begin; t < end; ++t) {
    if (moves[t]) s.entries.push_back(schedule.entries[t]);
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
  if (schedule.num_backward_input > num_entries - schedule.num_forward) {
    return absl::InvalidArgumentError(absl::StrCat("schedule: num_backward_input ", schedule.num_backward_input,
                                                   " is more than the ", num_entries - schedule.num_forward,
                                                   " backward entries"));
  }
  if (schedule.num_backward_input >= 0) {
    for (int t = schedule.num_forward + schedule.num_backward_input; t < num_entries; ++t) {
      const ScheduleEntry& e = schedule.entries[t];
      if (e.phase != Phase::kBackwardWeight && e.phase != Phase::kRecompute && e.phase != Phase::kCommWait) {
        return absl::InvalidArgumentError(absl::StrCat("schedule entry ", t, " (node ", e.node,
                                                       ") is in the weight-gradient part but is ",
                                                       std::string(PhaseName(e.phase))));
      }
    }
  }
  // Asynchronous nodes: where each is waited for.
  std::vector<int> wait_at(num_nodes, -1);
  for (int t = 0; t < num_entries; ++t) {
    const ScheduleEntry& e = schedule.entries[t];
    if (e.phase != Phase::kCommWait) continue;
    if (e.node < 0 || e.node >= num_nodes) {
      return absl::InvalidArgumentError(absl::StrCat("schedule entry ", t, ": no node ", e.node));
    }
    const Node& node = graph.node(e.node);
    const std::string what = absl::StrCat("schedule entry ", t, " (wait for node ", e.node, ", ", node.op, ")");
    if (wait_at[e.node] >= 0) return absl::InvalidArgumentError(absl::StrCat(what, ": waits a second time"));
    const OpDef* def = FindOp(node.op);
    if (def == nullptr || !def->start) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the op cannot run asynchronously"));
    }
    if (node.backward != (t >= schedule.num_forward)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": in the other part than its node"));
    }
    wait_at[e.node] = t;
  }
  std::vector<bool> seen(num_nodes, false);
  std::vector<bool> written(graph.values().size(), false);
  for (int v : graph.inputs()) written[v] = true;
  for (int v : graph.params()) written[v] = true;
  for (int v : graph.states()) written[v] = true;
  for (int t = 0; t < num_entries; ++t) {
    const int n = schedule.entries[t].node;
    if (schedule.entries[t].phase == Phase::kCommWait) {
      if (!seen[n]) {
        return absl::InvalidArgumentError(absl::StrCat("schedule entry ", t, " (wait for node ", n,
                                                       ", ", graph.node(n).op, "): before its start"));
      }
      for (int v : graph.node(n).outputs) written[v] = true;
      continue;
    }
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
    if (wait_at[n] < 0) {
      for (int v : node.outputs) written[v] = true;
      continue;
    }
    // Between the post and the wait the node's values are its own.
    for (int u = t + 1; u < wait_at[n]; ++u) {
      const ScheduleEntry& other = schedule.entries[u];
      if (other.phase == Phase::kCommWait || !Touches(graph.node(other.node), node)) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": entry ", u, " (node ", other.node, ", ", graph.node(other.node).op,
          ") touches its values before its wait at entry ", wait_at[n]));
    }
  }
  for (int n = 0; n < num_nodes; ++n) {
    if (!seen[n]) {
      return absl::InvalidArgumentError(
          absl::StrCat("schedule: node ", n, " (", graph.node(n).op, ") is never run"));
    }
  }
  // Values are written more than once (accumulated gradients): every node that reads or
  // writes a value must keep its order, relative to each writer of that value, that the
  // id order gives it (a recompute clone, appended last, runs before its readers).
  std::vector<int> pos(num_nodes);
  for (int t = 0; t < num_entries; ++t) {
    if (schedule.entries[t].phase != Phase::kCommWait) pos[schedule.entries[t].node] = t;
  }
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
          // A recompute clone's values (its alone) are read after it, whatever the ids.
          if (graph.node(w).recompute_of >= 0 && writers[v].size() == 1 && pos[w] < pos[n]) continue;
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
