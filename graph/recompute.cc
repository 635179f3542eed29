// Recompute clones of the chosen layers' forward nodes.
#include "graph/recompute.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossal::graph {

std::vector<int> RecomputeLayers(const Graph& graph, int num_layers, int every, int first) {
  std::set<int> held;
  for (const Node& n : graph.nodes()) {
    if (!n.backward && n.layer >= 1 && n.layer <= num_layers) held.insert(n.layer);
  }
  std::vector<int> layers;
  for (int l : held) {
    if (first > 0 ? static_cast<int>(layers.size()) < first : every > 0 && (l - 1) % every == 0) layers.push_back(l);
  }
  return layers;
}

absl::Status AddRecompute(Graph& g, const std::vector<int>& layers) {
  const int num_nodes = static_cast<int>(g.nodes().size());
  const int num_values = static_cast<int>(g.values().size());
  std::set<int> forward_layers;
  bool has_backward = false;
  for (const Node& n : g.nodes()) {
    if (n.recompute_of >= 0) return absl::InvalidArgumentError("recompute: the graph already has recompute nodes");
    has_backward = has_backward || n.backward;
    if (!n.backward) forward_layers.insert(n.layer);
  }
  if (!has_backward) return absl::InvalidArgumentError("recompute: the graph has no backward (run autodiff first)");
  const std::set<int> chosen(layers.begin(), layers.end());
  for (int l : chosen) {
    if (l < 0 || forward_layers.count(l) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("recompute: layer ", l, " is not a layer of the graph (its layers: ",
                                                     absl::StrJoin(forward_layers, ", "), ")"));
    }
  }
  if (chosen.empty()) return absl::OkStatus();

  // Per value: the forward nodes that read it, whether a backward node does, and the
  // forward nodes that write it.
  std::vector<std::vector<int>> forward_readers(num_values), writers(num_values);
  std::vector<bool> backward_reads(num_values, false);
  for (int i = 0; i < num_nodes; ++i) {
    const Node& n = g.node(i);
    for (int v : n.inputs) {
      if (n.backward) {
        backward_reads[v] = true;
      } else {
        forward_readers[v].push_back(i);
      }
    }
    if (!n.backward) {
      for (int v : n.outputs) writers[v].push_back(i);
    }
  }
  std::set<int> kept(g.outputs().begin(), g.outputs().end());
  kept.insert(g.loss());
  // A value internal to a chosen layer: an activation its forward nodes alone write and
  // read.
  std::vector<bool> internal(num_values, false);
  for (int v = 0; v < num_values; ++v) {
    const Value& val = g.value(v);
    if (val.kind != ValueKind::kActivation || writers[v].empty() || kept.count(v)) continue;
    const int layer = g.node(writers[v].front()).layer;
    if (chosen.count(layer) == 0) continue;
    bool inside = true;
    for (int w : writers[v]) inside = inside && g.node(w).layer == layer;
    for (int r : forward_readers[v]) inside = inside && g.node(r).layer == layer;
    internal[v] = inside;
  }
  // What the backward needs recomputed, closed over the writers' in-layer inputs.
  std::vector<bool> needed(num_values, false), clone_node(num_nodes, false);
  std::vector<int> work;
  for (int v = 0; v < num_values; ++v) {
    if (internal[v] && backward_reads[v]) {
      needed[v] = true;
      work.push_back(v);
    }
  }
  while (!work.empty()) {
    const int v = work.back();
    work.pop_back();
    if (writers[v].size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat("recompute: '", g.value(v).name, "' in layer ",
                                                     g.node(writers[v].front()).layer,
                                                     " has several writers; it cannot be recomputed"));
    }
    for (int w : writers[v]) {
      clone_node[w] = true;
      for (int u : g.node(w).inputs) {
        if (internal[u] && !needed[u]) {
          needed[u] = true;
          work.push_back(u);
        }
      }
    }
  }
  // The clones, in forward order, each writing fresh values.
  std::map<int, int> clone_of;  // value -> its recomputed value
  for (int i = 0; i < num_nodes; ++i) {
    if (!clone_node[i]) continue;
    const Node original = g.node(i);  // a copy: AddNode grows the deque
    std::vector<int> inputs, outputs;
    for (int u : original.inputs) inputs.push_back(needed[u] ? clone_of.at(u) : u);
    for (int o : original.outputs) {
      auto it = clone_of.find(o);
      if (it == clone_of.end()) {
        const Value src = g.value(o);
        const int fresh = g.AddValue(absl::StrCat(src.name, ".recompute"), src.shape, src.dtype, ValueKind::kActivation);
        g.mutable_value(fresh).layout = src.layout;
        it = clone_of.emplace(o, fresh).first;
      }
      outputs.push_back(it->second);
    }
    const int id = g.AddNode(original.op, std::move(inputs), std::move(outputs), original.attrs, original.accumulate,
                             /*backward=*/true);
    Node& clone = g.mutable_node(id);
    clone.layer = original.layer;
    clone.recompute_of = i;
  }
  // The backward reads the recomputed values.
  for (int i = 0; i < num_nodes; ++i) {
    Node& n = g.mutable_node(i);
    if (!n.backward) continue;
    for (int& v : n.inputs) {
      if (needed[v]) v = clone_of.at(v);
    }
  }
  return absl::OkStatus();
}

}  // namespace colossal::graph
