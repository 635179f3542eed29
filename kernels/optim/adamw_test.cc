// AdamW: every twin (the harness) against the double reference over sizes and
// hyper-parameters at 1 and 2 threads, one step per case, and over five steps with the
// state carried from the reference; five steps of the CPU twin from zero moments against
// the closed form that a constant gradient gives (m̂ = g', v̂ = g'² at every step); and the
// double reference against that closed form.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/optim/adamw.h"
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
  float lr, weight_decay, grad_scale;
  int64_t step;
  bool zero_moments;
};

struct State {
  std::vector<float> w, g, m, v;
};

template <typename T>
AdamWArgsT<T> Args(T* w, const T* g, T* m, T* v, int64_t n, const Hyper& h) {
  AdamWArgsT<T> a;
  a.w = w, a.g = g, a.m = m, a.v = v, a.n = n;
  a.lr = h.lr, a.weight_decay = h.weight_decay, a.grad_scale = h.grad_scale, a.step = h.step;
  return a;
}

State RandomState(int64_t n, const Hyper& h, uint64_t seed) {
  State s;
  s.w = Random<float>(n, seed, -1.0, 1.0);
  // Gradients at the scale a loss-scaled backward would leave them.
  s.g = Random<float>(n, seed + 1, -1.0 / h.grad_scale, 1.0 / h.grad_scale);
  s.m = h.zero_moments ? std::vector<float>(n, 0.0f) : Random<float>(n, seed + 2, -0.1, 0.1);
  s.v = h.zero_moments ? std::vector<float>(n, 0.0f) : Random<float>(n, seed + 3, 0.0, 0.01);
  return s;
}

// One step of every twin of AdamWStepTable from `s`, each against the double reference
// from the same inputs within adamw.h's tolerances. Returns the reference's state after
// the step, rounded to fp32 (the next step's inputs).
State StepEveryTwin(const std::string& name, const State& s, const Hyper& h) {
  CAPTURE(name);
  const int64_t n = static_cast<int64_t>(s.w.size());
  auto w = AsDouble(s.w), g = AsDouble(s.g), m = AsDouble(s.m), v = AsDouble(s.v);
  AdamWStepRef(Args(w.data(), g.data(), m.data(), v.data(), n, h));

  TwinCase c(name);
  const int iw = c.Out("w", s.w, w, AdamWWeightTolerance(h.lr));
  const int ig = c.In(s.g);
  const int im = c.Out("m", s.m, m, AdamWMomentTolerance());
  const int iv = c.Out("v", s.v, v, AdamWMomentTolerance());
  RequireNoFailures(c.Run(AdamWStepTable(), [&](AdamWStepFn* fn, Stream st, const auto& x) {
    fn(Args(ArgAs<float>(x, iw), ArgAs<const float>(x, ig), ArgAs<float>(x, im),
            ArgAs<float>(x, iv), n, h),
       st);
  }));
  REQUIRE(c.ran().size() >= 2);
  return {Cast<float>(w), s.g, Cast<float>(m), Cast<float>(v)};
}

TEST_CASE("adamw: every twin matches the double reference (the harness)") {
  const std::vector<Hyper> hypers = {
      {1e-3f, 0.0f, 1.0f, 1, true},         // first step, no decay
      {3e-4f, 0.1f, 1.0f / 1024, 10, false},  // decay, loss-scaled grads, bias correction at 10
      {1e-2f, 0.01f, 2.0f, 1, false},
      {1e-3f, 0.1f, 1.0f, 10000, false},     // bias corrections ≈ 1
  };
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    uint64_t seed = 1;
    for (int64_t n : {0, 1, 17, 100003}) {
      for (size_t k = 0; k < hypers.size(); ++k) {
        const std::string name = "adamw n=" + std::to_string(n) +
                                 " threads=" + std::to_string(threads) +
                                 " hyper=" + std::to_string(k);
        StepEveryTwin(name, RandomState(n, hypers[k], seed += 7), hypers[k]);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("adamw: five steps on every twin, state carried from the reference (the harness)") {
  // Each step is one case: every twin starts from the reference's state after the steps
  // before (rounded to fp32), with a fresh gradient, so errors do not compound.
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (float wd : {0.0f, 0.1f}) {
      for (int64_t n : {17, 100003}) {
        Hyper h{1e-2f, wd, 0.5f, 1, true};
        State s = RandomState(n, h, 50 + n);
        for (h.step = 1; h.step <= 5; ++h.step) {
          s.g = Random<float>(n, 60 + n + h.step, -2.0, 2.0);
          const std::string name = "adamw 5 steps n=" + std::to_string(n) +
                                   " threads=" + std::to_string(threads) +
                                   " wd=" + std::to_string(wd) + " step=" + std::to_string(h.step);
          s = StepEveryTwin(name, s, h);
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("adamw: five steps with a constant gradient follow the closed form") {
  // With m0 = v0 = 0 and a constant g' = s·g: m_t = (1−β1^t) g', v_t = (1−β2^t) g'², so
  // m̂ = g' and v̂ = g'² at every step and each step is the same affine map
  //   w ← a·w − c,  a = 1 − lr·wd,  c = lr·g'/(|g'| + eps),
  // giving w_t = a^t w0 − c (1 + a + … + a^(t−1)).
  const int64_t n = 100003;
  for (float wd : {0.0f, 0.1f}) {
    for (float scale : {1.0f, 0.5f}) {
      for (int threads : {1, 2}) {
        CAPTURE(wd, scale, threads);
        const int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        auto w0 = Random<float>(n, 5, -1.0, 1.0);
        auto g = Random<float>(n, 6, -2.0, 2.0);
        g[0] = 0.0f;  // a zero gradient: the weight only decays
        g[1] = 1e-7f;  // |g'| ≈ eps·10: eps visibly shrinks the step
        auto w = w0;
        std::vector<float> m(n, 0.0f), v(n, 0.0f);
        AdamWArgs a;
        a.w = w.data(), a.g = g.data(), a.m = m.data(), a.v = v.data(), a.n = n;
        a.lr = 1e-2f, a.weight_decay = wd, a.grad_scale = scale;
        const double lr = a.lr, b1 = a.beta1, b2 = a.beta2, eps = a.eps;
        const double decay = 1.0 - lr * static_cast<double>(wd);
        for (int64_t t = 1; t <= 5; ++t) {
          a.step = t;
          AdamWStep(a);
          std::vector<double> w_exp(n), m_exp(n), v_exp(n);
          const double a_t = std::pow(decay, static_cast<double>(t));
          double geometric = 0.0;
          for (int64_t k = 0; k < t; ++k) geometric += std::pow(decay, static_cast<double>(k));
          for (int64_t i = 0; i < n; ++i) {
            const double gs = static_cast<double>(scale) * g[i];
            const double c = lr * gs / (std::fabs(gs) + eps);
            w_exp[i] = a_t * w0[i] - c * geometric;
            m_exp[i] = (1.0 - std::pow(b1, static_cast<double>(t))) * gs;
            v_exp[i] = (1.0 - std::pow(b2, static_cast<double>(t))) * gs * gs;
          }
          // t steps, each within adamw.h's one-step tolerance; |a| ≤ 1 does not amplify.
          const double steps = static_cast<double>(t);
          const Tolerance tw = AdamWWeightTolerance(a.lr), tm = AdamWMomentTolerance();
          auto rw = AllClose(w, w_exp, steps * tw.atol, steps * tw.rtol);
          INFO("step " << t << " w: " << rw.message);
          REQUIRE(rw.ok);
          auto rm = AllClose(m, m_exp, steps * tm.atol, steps * tm.rtol);
          INFO("step " << t << " m: " << rm.message);
          REQUIRE(rm.ok);
          auto rv = AllClose(v, v_exp, steps * tm.atol, steps * tm.rtol);
          INFO("step " << t << " v: " << rv.message);
          REQUIRE(rv.ok);
        }
        omp_set_num_threads(saved);
      }
    }
  }
}

TEST_CASE("adamw: the double reference follows the closed form to rounding") {
  // Same derivation as above, for the reference itself in double.
  const int64_t n = 1000;
  auto w0 = Random<double>(n, 8, -1.0, 1.0);
  auto g = Random<double>(n, 9, -2.0, 2.0);
  auto w = w0;
  std::vector<double> m(n, 0.0), v(n, 0.0);
  AdamWArgsT<double> a;
  a.w = w.data(), a.g = g.data(), a.m = m.data(), a.v = v.data(), a.n = n;
  a.lr = 1e-2f, a.weight_decay = 0.1f;
  const double decay = 1.0 - static_cast<double>(a.lr) * static_cast<double>(a.weight_decay);
  for (int64_t t = 1; t <= 5; ++t) {
    a.step = t;
    AdamWStepRef(a);
  }
  double geometric = 0.0;
  for (int k = 0; k < 5; ++k) geometric += std::pow(decay, k);
  std::vector<double> w_exp(n);
  for (int64_t i = 0; i < n; ++i)
    w_exp[i] = std::pow(decay, 5) * w0[i] -
               static_cast<double>(a.lr) * g[i] / (std::fabs(g[i]) + a.eps) * geometric;
  auto r = AllClose(w, w_exp, 1e-14, 1e-12);
  INFO(r.message);
  REQUIRE(r.ok);
}

}  // namespace
}  // namespace colossal::kernels
