// The op table and the generic Apply() used by builders and the graph-file loader.
#include "graph/op_registry.h"

#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace colossal::graph {
namespace {

std::map<std::string, OpDef, std::less<>>& Table() {
  static auto* table = new std::map<std::string, OpDef, std::less<>>();
  return *table;
}

}  // namespace

void RegisterOp(OpDef def) {
  COL_CHECK_MSG(Table().count(def.name) == 0, ("op registered twice: " + def.name).c_str());
  COL_CHECK(def.infer && def.run);
  std::string name = def.name;
  Table().emplace(std::move(name), std::move(def));
}

const OpDef* FindOp(std::string_view name) {
  auto it = Table().find(name);
  return it == Table().end() ? nullptr : &it->second;
}

std::vector<std::string> OpNames() {
  std::vector<std::string> names;
  for (const auto& [name, def] : Table()) names.push_back(name);
  return names;
}

absl::StatusOr<std::vector<int>> Apply(Graph& graph, const std::string& op,
                                       const std::vector<int>& inputs, const Attrs& attrs,
                                       const std::vector<std::string>& output_names) {
  const OpDef* def = FindOp(op);
  if (def == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown op '", op, "'"));
  const int n_in = static_cast<int>(inputs.size());
  if (n_in < def->min_inputs || n_in > def->max_inputs) {
    return absl::InvalidArgumentError(absl::StrCat("op ", op, " takes ", def->min_inputs,
                                                   def->min_inputs == def->max_inputs
                                                       ? std::string()
                                                       : absl::StrCat("..", def->max_inputs),
                                                   " inputs, got ", n_in));
  }
  std::vector<TensorType> in_types;
  for (int id : inputs) in_types.push_back({graph.value(id).shape, graph.value(id).dtype});
  auto out_types = def->infer(in_types, attrs);
  if (!out_types.ok()) return out_types.status();
  std::vector<int> outputs;
  const int node_id = static_cast<int>(graph.nodes().size());
  for (size_t i = 0; i < out_types->size(); ++i) {
    std::string name = i < output_names.size() ? output_names[i]
                                                : absl::StrCat("%", node_id, ".", op, ".", i);
    outputs.push_back(graph.AddValue(name, (*out_types)[i].shape, (*out_types)[i].dtype,
                                     ValueKind::kActivation));
  }
  graph.AddNode(op, inputs, outputs, attrs);
  return outputs;
}

absl::StatusOr<int64_t> GetIntAttr(const Attrs& attrs, const std::string& op,
                                   const std::string& key) {
  auto it = attrs.find(key);
  if (it == attrs.end()) {
    return absl::InvalidArgumentError(absl::StrCat("op ", op, " needs integer attribute '", key, "'"));
  }
  if (!std::holds_alternative<int64_t>(it->second)) {
    return absl::InvalidArgumentError(absl::StrCat("op ", op, ": attribute '", key, "' must be an integer"));
  }
  return std::get<int64_t>(it->second);
}

absl::StatusOr<double> GetFloatAttr(const Attrs& attrs, const std::string& op,
                                    const std::string& key) {
  auto it = attrs.find(key);
  if (it == attrs.end()) {
    return absl::InvalidArgumentError(absl::StrCat("op ", op, " needs number attribute '", key, "'"));
  }
  if (std::holds_alternative<int64_t>(it->second)) return static_cast<double>(std::get<int64_t>(it->second));
  if (!std::holds_alternative<double>(it->second)) {
    return absl::InvalidArgumentError(absl::StrCat("op ", op, ": attribute '", key, "' must be a number"));
  }
  return std::get<double>(it->second);
}

double NodeFlops(const Graph& graph, const Node& node) {
  const OpDef* def = FindOp(node.op);
  if (def == nullptr || !def->flops) return 0;
  std::vector<TensorType> in;
  for (int v : node.inputs) in.push_back({graph.value(v).shape, graph.value(v).dtype});
  return def->flops(in, node.attrs);
}

}  // namespace colossal::graph
