// Checkpoint pieces of a rank's segments.
#include "runtime/worker/stored_pieces.h"

#include "graph/ir.h"
#include "runtime/checkpoint/pieces.h"

namespace colossal::worker {

std::vector<StoredPiece> StoredPieces(const std::string& name,
                                      const std::vector<int64_t>& local_shape,
                                      const graph::Layout& layout, int64_t offset,
                                      int64_t length) {
  const int64_t numel = graph::NumElements(local_shape);
  if (!layout.split() && offset == 0 && length == numel) {
    return {{name, local_shape, 0, 0, length}};
  }
  std::vector<StoredPiece> pieces;
  for (const graph::ElementRun& r : graph::GlobalRuns(local_shape, layout, offset, length)) {
    pieces.push_back({checkpoint::PieceName(name, r.global), {r.count}, r.local - offset, r.global,
                      r.count});
  }
  return pieces;
}

}  // namespace colossal::worker
