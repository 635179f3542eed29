// LAMB: both phases of the CPU twin (and the float ref twins) against the double
// reference over sizes and hyper-parameters at 1 and 2 threads; bitwise determinism of
// the sums across thread counts; LambTrustRatio's edge cases; additivity of the sums
// over a split segment (ZeRO shards); and five whole two-phase steps against the closed
// form of a constant gradient.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/optim/lamb.h"
#include "kernels/testing/kernel_testing.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::Cast;
using testing::Random;

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

// lamb.h: sums rtol = Fp32ReductionRtol(n)·4.
bool SumsClose(const double* actual, const double* expected, int64_t n) {
  const double rtol = 4.0 * testing::Fp32ReductionRtol(n);
  return std::fabs(actual[0] - expected[0]) <= rtol * expected[0] &&
         std::fabs(actual[1] - expected[1]) <= rtol * expected[1];
}

void CheckBothPhases(int64_t n, const LambArgs& h, bool zero_moments, Backend backend,
                     uint64_t seed) {
  CAPTURE(n, h.lr, h.weight_decay, h.grad_scale, h.step, zero_moments, BackendName(backend),
          omp_get_max_threads());
  State<float> s = RandomState(n, seed, h.grad_scale, zero_moments);
  State<double> d = ToDouble(s);
  const LambArgs a = s.Args(h);
  const LambArgsT<double> r = d.Args(h);

  double sums[2] = {-1, -1}, sums_ref[2] = {-1, -1};
  LambMoments(a, sums, {backend});
  LambMomentsRef(r, sums_ref);
  INFO("sums " << sums[0] << " " << sums[1] << " ref " << sums_ref[0] << " " << sums_ref[1]);
  REQUIRE(SumsClose(sums, sums_ref, n));
  // The moment updates are AdamW's: adamw.h's atol = rtol = 1e-6.
  REQUIRE(AllClose(s.m, d.m, 1e-6, 1e-6).ok);
  REQUIRE(AllClose(s.v, d.v, 1e-6, 1e-6).ok);

  // Phase 2 from the same (reference) trust ratio, so only the apply is compared.
  const float trust = LambTrustRatio(sums_ref[0], sums_ref[1], 10.0f);
  LambApply(a, trust, {backend});
  LambApplyRef(r, trust);
  // lamb.h: w atol = 1e-6·lr·r, rtol = 1e-6.
  auto rw = AllClose(s.w, d.w, 1e-6 * h.lr * trust, 1e-6);
  INFO("w: " << rw.message);
  REQUIRE(rw.ok);
}

TEST_CASE("lamb: cpu and ref twins match the double reference in both phases") {
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
          for (Backend b : {Backend::kCpu, Backend::kRef})
            CheckBothPhases(n, h, zero_moments, b, seed += 5);
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
        auto rw = AllClose(s.w, w_exp, t * 1e-6 * h.lr * r_max, t * 1e-6);
        INFO("step " << t << " r " << r << ": " << rw.message);
        REQUIRE(rw.ok);
      }
      omp_set_num_threads(saved);
    }
  }
}

}  // namespace
}  // namespace colossal::kernels
