// How a rank's part of a tensor is stored in a checkpoint. A segment that is a whole,
// unsplit tensor is stored whole under the tensor's name (so a single-rank checkpoint
// is a plain Hugging Face file); anything else — a ZeRO shard, a tensor-parallel part,
// or both — is stored as pieces of the *global* tensor (runtime/checkpoint/pieces.h):
// each block of rows × columns the rank holds as one 2-D piece "<name>@<offset>:<stride>"
// (a column-split matrix, a 2D/3D block, each of c_attn's q, k, v thirds), whole rows and
// stretches within a row as 1-D pieces "<name>@<offset>". The file holds O(parts) pieces,
// not O(rows). A checkpoint written under any (data, tensor, ZeRO) layout therefore reads
// back under any other by global offsets.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "graph/layout.h"
#include "runtime/checkpoint/pieces.h"

namespace colossal::worker {

struct StoredPiece {
  std::string name;            // "<name>" (whole), "<name>@<offset>" or "<name>@<offset>:<stride>"
  std::vector<int64_t> shape;  // the tensor's shape when whole, {count}, or {rows, width}
  // Where the piece's rows are in the segment (element offsets from its start), each
  // `width` elements long; a 1-D piece is one row.
  std::vector<int64_t> local_rows;
  int64_t width = 0;
  // Whether the rows lie back to back in the segment (the piece can be written in place).
  bool contiguous() const {
    for (size_t i = 1; i < local_rows.size(); ++i) {
      if (local_rows[i] != local_rows[0] + static_cast<int64_t>(i) * width) return false;
    }
    return true;
  }
  // The piece's data from `segment`: a pointer into it when contiguous, else the rows
  // gathered into a new buffer at the back of `gathered` (which must outlive the write).
  const float* Data(const float* segment, std::deque<std::vector<float>>& gathered) const;
};

// The pieces of elements [offset, offset + length) of a tensor named `name`, whose shape
// on this rank is `local_shape` and whose layout is `layout`.
std::vector<StoredPiece> StoredPieces(const std::string& name,
                                      const std::vector<int64_t>& local_shape,
                                      const graph::Layout& layout, int64_t offset,
                                      int64_t length);

// Reads that same segment of `name` from `reader` (whatever pieces wrote it) into
// `segment`, run by run of global elements.
absl::Status ReadSegment(const checkpoint::PieceReader& reader, const std::string& name,
                         const std::vector<int64_t>& local_shape, const graph::Layout& layout,
                         int64_t offset, int64_t length, float* segment);

}  // namespace colossal::worker
