// Train/val split, window loader (plain and per-epoch shuffled order) and the
// data-parallel sample formula.
#include "runtime/data/loader.h"

#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/rng.h"

namespace colossal::data {

TokenSpan::TokenSpan(std::shared_ptr<const std::vector<int32_t>> storage, int64_t offset,
                     int64_t size)
    : storage_(std::move(storage)), offset_(offset), size_(size) {
  COL_CHECK(storage_ != nullptr);
  COL_CHECK(offset >= 0 && size >= 0);
  COL_CHECK(offset + size <= static_cast<int64_t>(storage_->size()));
}

absl::StatusOr<TrainValSplit> SplitTrainVal(TokenStream stream, double val_fraction) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("val_fraction ", val_fraction, " is not in [0, 1)"));
  }
  const int64_t total = static_cast<int64_t>(stream.tokens.size());
  if (total == 0) return absl::InvalidArgumentError("cannot split an empty corpus");
  const int64_t n_val = static_cast<int64_t>(std::floor(static_cast<double>(total) * val_fraction));
  if (n_val >= total) {
    return absl::InvalidArgumentError(absl::StrCat("val_fraction ", val_fraction, " of ", total,
                                                   " tokens leaves no training tokens"));
  }
  auto storage = std::make_shared<const std::vector<int32_t>>(std::move(stream.tokens));
  TrainValSplit split;
  split.train = TokenSpan(storage, 0, total - n_val);
  split.val = TokenSpan(storage, total - n_val, n_val);
  split.vocab_size = stream.vocab_size;
  split.tokenizer = std::move(stream.tokenizer);
  return split;
}

std::vector<uint32_t> EpochPermutation(int64_t num_windows, uint64_t seed, int64_t epoch) {
  COL_CHECK(num_windows >= 0 && num_windows <= int64_t{UINT32_MAX} + 1);
  COL_CHECK(epoch >= 0);
  std::vector<uint32_t> order(static_cast<size_t>(num_windows));
  std::iota(order.begin(), order.end(), uint32_t{0});
  base::Xoshiro256StarStar rng(base::StreamSeed(seed, static_cast<uint64_t>(epoch)));
  base::FisherYatesShuffle(std::span<uint32_t>(order), rng);
  return order;
}

absl::StatusOr<WindowLoader> WindowLoader::Create(TokenSpan tokens, int64_t seq_len,
                                                  Shuffle shuffle, uint64_t seed,
                                                  std::string_view name) {
  if (seq_len < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": seq_len ", seq_len, " must be at least 1"));
  }
  const int64_t windows = tokens.size() > 0 ? (tokens.size() - 1) / seq_len : 0;
  if (windows == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(name), ": ", tokens.size(), " tokens are too short for seq_len ", seq_len,
        ": need at least ", seq_len + 1));
  }
  if (shuffle == Shuffle::kYes && windows > int64_t{UINT32_MAX}) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": ", windows,
                                                   " windows are too many to shuffle"));
  }
  return WindowLoader(std::move(tokens), seq_len, shuffle, seed, windows);
}

std::shared_ptr<const std::vector<uint32_t>> WindowLoader::Order(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(cache_->mu);
  if (cache_->epoch != epoch || cache_->order == nullptr) {
    cache_->order = std::make_shared<const std::vector<uint32_t>>(
        EpochPermutation(num_windows_, seed_, epoch));
    cache_->epoch = epoch;
  }
  return cache_->order;
}

int64_t WindowLoader::Window(int64_t sample) const {
  COL_CHECK(sample >= 0);
  const int64_t k = sample % num_windows_;
  if (shuffle_ == Shuffle::kNo) return k;
  return (*Order(sample / num_windows_))[static_cast<size_t>(k)];
}

void WindowLoader::Fill(int64_t first_sample, int64_t count, int32_t* inputs,
                        int32_t* targets) const {
  Fill(first_sample, count, inputs, targets, {{0, seq_len_}});
}

void WindowLoader::Fill(int64_t first_sample, int64_t count, int32_t* inputs, int32_t* targets,
                        const Runs& runs) const {
  COL_CHECK(first_sample >= 0 && count >= 0);
  if (count == 0) return;
  COL_CHECK(inputs != nullptr && targets != nullptr);
  const int32_t* base = tokens_.data();
  int64_t row = 0;  // positions per row
  for (const auto& [start, len] : runs) {
    COL_CHECK(start >= 0 && len >= 0 && start + len <= seq_len_);
    row += len;
  }
  std::shared_ptr<const std::vector<uint32_t>> order;
  int64_t order_epoch = -1;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t sample = first_sample + j;
    const int64_t k = sample % num_windows_;
    int64_t window = k;
    if (shuffle_ == Shuffle::kYes) {
      const int64_t epoch = sample / num_windows_;
      if (epoch != order_epoch) {  // Once per epoch crossed, not once per sample.
        order = Order(epoch);
        order_epoch = epoch;
      }
      window = (*order)[static_cast<size_t>(k)];
    }
    const int32_t* src = base + window * seq_len_;
    int64_t at = j * row;
    for (const auto& [start, len] : runs) {
      std::memcpy(inputs + at, src + start, static_cast<size_t>(len) * sizeof(int32_t));
      std::memcpy(targets + at, src + start + 1, static_cast<size_t>(len) * sizeof(int32_t));
      at += len;
    }
  }
}

int64_t FirstSample(int64_t step, int64_t global_batch, int64_t dp_rank, int64_t dp_size,
                    int64_t micro_step, int64_t micro_batch) {
  COL_CHECK(step >= 0);
  COL_CHECK(global_batch > 0 && dp_size > 0 && micro_batch > 0);
  COL_CHECK(global_batch % dp_size == 0);
  const int64_t per_rank = global_batch / dp_size;
  COL_CHECK(per_rank % micro_batch == 0);
  COL_CHECK(dp_rank >= 0 && dp_rank < dp_size);
  COL_CHECK(micro_step >= 0 && micro_step < per_rank / micro_batch);
  return step * global_batch + dp_rank * per_rank + micro_step * micro_batch;
}

}  // namespace colossal::data
