// The executor: runs a planned graph on one device. Owns the activation arena; takes
// parameter and parameter-gradient storage from a ParamStore (graph.params()[i] is
// store index i). Every node's input/output pointers are resolved once at creation, so
// a run is a loop of kernel calls with no allocation and no lookups.
//
// The order is a Schedule (schedule.h), DefaultSchedule unless one is given: Forward()
// runs its forward part, Backward(micro_step) the rest; the memory plan's lifetimes are
// over the same schedule. Parameter
// gradients are overwritten by their first writer on micro_step 0 and accumulated on
// later micro-steps (see autodiff.h), so a step of M micro-batches is
//   for m in 0..M-1: fill inputs; Forward(); Backward(m)
// and leaves the summed gradient in the ParamStore. Not thread-safe; the kernels use
// the calling thread's OpenMP team.
//
// Backends: the arena and the graph's state live where the Stream's backend computes,
// allocated from the parameter store's place (memory/place.h) — host memory for the host
// backends (ref, cpu), the place's device otherwise. A device backend is refused for a graph holding an op
// whose run() touches tensor memory on the host (OpDef::host_loops). Callers move values
// in and out with Write / Read, which copy through the backend (kernels/common/
// backend_memory.h) and so work on every backend; Data() hands out the raw pointer,
// which only host-backend code may dereference.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "graph/memory_plan.h"
#include "graph/op_registry.h"
#include "graph/schedule.h"
#include "kernels/common/backend_memory.h"
#include "memory/allocator.h"
#include "memory/param_store.h"

namespace colossal::graph {

// The parameter store specs of `graph`'s parameters, in order (graph.params()[i] is store
// index i, as the executor binds them).
std::vector<memory::ParamStore::Spec> ParamSpecs(const Graph& graph);

class Executor {
 public:
  // `graph` and `params` must outlive the executor. Fails when the graph does not
  // validate (unknown op, wrong parameter count or shapes against the store). A store
  // without buffers (ZeRO 3) leaves parameters unbound until RebindParam. On a device
  // backend (stream.backend not ref or cpu) it fails with FAILED_PRECONDITION, before
  // allocating anything, when an op of the graph has host loops (naming every such op),
  // when the backend's memory is not registered or no device is present, or when the
  // parameter store lives on another backend; and with the allocator's error when the
  // memory is exhausted.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const Graph* graph,
                                                          memory::ParamStore* params,
                                                          kernels::Stream stream = {});
  // Runs `schedule` (validated: InvalidArgument naming the bad entry).
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const Graph* graph,
                                                          memory::ParamStore* params,
                                                          Schedule schedule,
                                                          kernels::Stream stream = {});

  // Storage of any value (arena, parameter or parameter gradient): memory of the
  // stream's backend. Communicators may take it (a device backend's collectives read
  // device memory); only code that runs on the host backends alone (tests, the pipeline
  // runner's copies between its executors) may dereference it. Code meant for a device
  // backend too moves values with Read / Write.
  void* Data(int value) { return ptr_[value]; }
  template <typename T>
  T* Data(int value) {
    return static_cast<T*>(ptr_[value]);
  }

  // Copies `bytes` from host memory into value `value` (overwrite), or the value out into
  // host memory. `bytes` must equal the value's size (a whole value moves; anything else is
  // a programmer error, as is a value id out of range). Both first wait for the stream, so
  // they see every node run before them and race none; on the host backends that wait is
  // nothing and the copy a memcpy. FAILED_PRECONDITION when the value has no storage (an
  // unbound parameter, a value the memory plan placed nowhere).
  absl::Status Write(int value, const void* host, int64_t bytes);
  absl::Status Read(int value, void* host, int64_t bytes) const;
  // Typed forms: the span's bytes must be the value's.
  template <typename T>
  absl::Status WriteValue(int value, std::span<const T> host) {
    return Write(value, host.data(), static_cast<int64_t>(host.size_bytes()));
  }
  template <typename T>
  absl::Status ReadValue(int value, std::span<T> host) const {
    return Read(value, host.data(), static_cast<int64_t>(host.size_bytes()));
  }
  // A one-element value (the loss, the loss seed).
  template <typename T>
  absl::Status WriteScalar(int value, T x) {
    return Write(value, &x, static_cast<int64_t>(sizeof(T)));
  }
  template <typename T>
  absl::StatusOr<T> ReadScalar(int value) const {
    T x{};
    absl::Status s = Read(value, &x, static_cast<int64_t>(sizeof(T)));
    if (!s.ok()) return s;
    return x;
  }

  void Forward();
  void Backward(int micro_step);
  // The two parts of a SplitBackward schedule (schedule.h), in this order; together they
  // are Backward. Without a split, BackwardInput runs the whole backward pass and
  // BackwardWeight nothing.
  void BackwardInput(int micro_step);
  void BackwardWeight(int micro_step);

  // Called before / after every node (forward and backward) with its node id: data
  // parallelism launches gradient reductions after backward nodes, ZeRO 3 gathers and
  // releases parameters around nodes. An asynchronous node's before runs at its post and
  // its after at its wait. Empty functions remove them.
  void SetHooks(std::function<void(int node)> before, std::function<void(int node)> after) {
    before_ = std::move(before);
    after_ = std::move(after);
  }

  // Points parameter `param` (store index) and its gradient at new storage for the nodes
  // that run from now on (ZeRO 3 keeps parameters in a pool of gathered buffers). A node
  // that runs while one of its parameters is unbound (null) is a programmer error.
  void RebindParam(int param, void* data, void* grad);

  // How parameter gradients are written:
  //   kAcrossMicroSteps  the first writer overwrites on micro-step 0, every later write
  //                      adds (the default)
  //   kFresh             every micro-step starts them afresh (ZeRO 3 reduces each
  //                      micro-step's gradients into shards itself)
  //   kAlwaysAdd         every write adds; the caller zeroes them before a step
  //                      (pipeline stages: several executors, one per in-flight
  //                      micro-batch and chunk, add into one store in any order)
  enum class ParamGrads { kAcrossMicroSteps, kFresh, kAlwaysAdd };
  void SetParamGrads(ParamGrads mode) { param_grads_ = mode; }

  // Binds the process group `name` (the "group", "group_b" or "group_c" attribute of communication
  // ops) to `comm`, which must outlive the executor. Running a communication op whose
  // group is unbound is a programmer error.
  void SetGroup(const std::string& name, parallel::Communicator* comm);
  // Ok, or the first failure of a communication op; once failed, every later node is
  // skipped (the caller reports the error and stops).
  const absl::Status& status() const { return status_; }
  // A hook's failure (Gemini's chunk I/O): kept as status() unless one is already there,
  // and every later node is skipped, the one whose before-hook calls it included.
  void Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
  }

  const MemoryPlan& plan() const { return plan_; }
  const Schedule& schedule() const { return schedule_; }
  const Graph& graph() const { return *graph_; }

  // Per-node wall time accumulated over runs when profiling is on (for `--profile`).
  void EnableProfiling(bool on) { profile_ = on; }
  std::vector<std::pair<std::string, double>> ProfileByOp() const;

 private:
  Executor() = default;
  KernelContext Context(int n, int micro_step);
  void RunNode(int n, int micro_step);
  // One schedule entry: a node run, an asynchronous node posted, or its wait.
  void RunEntry(const ScheduleEntry& entry, int micro_step);

  // The value's storage for a copy of `bytes`: checks the id and size, FAILED_PRECONDITION
  // when it has none.
  absl::StatusOr<void*> CopyTarget(int value, int64_t bytes, const char* what) const;

  const Graph* graph_ = nullptr;
  memory::ParamStore* params_ = nullptr;
  kernels::Stream stream_;
  const kernels::BackendMemory* memory_ = nullptr;  // the stream's backend's copies
  Schedule schedule_;
  MemoryPlan plan_;
  memory::Buffer arena_;
  memory::Buffer state_;  // the graph's kState values, across runs
  std::vector<void*> ptr_;                       // per value
  std::vector<std::vector<void*>> node_inputs_;  // per node
  std::vector<std::vector<void*>> node_outputs_;
  std::vector<const OpDef*> node_ops_;
  std::vector<std::vector<bool>> param_grad_first_;  // per node, per output
  bool profile_ = false;
  ParamGrads param_grads_ = ParamGrads::kAcrossMicroSteps;
  std::function<void(int)> before_, after_;
  // Per value (params and param grads): the (node, output?, slot) pointer entries that
  // hold it, for RebindParam.
  struct Ref {
    int node;
    bool output;
    int slot;
  };
  std::vector<std::vector<Ref>> refs_;
  std::vector<double> node_seconds_;
  std::vector<parallel::Communicator*> node_comm_;    // per node: its "group"
  std::vector<parallel::Communicator*> node_comm_b_;  // and its "group_b"
  std::vector<parallel::Communicator*> node_comm_c_;  // and its "group_c"
  std::vector<bool> async_;                                 // per node: posted, waited later
  std::vector<std::unique_ptr<parallel::Work>> pending_;  // per node: its posted collective
  absl::Status status_;
};

}  // namespace colossal::graph
