// Mean and MeanBackward: every twin (the harness) against the double reference at n = 1,
// odd sizes and a large n (2^22 + 5, where the CUDA twin's per-thread sums are long), with
// values that cancel and values that do not, both accumulate modes; the CPU twins bit for
// bit against the graph ops' former host loops; the reference against hand-computed
// values and its backward against finite differences.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/elementwise/mean.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::ArgAs;
using testing::AsDouble;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

const std::vector<int64_t> kSizes = {1, 2, 7, 511, 512, 513, 1000, 100003, (int64_t{1} << 22) + 5};

double AbsSum(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += std::fabs(static_cast<double>(v));
  return s;
}

TEST_CASE("mean: every twin matches the reference (the harness)") {
  for (int64_t n : kSizes) {
    // Centred values (the sum cancels) and per-token losses near 10 (it does not).
    for (double lo : {-1.0, 9.0}) {
      CAPTURE(n, lo);
      const auto x = Random<float>(n, 7 + n, lo, lo + 2.0);
      std::vector<double> ref(1);
      MeanRef(AsDouble(x).data(), ref.data(), n);
      TwinCase c("mean n=" + std::to_string(n));
      const int ix = c.In(x);
      const int io = c.Out("out", {std::numeric_limits<float>::quiet_NaN()}, ref, MeanTolerance(AbsSum(x)));
      RequireNoFailures(c.Run(MeanTable(), [&](MeanFn* fn, Stream st, const auto& a) {
        fn(ArgAs<float>(a, ix), ArgAs<float>(a, io), n, st);
      }));
      REQUIRE(c.ran().size() >= 2);
    }
  }
}

TEST_CASE("mean_backward: every twin matches the reference in both accumulate modes (the harness)") {
  for (int64_t n : kSizes) {
    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      for (float dy : {1.0f, -0.3f}) {
        CAPTURE(n, static_cast<int>(acc), dy);
        const auto dx0 = Random<float>(n, 11 + n, -2.0, 2.0);
        std::vector<double> ref = AsDouble(dx0);
        const std::vector<double> dy_ref = {dy};
        MeanBackwardRef(dy_ref.data(), ref.data(), n, acc);
        TwinCase c("mean_backward n=" + std::to_string(n));
        const int idy = c.In({dy});
        const int idx = c.Out("dx", dx0, ref, MeanBackwardTolerance(static_cast<double>(dy) / n));
        RequireNoFailures(c.Run(MeanBackwardTable(), [&](MeanBackwardFn* fn, Stream st, const auto& a) {
          fn(ArgAs<float>(a, idy), ArgAs<float>(a, idx), n, acc, st);
        }));
        REQUIRE(c.ran().size() >= 2);
      }
    }
  }
}

TEST_CASE("mean cpu twins equal the graph ops' former host loops bit for bit") {
  for (int64_t n : kSizes) {
    CAPTURE(n);
    const auto x = Random<float>(n, 3 + n, 0.0, 11.0);
    // The mean op's run() before it called a kernel.
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += x[i];
    const float before = static_cast<float>(s / n);
    float out = std::numeric_limits<float>::quiet_NaN();
    Mean(x.data(), &out, n, Stream{Backend::kCpu});
    REQUIRE(out == before);

    // The mean_backward op's run(): g in fp32, then a fill or an fp32 add.
    const float dy = 0.7f;
    const float g = dy / static_cast<float>(n);
    const auto dx0 = Random<float>(n, 5 + n);
    std::vector<float> filled(n), added = dx0;
    for (int64_t i = 0; i < n; ++i) added[i] += g;
    std::vector<float> dx(n, 1.0f);
    MeanBackward(&dy, dx.data(), n, Accumulate::kNo, Stream{Backend::kCpu});
    REQUIRE(dx == std::vector<float>(n, g));
    dx = dx0;
    MeanBackward(&dy, dx.data(), n, Accumulate::kYes, Stream{Backend::kCpu});
    REQUIRE(dx == added);
  }
}

TEST_CASE("mean reference: hand-computed values and finite differences") {
  const std::vector<double> x = {1.5, -2.0, 0.25, 4.25};
  double out = 0;
  MeanRef(x.data(), &out, 4);
  REQUIRE(out == 1.0);
  std::vector<double> dx = {1.0, 2.0, 3.0, 4.0};
  const double dy = 2.0;
  MeanBackwardRef(&dy, dx.data(), 4, Accumulate::kYes);
  REQUIRE(dx == std::vector<double>{1.5, 2.5, 3.5, 4.5});
  MeanBackwardRef(&dy, dx.data(), 4, Accumulate::kNo);
  REQUIRE(dx == std::vector<double>{0.5, 0.5, 0.5, 0.5});

  // The cotangent of the scalar mean is dy = 1: the gradient is 1/n everywhere.
  std::vector<double> xs = AsDouble(Random<float>(9, 21));
  const double one = 1.0;
  std::vector<double> grad(xs.size());
  MeanBackwardRef(&one, grad.data(), static_cast<int64_t>(xs.size()), Accumulate::kNo);
  RequireNoFailures(testing::FiniteDifferenceCheck(
      "mean", {{"x", &xs}},
      [&] {
        double m = 0;
        MeanRef(xs.data(), &m, static_cast<int64_t>(xs.size()));
        return m;
      },
      {grad}));
}

}  // namespace
}  // namespace colossal::kernels
