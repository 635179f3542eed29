// Test helpers for split graphs (tensor and sequence parallelism) against the whole
// model: every parameter set from one per-name stream of its global tensor, and each
// rank's parameter gradients checked element by element, through its layout, against
// the whole model's.
#pragma once

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "graph/ir.h"
#include "graph/layout.h"
#include "memory/param_store.h"

namespace colossal::graph::testing {

// The global tensor of parameter `name`: values from a per-name stream.
inline std::vector<float> GlobalValues(const std::string& name, int64_t n) {
  std::mt19937 rng(static_cast<uint32_t>(std::hash<std::string>()(name)));
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Every parameter of `g` in `params`: this rank's elements of its GlobalValues.
inline void SetGlobalParams(const Graph& g, memory::ParamStore& params) {
  for (size_t i = 0; i < g.params().size(); ++i) {
    const Value& v = g.value(g.params()[i]);
    const Shape global = v.layout.split() ? v.layout.global : v.shape;
    const std::vector<float> values = GlobalValues(v.name, NumElements(global));
    float* data = params.data(static_cast<int>(i));
    for (const ElementRun& r : GlobalRuns(v.shape, v.layout, 0, v.numel())) {
      std::copy(values.begin() + r.global, values.begin() + r.global + r.count, data + r.local);
    }
  }
}

// Internal naming the first element of a parameter gradient of `g` (in `params`, times
// `scale`) that is not the whole model's (`whole`, by name) within 2e-6 + 1e-4 relative.
inline absl::Status SameGradsAsWhole(const Graph& g, const memory::ParamStore& params,
                                     const memory::ParamStore& whole, float scale = 1.0f) {
  for (size_t i = 0; i < g.params().size(); ++i) {
    const Value& v = g.value(g.params()[i]);
    const float* ref = whole.grad(whole.Find(v.name));
    const float* got = params.grad(static_cast<int>(i));
    for (const ElementRun& r : GlobalRuns(v.shape, v.layout, 0, v.numel())) {
      for (int64_t k = 0; k < r.count; ++k) {
        const float a = got[r.local + k] * scale, e = ref[r.global + k];
        if (std::fabs(a - e) > 2e-6f + 1e-4f * std::fabs(e)) {
          return absl::InternalError(absl::StrCat("gradient of ", v.name, " element ", r.global + k, ": ", a,
                                                  " but the whole model's is ", e));
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace colossal::graph::testing
