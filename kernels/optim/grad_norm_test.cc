// SumSquares: every twin (the harness) against the double reference at odd sizes on 1
// and 2 threads, bitwise equality of the CPU twin across thread counts, an exact
// integer-valued case, and additivity over a split segment (what the global norm over
// shards and ranks relies on).
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/backend_memory.h"
#include "kernels/optim/grad_norm.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::AsDouble;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

double SumSquaresWithThreads(const std::vector<float>& x, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  double out = -1.0;
  SumSquares(x.data(), static_cast<int64_t>(x.size()), &out);
  omp_set_num_threads(saved);
  return out;
}

const std::vector<int64_t> kSizes = {0, 1, 17, 100003, (int64_t{1} << 20) + 5};

TEST_CASE("sum_squares: every twin matches the double reference (the harness)") {
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : kSizes) {
      const std::string name =
          "sum_squares n=" + std::to_string(n) + " threads=" + std::to_string(threads);
      CAPTURE(name);
      const auto x = Random<float>(n, 40 + n, -3.0, 3.0);
      double expected = -1.0;
      SumSquaresRef(AsDouble(x).data(), n, &expected);
      TwinCase c(name);
      const int ix = c.In(x);
      const int i_out = c.OutF64("out", {expected}, SumSquaresTolerance());
      const std::string failures =
          c.Run(SumSquaresTable(), [&](SumSquaresFn* fn, Stream st, const auto& a) {
            fn(testing::ArgAs<float>(a, ix), n, testing::ArgAs<double>(a, i_out), st);
          });
      RequireNoFailures(failures);
      REQUIRE(c.ran().size() >= 2);
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("sum_squares: cpu twin is bitwise the same for 1 and 2 threads") {
  // Deterministic: blocks are fixed, partials added in order.
  for (int64_t n : kSizes) {
    CAPTURE(n);
    const auto x = Random<float>(n, 40 + n, -3.0, 3.0);
    REQUIRE(SumSquaresWithThreads(x, 1) == SumSquaresWithThreads(x, 2));
  }
}

TEST_CASE("sum_squares: integer-valued input gives the exact sum") {
  // x_i = (i mod 7) − 3: every partial sum is an integer below 2^53, so exact.
  const int64_t n = 3 * 100003;
  std::vector<float> x(n);
  int64_t exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t xi = i % 7 - 3;
    x[i] = static_cast<float>(xi);
    exact += xi * xi;
  }
  REQUIRE(SumSquaresWithThreads(x, 1) == static_cast<double>(exact));
  REQUIRE(SumSquaresWithThreads(x, 2) == static_cast<double>(exact));
}

TEST_CASE("sum_squares: two halves add up to the whole") {
  const int64_t n = 250001, half = 123457;
  const auto x = Random<float>(n, 77);
  double whole = 0, lo = 0, hi = 0;
  SumSquares(x.data(), n, &whole);
  SumSquares(x.data(), half, &lo);
  SumSquares(x.data() + half, n - half, &hi);
  // A sum of n positive terms, each exact, in any order: relative error ≤ n·2^-53.
  REQUIRE(std::fabs((lo + hi) - whole) <= n * 0x1p-53 * whole);
}

}  // namespace
}  // namespace colossal::kernels
