// LARS: both phases of every twin (the harness) against the double reference over sizes
// and hyper-parameters (momentum 0 with an unreadable buffer among them) at 1 and 2
// threads, one step per case, and over five steps with the state carried from the
// reference; bitwise determinism of the CPU twin's norms across thread counts;
// LarsLocalLr's edge cases; additivity of the norms over a split segment; and five whole
// two-phase steps of the CPU twin on a quadratic loss against the closed form in which
// every tensor stays a multiple of w0.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/backend_memory.h"
#include "kernels/optim/lars.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::ArgAs;
using testing::AsDouble;
using testing::Cast;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

struct Hyper {
  float momentum, weight_decay, grad_scale;
};

template <typename T>
LarsArgsT<T> Args(std::vector<T>& w, const std::vector<T>& g, std::vector<T>& buf,
                  const Hyper& h) {
  LarsArgsT<T> a;
  a.w = w.data(), a.g = g.data(), a.buf = buf.data(), a.n = static_cast<int64_t>(w.size());
  a.momentum = h.momentum, a.weight_decay = h.weight_decay, a.grad_scale = h.grad_scale;
  return a;
}

LarsArgs Args(float* w, const float* g, float* buf, int64_t n, const Hyper& h) {
  LarsArgs a;
  a.w = w, a.g = g, a.buf = buf, a.n = n;
  a.momentum = h.momentum, a.weight_decay = h.weight_decay, a.grad_scale = h.grad_scale;
  return a;
}

std::string Describe(const Hyper& h) {
  return " mu=" + std::to_string(h.momentum) + " wd=" + std::to_string(h.weight_decay) +
         " scale=" + std::to_string(h.grad_scale);
}

struct State {
  std::vector<float> w, g, buf;
};

// Both phases of every twin from `s`, each against the double reference from the same
// inputs within lars.h's tolerances: norms from `s`, then apply with the local_lr of the
// reference's sums (lr = 0.1, η = 0.001), so only the apply is compared. With momentum 0
// the twins' buffer is poisoned with NaN (it must not be read). Returns the reference's
// state after the step, rounded to fp32.
State StepEveryTwin(const std::string& name, const State& s, const Hyper& h) {
  CAPTURE(name);
  const int64_t n = static_cast<int64_t>(s.w.size());
  auto w = AsDouble(s.w), g = AsDouble(s.g), buf = AsDouble(s.buf);
  const LarsArgsT<double> r = Args(w, g, buf, h);
  double sums_ref[2] = {-1, -1};
  LarsNormsRef(r, sums_ref);
  {
    const std::string phase = name + " norms";
    TwinCase c(phase);
    const int iw = c.In(s.w), ig = c.In(s.g), ib = c.In(s.buf);
    const int i_sums = c.OutF64("sums", {sums_ref[0], sums_ref[1]}, LarsSumsTolerance(n));
    const std::string failures =
        c.Run(LarsNormsTable(), [&](LarsNormsFn* fn, Stream st, const auto& x) {
          fn(Args(ArgAs<float>(x, iw), ArgAs<const float>(x, ig), ArgAs<float>(x, ib), n, h),
             ArgAs<double>(x, i_sums), st);
        });
    RequireNoFailures(failures);
    REQUIRE(c.ran().size() >= 2);
  }
  const float local_lr = LarsLocalLr(sums_ref[0], sums_ref[1], 0.1f, 0.001f, h.weight_decay);
  LarsApplyRef(r, local_lr);
  {
    const std::vector<float> buf0 =
        h.momentum == 0.0f ? std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()) : s.buf;
    TwinCase c(name + " apply local_lr=" + std::to_string(local_lr));
    const int iw = c.Out("w", s.w, w, LarsApplyTolerance(local_lr));
    const int ig = c.In(s.g);
    const int ib = c.Out("buf", buf0, buf, LarsApplyTolerance(local_lr));
    RequireNoFailures(c.Run(LarsApplyTable(), [&](LarsApplyFn* fn, Stream st, const auto& x) {
      fn(Args(ArgAs<float>(x, iw), ArgAs<const float>(x, ig), ArgAs<float>(x, ib), n, h), local_lr,
         st);
    }));
    REQUIRE(c.ran().size() >= 2);
  }
  return {Cast<float>(w), s.g, Cast<float>(buf)};
}

TEST_CASE("lars: every twin matches the double reference in both phases (the harness)") {
  const std::vector<Hyper> hypers = {
      {0.9f, 0.0f, 1.0f}, {0.9f, 5e-4f, 1.0f / 256}, {0.0f, 1e-4f, 1.0f}, {0.0f, 0.0f, 3.0f}};
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    uint64_t seed = 1;
    for (int64_t n : {0, 1, 17, 100003}) {
      for (const Hyper& h : hypers) {
        seed += 5;
        State s;
        s.w = Random<float>(n, seed, -1.0, 1.0);
        s.g = Random<float>(n, seed + 1, -1.0 / h.grad_scale, 1.0 / h.grad_scale);
        // A momentum buffer at the scale LARS keeps it: a few local_lr (≈ 1e-4 here: η =
        // 1e-3, lr = 0.1, ‖w‖ ≈ ‖g'‖), which lars.h's atol of 1e-6·local_lr assumes.
        s.buf = Random<float>(n, seed + 2, -1e-4, 1e-4);
        StepEveryTwin(
            "lars n=" + std::to_string(n) + " threads=" + std::to_string(threads) + Describe(h), s,
            h);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("lars: five steps on every twin, state carried from the reference (the harness)") {
  // Each step is one pair of cases from the reference's state after the steps before
  // (rounded to fp32), with a fresh gradient; buf starts at 0.
  const std::vector<Hyper> hypers = {{0.9f, 0.0f, 1.0f}, {0.9f, 5e-4f, 0.5f}, {0.0f, 1e-4f, 2.0f}};
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : {17, 100003}) {
      for (const Hyper& h : hypers) {
        State s;
        s.w = Random<float>(n, 110 + n, -1.0, 1.0);
        s.buf.assign(n, 0.0f);
        for (int t = 1; t <= 5; ++t) {
          s.g = Random<float>(n, 120 + n + t, -1.0 / h.grad_scale, 1.0 / h.grad_scale);
          s = StepEveryTwin("lars 5 steps n=" + std::to_string(n) +
                                " threads=" + std::to_string(threads) + Describe(h) +
                                " step=" + std::to_string(t),
                            s, h);
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("lars: norms are bitwise the same for 1 and 2 threads") {
  const int64_t n = 1000003;
  const auto w = Random<float>(n, 3), g = Random<float>(n, 4);
  std::vector<float> buf(n);
  LarsArgs a;
  a.w = const_cast<float*>(w.data()), a.g = g.data(), a.buf = buf.data(), a.n = n;
  a.grad_scale = 0.25f;
  double one[2], two[2];
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  LarsNorms(a, one);
  omp_set_num_threads(2);
  LarsNorms(a, two);
  omp_set_num_threads(saved);
  REQUIRE(one[0] == two[0]);
  REQUIRE(one[1] == two[1]);
}

TEST_CASE("lars: LarsLocalLr edge cases") {
  // trust = η‖w‖/(‖g'‖ + wd‖w‖); 1 when either norm is 0.
  REQUIRE(LarsLocalLr(0.0, 4.0, 0.5f, 0.001f, 0.1f) == 0.5f);
  REQUIRE(LarsLocalLr(4.0, 0.0, 0.5f, 0.001f, 0.1f) == 0.5f);
  REQUIRE(LarsLocalLr(0.0, 0.0, 0.5f, 0.001f, 0.0f) == 0.5f);
  // ‖w‖ = 3, ‖g'‖ = 4, wd = 0.5: trust = 0.02·3/(4 + 1.5) = 0.06/5.5.
  REQUIRE(LarsLocalLr(9.0, 16.0, 2.0f, 0.02f, 0.5f) ==
          static_cast<float>(2.0 * static_cast<double>(0.02f) * 3.0 / 5.5));
  // wd = 0 still adapts (no-decay tensors are the caller's: it uses local_lr = lr).
  REQUIRE(LarsLocalLr(9.0, 16.0, 1.0f, 0.5f, 0.0f) == 0.375f);
  REQUIRE(std::isnan(LarsLocalLr(std::numeric_limits<double>::quiet_NaN(), 1.0, 1.0f, 0.001f,
                                 0.0f)));
}

TEST_CASE("lars: norms over two halves add up to the norms over the whole") {
  const int64_t n = 250001, half = 100003;
  const auto w = Random<float>(n, 5), g = Random<float>(n, 6);
  std::vector<float> buf(n);
  LarsArgs whole;
  whole.w = const_cast<float*>(w.data()), whole.g = g.data(), whole.buf = buf.data();
  whole.n = n, whole.grad_scale = 0.5f;
  LarsArgs lo = whole, hi = whole;
  lo.n = half;
  hi.w += half, hi.g += half, hi.buf += half, hi.n = n - half;
  double s_whole[2], s_lo[2], s_hi[2];
  LarsNorms(whole, s_whole);
  LarsNorms(lo, s_lo);
  LarsNorms(hi, s_hi);
  // n exact positive terms summed in two orders (and one exact power-of-two scaling).
  const double rtol = 2.0 * n * 0x1p-53;
  for (int k = 0; k < 2; ++k)
    REQUIRE(std::fabs(s_lo[k] + s_hi[k] - s_whole[k]) <= rtol * s_whole[k]);
}

TEST_CASE("lars: five two-phase steps on a quadratic loss follow the closed form") {
  // Loss α/2·‖w‖², so g = α·w, recomputed from w before every step. With w_t = c_t·w0 and
  // buf_t = b_t·w0 (c_0 = 1, b_0 = 0) every norm is a multiple of ‖w0‖ and
  //   trust = η‖w‖/(sα‖w‖ + wd‖w‖) = η/(sα + wd),  local_lr·(sα + wd) = lr·η,
  // so b_(t+1) = μ·b_t + lr·η·c_t and c_(t+1) = c_t − b_(t+1): a scalar recurrence.
  const int64_t n = 100003;
  const double alpha = 3.0;
  for (Hyper h : {Hyper{0.9f, 0.0f, 1.0f}, Hyper{0.9f, 0.5f, 0.5f}, Hyper{0.0f, 0.1f, 2.0f}}) {
    for (int threads : {1, 2}) {
      CAPTURE(h.momentum, h.weight_decay, h.grad_scale, threads);
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      const float lr = 1.0f, eta = 0.05f;
      const auto w0 = Random<float>(n, 9, 0.1, 1.0);
      auto w = w0;
      std::vector<float> g(n), buf(n, 0.0f);
      const LarsArgs a = Args(w, g, buf, h);
      double c = 1.0, b = 0.0;
      for (int t = 1; t <= 5; ++t) {
        // The unscaled gradient, as a loss-scaled backward leaves it: g = α·w / s.
        for (int64_t i = 0; i < n; ++i)
          g[i] = static_cast<float>(alpha * w[i] / static_cast<double>(h.grad_scale));
        double sums[2];
        LarsNorms(a, sums);
        const float local_lr = LarsLocalLr(sums[0], sums[1], lr, eta, h.weight_decay);
        LarsApply(a, local_lr);
        b = static_cast<double>(h.momentum) * b + static_cast<double>(lr) * eta * c;
        c -= b;
        std::vector<double> w_exp(n), buf_exp(n);
        for (int64_t i = 0; i < n; ++i) w_exp[i] = c * w0[i], buf_exp[i] = b * w0[i];
        // t steps within lars.h's one-step tolerance, taken relative to local_lr·(sα +
        // wd) = lr·η, the size of one step's update per unit weight.
        const Tolerance tol = LarsApplyTolerance(lr * eta);
        auto rw = AllClose(w, w_exp, t * tol.atol, t * tol.rtol);
        INFO("step " << t << " w: " << rw.message);
        REQUIRE(rw.ok);
        auto rb = AllClose(buf, buf_exp, t * tol.atol, t * tol.rtol);
        INFO("step " << t << " buf: " << rb.message);
        REQUIRE(rb.ok);
      }
      omp_set_num_threads(saved);
    }
  }
}

}  // namespace
}  // namespace colossal::kernels
