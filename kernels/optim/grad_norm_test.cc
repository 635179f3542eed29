// SumSquares: CPU twin against the double reference (1 and 2 threads), bitwise equality
// across thread counts, an exact integer-valued case, and additivity over a split
// segment (what the global norm over shards and ranks relies on).
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/optim/grad_norm.h"
#include "kernels/testing/kernel_testing.h"

namespace colossal::kernels {
namespace {

using testing::Random;

// grad_norm.h: both sides accumulate in double and every square of an fp32 value is
// exact in double, so only the summation order differs.
const double kRtol = 1e-12 + testing::Fp32ReductionRtol(1);

double SumSquaresWithThreads(const std::vector<float>& x, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  double out = -1.0;
  SumSquares(x.data(), static_cast<int64_t>(x.size()), &out);
  omp_set_num_threads(saved);
  return out;
}

TEST_CASE("sum_squares: cpu twin matches the reference, for 1 and 2 threads alike") {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{17}, int64_t{100003},
                    (int64_t{1} << 20) + 5}) {
    CAPTURE(n);
    const auto x = Random<float>(n, 40 + n, -3.0, 3.0);
    double expected = -1.0;
    SumSquaresRef(testing::Cast<double>(x).data(), n, &expected);
    const double one = SumSquaresWithThreads(x, 1);
    const double two = SumSquaresWithThreads(x, 2);
    REQUIRE(std::fabs(one - expected) <= kRtol * expected);
    REQUIRE(one == two);  // deterministic: blocks are fixed, partials added in order
    double ref_twin = -1.0;
    SumSquares(x.data(), n, &ref_twin, {Backend::kRef});
    REQUIRE(std::fabs(ref_twin - expected) <= kRtol * expected);
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
