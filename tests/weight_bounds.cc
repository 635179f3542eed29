// The bounds of weight_bounds.h.
#include "tests/weight_bounds.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace colossal::testing {

TensorComparison CompareTensor(const std::string& name, const std::vector<float>& a,
                               const std::vector<float>& b, Bounds bounds) {
  TensorComparison c;
  if (a.size() != b.size()) {
    c.ok = false;
    c.failure = name + ": " + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + " elements";
    return c;
  }
  const bool key_bias =
      name.size() >= 16 && name.compare(name.size() - 16, 16, "attn.c_attn.bias") == 0;
  const size_t kc = key_bias ? a.size() / 3 : 0;
  double sum2 = 0;
  for (float w : a) sum2 += static_cast<double>(w) * w;
  const double rms = std::sqrt(sum2 / static_cast<double>(std::max<size_t>(a.size(), 1)));
  double diff2 = 0, norm2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool noise = key_bias && i >= kc && i < 2 * kc;
    const double d = std::fabs(static_cast<double>(a[i]) - b[i]);
    double bound = 0.1;
    if (!noise) {
      switch (bounds) {
        case Bounds::kTight: bound = 1e-5 * std::fabs(a[i]) + 1e-6; break;
        case Bounds::kRun: bound = 1e-4 * std::fabs(a[i]) + 1e-5; break;
        case Bounds::kTensorParallel: bound = 1e-2 * rms + 1e-6; break;
      }
    }
    if (!(d <= bound) && c.ok) {
      char buf[256];
      std::snprintf(buf, sizeof(buf), "%s[%zu]: %.9g vs %.9g (bound %.3g)", name.c_str(), i, a[i],
                    b[i], bound);
      c.ok = false;
      c.failure = buf;
    }
    if (noise) continue;
    if (rms > 0) c.worst_of_rms = std::max(c.worst_of_rms, d / rms);
    diff2 += d * d;
    norm2 += static_cast<double>(a[i]) * a[i];
  }
  c.norm_relative = std::sqrt(diff2 / std::max(norm2, 1e-300));
  c.norm_checked = bounds != Bounds::kTensorParallel || a.size() >= 1024;
  const double norm_bound = bounds == Bounds::kTensorParallel ? 2e-4 : 1e-5;
  if (c.norm_checked && !(std::sqrt(diff2) <= norm_bound * std::sqrt(norm2) + 1e-7) && c.ok) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%s: relative difference in norm %.3g (bound %.3g)",
                  name.c_str(), c.norm_relative, norm_bound);
    c.ok = false;
    c.failure = buf;
  }
  return c;
}

}  // namespace colossal::testing
