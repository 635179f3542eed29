// What a GPT needs to split under each tensor-parallel mode: one list of divisibility
// rules, read by job validation (runtime/config/validate.cc, which names the YAML key and
// its line) and by the builder (BuildGpt refuses a graph that would not split), so the
// rules live here only. The grid itself (square, depth·q², cube) is parallel/tensor_grid.h.
//   1d    n_head and vocab multiples of P (whole heads, wte split by rows); with
//         sequence_parallel seq_len too
//   2d    n_head, vocab and the micro-batch multiples of q
//   2.5d  n_head and vocab of q, the micro-batch of depth·q
//   3d    n_head of q; d_model, vocab and the micro-batch of q²
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "parallel/tensor_grid.h"

namespace colossal::graph {

struct GptSplitDims {
  int64_t n_head = 0, d_model = 0, vocab = 0, seq_len = 0, micro_batch = 0;
};

struct GptSplitRule {
  std::string key;  // the job key of the value: "model.n_head", "train.micro_batch", ...
  int64_t value = 0;
  int64_t multiple_of = 1;
  bool multiple_is_size = false;  // the multiple is the tensor size itself (1d)
  std::string why;                // "in mode 2d (the 2 x 2 grid splits the heads in 2)"
  bool ok() const { return value % multiple_of == 0; }
  // "must be a multiple of <4 | size_key (4)> <why>; got <value>", where `size_key` is how
  // the tensor size was written ("parallel.tensor.size").
  std::string Requirement(std::string_view size_key) const;
  // "<key>: " + Requirement(size_key).
  std::string Message(std::string_view size_key) const;
};

// The rules of `mode` on `grid` (TensorGridOf) over `size` ranks; none for size 1.
std::vector<GptSplitRule> GptSplitRules(parallel::TensorMode mode, const parallel::TensorGrid& grid,
                                        int64_t size, bool sequence_parallel, const GptSplitDims& dims);

// Ok, or InvalidArgument with the grid's or the first broken rule's message.
absl::Status CheckGptSplit(parallel::TensorMode mode, int64_t size, int64_t depth, bool sequence_parallel,
                           const GptSplitDims& dims);

}  // namespace colossal::graph
