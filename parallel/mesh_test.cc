// Mesh: validation messages, coordinate round trips, axis groups as partitions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "parallel/mesh.h"

namespace colossal::parallel {
namespace {

TEST_CASE("mesh validation names every degree and the world size") {
  auto bad = Mesh::Create({2, 1, 4, 1}, 4);
  REQUIRE(absl::IsInvalidArgument(bad.status()));
  const std::string msg(bad.status().message());
  for (const char* part : {"data=2", "pipeline=1", "tensor=4", "sequence=1", "8 ranks", "has 4"}) {
    INFO(msg);
    REQUIRE(msg.find(part) != std::string::npos);
  }
  REQUIRE(absl::IsInvalidArgument(Mesh::Create({0, 1, 1, 1}, 0).status()));
}

TEST_CASE("rank layout: tensor innermost, pipeline outermost") {
  auto m = Mesh::Create({/*data=*/2, /*pipeline=*/3, /*tensor=*/2, /*sequence=*/2}, 24).value();
  for (int64_t r = 0; r < 24; ++r) REQUIRE(m.RankOf(m.CoordOf(r)) == r);
  // rank = ((p·D + d)·S + s)·T + t
  Coord c = m.CoordOf(((2 * 2 + 1) * 2 + 1) * 2 + 1);
  REQUIRE(c[Axis::kPipeline] == 2);
  REQUIRE(c[Axis::kData] == 1);
  REQUIRE(c[Axis::kSequence] == 1);
  REQUIRE(c[Axis::kTensor] == 1);
  REQUIRE(m.Group(Axis::kTensor, 6) == std::vector<int>{6, 7});
  REQUIRE(m.Group(Axis::kSequence, 6) == std::vector<int>{4, 6});
  REQUIRE(m.Group(Axis::kData, 6) == std::vector<int>{2, 6});
  REQUIRE(m.Group(Axis::kPipeline, 6) == std::vector<int>{6, 14, 22});
}

TEST_CASE("the groups of each axis partition the ranks and agree with coordinates") {
  auto m = Mesh::Create({2, 2, 2, 1}, 8).value();
  for (Axis axis : {Axis::kPipeline, Axis::kData, Axis::kSequence, Axis::kTensor}) {
    std::set<int> seen;
    for (const auto& g : m.Groups(axis)) {
      REQUIRE(static_cast<int64_t>(g.size()) == m.degree(axis));
      for (size_t i = 0; i < g.size(); ++i) {
        REQUIRE(seen.insert(g[i]).second);
        REQUIRE(m.CoordOf(g[i])[axis] == static_cast<int64_t>(i));
        REQUIRE(m.Group(axis, g[i]) == g);
      }
    }
    REQUIRE(seen.size() == 8);
  }
}

TEST_CASE("the replica group is data x sequence, ordered by d * S + s") {
  // data 2, pipeline 2, tensor 2, sequence 2: rank = ((p * 2 + d) * 2 + s) * 2 + t.
  auto m = Mesh::Create({2, 2, 2, 2}, 16).value();
  REQUIRE(m.replicas() == 4);
  // Rank 11: p 1, d 0, s 1, t 1.
  REQUIRE(m.ReplicaGroup(11) == std::vector<int>{9, 11, 13, 15});
  REQUIRE(m.ReplicaIndex(11) == 1);
  REQUIRE(m.ReplicaIndex(13) == 2);
  for (int r : m.ReplicaGroup(11)) REQUIRE(m.ReplicaGroup(r) == m.ReplicaGroup(11));
}

}  // namespace
}  // namespace colossal::parallel
