// Softmax cross-entropy: every twin (the harness; the CPU one under both instruction sets,
// 1 and 2 threads) against the double reference with the header's tolerances at odd widths, padded rows, ignored targets, ±80 logits, in place
// and accumulating; the reference backward against central finite differences; and the
// analytic all-equal-logits case.
#include <catch2/catch.hpp>
#include <omp.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/softmax_xent/softmax_xent.h"
#include "kernels/softmax_xent/softmax_xent_cpu.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using internal::SoftmaxXentIsa;
using testing::AllClose;
using testing::ArgAs;
using testing::Cast;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

// Tolerances from softmax_xent.h.
double LossTol(int64_t v) { return SoftmaxXentLossTolerance(v).rtol; }
double MaxAbs(const std::vector<float>& v) {
  double m = 0;
  for (float d : v) m = std::max(m, std::fabs(static_cast<double>(d)));
  return m;
}

// Targets in [0, v) with every `ignore_every`-th row set to -1 (ignored) and every 7th
// row to a class past v (in another rank's block of the vocabulary).
std::vector<int32_t> Targets(int64_t n, int64_t v, uint64_t seed, int ignore_every) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) {
    t[i] = static_cast<int32_t>(rng() % static_cast<uint64_t>(v));
    if (i % 7 == 3) t[i] = static_cast<int32_t>(v + i % 2);
    if (ignore_every > 0 && i % ignore_every == ignore_every - 1) t[i] = -1;
  }
  return t;
}

// Padded [n, ld] logits: the v live columns uniform in [lo, hi), padding a sentinel.
constexpr float kPad = 12345.0f;
std::vector<float> Logits(int64_t n, int64_t v, int64_t ld, uint64_t seed, double lo,
                          double hi) {
  auto live = Random<float>(n * v, seed, lo, hi);
  std::vector<float> x(n * ld, kPad);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < v; ++j) x[i * ld + j] = live[i * v + j];
  return x;
}

bool PaddingIntact(const std::vector<float>& x, int64_t n, int64_t v, int64_t ld) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = v; j < ld; ++j)
      if (x[i * ld + j] != kPad) return false;
  return true;
}

struct Case {
  int64_t n, v, ld;
  double lo, hi;
};

// Runs one case through every twin (the harness) and the double reference.
void CheckAgainstReference(const Case& c, uint64_t seed) {
  const auto [n, v, ld, lo, hi] = c;
  CAPTURE(n, v, ld, lo, hi, internal::SoftmaxXentUsesAvx512(), omp_get_max_threads());
  const std::string name = " n=" + std::to_string(n) + " v=" + std::to_string(v) + " ld=" + std::to_string(ld);
  const auto x = Logits(n, v, ld, seed, lo, hi);
  const auto targets = Targets(n, v, seed + 1, 4);
  const auto dloss = Random<float>(n, seed + 2, -2.0, 2.0);
  const auto xd = Cast<double>(x);

  std::vector<double> loss_ref(n), lse_ref(n);
  SoftmaxXentForwardRef(xd.data(), ld, targets.data(), loss_ref.data(), lse_ref.data(), n, v);
  for (int64_t i = 0; i < n; ++i)
    if (targets[i] < 0) REQUIRE(loss_ref[i] == 0.0);
  {
    TwinCase f("softmax_xent_forward" + name);
    const int ix = f.In(x), it = f.InI32(targets);
    // Ignored rows must be written (0), not left: poison every row first.
    const int il = f.Out("loss", std::vector<float>(n, -1.0f), loss_ref, SoftmaxXentLossTolerance(v));
    const int is = f.Out("lse", std::vector<float>(n, -1.0f), lse_ref, SoftmaxXentLossTolerance(v));
    RequireNoFailures(f.Run(SoftmaxXentForwardTable(), [&](SoftmaxXentForwardFn* fn, Stream st, const auto& a) {
      fn(ArgAs<float>(a, ix), ld, ArgAs<int32_t>(a, it), ArgAs<float>(a, il), ArgAs<float>(a, is), n, v, st);
    }));
    REQUIRE(f.ran().size() >= 2);
  }

  // Backward from an fp32 lse (the reference's, rounded), so only the backward's error is
  // measured; padding columns must come back untouched (the expected value is the pad).
  std::vector<float> lse(n);
  for (int64_t i = 0; i < n; ++i) lse[i] = static_cast<float>(lse_ref[i]);
  const auto lse_d = Cast<double>(lse);
  const auto dloss_d = Cast<double>(dloss);
  const Tolerance grad = SoftmaxXentGradTolerance(MaxAbs(dloss));
  for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
    CAPTURE(acc == Accumulate::kYes);
    const auto bind = [&](int ix, int is, int it, int id, int io) {
      return [=](SoftmaxXentBackwardFn* fn, Stream st, const auto& a) {
        fn(ArgAs<float>(a, ix), ld, ArgAs<float>(a, is), ArgAs<int32_t>(a, it), ArgAs<float>(a, id),
           ArgAs<float>(a, io), n, v, acc, st);
      };
    };
    {  // Out of place, into a padded buffer with random prior contents.
      const auto prior = Logits(n, v, ld, seed + 3, -1.0, 1.0);
      auto dx_ref = Cast<double>(prior);
      SoftmaxXentBackwardRef(xd.data(), ld, lse_d.data(), targets.data(), dloss_d.data(), dx_ref.data(), n, v,
                             acc);
      TwinCase b("softmax_xent_backward" + name);
      const int ix = b.In(x), is = b.In(lse), it = b.InI32(targets), id = b.In(dloss);
      const int io = b.Out("dlogits", prior, dx_ref, grad);
      RequireNoFailures(b.Run(SoftmaxXentBackwardTable(), bind(ix, is, it, id, io)));
      for (Backend twin : b.ran()) REQUIRE(PaddingIntact(b.Got(twin, io), n, v, ld));  // exactly
    }
    {  // In place: dlogits == logits. The reference reads each x[j] before writing it too.
      auto inplace_ref = xd;
      SoftmaxXentBackwardRef(inplace_ref.data(), ld, lse_d.data(), targets.data(), dloss_d.data(),
                             inplace_ref.data(), n, v, acc);
      TwinCase b("softmax_xent_backward in place" + name);
      const int is = b.In(lse), it = b.InI32(targets), id = b.In(dloss);
      const int io = b.Out("dlogits (= logits)", x, inplace_ref, grad);
      RequireNoFailures(b.Run(SoftmaxXentBackwardTable(), bind(io, is, it, id, io)));
      for (Backend twin : b.ran()) REQUIRE(PaddingIntact(b.Got(twin, io), n, v, ld));
    }
  }
}

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {7, 1, 1, -4, 4},        {7, 1, 4, -80, 80},      {33, 3, 3, -4, 4},
      {33, 3, 8, -80, 80},     {65, 257, 257, -4, 4},   {65, 257, 261, -80, 80},
      {9, 50257, 50257, -4, 4}, {6, 50257, 50264, -80, 80}, {2048, 256, 256, -4, 4},
  };
  return cases;
}

TEST_CASE("softmax_xent: every twin matches the reference (the harness; both cpu ISAs, 1 and 2 threads)") {
  const int saved_threads = omp_get_max_threads();
  for (SoftmaxXentIsa isa : {SoftmaxXentIsa::kAuto, SoftmaxXentIsa::kAvx2}) {
    internal::SetSoftmaxXentIsaForTesting(isa);
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      uint64_t seed = 100;
      for (const Case& c : Cases()) CheckAgainstReference(c, seed += 10);
    }
  }
  internal::SetSoftmaxXentIsaForTesting(SoftmaxXentIsa::kAuto);
  omp_set_num_threads(saved_threads);
}

TEST_CASE("softmax_xent: results do not depend on the thread count") {
  const int64_t n = 300, v = 1001;
  const auto x = Random<float>(n * v, 7, -30.0, 30.0);
  const auto targets = Targets(n, v, 8, 5);
  const auto dloss = Random<float>(n, 9);
  std::vector<float> loss1(n), lse1(n), loss2(n), lse2(n), dx1(n * v), dx2(n * v);
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  SoftmaxXentForward(x.data(), v, targets.data(), loss1.data(), lse1.data(), n, v);
  SoftmaxXentBackward(x.data(), v, lse1.data(), targets.data(), dloss.data(), dx1.data(), n, v,
                      Accumulate::kNo);
  omp_set_num_threads(2);
  SoftmaxXentForward(x.data(), v, targets.data(), loss2.data(), lse2.data(), n, v);
  SoftmaxXentBackward(x.data(), v, lse2.data(), targets.data(), dloss.data(), dx2.data(), n, v,
                      Accumulate::kNo);
  omp_set_num_threads(saved_threads);
  REQUIRE(loss1 == loss2);
  REQUIRE(lse1 == lse2);
  REQUIRE(dx1 == dx2);
}

TEST_CASE("softmax_xent: a row whose maximum arrives late (shift raised mid-row)") {
  // The first blocks sit at −80 and a later one reaches +80: the forward's shift starts
  // 160 below the maximum and must be raised without overflow or loss of precision.
  const int64_t v = 50257;
  for (int64_t peak : {int64_t{5000}, int64_t{50256}}) {
    CAPTURE(peak);
    std::vector<float> x(v, -80.0f);
    for (int64_t j = 4096; j < v; ++j) x[j] = -80.0f + 160.0f * static_cast<float>(j) / v;
    x[peak] = 80.0f;
    const int32_t target = 17;
    std::vector<float> loss(1), lse(1);
    SoftmaxXentForward(x.data(), v, &target, loss.data(), lse.data(), 1, v);
    const auto xd = Cast<double>(x);
    std::vector<double> loss_ref(1), lse_ref(1);
    SoftmaxXentForwardRef(xd.data(), v, &target, loss_ref.data(), lse_ref.data(), 1, v);
    REQUIRE(AllClose(loss, loss_ref, LossTol(v), LossTol(v)).ok);
    REQUIRE(AllClose(lse, lse_ref, LossTol(v), LossTol(v)).ok);
  }
}

TEST_CASE("softmax_xent: all-equal logits give loss = log v and dlogits = dloss(1/v − onehot)") {
  for (int64_t v : {1, 3, 257, 50257}) {
    for (float c : {0.0f, 3.5f, -80.0f, 80.0f}) {
      CAPTURE(v, c);
      const int64_t n = 2;
      std::vector<float> x(n * v, c);
      std::vector<int32_t> targets = {static_cast<int32_t>(v / 2), -1};
      std::vector<float> dloss = {0.75f, 1.0f};
      const double log_v = std::log(static_cast<double>(v));
      const std::string name = " v=" + std::to_string(v);
      std::vector<double> loss_expected = {log_v, 0.0}, lse_expected(n, c + log_v);
      TwinCase f("softmax_xent_forward all-equal" + name);
      const int ix = f.In(x), it = f.InI32(targets);
      const int il = f.Out("loss", std::vector<float>(n, -1.0f), loss_expected, SoftmaxXentLossTolerance(v));
      const int is = f.Out("lse", std::vector<float>(n, -1.0f), lse_expected, SoftmaxXentLossTolerance(v));
      RequireNoFailures(f.Run(SoftmaxXentForwardTable(), [&](SoftmaxXentForwardFn* fn, Stream st, const auto& a) {
        fn(ArgAs<float>(a, ix), v, ArgAs<int32_t>(a, it), ArgAs<float>(a, il), ArgAs<float>(a, is), n, v, st);
      }));
      // The backward from the fp32-rounded lse c + log v.
      const std::vector<float> lse(n, static_cast<float>(c + log_v));
      std::vector<double> expected(n * v, 0.0);
      for (int64_t j = 0; j < v; ++j) expected[j] = dloss[0] * (1.0 / v - (j == v / 2 ? 1 : 0));
      // lse is rounded to fp32 (|lse| <= 91: <= 3.8e-6 absolute), which moves p = 1/v by
      // that much relative, on top of the header's tolerance.
      Tolerance tol = SoftmaxXentGradTolerance(MaxAbs(dloss));
      tol.rtol += 5e-6;
      TwinCase b("softmax_xent_backward all-equal" + name);
      const int bx = b.In(x), bs = b.In(lse), bt = b.InI32(targets), bd = b.In(dloss);
      const int bo = b.Out("dlogits", std::vector<float>(n * v, 9.0f), expected, tol);
      RequireNoFailures(b.Run(SoftmaxXentBackwardTable(), [&](SoftmaxXentBackwardFn* fn, Stream st, const auto& a) {
        fn(ArgAs<float>(a, bx), v, ArgAs<float>(a, bs), ArgAs<int32_t>(a, bt), ArgAs<float>(a, bd),
           ArgAs<float>(a, bo), n, v, Accumulate::kNo, st);
      }));
    }
  }
}

TEST_CASE("softmax_xent: reference backward matches finite differences of Σ dloss·loss") {
  const int64_t n = 4, v = 7, ld = 9;
  auto x = Random<double>(n * ld, 31, -3.0, 3.0);
  const std::vector<int32_t> targets = {2, -1, 0, 6};
  const auto dloss = Random<double>(n, 32, 0.5, 1.5);
  std::vector<double> loss(n), lse(n);
  auto objective = [&] {
    SoftmaxXentForwardRef(x.data(), ld, targets.data(), loss.data(), lse.data(), n, v);
    return testing::Dot(dloss, loss);
  };
  auto numeric = testing::FiniteDifference(x, objective);
  objective();  // lse at the unperturbed x
  std::vector<double> analytic(n * ld, 0.0);
  SoftmaxXentBackwardRef(x.data(), ld, lse.data(), targets.data(), dloss.data(), analytic.data(),
                         n, v, Accumulate::kNo);
  // Central differences with h = 1e-6 on an O(1) smooth function: truncation ~h² and
  // cancellation ~1e-16/h = 1e-10.
  auto r = AllClose(analytic, numeric, 1e-8, 1e-6);
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("softmax_xent over vocabulary blocks: combined lse and target terms equal the whole") {
  // The vocab-parallel decomposition: each block b of the columns gives lse_b and, where
  // the target is in b, loss_b = lse_b - x[t]; lse = logsumexp_b(lse_b) and
  // loss = lse - x[t]. The backward of each block from the combined lse is the matching
  // columns of the whole backward.
  const int64_t n = 23, v = 48, blocks = 3, w = v / blocks;
  const auto x = Cast<double>(Logits(n, v, v, 91, -4.0, 4.0));
  const auto targets = Targets(n, v, 92, 0);  // rows 3, 10, ... are past v: no term at all
  const auto dloss = Cast<double>(Random<float>(n, 93, -2.0, 2.0));
  std::vector<double> loss(n), lse(n), dx(n * v);
  SoftmaxXentForwardRef(x.data(), v, targets.data(), loss.data(), lse.data(), n, v);
  SoftmaxXentBackwardRef(x.data(), v, lse.data(), targets.data(), dloss.data(), dx.data(), n, v,
                         Accumulate::kNo);
  std::vector<std::vector<double>> block_lse(blocks, std::vector<double>(n));
  std::vector<double> target_term(n, 0.0);
  std::vector<std::vector<int32_t>> local(blocks, std::vector<int32_t>(n));
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<double> block_loss(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = targets[i] - b * w;
      local[b][i] = static_cast<int32_t>(t >= 0 && t < w ? t : w);
    }
    SoftmaxXentForwardRef(x.data() + b * w, v, local[b].data(), block_loss.data(),
                          block_lse[b].data(), n, w);
    for (int64_t i = 0; i < n; ++i) {
      if (local[b][i] < w) target_term[i] += block_lse[b][i] - block_loss[i];
      else REQUIRE(block_loss[i] == block_lse[b][i]);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    double m = -1e300, sum = 0;
    for (int64_t b = 0; b < blocks; ++b) m = std::max(m, block_lse[b][i]);
    for (int64_t b = 0; b < blocks; ++b) sum += std::exp(block_lse[b][i] - m);
    const double combined = m + std::log(sum);
    REQUIRE(combined == Approx(lse[i]).epsilon(1e-12));
    if (targets[i] < v) REQUIRE(combined - target_term[i] == Approx(loss[i]).epsilon(1e-12));
  }
  for (int64_t b = 0; b < blocks; ++b) {
    std::vector<double> block_dx(n * v, 0.0);
    SoftmaxXentBackwardRef(x.data() + b * w, v, lse.data(), local[b].data(), dloss.data(),
                           block_dx.data() + b * w, n, w, Accumulate::kNo);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = b * w; j < (b + 1) * w; ++j) {
        REQUIRE(block_dx[i * v + j] == Approx(dx[i * v + j]).margin(1e-12));
      }
    }
  }
}

}  // namespace
}  // namespace colossal::kernels
