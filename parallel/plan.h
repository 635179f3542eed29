// Plan: the parallel layout of a job as one validated value — the mesh degrees (data,
// pipeline, tensor, sequence), the tensor-parallel mode with its sub-axes, and the ZeRO
// stage. Built once (from the JobSpec by the worker, later by the planner); every module
// asks it for degrees, coordinates and the rank lists of its groups, so those numbers
// live here only. Does not own communicators (a caller Splits the world communicator
// along Groups()) or what a layout means for the graph (parallel/tensor/).
//
// Tensor sub-axes, within one tensor group of T consecutive ranks with tensor index t:
//   1d   (Megatron):          one axis, kTensor1d = t                     T = P
//   2d   (SUMMA, q×q):        kRow = t / q, kCol = t % q                   T = q²
//   2.5d (Tesseract, d×q×q):  kDepth = t / q², kRow = (t / q) % q, kCol = t % q   T = d·q²
//   3d   (q×q×q):             kDepth = t / q², kRow = (t / q) % q, kCol = t % q   T = q³
// (the papers' names: 3D's depth/row/col are the input, weight and output axes). Immutable.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/mesh.h"
#include "parallel/tensor_grid.h"

namespace colossal::parallel {


// A sub-axis of the tensor axis.
enum class TensorAxis : int { kTensor1d = 0, kRow = 1, kCol = 2, kDepth = 3 };
inline constexpr int kNumTensorAxes = 4;
std::string TensorAxisName(TensorAxis axis);

struct PlanOptions {
  MeshDims dims;
  TensorMode tensor_mode = TensorMode::k1d;
  int64_t tensor_depth = 1;  // 2.5d only
  int zero_stage = 0;        // 0..3
};

class Plan {
 public:
  // InvalidArgument naming the degrees when they do not fit `world_size` or the tensor
  // size does not fit its mode (TensorGridOf), or the ZeRO stage is outside 0..3.
  static absl::StatusOr<Plan> Create(const PlanOptions& options, int64_t world_size);

  const Mesh& mesh() const { return mesh_; }
  int64_t degree(Axis axis) const { return mesh_.degree(axis); }
  TensorMode tensor_mode() const { return options_.tensor_mode; }
  int zero_stage() const { return options_.zero_stage; }
  // q of the 2d/2.5d/3d grid (1 for 1d); the depth d (2.5d: the option; 3d: q; else 1).
  int64_t tensor_q() const { return q_; }
  int64_t tensor_depth() const { return depth_; }
  // Degree of a sub-axis in this mode: 1 for a sub-axis the mode does not use.
  int64_t degree(TensorAxis axis) const { return sub_degree_[static_cast<int>(axis)]; }

  // This rank's index on a tensor sub-axis.
  int64_t TensorIndex(TensorAxis axis, int64_t rank) const;
  // The ranks that differ from `rank` only along tensor sub-axis `axis`, ordered by their
  // index on it (the caller's position is its index).
  std::vector<int> TensorGroup(TensorAxis axis, int64_t rank) const;
  // Every group of a sub-axis (a partition of all ranks), ordered by first rank.
  std::vector<std::vector<int>> TensorGroups(TensorAxis axis) const;

  std::string ToString() const;  // "data=2 pipeline=1 tensor=4 (2d, q=2) sequence=1, ZeRO 1"

 private:
  Plan() = default;
  PlanOptions options_;
  Mesh mesh_ = Mesh::Create({}, 1).value();
  int64_t q_ = 1, depth_ = 1;
  std::array<int64_t, kNumTensorAxes> sub_degree_{1, 1, 1, 1};
  std::array<int64_t, kNumTensorAxes> sub_stride_{1, 1, 1, 1};
};

}  // namespace colossal::parallel
