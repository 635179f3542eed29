// A kernel twin's accuracy contract against the double-precision reference:
// |twin − ref| <= atol + rtol·|ref| elementwise (STYLE.md). Each kernel header states its
// tolerances as functions returning this, with the reason beside them; the kernel
// harness (kernels/testing/twin_case.h) holds every registered twin to them.
#pragma once

#include <cmath>
#include <cstdint>

namespace colossal::kernels {

struct Tolerance {
  double atol = 0;
  double rtol = 0;
};

// An fp32 sum of n terms of magnitude ~1 against the exact value: blocked/pairwise fp32
// reductions stay within ~sqrt(n)·eps32 in practice; 4·sqrt(n)·eps32 relative, plus
// eps32 for the final rounding.
inline double Fp32ReductionRtol(int64_t n) {
  const double eps32 = 1.1920929e-7;
  return eps32 * (1.0 + 4.0 * std::sqrt(static_cast<double>(n)));
}

}  // namespace colossal::kernels
