// Bucket arithmetic.
#include "parallel/data_parallel/bucket_layout.h"

#include <algorithm>

#include "runtime/base/check.h"

namespace colossal::parallel {

BucketLayout::BucketLayout(int64_t flat, int ranks, int64_t bucket_elems) : ranks_(ranks) {
  COL_CHECK(ranks >= 1 && flat >= 0);
  constexpr int64_t kAlign = 16;  // 64-byte pieces
  const int64_t unit = static_cast<int64_t>(ranks) * kAlign;
  int64_t bucket = std::max<int64_t>(unit, (std::max<int64_t>(bucket_elems, 1) + unit - 1) / unit * unit);
  // No bucket larger than the whole buffer needs (rounded to the unit).
  bucket = std::min(bucket, std::max<int64_t>(unit, (flat + unit - 1) / unit * unit));
  piece_ = bucket / ranks;
  num_buckets_ = static_cast<int>(std::max<int64_t>(1, (flat + bucket - 1) / bucket));
}

std::vector<std::pair<int64_t, int64_t>> BucketLayout::Owned(int rank) const {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int b = 0; b < num_buckets_; ++b) {
    out.push_back({piece_begin(b, rank), piece_begin(b, rank) + piece_});
  }
  return out;
}

}  // namespace colossal::parallel
