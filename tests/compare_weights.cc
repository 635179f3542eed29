// compare_weights [--bounds run|tensor_parallel] A.safetensors B.safetensors: exits 0 when
// both files hold the same tensors with the same shapes and every tensor agrees within
// the bounds (tests/weight_bounds.h; default `run`, the multi-process data-parallel
// bounds). Prints the failing tensor or element otherwise, and the worst figures.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/checkpoint/safetensors.h"
#include "tests/weight_bounds.h"

int main(int argc, char** argv) {
  using colossal::testing::Bounds;
  Bounds bounds = Bounds::kRun;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--bounds" && i + 1 < argc) {
      const std::string v = argv[++i];
      if (v == "run") {
        bounds = Bounds::kRun;
      } else if (v == "tensor_parallel") {
        bounds = Bounds::kTensorParallel;
      } else {
        std::fprintf(stderr, "compare_weights: --bounds is run or tensor_parallel, got '%s'\n", v.c_str());
        return 2;
      }
    } else {
      files.push_back(arg);
    }
  }
  if (files.size() != 2) {
    std::fprintf(stderr, "usage: compare_weights [--bounds run|tensor_parallel] A.safetensors B.safetensors\n");
    return 2;
  }
  auto a = colossal::checkpoint::SafetensorsFile::Open(files[0]);
  auto b = colossal::checkpoint::SafetensorsFile::Open(files[1]);
  if (!a.ok() || !b.ok()) {
    std::printf("cannot open: %s %s\n", std::string(a.status().message()).c_str(),
                std::string(b.status().message()).c_str());
    return 1;
  }
  if (a->tensors().size() != b->tensors().size()) {
    std::printf("%zu tensors vs %zu\n", a->tensors().size(), b->tensors().size());
    return 1;
  }
  double worst_of_rms = 0, worst_norm = 0;
  for (const auto& t : a->tensors()) {
    const auto* u = b->Find(t.name);
    if (u == nullptr || u->shape != t.shape) {
      std::printf("tensor %s missing or misshapen in B\n", t.name.c_str());
      return 1;
    }
    std::vector<float> x(t.num_elements()), y(t.num_elements());
    if (!a->CopyF32(t.name, t.shape, x).ok() || !b->CopyF32(t.name, t.shape, y).ok()) return 1;
    const colossal::testing::TensorComparison c = colossal::testing::CompareTensor(t.name, x, y, bounds);
    if (!c.ok) {
      std::printf("%s\n", c.failure.c_str());
      return 1;
    }
    worst_of_rms = std::max(worst_of_rms, c.worst_of_rms);
    if (c.norm_checked) worst_norm = std::max(worst_norm, c.norm_relative);
  }
  std::printf("worst element %.2g of its tensor's rms, worst tensor %.2g in norm\n", worst_of_rms,
              worst_norm);
  return 0;
}
