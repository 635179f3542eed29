// The tensor-parallel modes and the grid each lays its ranks on: the one place that says
// which sizes a mode accepts (job validation, the Plan and the GPT builder all ask here).
//   1d   any size P                      q = 1, depth = 1
//   2d   q×q (SUMMA)                     size = q²
//   2.5d depth×q×q (Tesseract)           size = depth·q²
//   3d   q×q×q                           size = q³, depth = q
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace colossal::parallel {

enum class TensorMode { k1d, k2d, k2p5d, k3d };
std::string TensorModeName(TensorMode mode);  // "1d", "2d", "2.5d", "3d"

struct TensorGrid {
  int64_t q = 1;
  int64_t depth = 1;
};

// The grid of `mode` over `size` ranks (`depth` is read by 2.5d only). InvalidArgument
// saying what the mode needs when the size does not fit, e.g. "mode 2d needs a square
// size (1, 4, 9, 16, ...), got 8"; the caller prefixes the key.
absl::StatusOr<TensorGrid> TensorGridOf(TensorMode mode, int64_t size, int64_t depth = 1);

}  // namespace colossal::parallel
