// Mesh coordinates and axis groups.
#include "parallel/mesh.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace colossal::parallel {

std::string AxisName(Axis axis) {
  switch (axis) {
    case Axis::kPipeline: return "pipeline";
    case Axis::kData: return "data";
    case Axis::kSequence: return "sequence";
    case Axis::kTensor: return "tensor";
  }
  return "?";
}

absl::StatusOr<Mesh> Mesh::Create(const MeshDims& dims, int64_t world_size) {
  const std::string described =
      absl::StrCat("data=", dims.data, " pipeline=", dims.pipeline, " tensor=", dims.tensor,
                   " sequence=", dims.sequence);
  if (dims.data < 1 || dims.pipeline < 1 || dims.tensor < 1 || dims.sequence < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("parallel degrees must be >= 1, got ", described));
  }
  if (dims.product() != world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel degrees ", described, " multiply to ", dims.product(), " ranks, but the job has ",
        world_size, " (resources.nodes x resources.ranks_per_node)"));
  }
  Mesh m;
  m.dims_ = dims;
  m.world_ = world_size;
  m.degree_[static_cast<int>(Axis::kPipeline)] = dims.pipeline;
  m.degree_[static_cast<int>(Axis::kData)] = dims.data;
  m.degree_[static_cast<int>(Axis::kSequence)] = dims.sequence;
  m.degree_[static_cast<int>(Axis::kTensor)] = dims.tensor;
  int64_t stride = 1;
  for (int a = kNumAxes - 1; a >= 0; --a) {
    m.stride_[a] = stride;
    stride *= m.degree_[a];
  }
  return m;
}

Coord Mesh::CoordOf(int64_t rank) const {
  COL_CHECK(rank >= 0 && rank < world_);
  Coord c;
  for (int a = 0; a < kNumAxes; ++a) c.index[a] = (rank / stride_[a]) % degree_[a];
  return c;
}

int64_t Mesh::RankOf(const Coord& coord) const {
  int64_t rank = 0;
  for (int a = 0; a < kNumAxes; ++a) {
    COL_CHECK(coord.index[a] >= 0 && coord.index[a] < degree_[a]);
    rank += coord.index[a] * stride_[a];
  }
  return rank;
}

std::vector<int> Mesh::Group(Axis axis, int64_t rank) const {
  Coord c = CoordOf(rank);
  std::vector<int> group;
  for (int64_t i = 0; i < degree(axis); ++i) {
    c.index[static_cast<int>(axis)] = i;
    group.push_back(static_cast<int>(RankOf(c)));
  }
  return group;
}

std::vector<int> Mesh::ReplicaGroup(int64_t rank) const {
  Coord c = CoordOf(rank);
  std::vector<int> group;
  for (int64_t d = 0; d < degree(Axis::kData); ++d) {
    for (int64_t s = 0; s < degree(Axis::kSequence); ++s) {
      c.index[static_cast<int>(Axis::kData)] = d;
      c.index[static_cast<int>(Axis::kSequence)] = s;
      group.push_back(static_cast<int>(RankOf(c)));
    }
  }
  return group;
}

int64_t Mesh::ReplicaIndex(int64_t rank) const {
  const Coord c = CoordOf(rank);
  return c[Axis::kData] * degree(Axis::kSequence) + c[Axis::kSequence];
}

std::vector<std::vector<int>> Mesh::Groups(Axis axis) const {
  std::vector<std::vector<int>> groups;
  for (int64_t r = 0; r < world_; ++r) {
    if (CoordOf(r)[axis] == 0) groups.push_back(Group(axis, r));
  }
  return groups;
}

std::string Mesh::ToString() const {
  return absl::StrCat("data=", dims_.data, " pipeline=", dims_.pipeline, " tensor=", dims_.tensor,
                      " sequence=", dims_.sequence, " (world ", world_, ")");
}

}  // namespace colossal::parallel
