// compare_weights A.safetensors B.safetensors: exits 0 when both files hold the same
// tensors with the same shapes and they agree to 1e-5:
//   per tensor   ‖a − b‖₂ ≤ 1e-5 · ‖a‖₂ (relative, in norm), and
//   per element  |a − b| ≤ 1e-4·|a| + 1e-5 (no localized gross error).
// Why not 1e-5 per element: runs that differ only in summation order (ranks, ZeRO
// stage, accumulation) give gradient elements that nearly cancel a relative error far
// above fp32's, and AdamW's normalized step m̂/(√v̂+ε) turns that into weight
// differences of ~1e-6 on a few elements of 1e-2 (seen: 3 of 34,000, 1.1e-4 relative).
// The attention key bias (c_attn.bias[C, 2C)) is left out of both: its exact gradient is
// zero, so its updates are rounding noise (see tests/data_parallel_test.cc); it may
// differ by up to 0.1. Prints the failing tensor or element otherwise.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: compare_weights A.safetensors B.safetensors\n");
    return 2;
  }
  auto a = colossal::checkpoint::SafetensorsFile::Open(argv[1]);
  auto b = colossal::checkpoint::SafetensorsFile::Open(argv[2]);
  if (!a.ok() || !b.ok()) {
    std::printf("cannot open: %s %s\n", std::string(a.status().message()).c_str(),
                std::string(b.status().message()).c_str());
    return 1;
  }
  if (a->tensors().size() != b->tensors().size()) {
    std::printf("%zu tensors vs %zu\n", a->tensors().size(), b->tensors().size());
    return 1;
  }
  for (const auto& t : a->tensors()) {
    const auto* u = b->Find(t.name);
    if (u == nullptr || u->shape != t.shape) {
      std::printf("tensor %s missing or misshapen in B\n", t.name.c_str());
      return 1;
    }
    std::vector<float> x(t.num_elements()), y(t.num_elements());
    if (!a->CopyF32(t.name, t.shape, x).ok() || !b->CopyF32(t.name, t.shape, y).ok()) return 1;
    const bool key_bias = t.name.size() >= 16 && t.name.compare(t.name.size() - 16, 16, "attn.c_attn.bias") == 0;
    const int64_t c = key_bias ? t.shape[0] / 3 : 0;
    double diff2 = 0, norm2 = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const bool noise = key_bias && static_cast<int64_t>(i) >= c && static_cast<int64_t>(i) < 2 * c;
      const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
      const double bound = noise ? 0.1 : 1e-4 * std::fabs(x[i]) + 1e-5;
      if (!(d <= bound)) {
        std::printf("%s[%zu]: %.9g vs %.9g\n", t.name.c_str(), i, x[i], y[i]);
        return 1;
      }
      if (noise) continue;
      diff2 += d * d;
      norm2 += static_cast<double>(x[i]) * x[i];
    }
    if (!(std::sqrt(diff2) <= 1e-5 * std::sqrt(norm2))) {
      std::printf("%s: relative difference in norm %.3g\n", t.name.c_str(),
                  std::sqrt(diff2 / std::max(norm2, 1e-300)));
      return 1;
    }
  }
  return 0;
}
