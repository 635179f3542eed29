// Reverse-mode autodiff: appends to a forward graph the backward nodes that compute the
// gradient of its loss with respect to every parameter.
//
// Forward nodes are visited in reverse order; each op's `backward` rule (op_registry.h)
// emits nodes through a GradBuilder. Gradients are accumulated in place wherever the
// kernels allow it: the first contribution to a value's gradient overwrites (`=`), later
// ones add (`+=`) into the same storage; identity gradients (residual adds) share the
// upstream gradient's value instead of copying it. A shared gradient that still has a
// pending reader is copied before it is accumulated into (copy-on-write), so in-place
// accumulation never changes a value some later node still has to read.
//
// Parameter gradients live in kParamGrad values. Their first writer in the graph carries
// Accumulate::kNo, which the executor turns into `+=` after the first micro-batch of a
// step, so accumulation over micro-batches costs nothing extra.
// The loss's upstream gradient is the graph input "loss_grad" ([1]), fed by the caller
// (1 / number of micro-batches, for a mean over the global batch).
#pragma once

#include <map>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "graph/op_registry.h"

namespace colossal::graph {

// Where a backward node writes one gradient: the value and `=` or `+=`.
struct GradSlot {
  int value = -1;
  Accumulate accumulate = Accumulate::kNo;
};

class GradBuilder {
 public:
  Graph& graph() { return *graph_; }
  const Node& node() const { return graph_->node(node_); }
  int input(int i) const { return node().inputs[i]; }
  int output(int i) const { return node().outputs[i]; }
  const Value& input_value(int i) const { return graph_->value(input(i)); }

  // The gradient arriving at output i, or -1 when none does.
  int OutputGrad(int i) const;
  // Whether input i needs a gradient (it depends on a parameter and is floating point).
  bool NeedsGrad(int i) const;
  // Where to write input i's gradient (creating its value, or copying-on-write).
  GradSlot Slot(int i);
  // Input i's gradient is exactly the value `grad` (identity backward): shares it when
  // input i has no gradient yet, else accumulates it into the existing one.
  void PassThrough(int i, int grad);
  // Appends a backward node; `accumulate` per output.
  void Emit(const std::string& op, std::vector<int> inputs, std::vector<int> outputs,
            Attrs attrs = {}, std::vector<Accumulate> accumulate = {});
  // A scratch gradient value shaped like `like` (for outputs nobody needs).
  int Scratch(int like);

 private:
  friend absl::StatusOr<std::vector<int>> BuildBackward(Graph& graph, const std::vector<int>& seeded,
                                                        const std::vector<int>& input_grads,
                                                        bool defer_weight_grads);
  GradBuilder(Graph* graph) : graph_(graph) {}

  int NewGrad(int of);
  bool HasPendingReaders(int storage, int except) const;

  Graph* graph_;
  int node_ = -1;
  std::vector<bool> requires_grad_;   // per value
  std::vector<bool> processed_;       // per forward node
  std::map<int, int> grad_;           // value -> gradient value
  std::map<int, std::set<int>> owners_;  // gradient value -> values whose gradient it is
  std::set<int> param_grad_written_;  // kParamGrad values written at least once
  // Deferred weight gradients: the gradient values read by weight-gradient nodes, which
  // run after every input-gradient node (zero-bubble W), so none is accumulated into in
  // place (copy-on-write instead).
  bool defer_weight_grads_ = false;
  std::set<int> read_by_deferred_;
};

// Appends the backward pass for graph.loss(); adds the "loss_grad" input and marks the
// loss an output. Fails (InvalidArgument) when there is no loss, it is not a scalar, or
// an op on the path has no backward rule.
absl::Status BuildBackward(Graph& graph);

// The same for a pipeline stage: the loss's backward when the graph has one (the last
// stage), plus, for every value in `seeded` (a stage's outputs sent on), an input
// "<name>.grad" holding the gradient that arrives for it from the next stage; and the
// gradients of the graph inputs `input_grads` (the activations the stage received),
// returned in that order (-1 when none flows) and marked outputs, to send back.
// `defer_weight_grads`: the weight-gradient nodes (NodePhase kBackwardWeight, schedule.h)
// may run after every input-gradient node (SplitBackward), for the zero-bubble
// schedules' W; a gradient such a node reads is then never accumulated into in place by
// a later node (it is copied first), at the cost of those copies.
absl::StatusOr<std::vector<int>> BuildBackward(Graph& graph, const std::vector<int>& seeded,
                                               const std::vector<int>& input_grads,
                                               bool defer_weight_grads = false);

}  // namespace colossal::graph
