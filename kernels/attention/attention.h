// Causal multi-head self-attention over a fused QKV projection (GPT-2 layout), with the
// softmax fused in; the only T×T state kept is the probabilities backward needs.
//
// Layout (B batch, T positions, H heads, D head dim, C = H·D):
//   qkv   [B, T, 3C]: q = cols [0, C), k = [C, 2C), v = [2C, 3C); head h of each uses
//         cols h·D .. h·D+D-1 of its third (the Hugging Face c_attn split).
//   out   [B, T, C]: head h at cols h·D (heads merged back).
//   probs [B, H, T, T]: P[t, j] = softmax_j≤t(q_t·k_j / sqrt(D)); entries j > t are 0.
// Forward overwrites out and probs. Backward writes dqkv (=|+=), reading dout, qkv and
// probs:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = dS K / sqrt(D),
//   dK = dSᵀ Q / sqrt(D).
// dqkv must not alias any input.
//
// Decode (generation with a KV cache): one new query per sequence attends to cached
// positions 0..p, where p = position[0] is the new token's position (the same for every
// sequence; its k and v already written at row p, kv_cache.h) and `position` points to
// one int32 on the stream's backend, read there (a device value on a device backend):
//   q [B, C], k_cache and v_cache [B, max_len, C], out [B, C] (overwritten).
// A position outside [0, max_len) is a caller's bug: the host twins COL_CHECK it; the
// CUDA twin cannot stop the host, so it leaves out NaN (the step's logits then show it).
// The reference AttentionDecodeRef takes the number of visible rows, len = p + 1.
//
// Tolerance against the reference: forward atol = rtol = Fp32ReductionRtol(max(T, D)) · 4;
// backward the same with rtol doubled (two chained reductions).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

struct AttentionShape {
  int64_t batch = 0;  // B
  int64_t seq = 0;    // T
  int64_t heads = 0;  // H
  int64_t head_dim = 0;  // D
  int64_t channels() const { return heads * head_dim; }
};

// Forward (out, probs, decode): fp32 dot products of length D, then sums of length T.
inline Tolerance AttentionForwardTolerance(const AttentionShape& s) {
  const double t = 4.0 * Fp32ReductionRtol(s.seq > s.head_dim ? s.seq : s.head_dim);
  return {t, t};
}
// Backward: two chained reductions (dP, then dS·K or dSᵀ·Q): the forward's rtol doubled.
inline Tolerance AttentionBackwardTolerance(const AttentionShape& s) {
  const Tolerance f = AttentionForwardTolerance(s);
  return {f.atol, 2 * f.rtol};
}

using AttentionForwardFn = void(const float* qkv, float* out, float* probs,
                                const AttentionShape& shape, Stream stream);
Dispatch<AttentionForwardFn>& AttentionForwardTable();

using AttentionBackwardFn = void(const float* dout, const float* qkv, const float* probs,
                                 float* dqkv, const AttentionShape& shape,
                                 Accumulate accumulate, Stream stream);
Dispatch<AttentionBackwardFn>& AttentionBackwardTable();

using AttentionDecodeFn = void(const float* q, const float* k_cache, const float* v_cache,
                               float* out, int64_t batch, const int32_t* position,
                               int64_t max_len, int64_t heads, int64_t head_dim,
                               Stream stream);
Dispatch<AttentionDecodeFn>& AttentionDecodeTable();

template <typename T>
void AttentionForwardRef(const T* qkv, T* out, T* probs, const AttentionShape& shape);
template <typename T>
void AttentionBackwardRef(const T* dout, const T* qkv, const T* probs, T* dqkv,
                          const AttentionShape& shape, Accumulate accumulate);
template <typename T>
void AttentionDecodeRef(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t batch,
                        int64_t len, int64_t max_len, int64_t heads, int64_t head_dim);

inline void AttentionForward(const float* qkv, float* out, float* probs,
                             const AttentionShape& shape, Stream stream = {}) {
  AttentionForwardTable().Get(stream.backend, DType::kF32)(qkv, out, probs, shape, stream);
}
inline void AttentionBackward(const float* dout, const float* qkv, const float* probs,
                              float* dqkv, const AttentionShape& shape, Accumulate accumulate,
                              Stream stream = {}) {
  AttentionBackwardTable().Get(stream.backend, DType::kF32)(dout, qkv, probs, dqkv, shape,
                                                            accumulate, stream);
}
inline void AttentionDecode(const float* q, const float* k_cache, const float* v_cache,
                            float* out, int64_t batch, const int32_t* position,
                            int64_t max_len, int64_t heads, int64_t head_dim,
                            Stream stream = {}) {
  AttentionDecodeTable().Get(stream.backend, DType::kF32)(q, k_cache, v_cache, out, batch,
                                                          position, max_len, heads, head_dim,
                                                          stream);
}

// Blockwise causal attention (flash-attention style, for long sequences and ring
// attention): queries of one block against keys and values of another, each block a
// strided view (rows `q_stride` / `kv_stride` elements apart, head h at cols h·D, so a
// slice of the fused qkv needs no copy), with the blocks' global positions (q_offset,
// k_offset) deciding the causal mask: key position k_offset + j is visible to query
// position q_offset + t iff k_offset + j <= q_offset + t. Nothing T×T is kept: the forward
// keeps the output and the log-sum-exp of each query row's scaled scores, the backward
// recomputes the scores tile by tile. Memory per head is O((Tq + Tk)·D) plus a fixed
// tile of scratch per thread.
//
// Forward over key block k: with `first` it writes out [B, Tq, C] (row stride out_stride)
// and lse [B, H, Tq] for this block alone; otherwise it merges this block into the
// partial (out, lse) of the blocks before it: lse' = log(e^lse + e^lse_k), out' =
// e^(lse − lse')·out + e^(lse_k − lse')·out_k. A row with no visible key has lse = −inf
// and out = 0. Any order of key blocks gives the same result within rounding.
// Backward over key block k, from the final out and lse: P = exp(S − lse),
//   dV += Pᵀ dO,  dS = P ⊙ (dO Vᵀ − delta),  dQ += dS K / sqrt(D),  dK += dSᵀ Q / sqrt(D),
// where delta[b, h, t] = Σ_d dO·out (the block_attention_delta table, once per query
// block: [B, H, Tq], each row's sum in double and rounded once). dq, dk,
// dv accumulate (the caller zeroes them) with the strides of q, k and v, and must not
// alias the inputs.
//
// Tolerance: as AttentionForwardTolerance / AttentionBackwardTolerance with T = Tq + Tk;
// BlockAttentionDeltaTolerance for delta.
struct BlockAttentionShape {
  int64_t batch = 0, heads = 0, head_dim = 0;
  int64_t q_len = 0, kv_len = 0;        // Tq, Tk
  int64_t q_offset = 0, k_offset = 0;   // global positions of the blocks' first rows
  int64_t q_stride = 0, kv_stride = 0;  // elements between consecutive positions (>= C)
  int64_t out_stride = 0;               // of out and dout (>= C)
  int64_t channels() const { return heads * head_dim; }
  AttentionShape Whole() const { return {batch, q_len > kv_len ? q_len : kv_len, heads, head_dim}; }
};

// Delta against the reference: every twin sums the D products in double, so two orders
// differ by at most 2·(D−1)·2^-53·Σ|dO·out| <= D²·2^-52 for |dO|, |out| <= 1 (out is a
// convex combination of v rows; scale atol with the inputs' magnitudes otherwise), then
// one fp32 rounding (rtol 1.2e-7: 2^-23, a neighbouring float).
inline Tolerance BlockAttentionDeltaTolerance(const BlockAttentionShape& s) {
  const double d = static_cast<double>(s.head_dim);
  return {std::ldexp(d * d, -52), 1.2e-7};
}

using BlockAttentionForwardFn = void(const float* q, const float* k, const float* v, float* out, float* lse,
                                     bool first, const BlockAttentionShape& shape, Stream stream);
Dispatch<BlockAttentionForwardFn>& BlockAttentionForwardTable();
using BlockAttentionBackwardFn = void(const float* dout, const float* q, const float* k, const float* v,
                                      const float* lse, const float* delta, float* dq, float* dk, float* dv,
                                      const BlockAttentionShape& shape, Stream stream);
Dispatch<BlockAttentionBackwardFn>& BlockAttentionBackwardTable();
// delta [B, H, Tq] (overwritten) from dout and out (row stride out_stride, head h at h·D).
using BlockAttentionDeltaFn = void(const float* dout, const float* out, float* delta, const BlockAttentionShape& shape,
                                   Stream stream);
Dispatch<BlockAttentionDeltaFn>& BlockAttentionDeltaTable();

template <typename T>
void BlockAttentionForwardRef(const T* q, const T* k, const T* v, T* out, T* lse, bool first,
                              const BlockAttentionShape& shape);
template <typename T>
void BlockAttentionBackwardRef(const T* dout, const T* q, const T* k, const T* v, const T* lse, const T* delta,
                               T* dq, T* dk, T* dv, const BlockAttentionShape& shape);
// The reference of the delta table, on host memory: delta[b, h, t] = Σ_d dout·out over
// head h of query row t ([B, H, Tq]), summed in double. Host code on host values (the
// sequence-parallel ops) calls it directly; kernels on a stream call the table (below,
// the overload taking a Stream).
template <typename T>
void BlockAttentionDelta(const T* dout, const T* out, T* delta, const BlockAttentionShape& shape);

inline void BlockAttentionForward(const float* q, const float* k, const float* v, float* out, float* lse,
                                  bool first, const BlockAttentionShape& shape, Stream stream = {}) {
  BlockAttentionForwardTable().Get(stream.backend, DType::kF32)(q, k, v, out, lse, first, shape, stream);
}
inline void BlockAttentionBackward(const float* dout, const float* q, const float* k, const float* v,
                                   const float* lse, const float* delta, float* dq, float* dk, float* dv,
                                   const BlockAttentionShape& shape, Stream stream = {}) {
  BlockAttentionBackwardTable().Get(stream.backend, DType::kF32)(dout, q, k, v, lse, delta, dq, dk, dv, shape,
                                                                 stream);
}

inline void BlockAttentionDelta(const float* dout, const float* out, float* delta, const BlockAttentionShape& shape,
                                Stream stream) {
  BlockAttentionDeltaTable().Get(stream.backend, DType::kF32)(dout, out, delta, shape, stream);
}

}  // namespace colossal::kernels
