// Tensor-parallel grids.
#include "parallel/tensor_grid.h"

#include "absl/strings/str_cat.h"

namespace colossal::parallel {
namespace {

// r with r^power == n, or 0.
int64_t ExactRoot(int64_t n, int power) {
  auto pow = [&](int64_t x) {
    int64_t p = 1;
    for (int i = 0; i < power; ++i) p *= x;
    return p;
  };
  int64_t r = 1;
  while (pow(r + 1) <= n) ++r;
  return n >= 1 && pow(r) == n ? r : 0;
}

}  // namespace

std::string TensorModeName(TensorMode mode) {
  switch (mode) {
    case TensorMode::k1d: return "1d";
    case TensorMode::k2d: return "2d";
    case TensorMode::k2p5d: return "2.5d";
    case TensorMode::k3d: return "3d";
  }
  return "?";
}

absl::StatusOr<TensorGrid> TensorGridOf(TensorMode mode, int64_t size, int64_t depth) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("must be >= 1, got ", size));
  switch (mode) {
    case TensorMode::k1d:
      return TensorGrid{};
    case TensorMode::k2d: {
      const int64_t q = ExactRoot(size, 2);
      if (q == 0) {
        return absl::InvalidArgumentError(absl::StrCat("mode 2d needs a square size (1, 4, 9, 16, ...), got ", size));
      }
      return TensorGrid{q, 1};
    }
    case TensorMode::k2p5d: {
      const int64_t q = depth >= 1 && size % depth == 0 ? ExactRoot(size / depth, 2) : 0;
      if (q == 0) {
        return absl::InvalidArgumentError(absl::StrCat("mode 2.5d needs size = depth x q^2 (depth ", depth, ": ",
                                                       depth, ", ", 4 * depth, ", ", 9 * depth, ", ...), got ",
                                                       size));
      }
      return TensorGrid{q, depth};
    }
    case TensorMode::k3d: {
      const int64_t q = ExactRoot(size, 3);
      if (q == 0) {
        return absl::InvalidArgumentError(absl::StrCat("mode 3d needs a cube size (1, 8, 27, 64, ...), got ", size));
      }
      return TensorGrid{q, q};
    }
  }
  return absl::InvalidArgumentError("unknown tensor mode");
}

}  // namespace colossal::parallel
