// Cutting a forward graph into pipeline stages at layer boundaries.
#include "graph/stage_split.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "graph/op_registry.h"

namespace colossal::graph {

absl::StatusOr<StageSplit> SplitStages(const Graph& graph, int stages, const std::vector<int>& layers_per_stage) {
  int top = -1;  // L + 1
  for (const Node& n : graph.nodes()) {
    if (n.backward) continue;
    if (n.layer < 0) {
      return absl::InvalidArgumentError(absl::StrCat("node ", n.id, " (", n.op,
                                                     ") belongs to no layer: the graph's builder marks none"));
    }
    top = std::max(top, n.layer);
  }
  const int L = top - 1;
  if (L < 1) return absl::InvalidArgumentError("the graph has no transformer layer to split");
  if (stages < 1 || stages > L) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline of ", stages, " stages over ", L,
                                                   " layers: every stage needs at least one layer"));
  }
  std::vector<double> layer_flops(top + 1, 0.0);
  for (const Node& n : graph.nodes()) {
    if (!n.backward) layer_flops[n.layer] += NodeFlops(graph, n);
  }

  StageSplit split;
  split.first_layer.assign(stages + 1, 0);
  if (!layers_per_stage.empty()) {
    if (static_cast<int>(layers_per_stage.size()) != stages) {
      return absl::InvalidArgumentError(absl::StrCat("layers_per_stage has ", layers_per_stage.size(),
                                                     " entries for ", stages, " stages"));
    }
    int sum = 0;
    for (int k : layers_per_stage) {
      if (k < 1) return absl::InvalidArgumentError("layers_per_stage: every stage needs at least one layer");
      sum += k;
    }
    if (sum != L) {
      return absl::InvalidArgumentError(absl::StrCat("layers_per_stage sums to ", sum, ", the model has ", L,
                                                     " layers"));
    }
    split.first_layer[0] = 1;
    for (int s = 0; s < stages; ++s) split.first_layer[s + 1] = split.first_layer[s] + layers_per_stage[s];
  } else {
    // best[s][i]: the least costliest-stage FLOPs of s stages over layers 1..i.
    std::vector<double> prefix(L + 1, 0.0);
    for (int l = 1; l <= L; ++l) prefix[l] = prefix[l - 1] + layer_flops[l];
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<std::vector<double>> best(stages + 1, std::vector<double>(L + 1, inf));
    std::vector<std::vector<int>> cut(stages + 1, std::vector<int>(L + 1, -1));
    best[0][0] = 0;
    for (int s = 1; s <= stages; ++s) {
      for (int i = s; i <= L; ++i) {
        if (s == stages && i != L) continue;
        for (int j = s - 1; j < i; ++j) {
          if (best[s - 1][j] == inf) continue;
          const double cost = prefix[i] - prefix[j] + (s == 1 ? layer_flops[0] : 0.0) +
                              (s == stages ? layer_flops[top] : 0.0);
          const double worst = std::max(best[s - 1][j], cost);
          if (worst < best[s][i]) {
            best[s][i] = worst;
            cut[s][i] = j;
          }
        }
      }
    }
    split.first_layer[stages] = L + 1;
    for (int s = stages, i = L; s >= 1; --s) {
      i = cut[s][i];
      split.first_layer[s - 1] = i + 1;
    }
  }
  auto stage_of = [&](int layer) {
    if (layer == 0) return 0;
    if (layer == top) return stages - 1;
    return static_cast<int>(std::upper_bound(split.first_layer.begin(), split.first_layer.end(), layer) -
                            split.first_layer.begin()) - 1;
  };

  split.nodes.resize(stages);
  split.flops.assign(stages, 0.0);
  split.sends.resize(stages);
  std::vector<std::set<int>> sends(stages);
  std::vector<std::set<int>> readers(graph.values().size());
  for (const Node& n : graph.nodes()) {
    if (n.backward) continue;
    const int s = stage_of(n.layer);
    split.nodes[s].push_back(n.id);
    split.flops[s] += NodeFlops(graph, n);
    for (int v : n.inputs) {
      const Value& value = graph.value(v);
      if (value.kind == ValueKind::kParam) readers[v].insert(s);
      if (value.producer < 0) continue;
      const int from = stage_of(graph.node(value.producer).layer);
      if (from < s) sends[from].insert(v);
    }
  }
  for (int s = 0; s < stages; ++s) split.sends[s].assign(sends[s].begin(), sends[s].end());
  for (int p : graph.params()) {
    if (readers[p].size() > 1) split.shared_params.push_back({p, {readers[p].begin(), readers[p].end()}});
  }
  return split;
}

absl::StatusOr<StageGraph> BuildStageGraph(const Graph& whole, const StageSplit& split, int stage,
                                           const std::vector<int>& also_params) {
  if (stage < 0 || stage >= static_cast<int>(split.nodes.size())) {
    return absl::InvalidArgumentError(absl::StrCat("no stage ", stage, " of ", split.nodes.size()));
  }
  std::set<int> in_stage(split.nodes[stage].begin(), split.nodes[stage].end());
  std::vector<bool> read(whole.values().size(), false);
  for (int n : split.nodes[stage]) {
    for (int v : whole.node(n).inputs) read[v] = true;
  }
  StageGraph out;
  Graph& g = out.graph;
  g.dims() = whole.dims();
  std::vector<int> map(whole.values().size(), -1);
  for (int v : whole.inputs()) {
    if (read[v]) map[v] = g.AddInput(whole.value(v).name, whole.value(v).shape, whole.value(v).dtype);
  }
  std::set<int> also(also_params.begin(), also_params.end());
  for (int v : whole.params()) {
    if (!read[v] && also.count(v) == 0) continue;
    const Value& p = whole.value(v);
    map[v] = g.AddParam(p.name, p.shape, p.init);
    g.mutable_value(map[v]).layout = p.layout;
  }
  for (int v : whole.states()) {
    if (read[v]) map[v] = g.AddState(whole.value(v).name, whole.value(v).shape);
  }
  for (int n : split.nodes[stage]) {
    const Node& node = whole.node(n);
    std::vector<int> inputs, outputs;
    for (int v : node.inputs) {
      if (map[v] < 0) {
        // Produced by an earlier stage: received, under the same name.
        const Value& value = whole.value(v);
        if (value.producer < 0 || in_stage.count(value.producer) > 0) {
          return absl::InternalError(absl::StrCat("stage ", stage, ": '", value.name, "' is read before it is written"));
        }
        map[v] = g.AddInput(value.name, value.shape, value.dtype);
        g.mutable_value(map[v]).layout = value.layout;
        out.received.push_back(map[v]);
      }
      inputs.push_back(map[v]);
    }
    for (int v : node.outputs) {
      if (map[v] < 0) {
        const Value& value = whole.value(v);
        map[v] = g.AddValue(value.name, value.shape, value.dtype, value.kind);
        g.mutable_value(map[v]).layout = value.layout;
      }
      outputs.push_back(map[v]);
    }
    g.SetLayer(node.layer);
    g.AddNode(node.op, std::move(inputs), std::move(outputs), node.attrs, node.accumulate);
  }
  if (whole.loss() >= 0 && map[whole.loss()] >= 0) g.SetLoss(map[whole.loss()]);
  for (int v : whole.outputs()) {
    if (map[v] >= 0) g.MarkOutput(map[v]);
  }
  for (int v : split.sends[stage]) {
    out.sent.push_back(map[v]);
    g.MarkOutput(map[v]);
  }
  return out;
}

}  // namespace colossal::graph
