// How a rank's part of a tensor is stored in a checkpoint. A segment that is a whole,
// unsplit tensor is stored whole under the tensor's name (so a single-rank checkpoint
// is a plain Hugging Face file); anything else — a ZeRO shard, a tensor-parallel part,
// or both — is stored as pieces "<name>@<offset>" of the *global* tensor's flattened
// elements (runtime/checkpoint/pieces.h), one per run of elements that are consecutive
// in both the rank's buffer and the global tensor. A checkpoint written under any
// (data, tensor, ZeRO) layout therefore reads back under any other by global offsets.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/layout.h"

namespace colossal::worker {

struct StoredPiece {
  std::string name;            // "<name>" (whole) or "<name>@<global offset>"
  std::vector<int64_t> shape;  // the tensor's shape when whole, else {count}
  int64_t local = 0;           // first element, relative to the segment's start
  int64_t global = 0;          // first element in the global tensor
  int64_t count = 0;
};

// The pieces of elements [offset, offset + length) of a tensor named `name`, whose shape
// on this rank is `local_shape` and whose layout is `layout`.
std::vector<StoredPiece> StoredPieces(const std::string& name,
                                      const std::vector<int64_t>& local_shape,
                                      const graph::Layout& layout, int64_t offset,
                                      int64_t length);

}  // namespace colossal::worker
