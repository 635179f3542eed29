// SGD with momentum: every twin (the harness) against the double reference over sizes
// and hyper-parameters (Nesterov on/off, momentum 0 with an unreadable buffer, decay,
// grad_scale) at 1 and 2 threads, one step per case, and over five steps with the state
// carried from the reference; five steps of the CPU twin against closed forms.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kernels/optim/sgd.h"
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
  float lr, momentum, weight_decay, grad_scale;
  Nesterov nesterov;
};

struct State {
  std::vector<float> w, g, buf;
};

template <typename T>
SgdArgsT<T> Args(T* w, const T* g, T* buf, int64_t n, const Hyper& h) {
  SgdArgsT<T> a;
  a.w = w, a.g = g, a.buf = buf, a.n = n;
  a.lr = h.lr, a.momentum = h.momentum, a.weight_decay = h.weight_decay;
  a.grad_scale = h.grad_scale, a.nesterov = h.nesterov;
  return a;
}

std::string Describe(const Hyper& h) {
  return " lr=" + std::to_string(h.lr) + " mu=" + std::to_string(h.momentum) +
         " wd=" + std::to_string(h.weight_decay) + " scale=" + std::to_string(h.grad_scale) +
         (h.nesterov == Nesterov::kYes ? " nesterov" : "");
}

// One step of every twin of SgdStepTable from `s`, each against the double reference
// from the same inputs within sgd.h's tolerances. With momentum 0 the twins' buffer is
// poisoned with NaN (it must not be read). Returns the reference's state after the step,
// rounded to fp32.
State StepEveryTwin(const std::string& name, const State& s, const Hyper& h) {
  CAPTURE(name);
  const int64_t n = static_cast<int64_t>(s.w.size());
  auto w = AsDouble(s.w), g = AsDouble(s.g), buf = AsDouble(s.buf);
  SgdStepRef(Args(w.data(), g.data(), buf.data(), n, h));

  const std::vector<float> buf0 =
      h.momentum == 0.0f ? std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()) : s.buf;
  TwinCase c(name);
  const int iw = c.Out("w", s.w, w, SgdWeightTolerance(h.lr));
  const int ig = c.In(s.g);
  const int ib = c.Out("buf", buf0, buf, SgdBufferTolerance());
  RequireNoFailures(c.Run(SgdStepTable(), [&](SgdStepFn* fn, Stream st, const auto& x) {
    fn(Args(ArgAs<float>(x, iw), ArgAs<const float>(x, ig), ArgAs<float>(x, ib), n, h), st);
  }));
  REQUIRE(c.ran().size() >= 2);
  return {Cast<float>(w), s.g, Cast<float>(buf)};
}

TEST_CASE("sgd: every twin matches the double reference (the harness)") {
  const std::vector<Hyper> hypers = {
      {0.1f, 0.9f, 0.0f, 1.0f, Nesterov::kNo},
      {0.1f, 0.9f, 1e-4f, 0.5f, Nesterov::kYes},
      {0.05f, 0.0f, 0.01f, 1.0f, Nesterov::kNo},   // plain SGD
      {0.05f, 0.0f, 0.0f, 2.0f, Nesterov::kYes},   // Nesterov with μ = 0 is plain SGD
      {1e-3f, 0.99f, 0.1f, 1.0f / 1024, Nesterov::kNo},
  };
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
        s.buf = Random<float>(n, seed + 2, -0.5, 0.5);
        StepEveryTwin(
            "sgd n=" + std::to_string(n) + " threads=" + std::to_string(threads) + Describe(h), s,
            h);
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("sgd: five steps on every twin, state carried from the reference (the harness)") {
  // Each step is one case from the reference's state after the steps before (rounded to
  // fp32), with a fresh gradient; buf starts at 0 as in PyTorch's first step.
  const std::vector<Hyper> hypers = {
      {0.05f, 0.9f, 0.0f, 1.0f, Nesterov::kNo},
      {0.05f, 0.9f, 0.01f, 0.5f, Nesterov::kYes},
      {0.05f, 0.0f, 0.1f, 2.0f, Nesterov::kNo},
  };
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : {17, 100003}) {
      for (const Hyper& h : hypers) {
        State s;
        s.w = Random<float>(n, 70 + n, -1.0, 1.0);
        s.buf.assign(n, 0.0f);
        for (int t = 1; t <= 5; ++t) {
          s.g = Random<float>(n, 80 + n + t, -1.0 / h.grad_scale, 1.0 / h.grad_scale);
          s = StepEveryTwin("sgd 5 steps n=" + std::to_string(n) +
                                " threads=" + std::to_string(threads) + Describe(h) +
                                " step=" + std::to_string(t),
                            s, h);
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("sgd: five steps with a constant gradient follow the closed form") {
  // wd = 0, constant g' = s·g, buf0 arbitrary (step 1 with μ≠0 reads it: use 0, as
  // PyTorch's first step does): buf_t = g'(1 − μ^t)/(1 − μ) and
  //   w_T = w0 − lr·g'·Σ_{t=1..T} k_t,  k_t = (1 − μ^t)/(1 − μ)   (plain momentum)
  //                                     k_t = (1 − μ^(t+1))/(1 − μ) (Nesterov: g' + μ buf_t)
  // μ = 0 makes every k_t = 1. With decay and μ = 0 instead, w ← a·w − lr·g', a = 1 − lr·wd.
  const int64_t n = 100003;
  struct Flow {
    float momentum, weight_decay, grad_scale;
    Nesterov nesterov;
  };
  for (const Flow& f : std::vector<Flow>{{0.9f, 0.0f, 1.0f, Nesterov::kNo},
                                         {0.9f, 0.0f, 0.5f, Nesterov::kYes},
                                         {0.0f, 0.0f, 1.0f, Nesterov::kNo},
                                         {0.0f, 0.1f, 2.0f, Nesterov::kNo}}) {
    CAPTURE(f.momentum, f.weight_decay, f.grad_scale, f.nesterov == Nesterov::kYes);
    const auto w0 = Random<float>(n, 3, -1.0, 1.0);
    const auto g = Random<float>(n, 4, -1.0, 1.0);
    auto w = w0;
    std::vector<float> buf(n, 0.0f);
    SgdArgs a;
    a.w = w.data(), a.g = g.data(), a.buf = buf.data(), a.n = n;
    a.lr = 0.05f, a.momentum = f.momentum, a.weight_decay = f.weight_decay;
    a.grad_scale = f.grad_scale, a.nesterov = f.nesterov;
    const double lr = a.lr, mu = f.momentum, decay = 1.0 - lr * static_cast<double>(f.weight_decay);
    double sum_k = 0.0;
    for (int t = 1; t <= 5; ++t) {
      SgdStep(a);
      const double k_buf = mu == 0.0 ? 1.0 : (1.0 - std::pow(mu, t)) / (1.0 - mu);
      const double k_step = f.nesterov == Nesterov::kYes && mu != 0.0
                                ? (1.0 - std::pow(mu, t + 1)) / (1.0 - mu)
                                : k_buf;
      sum_k += k_step;
      std::vector<double> w_exp(n), buf_exp(n);
      for (int64_t i = 0; i < n; ++i) {
        const double gs = static_cast<double>(f.grad_scale) * g[i];
        if (f.weight_decay == 0.0f) {
          w_exp[i] = w0[i] - lr * gs * sum_k;
          buf_exp[i] = gs * k_buf;
        } else {  // μ = 0: buf_t = g' + wd·w_{t−1}, w_t = a^t w0 − lr g' Σ_{k<t} a^k
          double geometric = 0.0;
          for (int k = 0; k < t; ++k) geometric += std::pow(decay, k);
          w_exp[i] = std::pow(decay, t) * w0[i] - lr * gs * geometric;
          const double w_prev = std::pow(decay, t - 1) * w0[i] - lr * gs * (geometric - std::pow(decay, t - 1));
          buf_exp[i] = gs + static_cast<double>(f.weight_decay) * w_prev;
        }
      }
      // t steps, each within sgd.h's one-step tolerance, errors adding (|a| ≤ 1).
      const Tolerance tw = SgdWeightTolerance(a.lr), tb = SgdBufferTolerance();
      auto rw = AllClose(w, w_exp, t * tw.atol, t * tw.rtol);
      INFO("step " << t << " w: " << rw.message);
      REQUIRE(rw.ok);
      auto rb = AllClose(buf, buf_exp, t * tb.atol, t * tb.rtol);
      INFO("step " << t << " buf: " << rb.message);
      REQUIRE(rb.ok);
    }
  }
}

}  // namespace
}  // namespace colossal::kernels
