// Pointer resolution, memory of the stream's backend, host copies and the run loop.
#include "graph/executor.h"

#include <chrono>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/check.h"

namespace colossal::graph {

namespace {

bool IsHostBackend(kernels::Backend backend) {
  return backend == kernels::Backend::kRef || backend == kernels::Backend::kCpu;
}

// Nothing may be allocated before this: a machine without the device still gets the
// reason the graph cannot run there. Ok on the host backends.
absl::Status CheckBackendCanRun(const Graph& graph, kernels::Backend backend) {
  if (IsHostBackend(backend)) return absl::OkStatus();
  std::set<std::string> host_ops;
  for (const Node& node : graph.nodes()) {
    const OpDef* op = FindOp(node.op);
    if (op != nullptr && op->host_loops) host_ops.insert(node.op);
  }
  if (!host_ops.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", std::string(kernels::BackendName(backend)), " backend cannot run ops ",
        absl::StrJoin(host_ops, ", "), " yet: they touch tensor memory on the host"));
  }
  if (kernels::FindBackendMemory(backend) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the ", std::string(kernels::BackendName(backend)),
        " backend has no memory here: its plugin is not loaded or no device is present"));
  }
  return absl::OkStatus();
}

// `bytes` of zero-filled memory where `backend` computes: from the parameter store's
// place (its device and allocator; RESOURCE_EXHAUSTED naming the bytes), or host memory
// for a host backend over a host store (the ref backend's tests run on a cpu store). A
// device backend over a store elsewhere is a caller's mistake, refused.
absl::StatusOr<memory::Buffer> BackendBuffer(const memory::ParamStore& params, kernels::Backend backend, int64_t bytes,
                                             memory::Purpose purpose) {
  if (params.place().backend() == backend) return params.place().Allocate(bytes, purpose);
  if (IsHostBackend(backend) && IsHostBackend(params.place().backend())) return params.place().Allocate(bytes, purpose);
  return absl::FailedPreconditionError(absl::StrCat(
      "an executor on the ", std::string(kernels::BackendName(backend)), " backend needs its parameters there, "
      "not on the ", std::string(kernels::BackendName(params.place().backend())), " backend"));
}

}  // namespace

std::vector<memory::ParamStore::Spec> ParamSpecs(const Graph& graph) {
  std::vector<memory::ParamStore::Spec> specs;
  for (int p : graph.params()) specs.push_back({graph.value(p).name, graph.value(p).shape});
  return specs;
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const Graph* graph,
                                                           memory::ParamStore* params,
                                                           kernels::Stream stream) {
  return Create(graph, params, DefaultSchedule(*graph), stream);
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const Graph* graph,
                                                           memory::ParamStore* params,
                                                           Schedule schedule,
                                                           kernels::Stream stream) {
  std::unique_ptr<Executor> ex(new Executor());
  ex->schedule_ = std::move(schedule);
  ex->graph_ = graph;
  ex->params_ = params;
  ex->stream_ = stream;
  if (static_cast<int>(graph->params().size()) != params->size()) {
    return absl::InvalidArgumentError(absl::StrCat("graph has ", graph->params().size(),
                                                   " parameters, store has ", params->size()));
  }
  const absl::Status can_run = CheckBackendCanRun(*graph, stream.backend);
  if (!can_run.ok()) return can_run;
  ex->memory_ = kernels::FindBackendMemory(stream.backend);
  COL_CHECK_MSG(ex->memory_ != nullptr, "a host backend without registered memory");
  auto plan = PlanMemory(*graph, ex->schedule_);
  if (!plan.ok()) return plan.status();
  ex->plan_ = std::move(*plan);
  absl::StatusOr<memory::Buffer> arena =
      BackendBuffer(*params, stream.backend, ex->plan_.arena_bytes, memory::Purpose::kActivations);
  if (!arena.ok()) return arena.status();
  ex->arena_ = std::move(*arena);

  const int num_values = static_cast<int>(graph->values().size());
  ex->ptr_.assign(num_values, nullptr);
  for (int v = 0; v < num_values; ++v) {
    if (ex->plan_.offset[v] >= 0) ex->ptr_[v] = ex->arena_.as<char>() + ex->plan_.offset[v];
  }
  // States: one zeroed buffer, each 64-byte aligned, kept for the executor's life. Every
  // allocator zero-fills what it hands out (memory/allocator.h), on the host or on the
  // device, so no host code touches the state to clear it.
  int64_t state_bytes = 0;
  std::vector<int64_t> state_offset;
  for (int v : graph->states()) {
    state_offset.push_back(state_bytes);
    state_bytes += (graph->value(v).bytes() + 63) / 64 * 64;
  }
  absl::StatusOr<memory::Buffer> state =
      BackendBuffer(*params, stream.backend, state_bytes, memory::Purpose::kGraphState);
  if (!state.ok()) return state.status();
  ex->state_ = std::move(*state);
  for (size_t i = 0; i < graph->states().size(); ++i) {
    ex->ptr_[graph->states()[i]] = ex->state_.as<char>() + state_offset[i];
  }
  for (size_t i = 0; i < graph->params().size(); ++i) {
    const Value& p = graph->value(graph->params()[i]);
    const memory::ParamInfo& info = params->info(static_cast<int>(i));
    if (info.name != p.name || info.shape != p.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter ", i, " is ", p.name, " ", ShapeString(p.shape),
                       " in the graph but ", info.name, " ", ShapeString(info.shape),
                       " in the store"));
    }
    if (params->allocated()) {
      ex->ptr_[p.id] = params->data(static_cast<int>(i));
      if (p.param_grad >= 0) ex->ptr_[p.param_grad] = params->grad(static_cast<int>(i));
    }
  }

  const int num_nodes = static_cast<int>(graph->nodes().size());
  ex->node_inputs_.resize(num_nodes);
  ex->node_outputs_.resize(num_nodes);
  ex->node_ops_.resize(num_nodes);
  ex->param_grad_first_.resize(num_nodes);
  ex->node_seconds_.assign(num_nodes, 0.0);
  ex->node_comm_.assign(num_nodes, nullptr);
  ex->node_comm_b_.assign(num_nodes, nullptr);
  ex->node_comm_c_.assign(num_nodes, nullptr);
  ex->async_.assign(num_nodes, false);
  ex->pending_.resize(num_nodes);
  for (const ScheduleEntry& e : ex->schedule_.entries) {
    if (e.phase == Phase::kCommWait) ex->async_[e.node] = true;
  }
  for (int n = 0; n < num_nodes; ++n) {
    const Node& node = graph->node(n);
    ex->node_ops_[n] = FindOp(node.op);
    if (ex->node_ops_[n] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("node ", n, ": unknown op '", node.op, "'"));
    }
    for (int v : node.inputs) ex->node_inputs_[n].push_back(ex->ptr_[v]);
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      int v = node.outputs[o];
      ex->node_outputs_[n].push_back(ex->ptr_[v]);
      ex->param_grad_first_[n].push_back(graph->value(v).kind == ValueKind::kParamGrad &&
                                         node.OutputAccumulate(o) == Accumulate::kNo);
    }
    auto bound_later = [&](int v) {
      const ValueKind k = graph->value(v).kind;
      return !params->allocated() && (k == ValueKind::kParam || k == ValueKind::kParamGrad);
    };
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      if (ex->node_inputs_[n][i] == nullptr && !bound_later(node.inputs[i])) {
        return absl::InternalError(absl::StrCat("node ", n, " reads unplaced value"));
      }
    }
    for (size_t o = 0; o < node.outputs.size(); ++o) {
      if (ex->node_outputs_[n][o] == nullptr && !bound_later(node.outputs[o])) {
        return absl::InternalError(absl::StrCat("node ", n, " writes unplaced value"));
      }
    }
  }
  ex->refs_.resize(num_values);
  for (int n = 0; n < num_nodes; ++n) {
    const Node& node = graph->node(n);
    for (size_t i = 0; i < node.inputs.size(); ++i) ex->refs_[node.inputs[i]].push_back({n, false, static_cast<int>(i)});
    for (size_t o = 0; o < node.outputs.size(); ++o) ex->refs_[node.outputs[o]].push_back({n, true, static_cast<int>(o)});
  }
  return ex;
}

absl::StatusOr<void*> Executor::CopyTarget(int value, int64_t bytes, const char* what) const {
  COL_CHECK_MSG(value >= 0 && value < static_cast<int>(ptr_.size()), "Executor::Read/Write: no such value");
  const Value& v = graph_->value(value);
  COL_CHECK_MSG(bytes == v.bytes(), absl::StrCat("Executor::", what, " of ", v.name, ": ", bytes,
                                                 " bytes for a value of ", v.bytes()).c_str());
  if (ptr_[value] == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(what, " of ", v.name, ": the value has no storage"));
  }
  return ptr_[value];
}

absl::Status Executor::Write(int value, const void* host, int64_t bytes) {
  absl::StatusOr<void*> dst = CopyTarget(value, bytes, "Write");
  if (!dst.ok()) return dst.status();
  memory_->synchronize(stream_);  // no node still reads or writes the old contents
  memory_->to_backend(*dst, host, bytes);
  return absl::OkStatus();
}

absl::Status Executor::Read(int value, void* host, int64_t bytes) const {
  absl::StatusOr<void*> src = CopyTarget(value, bytes, "Read");
  if (!src.ok()) return src.status();
  memory_->synchronize(stream_);  // every node that writes it has finished
  memory_->to_host(host, *src, bytes);
  return absl::OkStatus();
}

void Executor::RebindParam(int param, void* data, void* grad) {
  const Value& p = graph_->value(graph_->params()[param]);
  auto bind = [&](int value, void* ptr) {
    ptr_[value] = ptr;
    for (const Ref& r : refs_[value]) (r.output ? node_outputs_ : node_inputs_)[r.node][r.slot] = ptr;
  };
  bind(p.id, data);
  if (p.param_grad >= 0) bind(p.param_grad, grad);
}

void Executor::SetGroup(const std::string& name, parallel::Communicator* comm) {
  for (size_t n = 0; n < node_ops_.size(); ++n) {
    if (!node_ops_[n]->communicates) continue;
    const Attrs& attrs = graph_->node(n).attrs;
    auto it = attrs.find("group");
    if (it != attrs.end() && std::get<std::string>(it->second) == name) node_comm_[n] = comm;
    auto b = attrs.find("group_b");
    if (b != attrs.end() && std::get<std::string>(b->second) == name) node_comm_b_[n] = comm;
    auto c = attrs.find("group_c");
    if (c != attrs.end() && std::get<std::string>(c->second) == name) node_comm_c_[n] = comm;
  }
}

KernelContext Executor::Context(int n, int micro_step) {
  const Node& node = graph_->node(n);
  COL_CHECK_MSG(!node_ops_[n]->communicates || node_comm_[n] != nullptr,
                "a communication op runs over a group that was never bound (SetGroup)");
  COL_CHECK_MSG(node_comm_b_[n] != nullptr || node.attrs.count("group_b") == 0,
                "a communication op runs over a group_b that was never bound (SetGroup)");
  COL_CHECK_MSG(node_comm_c_[n] != nullptr || node.attrs.count("group_c") == 0,
                "a communication op runs over a group_c that was never bound (SetGroup)");
  for (void* p : node_inputs_[n]) COL_CHECK_MSG(p != nullptr, "node reads an unbound parameter");
  for (void* p : node_outputs_[n]) COL_CHECK_MSG(p != nullptr, "node writes an unbound parameter");
  KernelContext ctx;
  ctx.node = &node;
  ctx.graph = graph_;
  ctx.inputs = &node_inputs_[n];
  ctx.outputs = &node_outputs_[n];
  ctx.stream = stream_;
  ctx.comm = node_comm_[n];
  ctx.comm_b = node_comm_b_[n];
  ctx.comm_c = node_comm_c_[n];
  if (plan_.scratch_offset[n] >= 0) ctx.scratch = arena_.as<char>() + plan_.scratch_offset[n];
  ctx.status = &status_;
  ctx.accumulate.resize(node.outputs.size());
  for (size_t o = 0; o < node.outputs.size(); ++o) {
    const bool add = param_grads_ == ParamGrads::kAlwaysAdd ||
                     (param_grads_ == ParamGrads::kAcrossMicroSteps && micro_step > 0);
    ctx.accumulate[o] = param_grad_first_[n][o] && add ? Accumulate::kYes : node.OutputAccumulate(o);
  }
  return ctx;
}

void Executor::RunNode(int n, int micro_step) {
  if (!status_.ok()) return;
  const KernelContext ctx = Context(n, micro_step);
  if (!profile_) {
    node_ops_[n]->run(ctx);
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  node_ops_[n]->run(ctx);
  node_seconds_[n] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Executor::RunEntry(const ScheduleEntry& entry, int micro_step) {
  const int n = entry.node;
  if (entry.phase == Phase::kCommWait) {
    std::unique_ptr<parallel::Work> work = std::move(pending_[n]);
    if (work != nullptr) {
      auto t0 = std::chrono::steady_clock::now();
      absl::Status s = work->Wait();
      if (!s.ok() && status_.ok()) status_ = s;
      if (profile_) {
        node_seconds_[n] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
    if (after_) after_(n);
    return;
  }
  if (before_) before_(n);
  if (!async_[n]) {
    RunNode(n, micro_step);
    if (after_) after_(n);
    return;
  }
  if (!status_.ok()) return;
  const KernelContext ctx = Context(n, micro_step);
  for (Accumulate a : ctx.accumulate) COL_CHECK_MSG(a == Accumulate::kNo, "an asynchronous node accumulates");
  pending_[n] = node_ops_[n]->start(ctx);
}

void Executor::Forward() {
  for (int t = 0; t < schedule_.num_forward; ++t) RunEntry(schedule_.entries[t], 0);
}

void Executor::Backward(int micro_step) {
  const int num_entries = static_cast<int>(schedule_.entries.size());
  for (int t = schedule_.num_forward; t < num_entries; ++t) RunEntry(schedule_.entries[t], micro_step);
}

void Executor::BackwardInput(int micro_step) {
  const int num_entries = static_cast<int>(schedule_.entries.size());
  const int end = schedule_.num_backward_input < 0 ? num_entries
                                                   : schedule_.num_forward + schedule_.num_backward_input;
  for (int t = schedule_.num_forward; t < end; ++t) RunEntry(schedule_.entries[t], micro_step);
}

void Executor::BackwardWeight(int micro_step) {
  if (schedule_.num_backward_input < 0) return;
  const int num_entries = static_cast<int>(schedule_.entries.size());
  for (int t = schedule_.num_forward + schedule_.num_backward_input; t < num_entries; ++t) {
    RunEntry(schedule_.entries[t], micro_step);
  }
}

std::vector<std::pair<std::string, double>> Executor::ProfileByOp() const {
  std::map<std::string, double> by_op;
  for (size_t n = 0; n < node_seconds_.size(); ++n) by_op[graph_->node(n).op] += node_seconds_[n];
  return {by_op.begin(), by_op.end()};
}

}  // namespace colossal::graph
