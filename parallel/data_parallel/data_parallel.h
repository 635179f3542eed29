// DataParallel: what one rank of a data-parallel group does around its optimizer step,
// for ZeRO stages 0, 1 and 2 (BucketLayout explains the cut of the flat buffers).
//
// Per step, on the last micro-batch only (accumulation micro-steps communicate nothing):
//   BeginReduction(); executor backward with OnBackwardNode as its per-node hook — each
//   bucket's gradients are all-reduced (ZeRO 0, 1) or reduce-scattered to their owners
//   (ZeRO 2) by the communicator's progress thread while backward goes on; then
//   FinishReduction() waits for the rest. The gradients are then SUMS over ranks: scale
//   the loss seed by 1/ranks (and 1/micro-batches) to get the global mean.
//   The optimizer updates OptimizerSegments() (every tensor under ZeRO 0, this rank's
//   pieces under ZeRO ≥ 1, with optimizer state for those alone), reading gradients at
//   OptimizerGrads(); per-tensor norms (LAMB, LARS) are summed across ranks with
//   SumReducer(). Under ZeRO ≥ 1, GatherParams() then all-gathers the updated pieces.
// Every rank ends a step with identical parameters. Not thread-safe (one per rank).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "memory/host_buffer.h"
#include "memory/param_store.h"
#include "parallel/comm/communicator.h"
#include "parallel/data_parallel/bucket_layout.h"

namespace colossal::parallel {

struct DataParallelOptions {
  int zero_stage = 0;                 // 0, 1 or 2 (3 shards parameters: see zero/)
  int64_t bucket_bytes = 25 << 20;    // gradient bytes per collective
};

class DataParallel {
 public:
  // Elements the parameter store's flat buffers must hold for `ranks` ranks.
  static int64_t PaddedNumel(int64_t flat, int ranks, const DataParallelOptions& options);

  // `dp` (this rank = dp->rank()) must outlive the object; `params` was created with at
  // least PaddedNumel() elements for `graph`'s parameters (graph.params()[i] = store i).
  static absl::StatusOr<std::unique_ptr<DataParallel>> Create(Communicator* dp,
                                                              const graph::Graph& graph,
                                                              memory::ParamStore* params,
                                                              const DataParallelOptions& options);

  int rank() const { return dp_->rank(); }
  int size() const { return dp_->size(); }
  int zero_stage() const { return options_.zero_stage; }
  const BucketLayout& layout() const { return layout_; }

  void BeginReduction();
  void OnBackwardNode(int node);
  absl::Status FinishReduction();

  std::vector<memory::ParamSegment> OptimizerSegments() const;
  std::vector<const float*> OptimizerGrads() const;
  // Sums per-tensor values across ranks (empty function when every rank holds whole
  // tensors, ZeRO 0). Carries doubles as (hi, lo) float pairs.
  std::function<void(std::vector<double>&)> SumReducer();

  // Σ g² of the reduced gradient over every parameter; identical on every rank.
  absl::StatusOr<double> GradSumSquares();
  absl::Status GatherParams();

  // Elementwise sums of doubles across the group (losses, counts, stop flags).
  absl::StatusOr<std::vector<double>> Sum(std::vector<double> values);
  absl::Status Barrier();

  // Bytes of reduced gradients this rank keeps (the shard under ZeRO 2).
  int64_t reduced_grad_bytes() const;

 private:
  DataParallel(Communicator* dp, memory::ParamStore* params, const DataParallelOptions& options,
               BucketLayout layout)
      : dp_(dp), params_(params), options_(options), layout_(layout) {}
  void Launch(int bucket);
  // Where the reduced gradient of flat element `flat` lives on this rank (ZeRO 2).
  const float* ShardGrad(int64_t flat) const;

  Communicator* dp_;
  memory::ParamStore* params_;
  DataParallelOptions options_;
  BucketLayout layout_;
  std::vector<std::vector<int>> finalized_at_;   // per graph node: params whose grad is done
  std::vector<std::vector<int>> param_buckets_;  // per param: buckets it touches
  std::vector<int> bucket_params_;               // per bucket: params touching it
  std::vector<int> pending_;
  std::vector<bool> launched_;
  std::vector<std::unique_ptr<Work>> works_;
  memory::HostBuffer shard_grad_;  // ZeRO 2: reduced gradients of this rank's pieces
  memory::HostBuffer stage_;       // ZeRO ≥ 1: this rank's pieces, sent by all-gather
};

}  // namespace colossal::parallel
