// GELU: CPU twin against the double reference at odd sizes and both accumulate modes,
// aliasing, and the reference backward against central finite differences.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/gelu/gelu.h"
#include "kernels/testing/kernel_testing.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::Random;

constexpr double kTol = 2e-6;

TEST_CASE("gelu forward and backward: cpu twin matches the reference") {
  for (int64_t n : {0, 1, 7, 33, 1000, 100003}) {
    CAPTURE(n);
    auto x = Random<float>(n, 1 + n, -6.0, 6.0);
    auto dy = Random<float>(n, 2 + n);
    std::vector<float> y_ref(n), y(n);
    GeluForwardRef(x.data(), y_ref.data(), n);
    GeluForward(x.data(), y.data(), n);
    auto r = AllClose(y, y_ref, kTol, kTol);
    INFO(r.message);
    REQUIRE(r.ok);

    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      auto dx_ref = Random<float>(n, 3 + n);
      auto dx = dx_ref;
      GeluBackwardRef(x.data(), dy.data(), dx_ref.data(), n, acc);
      GeluBackward(x.data(), dy.data(), dx.data(), n, acc);
      auto rb = AllClose(dx, dx_ref, kTol, kTol);
      INFO(rb.message);
      REQUIRE(rb.ok);
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
  auto numeric = testing::FiniteDifference(x, loss);
  std::vector<double> analytic(n);
  GeluBackwardRef(x.data(), g.data(), analytic.data(), n, Accumulate::kNo);
  auto r = AllClose(analytic, numeric, 1e-8, 1e-6);
  INFO(r.message);
  REQUIRE(r.ok);
}

}  // namespace
}  // namespace colossal::kernels
