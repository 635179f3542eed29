// GeminiState: a rank's model state in chunks (memory/chunk.h) paged between compute
// memory and NVMe by a ChunkManager, under the job's `memory` keys — the Gemini
// heterogeneous memory of Colossal-AI, with the access order read off the static
// schedule instead of traced.
//
// Layout: parameters packed in first-use order (the schedule's forward) into chunks;
// per chunk four buffers of the same layout: parameters, gradients and the optimizer's
// moments (one for SGD and LARS). The parameter store holds the layout only (no
// buffers); the executor's parameters are rebound to chunk memory around each node.
//
// Around node n (executor hooks): its parameters' chunks and its gradients' chunks are
// accessed (a gradient chunk's first touch of a step is zeroed, not read), bound, and
// released after it; when the last micro-step's backward has written a chunk's last
// gradient, the chunk's per-tensor Σg² is taken while it is in memory. The optimizer
// then runs chunk by chunk where the chunk lives (ApplyUpdate, optimizer.h): every
// tensor is whole in one chunk, so LAMB's and LARS's trust ratios are exact, and the
// global norm comes from the Σg² taken before; the gradients are discarded after it.
//
// Placement (memory.placement):
//   static  the first (1 − offload_param_frac) of the chunks keep parameters and
//           gradients in compute memory, the rest live on NVMe and pass through a
//           transient room; the same for the moments with offload_optim_frac;
//   auto    nothing placed: every buffer competes for the budget (device_budget),
//           evicted farthest-next-use first and prefetched from the schedule.
// One rank (data 1, no tensor, pipeline or sequence parallelism) on the CPU backend so
// far. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "memory/chunk.h"
#include "memory/chunk_manager.h"
#include "memory/param_store.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/metrics.h"

namespace colossal::worker {

// The chunk layout and tier bytes a job's model state gets, without allocating
// anything (for `colossal graph` and start-up checks).
struct GeminiPlan {
  memory::ChunkLayout layout;
  int kinds = 0;                 // buffers per chunk
  int64_t chunk_bytes = 0;
  int64_t pinned_bytes = 0;      // placed in compute memory (static)
  int64_t paged_bytes = 0;       // the rest (on NVMe when not in use)
  int64_t working_bytes = 0;     // the most one schedule position holds at once
  int64_t transient_room = 0;    // static without a budget: the room paged buffers share
  std::vector<bool> pinned;      // per buffer
  std::vector<std::vector<int>> uses;  // the schedule's accesses, per position
};
absl::StatusOr<GeminiPlan> PlanGemini(const config::JobSpec& spec, const graph::Graph& graph,
                                      const graph::Schedule& schedule, const memory::ParamStore& layout,
                                      int64_t micro_steps);
// Lines for the log and `colossal graph`: chunk size and count, waste, per-tier bytes,
// the schedule's accesses.
std::vector<std::string> DescribeGeminiPlan(const GeminiPlan& plan, const config::JobSpec& spec);

// What a step moves in steady state (the second step after initialisation), from a dry
// run of the chunk manager over the plan's schedule: the same decisions, no memory.
struct GeminiTraffic {
  int64_t nvme_read = 0, nvme_written = 0;  // bytes per step
  int64_t compute_peak = 0;                 // bytes of compute memory the chunks take
};
absl::StatusOr<GeminiTraffic> PredictGeminiTraffic(const GeminiPlan& plan, const config::JobSpec& spec);

class GeminiState {
 public:
  // `params` holds the layout only (ParamStore allocate = false); `executor` runs
  // `graph` over it; all must outlive this. Installs the executor's hooks.
  static absl::StatusOr<std::unique_ptr<GeminiState>> Create(const config::JobSpec& spec, const graph::Graph& graph,
                                                             graph::Executor* executor, memory::ParamStore* params,
                                                             int64_t micro_steps);

  void BeginMicroStep(int micro_step, bool last);
  // Σ g² over every parameter (after the last micro-step's backward).
  absl::StatusOr<double> GradSumSquares() const;
  // One optimizer update of every chunk; then the gradients are dropped.
  absl::Status Step(double lr, float grad_scale);
  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }

  // Runs `fill` on every chunk's parameters (whole tensors at data[i]) with the chunk in
  // memory, marked written (initialisation, loading).
  absl::Status FillParams(
      const std::function<absl::Status(const std::vector<memory::ParamSegment>&, const std::vector<float*>&)>& fill);
  // Checkpoint views that copy each tensor out of its chunk when the writer asks for it
  // (nothing is gathered whole first).
  std::vector<checkpoint::TensorView> ModelViews();
  std::vector<checkpoint::TensorView> OptimizerViews();
  absl::Status LoadOptimizer(const checkpoint::PieceReader& reader);
  // Every parameter whole into `full` (host memory).
  absl::Status CopyParams(memory::ParamStore& full);

  // The step's metrics since the last call: nvme_read_bytes and nvme_write_bytes moved,
  // nvme_wait_ms spent waiting for reads, chunk_wait_ms spent in chunk accesses in all
  // (reads, room made, blocks zeroed); chunk_mem_peak (the most compute memory the chunks
  // have held, bytes).
  void AddMetrics(MetricRecord& record);

  const GeminiPlan& plan() const { return plan_; }
  const memory::MemStats& stats() const { return manager_->stats(); }
  std::string io_note() const { return manager_->io_note(); }
  const absl::Status& status() const { return status_; }

 private:
  GeminiState() = default;
  int Buffer(int chunk, int kind) const { return chunk * plan_.kinds + kind; }
  void BeforeNode(int node);
  void AfterNode(int node);
  // The segments (whole tensors) of a chunk and their addresses in a chunk buffer.
  std::vector<memory::ParamSegment> Segments(int chunk) const;
  std::vector<float*> At(int chunk, float* base) const;
  // Copies tensor `param`'s `kind` buffer out (kind 0: values; 2, 3: moments).
  absl::Status CopyOut(int param, int kind, void* dst);

  const config::JobSpec* spec_ = nullptr;
  const graph::Graph* graph_ = nullptr;
  graph::Executor* executor_ = nullptr;
  memory::ParamStore* params_ = nullptr;
  GeminiPlan plan_;
  std::unique_ptr<memory::ChunkManager> manager_;
  std::vector<int> position_of_node_;    // per node: its schedule position in micro-step 0 (-1: none)
  std::vector<std::vector<int>> data_chunks_, grad_chunks_;  // per node
  std::vector<std::vector<int>> node_params_;                // per node: parameters it touches
  std::vector<int> first_grad_node_, last_grad_node_;        // per chunk (-1: none)
  std::vector<std::vector<int>> accessed_;                   // per node: buffers held over it
  std::vector<float*> data_ptr_, grad_ptr_;                  // per parameter, last bound
  std::vector<float*> data_base_, grad_base_;  // per chunk, BeforeNode's scratch (all null between nodes)
  std::vector<double> grad_sq_;                              // per parameter, this step
  std::vector<bool> decay_;
  int positions_per_micro_step_ = 0;
  int micro_step_ = 0;
  bool last_micro_step_ = true;
  int64_t step_ = 0;
  int64_t reported_read_ = 0, reported_written_ = 0;
  double reported_wait_ = 0, reported_access_ = 0;
  absl::Status status_;
};

}  // namespace colossal::worker
