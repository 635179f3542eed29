// Blockwise attention CUDA twins (BlockAttentionForward / Backward), flash-attention style
// in fp32: tiles of 32 queries against tiles of 32 keys in shared memory, a running max
// and sum per query row, nothing T×T anywhere (no scratch). Head dims up to kMaxD.
//
// One block of 256 threads (8 warps) owns 32 rows (query rows; key rows in the dK|dV
// kernel) of one (batch, head); warp w owns tile rows w, w+8, w+16, w+24, lane l owns
// column l of a 32×32 score tile, so a row's max and sum are full-warp butterflies
// (identical in every lane); a row × D accumulator lives in registers, lane l holding dims
// l, l+32, l+64, l+96. Tiles in shared memory have an odd row stride (D | 1): 32 lanes on
// 32 rows hit 32 banks, reads along a row are broadcast.
// - Forward, per query tile: key tiles 0..the last one visible to the tile's last row;
//   S = scale·QKᵀ masked by the blocks' positions (k_offset + j <= q_offset + t), online
//   softmax (O rescaled by e^(m_old − m)), then this block's (O / l, m + log l) is written
//   (`first`, or a row with no prior key) or merged into the prior (out, lse) by their
//   log-sum-exp. A row with no visible key anywhere keeps lse = −inf and out = 0.
// - Backward, two kernels with one writer per element (deterministic, no atomics), both
//   recomputing P = exp(S − lse) tile by tile: the dQ kernel per query tile walks the key
//   tiles, dQ += scale·Σ_j P(dO·V_j − delta) K_j; the dK|dV kernel per key tile walks the
//   query tiles that see it, dV += Pᵀ dO, dK += scale·dSᵀ Q. Rows with an infinite lse
//   contribute nothing. Everything adds into dq, dk, dv (the caller zeroes them).
// - Delta (the backward's rowsum(dO ⊙ out)): one warp per (batch, head, query row), lane l
//   summing dims l, l+32, ... in double, then a double butterfly: a fixed order, so
//   deterministic; double as in the reference, so only the final rounding differs.
#include <cmath>
#include <cstdint>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_tiles_cuda.h"
#include "kernels/common/cuda_backend.h"

namespace colossal::kernels {
namespace {

using namespace attention_tiles;  // the shared tile geometry (attention_tiles_cuda.h)

// Keys of the block visible to query row t (t < q_len): j < VisibleKeys(s, t).
__device__ inline int64_t VisibleKeys(const BlockAttentionShape& s, int64_t t) {
  const int64_t n = s.q_offset + t - s.k_offset + 1;
  return n < 0 ? 0 : (n > s.kv_len ? s.kv_len : n);
}

// The dK|dV kernel's dynamic shared memory (floats), for head dim D.
inline size_t DkvSmem(int D) { return sizeof(float) * (4 * kTile * RowLd(D) + 2 * kTile * kSLd + 2 * kTile); }

unsigned BlocksFor(int64_t n) { return attention_tiles::BlocksFor(n, "block attention: too many tiles for one grid"); }

// ---- forward ----------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    ForwardKernel(const float* q, const float* k, const float* v, float* out, float* lse, bool first,
                  BlockAttentionShape s, int D, float scale) {
  extern __shared__ float smem[];
  const int ld = RowLd(D);
  float* qs = smem;              // [kTile][ld] queries of the tile
  float* kvs = qs + kTile * ld;  // [kTile][ld] keys, then values, of a key tile
  float* ss = kvs + kTile * ld;  // [kTile][kSLd] unnormalised probabilities
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t H = s.heads, Tq = s.q_len, BH = s.batch * H, tiles = (Tq + kTile - 1) / kTile;
  const int64_t bh = blockIdx.x % BH, b = bh / H, h = bh % H;
  const int64_t i0 = (tiles - 1 - blockIdx.x / BH) * kTile;  // later tiles see more keys: first
  const float* qb = q + b * Tq * s.q_stride + h * D;
  const float* kb = k + b * s.kv_len * s.kv_stride + h * D;
  const float* vb = v + b * s.kv_len * s.kv_stride + h * D;
  LoadRows(qs, ld, qb + i0 * s.q_stride, s.q_stride, Tq - i0, D);
  const int64_t last = (i0 + kTile < Tq ? i0 + kTile : Tq) - 1;
  const int64_t n_keys = VisibleKeys(s, last);  // the most any row of the tile sees

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kDimsPerLane];
  int64_t vis[kRowsPerWarp];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = i0 + warp + kWarps * i;
    vis[i] = t < Tq ? VisibleKeys(s, t) : 0;
    m[i] = kNegInf;
    l[i] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kDimsPerLane; ++kk) o[i][kk] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < n_keys; j0 += kTile) {
    const int64_t rows = n_keys - j0;
    __syncthreads();  // the previous tile's values and probabilities are consumed
    LoadRows(kvs, ld, kb + j0 * s.kv_stride, s.kv_stride, rows, D);
    __syncthreads();
    float sc[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float kd = kvs[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) sc[i] = fmaf(qs[(warp + kWarps * i) * ld + d], kd, sc[i]);
    }
    const int64_t j = j0 + lane;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const float si = j < vis[i] ? sc[i] * scale : kNegInf;
      const float mn = fmaxf(m[i], WarpMax(si));
      const float p = mn == kNegInf ? 0.0f : expf(si - mn);
      const float alpha = m[i] == kNegInf ? 0.0f : expf(m[i] - mn);
      l[i] = l[i] * alpha + WarpSum(p);
      m[i] = mn;
#pragma unroll
      for (int kk = 0; kk < kDimsPerLane; ++kk) o[i][kk] *= alpha;
      ss[(warp + kWarps * i) * kSLd + lane] = p;
    }
    __syncthreads();  // every warp is done with the keys
    LoadRows(kvs, ld, vb + j0 * s.kv_stride, s.kv_stride, rows, D);
    __syncthreads();
    for (int c = 0; c < kTile; ++c) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float p = ss[(warp + kWarps * i) * kSLd + c];
#pragma unroll
        for (int kk = 0; kk < kDimsPerLane; ++kk) {
          const int d = lane + 32 * kk;
          if (d < D) o[i][kk] = fmaf(p, kvs[c * ld + d], o[i][kk]);
        }
      }
    }
  }
  // Write or merge; everything below is uniform across the warp except the lane's dims.
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = i0 + warp + kWarps * i;
    if (t >= Tq) continue;
    float* lrow = lse + bh * Tq + t;
    float* orow = out + (b * Tq + t) * s.out_stride + h * D;
    const float block_lse = l[i] > 0.0f ? m[i] + logf(l[i]) : kNegInf;
    float old = kNegInf;
    if (!first && lane == 0) old = *lrow;  // lane 0 alone reads and writes lse
    old = __shfl_sync(0xffffffffu, old, 0);
    if (old == kNegInf) {
#pragma unroll
      for (int kk = 0; kk < kDimsPerLane; ++kk) {
        const int d = lane + 32 * kk;
        if (d < D) orow[d] = l[i] > 0.0f ? o[i][kk] / l[i] : 0.0f;
      }
      if (lane == 0) *lrow = block_lse;
    } else if (block_lse != kNegInf) {
      const float mx = fmaxf(old, block_lse);
      const float merged = mx + logf(expf(old - mx) + expf(block_lse - mx));
      const float a = expf(old - merged), c = expf(block_lse - merged) / l[i];
#pragma unroll
      for (int kk = 0; kk < kDimsPerLane; ++kk) {
        const int d = lane + 32 * kk;
        if (d < D) orow[d] = fmaf(a, orow[d], c * o[i][kk]);
      }
      if (lane == 0) *lrow = merged;
    }
  }
}

void BlockAttentionForwardCuda(const float* q, const float* k, const float* v, float* out, float* lse, bool first,
                               const BlockAttentionShape& s, Stream stream) {
  const int64_t D = s.head_dim;
  if (s.batch * s.heads * s.q_len * D == 0) return;
  COL_CHECK_MSG(D <= kMaxD, "block attention cuda twin: head_dim above 128");
  const int d = static_cast<int>(D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t tiles = (s.q_len + kTile - 1) / kTile;
  AllowSmem(ForwardKernel, ForwardSmem(d), ForwardSmem(kMaxD));
  ForwardKernel<<<BlocksFor(tiles * s.batch * s.heads), kThreads, ForwardSmem(d), cuda::StreamOf(stream)>>>(
      q, k, v, out, lse, first, s, d, scale);
  COL_CUDA_LAUNCHED();
}

// ---- backward ---------------------------------------------------------------------

// dq += scale · Σ_j P_tj (dO_t · V_j − delta_t) K_j, per query tile.
__global__ void __launch_bounds__(kThreads)
    DqKernel(const float* dout, const float* q, const float* k, const float* v, const float* lse, const float* delta,
             float* dq, BlockAttentionShape s, int D, float scale) {
  extern __shared__ float smem[];
  const int ld = RowLd(D);
  float* qs = smem;
  float* dos = qs + kTile * ld;
  float* ks = dos + kTile * ld;
  float* vs = ks + kTile * ld;
  float* dss = vs + kTile * ld;  // [kTile][kSLd] scale · dS of the warp's own rows
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t H = s.heads, Tq = s.q_len, BH = s.batch * H, tiles = (Tq + kTile - 1) / kTile;
  const int64_t bh = blockIdx.x % BH, b = bh / H, h = bh % H;
  const int64_t i0 = (tiles - 1 - blockIdx.x / BH) * kTile;
  const int64_t last = (i0 + kTile < Tq ? i0 + kTile : Tq) - 1;
  const int64_t n_keys = VisibleKeys(s, last);
  if (n_keys == 0) return;  // no row of the tile sees this key block (uniform: before any barrier)
  const float* kb = k + b * s.kv_len * s.kv_stride + h * D;
  const float* vb = v + b * s.kv_len * s.kv_stride + h * D;
  LoadRows(qs, ld, q + (b * Tq + i0) * s.q_stride + h * D, s.q_stride, Tq - i0, D);
  LoadRows(dos, ld, dout + (b * Tq + i0) * s.out_stride + h * D, s.out_stride, Tq - i0, D);

  int64_t vis[kRowsPerWarp];
  float lr[kRowsPerWarp], dl[kRowsPerWarp], g[kRowsPerWarp][kDimsPerLane] = {};
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = i0 + warp + kWarps * i;
    lr[i] = t < Tq ? lse[bh * Tq + t] : kNegInf;
    dl[i] = t < Tq ? delta[bh * Tq + t] : 0.0f;
    vis[i] = t < Tq && !isinf(lr[i]) ? VisibleKeys(s, t) : 0;
  }
  for (int64_t j0 = 0; j0 < n_keys; j0 += kTile) {
    __syncthreads();
    LoadRows(ks, ld, kb + j0 * s.kv_stride, s.kv_stride, n_keys - j0, D);
    LoadRows(vs, ld, vb + j0 * s.kv_stride, s.kv_stride, n_keys - j0, D);
    __syncthreads();
    float sc[kRowsPerWarp] = {}, dp[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float kd = ks[lane * ld + d], vd = vs[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const int r = warp + kWarps * i;
        sc[i] = fmaf(qs[r * ld + d], kd, sc[i]);
        dp[i] = fmaf(dos[r * ld + d], vd, dp[i]);
      }
    }
    const int64_t j = j0 + lane;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const float ds = j < vis[i] ? expf(sc[i] * scale - lr[i]) * (dp[i] - dl[i]) * scale : 0.0f;
      dss[(warp + kWarps * i) * kSLd + lane] = ds;
    }
    __syncwarp();  // the warp reads only its own rows of dss
    for (int c = 0; c < kTile; ++c) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float ds = dss[(warp + kWarps * i) * kSLd + c];
#pragma unroll
        for (int kk = 0; kk < kDimsPerLane; ++kk) {
          const int d = lane + 32 * kk;
          if (d < D) g[i][kk] = fmaf(ds, ks[c * ld + d], g[i][kk]);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = i0 + warp + kWarps * i;
    if (t >= Tq) continue;
    float* row = dq + (b * Tq + t) * s.q_stride + h * D;
#pragma unroll
    for (int kk = 0; kk < kDimsPerLane; ++kk) {
      const int d = lane + 32 * kk;
      if (d < D) row[d] += g[i][kk];
    }
  }
}

// dv += Pᵀ dO, dk += scale · dSᵀ Q, per key tile, over the query tiles that see it.
__global__ void __launch_bounds__(kThreads)
    DkvKernel(const float* dout, const float* q, const float* k, const float* v, const float* lse, const float* delta,
              float* dk, float* dv, BlockAttentionShape s, int D, float scale) {
  extern __shared__ float smem[];
  const int ld = RowLd(D);
  float* ks = smem;
  float* vs = ks + kTile * ld;
  float* qs = vs + kTile * ld;
  float* dos = qs + kTile * ld;
  float* pts = dos + kTile * ld;     // [key][query] P
  float* dsts = pts + kTile * kSLd;  // [key][query] scale · dS
  float* lses = dsts + kTile * kSLd;  // [query] lse
  float* dls = lses + kTile;          // [query] delta
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t H = s.heads, Tq = s.q_len, Tk = s.kv_len, BH = s.batch * H;
  const int64_t bh = blockIdx.x % BH, b = bh / H, h = bh % H;
  const int64_t j0 = (blockIdx.x / BH) * kTile;  // early key tiles see the most queries: first
  // Query t sees key j0 iff t >= k_offset + j0 − q_offset; later keys need later t.
  const int64_t t_first = s.k_offset + j0 - s.q_offset;
  const int64_t i_begin = t_first > 0 ? t_first / kTile * kTile : 0;
  if (i_begin >= Tq) return;  // no query of the block sees this tile (uniform, before any barrier)
  const float* qb = q + b * Tq * s.q_stride + h * D;
  const float* ob = dout + b * Tq * s.out_stride + h * D;
  LoadRows(ks, ld, k + (b * Tk + j0) * s.kv_stride + h * D, s.kv_stride, Tk - j0, D);
  LoadRows(vs, ld, v + (b * Tk + j0) * s.kv_stride + h * D, s.kv_stride, Tk - j0, D);

  float gk[kRowsPerWarp][kDimsPerLane] = {}, gv[kRowsPerWarp][kDimsPerLane] = {};
  for (int64_t i0 = i_begin; i0 < Tq; i0 += kTile) {
    __syncthreads();  // the previous query tile is consumed
    LoadRows(qs, ld, qb + i0 * s.q_stride, s.q_stride, Tq - i0, D);
    LoadRows(dos, ld, ob + i0 * s.out_stride, s.out_stride, Tq - i0, D);
    if (threadIdx.x < kTile) {
      const int64_t t = i0 + threadIdx.x;
      lses[threadIdx.x] = t < Tq ? lse[bh * Tq + t] : kNegInf;
      dls[threadIdx.x] = t < Tq ? delta[bh * Tq + t] : 0.0f;
    }
    __syncthreads();
    // Lane = query row, warp rows = keys.
    const int64_t t = i0 + lane;
    const float lt = lses[lane], dl = dls[lane];
    const int64_t vis = t < Tq && !isinf(lt) ? VisibleKeys(s, t) : 0;
    float sc[kRowsPerWarp] = {}, dp[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float qd = qs[lane * ld + d], od = dos[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const int c = warp + kWarps * i;
        sc[i] = fmaf(qd, ks[c * ld + d], sc[i]);
        dp[i] = fmaf(od, vs[c * ld + d], dp[i]);
      }
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int c = warp + kWarps * i;
      const bool visible = j0 + c < vis;
      const float p = visible ? expf(sc[i] * scale - lt) : 0.0f;
      pts[c * kSLd + lane] = p;
      dsts[c * kSLd + lane] = visible ? p * (dp[i] - dl) * scale : 0.0f;
    }
    __syncwarp();  // the warp reads only its own key rows of pts / dsts
    for (int r = 0; r < kTile; ++r) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const int c = warp + kWarps * i;
        const float p = pts[c * kSLd + r], ds = dsts[c * kSLd + r];
#pragma unroll
        for (int kk = 0; kk < kDimsPerLane; ++kk) {
          const int d = lane + 32 * kk;
          if (d < D) {
            gv[i][kk] = fmaf(p, dos[r * ld + d], gv[i][kk]);
            gk[i][kk] = fmaf(ds, qs[r * ld + d], gk[i][kk]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t j = j0 + warp + kWarps * i;
    if (j >= Tk) continue;
    float* dkr = dk + (b * Tk + j) * s.kv_stride + h * D;
    float* dvr = dv + (b * Tk + j) * s.kv_stride + h * D;
#pragma unroll
    for (int kk = 0; kk < kDimsPerLane; ++kk) {
      const int d = lane + 32 * kk;
      if (d >= D) continue;
      dkr[d] += gk[i][kk];
      dvr[d] += gv[i][kk];
    }
  }
}

void BlockAttentionBackwardCuda(const float* dout, const float* q, const float* k, const float* v, const float* lse,
                                const float* delta, float* dq, float* dk, float* dv, const BlockAttentionShape& s,
                                Stream stream) {
  const int64_t D = s.head_dim;
  if (s.batch * s.heads * s.q_len * s.kv_len * D == 0) return;  // nothing to add
  COL_CHECK_MSG(D <= kMaxD, "block attention cuda twin: head_dim above 128");
  const int d = static_cast<int>(D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t BH = s.batch * s.heads;
  cudaStream_t st = cuda::StreamOf(stream);
  AllowSmem(DqKernel, DqSmem(d), DqSmem(kMaxD));
  DqKernel<<<BlocksFor((s.q_len + kTile - 1) / kTile * BH), kThreads, DqSmem(d), st>>>(dout, q, k, v, lse, delta, dq,
                                                                                      s, d, scale);
  COL_CUDA_LAUNCHED();
  AllowSmem(DkvKernel, DkvSmem(d), DkvSmem(kMaxD));
  DkvKernel<<<BlocksFor((s.kv_len + kTile - 1) / kTile * BH), kThreads, DkvSmem(d), st>>>(dout, q, k, v, lse, delta,
                                                                                         dk, dv, s, d, scale);
  COL_CUDA_LAUNCHED();
}

// ---- delta ------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    DeltaKernel(const float* dout, const float* out, float* delta, BlockAttentionShape s, int64_t rows) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;  // a whole warp leaves together: the butterfly below is full
  const int64_t H = s.heads, D = s.head_dim;
  const int64_t b = r / (H * s.q_len), h = (r / s.q_len) % H, t = r % s.q_len;
  const int64_t at = (b * s.q_len + t) * s.out_stride + h * D;
  double sum = 0;
  for (int64_t d = lane; d < D; d += 32) sum += static_cast<double>(dout[at + d]) * static_cast<double>(out[at + d]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) delta[r] = static_cast<float>(sum);
}

void BlockAttentionDeltaCuda(const float* dout, const float* out, float* delta, const BlockAttentionShape& s,
                             Stream stream) {
  const int64_t rows = s.batch * s.heads * s.q_len;
  if (rows == 0) return;
  DeltaKernel<<<BlocksFor((rows + kWarps - 1) / kWarps), kThreads, 0, cuda::StreamOf(stream)>>>(dout, out, delta, s,
                                                                                                 rows);
  COL_CUDA_LAUNCHED();
}

const Registrar<BlockAttentionDeltaFn> kBlockDelta(BlockAttentionDeltaTable(), Backend::kCuda, DType::kF32,
                                                   &BlockAttentionDeltaCuda);
const Registrar<BlockAttentionForwardFn> kBlockForward(BlockAttentionForwardTable(), Backend::kCuda, DType::kF32,
                                                       &BlockAttentionForwardCuda);
const Registrar<BlockAttentionBackwardFn> kBlockBackward(BlockAttentionBackwardTable(), Backend::kCuda, DType::kF32,
                                                         &BlockAttentionBackwardCuda);

}  // namespace
}  // namespace colossal::kernels
