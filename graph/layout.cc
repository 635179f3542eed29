// Local shapes and the local-to-global element mapping of split tensors.
#include "graph/layout.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossal::graph {
namespace {

std::string Dims(const Shape& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

const DimSplit* SplitOf(const Layout& layout, int dim) {
  for (const DimSplit& s : layout.splits) {
    if (s.dim == dim) return &s;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<Layout> MakeLayout(const Shape& global, std::vector<DimSplit> splits) {
  Layout layout;
  layout.global = global;
  std::vector<bool> seen(global.size(), false);
  for (const DimSplit& s : splits) {
    if (s.dim < 0 || s.dim >= static_cast<int>(global.size()) || seen[s.dim]) {
      return absl::InvalidArgumentError(absl::StrCat("layout of ", Dims(global), ": dimension ",
                                                     s.dim, " is not a dimension or is split twice"));
    }
    seen[s.dim] = true;
    if (s.parts < 1 || s.part < 0 || s.part >= s.parts || s.interleave < 1) {
      return absl::InvalidArgumentError(absl::StrCat("layout of ", Dims(global), ": part ", s.part,
                                                     " of ", s.parts, " (interleave ", s.interleave,
                                                     ") is out of range"));
    }
    if (s.minor_parts < 1 || s.parts % s.minor_parts != 0 ||
        (s.minor_axis.empty() && s.minor_parts != 1)) {
      return absl::InvalidArgumentError(absl::StrCat("layout of ", Dims(global), ": ", s.parts,
                                                     " parts over ", s.axis, " do not split into ",
                                                     s.minor_parts, " over '", s.minor_axis, "'"));
    }
    if (global[s.dim] % (s.parts * s.interleave) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layout of ", Dims(global), ": dimension ", s.dim, " (", global[s.dim],
          ") is not divisible by ", s.parts * s.interleave,
          s.interleave > 1 ? absl::StrCat(" (", s.interleave, " blocks of ", s.parts, " parts)")
                           : absl::StrCat(" parts over ", s.axis,
                                          s.minor_axis.empty() ? "" : " x " + s.minor_axis)));
    }
  }
  splits.erase(std::remove_if(splits.begin(), splits.end(),
                              [](const DimSplit& s) { return s.parts == 1; }),
               splits.end());
  layout.splits = std::move(splits);
  return layout;
}

Shape LocalShape(const Layout& layout) {
  Shape local = layout.global;
  for (const DimSplit& s : layout.splits) local[s.dim] /= s.parts;
  return local;
}

std::vector<ElementRun> GlobalRuns(const Shape& local, const Layout& layout, int64_t offset,
                                   int64_t count) {
  if (!layout.split() || local.empty()) return {{offset, offset, count}};
  const int n = static_cast<int>(local.size());
  std::vector<int64_t> global_stride(n, 1);
  for (int d = n - 2; d >= 0; --d) global_stride[d] = global_stride[d + 1] * layout.global[d + 1];
  auto global_index = [&](int d, int64_t x) -> int64_t {
    const DimSplit* s = SplitOf(layout, d);
    if (s == nullptr) return x;
    const int64_t block = local[d] / s->interleave;
    return (x / block) * (layout.global[d] / s->interleave) + s->part * block + x % block;
  };
  // Within a local row, elements are globally consecutive up to the end of the row or of
  // an interleave block of the last dimension.
  const DimSplit* last = SplitOf(layout, n - 1);
  const int64_t stretch = last ? local[n - 1] / last->interleave : local[n - 1];
  std::vector<ElementRun> runs;
  std::vector<int64_t> idx(n);
  const int64_t end = offset + count;
  for (int64_t i = offset; i < end;) {
    int64_t rem = i;
    for (int d = n - 1; d >= 0; --d) {
      idx[d] = rem % local[d];
      rem /= local[d];
    }
    const int64_t len = std::min((idx[n - 1] / stretch + 1) * stretch - idx[n - 1], end - i);
    int64_t g = 0;
    for (int d = 0; d < n; ++d) g += global_index(d, idx[d]) * global_stride[d];
    if (!runs.empty() && runs.back().local + runs.back().count == i &&
        runs.back().global + runs.back().count == g) {
      runs.back().count += len;
    } else {
      runs.push_back({i, g, len});
    }
    i += len;
  }
  return runs;
}

std::string LayoutString(const Layout& layout) {
  if (!layout.split()) return "whole";
  std::vector<std::string> parts;
  for (const DimSplit& s : layout.splits) {
    parts.push_back(absl::StrCat("dim ", s.dim, " in ", s.parts,
                                 s.interleave > 1 ? absl::StrCat(" (x", s.interleave, ")") : "",
                                 " over ", s.axis,
                                 s.minor_axis.empty() ? "" : absl::StrCat(" x ", s.minor_axis),
                                 " (part ", s.part, ")"));
  }
  return absl::StrCat(Dims(layout.global), " split ", absl::StrJoin(parts, ", "));
}

}  // namespace colossal::graph
