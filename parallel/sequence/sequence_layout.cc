#include "parallel/sequence/sequence_layout.h"

#include "absl/strings/str_cat.h"

namespace colossal::parallel {

absl::Status CheckSequenceLayout(const SequenceLayout& l) {
  if (l.parts < 1 || l.part < 0 || l.part >= l.parts) {
    return absl::InvalidArgumentError(absl::StrCat("sequence rank ", l.part, " of ", l.parts));
  }
  const int64_t cut = l.parts * l.chunks();
  if (l.seq_len < cut || l.seq_len % cut != 0) {
    return absl::InvalidArgumentError(absl::StrCat("seq_len ", l.seq_len, " is not a multiple of ",
                                                   l.zigzag ? "2 x " : "", l.parts,
                                                   l.zigzag ? " (two chunks per sequence rank)" : "",
                                                   " = ", cut));
  }
  return absl::OkStatus();
}

void FillPositions(int32_t* positions, int64_t batch, const SequenceLayout& layout) {
  const int64_t n = layout.local_len();
  for (int64_t b = 0; b < batch; ++b) {
    int32_t* row = positions + b * n;
    for (const auto& [start, len] : layout.Runs()) {
      for (int64_t t = 0; t < len; ++t) *row++ = static_cast<int32_t>(start + t);
    }
  }
}

}  // namespace colossal::parallel
