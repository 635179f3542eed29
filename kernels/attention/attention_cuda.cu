// Attention CUDA twins of the fused tables (AttentionForward / Backward / Decode), fp32
// throughout; the blockwise tables are in block_attention_cuda.cu. Head dims up to kMaxD.
//
// Tiles: one block of 256 threads (8 warps) owns 32 rows (query rows, or key rows in the
// dK|dV kernel) of one (batch, head); warp w owns tile rows w, w+8, w+16, w+24, and for a
// 32×32 score tile lane l owns column l, so every row statistic is a full-warp butterfly
// (identical in all lanes). Accumulators of a row × D live in registers: lane l holds
// dims l, l+32, l+64, l+96. Q/K/V/dO tiles sit in shared memory with an odd row stride
// (D | 1) so 32 lanes reading 32 different rows hit 32 banks; column reads are broadcast.
// - Forward: per query tile, key tiles 0..last visible with an online softmax (running
//   max m, sum l, output rescaled by e^(m_old − m)); each scaled score is also stored in
//   probs, and a second pass over the block's own probs rows rewrites them as
//   e^(s − m)/l (same thread reads what it wrote) and zeroes j > t. out = O / l.
// - Backward (two kernels, no atomics, deterministic): the dQ kernel, per query tile,
//   first sums delta_t = Σ_j P_tj·(dO_t·V_j) (the contract's rowsum(dP ⊙ P)) into scratch
//   (cudaMallocAsync, B·H·T floats), then accumulates dQ = scale·Σ_j P(dP − delta) K_j;
//   the dK|dV kernel, per key tile, walks the query tiles t >= j with P read from probs
//   and delta from the scratch. Each element of dqkv has exactly one writer (= or +=).
// - Decode: one block per (batch, head); warp w takes keys w, w+8, ... with its own online
//   softmax (lanes over D, a butterfly per key); the 8 partial (m, l, O) merge in shared
//   memory in a fixed order.
#include <cmath>
#include <cstdint>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_tiles_cuda.h"
#include "kernels/common/cuda_backend.h"

namespace colossal::kernels {
namespace {

using namespace attention_tiles;  // the shared tile geometry (attention_tiles_cuda.h)

__device__ inline int64_t DMin(int64_t a, int64_t b) { return a < b ? a : b; }

// The dK|dV kernel's dynamic shared memory (floats), for head dim D.
inline size_t DkvSmem(int D) { return sizeof(float) * (4 * kTile * RowLd(D) + 2 * kTile * kSLd + kTile); }

unsigned BlocksFor(int64_t n) { return attention_tiles::BlocksFor(n, "attention: too many tiles for one grid"); }

// ---- forward ----------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    ForwardKernel(const float* qkv, float* out, float* probs, int64_t T, int64_t H, int D, float scale) {
  extern __shared__ float smem[];
  const int ld = RowLd(D);
  float* qs = smem;             // [kTile][ld] queries of the tile
  float* kvs = qs + kTile * ld;  // [kTile][ld] keys, then values, of a key tile
  float* ss = kvs + kTile * ld;  // [kTile][kSLd] probabilities (unnormalised) of a tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t C = H * D, ld3 = 3 * C, tiles = (T + kTile - 1) / kTile;
  const int64_t BH = static_cast<int64_t>(gridDim.x) / tiles;
  const int64_t bh = blockIdx.x % BH, b = bh / H, h = bh % H;
  const int64_t i0 = (tiles - 1 - blockIdx.x / BH) * kTile;  // costliest tiles first
  const float* base = qkv + b * T * ld3 + h * D;               // q of position 0
  LoadRows(qs, ld, base + i0 * ld3, ld3, T - i0, D);
  const int64_t n_keys = DMin(i0 + kTile, T);  // the tile's last row sees keys [0, n_keys)

  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = kNegInf;
    l[i] = 0.0f;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) o[i][k] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < n_keys; j0 += kTile) {
    const int64_t rows = n_keys - j0;
    __syncthreads();  // the previous tile's values and probabilities are consumed
    LoadRows(kvs, ld, base + C + j0 * ld3, ld3, rows, D);
    __syncthreads();
    float s[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float kd = kvs[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) s[i] = fmaf(qs[(warp + kWarps * i) * ld + d], kd, s[i]);
    }
    const int64_t j = j0 + lane;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp + kWarps * i;
      const int64_t t = i0 + r;
      const bool visible = t < T && j <= t;
      const float si = visible ? s[i] * scale : kNegInf;
      if (visible) probs[(bh * T + t) * T + j] = si;  // the scaled score, normalised below
      const float mn = fmaxf(m[i], WarpMax(si));
      const float p = mn == kNegInf ? 0.0f : expf(si - mn);
      const float alpha = m[i] == kNegInf ? 0.0f : expf(m[i] - mn);
      l[i] = l[i] * alpha + WarpSum(p);
      m[i] = mn;
#pragma unroll
      for (int k = 0; k < kDimsPerLane; ++k) o[i][k] *= alpha;
      ss[r * kSLd + lane] = p;
    }
    __syncthreads();  // every warp is done with the keys
    LoadRows(kvs, ld, base + 2 * C + j0 * ld3, ld3, rows, D);
    __syncthreads();
    for (int c = 0; c < kTile; ++c) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float p = ss[(warp + kWarps * i) * kSLd + c];
#pragma unroll
        for (int k = 0; k < kDimsPerLane; ++k) {
          const int d = lane + 32 * k;
          if (d < D) o[i][k] = fmaf(p, kvs[c * ld + d], o[i][k]);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = i0 + warp + kWarps * i;
    if (t >= T) continue;  // uniform across the warp
    float* orow = out + (b * T + t) * C + h * D;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) {
      const int d = lane + 32 * k;
      if (d < D) orow[d] = o[i][k] / l[i];  // key 0 is always visible: l >= 1
    }
    // This lane stored the scores of columns j ≡ lane (mod 32) of this row above.
    float* prow = probs + (bh * T + t) * T;
    for (int64_t jj = lane; jj < T; jj += 32) prow[jj] = jj <= t ? expf(prow[jj] - m[i]) / l[i] : 0.0f;
  }
}

void AttentionForwardCuda(const float* qkv, float* out, float* probs, const AttentionShape& shape, Stream stream) {
  const int64_t B = shape.batch, T = shape.seq, H = shape.heads, D = shape.head_dim;
  if (B * T * H * D == 0) return;
  COL_CHECK_MSG(D <= kMaxD, "attention cuda twin: head_dim above 128");
  const int d = static_cast<int>(D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t tiles = (T + kTile - 1) / kTile;
  AllowSmem(ForwardKernel, ForwardSmem(d), ForwardSmem(kMaxD));
  ForwardKernel<<<BlocksFor(tiles * B * H), kThreads, ForwardSmem(d), cuda::StreamOf(stream)>>>(qkv, out, probs, T, H,
                                                                                               d, scale);
  COL_CUDA_LAUNCHED();
}

// ---- backward ---------------------------------------------------------------------

// dQ (=|+=) and delta, per query tile: pass 1 delta_t = Σ_j P_tj (dO_t · V_j), written to
// `delta` [B·H, T]; pass 2 dQ_t = scale · Σ_j P_tj (dO_t · V_j − delta_t) K_j.
__global__ void __launch_bounds__(kThreads)
    DqKernel(const float* dout, const float* qkv, const float* probs, float* delta, float* dqkv, int64_t T, int64_t H,
             int D, float scale, Accumulate accumulate) {
  extern __shared__ float smem[];
  const int ld = RowLd(D);
  float* qs = smem;
  float* dos = qs + kTile * ld;
  float* ks = dos + kTile * ld;
  float* vs = ks + kTile * ld;
  float* dss = vs + kTile * ld;  // [kTile][kSLd] scale · dS of the warp's own rows
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t C = H * D, ld3 = 3 * C, tiles = (T + kTile - 1) / kTile;
  const int64_t BH = static_cast<int64_t>(gridDim.x) / tiles;
  const int64_t bh = blockIdx.x % BH, b = bh / H, h = bh % H;
  const int64_t i0 = (tiles - 1 - blockIdx.x / BH) * kTile;
  const float* base = qkv + b * T * ld3 + h * D;
  LoadRows(qs, ld, base + i0 * ld3, ld3, T - i0, D);
  LoadRows(dos, ld, dout + (b * T + i0) * C + h * D, C, T - i0, D);
  const int64_t n_keys = DMin(i0 + kTile, T);

  float dl[kRowsPerWarp] = {};
  for (int64_t j0 = 0; j0 < n_keys; j0 += kTile) {
    __syncthreads();
    LoadRows(vs, ld, base + 2 * C + j0 * ld3, ld3, n_keys - j0, D);
    __syncthreads();
    float dp[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float vd = vs[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) dp[i] = fmaf(dos[(warp + kWarps * i) * ld + d], vd, dp[i]);
    }
    const int64_t j = j0 + lane;  // the score-tile column this lane owns
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int64_t t = i0 + warp + kWarps * i;
      if (t < T && j <= t) dl[i] = fmaf(probs[(bh * T + t) * T + j], dp[i], dl[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    dl[i] = WarpSum(dl[i]);
    const int64_t t = i0 + warp + kWarps * i;
    if (lane == 0 && t < T) delta[bh * T + t] = dl[i];
  }

  float g[kRowsPerWarp][kDimsPerLane] = {};
  for (int64_t j0 = 0; j0 < n_keys; j0 += kTile) {
    __syncthreads();
    LoadRows(ks, ld, base + C + j0 * ld3, ld3, n_keys - j0, D);
    LoadRows(vs, ld, base + 2 * C + j0 * ld3, ld3, n_keys - j0, D);
    __syncthreads();
    float dp[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float vd = vs[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) dp[i] = fmaf(dos[(warp + kWarps * i) * ld + d], vd, dp[i]);
    }
    const int64_t j = j0 + lane;  // the score-tile column this lane owns
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp + kWarps * i;
      const int64_t t = i0 + r;
      float ds = 0.0f;
      if (t < T && j <= t) ds = probs[(bh * T + t) * T + j] * (dp[i] - dl[i]) * scale;
      dss[r * kSLd + lane] = ds;
    }
    __syncwarp();  // the warp reads only its own rows of dss
    for (int c = 0; c < kTile; ++c) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float ds = dss[(warp + kWarps * i) * kSLd + c];
#pragma unroll
        for (int k = 0; k < kDimsPerLane; ++k) {
          const int d = lane + 32 * k;
          if (d < D) g[i][k] = fmaf(ds, ks[c * ld + d], g[i][k]);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = i0 + warp + kWarps * i;
    if (t >= T) continue;
    float* dq = dqkv + (b * T + t) * ld3 + h * D;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) {
      const int d = lane + 32 * k;
      if (d < D) dq[d] = accumulate == Accumulate::kYes ? dq[d] + g[i][k] : g[i][k];
    }
  }
}

// dK and dV (=|+=), per key tile j0: query tiles from j0 on (t >= j), P tile read from probs
// (coalesced along keys, stored transposed), delta from the dQ kernel.
__global__ void __launch_bounds__(kThreads)
    DkvKernel(const float* dout, const float* qkv, const float* probs, const float* delta, float* dqkv, int64_t T,
              int64_t H, int D, float scale, Accumulate accumulate) {
  extern __shared__ float smem[];
  const int ld = RowLd(D);
  float* ks = smem;
  float* vs = ks + kTile * ld;
  float* qs = vs + kTile * ld;
  float* dos = qs + kTile * ld;
  float* pts = dos + kTile * ld;  // [key][query] P of the tile, masked
  float* dsts = pts + kTile * kSLd;  // [key][query] scale · dS
  float* dls = dsts + kTile * kSLd;  // [query] delta
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t C = H * D, ld3 = 3 * C, tiles = (T + kTile - 1) / kTile;
  const int64_t BH = static_cast<int64_t>(gridDim.x) / tiles;
  const int64_t bh = blockIdx.x % BH, b = bh / H, h = bh % H;
  const int64_t j0 = (blockIdx.x / BH) * kTile;  // early key tiles see the most queries: first
  const float* base = qkv + b * T * ld3 + h * D;
  LoadRows(ks, ld, base + C + j0 * ld3, ld3, T - j0, D);
  LoadRows(vs, ld, base + 2 * C + j0 * ld3, ld3, T - j0, D);

  float gk[kRowsPerWarp][kDimsPerLane] = {}, gv[kRowsPerWarp][kDimsPerLane] = {};
  for (int64_t i0 = j0; i0 < T; i0 += kTile) {
    __syncthreads();  // the previous query tile is consumed (and K, V are loaded)
    LoadRows(qs, ld, base + i0 * ld3, ld3, T - i0, D);
    LoadRows(dos, ld, dout + (b * T + i0) * C + h * D, C, T - i0, D);
    for (int e = threadIdx.x; e < kTile * kTile; e += blockDim.x) {
      const int r = e / kTile, c = e % kTile;  // query r, key c: coalesced along c
      const int64_t t = i0 + r, j = j0 + c;
      pts[c * kSLd + r] = t < T && j <= t ? probs[(bh * T + t) * T + j] : 0.0f;
    }
    if (threadIdx.x < kTile) {
      const int64_t t = i0 + threadIdx.x;
      dls[threadIdx.x] = t < T ? delta[bh * T + t] : 0.0f;
    }
    __syncthreads();
    // Lane = query row, warp rows = keys.
    float dp[kRowsPerWarp] = {};
    for (int d = 0; d < D; ++d) {
      const float od = dos[lane * ld + d];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) dp[i] = fmaf(od, vs[(warp + kWarps * i) * ld + d], dp[i]);
    }
    const float dl = dls[lane];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int c = warp + kWarps * i;
      dsts[c * kSLd + lane] = pts[c * kSLd + lane] * (dp[i] - dl) * scale;  // masked: P = 0
    }
    __syncwarp();  // the warp reads only its own key rows of pts / dsts
    for (int r = 0; r < kTile; ++r) {
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const int c = warp + kWarps * i;
        const float p = pts[c * kSLd + r], ds = dsts[c * kSLd + r];
#pragma unroll
        for (int k = 0; k < kDimsPerLane; ++k) {
          const int d = lane + 32 * k;
          if (d < D) {
            gv[i][k] = fmaf(p, dos[r * ld + d], gv[i][k]);
            gk[i][k] = fmaf(ds, qs[r * ld + d], gk[i][k]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t j = j0 + warp + kWarps * i;
    if (j >= T) continue;
    float* dk = dqkv + (b * T + j) * ld3 + C + h * D;
    float* dv = dk + C;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) {
      const int d = lane + 32 * k;
      if (d >= D) continue;
      dk[d] = accumulate == Accumulate::kYes ? dk[d] + gk[i][k] : gk[i][k];
      dv[d] = accumulate == Accumulate::kYes ? dv[d] + gv[i][k] : gv[i][k];
    }
  }
}

void AttentionBackwardCuda(const float* dout, const float* qkv, const float* probs, float* dqkv,
                           const AttentionShape& shape, Accumulate accumulate, Stream stream) {
  const int64_t B = shape.batch, T = shape.seq, H = shape.heads, D = shape.head_dim;
  if (B * T * H * D == 0) return;
  COL_CHECK_MSG(D <= kMaxD, "attention cuda twin: head_dim above 128");
  const int d = static_cast<int>(D);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const unsigned blocks = BlocksFor((T + kTile - 1) / kTile * B * H);
  cudaStream_t s = cuda::StreamOf(stream);
  float* delta = nullptr;
  COL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&delta), sizeof(float) * B * H * T, s));
  AllowSmem(DqKernel, DqSmem(d), DqSmem(kMaxD));
  DqKernel<<<blocks, kThreads, DqSmem(d), s>>>(dout, qkv, probs, delta, dqkv, T, H, d, scale, accumulate);
  COL_CUDA_LAUNCHED();
  AllowSmem(DkvKernel, DkvSmem(d), DkvSmem(kMaxD));
  DkvKernel<<<blocks, kThreads, DkvSmem(d), s>>>(dout, qkv, probs, delta, dqkv, T, H, d, scale, accumulate);
  COL_CUDA_LAUNCHED();
  COL_CUDA_CHECK(cudaFreeAsync(delta, s));
}

// ---- decode -----------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    DecodeKernel(const float* q, const float* k_cache, const float* v_cache, float* out, const int32_t* position,
                 int64_t max_len, int64_t H, int D, float scale) {
  __shared__ float ms[kWarps], ls[kWarps], os[kWarps][kMaxD];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.x, b = bh / H, h = bh % H, C = H * D;
  // The position is a device value; one outside the cache is the caller's bug, which a
  // kernel cannot report: the output is NaN instead (attention.h).
  const int64_t pos = position[0];
  if (pos < 0 || pos >= max_len) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) out[b * C + h * D + d] = __int_as_float(0x7fc00000);
    return;
  }
  const int64_t len = pos + 1;
  const float* qrow = q + b * C + h * D;
  const float* kb = k_cache + b * max_len * C + h * D;
  const float* vb = v_cache + b * max_len * C + h * D;
  float qv[kDimsPerLane], o[kDimsPerLane];
#pragma unroll
  for (int k = 0; k < kDimsPerLane; ++k) {
    const int d = lane + 32 * k;
    qv[k] = d < D ? qrow[d] : 0.0f;
    o[k] = 0.0f;
  }
  float m = kNegInf, l = 0.0f;
  for (int64_t j = warp; j < len; j += kWarps) {
    const float* kr = kb + j * C;
    const float* vr = vb + j * C;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) {
      const int d = lane + 32 * k;
      if (d < D) s = fmaf(qv[k], kr[d], s);
    }
    s = WarpSum(s) * scale;
    const float mn = fmaxf(m, s);
    const float alpha = m == kNegInf ? 0.0f : expf(m - mn);
    const float p = expf(s - mn);
    l = l * alpha + p;
#pragma unroll
    for (int k = 0; k < kDimsPerLane; ++k) {
      const int d = lane + 32 * k;
      if (d < D) o[k] = fmaf(p, vr[d], o[k] * alpha);
    }
    m = mn;
  }
  if (lane == 0) {
    ms[warp] = m;
    ls[warp] = l;
  }
#pragma unroll
  for (int k = 0; k < kDimsPerLane; ++k) {
    const int d = lane + 32 * k;
    if (d < D) os[warp][d] = o[k];
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float mx = kNegInf;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, ms[w]);  // finite: warp 0 has key 0
    float sum = 0.0f, acc = 0.0f;
    for (int w = 0; w < kWarps; ++w) {
      if (ms[w] == kNegInf) continue;  // a warp with no keys (len < 8)
      const float f = expf(ms[w] - mx);
      sum = fmaf(ls[w], f, sum);
      acc = fmaf(os[w][d], f, acc);
    }
    out[b * C + h * D + d] = acc / sum;
  }
}

void AttentionDecodeCuda(const float* q, const float* k_cache, const float* v_cache, float* out, int64_t batch,
                         const int32_t* position, int64_t max_len, int64_t heads, int64_t head_dim, Stream stream) {
  if (batch * heads * head_dim == 0) return;
  COL_CHECK(max_len >= 1);
  COL_CHECK_MSG(head_dim <= kMaxD, "attention cuda twin: head_dim above 128");
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  DecodeKernel<<<BlocksFor(batch * heads), kThreads, 0, cuda::StreamOf(stream)>>>(
      q, k_cache, v_cache, out, position, max_len, heads, static_cast<int>(head_dim), scale);
  COL_CUDA_LAUNCHED();
}

const Registrar<AttentionForwardFn> kForward(AttentionForwardTable(), Backend::kCuda, DType::kF32,
                                             &AttentionForwardCuda);
const Registrar<AttentionBackwardFn> kBackward(AttentionBackwardTable(), Backend::kCuda, DType::kF32,
                                               &AttentionBackwardCuda);
const Registrar<AttentionDecodeFn> kDecode(AttentionDecodeTable(), Backend::kCuda, DType::kF32, &AttentionDecodeCuda);

}  // namespace
}  // namespace colossal::kernels
