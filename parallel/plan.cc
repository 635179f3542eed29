// Plan construction and the tensor sub-axis arithmetic.
#include "parallel/plan.h"

#include "absl/strings/str_cat.h"

namespace colossal::parallel {

std::string TensorAxisName(TensorAxis axis) {
  switch (axis) {
    case TensorAxis::kTensor1d: return "tensor";
    case TensorAxis::kRow: return "row";
    case TensorAxis::kCol: return "col";
    case TensorAxis::kDepth: return "depth";
  }
  return "?";
}

absl::StatusOr<Plan> Plan::Create(const PlanOptions& options, int64_t world_size) {
  absl::StatusOr<Mesh> mesh = Mesh::Create(options.dims, world_size);
  if (!mesh.ok()) return mesh.status();
  if (options.zero_stage < 0 || options.zero_stage > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("ZeRO stage must be 0, 1, 2 or 3, got ", options.zero_stage));
  }
  const int64_t t = options.dims.tensor;
  const std::string mode = TensorModeName(options.tensor_mode);
  if (options.tensor_mode != TensorMode::k2p5d && options.tensor_depth != 1) {
    return absl::InvalidArgumentError(absl::StrCat("only tensor mode 2.5d takes a depth; mode ",
                                                   mode, " got depth ", options.tensor_depth));
  }
  Plan plan;
  plan.options_ = options;
  plan.mesh_ = *mesh;
  auto& deg = plan.sub_degree_;
  auto& stride = plan.sub_stride_;
  const int row = static_cast<int>(TensorAxis::kRow), col = static_cast<int>(TensorAxis::kCol),
            depth = static_cast<int>(TensorAxis::kDepth);
  switch (options.tensor_mode) {
    case TensorMode::k1d:
      deg[static_cast<int>(TensorAxis::kTensor1d)] = t;
      break;
    case TensorMode::k2d:
    case TensorMode::k2p5d:
    case TensorMode::k3d: {
      absl::StatusOr<TensorGrid> grid = TensorGridOf(options.tensor_mode, t, options.tensor_depth);
      if (!grid.ok()) return absl::InvalidArgumentError(absl::StrCat("tensor size: ", grid.status().message()));
      const int64_t q = grid->q;
      plan.q_ = q;
      plan.depth_ = grid->depth;
      deg[row] = deg[col] = q;
      deg[depth] = plan.depth_;
      stride[col] = 1;
      stride[row] = q;
      stride[depth] = q * q;
      break;
    }
  }
  return plan;
}

int64_t Plan::TensorIndex(TensorAxis axis, int64_t rank) const {
  const int a = static_cast<int>(axis);
  return mesh_.CoordOf(rank)[Axis::kTensor] / sub_stride_[a] % sub_degree_[a];
}

std::vector<int> Plan::TensorGroup(TensorAxis axis, int64_t rank) const {
  const int a = static_cast<int>(axis);
  // Tensor ranks are consecutive in the world (mesh.h), so a tensor index step is a rank step.
  const int64_t base = rank - TensorIndex(axis, rank) * sub_stride_[a];
  std::vector<int> group;
  for (int64_t i = 0; i < sub_degree_[a]; ++i) group.push_back(static_cast<int>(base + i * sub_stride_[a]));
  return group;
}

std::vector<std::vector<int>> Plan::TensorGroups(TensorAxis axis) const {
  std::vector<std::vector<int>> groups;
  for (int64_t r = 0; r < mesh_.world_size(); ++r) {
    if (TensorIndex(axis, r) == 0) groups.push_back(TensorGroup(axis, r));
  }
  return groups;
}

std::string Plan::ToString() const {
  const MeshDims& d = mesh_.dims();
  std::string tensor = absl::StrCat(d.tensor, " (", TensorModeName(options_.tensor_mode));
  if (options_.tensor_mode != TensorMode::k1d) absl::StrAppend(&tensor, ", q=", q_);
  if (options_.tensor_mode == TensorMode::k2p5d) absl::StrAppend(&tensor, ", depth=", depth_);
  absl::StrAppend(&tensor, ")");
  return absl::StrCat("data=", d.data, " pipeline=", d.pipeline, " tensor=", tensor,
                      " sequence=", d.sequence, ", ZeRO ", options_.zero_stage);
}

}  // namespace colossal::parallel
