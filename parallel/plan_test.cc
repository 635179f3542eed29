// Plan: tensor sub-axes of every mode against the index formulas in plan.h, groups that
// partition the world, hand-checked groups of a 2d plan beside data parallelism, and the
// errors for sizes that do not fit their mode.
#include "parallel/plan.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

namespace colossal::parallel {
namespace {

Plan Make(int64_t data, int64_t tensor, TensorMode mode, int64_t depth = 1) {
  PlanOptions o;
  o.dims.data = data;
  o.dims.tensor = tensor;
  o.tensor_mode = mode;
  o.tensor_depth = depth;
  auto plan = Plan::Create(o, data * tensor);
  INFO(plan.status().message());
  REQUIRE(plan.ok());
  return *plan;
}

TEST_CASE("sub-axis indices rebuild the tensor index in every mode") {
  struct Case { TensorMode mode; int64_t tensor, depth, q, d; };
  for (const Case& c : {Case{TensorMode::k1d, 4, 1, 1, 1}, Case{TensorMode::k2d, 4, 1, 2, 1},
                        Case{TensorMode::k2d, 9, 1, 3, 1}, Case{TensorMode::k2p5d, 8, 2, 2, 2},
                        Case{TensorMode::k2p5d, 18, 2, 3, 2}, Case{TensorMode::k3d, 8, 1, 2, 2},
                        Case{TensorMode::k3d, 27, 1, 3, 3}}) {
    INFO(TensorModeName(c.mode) << " size " << c.tensor);
    const Plan p = Make(2, c.tensor, c.mode, c.depth);
    REQUIRE(p.tensor_q() == c.q);
    REQUIRE(p.tensor_depth() == c.d);
    std::set<int64_t> seen;
    for (int64_t r = 0; r < p.mesh().world_size(); ++r) {
      const int64_t t = p.mesh().CoordOf(r)[Axis::kTensor];
      if (c.mode == TensorMode::k1d) {
        REQUIRE(p.TensorIndex(TensorAxis::kTensor1d, r) == t);
        continue;
      }
      const int64_t row = p.TensorIndex(TensorAxis::kRow, r), col = p.TensorIndex(TensorAxis::kCol, r),
                    depth = p.TensorIndex(TensorAxis::kDepth, r);
      REQUIRE(depth * c.q * c.q + row * c.q + col == t);
      REQUIRE(row < c.q);
      REQUIRE(col < c.q);
      REQUIRE(depth < c.d);
    }
    for (TensorAxis a : {TensorAxis::kTensor1d, TensorAxis::kRow, TensorAxis::kCol, TensorAxis::kDepth}) {
      INFO(TensorAxisName(a));
      std::vector<int> all;
      for (const auto& g : p.TensorGroups(a)) {
        REQUIRE(static_cast<int64_t>(g.size()) == p.degree(a));
        for (size_t i = 0; i < g.size(); ++i) {
          REQUIRE(p.TensorIndex(a, g[i]) == static_cast<int64_t>(i));
          REQUIRE(p.TensorGroup(a, g[i]) == g);
          // Members differ only along `a`: same data coordinate, same other sub-indices.
          REQUIRE(p.mesh().CoordOf(g[i])[Axis::kData] == p.mesh().CoordOf(g[0])[Axis::kData]);
          for (TensorAxis b : {TensorAxis::kTensor1d, TensorAxis::kRow, TensorAxis::kCol, TensorAxis::kDepth}) {
            if (b != a) REQUIRE(p.TensorIndex(b, g[i]) == p.TensorIndex(b, g[0]));
          }
        }
        all.insert(all.end(), g.begin(), g.end());
      }
      std::sort(all.begin(), all.end());
      REQUIRE(all.size() == static_cast<size_t>(p.mesh().world_size()));
      for (size_t i = 0; i < all.size(); ++i) REQUIRE(all[i] == static_cast<int>(i));
    }
  }
}

TEST_CASE("a 2d plan beside data parallelism, by hand") {
  // 8 ranks: data 2 x tensor 4 (q = 2). Rank 5 = data 1, tensor index 1 = row 0, col 1.
  const Plan p = Make(2, 4, TensorMode::k2d);
  CHECK(p.TensorIndex(TensorAxis::kRow, 5) == 0);
  CHECK(p.TensorIndex(TensorAxis::kCol, 5) == 1);
  CHECK(p.TensorGroup(TensorAxis::kRow, 5) == std::vector<int>{5, 7});  // down its column
  CHECK(p.TensorGroup(TensorAxis::kCol, 5) == std::vector<int>{4, 5});  // along its row
  CHECK(p.TensorGroup(TensorAxis::kDepth, 5) == std::vector<int>{5});
  CHECK(p.mesh().Group(Axis::kData, 5) == std::vector<int>{1, 5});
  CHECK(p.ToString() == "data=2 pipeline=1 tensor=4 (2d, q=2) sequence=1, ZeRO 0");
  CHECK(Make(1, 8, TensorMode::k2p5d, 2).ToString() ==
        "data=1 pipeline=1 tensor=8 (2.5d, q=2, depth=2) sequence=1, ZeRO 0");
}

TEST_CASE("sizes that do not fit their mode are errors naming size and mode") {
  auto error = [](int64_t tensor, TensorMode mode, int64_t depth = 1, int zero = 0) {
    PlanOptions o;
    o.dims.tensor = tensor;
    o.tensor_mode = mode;
    o.tensor_depth = depth;
    o.zero_stage = zero;
    auto plan = Plan::Create(o, tensor);
    REQUIRE_FALSE(plan.ok());
    return std::string(plan.status().message());
  };
  CHECK(error(8, TensorMode::k2d) == "tensor size: mode 2d needs a square size (1, 4, 9, 16, ...), got 8");
  CHECK(error(4, TensorMode::k3d) == "tensor size: mode 3d needs a cube size (1, 8, 27, 64, ...), got 4");
  CHECK(error(6, TensorMode::k2p5d, 2) ==
        "tensor size: mode 2.5d needs size = depth x q^2 (depth 2: 2, 8, 18, ...), got 6");
  CHECK(error(4, TensorMode::k1d, 2) == "only tensor mode 2.5d takes a depth; mode 1d got depth 2");
  CHECK(error(1, TensorMode::k1d, 1, 4) == "ZeRO stage must be 0, 1, 2 or 3, got 4");
  PlanOptions o;
  o.dims.tensor = 2;
  CHECK_FALSE(Plan::Create(o, 4).ok());  // degrees multiply to 2, the world is 4
}

}  // namespace
}  // namespace colossal::parallel
