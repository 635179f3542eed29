// The op registry: for every op name, how to check its inputs and infer its outputs,
// how to differentiate it (by emitting backward nodes), how many FLOPs it costs and how
// to run it (by calling a kernel through the dispatch table). Ops register themselves
// from graph/ops/*.cc at static-initialisation time (alwayslink libraries).
// Backward ops (e.g. "layer_norm_backward") are ops too; they have no `backward`.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "kernels/common/kernel.h"
#include "parallel/comm/communicator.h"
#include "runtime/base/check.h"

namespace colossal::graph {

class GradBuilder;  // autodiff.h

struct TensorType {
  Shape shape;
  DType dtype = DType::kF32;
};

// What a running op sees: its node, its input and output pointers (resolved once by the
// executor) and the effective accumulate mode of each output for this run.
struct KernelContext {
  const Node* node = nullptr;
  const Graph* graph = nullptr;
  const std::vector<void*>* inputs = nullptr;
  const std::vector<void*>* outputs = nullptr;
  std::vector<Accumulate> accumulate;  // per output
  kernels::Stream stream;
  // Communication ops: the communicators of the node's "group" (and "group_b", for ops
  // over two axes) attributes, bound by Executor::SetGroup, and where a failed collective
  // reports (the run then stops).
  parallel::Communicator* comm = nullptr;
  parallel::Communicator* comm_b = nullptr;  // the "group_b" attribute's (2D: the column)
  parallel::Communicator* comm_c = nullptr;  // the "group_c" attribute's (3D: the output's)
  // The node's working memory in the arena (OpDef::scratch bytes, 64-byte aligned), live
  // for this run only; nullptr when the op declares none.
  void* scratch = nullptr;
  absl::Status* status = nullptr;
  // Waits for `work`; false (with *status set) when it failed.
  bool Wait(std::unique_ptr<parallel::Work> work) const {
    absl::Status s = work->Wait();
    if (s.ok()) return true;
    if (status->ok()) *status = s;
    return false;
  }

  template <typename T = float>
  const T* in(size_t i) const {
    return static_cast<const T*>((*inputs)[i]);
  }
  // Input i when it is a kState value: read and updated in place.
  template <typename T = float>
  T* state(size_t i) const {
    COL_DCHECK(in_value(i).kind == ValueKind::kState);
    return static_cast<T*>((*inputs)[i]);
  }
  template <typename T = float>
  T* out(size_t i) const {
    return static_cast<T*>((*outputs)[i]);
  }
  const Value& in_value(size_t i) const { return graph->value(node->inputs[i]); }
  const Value& out_value(size_t i) const { return graph->value(node->outputs[i]); }
};

struct OpDef {
  std::string name;
  int min_inputs = 0;
  int max_inputs = 0;
  // Checks input types and attributes; returns the output types. Errors name the op and
  // what is wrong (the graph-file loader prefixes the node).
  std::function<absl::StatusOr<std::vector<TensorType>>(const std::vector<TensorType>& inputs,
                                                        const Attrs& attrs)>
      infer;
  // Emits the backward nodes of one forward node; empty when no gradient flows through.
  std::function<void(GradBuilder& builder)> backward;
  // FLOPs of one execution (multiply-add = 2), from the input types.
  std::function<double(const std::vector<TensorType>& inputs, const Attrs& attrs)> flops;
  std::function<void(const KernelContext& ctx)> run;
  // Communication ops that can run asynchronously: posts the node's collective and returns
  // its pending work; the outputs are complete when the work is (an asynchronous schedule
  // waits for it at the node's kCommWait entry, schedule.h). Only for outputs that are
  // overwritten (Accumulate::kNo). Unset: the op runs synchronously only.
  std::function<std::unique_ptr<parallel::Work>(const KernelContext& ctx)> start;
  // Bytes of working memory one run needs beyond its outputs (gathered blocks, partial
  // products), from the input and output types; the memory plan places it in the arena
  // for the node's position alone (KernelContext::scratch). Unset: none.
  std::function<int64_t(const std::vector<TensorType>& inputs,
                        const std::vector<TensorType>& outputs, const Attrs& attrs)>
      scratch;
  // (output, input) pairs whose storage may be shared when the input dies at this node.
  std::vector<std::pair<int, int>> in_place;
  // Runs collectives over the communicators named by the node's "group" (and "group_b",
  // "group_c") attributes.
  bool communicates = false;
  // The op's run() reads or writes tensor memory on the host (loops over elements,
  // memcpy / std::copy, a host vector staged into a collective, a scalar read to decide
  // what to launch) instead of calling dispatch-table kernels on ctx.stream alone. Such an
  // op is correct on the host backends only: Executor::Create refuses a graph holding one
  // on a device backend (executor.h) rather than let it dereference device pointers.
  bool host_loops = false;
};

// Registers `def`; duplicate names are a programmer error.
void RegisterOp(OpDef def);
// The op named `name`, or nullptr.
const OpDef* FindOp(std::string_view name);
std::vector<std::string> OpNames();

struct OpRegistrar {
  explicit OpRegistrar(OpDef def) { RegisterOp(std::move(def)); }
};

// Infers the outputs of `op` applied to `inputs`, creates them (named
// `output_names[i]` when given, else "<prefix>.<op>.<i>") and appends the node.
// Returns the output value ids.
absl::StatusOr<std::vector<int>> Apply(Graph& graph, const std::string& op,
                                       const std::vector<int>& inputs, const Attrs& attrs = {},
                                       const std::vector<std::string>& output_names = {});

// FLOPs of one run of `node` (OpDef::flops from its inputs' types); 0 when the op
// declares none.
double NodeFlops(const Graph& graph, const Node& node);

// Attribute readers for infer functions: InvalidArgument naming the op and key.
absl::StatusOr<int64_t> GetIntAttr(const Attrs& attrs, const std::string& op,
                                   const std::string& key);
absl::StatusOr<double> GetFloatAttr(const Attrs& attrs, const std::string& op,
                                    const std::string& key);

}  // namespace colossal::graph
