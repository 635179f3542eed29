// Tests of the data-order generator against independent values: the published
// splitmix64 and xoshiro256** reference outputs, and golden draws/permutations made by
// a separate Python implementation of rng.h (kept below, so anyone can regenerate).
//
//   M = (1 << 64) - 1
//   def sm(s): s = (s + 0x9E3779B97F4A7C15) & M; z = s
//              z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//              z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M; return s, z ^ (z >> 31)
//   rotl(x, k) = ((x << k) | (x >> (64 - k))) & M
//   next(s): r = rotl(s[1]*5 & M, 7)*9 & M; t = s[1] << 17 & M; s[2] ^= s[0];
//            s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45)
//   below(n): m = next()*n; if (m & M) < n: th = (2**64 - n) % n;
//             while (m & M) < th: m = next()*n;  return m >> 64
//   stream_seed(seed, k) = sm((sm(seed)[1] + k) & M)[1]
//   perm(n, seed, e): p = list(range(n)); rng seeded with stream_seed(seed, e);
//             for i in range(n, 1, -1): j = below(i); p[i-1], p[j] = p[j], p[i-1]
#include "runtime/base/rng.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include <cstdlib>
#include <numeric>
#include <vector>

namespace colossal::base {
namespace {

TEST_CASE("splitmix64 matches the reference outputs for seed 1234567") {
  uint64_t state = 1234567;
  std::vector<uint64_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(SplitMix64Next(state));
  REQUIRE(got == std::vector<uint64_t>{6457827717110365317ull, 3203168211198807973ull,
                                       9817491932198370423ull, 4593380528125082431ull,
                                       16408922859458223821ull});
}

TEST_CASE("xoshiro256** matches the reference outputs for state {1, 2, 3, 4}") {
  Xoshiro256StarStar rng(1, 2, 3, 4);
  std::vector<uint64_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(rng.Next());
  REQUIRE(got == std::vector<uint64_t>{11520ull, 0ull, 1509978240ull, 1215971899390074240ull,
                                       1216172134540287360ull, 607988272756665600ull});
}

TEST_CASE("seeding, bounded draws and stream seeds match the Python twin") {
  REQUIRE(Xoshiro256StarStar(42).Next() == 1546998764402558742ull);
  Xoshiro256StarStar rng(42);
  std::vector<uint64_t> draws;
  for (int i = 0; i < 10; ++i) draws.push_back(rng.Below(10));
  REQUIRE(draws == std::vector<uint64_t>{0, 3, 6, 9, 9, 7, 7, 8, 7, 5});
  REQUIRE(StreamSeed(1234, 0) == 0x9e17e35f6d9238edull);
  REQUIRE(StreamSeed(1234, 1) == 0xb2b8ec3a6254e62cull);
}

TEST_CASE("Fisher-Yates permutations match the Python twin") {
  auto perm = [](int n, uint64_t seed, uint64_t epoch) {
    std::vector<int> p(n);
    std::iota(p.begin(), p.end(), 0);
    Xoshiro256StarStar rng(StreamSeed(seed, epoch));
    FisherYatesShuffle(std::span<int>(p), rng);
    return p;
  };
  REQUIRE(perm(10, 1234, 0) == std::vector<int>{4, 2, 5, 0, 7, 9, 1, 8, 6, 3});
  REQUIRE(perm(10, 1234, 1) == std::vector<int>{8, 5, 2, 3, 6, 1, 9, 7, 4, 0});
  REQUIRE(perm(10, 1235, 0) == std::vector<int>{1, 0, 6, 2, 9, 7, 3, 4, 5, 8});
  REQUIRE(perm(1, 1, 0) == std::vector<int>{0});
  REQUIRE(perm(0, 1, 0).empty());
}

TEST_CASE("Below is unbiased enough to fill every bucket evenly") {
  Xoshiro256StarStar rng(7);
  std::vector<int> counts(6, 0);
  const int n = 60000;
  for (int i = 0; i < n; ++i) counts[rng.Below(6)]++;
  // Each bucket expects 10000 with sd ~91; 6 sd is a generous bound for a fixed seed.
  for (int c : counts) REQUIRE(std::abs(c - 10000) < 550);
  for (int i = 0; i < 1000; ++i) REQUIRE(rng.Below(1) == 0);
  uint64_t big = (uint64_t{1} << 63) + 12345;
  for (int i = 0; i < 1000; ++i) REQUIRE(rng.Below(big) < big);
}

TEST_CASE("Uniform and Normal have the moments of their distributions") {
  Xoshiro256StarStar rng(StreamSeed(42, HashName("wte.weight")));
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0, sn4 = 0;
  for (int i = 0; i < n; ++i) {
    const double u = rng.Uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    su += u;
    const double z = rng.Normal();
    sn += z, sn2 += z * z, sn4 += z * z * z * z;
  }
  // Standard errors: uniform mean sqrt(1/12/n) = 6.5e-4; normal mean 2.2e-3, variance
  // sqrt(2/n) = 3.2e-3, fourth moment sqrt(96/n) = 2.2e-2. Bounds at 5 standard errors.
  REQUIRE(std::fabs(su / n - 0.5) < 5 * 6.5e-4);
  REQUIRE(std::fabs(sn / n) < 5 * 2.2e-3);
  REQUIRE(std::fabs(sn2 / n - 1.0) < 5 * 3.2e-3);
  REQUIRE(std::fabs(sn4 / n - 3.0) < 5 * 2.2e-2);
  REQUIRE(HashName("a") != HashName("b"));
  REQUIRE(HashName("wte.weight") == HashName(std::string("wte.") + "weight"));
}

}  // namespace
}  // namespace colossal::base
