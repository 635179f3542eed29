// ProcessGroups: the communicators of one rank's plan — the world and one per mesh axis
// (data, tensor, ...), each Split once from the world communicator along the plan's
// groups. What the trainer, data parallelism, the optimizer and checkpoints take instead
// of a single communicator.
//
// An axis of degree 1 has no communicator (null); an axis that spans the whole world
// uses the world communicator itself. Creation is collective over the world: every rank
// creates its groups in the same axis order. Not thread-safe; outlives its users.
#pragma once

#include <array>
#include <memory>

#include "absl/status/statusor.h"
#include "parallel/comm/communicator.h"
#include "parallel/plan.h"

namespace colossal::parallel {

class ProcessGroups {
 public:
  // `world` (null for a single rank) must outlive the groups; its rank is this rank.
  static absl::StatusOr<std::unique_ptr<ProcessGroups>> Create(const Plan& plan,
                                                               Communicator* world);

  const Plan& plan() const { return plan_; }
  int rank() const { return world_ ? world_->rank() : 0; }
  int world_size() const { return world_ ? world_->size() : 1; }
  Communicator* world() const { return world_; }
  // The communicator of `axis`, or null when its degree is 1.
  Communicator* axis(Axis axis) const { return axes_[static_cast<int>(axis)]; }
  // This rank's index along `axis` (0 when the degree is 1).
  int64_t index(Axis axis) const { return plan_.mesh().CoordOf(rank())[axis]; }
  // The replica group (Mesh::ReplicaGroup: data × sequence), or null when it is one rank:
  // the data axis's communicator without sequence parallelism, the sequence axis's
  // without data parallelism, else its own.
  Communicator* replicas() const { return replicas_; }
  int64_t replica_index() const { return plan_.mesh().ReplicaIndex(rank()); }
  int64_t num_replicas() const { return plan_.mesh().replicas(); }
  // The communicator of tensor sub-axis `axis` (2d: kRow, kCol; the ranks that differ
  // only in that index), or null when the mode does not use it or its degree is 1.
  Communicator* tensor_axis(TensorAxis axis) const { return sub_[static_cast<int>(axis)]; }
  int64_t tensor_index(TensorAxis axis) const { return plan_.TensorIndex(axis, rank()); }

 private:
  explicit ProcessGroups(Plan plan) : plan_(std::move(plan)) {}
  Plan plan_;
  Communicator* world_ = nullptr;
  std::array<Communicator*, kNumAxes> axes_{};
  std::array<std::unique_ptr<Communicator>, kNumAxes> owned_;
  Communicator* replicas_ = nullptr;
  std::unique_ptr<Communicator> replicas_owned_;
  std::array<Communicator*, kNumTensorAxes> sub_{};
  std::array<std::unique_ptr<Communicator>, kNumTensorAxes> sub_owned_;
};

// Σ over the ranks of `comm` of each value, to ~1e-14 relative (float pairs: the
// collectives sum fp32). Identical on every rank.
absl::StatusOr<std::vector<double>> SumDoubles(Communicator& comm, std::vector<double> values);

}  // namespace colossal::parallel
