// Elementwise: every twin (the harness) against the double reference at odd sizes on 1
// and 2 threads
// (the parallel path starts at 2^15 elements), Add with out aliasing a and/or b, both
// AddInto modes, and the reference against hand-computed values.
#include <omp.h>

#include <catch2/catch.hpp>

#include <bit>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/elementwise/elementwise.h"
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

// The contract (elementwise.h): one fp32 rounding for Add, AddInto(kYes) and Scale.
const double kRtol = ElementwiseRoundingTolerance().rtol;

const std::vector<int64_t> kSizes = {0, 1, 7, 15, 16, 17, 33, 1000, (1 << 15) - 1, 1 << 15,
                                     100003};

TEST_CASE("elementwise: every twin matches the reference (the harness)") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : kSizes) {
      CAPTURE(threads, n);
      const std::string size = " n=" + std::to_string(n);
      const auto a = Random<float>(n, 1 + n, -10.0, 10.0), b = Random<float>(n, 2 + n);
      {
        std::vector<double> ref(n);
        AddRef(AsDouble(a).data(), AsDouble(b).data(), ref.data(), n);
        TwinCase c("add" + size);
        const int ia = c.In(a), ib = c.In(b);
        const int io = c.Out("out", std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()), ref,
                             ElementwiseRoundingTolerance());
        RequireNoFailures(c.Run(AddTable(), [&](AddFn* fn, Stream st, const auto& x) {
          fn(ArgAs<float>(x, ia), ArgAs<float>(x, ib), ArgAs<float>(x, io), n, st);
        }));
        REQUIRE(c.ran().size() >= 2);
      }
      for (Accumulate acc : {Accumulate::kNo, Accumulate::kYes}) {
        CAPTURE(static_cast<int>(acc));
        const auto dst0 = Random<float>(n, 4 + n, -5.0, 5.0);
        std::vector<double> ref = AsDouble(dst0);
        AddIntoRef(AsDouble(a).data(), ref.data(), n, acc);
        TwinCase c("add_into" + size);
        const int is = c.In(a);
        const int id = c.Out("dst", dst0, ref,
                             acc == Accumulate::kNo ? ElementwiseExactTolerance() : ElementwiseRoundingTolerance());
        RequireNoFailures(c.Run(AddIntoTable(), [&](AddIntoFn* fn, Stream st, const auto& x) {
          fn(ArgAs<float>(x, is), ArgAs<float>(x, id), n, acc, st);
        }));
      }
      for (float alpha : {0.0f, 1.0f, -1.5f, 3.0e-3f}) {
        CAPTURE(alpha);
        const auto x0 = Random<float>(n, 5 + n, -100.0, 100.0);
        std::vector<double> ref = AsDouble(x0);
        ScaleRef(ref.data(), n, alpha);
        TwinCase c("scale" + size);
        const int ix = c.Out("x", x0, ref, ElementwiseRoundingTolerance());
        RequireNoFailures(
            c.Run(ScaleTable(), [&](ScaleFn* fn, Stream st, const auto& x) { fn(ArgAs<float>(x, ix), n, alpha, st); }));
      }
      for (float value : {0.0f, 1.25f, std::numeric_limits<float>::infinity()}) {
        CAPTURE(value);
        std::vector<double> ref(n);
        FillRef(ref.data(), n, value);
        TwinCase c("fill" + size);
        const int ix = c.Out("x", Random<float>(n, 6 + n), ref, ElementwiseExactTolerance());
        RequireNoFailures(
            c.Run(FillTable(), [&](FillFn* fn, Stream st, const auto& x) { fn(ArgAs<float>(x, ix), n, value, st); }));
      }
    }
  }
  omp_set_num_threads(1);
}


TEST_CASE("add cpu matches the reference, including out aliasing a or b") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : kSizes) {
      CAPTURE(threads, n);
      const auto a = Random<float>(n, 1 + n, -10.0, 10.0);
      const auto b = Random<float>(n, 2 + n);
      std::vector<float> ref(n), out(n, std::numeric_limits<float>::quiet_NaN());
      AddRef(a.data(), b.data(), ref.data(), n);
      Add(a.data(), b.data(), out.data(), n);
      auto r = AllClose(out, ref, 0.0, kRtol);
      INFO(r.message);
      REQUIRE(r.ok);

      auto out_is_a = a;
      Add(out_is_a.data(), b.data(), out_is_a.data(), n);
      REQUIRE(AllClose(out_is_a, ref, 0.0, kRtol).ok);

      auto out_is_b = b;
      Add(a.data(), out_is_b.data(), out_is_b.data(), n);
      REQUIRE(AllClose(out_is_b, ref, 0.0, kRtol).ok);

      // out == a == b: x + x = 2x exactly.
      auto all_same = a;
      Add(all_same.data(), all_same.data(), all_same.data(), n);
      for (int64_t i = 0; i < n; ++i) REQUIRE(all_same[i] == 2.0f * a[i]);
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("add_into cpu: copy is exact, accumulate is one rounding") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : kSizes) {
      CAPTURE(threads, n);
      const auto src = Random<float>(n, 3 + n);
      const auto dst0 = Random<float>(n, 4 + n, -5.0, 5.0);

      auto dst = dst0;
      AddInto(src.data(), dst.data(), n, Accumulate::kNo);
      REQUIRE(dst == src);

      auto ref = dst0;
      AddIntoRef(src.data(), ref.data(), n, Accumulate::kYes);
      dst = dst0;
      AddInto(src.data(), dst.data(), n, Accumulate::kYes);
      auto r = AllClose(dst, ref, 0.0, kRtol);
      INFO(r.message);
      REQUIRE(r.ok);

      // Copy onto itself leaves the values alone.
      dst = dst0;
      AddInto(dst.data(), dst.data(), n, Accumulate::kNo);
      REQUIRE(dst == dst0);
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("scale and fill cpu match the reference") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (int64_t n : kSizes) {
      for (float alpha : {0.0f, 1.0f, -1.5f, 3.0e-3f}) {
        CAPTURE(threads, n, alpha);
        const auto x0 = Random<float>(n, 5 + n, -100.0, 100.0);
        auto ref = x0;
        ScaleRef(ref.data(), n, alpha);
        auto x = x0;
        Scale(x.data(), n, alpha);
        auto r = AllClose(x, ref, 0.0, kRtol);
        INFO(r.message);
        REQUIRE(r.ok);
      }
      for (float value : {0.0f, -0.0f, 1.25f, std::numeric_limits<float>::infinity()}) {
        CAPTURE(threads, n, value);
        auto x = Random<float>(n, 6 + n);
        Fill(x.data(), n, value);
        for (int64_t i = 0; i < n; ++i) {
          REQUIRE(std::bit_cast<uint32_t>(x[i]) == std::bit_cast<uint32_t>(value));
        }
      }
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("elementwise writes nothing outside [0, n)") {
  omp_set_num_threads(2);
  const int64_t n = (1 << 15) + 37;
  const float guard = -7.0f;
  std::vector<float> buf(n + 2, guard), a = Random<float>(n, 9), b = Random<float>(n, 10);
  float* x = buf.data() + 1;
  Add(a.data(), b.data(), x, n);
  AddInto(a.data(), x, n, Accumulate::kYes);
  AddInto(a.data(), x, n, Accumulate::kNo);
  Scale(x, n, 2.0f);
  Fill(x, n, 0.0f);
  Fill(x, n, 3.0f);
  omp_set_num_threads(1);
  REQUIRE(buf.front() == guard);
  REQUIRE(buf.back() == guard);
}

TEST_CASE("fill above the streaming-store threshold (2^22 floats)") {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    const int64_t n = (int64_t{1} << 22) + 13;
    std::vector<float> buf(n + 2, -7.0f);
    for (float value : {0.0f, -0.5f}) {
      CAPTURE(threads, value);
      Fill(buf.data() + 1, n, value);  // misaligned start: exercises the scalar head
      REQUIRE(buf.front() == -7.0f);
      REQUIRE(buf.back() == -7.0f);
      REQUIRE(std::count(buf.begin() + 1, buf.end() - 1, value) == n);
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("elementwise reference matches hand-computed values") {
  std::vector<double> a = {1.5, -2.0, 0.25}, b = {0.5, 2.0, -1.0}, out(3);
  AddRef(a.data(), b.data(), out.data(), 3);
  REQUIRE(out == std::vector<double>{2.0, 0.0, -0.75});
  AddIntoRef(a.data(), out.data(), 3, Accumulate::kYes);
  REQUIRE(out == std::vector<double>{3.5, -2.0, -0.5});
  AddIntoRef(b.data(), out.data(), 3, Accumulate::kNo);
  REQUIRE(out == b);
  ScaleRef(out.data(), 3, -2.0f);
  REQUIRE(out == std::vector<double>{-1.0, -4.0, 2.0});
  FillRef(out.data(), 3, 0.125f);
  REQUIRE(out == std::vector<double>{0.125, 0.125, 0.125});
}

}  // namespace
}  // namespace colossal::kernels
