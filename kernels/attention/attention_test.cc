// Attention: every twin (the harness) against the double reference with the header's
// tolerances over several shapes (T = 1, T not a multiple of the row block, H = 1,
// D = 8/16/64, B = 1..3) in both accumulate modes with one and two threads; probabilities exactly zero above the diagonal and rows summing to
// one; the reference backward against finite differences for every qkv element; decode
// on every twin against the last row of a full forward over the same sequence.
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twin_case.h"

namespace colossal::kernels {
namespace {

using testing::AllClose;
using testing::ArgAs;
using testing::AsDouble;
using testing::Fp32ReductionRtol;
using testing::Random;
using testing::RequireNoFailures;
using testing::TwinCase;

struct ThreadScope {
  explicit ThreadScope(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadScope() { omp_set_num_threads(saved); }
  int saved;
};

void Require(const testing::CloseResult& r, const char* what) {
  INFO(what << ": " << r.message);
  REQUIRE(r.ok);
}

int64_t QkvSize(const AttentionShape& s) { return s.batch * s.seq * 3 * s.channels(); }
int64_t OutSize(const AttentionShape& s) { return s.batch * s.seq * s.channels(); }
int64_t ProbsSize(const AttentionShape& s) { return s.batch * s.heads * s.seq * s.seq; }

// Every probability row: exactly zero above the diagonal, sums to one within fp32
// rounding of its t+1 terms.
void RequireCausalRows(const std::vector<float>& probs, const AttentionShape& s) {
  for (int64_t row = 0; row < s.batch * s.heads * s.seq; ++row) {
    const int64_t t = row % s.seq;
    const float* p = probs.data() + row * s.seq;
    double sum = 0;
    for (int64_t j = 0; j <= t; ++j) {
      REQUIRE(p[j] >= 0.0f);
      sum += p[j];
    }
    for (int64_t j = t + 1; j < s.seq; ++j) REQUIRE(p[j] == 0.0f);
    REQUIRE(std::fabs(sum - 1.0) <= Fp32ReductionRtol(t + 1) * 4);
  }
}

// Every twin (the harness) against the double reference.
void CompareTwinsWithRef(const AttentionShape& s, uint64_t seed) {
  CAPTURE(s.batch, s.seq, s.heads, s.head_dim, omp_get_max_threads());
  const std::string name = " B=" + std::to_string(s.batch) + " T=" + std::to_string(s.seq) +
                           " H=" + std::to_string(s.heads) + " D=" + std::to_string(s.head_dim);
  // q, k uniform in [-1.5, 1.5): scores q·k/sqrt(D) have standard deviation 0.75 for
  // every D, so rows range from nearly flat to clearly peaked.
  const auto qkv = Random<float>(QkvSize(s), seed, -1.5, 1.5);
  const auto dout = Random<float>(OutSize(s), seed + 1);
  const auto qkv_d = AsDouble(qkv);

  std::vector<double> out_ref(OutSize(s)), probs_ref(ProbsSize(s));
  AttentionForwardRef(qkv_d.data(), out_ref.data(), probs_ref.data(), s);
  {
    TwinCase f("attention_forward" + name);
    const int iq = f.In(qkv);
    const int io = f.Out("out", std::vector<float>(OutSize(s), std::nanf("")), out_ref, AttentionForwardTolerance(s));
    const int ip = f.Out("probs", std::vector<float>(ProbsSize(s), std::nanf("")), probs_ref,
                         AttentionForwardTolerance(s));
    RequireNoFailures(f.Run(AttentionForwardTable(), [&](AttentionForwardFn* fn, Stream st, const auto& x) {
      fn(ArgAs<float>(x, iq), ArgAs<float>(x, io), ArgAs<float>(x, ip), s, st);
    }));
    REQUIRE(f.ran().size() >= 2);
    for (Backend b : f.ran()) {
      CAPTURE(std::string(BackendName(b)));
      RequireCausalRows(f.Got(b, ip), s);
    }
  }

  // Every twin reads the same probabilities (the reference's, rounded to fp32).
  const auto probs = testing::Cast<float>(probs_ref);
  const auto probs_d = AsDouble(probs);
  for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
    CAPTURE(static_cast<int>(acc));
    const auto prior = Random<float>(QkvSize(s), seed + 2);
    std::vector<double> dqkv_ref = AsDouble(prior);
    AttentionBackwardRef(AsDouble(dout).data(), qkv_d.data(), probs_d.data(), dqkv_ref.data(), s, acc);
    // Overwrite must not read its destination: start the twin from NaN.
    const auto initial =
        acc == Accumulate::kYes ? prior : std::vector<float>(QkvSize(s), std::numeric_limits<float>::quiet_NaN());
    TwinCase b("attention_backward" + name);
    const int id = b.In(dout), iq = b.In(qkv), ip = b.In(probs);
    const int io = b.Out("dqkv", initial, dqkv_ref, AttentionBackwardTolerance(s));
    RequireNoFailures(b.Run(AttentionBackwardTable(), [&](AttentionBackwardFn* fn, Stream st, const auto& x) {
      fn(ArgAs<float>(x, id), ArgAs<float>(x, iq), ArgAs<float>(x, ip), ArgAs<float>(x, io), s, acc, st);
    }));
  }
}

const std::vector<AttentionShape> kShapes = {
    {1, 1, 1, 8},  {2, 1, 3, 16}, {1, 5, 2, 8},   {2, 67, 3, 16}, {3, 64, 2, 64},
    {1, 67, 1, 64}, {2, 130, 2, 16}, {1, 200, 1, 8}, {3, 33, 4, 16}, {1, 129, 2, 64}};

TEST_CASE("attention: every twin matches the reference (the harness), one thread") {
  ThreadScope threads(1);
  uint64_t seed = 100;
  for (const auto& s : kShapes) CompareTwinsWithRef(s, seed += 10);
}

TEST_CASE("attention: every twin matches the reference (the harness), two threads") {
  ThreadScope threads(2);
  uint64_t seed = 700;
  for (const auto& s : kShapes) CompareTwinsWithRef(s, seed += 10);
}

TEST_CASE("attention: reference forward matches a hand-computed case") {
  // B = H = 1, T = 2, D = 1: q = k = v = x_t. Row 0 attends to itself; row 1 mixes
  // positions 0 and 1 with weights softmax(x1·x0, x1·x1) (scale 1/sqrt(1) = 1).
  const double x0 = 0.5, x1 = -1.25;
  std::vector<double> qkv = {x0, x0, x0, x1, x1, x1};
  std::vector<double> out(2), probs(4);
  AttentionForwardRef(qkv.data(), out.data(), probs.data(), AttentionShape{1, 2, 1, 1});
  const double e0 = std::exp(x1 * x0), e1 = std::exp(x1 * x1);
  const double p0 = e0 / (e0 + e1), p1 = e1 / (e0 + e1);
  REQUIRE(AllClose(probs, std::vector<double>{1, 0, p0, p1}, 1e-15, 1e-14).ok);
  REQUIRE(AllClose(out, std::vector<double>{x0, p0 * x0 + p1 * x1}, 1e-15, 1e-14).ok);
}

TEST_CASE("attention: reference accumulate adds exactly the overwrite result") {
  const AttentionShape s{2, 4, 2, 3};
  auto qkv = Random<double>(QkvSize(s), 51), dout = Random<double>(OutSize(s), 52);
  std::vector<double> out(OutSize(s)), probs(ProbsSize(s)), d0(QkvSize(s));
  AttentionForwardRef(qkv.data(), out.data(), probs.data(), s);
  AttentionBackwardRef(dout.data(), qkv.data(), probs.data(), d0.data(), s, Accumulate::kNo);
  auto d1 = Random<double>(QkvSize(s), 53);
  const auto init = d1;
  AttentionBackwardRef(dout.data(), qkv.data(), probs.data(), d1.data(), s, Accumulate::kYes);
  for (size_t i = 0; i < d1.size(); ++i) REQUIRE(std::fabs(d1[i] - (init[i] + d0[i])) < 1e-15);
}

TEST_CASE("attention: reference backward matches finite differences for every qkv element") {
  const AttentionShape s{2, 5, 2, 3};
  auto qkv = Random<double>(QkvSize(s), 61, -1.5, 1.5);
  auto g = Random<double>(OutSize(s), 62);  // L = <g, out>, so dout = g
  std::vector<double> out(OutSize(s)), probs(ProbsSize(s));
  auto loss = [&] {
    AttentionForwardRef(qkv.data(), out.data(), probs.data(), s);
    return testing::Dot(g, out);
  };
  auto numeric = testing::FiniteDifference(qkv, loss);
  loss();  // probabilities of the unperturbed qkv
  std::vector<double> analytic(QkvSize(s));
  AttentionBackwardRef(g.data(), qkv.data(), probs.data(), analytic.data(), s, Accumulate::kNo);
  // Central differences, h = 1e-6, O(1) values: truncation ~h^2, rounding ~1e-10.
  Require(AllClose(analytic, numeric, 1e-8, 1e-6), "dqkv");
  // q of position 0 attends only to itself: its gradient is exactly zero.
  for (int64_t d = 0; d < s.channels(); ++d) REQUIRE(analytic[d] == 0.0);
}

// Decode over a cache filled from one sequence equals the last row of the full forward.
void CheckDecode(int64_t batch, int64_t len, int64_t max_len, int64_t heads, int64_t head_dim,
                 uint64_t seed) {
  CAPTURE(batch, len, max_len, heads, head_dim, omp_get_max_threads());
  const AttentionShape s{batch, len, heads, head_dim};
  const int64_t C = s.channels();
  auto qkv = Random<double>(QkvSize(s), seed, -1.5, 1.5);
  std::vector<double> out(OutSize(s)), probs(ProbsSize(s));
  AttentionForwardRef(qkv.data(), out.data(), probs.data(), s);

  // Cache rows past len hold NaN: decode must not read them.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> q(batch * C), k_cache(batch * max_len * C, nan), v_cache(k_cache);
  std::vector<double> last(batch * C);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < len; ++t) {
      const double* row = qkv.data() + (b * len + t) * 3 * C;
      std::copy(row + C, row + 2 * C, k_cache.begin() + (b * max_len + t) * C);
      std::copy(row + 2 * C, row + 3 * C, v_cache.begin() + (b * max_len + t) * C);
    }
    const double* row = qkv.data() + (b * len + len - 1) * 3 * C;
    std::copy(row, row + C, q.begin() + b * C);
    std::copy(out.begin() + (b * len + len - 1) * C, out.begin() + (b * len + len) * C,
              last.begin() + b * C);
  }
  std::vector<double> dec(batch * C);
  AttentionDecodeRef(q.data(), k_cache.data(), v_cache.data(), dec.data(), batch, len, max_len,
                     heads, head_dim);
  Require(AllClose(dec, last, 1e-13, 1e-13), "decode ref vs forward ref");

  TwinCase c("attention_decode len=" + std::to_string(len));
  const int iq = c.In(testing::Cast<float>(q)), ik = c.In(testing::Cast<float>(k_cache)),
            iv = c.In(testing::Cast<float>(v_cache));
  // The twins take the new token's position p = len - 1 in their own memory.
  const int ip = c.InI32({static_cast<int32_t>(len - 1)});
  const int io = c.Out("out", std::vector<float>(batch * C, std::nanf("")), last, AttentionForwardTolerance(s));
  RequireNoFailures(c.Run(AttentionDecodeTable(), [&](AttentionDecodeFn* fn, Stream st, const auto& x) {
    fn(ArgAs<float>(x, iq), ArgAs<float>(x, ik), ArgAs<float>(x, iv), ArgAs<float>(x, io), batch,
       ArgAs<int32_t>(x, ip), max_len, heads, head_dim, st);
  }));
  REQUIRE(c.ran().size() >= 2);
}

TEST_CASE("attention: decode equals the last row of a full forward") {
  for (int threads : {1, 2}) {
    ThreadScope scope(threads);
    CheckDecode(1, 1, 4, 1, 8, 71);
    CheckDecode(2, 5, 5, 3, 16, 72);
    CheckDecode(3, 67, 100, 2, 64, 73);
    CheckDecode(1, 300, 512, 12, 64, 74);
  }
}

}  // namespace
}  // namespace colossal::kernels
