// SequenceLayout: which positions of every window a rank of a sequence-parallel group
// holds. A window of T positions is cut into chunks of equal length; rank s of S holds
//   contiguous:  chunk s of S                          (positions s·T/S .. (s+1)·T/S − 1)
//   zigzag:      chunks s and 2S − 1 − s of 2S         (causal load balance for ring
//                                                      attention: every rank gets one
//                                                      early and one late chunk, so each
//                                                      does the same unmasked work)
// and keeps them in that order as its local sequence of T/S rows. The loader, the
// positions input, the sequence ops (ring attention, the all-to-all exchanges) and the
// benchmarks read the layout here only. Plain value; the caller checks divisibility
// (CheckSequenceLayout).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace colossal::parallel {

struct SequenceLayout {
  int64_t seq_len = 1;  // T: positions of a whole window
  int64_t parts = 1;    // S: ranks of the sequence group
  int64_t part = 0;     // s: this rank
  bool zigzag = false;

  int64_t chunks() const { return zigzag ? 2 : 1; }            // per rank
  int64_t chunk_len() const { return seq_len / (parts * chunks()); }
  int64_t local_len() const { return seq_len / parts; }
  // Global position of the first row of chunk i (0 .. chunks() − 1) of rank `rank`.
  int64_t ChunkStart(int64_t rank, int64_t i) const {
    const int64_t c = i == 0 ? rank : 2 * parts - 1 - rank;
    return c * chunk_len();
  }
  // This rank's (first position, length) runs in local order.
  std::vector<std::pair<int64_t, int64_t>> Runs() const {
    std::vector<std::pair<int64_t, int64_t>> runs;
    for (int64_t i = 0; i < chunks(); ++i) runs.emplace_back(ChunkStart(part, i), chunk_len());
    return runs;
  }
  // The same layout seen from rank `rank`.
  SequenceLayout Of(int64_t rank) const { return {seq_len, parts, rank, zigzag}; }
};

// InvalidArgument naming the rule when `layout` cannot cut its windows (T must be a
// multiple of S, of 2·S when zigzag; 0 <= part < parts).
absl::Status CheckSequenceLayout(const SequenceLayout& layout);

// Writes this rank's global positions into every row of positions [batch, T/S].
void FillPositions(int32_t* positions, int64_t batch, const SequenceLayout& layout);

}  // namespace colossal::parallel
