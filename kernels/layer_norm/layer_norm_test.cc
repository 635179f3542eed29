// Layer norm: every twin (the harness) against the double reference (odd shapes, cols = 1, rows with a
// large common offset, every accumulate combination, one and two threads), determinism
// of the parameter-gradient reduction, an analytic forward value, and the reference
// backward against central finite differences for x, weight and bias.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <utility>
#include <vector>

#include "kernels/layer_norm/layer_norm.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::ArgAs;
using testing::AsDouble;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

constexpr float kEps = 1e-5f;

// Restores the OpenMP thread count when a section ends.
struct ThreadScope {
  explicit ThreadScope(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadScope() { omp_set_num_threads(saved); }
  int saved;
};

// Every twin against the double reference (the harness), forward and every accumulate
// combination of the backward.
void CompareTwinsWithRef(int64_t rows, int64_t cols, double offset, uint64_t seed) {
  CAPTURE(rows, cols, offset, omp_get_max_threads());
  const int64_t n = rows * cols;
  auto x = Random<float>(n, seed, offset - 1.0, offset + 1.0);
  auto w = Random<float>(cols, seed + 1, 0.5, 1.5);
  auto b = Random<float>(cols, seed + 2);
  auto dy = Random<float>(n, seed + 3);
  const auto xd = AsDouble(x), wd = AsDouble(w), bd = AsDouble(b), dyd = AsDouble(dy);

  std::vector<double> y_ref(n), mean_ref(rows), rstd_ref(rows);
  LayerNormForwardRef(xd.data(), wd.data(), bd.data(), y_ref.data(), mean_ref.data(), rstd_ref.data(), rows,
                      cols, kEps);
  const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
  TwinCase forward("layer norm forward " + shape);
  const int fx = forward.In(x), fw = forward.In(w), fb = forward.In(b);
  const int fy = forward.Out("y", std::vector<float>(n), y_ref, LayerNormRowTolerance());
  const int fm = forward.Out("mean", std::vector<float>(rows), mean_ref, LayerNormRowTolerance());
  const int fr = forward.Out("rstd", std::vector<float>(rows), rstd_ref, LayerNormRowTolerance());
  RequireNoFailures(forward.Run(LayerNormForwardTable(), [&](LayerNormForwardFn* fn, Stream s, const auto& a) {
    fn(ArgAs<float>(a, fx), ArgAs<float>(a, fw), ArgAs<float>(a, fb), ArgAs<float>(a, fy), ArgAs<float>(a, fm),
       ArgAs<float>(a, fr), rows, cols, kEps, s);
  }));
  REQUIRE(forward.ran().size() >= 2);

  // Every twin reads the same saved statistics (the reference's, rounded to fp32).
  const std::vector<float> mean(mean_ref.begin(), mean_ref.end()), rstd(rstd_ref.begin(), rstd_ref.end());
  for (Accumulate dx_acc : {Accumulate::kNo, Accumulate::kYes}) {
    for (Accumulate dp_acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(static_cast<int>(dx_acc), static_cast<int>(dp_acc));
      const auto dx0 = Random<float>(n, seed + 4), dw0 = Random<float>(cols, seed + 5),
                 db0 = Random<float>(cols, seed + 6);
      std::vector<double> dx_ref = AsDouble(dx0), dw_ref = AsDouble(dw0), db_ref = AsDouble(db0);
      const auto meand = AsDouble(mean), rstdd = AsDouble(rstd);
      LayerNormBackwardRef(dyd.data(), xd.data(), wd.data(), meand.data(), rstdd.data(), dx_ref.data(),
                           dw_ref.data(), db_ref.data(), rows, cols, dx_acc, dp_acc);
      TwinCase backward("layer norm backward " + shape);
      const int bdy = backward.In(dy), bx = backward.In(x), bw = backward.In(w), bm = backward.In(mean),
                br = backward.In(rstd);
      const int bdx = backward.Out("dx", dx0, dx_ref, LayerNormRowTolerance());
      const int bdw = backward.Out("dweight", dw0, dw_ref, LayerNormParamGradTolerance(rows));
      const int bdb = backward.Out("dbias", db0, db_ref, LayerNormParamGradTolerance(rows));
      RequireNoFailures(
          backward.Run(LayerNormBackwardTable(), [&](LayerNormBackwardFn* fn, Stream s, const auto& a) {
            fn(ArgAs<float>(a, bdy), ArgAs<float>(a, bx), ArgAs<float>(a, bw), ArgAs<float>(a, bm),
               ArgAs<float>(a, br), ArgAs<float>(a, bdx), ArgAs<float>(a, bdw), ArgAs<float>(a, bdb), rows, cols,
               dx_acc, dp_acc, s);
          }));
    }
  }
}

const std::vector<std::pair<int64_t, int64_t>> kShapes = {
    {1, 1}, {5, 1}, {1, 7}, {3, 5}, {17, 33}, {7, 768}, {129, 384}, {256, 768}, {301, 129}};

TEST_CASE("layer norm: every twin matches the reference, one thread") {
  ThreadScope threads(1);
  uint64_t seed = 100;
  for (auto [rows, cols] : kShapes) {
    CompareTwinsWithRef(rows, cols, 0.0, seed += 10);
    // x = 1000 + noise: a one-pass E[x^2] - E[x]^2 in fp32 would lose the variance.
    CompareTwinsWithRef(rows, cols, 1000.0, seed += 10);
  }
}

TEST_CASE("layer norm: every twin matches the reference, two threads") {
  ThreadScope threads(2);
  uint64_t seed = 500;
  for (auto [rows, cols] : kShapes) {
    CompareTwinsWithRef(rows, cols, 0.0, seed += 10);
    CompareTwinsWithRef(rows, cols, -1000.0, seed += 10);
  }
  CompareTwinsWithRef(2048, 384, 3.0, 999);
}

TEST_CASE("layer norm: parameter gradients are bitwise deterministic for a thread count") {
  ThreadScope threads(2);
  const int64_t rows = 333, cols = 384, n = rows * cols;
  auto x = Random<float>(n, 1);
  auto w = Random<float>(cols, 2);
  auto b = Random<float>(cols, 3);
  auto dy = Random<float>(n, 4);
  std::vector<float> y(n), mean(rows), rstd(rows), dx(n);
  LayerNormForward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows,
                   cols, kEps);
  std::vector<float> dw1(cols), db1(cols), dw2(cols), db2(cols);
  LayerNormBackward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                    dw1.data(), db1.data(), rows, cols, Accumulate::kNo, Accumulate::kNo);
  for (int rep = 0; rep < 5; ++rep) {
    LayerNormBackward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                      dw2.data(), db2.data(), rows, cols, Accumulate::kNo, Accumulate::kNo);
    REQUIRE(dw1 == dw2);
    REQUIRE(db1 == db2);
  }
}

TEST_CASE("layer norm: forward matches an analytic value") {
  // x = 1, 2, 3, 4: mean 2.5, biased variance 1.25.
  std::vector<double> x = {1, 2, 3, 4}, w = {1, 2, 1, 1}, b = {0, 0, 0, 0.5};
  std::vector<double> y(4), mean(1), rstd(1);
  LayerNormForwardRef(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), 1, 4,
                      kEps);
  const double s = 1.0 / std::sqrt(1.25 + static_cast<double>(kEps));
  std::vector<double> expected = {-1.5 * s, -0.5 * s * 2, 0.5 * s, 1.5 * s + 0.5};
  REQUIRE(AllClose(y, expected, 1e-14, 1e-14).ok);
  REQUIRE(mean[0] == 2.5);
  REQUIRE(std::fabs(rstd[0] - s) < 1e-14);

  // cols = 1: xhat = 0, so y = bias whatever x is.
  std::vector<float> xf = {5.0f, -3.0f}, wf = {2.0f}, bf = {0.25f}, yf(2), mf(2), rf(2);
  LayerNormForward(xf.data(), wf.data(), bf.data(), yf.data(), mf.data(), rf.data(), 2, 1,
                   kEps);
  REQUIRE(yf[0] == 0.25f);
  REQUIRE(yf[1] == 0.25f);
  REQUIRE(mf[0] == 5.0f);
}

TEST_CASE("layer norm: reference accumulate adds exactly the overwrite result") {
  const int64_t rows = 4, cols = 9, n = rows * cols;
  auto x = Random<double>(n, 31), w = Random<double>(cols, 32), dy = Random<double>(n, 33);
  std::vector<double> b(cols, 0.0), y(n), mean(rows), rstd(rows);
  LayerNormForwardRef(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows,
                      cols, kEps);
  std::vector<double> dx0(n), dw0(cols), db0(cols);
  LayerNormBackwardRef(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx0.data(),
                       dw0.data(), db0.data(), rows, cols, Accumulate::kNo, Accumulate::kNo);
  auto dx1 = Random<double>(n, 34), dw1 = Random<double>(cols, 35), db1 = Random<double>(cols, 36);
  auto dx_init = dx1, dw_init = dw1, db_init = db1;
  LayerNormBackwardRef(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx1.data(),
                       dw1.data(), db1.data(), rows, cols, Accumulate::kYes, Accumulate::kYes);
  for (int64_t i = 0; i < n; ++i) REQUIRE(std::fabs(dx1[i] - (dx_init[i] + dx0[i])) < 1e-15);
  for (int64_t c = 0; c < cols; ++c) {
    REQUIRE(std::fabs(dw1[c] - (dw_init[c] + dw0[c])) < 1e-15);
    REQUIRE(std::fabs(db1[c] - (db_init[c] + db0[c])) < 1e-15);
  }
}

TEST_CASE("layer norm: reference backward matches finite differences") {
  const int64_t rows = 3, cols = 7, n = rows * cols;
  auto x = Random<double>(n, 41, -2.0, 2.0);
  auto w = Random<double>(cols, 42, 0.5, 1.5);
  auto b = Random<double>(cols, 43);
  auto g = Random<double>(n, 44);  // L = <g, y>, so dy = g
  std::vector<double> y(n), mean(rows), rstd(rows);
  auto loss = [&] {
    LayerNormForwardRef(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows,
                        cols, kEps);
    return testing::Dot(g, y);
  };
  std::vector<double> dx(n), dw(cols), db(cols);
  loss();  // mean and rstd of the unperturbed x
  LayerNormBackwardRef(g.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(), dw.data(), db.data(),
                       rows, cols, Accumulate::kNo, Accumulate::kNo);
  // The backward reads the saved statistics: finite differences recompute them per probe.
  RequireNoFailures(testing::FiniteDifferenceCheck("layer norm", {{"x", &x}, {"weight", &w}, {"bias", &b}}, loss,
                                                   {dx, dw, db}));
}

}  // namespace
}  // namespace colossal::kernels
