// LAMB: both phases of every twin (the harness) against the double reference over
// sizes and hyper-parameters at 1 and 2 threads, one step per case, and over five steps
// with the state carried from the reference; bitwise determinism of the CPU twin (sums,
// w, m, v) across thread counts; LambTrustRatio's edge cases; additivity of the sums
// over a split segment (ZeRO shards); and five whole two-phase steps of the CPU twin
// against the closed form of a constant gradient.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/backend_memory.h"
#include "kernels/optim/lamb.h"
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

template <typename T>
struct State {
  std::vector<T> w, g, m, v;
  LambArgsT<T> Args(const LambArgs& h) {
    LambArgsT<T> a;
    a.w = w.data(), a.g = g.data(), a.m = m.data(), a.v = v.data();
    a.n = static_cast<int64_t>(w.size());
    a.lr = h.lr, a.beta1 = h.beta1, a.beta2 = h.beta2, a.eps = h.eps;
    a.weight_decay = h.weight_decay, a.step = h.step, a.grad_scale = h.grad_scale;
    return a;
  }
};

State<float> RandomState(int64_t n, uint64_t seed, float grad_scale, bool zero_moments) {
  State<float> s;
  s.w = Random<float>(n, seed, -1.0, 1.0);
  s.g = Random<float>(n, seed + 1, -1.0 / grad_scale, 1.0 / grad_scale);
  s.m = zero_moments ? std::vector<float>(n, 0.0f) : Random<float>(n, seed + 2, -0.1, 0.1);
  s.v = zero_moments ? std::vector<float>(n, 0.0f) : Random<float>(n, seed + 3, 0.0, 0.01);
  return s;
}

State<double> ToDouble(const State<float>& s) {
  return {Cast<double>(s.w), Cast<double>(s.g), Cast<double>(s.m), Cast<double>(s.v)};
}

LambArgs WithPointers(LambArgs h, float* w, const float* g, float* m, float* v, int64_t n) {
  h.w = w, h.g = g, h.m = m, h.v = v, h.n = n;
  return h;
}

std::string Describe(const LambArgs& h) {
  return " lr=" + std::to_string(h.lr) + " wd=" + std::to_string(h.weight_decay) +
         " scale=" + std::to_string(h.grad_scale) + " step=" + std::to_string(h.step);
}

// Both phases of every twin from `s`, each phase against the double reference from the
// same inputs within lamb.h's tolerances: moments from `s`, then apply from the
// reference's moments (rounded to fp32) and the reference's trust ratio, so only the
// apply is compared. Returns the reference's state after the step, rounded to fp32.
State<float> StepEveryTwin(const std::string& name, const State<float>& s, const LambArgs& h,
                           float trust_clip = 10.0f) {
  CAPTURE(name);
  const int64_t n = static_cast<int64_t>(s.w.size());
  State<double> d = ToDouble(s);
  double sums_ref[2] = {-1, -1};
  LambMomentsRef(d.Args(h), sums_ref);
  {
    const std::string phase = name + " moments";
    TwinCase c(phase);
    const int iw = c.In(s.w), ig = c.In(s.g);
    const int im = c.Out("m", s.m, d.m, LambMomentTolerance());
    const int iv = c.Out("v", s.v, d.v, LambMomentTolerance());
    const int i_sums = c.OutF64("sums", {sums_ref[0], sums_ref[1]}, LambSumsTolerance(n));
    const std::string failures =
        c.Run(LambMomentsTable(), [&](LambMomentsFn* fn, Stream st, const auto& x) {
          fn(WithPointers(h, ArgAs<float>(x, iw), ArgAs<const float>(x, ig), ArgAs<float>(x, im),
                          ArgAs<float>(x, iv), n),
             ArgAs<double>(x, i_sums), st);
        });
    RequireNoFailures(failures);
    REQUIRE(c.ran().size() >= 2);
  }
  State<float> next{s.w, s.g, Cast<float>(d.m), Cast<float>(d.v)};
  const float trust = LambTrustRatio(sums_ref[0], sums_ref[1], trust_clip);
  State<double> a = ToDouble(next);
  LambApplyRef(a.Args(h), trust);
  {
    TwinCase c(name + " apply r=" + std::to_string(trust));
    const int iw = c.Out("w", next.w, a.w, LambWeightTolerance(h.lr, trust));
    const int ig = c.In(next.g), im = c.In(next.m), iv = c.In(next.v);
    RequireNoFailures(c.Run(LambApplyTable(), [&](LambApplyFn* fn, Stream st, const auto& x) {
      fn(WithPointers(h, ArgAs<float>(x, iw), ArgAs<const float>(x, ig), ArgAs<float>(x, im),
                      ArgAs<float>(x, iv), n),
         trust, st);
    }));
    REQUIRE(c.ran().size() >= 2);
  }
  next.w = Cast<float>(a.w);
  return next;
}

TEST_CASE("lamb: every twin matches the double reference in both phases (the harness)") {
  std::vector<LambArgs> hypers(4);
  hypers[0].lr = 1e-3f, hypers[0].step = 1;
  hypers[1].lr = 2e-3f, hypers[1].weight_decay = 0.01f, hypers[1].step = 10;
  hypers[2].lr = 1e-2f, hypers[2].weight_decay = 0.1f, hypers[2].grad_scale = 1.0f / 512;
  hypers[2].step = 1;
  hypers[3].lr = 5e-3f, hypers[3].grad_scale = 4.0f, hypers[3].step = 10;
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    uint64_t seed = 1;
    for (int64_t n : {0, 1, 17, 100003})
      for (const LambArgs& h : hypers)
        for (bool zero_moments : {true, false})
          StepEveryTwin("lamb n=" + std::to_string(n) + " threads=" + std::to_string(threads) +
                            Describe(h) + (zero_moments ? " m0=v0=0" : ""),
                        RandomState(n, seed += 5, h.grad_scale, zero_moments), h);
  }
  omp_set_num_threads(saved);
}

TEST_CASE("lamb: five steps on every twin, state carried from the reference (the harness)") {
  // Each step is one pair of cases from the reference's state after the steps before
  // (rounded to fp32), with a fresh gradient; moments start at 0.
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : {17, 100003}) {
      for (float wd : {0.0f, 0.01f}) {
        for (float clip : {10.0f, 0.25f}) {
          LambArgs h;
          h.lr = 0.02f, h.weight_decay = wd, h.grad_scale = 0.5f;
          State<float> s = RandomState(n, 90 + n, h.grad_scale, true);
          for (h.step = 1; h.step <= 5; ++h.step) {
            s.g = Random<float>(n, 100 + n + h.step, -1.0 / h.grad_scale, 1.0 / h.grad_scale);
            s = StepEveryTwin("lamb 5 steps n=" + std::to_string(n) +
                                  " threads=" + std::to_string(threads) + Describe(h) +
                                  " clip=" + std::to_string(clip),
                              s, h, clip);
          }
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("lamb: sums and updates are bitwise the same for 1 and 2 threads") {
  const int64_t n = 1000003;
  LambArgs h;
  h.lr = 1e-3f, h.weight_decay = 0.01f, h.step = 3;
  State<float> one = RandomState(n, 11, 1.0f, false), two = one;
  double sums_one[2], sums_two[2];
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  LambMoments(one.Args(h), sums_one);
  LambApply(one.Args(h), 0.8f);
  omp_set_num_threads(2);
  LambMoments(two.Args(h), sums_two);
  LambApply(two.Args(h), 0.8f);
  omp_set_num_threads(saved);
  REQUIRE(sums_one[0] == sums_two[0]);
  REQUIRE(sums_one[1] == sums_two[1]);
  REQUIRE(one.w == two.w);
  REQUIRE(one.m == two.m);
  REQUIRE(one.v == two.v);
}

TEST_CASE("lamb: LambTrustRatio edge cases") {
  REQUIRE(LambTrustRatio(0.0, 4.0, 10.0f) == 1.0f);  // ‖w‖ = 0 (e.g. a zero-initialised bias)
  REQUIRE(LambTrustRatio(4.0, 0.0, 10.0f) == 1.0f);  // ‖u‖ = 0
  REQUIRE(LambTrustRatio(0.0, 0.0, 10.0f) == 1.0f);
  REQUIRE(LambTrustRatio(9.0, 4.0, 10.0f) == 1.5f);  // ‖w‖/‖u‖ = 3/2
  REQUIRE(LambTrustRatio(400.0, 1.0, 10.0f) == 10.0f);  // 20, clamped at trust_clip
  REQUIRE(LambTrustRatio(1.0, 400.0, 10.0f) == 0.05f);  // small ratios pass through
  // The clamp is on the ratio only: the fallback 1 stands even below trust_clip 1.
  REQUIRE(LambTrustRatio(0.0, 1.0, 0.5f) == 1.0f);
  REQUIRE(LambTrustRatio(4.0, 1.0, 0.5f) == 0.5f);
  REQUIRE(std::isnan(LambTrustRatio(std::numeric_limits<double>::quiet_NaN(), 1.0, 10.0f)));
}

TEST_CASE("lamb: moments over two halves add up to the moments over the whole") {
  // ZeRO shards a tensor and reduces Σw², Σu² across shards before the trust ratio.
  const int64_t n = 250001, half = 100003;  // the split is not on a block boundary
  LambArgs h;
  h.lr = 1e-3f, h.weight_decay = 0.01f, h.step = 4, h.grad_scale = 0.5f;
  State<float> whole = RandomState(n, 21, h.grad_scale, false), split = whole;
  double sums_whole[2], sums_lo[2], sums_hi[2];
  LambMoments(whole.Args(h), sums_whole);
  LambArgs lo = split.Args(h), hi = split.Args(h);
  lo.n = half;
  hi.w += half, hi.g += half, hi.m += half, hi.v += half, hi.n = n - half;
  LambMoments(lo, sums_lo);
  LambMoments(hi, sums_hi);
  // n positive terms, each exact in double (squares of fp32 values), in two orders:
  // relative difference ≤ n·2^-53 each way.
  const double rtol = 2.0 * n * 0x1p-53;
  for (int k = 0; k < 2; ++k)
    REQUIRE(std::fabs(sums_lo[k] + sums_hi[k] - sums_whole[k]) <= rtol * sums_whole[k]);
  // The moments are elementwise: identical bit for bit.
  REQUIRE(split.m == whole.m);
  REQUIRE(split.v == whole.v);
  // And the shards' apply with the shared ratio equals the whole tensor's apply.
  const float trust = LambTrustRatio(sums_lo[0] + sums_hi[0], sums_lo[1] + sums_hi[1], 10.0f);
  // The ratio from summed shards differs from the whole's by at most its fp32 rounding.
  const float trust_whole = LambTrustRatio(sums_whole[0], sums_whole[1], 10.0f);
  REQUIRE(std::fabs(trust - trust_whole) <= (rtol + 0x1p-24) * trust_whole);
  LambApply(whole.Args(h), trust);
  LambApply(lo, trust);
  LambApply(hi, trust);
  REQUIRE(split.w == whole.w);
}

TEST_CASE("lamb: five two-phase steps with a constant gradient follow the closed form") {
  // wd = 0, m0 = v0 = 0, constant g' = s·g: as for AdamW, m̂ = g' and v̂ = g'² at every
  // step, so u = g'/(|g'| + eps) is the same vector each step and w_t = w0 − S_t·u with
  // S_t = lr·(r_1 + … + r_t), r_t = min(‖w_(t−1)‖/‖u‖, clip) and
  //   ‖w0 − S u‖² = A − 2 S B + S² C,  A = ‖w0‖², B = ⟨w0, u⟩, C = ‖u‖².
  const int64_t n = 100003;
  for (float clip : {10.0f, 0.25f}) {  // ‖w‖/‖u‖ ≈ 0.58 here: unclipped, then clipped
    for (int threads : {1, 2}) {
      CAPTURE(clip, threads);
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      LambArgs h;
      h.lr = 0.02f, h.grad_scale = 0.5f;
      State<float> s = RandomState(n, 31, h.grad_scale, true);
      const std::vector<float> w0 = s.w;
      std::vector<double> u(n);
      double A = 0, B = 0, C = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double gs = static_cast<double>(h.grad_scale) * s.g[i];
        u[i] = gs / (std::fabs(gs) + static_cast<double>(h.eps));
        A += static_cast<double>(w0[i]) * w0[i];
        B += static_cast<double>(w0[i]) * u[i];
        C += u[i] * u[i];
      }
      double S = 0.0, r_max = 0.0;
      for (int64_t t = 1; t <= 5; ++t) {
        h.step = t;
        double sums[2];
        LambMoments(s.Args(h), sums);
        LambApply(s.Args(h), LambTrustRatio(sums[0], sums[1], clip));
        const double r = std::min(std::sqrt((A - 2 * S * B + S * S * C) / C),
                                  static_cast<double>(clip));
        r_max = std::max(r_max, r);
        S += static_cast<double>(h.lr) * r;
        std::vector<double> w_exp(n);
        for (int64_t i = 0; i < n; ++i) w_exp[i] = w0[i] - S * u[i];
        // t steps, each within lamb.h's one-step tolerance (atol 1e-6·lr·r, rtol 1e-6);
        // r's own error (sums of fp32 u², ~1e-7 relative) is far inside it.
        const Tolerance tw = LambWeightTolerance(h.lr, static_cast<float>(r_max));
        auto rw = AllClose(s.w, w_exp, t * tw.atol, t * tw.rtol);
        INFO("step " << t << " r " << r << ": " << rw.message);
        REQUIRE(rw.ok);
      }
      omp_set_num_threads(saved);
    }
  }
}

}  // namespace
}  // namespace colossal::kernels
