// Layer norm: CPU twin against the double reference (odd shapes, cols = 1, rows with a
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

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::Fp32ReductionRtol;
using testing::Random;

constexpr float kEps = 1e-5f;
// Contract tolerances (layer_norm.h): forward and dx are cols-long fp32 sums of O(1)
// terms then one division: 1e-5. dweight/dbias sum over rows: Fp32ReductionRtol(rows)*4.
constexpr double kRowTol = 1e-5;
double ParamTol(int64_t rows) { return Fp32ReductionRtol(rows) * 4; }

// Restores the OpenMP thread count when a section ends.
struct ThreadScope {
  explicit ThreadScope(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadScope() { omp_set_num_threads(saved); }
  int saved;
};

void Require(const testing::CloseResult& r, const char* what) {
  INFO(what << ": " << r.message);
  REQUIRE(r.ok);
}

void CompareCpuWithRef(int64_t rows, int64_t cols, double offset, uint64_t seed) {
  CAPTURE(rows, cols, offset, omp_get_max_threads());
  const int64_t n = rows * cols;
  auto x = Random<float>(n, seed, offset - 1.0, offset + 1.0);
  auto w = Random<float>(cols, seed + 1, 0.5, 1.5);
  auto b = Random<float>(cols, seed + 2);
  auto dy = Random<float>(n, seed + 3);

  std::vector<float> y_ref(n), mean_ref(rows), rstd_ref(rows);
  std::vector<float> y(n), mean(rows), rstd(rows);
  LayerNormForwardRef(x.data(), w.data(), b.data(), y_ref.data(), mean_ref.data(),
                      rstd_ref.data(), rows, cols, kEps);
  LayerNormForward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows,
                   cols, kEps);
  Require(AllClose(y, y_ref, kRowTol, kRowTol), "y");
  Require(AllClose(mean, mean_ref, kRowTol, kRowTol), "mean");
  Require(AllClose(rstd, rstd_ref, kRowTol, kRowTol), "rstd");

  for (Accumulate dx_acc : {Accumulate::kNo, Accumulate::kYes}) {
    for (Accumulate dp_acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(static_cast<int>(dx_acc), static_cast<int>(dp_acc));
      // Both twins read the same saved statistics (the reference's).
      auto dx_ref = Random<float>(n, seed + 4);
      auto dw_ref = Random<float>(cols, seed + 5);
      auto db_ref = Random<float>(cols, seed + 6);
      auto dx = dx_ref, dw = dw_ref, db = db_ref;
      LayerNormBackwardRef(dy.data(), x.data(), w.data(), mean_ref.data(), rstd_ref.data(),
                           dx_ref.data(), dw_ref.data(), db_ref.data(), rows, cols, dx_acc,
                           dp_acc);
      LayerNormBackward(dy.data(), x.data(), w.data(), mean_ref.data(), rstd_ref.data(),
                        dx.data(), dw.data(), db.data(), rows, cols, dx_acc, dp_acc);
      Require(AllClose(dx, dx_ref, kRowTol, kRowTol), "dx");
      Require(AllClose(dw, dw_ref, ParamTol(rows), ParamTol(rows)), "dweight");
      Require(AllClose(db, db_ref, ParamTol(rows), ParamTol(rows)), "dbias");
    }
  }
}

const std::vector<std::pair<int64_t, int64_t>> kShapes = {
    {1, 1}, {5, 1}, {1, 7}, {3, 5}, {17, 33}, {7, 768}, {129, 384}, {256, 768}, {301, 129}};

TEST_CASE("layer norm: cpu twin matches the reference, one thread") {
  ThreadScope threads(1);
  uint64_t seed = 100;
  for (auto [rows, cols] : kShapes) {
    CompareCpuWithRef(rows, cols, 0.0, seed += 10);
    // x = 1000 + noise: a one-pass E[x^2] - E[x]^2 in fp32 would lose the variance.
    CompareCpuWithRef(rows, cols, 1000.0, seed += 10);
  }
}

TEST_CASE("layer norm: cpu twin matches the reference, two threads") {
  ThreadScope threads(2);
  uint64_t seed = 500;
  for (auto [rows, cols] : kShapes) {
    CompareCpuWithRef(rows, cols, 0.0, seed += 10);
    CompareCpuWithRef(rows, cols, -1000.0, seed += 10);
  }
  CompareCpuWithRef(2048, 384, 3.0, 999);
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
  auto num_dx = testing::FiniteDifference(x, loss);
  auto num_dw = testing::FiniteDifference(w, loss);
  auto num_db = testing::FiniteDifference(b, loss);
  loss();  // mean and rstd of the unperturbed x
  std::vector<double> dx(n), dw(cols), db(cols);
  LayerNormBackwardRef(g.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                       dw.data(), db.data(), rows, cols, Accumulate::kNo, Accumulate::kNo);
  // Central differences with h = 1e-6 on O(1) values: truncation ~h^2, rounding ~1e-10.
  Require(AllClose(dx, num_dx, 1e-8, 1e-6), "dx");
  Require(AllClose(dw, num_dw, 1e-8, 1e-6), "dweight");
  Require(AllClose(db, num_db, 1e-8, 1e-6), "dbias");
}

}  // namespace
}  // namespace colossal::kernels
