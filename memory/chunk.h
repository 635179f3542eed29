// Chunks: the unit the Gemini memory manager moves. Parameters are packed in the order
// the schedule first uses them into chunks of one size (chunk_numel floats), each tensor
// whole inside one chunk at a 64-byte-aligned offset, so a chunk's parameters are used
// together and one move brings a layer's weights. A tensor larger than the chunk size (a
// vocabulary embedding) gets a chunk of its own, a whole number of chunk sizes long.
// Gradients and optimizer state live in paired chunks of the same layout (chunk_manager.h
// keeps one buffer per (chunk, kind)).
//
// The chunk size is searched as Colossal-AI does (SearchChunkNumel): the candidate that
// wastes least when packed in first-use order, in a range above a minimum, a multiple of
// the granularity (the NVMe alignment, times the data-parallel degree once chunks are
// sharded); memory.chunk_bytes overrides it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::memory {

struct ChunkPlace {
  int chunk = -1;
  int64_t offset = 0;  // floats from the chunk's start
};

class ChunkLayout {
 public:
  // Packs tensors of `numel` (by parameter index) in `order` (every index once: the
  // first-use order) into chunks of `chunk_numel` floats (> 0, a multiple of 16).
  // INVALID_ARGUMENT when `order` is not a permutation of the parameters.
  static absl::StatusOr<ChunkLayout> Pack(const std::vector<int64_t>& numel, const std::vector<int>& order,
                                          int64_t chunk_numel);

  int64_t chunk_numel() const { return chunk_numel_; }
  int num_chunks() const { return static_cast<int>(params_.size()); }
  int num_params() const { return static_cast<int>(place_.size()); }
  const ChunkPlace& place(int param) const { return place_[param]; }
  // The parameters of `chunk`, in the order they sit in it.
  const std::vector<int>& params(int chunk) const { return params_[chunk]; }
  // Floats the chunk holds: chunk_numel, or a multiple of it for a tensor of its own.
  int64_t capacity(int chunk) const { return capacity_[chunk]; }
  // Floats its tensors use, alignment padding included.
  int64_t used(int chunk) const { return used_[chunk]; }
  int64_t total_capacity() const;
  // Floats of the chunks that hold no parameter value (alignment, tails).
  int64_t wasted() const;

 private:
  int64_t chunk_numel_ = 0;
  int64_t numel_sum_ = 0;
  std::vector<ChunkPlace> place_;
  std::vector<std::vector<int>> params_;
  std::vector<int64_t> capacity_, used_;
};

struct ChunkSearch {
  int64_t min_numel = 0;    // smallest candidate (floats)
  int64_t max_numel = 0;    // largest candidate
  int64_t granularity = 1;  // candidates are multiples of it (floats; a multiple of 16)
};

// The search range for a model of `total_numel` floats: from about 1/16 of the model
// (at least 64 KiB, at most 32 MiB) to twice that, candidates multiples of `granularity`.
ChunkSearch DefaultChunkSearch(int64_t total_numel, int64_t granularity);

// The candidate of `search` with the least wasted() (ties: the smaller), packing in
// `order`. At least 32 candidates are tried when the range has them.
int64_t SearchChunkNumel(const std::vector<int64_t>& numel, const std::vector<int>& order,
                         const ChunkSearch& search);

}  // namespace colossal::memory
