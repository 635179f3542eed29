// The data loader: a corpus in memory split into train/val, cut into fixed windows of
// seq_len + 1 tokens, and mapped from a global sample index to a window. Stateless and
// exactly resumable: what sample i holds depends only on (tokens, seq_len, shuffle,
// seed, i), so resuming at step s needs nothing but s. Does not own reading files
// (token_file.h) or which ranks read which samples beyond the FirstSample formula.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/data/token_file.h"

namespace colossal::data {

// An immutable slice of a shared token vector: copies share the storage (no copy of
// the corpus), and the storage lives as long as any slice does. Safe to read from any
// number of threads.
class TokenSpan {
 public:
  TokenSpan() = default;
  // Requires 0 <= offset, 0 <= size, offset + size <= storage->size().
  TokenSpan(std::shared_ptr<const std::vector<int32_t>> storage, int64_t offset, int64_t size);

  const int32_t* data() const { return size_ == 0 ? nullptr : storage_->data() + offset_; }
  int64_t size() const { return size_; }
  int64_t offset() const { return offset_; }
  int32_t operator[](int64_t i) const { return storage_->data()[offset_ + i]; }
  std::span<const int32_t> span() const { return {data(), static_cast<size_t>(size_)}; }
  // The storage this slice points into (for tests that check nothing was copied).
  const std::vector<int32_t>* storage() const { return storage_.get(); }

 private:
  std::shared_ptr<const std::vector<int32_t>> storage_;
  int64_t offset_ = 0;
  int64_t size_ = 0;
};

// The corpus split: train = tokens [0, L - n_val), val = tokens [L - n_val, L), where
// n_val = floor(L * val_fraction) computed in double. Both slices share one storage.
struct TrainValSplit {
  TokenSpan train;
  TokenSpan val;  // Empty when n_val == 0.
  int64_t vocab_size = 0;
  std::string tokenizer;
};

// Takes the stream by value: pass std::move(stream) to hand over the corpus without a
// copy. InvalidArgument when val_fraction is not in [0, 1), the stream is empty, or the
// split leaves no training tokens.
absl::StatusOr<TrainValSplit> SplitTrainVal(TokenStream stream, double val_fraction);

enum class Shuffle { kNo, kYes };

// The window order of epoch `epoch` under `seed`: the identity permutation of
// [0, num_windows) shuffled by base::FisherYatesShuffle with base::Xoshiro256StarStar seeded by
// base::StreamSeed(seed, epoch) (rng.h). Deterministic on every platform.
std::vector<uint32_t> EpochPermutation(int64_t num_windows, uint64_t seed, int64_t epoch);

// Fixed windows over a token slice. Window k is tokens [k*T, k*T + T] (T + 1 tokens):
// inputs are its first T, targets its last T (inputs shifted by one). There are
// W = (size - 1) / T windows; the tail that does not fill a window is never read.
//
// Global sample i (i >= 0) reads window:
//   Shuffle::kNo:  i mod W (so a step of G samples reads windows s*G .. s*G+G-1,
//                  wrapping around the end of the corpus);
//   Shuffle::kYes: EpochPermutation(W, seed, e)[i mod W] with epoch e = i / W, so every
//                  epoch reads each window exactly once.
//
// Thread safety: every method is const and may be called from any number of threads.
// The shuffled order of one epoch is cached (one epoch at a time, behind a mutex,
// shared by copies of the loader); a caller that moves into a new epoch builds its
// permutation under the lock (O(W)), and threads still on the previous epoch keep a
// reference to theirs, so results never depend on timing.
class WindowLoader {
 public:
  // InvalidArgument when seq_len < 1, when W == 0 ("<name>: N tokens are too short for
  // seq_len T: need at least T + 1"), or with shuffling when W >= 2^32. `name` says
  // what the tokens are in that message (e.g. "validation split of data/kjv.txt").
  static absl::StatusOr<WindowLoader> Create(TokenSpan tokens, int64_t seq_len,
                                             Shuffle shuffle, uint64_t seed,
                                             std::string_view name = "corpus");

  int64_t seq_len() const { return seq_len_; }
  int64_t num_windows() const { return num_windows_; }
  const TokenSpan& tokens() const { return tokens_; }

  // The window global sample `sample` (>= 0) reads.
  int64_t Window(int64_t sample) const;

  // Writes samples [first_sample, first_sample + count) row by row: count * T ids to
  // `inputs` and count * T ids to `targets` (overwrite, not accumulate). Requires
  // first_sample >= 0, count >= 0 and non-null outputs when count > 0.
  void Fill(int64_t first_sample, int64_t count, int32_t* inputs, int32_t* targets) const;
  // The same for a slice of every window: positions [start, start + length) of each run,
  // in order (a sequence-parallel rank's chunks, parallel::SequenceLayout::Runs), so each
  // row holds Σ length ids and as many targets. Runs must lie within [0, T).
  using Runs = std::vector<std::pair<int64_t, int64_t>>;
  void Fill(int64_t first_sample, int64_t count, int32_t* inputs, int32_t* targets, const Runs& runs) const;

 private:
  struct EpochCache {
    std::mutex mu;
    int64_t epoch = -1;
    std::shared_ptr<const std::vector<uint32_t>> order;
  };

  WindowLoader(TokenSpan tokens, int64_t seq_len, Shuffle shuffle, uint64_t seed,
               int64_t num_windows)
      : tokens_(std::move(tokens)),
        seq_len_(seq_len),
        shuffle_(shuffle),
        seed_(seed),
        num_windows_(num_windows),
        cache_(std::make_shared<EpochCache>()) {}

  std::shared_ptr<const std::vector<uint32_t>> Order(int64_t epoch) const;

  TokenSpan tokens_;
  int64_t seq_len_;
  Shuffle shuffle_;
  uint64_t seed_;
  int64_t num_windows_;
  std::shared_ptr<EpochCache> cache_;
};

// The first global sample a rank reads in one forward: with global batch G split over
// D data-parallel ranks (G / D each) and accumulation micro-batches of b,
//   FirstSample = step*G + dp_rank*(G/D) + micro_step*b,
// and the rank reads samples FirstSample .. FirstSample + b - 1. Over all ranks and
// micro-steps of a step this covers s*G .. s*G+G-1 exactly once, the same samples one
// rank with D = 1 reads. Preconditions (checked with COL_CHECK; the job spec validates
// them first): step >= 0, G % D == 0, (G/D) % b == 0, 0 <= dp_rank < D,
// 0 <= micro_step < G/(D*b).
int64_t FirstSample(int64_t step, int64_t global_batch, int64_t dp_rank, int64_t dp_size,
                    int64_t micro_step, int64_t micro_batch);

}  // namespace colossal::data
