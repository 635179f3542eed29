// Graph construction and small accessors.
#include "graph/ir.h"

#include "runtime/base/check.h"

namespace colossal::graph {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string_view ValueKindName(ValueKind kind) {
  switch (kind) {
    case ValueKind::kInput: return "input";
    case ValueKind::kParam: return "param";
    case ValueKind::kParamGrad: return "param_grad";
    case ValueKind::kActivation: return "activation";
    case ValueKind::kGrad: return "grad";
    case ValueKind::kState: return "state";
  }
  return "?";
}

int64_t Node::IntAttr(const std::string& key) const {
  auto it = attrs.find(key);
  COL_CHECK_MSG(it != attrs.end() && std::holds_alternative<int64_t>(it->second),
                ("missing int attribute " + key + " on " + op).c_str());
  return std::get<int64_t>(it->second);
}

double Node::FloatAttr(const std::string& key) const {
  auto it = attrs.find(key);
  COL_CHECK_MSG(it != attrs.end(), ("missing float attribute " + key + " on " + op).c_str());
  if (std::holds_alternative<int64_t>(it->second)) return std::get<int64_t>(it->second);
  COL_CHECK(std::holds_alternative<double>(it->second));
  return std::get<double>(it->second);
}

int64_t Node::IntAttrOr(const std::string& key, int64_t fallback) const {
  return attrs.count(key) ? IntAttr(key) : fallback;
}

double Node::FloatAttrOr(const std::string& key, double fallback) const {
  return attrs.count(key) ? FloatAttr(key) : fallback;
}

int Graph::AddValue(std::string name, Shape shape, DType dtype, ValueKind kind) {
  Value v;
  v.id = static_cast<int>(values_.size());
  v.name = std::move(name);
  v.shape = std::move(shape);
  v.dtype = dtype;
  v.kind = kind;
  if (!v.name.empty()) {
    COL_CHECK_MSG(by_name_.count(v.name) == 0, ("duplicate value name " + v.name).c_str());
    by_name_[v.name] = v.id;
  }
  values_.push_back(std::move(v));
  return values_.back().id;
}

int Graph::AddInput(std::string name, Shape shape, DType dtype) {
  int id = AddValue(std::move(name), std::move(shape), dtype, ValueKind::kInput);
  inputs_.push_back(id);
  return id;
}

int Graph::AddParam(std::string name, Shape shape, ParamInit init) {
  int id = AddValue(std::move(name), std::move(shape), DType::kF32, ValueKind::kParam);
  values_[id].init = init;
  params_.push_back(id);
  return id;
}

int Graph::AddState(std::string name, Shape shape) {
  int id = AddValue(std::move(name), std::move(shape), DType::kF32, ValueKind::kState);
  states_.push_back(id);
  return id;
}

int Graph::AddNode(std::string op, std::vector<int> inputs, std::vector<int> outputs, Attrs attrs,
                   std::vector<Accumulate> accumulate, bool backward) {
  Node n;
  n.id = static_cast<int>(nodes_.size());
  n.op = std::move(op);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.attrs = std::move(attrs);
  n.accumulate = std::move(accumulate);
  n.backward = backward;
  n.layer = layer_;
  for (int in : n.inputs) COL_CHECK(in >= 0 && in < static_cast<int>(values_.size()));
  for (int out : n.outputs) {
    COL_CHECK(out >= 0 && out < static_cast<int>(values_.size()));
    if (values_[out].producer < 0 && values_[out].kind != ValueKind::kParam &&
        values_[out].kind != ValueKind::kInput && values_[out].kind != ValueKind::kState) {
      values_[out].producer = n.id;
    }
  }
  nodes_.push_back(std::move(n));
  return nodes_.back().id;
}

int Graph::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

}  // namespace colossal::graph
