// BucketLayout: how data parallelism and ZeRO cut the flat parameter/gradient buffers.
// The flat buffer (padded) is a sequence of buckets of N·L elements (N ranks); within
// bucket b, rank r owns the piece [b·N·L + r·L, b·N·L + (r+1)·L). A bucket's gradients
// are all-reduced (ZeRO 0, 1) or reduce-scattered into the owners' pieces (ZeRO 2) as
// one collective as soon as backward has finished writing them; after the optimizer,
// owners all-gather their updated pieces bucket by bucket (ZeRO 1, 2). Every rank owns
// 1/N of every bucket, so optimizer state (ZeRO ≥ 1) and reduced gradients (ZeRO 2)
// shrink as 1/N, and the backward's bucket order lets communication overlap compute.
#pragma once

#include <cstdint>
#include <vector>

namespace colossal::parallel {

class BucketLayout {
 public:
  // `flat`: elements the parameters need; `ranks`: data-parallel degree;
  // `bucket_elems`: target elements per bucket (rounded up to a multiple of ranks · 16).
  BucketLayout(int64_t flat, int ranks, int64_t bucket_elems);

  int ranks() const { return ranks_; }
  int num_buckets() const { return num_buckets_; }
  int64_t bucket_size() const { return piece_ * ranks_; }   // N·L
  int64_t piece_size() const { return piece_; }             // L
  int64_t padded_numel() const { return bucket_size() * num_buckets_; }
  int64_t bucket_begin(int b) const { return b * bucket_size(); }
  int64_t piece_begin(int b, int rank) const { return bucket_begin(b) + rank * piece_; }
  int BucketOf(int64_t flat_index) const { return static_cast<int>(flat_index / bucket_size()); }

  // Rank r's pieces as flat [begin, end) ranges, by bucket.
  std::vector<std::pair<int64_t, int64_t>> Owned(int rank) const;

 private:
  int ranks_ = 1;
  int64_t piece_ = 0;
  int num_buckets_ = 0;
};

}  // namespace colossal::parallel
