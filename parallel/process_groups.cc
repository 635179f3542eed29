// Splitting the world communicator along the plan's axes.
#include "parallel/process_groups.h"

#include "absl/strings/str_cat.h"

namespace colossal::parallel {

absl::StatusOr<std::unique_ptr<ProcessGroups>> ProcessGroups::Create(const Plan& plan,
                                                                     Communicator* world) {
  std::unique_ptr<ProcessGroups> g(new ProcessGroups(plan));
  g->world_ = world;
  const int64_t world_size = world ? world->size() : 1;
  if (world_size != plan.mesh().world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("the plan has ", plan.mesh().world_size(),
                                                   " ranks but the world communicator ", world_size));
  }
  for (Axis axis : {Axis::kPipeline, Axis::kData, Axis::kSequence, Axis::kTensor}) {
    const int64_t degree = plan.degree(axis);
    const int a = static_cast<int>(axis);
    if (degree == 1) continue;
    if (degree == world_size) {
      g->axes_[a] = world;
      continue;
    }
    auto split = world->Split(plan.mesh().Group(axis, world->rank()));
    if (!split.ok()) {
      return absl::Status(split.status().code(), absl::StrCat("creating the ", AxisName(axis),
                                                              " group: ", split.status().message()));
    }
    g->owned_[a] = std::move(*split);
    g->axes_[a] = g->owned_[a].get();
  }
  // Data × sequence: gradients are averaged over both.
  const Mesh& mesh = plan.mesh();
  if (mesh.degree(Axis::kSequence) == 1) {
    g->replicas_ = g->axes_[static_cast<int>(Axis::kData)];
  } else if (mesh.degree(Axis::kData) == 1) {
    g->replicas_ = g->axes_[static_cast<int>(Axis::kSequence)];
  } else if (mesh.replicas() == world_size) {
    g->replicas_ = world;
  } else {
    auto split = world->Split(mesh.ReplicaGroup(world->rank()));
    if (!split.ok()) {
      return absl::Status(split.status().code(),
                          absl::StrCat("creating the data x sequence group: ", split.status().message()));
    }
    g->replicas_owned_ = std::move(*split);
    g->replicas_ = g->replicas_owned_.get();
  }
  // The tensor sub-axes of 2d / 2.5d / 3d, in a fixed order.
  if (plan.tensor_mode() != TensorMode::k1d) {
    for (TensorAxis axis : {TensorAxis::kRow, TensorAxis::kCol, TensorAxis::kDepth}) {
      if (plan.degree(axis) <= 1) continue;
      auto split = world->Split(plan.TensorGroup(axis, world->rank()));
      if (!split.ok()) {
        return absl::Status(split.status().code(),
                            absl::StrCat("creating the tensor ", TensorAxisName(axis),
                                         " group: ", split.status().message()));
      }
      const int a = static_cast<int>(axis);
      g->sub_owned_[a] = std::move(*split);
      g->sub_[a] = g->sub_owned_[a].get();
    }
  }
  return g;
}

absl::StatusOr<std::vector<double>> SumDoubles(Communicator& comm, std::vector<double> values) {
  // (hi, lo) float pairs: each rank's value to ~1e-14; the float sums of the hi parts
  // round at ~6e-8 of the total, ample for norms and losses.
  std::vector<float> pairs(2 * values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    pairs[2 * i] = static_cast<float>(values[i]);
    pairs[2 * i + 1] = static_cast<float>(values[i] - static_cast<double>(pairs[2 * i]));
  }
  absl::Status s =
      comm.AllReduce(pairs.data(), static_cast<int64_t>(pairs.size()), DType::kF32)->Wait();
  if (!s.ok()) return s;
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<double>(pairs[2 * i]) + static_cast<double>(pairs[2 * i + 1]);
  }
  return values;
}

}  // namespace colossal::parallel
