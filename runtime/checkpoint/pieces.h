// Tensors stored whole or in pieces. A sharded (ZeRO) checkpoint stores each rank's part
// of a tensor as a 1-D piece of the tensor's flattened elements, named
// "<name>@<offset>" (offset in elements), in that rank's file; an unsharded checkpoint
// stores "<name>" whole. PieceReader reads any element range of a tensor from whatever
// mix of pieces and whole tensors a set of files holds, so a checkpoint written by one
// data-parallel degree / ZeRO stage loads into another (re-sharding on load).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/checkpoint/safetensors.h"

namespace colossal::checkpoint {

// "<name>@<offset>".
std::string PieceName(std::string_view name, int64_t offset);

class PieceReader {
 public:
  // Opens every file (errors name the file). Piece names that do not parse, pieces that
  // are not 1-D F32, and overlapping pieces of one tensor are errors.
  static absl::StatusOr<PieceReader> Open(const std::vector<std::string>& files);

  // Copies elements [offset, offset + count) of the flattened F32 tensor `name`. Errors
  // name the tensor and the first element no file covers.
  absl::Status ReadF32(std::string_view name, int64_t offset, int64_t count, float* out) const;

  // Elements of `name` covered by the files (whole tensors count fully).
  int64_t CoveredElements(std::string_view name) const;
  // Shape of `name` when some file holds it whole.
  const std::vector<int64_t>* WholeShape(std::string_view name) const;
  // Every tensor name (pieces folded into their base name), sorted.
  std::vector<std::string> Names() const;

 private:
  struct Piece {
    int file;
    const TensorInfo* info;
    int64_t offset;  // first element
    int64_t count;
  };
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::vector<Piece>, std::less<>> pieces_;  // sorted by offset
  std::map<std::string, std::vector<int64_t>, std::less<>> whole_shapes_;
};

}  // namespace colossal::checkpoint
