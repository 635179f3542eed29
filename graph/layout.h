// Layout: where a value's elements live when a tensor is split over the ranks of a mesh
// axis. A value's `shape` is always what this rank holds (the local shape); its layout
// says which global tensor that is a part of: the global shape and, per split dimension,
// the number of parts, this rank's part and the axis they run over.
//
// A dimension may be split in `interleave` equal blocks first, each block split into
// `parts` (the packed q|k|v columns of GPT's c_attn: interleave 3, so a rank holds the
// same heads of q, of k and of v). Local index x of such a dimension (local size l,
// global size g, block size l/k) is global index (x / (l/k))·(g/k) + part·(l/k) + x % (l/k).
//
// A value with no splits is whole on every rank that holds it (replicated).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::graph {

using Shape = std::vector<int64_t>;

struct DimSplit {
  int dim = 0;
  int64_t parts = 1;       // ranks along the axis
  int64_t part = 0;        // this rank's part, in [0, parts)
  int64_t interleave = 1;  // blocks of the dimension, each split into `parts`
  std::string axis;        // the mesh axis the parts run over ("tensor", ...)
  // A second axis splitting each of `axis`'s parts further (3d: a matrix's rows in the
  // hidden blocks of the "col" axis, each block split over "depth"): `parts` counts both,
  // the major degree times minor_parts, and part = major index · minor_parts + minor
  // index. Empty: one axis.
  std::string minor_axis;
  int64_t minor_parts = 1;
  bool over(const std::string& a) const { return axis == a || (!minor_axis.empty() && minor_axis == a); }
};

struct Layout {
  Shape global;                  // the whole tensor's shape (may be empty when not split)
  std::vector<DimSplit> splits;  // at most one per dimension
  // The axes along which a parameter is whole but each rank computes its gradient from
  // its own part of the tokens (Megatron sequence parallelism: layer norms, position
  // embedding, the biases added in the sequence-split regions; 2d: the vectors down the
  // grid column; 2.5d: everything across the depth): the trainer sums the gradient over
  // each before it is used. Empty: the gradient is complete on every rank.
  std::vector<std::string> partial_grad_axes;
  bool partial_over(const std::string& axis) const {
    for (const std::string& a : partial_grad_axes) {
      if (a == axis) return true;
    }
    return false;
  }
  bool split() const { return !splits.empty(); }
  // Whether some dimension is split over mesh axis `axis` (as the major or minor axis).
  bool split_over(const std::string& axis) const {
    for (const DimSplit& s : splits) {
      if (s.over(axis)) return true;
    }
    return false;
  }
};

// The layout of a part of `global` split as `splits` says. InvalidArgument (naming the
// dimension, its size and the divisor) when a dimension does not divide, a split names
// a dimension twice or one outside the shape, a part is out of range, or minor_parts
// does not divide parts.
absl::StatusOr<Layout> MakeLayout(const Shape& global, std::vector<DimSplit> splits);
// This rank's shape under `layout` (the global shape when it is not split).
Shape LocalShape(const Layout& layout);

// A stretch of consecutive local elements that are consecutive global elements too.
struct ElementRun {
  int64_t local = 0;   // first element in the local (row-major) order
  int64_t global = 0;  // first element in the global (row-major) order
  int64_t count = 0;
};

// The global runs of local elements [offset, offset + count) of a value whose local
// shape is `local` (LocalShape(layout), or any shape when the layout is not split), in
// local order, adjacent runs merged. One run when the layout is not split.
std::vector<ElementRun> GlobalRuns(const Shape& local, const Layout& layout, int64_t offset,
                                   int64_t count);

// "whole", or "[64, 192] split dim 1 in 2 (x3) over tensor (part 1)".
std::string LayoutString(const Layout& layout);

}  // namespace colossal::graph
