// Helpers for kernel tests: seeded random data, the atol + rtol*|ref| comparison of
// STYLE.md (reporting the worst element), and central finite differences over the
// double-precision reference.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/common/tolerance.h"

namespace colossal::kernels::testing {

// n values uniform in [lo, hi), reproducible from `seed`.
template <typename T = float>
std::vector<T> Random(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

template <typename To, typename From>
std::vector<To> Cast(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// The outcome of comparing `actual` against `expected` elementwise with
// |a - e| <= atol + rtol * |e|. `ok` is false on any violation or non-finite value;
// `message` names the worst element (by excess over its bound).
struct CloseResult {
  bool ok = true;
  double max_abs_err = 0;
  // The largest error over its bound atol + rtol·|expected| (<= 1: within tolerance).
  double worst_ratio = 0;
  std::string message;
};

template <typename A, typename E>
CloseResult AllClose(const A* actual, const E* expected, int64_t n, double atol, double rtol) {
  CloseResult r;
  double worst_excess = -1;
  int64_t worst = -1;
  for (int64_t i = 0; i < n; ++i) {
    double a = static_cast<double>(actual[i]);
    double e = static_cast<double>(expected[i]);
    // Equal values (the same infinity included) are exact; otherwise a non-finite side is
    // an infinite error (a NaN never equals anything).
    double err = a == e ? 0.0 : std::fabs(a - e);
    double bound = atol + rtol * std::fabs(e);
    if (a != e && (!std::isfinite(a) || !std::isfinite(e))) {
      err = INFINITY;
    }
    r.max_abs_err = std::max(r.max_abs_err, err);
    // A non-finite mismatch fails whatever the bound (an infinite expected value makes
    // the relative bound infinite too).
    const bool bad = std::isinf(err) || err > bound;
    const double ratio = std::isinf(err) ? INFINITY : bound > 0 ? err / bound : (err > 0 ? INFINITY : 0.0);
    r.worst_ratio = std::max(r.worst_ratio, ratio);
    const double excess = std::isinf(err) ? INFINITY : err - bound;
    if (bad && (worst < 0 || excess > worst_excess)) {
      worst_excess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    r.ok = false;
    std::ostringstream os;
    os << "element " << worst << " of " << n << ": actual " << static_cast<double>(actual[worst])
       << " expected " << static_cast<double>(expected[worst]) << " (atol " << atol << ", rtol "
       << rtol << ")";
    r.message = os.str();
  }
  return r;
}

template <typename A, typename E>
CloseResult AllClose(const std::vector<A>& actual, const std::vector<E>& expected, double atol,
                     double rtol) {
  if (actual.size() != expected.size()) {
    return {false, INFINITY, INFINITY, "size mismatch"};
  }
  return AllClose(actual.data(), expected.data(), static_cast<int64_t>(actual.size()), atol, rtol);
}

// Central finite differences of a scalar function of x (in double):
//   grad[i] = (f(x + h e_i) - f(x - h e_i)) / 2h.
// `f` may read x freely; x is restored after each probe.
inline std::vector<double> FiniteDifference(std::vector<double>& x,
                                            const std::function<double()>& f,
                                            double h = 1e-6) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double saved = x[i];
    x[i] = saved + h;
    double fp = f();
    x[i] = saved - h;
    double fm = f();
    x[i] = saved;
    grad[i] = (fp - fm) / (2 * h);
  }
  return grad;
}

// Dot product in double, for building the scalar L = <g, f(x)> of a backward check.
template <typename T>
double Dot(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Tolerance of an fp32 sum of n terms (kernels/common/tolerance.h).
using kernels::Fp32ReductionRtol;

}  // namespace colossal::kernels::testing
