// Reverse-mode autodiff over the graph IR.
#include "graph/autodiff.h"

#include "absl/strings/str_cat.h"
#include "graph/schedule.h"
#include "runtime/base/check.h"

namespace colossal::graph {

int GradBuilder::OutputGrad(int i) const {
  auto it = grad_.find(output(i));
  return it == grad_.end() ? -1 : it->second;
}

bool GradBuilder::NeedsGrad(int i) const { return requires_grad_[input(i)]; }

int GradBuilder::NewGrad(int of) {
  const Value& v = graph_->value(of);
  int g = graph_->AddValue(absl::StrCat("grad:", v.name), v.shape, v.dtype, ValueKind::kGrad);
  graph_->mutable_value(g).grad_of = of;
  return g;
}

int GradBuilder::Scratch(int like) {
  const Value& v = graph_->value(like);
  int g = graph_->AddValue("", v.shape, v.dtype, ValueKind::kGrad);
  graph_->mutable_value(g).name = absl::StrCat("scratch:", v.name, "#", g);
  return g;
}

bool GradBuilder::HasPendingReaders(int storage, int except) const {
  auto it = owners_.find(storage);
  if (it == owners_.end()) return false;
  for (int v : it->second) {
    if (v == except) continue;
    int producer = graph_->value(v).producer;
    // The gradient of v is read by the backward of v's producer; pending until visited.
    if (producer >= 0 && !processed_[producer]) return true;
  }
  return false;
}

GradSlot GradBuilder::Slot(int i) {
  const int x = input(i);
  const Value& xv = graph_->value(x);
  if (xv.kind == ValueKind::kParam) {
    int pg = xv.param_grad;
    if (pg < 0) {
      pg = graph_->AddValue(absl::StrCat("grad:", xv.name), xv.shape, xv.dtype,
                            ValueKind::kParamGrad);
      graph_->mutable_value(pg).grad_of = x;
      graph_->mutable_value(x).param_grad = pg;
    }
    bool first = param_grad_written_.insert(pg).second;
    return {pg, first ? Accumulate::kNo : Accumulate::kYes};
  }
  auto it = grad_.find(x);
  if (it == grad_.end()) {
    int g = NewGrad(x);
    grad_[x] = g;
    owners_[g].insert(x);
    return {g, Accumulate::kNo};
  }
  int g = it->second;
  if (!HasPendingReaders(g, x) && read_by_deferred_.count(g) == 0) return {g, Accumulate::kYes};
  // Copy-on-write: x's gradient is shared with a value whose reader has not run yet.
  int copy = NewGrad(x);
  Emit("accumulate", {g}, {copy}, {}, {Accumulate::kNo});
  owners_[g].erase(x);
  grad_[x] = copy;
  owners_[copy].insert(x);
  return {copy, Accumulate::kYes};
}

void GradBuilder::PassThrough(int i, int grad) {
  const int x = input(i);
  if (graph_->value(x).kind != ValueKind::kParam && grad_.count(x) == 0) {
    grad_[x] = grad;
    owners_[grad].insert(x);
    return;
  }
  GradSlot slot = Slot(i);
  Emit("accumulate", {grad}, {slot.value}, {}, {slot.accumulate});
}

void GradBuilder::Emit(const std::string& op, std::vector<int> inputs, std::vector<int> outputs,
                       Attrs attrs, std::vector<Accumulate> accumulate) {
  COL_CHECK_MSG(FindOp(op) != nullptr, ("backward op not registered: " + op).c_str());
  graph_->SetLayer(node().layer);
  const int id = graph_->AddNode(op, std::move(inputs), std::move(outputs), std::move(attrs),
                                 std::move(accumulate), /*backward=*/true);
  if (defer_weight_grads_ && NodePhase(*graph_, id) == Phase::kBackwardWeight) {
    for (int v : graph_->node(id).inputs) read_by_deferred_.insert(v);
  }
}

absl::Status BuildBackward(Graph& graph) {
  if (graph.loss() < 0) return absl::InvalidArgumentError("graph has no loss to differentiate");
  return BuildBackward(graph, {}, {}).status();
}

absl::StatusOr<std::vector<int>> BuildBackward(Graph& graph, const std::vector<int>& seeded,
                                               const std::vector<int>& input_grads,
                                               bool defer_weight_grads) {
  if (graph.loss() < 0 && seeded.empty()) {
    return absl::InvalidArgumentError("graph has no loss and no seeded output to differentiate");
  }
  if (graph.loss() >= 0) {
    const Value& loss = graph.value(graph.loss());
    if (loss.numel() != 1 || loss.dtype != DType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat("loss '", loss.name, "' must be a float scalar, got shape ", ShapeString(loss.shape)));
    }
  }
  const int num_forward = static_cast<int>(graph.nodes().size());
  for (int n = 0; n < num_forward; ++n) {
    if (graph.node(n).backward) {
      return absl::FailedPreconditionError("graph already has a backward pass");
    }
  }

  GradBuilder b(&graph);
  b.defer_weight_grads_ = defer_weight_grads;
  b.requires_grad_.assign(graph.values().size(), false);
  for (int p : graph.params()) b.requires_grad_[p] = true;
  for (int v : input_grads) {
    const Value& value = graph.value(v);
    if (value.kind != ValueKind::kInput || value.dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat("'", value.name, "' is not a float input of the graph"));
    }
    b.requires_grad_[v] = true;
  }
  for (int n = 0; n < num_forward; ++n) {
    const Node& node = graph.node(n);
    bool any = false;
    for (int in : node.inputs) any |= b.requires_grad_[in];
    for (int out : node.outputs) {
      b.requires_grad_[out] = any && graph.value(out).dtype == DType::kF32;
    }
  }
  std::vector<int> roots = seeded;
  if (graph.loss() >= 0) roots.push_back(graph.loss());
  for (int r : roots) {
    if (!b.requires_grad_[r]) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", graph.value(r).name, "' does not depend on any parameter"));
    }
  }

  if (graph.loss() >= 0) {
    int seed = graph.AddInput("loss_grad", {1}, DType::kF32);
    graph.SetLossSeed(seed);
    graph.MarkOutput(graph.loss());
    b.grad_[graph.loss()] = seed;
    b.owners_[seed].insert(graph.loss());
  }
  for (int v : seeded) {
    // The gradient that arrives for v (from the next pipeline stage), fed by the caller.
    const Value& value = graph.value(v);
    int seed = graph.AddInput(absl::StrCat(value.name, ".grad"), value.shape, value.dtype);
    b.grad_[v] = seed;
    b.owners_[seed].insert(v);
  }
  b.processed_.assign(num_forward, false);
  b.requires_grad_.resize(graph.values().size(), false);

  for (int n = num_forward - 1; n >= 0; --n) {
    b.node_ = n;
    const Node& node = graph.node(n);
    bool has_grad = false;
    for (size_t i = 0; i < node.outputs.size(); ++i) has_grad |= b.OutputGrad(i) >= 0;
    bool needs = false;
    for (size_t i = 0; i < node.inputs.size(); ++i) needs |= b.NeedsGrad(i);
    if (has_grad && needs) {
      const OpDef* def = FindOp(node.op);
      if (!def->backward) {
        return absl::InvalidArgumentError(
            absl::StrCat("op '", node.op, "' (node ", n, ") has no gradient"));
      }
      def->backward(b);
    }
    b.processed_[n] = true;
    // Values created by the rule (scratch, copies) never need gradients.
    b.requires_grad_.resize(graph.values().size(), false);
  }
  std::vector<int> grads;
  for (int v : input_grads) {
    auto it = b.grad_.find(v);
    grads.push_back(it == b.grad_.end() ? -1 : it->second);
    if (grads.back() >= 0) graph.MarkOutput(grads.back());
  }
  return grads;
}

}  // namespace colossal::graph
