// Attention CPU twin: oneDNN sgemm on strided views of the fused qkv (row stride 3C, no
// copies), causal-masked softmax fused between the two forward GEMMs, query rows in
// blocks of kBlock so row block i only meets key blocks 0..i (about half the FLOPs).
// Parallelism is OpenMP over independent work items; each dnnl_sgemm runs on the calling
// thread alone. Results do not depend on the thread count (no cross-thread reductions).
#include <dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/fast_math.h"

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

// In place: row[0..n) = softmax(row[0..n)) (scores already scaled), then row[n..len) = 0.
inline void CausalSoftmaxRow(float* row, int64_t n, int64_t len) {
  float max = row[0];
#pragma omp simd reduction(max : max)
  for (int64_t j = 0; j < n; ++j) max = std::max(max, row[j]);
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = FastExp(row[j] - max);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
  std::fill(row + n, row + len, 0.0f);
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
    float* p = probs + pair * T * T;
    // S[i0:i1, 0:i1] = scale · Q Kᵀ, straight into the probability rows.
    Sgemm('N', 'T', m, i1, D, scale, q + i0 * ld3, ld3, k, ld3, 0.0f, p + i0 * T, T);
    for (int64_t t = i0; t < i1; ++t) CausalSoftmaxRow(p + t * T, t + 1, T);
    // O[i0:i1] = P[i0:i1, 0:i1] V[0:i1]; the masked entries are zero by now.
    Sgemm('N', 'N', m, D, i1, 1.0f, p + i0 * T, T, v, ld3, 0.0f, out + (b * T + i0) * C + h * D,
          C);
  }
}

// Per-thread dP/dS block [kBlock, T], grown on demand.
float* Scratch(int64_t n) {
  thread_local std::vector<float> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(n);
  return buffer.data();
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
                        int64_t batch, int64_t len, int64_t max_len, int64_t heads,
                        int64_t head_dim, Stream) {
  const int64_t C = heads * head_dim;
  if (batch * heads * head_dim == 0) return;
  COL_CHECK(len >= 1 && len <= max_len);
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

const Registrar<AttentionForwardFn> kForward(AttentionForwardTable(), Backend::kCpu,
                                             DType::kF32, &AttentionForwardCpu);
const Registrar<AttentionBackwardFn> kBackward(AttentionBackwardTable(), Backend::kCpu,
                                               DType::kF32, &AttentionBackwardCpu);
const Registrar<AttentionDecodeFn> kDecode(AttentionDecodeTable(), Backend::kCpu, DType::kF32,
                                           &AttentionDecodeCpu);

}  // namespace
}  // namespace colossal::kernels
