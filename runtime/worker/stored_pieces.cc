// Checkpoint pieces of a rank's segments.
#include "runtime/worker/stored_pieces.h"

#include <algorithm>
#include <map>
#include <utility>

#include "graph/ir.h"

namespace colossal::worker {

const float* StoredPiece::Data(const float* segment, std::deque<std::vector<float>>& gathered) const {
  if (contiguous()) return segment + (local_rows.empty() ? 0 : local_rows[0]);
  std::vector<float>& buf = gathered.emplace_back(local_rows.size() * width);
  for (size_t i = 0; i < local_rows.size(); ++i) {
    std::copy_n(segment + local_rows[i], width, buf.begin() + static_cast<int64_t>(i) * width);
  }
  return buf.data();
}

std::vector<StoredPiece> StoredPieces(const std::string& name,
                                      const std::vector<int64_t>& local_shape,
                                      const graph::Layout& layout, int64_t offset,
                                      int64_t length) {
  const int64_t numel = graph::NumElements(local_shape);
  if (!layout.split() && offset == 0 && length == numel) {
    return {{name, local_shape, {0}, length}};
  }
  // The global tensor as [rows, G]: blocks are rectangles of that view.
  const graph::Shape& global = layout.split() ? layout.global : local_shape;
  const int64_t G = global.empty() ? 1 : std::max<int64_t>(1, global.back());
  std::vector<StoredPiece> pieces;
  // Blocks still growing, by (column, width): the global offset of their first row, the
  // next row they would take, and their rows' places in the segment.
  struct Block {
    int64_t start, next_row;
    std::vector<int64_t> rows;
  };
  std::map<std::pair<int64_t, int64_t>, Block> open;
  auto close = [&](const std::pair<int64_t, int64_t>& key, Block& b) {
    const int64_t width = key.second;
    if (b.rows.size() == 1) {
      pieces.push_back({checkpoint::PieceName(name, b.start), {width}, std::move(b.rows), width});
    } else {
      const int64_t rows = static_cast<int64_t>(b.rows.size());
      pieces.push_back({checkpoint::BlockPieceName(name, b.start, G), {rows, width}, std::move(b.rows), width});
    }
  };
  // `width` elements within one global row, at global offset g and segment offset l.
  auto within_row = [&](int64_t g, int64_t l, int64_t width) {
    const int64_t row = g / G;
    const std::pair<int64_t, int64_t> key{g % G, width};
    auto it = open.find(key);
    if (it != open.end() && it->second.next_row == row) {
      it->second.rows.push_back(l);
      ++it->second.next_row;
      return;
    }
    if (it != open.end()) {
      close(key, it->second);
      open.erase(it);
    }
    open[key] = Block{g, row + 1, {l}};
  };
  for (const graph::ElementRun& r : graph::GlobalRuns(local_shape, layout, offset, length)) {
    const int64_t g = r.global, l = r.local - offset, n = r.count;
    if (n < G && g / G == (g + n - 1) / G) {
      within_row(g, l, n);  // part of one row: may grow a block with the rows below
    } else {
      pieces.push_back({checkpoint::PieceName(name, g), {n}, {l}, n});  // consecutive in both orders
    }
  }
  for (auto& [key, b] : open) close(key, b);
  return pieces;
}

absl::Status ReadSegment(const checkpoint::PieceReader& reader, const std::string& name,
                         const std::vector<int64_t>& local_shape, const graph::Layout& layout,
                         int64_t offset, int64_t length, float* segment) {
  for (const graph::ElementRun& r : graph::GlobalRuns(local_shape, layout, offset, length)) {
    absl::Status s = reader.ReadF32(name, r.global, r.count, segment + (r.local - offset));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace colossal::worker
