// Attention CPU twin: oneDNN sgemm on strided views of the fused qkv (row stride 3C, no
// copies), causal-masked softmax fused between the two forward GEMMs, query rows in
// blocks of kBlock so row block i only meets key blocks 0..i (about half the FLOPs).
// Parallelism is OpenMP over independent work items, each dnnl_sgemm on the calling
// thread alone; no cross-thread reductions. With a single work item (B·H·blocks = 1) the
// loop runs serially and oneDNN may thread that one GEMM itself.
#include <dnnl.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/fast_math.h"
#include "kernels/common/vec8.h"

namespace colossal::kernels {
namespace {

// Query rows per block: 64 rows × 64 head dims keep a block of Q, K and V in L1/L2.
constexpr int64_t kBlock = 64;

void Sgemm(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  const dnnl_status_t status =
      dnnl_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  COL_CHECK_MSG(status == dnnl_success, "dnnl_sgemm rejected its arguments");
}

// Row maximum with four independent 8-float accumulators (vec8.h): one chain of
// dependent maxes made this pass the most expensive part of the forward.

inline float RowMax(const float* row, int64_t n) {
  float max = row[0];
  int64_t j = 0;
  if (n >= 32) {
    V8 m0 = Load8(row), m1 = Load8(row + 8), m2 = Load8(row + 16), m3 = Load8(row + 24);
    for (j = 32; j + 32 <= n; j += 32) {
      m0 = Max8(m0, Load8(row + j));
      m1 = Max8(m1, Load8(row + j + 8));
      m2 = Max8(m2, Load8(row + j + 16));
      m3 = Max8(m3, Load8(row + j + 24));
    }
    const V8 m = Max8(Max8(m0, m1), Max8(m2, m3));
    for (int k = 0; k < 8; ++k) max = std::max(max, m[k]);
  }
  for (; j < n; ++j) max = std::max(max, row[j]);
  return max;
}

// In place: row[0..n) = exp(row[0..n) − max); returns their sum.
inline float ExpRow(float* row, int64_t n, float max) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = FastExp(row[j] - max);
    row[j] = e;
    sum += e;
  }
  return sum;
}

// In place: row[0..n) = softmax(row[0..n)) (scores already scaled), then row[n..len) = 0.
inline void CausalSoftmaxRow(float* row, int64_t n, int64_t len) {
  const float sum = ExpRow(row, n, RowMax(row, n));
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
  std::fill(row + n, row + len, 0.0f);
}

// Per-thread scratch: the S/P block of the forward, the dP/dS block of the backward, the
// scores of decode; grown on demand, never shrunk.
float* Scratch(int64_t n) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
}

// dst[0..n) = src[0..n), dst[n..len) = 0, with streaming stores where dst is 32-byte
// aligned: the probabilities are written once and read only by the backward, long after,
// so they skip the cache (no read-for-ownership of 4·T² bytes per head). The caller
// issues _mm_sfence() before the rows are read by another thread.
inline void StreamRow(float* dst, const float* src, int64_t n, int64_t len) {
  int64_t j = 0;
  for (; j < len && (reinterpret_cast<uintptr_t>(dst + j) & 31) != 0; ++j) {
    dst[j] = j < n ? src[j] : 0.0f;
  }
  for (; j + 8 <= n; j += 8) _mm256_stream_ps(dst + j, _mm256_loadu_ps(src + j));
  if (j < n) {  // the vector straddling n: source lanes up to n, zeros after
    if (j + 8 <= len) {
      alignas(32) float tail[8] = {};
      std::copy(src + j, src + n, tail);
      _mm256_stream_ps(dst + j, _mm256_load_ps(tail));
      j += 8;
    } else {
      for (; j < len; ++j) dst[j] = j < n ? src[j] : 0.0f;
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  for (; j + 8 <= len; j += 8) _mm256_stream_ps(dst + j, zero);
  for (; j < len; ++j) dst[j] = 0.0f;
}

void AttentionForwardCpu(const float* qkv, float* out, float* probs,
                         const AttentionShape& shape, Stream) {
  const int64_t B = shape.batch, T = shape.seq, H = shape.heads, D = shape.head_dim;
  const int64_t C = shape.channels(), ld3 = 3 * C;
  if (B * T * H * D == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t blocks = (T + kBlock - 1) / kBlock;
  const int64_t pairs = B * H;
  // One work item per (row block, batch, head); the costliest (last) row blocks first so
  // the dynamic schedule ends on small items.
#pragma omp parallel for schedule(dynamic, 1) if (pairs * blocks > 1)
  for (int64_t item = 0; item < pairs * blocks; ++item) {
    const int64_t blk = blocks - 1 - item / pairs;
    const int64_t pair = item % pairs;
    const int64_t b = pair / H, h = pair % H;
    const int64_t i0 = blk * kBlock, i1 = std::min(T, i0 + kBlock), m = i1 - i0;
    const float* q = qkv + b * T * ld3 + h * D;
    const float* k = q + C;
    const float* v = q + 2 * C;
    // S[i0:i1, 0:i1] = scale · Q Kᵀ into a compact cache-resident block (ld i1).
    float* s = Scratch(kBlock * T);
    Sgemm('N', 'T', m, i1, D, scale, q + i0 * ld3, ld3, k, ld3, 0.0f, s, i1);
    float* p = probs + pair * T * T;
    for (int64_t t = i0; t < i1; ++t) {
      float* row = s + (t - i0) * i1;
      CausalSoftmaxRow(row, t + 1, i1);
      StreamRow(p + t * T, row, t + 1, T);
    }
    _mm_sfence();
    // O[i0:i1] = P[i0:i1, 0:i1] V[0:i1], from the block (masked entries are zero).
    Sgemm('N', 'N', m, D, i1, 1.0f, s, i1, v, ld3, 0.0f, out + (b * T + i0) * C + h * D, C);
  }
}

void AttentionBackwardCpu(const float* dout, const float* qkv, const float* probs, float* dqkv,
                          const AttentionShape& shape, Accumulate accumulate, Stream) {
  const int64_t B = shape.batch, T = shape.seq, H = shape.heads, D = shape.head_dim;
  const int64_t C = shape.channels(), ld3 = 3 * C;
  if (B * T * H * D == 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const float beta_first = accumulate == Accumulate::kYes ? 1.0f : 0.0f;
  const int64_t blocks = (T + kBlock - 1) / kBlock;
  const int64_t pairs = B * H;
  // dK and dV of a (batch, head) gather from every row block, so a pair is one work item.
#pragma omp parallel for schedule(dynamic, 1) if (pairs > 1)
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const int64_t b = pair / H, h = pair % H;
    const float* q = qkv + b * T * ld3 + h * D;
    const float* k = q + C;
    const float* v = q + 2 * C;
    const float* p = probs + pair * T * T;
    const float* dout_bh = dout + b * T * C + h * D;
    float* dq = dqkv + b * T * ld3 + h * D;
    float* dk = dq + C;
    float* dv = dq + 2 * C;
    float* ds = Scratch(kBlock * T);
    // Last row block first: it spans every key, so its dK/dV GEMMs set (or add to) all
    // of dK[0:T], dV[0:T] and the earlier blocks add into a prefix.
    for (int64_t blk = blocks - 1; blk >= 0; --blk) {
      const int64_t i0 = blk * kBlock, i1 = std::min(T, i0 + kBlock), m = i1 - i0;
      const float beta = blk == blocks - 1 ? beta_first : 1.0f;
      // dP[i0:i1, 0:i1] = dO Vᵀ (compact, leading dimension i1).
      Sgemm('N', 'T', m, i1, D, 1.0f, dout_bh + i0 * C, C, v, ld3, 0.0f, ds, i1);
      // dS = P ⊙ (dP − rowsum(dP ⊙ P)), zero above the diagonal.
      for (int64_t t = i0; t < i1; ++t) {
        const float* prow = p + t * T;
        float* row = ds + (t - i0) * i1;
        const int64_t n = t + 1;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; ++j) dot += row[j] * prow[j];
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) row[j] = prow[j] * (row[j] - dot);
        std::fill(row + n, row + i1, 0.0f);
      }
      // dQ[i0:i1] (=|+=) scale · dS K[0:i1]: these rows get no other contribution.
      Sgemm('N', 'N', m, D, i1, scale, ds, i1, k, ld3, beta_first, dq + i0 * ld3, ld3);
      // dK[0:i1] (+)= scale · dSᵀ Q[i0:i1];  dV[0:i1] (+)= P[i0:i1, 0:i1]ᵀ dO[i0:i1].
      Sgemm('T', 'N', i1, D, m, scale, ds, i1, q + i0 * ld3, ld3, beta, dk, ld3);
      Sgemm('T', 'N', i1, D, m, 1.0f, p + i0 * T, T, dout_bh + i0 * C, C, beta, dv, ld3);
    }
  }
}

void AttentionDecodeCpu(const float* q, const float* k_cache, const float* v_cache, float* out,
                        int64_t batch, const int32_t* position, int64_t max_len, int64_t heads,
                        int64_t head_dim, Stream) {
  const int64_t C = heads * head_dim;
  if (batch * heads * head_dim == 0) return;
  // The CPU backend's memory is the host's: the position is read here.
  const int64_t pos = position[0];
  COL_CHECK_MSG(pos >= 0 && pos < max_len, "attention_decode: position outside the cache");
  const int64_t len = pos + 1;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const int64_t pairs = batch * heads;
#pragma omp parallel for schedule(static) if (pairs > 1 && pairs * len * head_dim >= 1 << 15)
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const int64_t b = pair / heads, h = pair % heads;
    const int64_t offset = b * max_len * C + h * head_dim;
    float* scores = Scratch(len);
    // scores = scale · q Kᵀ over the first len cached keys (GEMV through sgemm).
    Sgemm('N', 'T', 1, len, head_dim, scale, q + b * C + h * head_dim, C, k_cache + offset, C,
          0.0f, scores, len);
    CausalSoftmaxRow(scores, len, len);
    Sgemm('N', 'N', 1, head_dim, len, 1.0f, scores, len, v_cache + offset, C, 0.0f,
          out + b * C + h * head_dim, C);
  }
}

// Blockwise attention: per (batch, head, query tile of kBlock rows), key tiles of kBlock
// with an online softmax (running row max m, sum l and output accumulator O in scratch),
// both products on sgemm over the strided views; the score tile is the only quadratic
// scratch, kBlock² per thread. The backward runs per (batch, head) pair, since dK and dV
// of one pair gather from all its query tiles: tile by tile P = exp(S − lse), dV += PᵀdO,
// dP = dO Vᵀ, dS = P ⊙ (dP − delta), dQ += dS K, dK += dSᵀ Q (scale folded in).

// Keys of the block visible to query row t: j < VisibleKeys(s, t).
inline int64_t VisibleKeys(const BlockAttentionShape& s, int64_t t) {
  const int64_t n = s.q_offset + t - s.k_offset + 1;
  return n < 0 ? 0 : std::min(n, s.kv_len);
}

void BlockAttentionForwardCpu(const float* q, const float* k, const float* v, float* out, float* lse, bool first,
                              const BlockAttentionShape& s, Stream) {
  const int64_t H = s.heads, D = s.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t tiles = (s.q_len + kBlock - 1) / kBlock;
  const int64_t items = s.batch * H * tiles;
#pragma omp parallel for schedule(dynamic) if (items > 1)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / (H * tiles), h = (item / tiles) % H, i0 = (item % tiles) * kBlock;
    const int64_t m = std::min(kBlock, s.q_len - i0);
    float* scratch = Scratch(kBlock * kBlock + kBlock * D + 2 * kBlock);
    float* S = scratch;                     // [m, kBlock] scores, then probabilities
    float* O = S + kBlock * kBlock;         // [m, D] unnormalised output
    float* row_max = O + kBlock * D;
    float* row_sum = row_max + kBlock;
    std::fill(O, O + m * D, 0.0f);
    std::fill(row_max, row_max + m, kNegInf);
    std::fill(row_sum, row_sum + m, 0.0f);
    const float* qt = q + (b * s.q_len + i0) * s.q_stride + h * D;
    const int64_t keys = VisibleKeys(s, i0 + m - 1);  // the tile's last row sees the most
    for (int64_t j0 = 0; j0 < keys; j0 += kBlock) {
      const int64_t n = std::min(kBlock, keys - j0);
      const float* kt = k + (b * s.kv_len + j0) * s.kv_stride + h * D;
      const float* vt = v + (b * s.kv_len + j0) * s.kv_stride + h * D;
      Sgemm('N', 'T', m, n, D, scale, qt, s.q_stride, kt, s.kv_stride, 0.0f, S, n);
      for (int64_t r = 0; r < m; ++r) {
        float* row = S + r * n;
        const int64_t visible = std::min<int64_t>(n, std::max<int64_t>(0, VisibleKeys(s, i0 + r) - j0));
        if (visible == 0) {
          std::fill(row, row + n, 0.0f);
          continue;
        }
        const float new_max = std::max(row_max[r], RowMax(row, visible));
        const float rescale = row_max[r] == kNegInf ? 0.0f : FastExp(row_max[r] - new_max);
        const float sum = ExpRow(row, visible, new_max);
        std::fill(row + visible, row + n, 0.0f);
        row_sum[r] = row_sum[r] * rescale + sum;
        row_max[r] = new_max;
        if (rescale != 1.0f) {
          for (int64_t d = 0; d < D; ++d) O[r * D + d] *= rescale;
        }
      }
      Sgemm('N', 'N', m, D, n, 1.0f, S, n, vt, s.kv_stride, 1.0f, O, D);
    }
    for (int64_t r = 0; r < m; ++r) {
      float* o = out + (b * s.q_len + i0 + r) * s.out_stride + h * D;
      float& l = lse[(b * H + h) * s.q_len + i0 + r];
      const float block_lse = row_sum[r] > 0.0f ? row_max[r] + std::log(row_sum[r]) : kNegInf;
      const float old = first ? kNegInf : l;
      if (first || old == kNegInf) {
        const float inv = row_sum[r] > 0.0f ? 1.0f / row_sum[r] : 0.0f;
        for (int64_t d = 0; d < D; ++d) o[d] = O[r * D + d] * inv;
        l = block_lse;
      } else if (block_lse != kNegInf) {
        const float mx = std::max(old, block_lse);
        const float merged = mx + std::log(std::exp(old - mx) + std::exp(block_lse - mx));
        const float a = std::exp(old - merged), c = std::exp(block_lse - merged) / row_sum[r];
        for (int64_t d = 0; d < D; ++d) o[d] = a * o[d] + c * O[r * D + d];
        l = merged;
      }
    }
  }
}

void BlockAttentionBackwardCpu(const float* dout, const float* q, const float* k, const float* v, const float* lse,
                               const float* delta, float* dq, float* dk, float* dv, const BlockAttentionShape& s,
                               Stream) {
  const int64_t H = s.heads, D = s.head_dim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t pairs = s.batch * H;
#pragma omp parallel for schedule(dynamic) if (pairs > 1)
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const int64_t b = pair / H, h = pair % H;
    float* P = Scratch(2 * kBlock * kBlock);  // [m, n] probabilities, then dP → dS
    float* dS = P + kBlock * kBlock;
    for (int64_t i0 = 0; i0 < s.q_len; i0 += kBlock) {
      const int64_t m = std::min(kBlock, s.q_len - i0);
      const int64_t keys = VisibleKeys(s, i0 + m - 1);
      const float* qt = q + (b * s.q_len + i0) * s.q_stride + h * D;
      const float* dot = dout + (b * s.q_len + i0) * s.out_stride + h * D;
      float* dqt = dq + (b * s.q_len + i0) * s.q_stride + h * D;
      const float* l = lse + pair * s.q_len + i0;
      const float* dl = delta + pair * s.q_len + i0;
      for (int64_t j0 = 0; j0 < keys; j0 += kBlock) {
        const int64_t n = std::min(kBlock, keys - j0);
        const int64_t at = (b * s.kv_len + j0) * s.kv_stride + h * D;
        Sgemm('N', 'T', m, n, D, scale, qt, s.q_stride, k + at, s.kv_stride, 0.0f, P, n);
        Sgemm('N', 'T', m, n, D, 1.0f, dot, s.out_stride, v + at, s.kv_stride, 0.0f, dS, n);
        for (int64_t r = 0; r < m; ++r) {
          float* p = P + r * n;
          float* ds = dS + r * n;
          const int64_t visible = std::min<int64_t>(n, std::max<int64_t>(0, VisibleKeys(s, i0 + r) - j0));
          if (std::isinf(l[r])) {
            std::fill(p, p + n, 0.0f);
            std::fill(ds, ds + n, 0.0f);
            continue;
          }
#pragma omp simd
          for (int64_t j = 0; j < visible; ++j) {
            p[j] = FastExp(p[j] - l[r]);
            ds[j] = p[j] * (ds[j] - dl[r]) * scale;
          }
          std::fill(p + visible, p + n, 0.0f);
          std::fill(ds + visible, ds + n, 0.0f);
        }
        Sgemm('T', 'N', n, D, m, 1.0f, P, n, dot, s.out_stride, 1.0f, dv + at, s.kv_stride);
        Sgemm('N', 'N', m, D, n, 1.0f, dS, n, k + at, s.kv_stride, 1.0f, dqt, s.q_stride);
        Sgemm('T', 'N', n, D, m, 1.0f, dS, n, qt, s.q_stride, 1.0f, dk + at, s.kv_stride);
      }
    }
  }
}

// Delta: the reference's arithmetic per row (a sequential double sum of D products, rounded
// once), rows split over threads; so every row equals the reference bit for bit, as the
// block_attention_backward op's host call did before this twin.
void BlockAttentionDeltaCpu(const float* dout, const float* out, float* delta, const BlockAttentionShape& s, Stream) {
  const int64_t H = s.heads, D = s.head_dim, rows = s.batch * H * s.q_len;
#pragma omp parallel for schedule(static) if (rows > 1 && rows * D >= 1 << 15)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / (H * s.q_len), h = (r / s.q_len) % H, t = r % s.q_len;
    const int64_t at = (b * s.q_len + t) * s.out_stride + h * D;
    double sum = 0;
    for (int64_t d = 0; d < D; ++d) sum += static_cast<double>(dout[at + d]) * static_cast<double>(out[at + d]);
    delta[r] = static_cast<float>(sum);
  }
}

const Registrar<BlockAttentionDeltaFn> kBlockDelta(BlockAttentionDeltaTable(), Backend::kCpu, DType::kF32,
                                                   &BlockAttentionDeltaCpu);
const Registrar<BlockAttentionForwardFn> kBlockForward(BlockAttentionForwardTable(), Backend::kCpu, DType::kF32,
                                                       &BlockAttentionForwardCpu);
const Registrar<BlockAttentionBackwardFn> kBlockBackward(BlockAttentionBackwardTable(), Backend::kCpu, DType::kF32,
                                                         &BlockAttentionBackwardCpu);

const Registrar<AttentionForwardFn> kForward(AttentionForwardTable(), Backend::kCpu,
                                             DType::kF32, &AttentionForwardCpu);
const Registrar<AttentionBackwardFn> kBackward(AttentionBackwardTable(), Backend::kCpu,
                                               DType::kF32, &AttentionBackwardCpu);
const Registrar<AttentionDecodeFn> kDecode(AttentionDecodeTable(), Backend::kCpu, DType::kF32,
                                           &AttentionDecodeCpu);

}  // namespace
}  // namespace colossal::kernels
