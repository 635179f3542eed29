// ParamStore layout: aligned offsets, no overlap, zeroed gradients, lookup by name.
#include <catch2/catch.hpp>

#include <cstdint>

#include "memory/param_store.h"

namespace colossal::memory {
namespace {

TEST_CASE("param store lays tensors out aligned and disjoint") {
  ParamStore store({{"a", {3, 5}}, {"b", {7}}, {"c", {2, 2, 2}}});
  REQUIRE(store.size() == 3);
  REQUIRE(store.num_params() == 15 + 7 + 8);
  int64_t end = 0;
  for (int i = 0; i < store.size(); ++i) {
    const ParamInfo& info = store.info(i);
    REQUIRE(info.offset >= end);
    REQUIRE(reinterpret_cast<uintptr_t>(store.data(i)) % 64 == 0);
    REQUIRE(reinterpret_cast<uintptr_t>(store.grad(i)) % 64 == 0);
    end = info.offset + info.numel;
    for (int64_t j = 0; j < info.numel; ++j) REQUIRE(store.grad(i)[j] == 0.0f);
  }
  REQUIRE(end <= store.flat_numel());
  REQUIRE(store.Find("b") == 1);
  REQUIRE(store.Find("zz") == -1);
  REQUIRE(store.info(2).numel == 8);
}

TEST_CASE("segments cut tensors at range boundaries and cover the range's parameters") {
  ParamStore store({{"a", {20}}, {"b", {5}}, {"c", {40}}}, /*min_flat_numel=*/200);
  REQUIRE(store.flat_numel() == 200);
  // a at [0, 20), b at [32, 37), c at [48, 88) (each tensor 16-float aligned).
  auto segs = store.SegmentsIn(10, 50);
  REQUIRE(segs.size() == 3);
  REQUIRE((segs[0].param == 0 && segs[0].offset == 10 && segs[0].length == 10 && segs[0].flat_offset == 10));
  REQUIRE((segs[1].param == 1 && segs[1].offset == 0 && segs[1].length == 5 && segs[1].flat_offset == 32));
  REQUIRE((segs[2].param == 2 && segs[2].offset == 0 && segs[2].length == 2 && segs[2].flat_offset == 48));
  REQUIRE(store.SegmentsIn(20, 32).empty());
  REQUIRE(store.SegmentsIn(88, 200).empty());
  auto whole = store.WholeTensors();
  REQUIRE(whole.size() == 3);
  REQUIRE(whole[2].length == 40);
  REQUIRE(ParamStore::FlatNumel({{"a", {20}}, {"b", {5}}, {"c", {40}}}) == 96);
  REQUIRE(ParamStore::FlatNumel(store.specs()) == 96);
  REQUIRE(store.specs()[2].name == "c");
  REQUIRE(store.SegmentData(segs)[2] == store.flat_data() + 48);
  REQUIRE(store.SegmentGrads(segs)[0] == store.flat_grad() + 10);
}

}  // namespace
}  // namespace colossal::memory
