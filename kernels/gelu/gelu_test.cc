// GELU: every twin (the harness) against the double reference at odd sizes and both
// accumulate modes,
// aliasing, and the reference backward against central finite differences.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/gelu/gelu.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::ArgAs;
using testing::AsDouble;
using testing::Random;
using testing::TwinCase;

const double kTol = GeluTolerance().atol;

TEST_CASE("gelu forward and backward: every twin matches the reference") {
  for (int64_t n : {0, 1, 7, 33, 1000, 100003}) {
    CAPTURE(n);
    auto x = Random<float>(n, 1 + n, -6.0, 6.0);
    auto dy = Random<float>(n, 2 + n);
    std::vector<double> y_ref(n);
    GeluForwardRef(AsDouble(x).data(), y_ref.data(), n);
    TwinCase forward("gelu forward n=" + std::to_string(n));
    const int xi = forward.In(x), yi = forward.Out("y", std::vector<float>(n), y_ref, GeluTolerance());
    const std::string f = forward.Run(GeluForwardTable(), [&](GeluForwardFn* fn, Stream s, const auto& a) {
      fn(ArgAs<float>(a, xi), ArgAs<float>(a, yi), n, s);
    });
    INFO(f);
    REQUIRE(f.empty());
    REQUIRE(forward.ran().size() >= 2);

    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(static_cast<int>(acc));
      const auto dx0 = Random<float>(n, 3 + n);
      std::vector<double> dx_ref = AsDouble(dx0);
      GeluBackwardRef(AsDouble(x).data(), AsDouble(dy).data(), dx_ref.data(), n, acc);
      TwinCase backward("gelu backward n=" + std::to_string(n));
      const int bx = backward.In(x), bdy = backward.In(dy), bdx = backward.Out("dx", dx0, dx_ref, GeluTolerance());
      const std::string b = backward.Run(GeluBackwardTable(), [&](GeluBackwardFn* fn, Stream s, const auto& a) {
        fn(ArgAs<float>(a, bx), ArgAs<float>(a, bdy), ArgAs<float>(a, bdx), n, acc, s);
      });
      INFO(b);
      REQUIRE(b.empty());
    }
  }
}

TEST_CASE("gelu in place: y may alias x, dx may alias dy") {
  const int64_t n = 4099;
  auto x = Random<float>(n, 11, -4.0, 4.0);
  auto dy = Random<float>(n, 12);
  std::vector<float> y_ref(n), dx_ref(n);
  GeluForwardRef(x.data(), y_ref.data(), n);
  GeluBackwardRef(x.data(), dy.data(), dx_ref.data(), n, Accumulate::kNo);
  auto inplace = x;
  GeluForward(inplace.data(), inplace.data(), n);
  REQUIRE(AllClose(inplace, y_ref, kTol, kTol).ok);
  auto dinplace = dy;
  GeluBackward(x.data(), dinplace.data(), dinplace.data(), n, Accumulate::kNo);
  REQUIRE(AllClose(dinplace, dx_ref, kTol, kTol).ok);
}

TEST_CASE("gelu reference matches known values and extreme inputs stay finite") {
  // torch.nn.functional.gelu(x, approximate="tanh") at these points.
  std::vector<double> x = {-3.0, -1.0, 0.0, 0.5, 1.0, 2.0};
  std::vector<double> expected = {-0.003637392081772994, -0.1588080093917232, 0.0,
                                  0.3457140098251439,   0.8411919906082768,  1.954597694087775};
  std::vector<double> y(x.size());
  GeluForwardRef(x.data(), y.data(), static_cast<int64_t>(x.size()));
  REQUIRE(AllClose(y, expected, 1e-12, 1e-12).ok);

  std::vector<float> big = {-1e4f, -90.0f, 90.0f, 1e4f};
  std::vector<float> out(big.size());
  GeluForward(big.data(), out.data(), 4);
  for (float v : out) REQUIRE(std::isfinite(v));
  REQUIRE(out[0] == 0.0f);
  REQUIRE(out[3] == 1e4f);
}

TEST_CASE("gelu reference backward matches finite differences") {
  const int64_t n = 64;
  auto x = Random<double>(n, 21, -4.0, 4.0);
  auto g = Random<double>(n, 22);
  std::vector<double> y(n);
  auto loss = [&] {
    GeluForwardRef(x.data(), y.data(), n);
    return testing::Dot(g, y);
  };
  std::vector<double> analytic(n);
  GeluBackwardRef(x.data(), g.data(), analytic.data(), n, Accumulate::kNo);
  const std::string failures = testing::FiniteDifferenceCheck("gelu", {{"x", &x}}, loss, {analytic});
  INFO(failures);
  REQUIRE(failures.empty());
}

}  // namespace
}  // namespace colossal::kernels
