// GPT-2 as a graph: the forward pass of a pre-LN decoder with Hugging Face parameter
// names and layouts (Conv1D weights [in, out]), a tied LM head over wte, GELU (tanh),
// layer-norm eps 1e-5, attention scaled by 1/sqrt(head_dim), and the loss
//   loss = mean over the micro-batch's tokens of cross-entropy(logits, targets).
// Inputs: "ids" and "targets" [B, T] i32 and "positions" [B, T] i32 (t in each row,
// filled once by the caller with FillPositions). Outputs: "loss" [1] and the per-token
// "token_loss" [B·T].
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "graph/ir.h"

namespace colossal::graph {

struct GptConfig {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t d_model = 0;
  int64_t seq_len = 0;
  int64_t vocab = 0;
  float ln_eps = 1e-5f;
};

// Builds the forward graph for micro-batch `batch` (the loss is marked, autodiff not run).
absl::StatusOr<Graph> BuildGpt(const GptConfig& config, int64_t batch);

// Parameter counts; `non_embedding_pos` is the N of the 6·N FLOPs-per-token formula
// (every parameter but wpe, as in the field notes and the PaLM/nanoGPT MFU convention).
struct GptParamCounts {
  int64_t total = 0;      // every parameter (wte counted once)
  int64_t non_embedding_pos = 0;  // total minus wpe: the N of 6·N FLOPs per token
};
GptParamCounts CountGptParams(const GptConfig& config);

// Model FLOPs of one training step over `tokens` tokens (forward + backward):
//   tokens · (6·N + 12·L·T·C)  with N = parameters without wpe.
double GptTrainingFlops(const GptConfig& config, int64_t tokens);

// Writes t = 0..T-1 into every row of positions [B, T].
void FillPositions(int32_t* positions, int64_t batch, int64_t seq);

}  // namespace colossal::graph
