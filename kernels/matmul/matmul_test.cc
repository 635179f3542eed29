// Matmul: every twin (the harness; the CPU one is oneDNN) against the double reference
// with the header's tolerances over every transpose combination, padded leading
// dimensions (left exactly untouched), bias, accumulate, alpha, odd and zero sizes; the
// CPU twin from inside an OpenMP parallel region; BiasGrad on every twin; the
// gradient formulas dA = dC·Bᵀ, dB = Aᵀ·dC (through MatmulRef) against finite
// differences.
#include <omp.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "kernels/convert/convert.h"
#include "kernels/matmul/matmul.h"
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

// One problem, stored with the given leading-dimension padding; owns its buffers.
struct Problem {
  MatmulArgs args;
  std::vector<float> a, b, c, bias;

  Problem(Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, int64_t pad, bool with_bias,
          Accumulate acc, float alpha, uint64_t seed) {
    args.trans_a = ta;
    args.trans_b = tb;
    args.m = m;
    args.n = n;
    args.k = k;
    args.lda = (ta == Trans::kNo ? k : m) + pad;
    args.ldb = (tb == Trans::kNo ? n : k) + pad;
    args.ldc = n + pad;
    const int64_t a_rows = ta == Trans::kNo ? m : k;
    const int64_t b_rows = tb == Trans::kNo ? k : n;
    a = Random<float>(a_rows * args.lda, seed);
    b = Random<float>(b_rows * args.ldb, seed + 1);
    c = Random<float>(m * args.ldc, seed + 2);
    if (with_bias) bias = Random<float>(n, seed + 3);
    args.a = a.data();
    args.b = b.data();
    args.c = c.data();
    args.bias = with_bias ? bias.data() : nullptr;
    args.alpha = alpha;
    args.accumulate = acc;
  }
  void Rebind() {
    args.a = a.data();
    args.b = b.data();
    args.c = c.data();
    args.bias = bias.empty() ? nullptr : bias.data();
  }
};

// Runs every twin (the harness) and the double reference on the same problem and
// compares the whole C buffer, padding included: padding must be left untouched, exactly,
// on every twin. `initial` replaces C's starting contents in the twins (stale NaN).
void CheckAgainstRef(const Problem& p, Tolerance tol, const std::vector<float>* initial = nullptr) {
  const std::vector<double> a = AsDouble(p.a), b = AsDouble(p.b), bias = AsDouble(p.bias);
  std::vector<double> c = AsDouble(p.c);
  MatmulArgsT<double> ref;
  ref.trans_a = p.args.trans_a, ref.trans_b = p.args.trans_b;
  ref.m = p.args.m, ref.n = p.args.n, ref.k = p.args.k;
  ref.a = a.data(), ref.lda = p.args.lda, ref.b = b.data(), ref.ldb = p.args.ldb;
  ref.c = c.data(), ref.ldc = p.args.ldc;
  ref.bias = p.bias.empty() ? nullptr : bias.data();
  ref.alpha = p.args.alpha, ref.accumulate = p.args.accumulate;
  MatmulRef(ref);

  TwinCase tc("matmul m=" + std::to_string(p.args.m) + " n=" + std::to_string(p.args.n) +
              " k=" + std::to_string(p.args.k));
  const int ia = tc.In(p.a), ib = tc.In(p.b), ibias = p.bias.empty() ? -1 : tc.In(p.bias);
  const int ic = tc.Out("c", initial != nullptr ? *initial : p.c, c, tol);
  RequireNoFailures(tc.Run(MatmulTable(), [&](MatmulFn* fn, Stream st, const auto& x) {
    MatmulArgs args = p.args;
    args.a = ArgAs<float>(x, ia), args.b = ArgAs<float>(x, ib), args.c = ArgAs<float>(x, ic);
    args.bias = ibias < 0 ? nullptr : ArgAs<float>(x, ibias);
    fn(args, st);
  }));
  REQUIRE(tc.ran().size() >= 2);
  for (Backend backend : tc.ran()) {
    CAPTURE(std::string(BackendName(backend)));
    const std::vector<float>& got = tc.Got(backend, ic);
    for (int64_t i = 0; i < p.args.m; ++i) {
      for (int64_t j = p.args.n; j < p.args.ldc; ++j) {
        REQUIRE(got[i * p.args.ldc + j] == p.c[i * p.args.ldc + j]);
      }
    }
  }
}
void CheckAgainstRef(const Problem& p) { CheckAgainstRef(p, MatmulTolerance(p.args.k, p.args.alpha)); }

TEST_CASE("matmul: every twin matches the reference: transposes, padding, bias, accumulate, alpha") {
  uint64_t seed = 100;
  for (Trans ta : {Trans::kNo, Trans::kYes}) {
    for (Trans tb : {Trans::kNo, Trans::kYes}) {
      for (int64_t pad : {0, 5}) {
        for (bool with_bias : {false, true}) {
          for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
            for (float alpha : {1.0f, -0.37f, 2.5f}) {
              CAPTURE(ta == Trans::kYes, tb == Trans::kYes, pad, with_bias,
                      acc == Accumulate::kYes, alpha);
              Problem p(ta, tb, 17, 33, 65, pad, with_bias, acc, alpha, seed += 10);
              CheckAgainstRef(p);
            }
          }
        }
      }
    }
  }
}

// The mixed-precision GEMM: A and B rounded to bf16 / fp16, every twin against the
// double GEMM of the widened 16-bit values (so the contract is the fp32 GEMM's rounding
// alone), every transpose, padding, bias, accumulate and alpha, and the 16-bit inputs
// far from the fp32 ones (the rounding is really applied: the fp32 GEMM of the original
// values lies outside the tolerance).
TEST_CASE("matmul_low: every twin matches the reference over bf16 and fp16 inputs") {
  uint64_t seed = 9000;
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (Trans ta : {Trans::kNo, Trans::kYes}) {
      for (Trans tb : {Trans::kNo, Trans::kYes}) {
        for (int cfg = 0; cfg < 4; ++cfg) {
          const bool with_bias = cfg & 1;
          const Accumulate acc = cfg & 2 ? Accumulate::kYes : Accumulate::kNo;
          const float alpha = cfg == 3 ? -0.5f : 1.0f;
          const int64_t m = 19 + cfg, n = 37, k = cfg == 2 ? 0 : 129;
          CAPTURE(std::string(DTypeName(dtype)), ta == Trans::kYes, tb == Trans::kYes, cfg);
          Problem p(ta, tb, m, n, k, /*pad=*/cfg, with_bias, acc, alpha, seed += 10);
          std::vector<uint16_t> a16(p.a.size()), b16(p.b.size());
          CastTo16Ref(dtype, p.a.data(), a16.data(), static_cast<int64_t>(a16.size()));
          CastTo16Ref(dtype, p.b.data(), b16.data(), static_cast<int64_t>(b16.size()));
          std::vector<float> a_wide(a16.size()), b_wide(b16.size());
          Cast16ToF32Ref(dtype, a16.data(), a_wide.data(), static_cast<int64_t>(a16.size()));
          Cast16ToF32Ref(dtype, b16.data(), b_wide.data(), static_cast<int64_t>(b16.size()));
          const std::vector<double> a = AsDouble(a_wide), b = AsDouble(b_wide), bias = AsDouble(p.bias);
          std::vector<double> c = AsDouble(p.c);
          MatmulArgsT<double> ref;
          ref.trans_a = ta, ref.trans_b = tb, ref.m = m, ref.n = n, ref.k = k;
          ref.a = a.data(), ref.lda = p.args.lda, ref.b = b.data(), ref.ldb = p.args.ldb;
          ref.c = c.data(), ref.ldc = p.args.ldc, ref.bias = p.bias.empty() ? nullptr : bias.data();
          ref.alpha = alpha, ref.accumulate = acc;
          MatmulRef(ref);

          TwinCase tc("matmul_low " + std::string(DTypeName(dtype)));
          const int ia = tc.InU16(a16), ib = tc.InU16(b16), ibias = p.bias.empty() ? -1 : tc.In(p.bias);
          const int ic = tc.Out("c", p.c, c, MatmulTolerance(k, alpha));
          RequireNoFailures(tc.Run(
              MatmulLowTable(),
              [&](MatmulLowFn* fn, Stream st, const auto& x) {
                MatmulLowArgs args;
                args.trans_a = ta, args.trans_b = tb, args.m = m, args.n = n, args.k = k;
                args.a = ArgAs<uint16_t>(x, ia), args.lda = p.args.lda;
                args.b = ArgAs<uint16_t>(x, ib), args.ldb = p.args.ldb;
                args.c = ArgAs<float>(x, ic), args.ldc = p.args.ldc;
                args.bias = ibias < 0 ? nullptr : ArgAs<float>(x, ibias);
                args.alpha = alpha, args.accumulate = acc;
                fn(args, st);
              },
              dtype));
          REQUIRE(tc.ran().size() >= 2);
          if (k > 0 && dtype == DType::kBF16) {
            // The fp32 product of the unrounded inputs differs beyond the tolerance somewhere.
            Problem exact = p;
            exact.Rebind();
            Matmul(exact.args);
            const testing::CloseResult r = AllClose(exact.c, c, MatmulTolerance(k, alpha).atol, MatmulTolerance(k, alpha).rtol);
            CHECK(!r.ok);
          }
        }
      }
    }
  }
}

TEST_CASE("matmul: every twin matches the reference at odd sizes") {
  const std::vector<int64_t> sizes = {1, 3, 17, 65, 257};
  uint64_t seed = 5000;
  for (int64_t m : sizes) {
    for (int64_t n : sizes) {
      for (int64_t k : sizes) {
        // Every transpose pair over the size grid would repeat the case above; rotate.
        const Trans ta = (m + k) % 2 ? Trans::kYes : Trans::kNo;
        const Trans tb = (n + k + m) % 4 < 2 ? Trans::kYes : Trans::kNo;
        CAPTURE(m, n, k, ta == Trans::kYes, tb == Trans::kYes);
        Problem p(ta, tb, m, n, k, /*pad=*/3, /*with_bias=*/(m + n) % 2 == 0,
                  (m + n + k) % 2 ? Accumulate::kYes : Accumulate::kNo, 1.0f, seed += 10);
        CheckAgainstRef(p);
      }
    }
  }
}

TEST_CASE("matmul: every twin at a GPT-sized reduction (k = 768, 3072)") {
  for (int64_t k : {768, 3072}) {
    CAPTURE(k);
    Problem p(Trans::kNo, Trans::kYes, 64, 96, k, 0, true, Accumulate::kNo, 1.0f, 9000 + k);
    CheckAgainstRef(p);
    Problem q(Trans::kYes, Trans::kNo, 96, 64, k, 0, false, Accumulate::kYes, 1.0f, 9100 + k);
    CheckAgainstRef(q);
  }
}

TEST_CASE("matmul overwrite ignores stale NaN in C") {
  for (bool with_bias : {false, true}) {
    Problem p(Trans::kNo, Trans::kNo, 9, 11, 13, 0, with_bias, Accumulate::kNo, 1.0f, 77);
    const std::vector<float> nan(p.c.size(), std::numeric_limits<float>::quiet_NaN());
    CheckAgainstRef(p, MatmulTolerance(13, 1.0f), &nan);
  }
}

TEST_CASE("matmul with zero dimensions") {
  // k == 0: C = bias (overwrite) or C += bias (accumulate); exact.
  for (bool with_bias : {false, true}) {
    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(with_bias, acc == Accumulate::kYes);
      Problem p(Trans::kNo, Trans::kYes, 4, 6, 0, 2, with_bias, acc, 1.0f, 300);
      CheckAgainstRef(p, Tolerance{0.0, 1.2e-7});  // at most one fp32 rounding of c + bias
      if (!with_bias && acc == Accumulate::kNo) {  // and the reference writes zeros
        Problem ref = p;
        ref.Rebind();
        MatmulRef(ref.args);
        for (int64_t i = 0; i < 4; ++i)
          for (int64_t j = 0; j < 6; ++j) REQUIRE(ref.c[i * p.args.ldc + j] == 0.0f);
      }
    }
  }
  // m == 0 or n == 0: nothing is written.
  for (auto [m, n] : {std::pair<int64_t, int64_t>{0, 5}, {5, 0}, {0, 0}}) {
    CAPTURE(m, n);
    Problem p(Trans::kYes, Trans::kNo, m, n, 7, 1, true, Accumulate::kNo, 1.0f, 400);
    CheckAgainstRef(p, Tolerance{0.0, 0.0});  // C unchanged on every twin
    Problem ref = p;
    ref.Rebind();
    MatmulRef(ref.args);
    REQUIRE(ref.c == p.c);
  }
}

TEST_CASE("matmul cpu inside an OpenMP parallel region runs on the calling thread") {
  omp_set_num_threads(2);
  constexpr int kProblems = 8;
  std::vector<Problem> problems, refs;
  for (int i = 0; i < kProblems; ++i) {
    const Trans ta = i % 2 ? Trans::kYes : Trans::kNo;
    const Trans tb = i % 4 < 2 ? Trans::kYes : Trans::kNo;
    problems.emplace_back(ta, tb, 64 + i, 48 + 3 * i, 96 + 5 * i, i % 3, i % 2 == 0,
                          i % 3 == 0 ? Accumulate::kYes : Accumulate::kNo, 1.0f, 600 + 10 * i);
  }
  refs = problems;
  for (int i = 0; i < kProblems; ++i) {
    problems[i].Rebind();
    refs[i].Rebind();
    MatmulRef(refs[i].args);
  }
  int team_size = 0;
#pragma omp parallel for schedule(static, 1)
  for (int i = 0; i < kProblems; ++i) {
    if (i == 0) team_size = omp_get_num_threads();
    Matmul(problems[i].args);
  }
  omp_set_num_threads(1);
  REQUIRE(team_size == 2);
  for (int i = 0; i < kProblems; ++i) {
    CAPTURE(i);
    const Tolerance tol = MatmulTolerance(problems[i].args.k, 1.0f);
    auto r = AllClose(problems[i].c, refs[i].c, tol.atol, tol.rtol);
    INFO(r.message);
    REQUIRE(r.ok);
  }
}

// Ranks on threads (the training tests) and OpenMP-parallel callers run one cached oneDNN
// primitive from several threads at once: each must get its own scratchpad and stream,
// or the threads' partial sums mix (matmul_low_cpu.cc). Each thread's results must equal
// the same problems run on one thread, bit for bit.
TEST_CASE("matmul_low cpu: the same problems from four threads at once equal one thread's, bit for bit") {
  struct Shape {
    Trans ta, tb;
    int64_t m, n, k;
    Accumulate acc;
  };
  // A GPT layer's GEMMs at d_model 32, 64 tokens: forward, input gradient, weight gradient.
  const std::vector<Shape> shapes = {{Trans::kNo, Trans::kNo, 64, 96, 32, Accumulate::kNo},
                                     {Trans::kNo, Trans::kYes, 64, 32, 96, Accumulate::kNo},
                                     {Trans::kYes, Trans::kNo, 32, 96, 64, Accumulate::kYes},
                                     {Trans::kNo, Trans::kNo, 64, 128, 256, Accumulate::kNo}};
  constexpr int kThreads = 4, kRounds = 30;
  struct Work {
    std::vector<uint16_t> a, b;
    std::vector<float> c;
  };
  // work[t][s]: thread t's inputs for shape s; expected from one thread, in order.
  std::vector<std::vector<Work>> work(kThreads), expected(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (size_t s = 0; s < shapes.size(); ++s) {
      const Shape& sh = shapes[s];
      Work w;
      const std::vector<float> a = Random<float>(sh.m * sh.k, 100 * t + s), b = Random<float>(sh.k * sh.n, 100 * t + s + 50);
      w.a.resize(a.size()), w.b.resize(b.size());
      CastTo16Ref(DType::kBF16, a.data(), w.a.data(), static_cast<int64_t>(a.size()));
      CastTo16Ref(DType::kBF16, b.data(), w.b.data(), static_cast<int64_t>(b.size()));
      w.c = Random<float>(sh.m * sh.n, 100 * t + s + 70);
      work[t].push_back(w);
    }
  }
  auto run = [&](Work& w, const Shape& sh) {
    MatmulLowArgs args;
    args.trans_a = sh.ta, args.trans_b = sh.tb, args.m = sh.m, args.n = sh.n, args.k = sh.k;
    args.a = w.a.data(), args.lda = sh.ta == Trans::kYes ? sh.m : sh.k;
    args.b = w.b.data(), args.ldb = sh.tb == Trans::kYes ? sh.k : sh.n;
    args.c = w.c.data(), args.ldc = sh.n, args.accumulate = sh.acc;
    MatmulLowTable().Get(Backend::kCpu, DType::kBF16)(args, Stream{Backend::kCpu, nullptr});
  };
  const auto initial = work;
  for (int t = 0; t < kThreads; ++t) {
    expected[t] = initial[t];
    for (int r = 0; r < kRounds; ++r) {
      for (size_t s = 0; s < shapes.size(); ++s) run(expected[t][s], shapes[s]);
    }
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        for (size_t s = 0; s < shapes.size(); ++s) run(work[t][s], shapes[s]);
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) {
    for (size_t s = 0; s < shapes.size(); ++s) {
      CAPTURE(t, s);
      CHECK(std::memcmp(work[t][s].c.data(), expected[t][s].c.data(), work[t][s].c.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("matmul: every twin with two threads matches the reference") {
  omp_set_num_threads(2);
  Problem p(Trans::kNo, Trans::kYes, 256, 300, 200, 0, true, Accumulate::kNo, 1.0f, 700);
  CheckAgainstRef(p);
  omp_set_num_threads(1);
}

TEST_CASE("bias grad: every twin matches the reference; cpu bit-identical to it on 1 and 2 threads") {
  for (auto [m, n, pad] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 0},
                           {3, 17, 2},
                           {257, 65, 3},
                           {2048, 384, 0},
                           {256, 2304, 7},
                           {0, 9, 0}}) {
    for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
      CAPTURE(m, n, pad, acc == Accumulate::kYes);
      const int64_t ld = n + pad;
      auto dy = Random<float>(m * ld, 800 + m + n);
      auto db_ref = Random<float>(n, 900 + n);
      {
        std::vector<double> expected = AsDouble(db_ref);
        BiasGradRef(AsDouble(dy).data(), m, n, ld, expected.data(), acc);
        TwinCase tc("bias_grad m=" + std::to_string(m) + " n=" + std::to_string(n));
        const int id = tc.In(dy);
        const int io = tc.Out("db", db_ref, expected, BiasGradTolerance());
        RequireNoFailures(tc.Run(BiasGradTable(), [&](BiasGradFn* fn, Stream st, const auto& x) {
          fn(ArgAs<float>(x, id), m, n, ld, ArgAs<float>(x, io), acc, st);
        }));
      }
      BiasGradRef(dy.data(), m, n, ld, db_ref.data(), acc);
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        auto db = Random<float>(n, 900 + n);
        BiasGrad(dy.data(), m, n, ld, db.data(), acc);
        // Both sum in double in row order and round once: bit-identical. The contract
        // promises one fp32 rounding; we assert exactness because the order is shared.
        REQUIRE(db == db_ref);
      }
      omp_set_num_threads(1);
      // And the reference against an independent fp64 sum with the ordinary rounding
      // bound of one fp32 rounding (rtol 2^-24 ~ 6e-8, allow 1.2e-7).
      std::vector<double> expected(n);
      for (int64_t j = 0; j < n; ++j) {
        double s = acc == Accumulate::kYes ? Random<float>(n, 900 + n)[j] : 0.0;
        for (int64_t i = 0; i < m; ++i) s += dy[i * ld + j];
        expected[j] = s;
      }
      REQUIRE(AllClose(db_ref, expected, BiasGradTolerance().atol, BiasGradTolerance().rtol).ok);
    }
  }
}

// L = <G, alpha·op(A)op(B) + bias>; the graph's backward computes dA and dB with
// MatmulRef/Matmul calls whose Trans flags depend on how A and B are stored:
//   op(A) = A  (A [m,k]): dA = alpha·G·op(B)ᵀ      op(A) = Aᵀ (A [k,m]): dA = alpha·op(B)·Gᵀ
//   op(B) = B  (B [k,n]): dB = alpha·op(A)ᵀ·G      op(B) = Bᵀ (B [n,k]): dB = alpha·Gᵀ·op(A)
// dbias = BiasGrad(G). All checked against central differences in double.
TEST_CASE("matmul gradient formulas through the reference match finite differences") {
  const int64_t m = 3, n = 4, k = 5;
  const float alpha = 0.75f;
  for (Trans ta : {Trans::kNo, Trans::kYes}) {
    for (Trans tb : {Trans::kNo, Trans::kYes}) {
      CAPTURE(ta == Trans::kYes, tb == Trans::kYes);
      auto a = Random<double>(m * k, 1000);
      auto b = Random<double>(k * n, 1001);
      auto bias = Random<double>(n, 1002);
      auto g = Random<double>(m * n, 1003);
      std::vector<double> c(m * n);
      MatmulArgsT<double> fwd;
      fwd.trans_a = ta;
      fwd.trans_b = tb;
      fwd.m = m;
      fwd.n = n;
      fwd.k = k;
      fwd.a = a.data();
      fwd.lda = ta == Trans::kNo ? k : m;
      fwd.b = b.data();
      fwd.ldb = tb == Trans::kNo ? n : k;
      fwd.c = c.data();
      fwd.ldc = n;
      fwd.bias = bias.data();
      fwd.alpha = alpha;
      auto loss = [&] {
        MatmulRef(fwd);
        return testing::Dot(g, c);
      };

      // dA, stored like A.
      std::vector<double> da(m * k);
      MatmulArgsT<double> ga;
      ga.alpha = alpha;
      ga.c = da.data();
      if (ta == Trans::kNo) {  // dA [m,k] = G [m,n] · op(B)ᵀ
        ga.m = m, ga.n = k, ga.k = n, ga.ldc = k;
        ga.a = g.data(), ga.lda = n, ga.trans_a = Trans::kNo;
        // op(B)ᵀ: B stored [k,n] → Bᵀ (kYes); B stored [n,k] → as stored (kNo).
        ga.b = b.data(), ga.ldb = fwd.ldb;
        ga.trans_b = tb == Trans::kNo ? Trans::kYes : Trans::kNo;
      } else {  // dA [k,m] = op(B) [k,n] · Gᵀ [n,m]
        ga.m = k, ga.n = m, ga.k = n, ga.ldc = m;
        ga.a = b.data(), ga.lda = fwd.ldb, ga.trans_a = tb;
        ga.b = g.data(), ga.ldb = n, ga.trans_b = Trans::kYes;
      }
      MatmulRef(ga);

      // dB, stored like B.
      std::vector<double> dbm(k * n);
      MatmulArgsT<double> gb;
      gb.alpha = alpha;
      gb.c = dbm.data();
      if (tb == Trans::kNo) {  // dB [k,n] = op(A)ᵀ [k,m] · G [m,n]
        gb.m = k, gb.n = n, gb.k = m, gb.ldc = n;
        gb.a = a.data(), gb.lda = fwd.lda;
        gb.trans_a = ta == Trans::kNo ? Trans::kYes : Trans::kNo;
        gb.b = g.data(), gb.ldb = n, gb.trans_b = Trans::kNo;
      } else {  // dB [n,k] = Gᵀ [n,m] · op(A) [m,k]
        gb.m = n, gb.n = k, gb.k = m, gb.ldc = k;
        gb.a = g.data(), gb.lda = n, gb.trans_a = Trans::kYes;
        gb.b = a.data(), gb.ldb = fwd.lda, gb.trans_b = ta;
      }
      MatmulRef(gb);

      std::vector<double> dbias(n);
      BiasGradRef(g.data(), m, n, n, dbias.data(), Accumulate::kNo);

      // L is linear in each input: central differences are exact up to rounding of
      // L (~1e-16 · |L| / h with h = 1e-6): 1e-8 is a loose but meaningful bound.
      auto r_a = AllClose(da, testing::FiniteDifference(a, loss), 1e-8, 1e-8);
      INFO("dA " << r_a.message);
      REQUIRE(r_a.ok);
      auto r_b = AllClose(dbm, testing::FiniteDifference(b, loss), 1e-8, 1e-8);
      INFO("dB " << r_b.message);
      REQUIRE(r_b.ok);
      auto r_bias = AllClose(dbias, testing::FiniteDifference(bias, loss), 1e-8, 1e-8);
      INFO("dbias " << r_bias.message);
      REQUIRE(r_bias.ok);
    }
  }
}

TEST_CASE("matmul reference matches a hand-computed product") {
  // [[1,2],[3,4]] · [[5,6],[7,8]] = [[19,22],[43,50]]; alpha 2, bias [1, -1].
  std::vector<double> a = {1, 2, 3, 4}, b = {5, 6, 7, 8}, bias = {1, -1}, c(4);
  MatmulArgsT<double> p;
  p.m = p.n = p.k = 2;
  p.a = a.data(), p.lda = 2, p.b = b.data(), p.ldb = 2, p.c = c.data(), p.ldc = 2;
  p.bias = bias.data();
  p.alpha = 2.0f;
  MatmulRef(p);
  REQUIRE(c == std::vector<double>{39, 43, 87, 99});
  p.trans_a = Trans::kYes;  // Aᵀ = [[1,3],[2,4]]: Aᵀ·B = [[26,30],[38,44]]
  p.accumulate = Accumulate::kYes;
  MatmulRef(p);
  REQUIRE(c == std::vector<double>{39 + 53, 43 + 59, 87 + 77, 99 + 87});
}

}  // namespace
}  // namespace colossal::kernels
