// DataParallel: what one rank of a data-parallel group does around the forward,
// backward and optimizer step — for every ZeRO stage. BucketLayout (stages 0–2) and
// Zero3Layout (stage 3) explain how the flat parameter and gradient buffers are cut.
//
// The trainer drives it like this:
//   executor hooks: before node n → BeforeNode(n), after node n → AfterNode(n)
//   per micro-step: BeginMicroStep(m, last); forward; backward
//   FinishReduction()   gradients reduced (sums over ranks: scale the loss seed by
//                       1/ranks, and 1/micro-steps, for the global mean)
//   the optimizer updates OptimizerSegments() at OptimizerWeights() with
//   OptimizerGrads(), summing per-tensor norms (LAMB, LARS) across ranks with
//   SumReducer(); then AfterOptimizerStep().
// Stages:
//   0  gradients all-reduced bucket by bucket during the last micro-step's backward;
//      every rank updates every parameter.
//   1  as 0, but each rank updates (and keeps optimizer state for) its 1/N pieces, then
//      all-gathers the updated pieces.
//   2  as 1, but buckets are reduce-scattered: each rank keeps only its pieces'
//      reduced gradients.
//   3  as 2, and parameters too live only as this rank's pieces: each group of
//      parameters is all-gathered into a pooled buffer before the nodes that use it
//      (the next group prefetched), released after; gradients are reduce-scattered
//      into the shards every micro-step. Parameter bytes per rank fall as 1/N.
// Communication on accumulation micro-steps happens only under stage 3.
// Every rank ends a step with identical parameters. Not thread-safe (one per rank).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "graph/ir.h"
#include "memory/param_store.h"
#include "parallel/comm/communicator.h"

namespace colossal::parallel {

struct DataParallelOptions {
  int zero_stage = 0;                 // 0..3
  int64_t bucket_bytes = 25 << 20;    // bytes per gradient bucket / parameter group
  // Stages 0-2: each bucket rounded to bf16 before its all-reduce / reduce-scatter (half
  // the bytes), the sums widened back to fp32 (parallel.reduce_dtype: bf16).
  bool reduce_bf16 = false;
};

// Where this rank holds parameter values: segment i's values at data[i].
struct HeldParams {
  std::vector<memory::ParamSegment> segments;
  std::vector<float*> data;
};

class DataParallel {
 public:
  // Elements the parameter store's flat buffers must hold (stages 0–2; a stage-3 store
  // holds the layout only, without buffers).
  static int64_t PaddedNumel(int64_t flat, int ranks, const DataParallelOptions& options);

  // `dp` (this rank = dp->rank()) and `params` must outlive the object; graph.params()[i]
  // is store parameter i.
  static absl::StatusOr<std::unique_ptr<DataParallel>> Create(Communicator* dp,
                                                              const graph::Graph& graph,
                                                              memory::ParamStore* params,
                                                              const DataParallelOptions& options);
  virtual ~DataParallel() = default;

  int rank() const { return dp_->rank(); }
  int size() const { return dp_->size(); }
  int zero_stage() const { return options_.zero_stage; }

  // Binds the executor (stage 3 rebinds parameters to gathered buffers through it).
  virtual void Attach(graph::Executor* executor) = 0;
  virtual void BeginMicroStep(int micro_step, bool last) = 0;
  virtual void BeforeNode(int node) = 0;
  virtual void AfterNode(int node) = 0;
  virtual absl::Status FinishReduction() = 0;

  virtual std::vector<memory::ParamSegment> OptimizerSegments() const = 0;
  virtual std::vector<float*> OptimizerWeights() const = 0;
  virtual std::vector<const float*> OptimizerGrads() const = 0;
  // Sums per-tensor values across ranks (empty when every rank holds whole tensors:
  // ZeRO 0).
  std::function<void(std::vector<double>&)> SumReducer();
  // Σ g² of the reduced gradient over every parameter; identical on every rank.
  virtual absl::StatusOr<double> GradSumSquares() = 0;
  virtual absl::Status AfterOptimizerStep() = 0;

  // Where this rank keeps parameter values (init, checkpoints): whole tensors in the
  // store for stages 0–2, this rank's pieces for stage 3.
  virtual HeldParams Held() = 0;
  bool params_sharded() const { return options_.zero_stage == 3; }
  // Writes every parameter, whole, into `full` (collective under stage 3).
  virtual absl::Status GatherAll(memory::ParamStore& full) = 0;

  // Bytes this rank keeps: parameters (persistently), optimizer-visible gradients, and
  // the peak of gathered parameter buffers (stage 3).
  virtual int64_t param_bytes() const = 0;
  virtual int64_t grad_bytes() const = 0;
  virtual int64_t gathered_peak_bytes() const { return 0; }

  // Elementwise sums of doubles across the group (losses, counts, stop flags), carried
  // as (hi, lo) float pairs.
  absl::StatusOr<std::vector<double>> Sum(std::vector<double> values);
  absl::Status Barrier();

 protected:
  DataParallel(Communicator* dp, memory::ParamStore* params, const DataParallelOptions& options)
      : dp_(dp), params_(params), options_(options) {}
  // Σ g² of a gradient spread over the ranks as shards: this rank's `n` elements at
  // `shard`, summed across the group.
  absl::StatusOr<double> ShardedSumSquares(const float* shard, int64_t n);
  Communicator* dp_;
  memory::ParamStore* params_;
  DataParallelOptions options_;
};

// Stages 0–2 (data_parallel.cc) and stage 3 (zero3.cc).
absl::StatusOr<std::unique_ptr<DataParallel>> CreateReplicated(Communicator* dp,
                                                               const graph::Graph& graph,
                                                               memory::ParamStore* params,
                                                               const DataParallelOptions& options);
absl::StatusOr<std::unique_ptr<DataParallel>> CreateZero3(Communicator* dp,
                                                          const graph::Graph& graph,
                                                          memory::ParamStore* params,
                                                          const DataParallelOptions& options);

// For each parameter (store index), the last backward node that writes its gradient
// (-1 when none does).
std::vector<int> LastGradWriters(const graph::Graph& graph);

}  // namespace colossal::parallel
