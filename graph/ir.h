// The model as data: values (typed tensors), nodes (op applications) and the graph that
// owns both. A Graph is built forward by a model builder or a graph file, extended with
// backward nodes by autodiff, planned by memory_plan and run by the executor.
//
// Values are SSA except for gradient accumulation: a node may write into a value that an
// earlier node defined, with Accumulate::kYes for that output (`+=`). Parameter
// gradients are the extreme case: the first writer in a step overwrites on the first
// micro-batch and accumulates afterwards (the executor decides, see executor.h).
// Not thread-safe; immutable once handed to the executor.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "graph/layout.h"
#include "kernels/common/kernel.h"

namespace colossal::graph {

using kernels::Accumulate;
using kernels::DType;

using Shape = std::vector<int64_t>;
int64_t NumElements(const Shape& shape);
std::string ShapeString(const Shape& shape);

enum class ValueKind : uint8_t {
  kInput,      // fed by the caller each run (token ids, targets, the loss seed)
  kParam,      // trainable weight, storage owned by the parameter store
  kParamGrad,  // gradient of a kParam, storage owned by the parameter store
  kActivation, // produced by a forward node
  kGrad,       // gradient of an activation, produced by backward nodes
  kState,      // kept by the executor across runs, zero at creation, updated in place by
               // the nodes that read it (a decode graph's KV cache); outside the arena
};
std::string_view ValueKindName(ValueKind kind);

// Parameter initialisation (GPT-2 style): normal(0, std) or a constant.
struct ParamInit {
  enum class Kind : uint8_t { kNormal, kConstant };
  Kind kind = Kind::kNormal;
  double value = 0.02;  // std for kNormal, the value for kConstant
};

struct Value {
  int id = -1;
  std::string name;
  Shape shape;
  DType dtype = DType::kF32;
  ValueKind kind = ValueKind::kActivation;
  int producer = -1;    // first node that writes it; -1 for inputs and params
  int grad_of = -1;     // kParamGrad / kGrad: the value it is the gradient of
  int param_grad = -1;  // kParam: its kParamGrad value (after autodiff)
  ParamInit init;       // kParam only
  // Which part of a global tensor this rank's `shape` is (layout.h); not split by default.
  Layout layout;

  int64_t numel() const { return NumElements(shape); }
  int64_t bytes() const { return numel() * kernels::DTypeSize(dtype); }
};

using Attr = std::variant<int64_t, double, std::string, std::vector<int64_t>>;
using Attrs = std::map<std::string, Attr>;

struct Node {
  int id = -1;
  std::string op;
  std::vector<int> inputs;
  std::vector<int> outputs;
  // Per output: `=` or `+=`. Empty means all kNo.
  std::vector<Accumulate> accumulate;
  Attrs attrs;
  bool backward = false;  // emitted by autodiff
  // The model layer the node belongs to, in forward order, as its builder marked it
  // (Graph::SetLayer; a backward node takes its forward node's): a pipeline stage holds
  // whole layers (stage_split.h). GPT: 0 the embeddings, 1..L the transformer layers,
  // L+1 the final norm, head and loss. -1: unmarked.
  int layer = -1;
  // A recompute clone (recompute.h): the forward node it runs again in the backward, -1
  // otherwise. Clones are backward nodes.
  int recompute_of = -1;

  Accumulate OutputAccumulate(size_t i) const {
    return i < accumulate.size() ? accumulate[i] : Accumulate::kNo;
  }
  int64_t IntAttr(const std::string& key) const;
  double FloatAttr(const std::string& key) const;
  int64_t IntAttrOr(const std::string& key, int64_t fallback) const;
  double FloatAttrOr(const std::string& key, double fallback) const;
};

class Graph {
 public:
  Graph() = default;

  int AddInput(std::string name, Shape shape, DType dtype);
  int AddParam(std::string name, Shape shape, ParamInit init);
  // An fp32 kState value (see ValueKind).
  int AddState(std::string name, Shape shape);
  // A fresh value with no producer yet; AddNode's outputs set the producer.
  int AddValue(std::string name, Shape shape, DType dtype, ValueKind kind);
  // Nodes appended from now on belong to model layer `layer` (Node::layer).
  void SetLayer(int layer) { layer_ = layer; }
  // Appends a node. Outputs whose producer is unset get this node as producer.
  int AddNode(std::string op, std::vector<int> inputs, std::vector<int> outputs, Attrs attrs = {},
              std::vector<Accumulate> accumulate = {}, bool backward = false);

  const Value& value(int id) const { return values_[id]; }
  Value& mutable_value(int id) { return values_[id]; }
  const Node& node(int id) const { return nodes_[id]; }
  // For graph transforms (recompute.h) that rewire a node's inputs.
  Node& mutable_node(int id) { return nodes_[id]; }
  // Deques: references to values and nodes stay valid while the graph grows.
  const std::deque<Value>& values() const { return values_; }
  const std::deque<Node>& nodes() const { return nodes_; }
  const std::vector<int>& params() const { return params_; }
  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& states() const { return states_; }

  // Values the caller reads after a run (kept alive to the end by the memory plan).
  void MarkOutput(int value) { outputs_.push_back(value); }
  const std::vector<int>& outputs() const { return outputs_; }

  // The scalar loss autodiff differentiates and the input holding its upstream gradient.
  void SetLoss(int value) { loss_ = value; }
  int loss() const { return loss_; }
  void SetLossSeed(int value) { loss_seed_ = value; }
  int loss_seed() const { return loss_seed_; }

  // Named integer dimensions the graph was built for (batch, seq, ...).
  std::map<std::string, int64_t>& dims() { return dims_; }
  const std::map<std::string, int64_t>& dims() const { return dims_; }

  // Value id by name, or -1.
  int Find(const std::string& name) const;

 private:
  std::deque<Value> values_;
  std::deque<Node> nodes_;
  std::vector<int> params_;
  std::vector<int> inputs_;
  std::vector<int> states_;
  std::vector<int> outputs_;
  std::map<std::string, int> by_name_;
  std::map<std::string, int64_t> dims_;
  int loss_ = -1;
  int loss_seed_ = -1;
  int layer_ = -1;
};

}  // namespace colossal::graph
