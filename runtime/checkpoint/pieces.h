// Tensors stored whole or in pieces. A rank's part of a tensor (a ZeRO shard, a
// tensor-parallel block, or both) is stored in that rank's file as pieces of the global
// tensor's flattened (row-major) elements:
//   "<name>@<offset>"           1-D [count]: elements offset .. offset+count-1
//   "<name>@<offset>:<stride>"  2-D [rows, width], a block: row i is elements
//                               offset + i·stride .. + width-1 (width <= stride)
// so a tensor-parallel block of a matrix is one piece, however many rows it has. A
// single-rank checkpoint stores "<name>" whole. PieceReader reads any element range of a tensor from whatever
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
// "<name>@<offset>:<stride>" (a 2-D block piece).
std::string BlockPieceName(std::string_view name, int64_t offset, int64_t stride);

class PieceReader {
 public:
  // Opens every file (errors name the file). Piece names that do not parse, pieces that
  // are not F32 of the rank their name says (1-D, or 2-D with width <= stride), and
  // overlapping pieces of one tensor are errors.
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
  // One run of consecutive global elements (a block piece is one per row).
  struct Piece {
    int file;
    const TensorInfo* info;
    int64_t offset;  // first global element
    int64_t count;
    int64_t src = 0;  // its first element within the stored tensor
  };
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::vector<Piece>, std::less<>> pieces_;  // sorted by offset
  std::map<std::string, std::vector<int64_t>, std::less<>> whole_shapes_;
};

}  // namespace colossal::checkpoint
