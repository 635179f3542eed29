// Packing tensors into chunks, and the chunk size search.
#include "memory/chunk.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace colossal::memory {
namespace {

int64_t Aligned(int64_t n) { return (n + 15) / 16 * 16; }

}  // namespace

absl::StatusOr<ChunkLayout> ChunkLayout::Pack(const std::vector<int64_t>& numel, const std::vector<int>& order,
                                              int64_t chunk_numel) {
  if (chunk_numel <= 0 || chunk_numel % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("chunk size ", chunk_numel, " floats is not a positive multiple of 16"));
  }
  if (order.size() != numel.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the first-use order names ", order.size(), " parameters, the model has ", numel.size()));
  }
  ChunkLayout l;
  l.chunk_numel_ = chunk_numel;
  l.place_.assign(numel.size(), ChunkPlace{});
  int open = -1;  // the chunk being filled (next-fit: first use order is kept)
  for (int p : order) {
    if (p < 0 || p >= static_cast<int>(numel.size()) || l.place_[p].chunk >= 0) {
      return absl::InvalidArgumentError(absl::StrCat("the first-use order is not a permutation (parameter ", p, ")"));
    }
    const int64_t n = Aligned(numel[p]);
    l.numel_sum_ += numel[p];
    if (n > chunk_numel) {  // a chunk of its own
      l.params_.push_back({p});
      l.capacity_.push_back((n + chunk_numel - 1) / chunk_numel * chunk_numel);
      l.used_.push_back(n);
      l.place_[p] = {static_cast<int>(l.params_.size()) - 1, 0};
      open = -1;  // chunk order stays first-use order
      continue;
    }
    if (open < 0 || l.used_[open] + n > chunk_numel) {
      l.params_.push_back({});
      l.capacity_.push_back(chunk_numel);
      l.used_.push_back(0);
      open = static_cast<int>(l.params_.size()) - 1;
    }
    l.place_[p] = {open, l.used_[open]};
    l.params_[open].push_back(p);
    l.used_[open] += n;
  }
  return l;
}

int64_t ChunkLayout::total_capacity() const {
  int64_t t = 0;
  for (int64_t c : capacity_) t += c;
  return t;
}

int64_t ChunkLayout::wasted() const { return total_capacity() - numel_sum_; }

ChunkSearch DefaultChunkSearch(int64_t total_numel, int64_t granularity) {
  const int64_t lo_bound = (int64_t{64} << 10) / 4, hi_bound = (int64_t{32} << 20) / 4;
  int64_t lo = std::clamp<int64_t>(total_numel / 16, lo_bound, hi_bound);
  lo = std::max(granularity, lo / granularity * granularity);
  return {lo, 2 * lo, granularity};
}

int64_t SearchChunkNumel(const std::vector<int64_t>& numel, const std::vector<int>& order,
                         const ChunkSearch& search) {
  const int64_t g = std::max<int64_t>(search.granularity, 16);
  const int64_t lo = std::max(g, (search.min_numel + g - 1) / g * g);
  const int64_t hi = std::max(lo, search.max_numel / g * g);
  const int64_t units = (hi - lo) / g;
  const int64_t step = std::max<int64_t>(1, units / 32) * g;
  int64_t best = lo, best_waste = -1;
  for (int64_t c = lo; c <= hi; c += step) {
    absl::StatusOr<ChunkLayout> l = ChunkLayout::Pack(numel, order, c);
    if (!l.ok()) return lo;  // a bad order: Pack reports it to the caller that uses the size
    if (best_waste < 0 || l->wasted() < best_waste) best = c, best_waste = l->wasted();
  }
  return best;
}

}  // namespace colossal::memory
