// GPT-2 as a graph: the forward pass of a pre-LN decoder with Hugging Face parameter
// names and layouts (Conv1D weights [in, out]), a tied LM head over wte, GELU (tanh),
// layer-norm eps 1e-5, attention scaled by 1/sqrt(head_dim), and the loss
//   loss = mean over the micro-batch's tokens of cross-entropy(logits, targets).
// Inputs: "ids" and "targets" [B, T] i32 and "positions" [B, T] i32 (t in each row,
// filled once by the caller with FillPositions). Outputs: "loss" [1] and the per-token
// "token_loss" [B·T].
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "graph/ir.h"
#include "parallel/sequence/sequence_layout.h"

namespace colossal::graph {

struct GptConfig {
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t d_model = 0;
  int64_t seq_len = 0;
  int64_t vocab = 0;
  float ln_eps = 1e-5f;
  // Attention by the blockwise kernel (op block_attention: out and the log-sum-exp kept,
  // O(T) per head) instead of the fused one (op attention: the T×T probabilities kept).
  bool block_attention = false;
};

// Megatron tensor parallelism (1D): which rank of a tensor group of `size` ranks the
// graph is built for. That rank holds 1/size of every matrix and of the vocabulary —
//   c_attn, c_fc (weight and bias)  split by output columns (c_attn's q, k and v thirds
//                                   each: this rank's heads of all three)
//   attn.c_proj, mlp.c_proj weight  split by input rows; their bias whole, added once
//                                   after the all-reduce
//   wte                             split by vocabulary rows (embedding and tied head)
//   wpe, layer norms                whole (replicated, identical gradients on every rank)
// with copy_to_group / reduce_from_group around each attention and MLP block, the
// embedding reduced over the group and vocab_parallel_xent for the loss; every
// parameter's Value::layout names its part. size 1 is the plain model.
// With sequence_parallel (Megatron sequence parallelism), the residual stream and the
// layer-norm regions hold only this rank's 1/size of the micro-batch's B·T tokens
// (a contiguous block of the flattened [B·T] rows): all_gather replaces copy_to_group
// into each column-parallel block, reduce_scatter replaces the all-reduce out of each
// row-parallel one, and the whole parameters of those regions (layer norms, wpe, the
// projection biases) get Layout::partial_grad_axes {"tensor"}. Needs size | B·T.
//
// two_d (2D tensor parallelism, Xu et al.; size = q², rank (i, j) = (rank / q, rank % q)):
// every activation [tokens, C] in q×q blocks — token block i (B/q whole sequences) and
// hidden block j — and every matrix too (c_attn, c_proj, c_fc, mlp.c_proj: input block
// i, output block j; wte: vocabulary block i, hidden block j), multiplied by SUMMA; layer
// norms with statistics over the grid row (layer_norm_2d); embedding_2d; the tied head
// as SUMMA ABᵀ giving vocabulary block j of token block i's logits; vocab_parallel_xent
// over the grid row. Vectors (layer norms, biases, wpe's columns) are split by hidden
// block j and whole across the grid column, with partial gradients there
// (partial_grad_axes {"row"}). The communication ops use two groups: "col" (the grid
// row: ranks that differ in j, ordered by j) and "row" (the grid column: differ in i,
// ordered by i) — Plan::TensorGroup(kCol) and (kRow). Each rank's loss is its token
// block's mean; their mean over the grid is the micro-batch's.
// depth > 1 (2.5d, Wang et al. "Tesseract"): rank = (k·q + i)·q + j; depth slice k is a
// 2d grid over its 1/depth of the micro-batch (token block k·q + i), every parameter
// whole across the depth with gradients partial there (partial_grad_axes "depth").
//
// three_d (3D tensor parallelism, Bian et al.; size = q³, rank = (a·q + b)·q + c; groups
// "depth", "row", "col" = the ranks that differ only in a, b, c): Agarwal's 3D matmul.
// Activations [tokens, C] hold token block a·q + s of q² and hidden block h of q, in one
// of two forms that alternate from linear to linear —
//   even (the residual stream, layer norms, embeddings):  s = b, h = c
//   odd  (after c_attn / c_fc: attention, GELU):          s = c, h = b
// A linear from the even form all-gathers its input over "row" (token block a, hidden
// block c), all-gathers its weight block (input block c, output block b) over "depth",
// multiplies, and reduce-scatters the product over "col" (its partial sums over the input
// blocks), which leaves the odd form; from the odd form "row" and "col" trade places.
// Each matrix is stored once across the cube: its rows in q² blocks (input block ·q + a),
// its columns in q. wte as the even linear's weight transposed (vocabulary rows in blocks
// b·q + a, hidden block c): the embedding gathers it over "depth" and looks the token
// block's ids up in vocabulary block b (embedding_2d over "row"), the tied head multiplies
// by it (logits in the odd form, vocabulary block b) and vocab_parallel_xent runs over
// "row". Vectors (layer norms, biases, wpe) are split by the hidden block of the form
// they are added in and whole over the other two axes, with partial gradients there.
// Parameter and activation bytes per rank fall as 1/q³ (the vectors' as 1/q).
struct GptTensorParallel {
  int64_t size = 1;
  int64_t rank = 0;
  std::string group = "tensor";  // the "group" attribute of the communication ops (1d)
  bool sequence_parallel = false;
  bool two_d = false;
  int64_t depth = 1;  // 2.5d (Tesseract): size = depth·q², a 2d grid per depth slice
  bool three_d = false;

  // The grid's side q (two_d: the smallest with depth·q² >= size; three_d: q³ >= size).
  int64_t grid_q() const {
    int64_t q = 1;
    while ((three_d ? q * q * q : q * q * depth) < size) ++q;
    return q;
  }
  // Tensor rank `member`'s index along the layout axis `axis` of this mode: "tensor" (1d)
  // the rank itself; "row", "col", "depth" as the modes above lay the ranks out.
  int64_t IndexOf(const std::string& axis, int64_t member) const {
    const int64_t q = grid_q();
    if (axis == "col") return member % q;
    if (axis == "row") return (member / q) % q;
    if (axis == "depth") return member / (q * q);
    return member;
  }
  // The size of every group the mode's communication ops and partial gradients name.
  std::map<std::string, int> GroupSizes() const {
    const int q = static_cast<int>(grid_q());
    if (three_d) return {{"row", q}, {"col", q}, {"depth", q}};
    if (two_d) return {{"row", q}, {"col", q}, {"depth", static_cast<int>(depth)}};
    return {{group, static_cast<int>(size)}};
  }
};

// Sequence parallelism (parallel/sequence): the graph of sequence rank `rank` of `size`,
// which holds T/size positions of every window as `Layout` says (zigzag: two chunks, the
// causal balance of ring attention). Its inputs ids, targets and positions are [B, T/size]
// (positions: the rows' global positions, parallel::FillPositions); every op but attention
// is token-local; attention runs over the group "sequence" as
//   ring        ring_attention (K|V around the ring, merged by log-sum-exp)
//   all_to_all  seq_to_heads → attention of n_head/(tensor·size) heads over all T
//               positions (fused or blockwise) → heads_to_seq   (DeepSpeed-Ulysses)
// Parameters are whole on every rank of the group and their gradients are this rank's
// part: summed over the group (with the data-parallel replicas) they are the window's.
// The loss is the mean over this rank's tokens. Composes with 1d tensor parallelism
// (its heads split first), not with its sequence_parallel, 2d or 3d.
struct GptSequenceParallel {
  int64_t size = 1;
  int64_t rank = 0;
  bool all_to_all = false;
  bool zigzag = true;  // ring only
  parallel::SequenceLayout Layout(int64_t seq_len) const {
    return {seq_len, size, rank, zigzag && !all_to_all && size > 1};
  }
};

// InvalidArgument naming the key and the divisibility when `config` at micro-batch
// `batch` cannot be split as `tp` says (the rules of graph/models/gpt_split.h).
absl::Status CheckGptTensorParallel(const GptConfig& config, const GptTensorParallel& tp, int64_t batch);

// What a GPT graph computes. kTrain: the forward of a micro-batch to the loss (the graph
// above; autodiff adds the backward). kDecode: one generation step of `batch` sequences
// with a KV cache — inputs "ids" and "positions" [B, 1] (the new token of each sequence
// and its position p, the same for all), the same parameters in the same order, every
// layer's attention an attention_decode over kState caches "h.<l>.attn.k_cache" /
// "v_cache" [B, T, C] that the step fills at row p, and the output "logits" [B, 1, V];
// no targets, no loss. The model is defined once: both come from the same builder.
// kDecode is built whole (tensor-parallel size 1).
enum class GptPass { kTrain, kDecode };

// Builds the forward graph for micro-batch `batch` (the loss is marked, autodiff not run).
absl::StatusOr<Graph> BuildGpt(const GptConfig& config, int64_t batch,
                               const GptTensorParallel& tp = {}, GptPass pass = GptPass::kTrain,
                               const GptSequenceParallel& sp = {});

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
