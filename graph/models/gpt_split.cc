// GPT tensor-parallel split rules.
#include "graph/models/gpt_split.h"

#include "absl/strings/str_cat.h"

namespace colossal::graph {

using parallel::TensorMode;

std::string GptSplitRule::Requirement(std::string_view size_key) const {
  const std::string multiple = multiple_is_size ? absl::StrCat(std::string(size_key), " (", multiple_of, ")")
                                                : absl::StrCat(multiple_of);
  return absl::StrCat("must be a multiple of ", multiple, " ", why, "; got ", value);
}

std::string GptSplitRule::Message(std::string_view size_key) const {
  return absl::StrCat(key, ": ", Requirement(size_key));
}

std::vector<GptSplitRule> GptSplitRules(TensorMode mode, const parallel::TensorGrid& grid, int64_t size,
                                        bool sequence_parallel, const GptSplitDims& d) {
  std::vector<GptSplitRule> rules;
  if (size <= 1) return rules;
  const int64_t q = grid.q, depth = grid.depth;
  switch (mode) {
    case TensorMode::k1d:
      rules.push_back({"model.n_head", d.n_head, size, true,
                       absl::StrCat("in mode 1d, which gives every rank n_head / ", size, " whole heads")});
      if (sequence_parallel) {
        rules.push_back({"model.seq_len", d.seq_len, size, true,
                         "with parallel.tensor.sequence_parallel, which splits the tokens"});
      }
      rules.push_back({"model.vocab", d.vocab, size, true,
                       absl::StrCat("in mode 1d, which splits wte by rows (pad it up to ",
                                    (d.vocab + size - 1) / size * size, ")")});
      break;
    case TensorMode::k2d: {
      const std::string grid_text = absl::StrCat("in mode 2d (the ", q, " x ", q, " grid splits the ");
      rules.push_back({"model.n_head", d.n_head, q, false, absl::StrCat(grid_text, "heads in ", q, ")")});
      rules.push_back({"model.vocab", d.vocab, q, false, absl::StrCat(grid_text, "vocabulary rows of wte in ", q, ")")});
      rules.push_back({"train.micro_batch", d.micro_batch, q, false,
                       absl::StrCat(grid_text, "sequences of the micro-batch in ", q, ")")});
      break;
    }
    case TensorMode::k2p5d: {
      const std::string grid_text =
          absl::StrCat("in mode 2.5d (the ", depth, " x ", q, " x ", q, " grid splits the ");
      rules.push_back({"model.n_head", d.n_head, q, false, absl::StrCat(grid_text, "heads in ", q, ")")});
      rules.push_back({"model.vocab", d.vocab, q, false, absl::StrCat(grid_text, "vocabulary rows of wte in ", q, ")")});
      rules.push_back({"train.micro_batch", d.micro_batch, depth * q, false,
                       absl::StrCat(grid_text, "sequences of the micro-batch in ", depth * q, ")")});
      break;
    }
    case TensorMode::k3d: {
      const std::string cube = absl::StrCat("in mode 3d (the ", q, " x ", q, " x ", q, " cube splits the ");
      rules.push_back({"model.n_head", d.n_head, q, false, absl::StrCat(cube, "heads in ", q, ")")});
      rules.push_back({"model.d_model", d.d_model, q * q, false, absl::StrCat(cube, "rows of every matrix in ", q * q, ")")});
      rules.push_back({"model.vocab", d.vocab, q * q, false, absl::StrCat(cube, "vocabulary rows of wte in ", q * q, ")")});
      rules.push_back({"train.micro_batch", d.micro_batch, q * q, false,
                       absl::StrCat(cube, "sequences of the micro-batch in ", q * q, ")")});
      break;
    }
  }
  return rules;
}

absl::Status CheckGptSplit(TensorMode mode, int64_t size, int64_t depth, bool sequence_parallel,
                           const GptSplitDims& dims) {
  absl::StatusOr<parallel::TensorGrid> grid = parallel::TensorGridOf(mode, size, depth);
  if (!grid.ok()) return absl::InvalidArgumentError(absl::StrCat("parallel.tensor.size: ", grid.status().message()));
  for (const GptSplitRule& r : GptSplitRules(mode, *grid, size, sequence_parallel, dims)) {
    if (!r.ok()) return absl::InvalidArgumentError(r.Message("parallel.tensor.size"));
  }
  return absl::OkStatus();
}

}  // namespace colossal::graph
