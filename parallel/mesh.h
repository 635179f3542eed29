// Mesh: the one object that holds the degrees of the parallel axes (data, pipeline,
// tensor, sequence) and maps ranks to coordinates. Validated on construction against
// the world size; every other module asks it for degrees, coordinates and the rank lists
// of axis groups (the members of the communicator of that axis).
//
// Rank layout, outermost axis first: pipeline, data, sequence, tensor —
//   rank = ((p · D + d) · S + s) · T + t
// so tensor-parallel groups are consecutive ranks (one node, fastest links), then
// sequence, then data; pipeline stages are the farthest apart. Immutable; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::parallel {

enum class Axis : int { kPipeline = 0, kData = 1, kSequence = 2, kTensor = 3 };
inline constexpr int kNumAxes = 4;
std::string AxisName(Axis axis);

struct MeshDims {
  int64_t data = 1;
  int64_t pipeline = 1;
  int64_t tensor = 1;
  int64_t sequence = 1;
  int64_t product() const { return data * pipeline * tensor * sequence; }
};

struct Coord {
  std::array<int64_t, kNumAxes> index{};  // by Axis
  int64_t operator[](Axis axis) const { return index[static_cast<int>(axis)]; }
};

class Mesh {
 public:
  // InvalidArgument when a degree is < 1 or the product differs from `world_size`; the
  // message names every degree and the world size.
  static absl::StatusOr<Mesh> Create(const MeshDims& dims, int64_t world_size);

  int64_t world_size() const { return world_; }
  int64_t degree(Axis axis) const { return degree_[static_cast<int>(axis)]; }
  const MeshDims& dims() const { return dims_; }

  Coord CoordOf(int64_t rank) const;
  int64_t RankOf(const Coord& coord) const;

  // The ranks that differ from `rank` only along `axis`, ordered by their coordinate on
  // it (so the caller's index in the list is its coordinate).
  std::vector<int> Group(Axis axis, int64_t rank) const;
  // Every group of `axis` (a partition of all ranks), ordered by their first rank.
  std::vector<std::vector<int>> Groups(Axis axis) const;
  // The replicas of `rank`'s parameters: the ranks that differ from it only in data and
  // sequence index, ordered by ReplicaIndex (the group gradients are averaged over and
  // ZeRO shards over). Sequence ranks hold the same parameters as data ranks do; they
  // differ in which positions of a window they see.
  std::vector<int> ReplicaGroup(int64_t rank) const;
  // d · S + s: the rank's place in its replica group.
  int64_t ReplicaIndex(int64_t rank) const;
  int64_t replicas() const { return dims_.data * dims_.sequence; }

  std::string ToString() const;  // "data=2 pipeline=1 tensor=2 sequence=1 (world 4)"

 private:
  Mesh() = default;
  MeshDims dims_;
  std::array<int64_t, kNumAxes> degree_{};
  std::array<int64_t, kNumAxes> stride_{};
  int64_t world_ = 1;
};

}  // namespace colossal::parallel
