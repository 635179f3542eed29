// Attention specification: causal softmax(q·k/sqrt(D)) v per (batch, head, position),
// its backward, and KV-cache decode, as plain loops accumulated in double; also defines
// the dispatch tables and registers the float twins as kRef. Single-threaded; tests only.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention/attention.h"

namespace colossal::kernels {

Dispatch<AttentionForwardFn>& AttentionForwardTable() {
  static Dispatch<AttentionForwardFn> table("attention_forward");
  return table;
}

Dispatch<AttentionBackwardFn>& AttentionBackwardTable() {
  static Dispatch<AttentionBackwardFn> table("attention_backward");
  return table;
}

Dispatch<AttentionDecodeFn>& AttentionDecodeTable() {
  static Dispatch<AttentionDecodeFn> table("attention_decode");
  return table;
}

Dispatch<BlockAttentionForwardFn>& BlockAttentionForwardTable() {
  static Dispatch<BlockAttentionForwardFn> table("block_attention_forward");
  return table;
}

Dispatch<BlockAttentionBackwardFn>& BlockAttentionBackwardTable() {
  static Dispatch<BlockAttentionBackwardFn> table("block_attention_backward");
  return table;
}

Dispatch<BlockAttentionDeltaFn>& BlockAttentionDeltaTable() {
  static Dispatch<BlockAttentionDeltaFn> table("block_attention_delta");
  return table;
}

namespace {

// Softmax of q against the first n keys (row stride k_stride), into p[0..n), in double.
template <typename T>
void SoftmaxScores(const T* q, const T* k, int64_t k_stride, int64_t n, int64_t head_dim,
                   double* p) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  double max = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t d = 0; d < head_dim; ++d) {
      s += static_cast<double>(q[d]) * static_cast<double>(k[j * k_stride + d]);
    }
    p[j] = s * scale;
    max = std::max(max, p[j]);
  }
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = std::exp(p[j] - max);
    sum += p[j];
  }
  for (int64_t j = 0; j < n; ++j) p[j] /= sum;
}

}  // namespace

template <typename T>
void AttentionForwardRef(const T* qkv, T* out, T* probs, const AttentionShape& shape) {
  const int64_t B = shape.batch, S = shape.seq, H = shape.heads, D = shape.head_dim;
  const int64_t C = shape.channels();
  std::vector<double> p(S);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const T* base = qkv + b * S * 3 * C + h * D;  // q of position 0, head h
      for (int64_t t = 0; t < S; ++t) {
        SoftmaxScores(base + t * 3 * C, base + C, 3 * C, t + 1, D, p.data());
        T* prow = probs + ((b * H + h) * S + t) * S;
        for (int64_t j = 0; j < S; ++j) prow[j] = static_cast<T>(j <= t ? p[j] : 0.0);
        T* o = out + (b * S + t) * C + h * D;
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j <= t; ++j) {
            acc += p[j] * static_cast<double>(base[j * 3 * C + 2 * C + d]);
          }
          o[d] = static_cast<T>(acc);
        }
      }
    }
  }
}

template <typename T>
void AttentionBackwardRef(const T* dout, const T* qkv, const T* probs, T* dqkv,
                          const AttentionShape& shape, Accumulate accumulate) {
  const int64_t B = shape.batch, S = shape.seq, H = shape.heads, D = shape.head_dim;
  const int64_t C = shape.channels();
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> dq(S * D), dk(S * D), dv(S * D), dp(S);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      std::fill(dq.begin(), dq.end(), 0.0);
      std::fill(dk.begin(), dk.end(), 0.0);
      std::fill(dv.begin(), dv.end(), 0.0);
      const T* q = qkv + b * S * 3 * C + h * D;
      const T* k = q + C;
      const T* v = q + 2 * C;
      for (int64_t t = 0; t < S; ++t) {
        const T* prow = probs + ((b * H + h) * S + t) * S;
        const T* dot = dout + (b * S + t) * C + h * D;
        double row_sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) {
            s += static_cast<double>(dot[d]) * static_cast<double>(v[j * 3 * C + d]);
          }
          dp[j] = s;
          row_sum += static_cast<double>(prow[j]) * s;
        }
        for (int64_t j = 0; j <= t; ++j) {
          const double pj = prow[j];
          const double ds = pj * (dp[j] - row_sum);
          for (int64_t d = 0; d < D; ++d) {
            dq[t * D + d] += ds * scale * static_cast<double>(k[j * 3 * C + d]);
            dk[j * D + d] += ds * scale * static_cast<double>(q[t * 3 * C + d]);
            dv[j * D + d] += pj * static_cast<double>(dot[d]);
          }
        }
      }
      T* dq_out = dqkv + b * S * 3 * C + h * D;
      for (int64_t t = 0; t < S; ++t) {
        for (int64_t d = 0; d < D; ++d) {
          const double grads[3] = {dq[t * D + d], dk[t * D + d], dv[t * D + d]};
          for (int part = 0; part < 3; ++part) {
            T& dst = dq_out[t * 3 * C + part * C + d];
            dst = static_cast<T>(accumulate == Accumulate::kYes ? dst + grads[part]
                                                                : grads[part]);
          }
        }
      }
    }
  }
}

template <typename T>
void AttentionDecodeRef(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t batch,
                        int64_t len, int64_t max_len, int64_t heads, int64_t head_dim) {
  const int64_t C = heads * head_dim;
  std::vector<double> p(len);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t offset = b * max_len * C + h * head_dim;
      SoftmaxScores(q + b * C + h * head_dim, k_cache + offset, C, len, head_dim, p.data());
      for (int64_t d = 0; d < head_dim; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < len; ++j) {
          acc += p[j] * static_cast<double>(v_cache[offset + j * C + d]);
        }
        out[b * C + h * head_dim + d] = static_cast<T>(acc);
      }
    }
  }
}

template void AttentionForwardRef<float>(const float*, float*, float*, const AttentionShape&);
template void AttentionForwardRef<double>(const double*, double*, double*,
                                          const AttentionShape&);
template void AttentionBackwardRef<float>(const float*, const float*, const float*, float*,
                                          const AttentionShape&, Accumulate);
template void AttentionBackwardRef<double>(const double*, const double*, const double*,
                                           double*, const AttentionShape&, Accumulate);
template void AttentionDecodeRef<float>(const float*, const float*, const float*, float*,
                                        int64_t, int64_t, int64_t, int64_t, int64_t);
template void AttentionDecodeRef<double>(const double*, const double*, const double*, double*,
                                         int64_t, int64_t, int64_t, int64_t, int64_t);

namespace {
// Keys of the block visible to query row t: j < VisibleKeys(shape, t).
int64_t VisibleKeys(const BlockAttentionShape& s, int64_t t) {
  const int64_t n = s.q_offset + t - s.k_offset + 1;
  return n < 0 ? 0 : (n > s.kv_len ? s.kv_len : n);
}
}  // namespace

template <typename T>
void BlockAttentionForwardRef(const T* q, const T* k, const T* v, T* out, T* lse, bool first,
                              const BlockAttentionShape& s) {
  const int64_t H = s.heads, D = s.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const double kNegInf = -std::numeric_limits<double>::infinity();
  std::vector<double> score(s.kv_len > 0 ? s.kv_len : 1), o(D);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < s.q_len; ++t) {
        const T* qt = q + (b * s.q_len + t) * s.q_stride + h * D;
        const int64_t n = VisibleKeys(s, t);
        double max = kNegInf;
        for (int64_t j = 0; j < n; ++j) {
          const T* kj = k + (b * s.kv_len + j) * s.kv_stride + h * D;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(qt[d]) * static_cast<double>(kj[d]);
          score[j] = dot * scale;
          max = std::max(max, score[j]);
        }
        double block_lse = kNegInf;
        std::fill(o.begin(), o.end(), 0.0);
        if (n > 0) {
          double sum = 0;
          for (int64_t j = 0; j < n; ++j) sum += std::exp(score[j] - max);
          block_lse = max + std::log(sum);
          for (int64_t j = 0; j < n; ++j) {
            const double p = std::exp(score[j] - block_lse);
            const T* vj = v + (b * s.kv_len + j) * s.kv_stride + h * D;
            for (int64_t d = 0; d < D; ++d) o[d] += p * static_cast<double>(vj[d]);
          }
        }
        T* ot = out + (b * s.q_len + t) * s.out_stride + h * D;
        T& l = lse[(b * H + h) * s.q_len + t];
        const double old = first ? kNegInf : static_cast<double>(l);
        if (first || old == kNegInf) {
          for (int64_t d = 0; d < D; ++d) ot[d] = static_cast<T>(o[d]);
          l = static_cast<T>(block_lse);
        } else if (block_lse != kNegInf) {
          const double m = std::max(old, block_lse);
          const double merged = m + std::log(std::exp(old - m) + std::exp(block_lse - m));
          const double a = std::exp(old - merged), c = std::exp(block_lse - merged);
          for (int64_t d = 0; d < D; ++d) ot[d] = static_cast<T>(a * static_cast<double>(ot[d]) + c * o[d]);
          l = static_cast<T>(merged);
        }
      }
    }
  }
}

template <typename T>
void BlockAttentionBackwardRef(const T* dout, const T* q, const T* k, const T* v, const T* lse, const T* delta,
                               T* dq, T* dk, T* dv, const BlockAttentionShape& s) {
  const int64_t H = s.heads, D = s.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < s.q_len; ++t) {
        const double l = static_cast<double>(lse[(b * H + h) * s.q_len + t]);
        if (std::isinf(l)) continue;  // no visible key anywhere: no gradient
        const double dl = static_cast<double>(delta[(b * H + h) * s.q_len + t]);
        const T* qt = q + (b * s.q_len + t) * s.q_stride + h * D;
        const T* dot = dout + (b * s.q_len + t) * s.out_stride + h * D;
        T* dqt = dq + (b * s.q_len + t) * s.q_stride + h * D;
        for (int64_t j = 0; j < VisibleKeys(s, t); ++j) {
          const int64_t at = (b * s.kv_len + j) * s.kv_stride + h * D;
          double score = 0, dp = 0;
          for (int64_t d = 0; d < D; ++d) {
            score += static_cast<double>(qt[d]) * static_cast<double>(k[at + d]);
            dp += static_cast<double>(dot[d]) * static_cast<double>(v[at + d]);
          }
          const double p = std::exp(score * scale - l);
          const double ds = p * (dp - dl) * scale;
          for (int64_t d = 0; d < D; ++d) {
            dqt[d] = static_cast<T>(static_cast<double>(dqt[d]) + ds * static_cast<double>(k[at + d]));
            dk[at + d] = static_cast<T>(static_cast<double>(dk[at + d]) + ds * static_cast<double>(qt[d]));
            dv[at + d] = static_cast<T>(static_cast<double>(dv[at + d]) + p * static_cast<double>(dot[d]));
          }
        }
      }
    }
  }
}

template <typename T>
void BlockAttentionDelta(const T* dout, const T* out, T* delta, const BlockAttentionShape& s) {
  const int64_t H = s.heads, D = s.head_dim;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < s.q_len; ++t) {
        const int64_t at = (b * s.q_len + t) * s.out_stride + h * D;
        double sum = 0;
        for (int64_t d = 0; d < D; ++d) sum += static_cast<double>(dout[at + d]) * static_cast<double>(out[at + d]);
        delta[(b * H + h) * s.q_len + t] = static_cast<T>(sum);
      }
    }
  }
}

template void BlockAttentionForwardRef<float>(const float*, const float*, const float*, float*, float*, bool,
                                              const BlockAttentionShape&);
template void BlockAttentionForwardRef<double>(const double*, const double*, const double*, double*, double*, bool,
                                               const BlockAttentionShape&);
template void BlockAttentionBackwardRef<float>(const float*, const float*, const float*, const float*, const float*,
                                               const float*, float*, float*, float*, const BlockAttentionShape&);
template void BlockAttentionBackwardRef<double>(const double*, const double*, const double*, const double*,
                                                const double*, const double*, double*, double*, double*,
                                                const BlockAttentionShape&);
template void BlockAttentionDelta<float>(const float*, const float*, float*, const BlockAttentionShape&);
template void BlockAttentionDelta<double>(const double*, const double*, double*, const BlockAttentionShape&);

namespace {
void BlockForwardRefTwin(const float* q, const float* k, const float* v, float* out, float* lse, bool first,
                         const BlockAttentionShape& shape, Stream) {
  BlockAttentionForwardRef(q, k, v, out, lse, first, shape);
}
void BlockBackwardRefTwin(const float* dout, const float* q, const float* k, const float* v, const float* lse,
                          const float* delta, float* dq, float* dk, float* dv, const BlockAttentionShape& shape,
                          Stream) {
  BlockAttentionBackwardRef(dout, q, k, v, lse, delta, dq, dk, dv, shape);
}
void BlockDeltaRefTwin(const float* dout, const float* out, float* delta, const BlockAttentionShape& shape, Stream) {
  BlockAttentionDelta(dout, out, delta, shape);
}
const Registrar<BlockAttentionDeltaFn> kBlockDelta(BlockAttentionDeltaTable(), Backend::kRef, DType::kF32,
                                                   &BlockDeltaRefTwin);
const Registrar<BlockAttentionForwardFn> kBlockForward(BlockAttentionForwardTable(), Backend::kRef, DType::kF32,
                                                       &BlockForwardRefTwin);
const Registrar<BlockAttentionBackwardFn> kBlockBackward(BlockAttentionBackwardTable(), Backend::kRef, DType::kF32,
                                                         &BlockBackwardRefTwin);

void ForwardRefTwin(const float* qkv, float* out, float* probs, const AttentionShape& shape,
                    Stream) {
  AttentionForwardRef(qkv, out, probs, shape);
}
void BackwardRefTwin(const float* dout, const float* qkv, const float* probs, float* dqkv,
                     const AttentionShape& shape, Accumulate accumulate, Stream) {
  AttentionBackwardRef(dout, qkv, probs, dqkv, shape, accumulate);
}
void DecodeRefTwin(const float* q, const float* k_cache, const float* v_cache, float* out,
                   int64_t batch, const int32_t* position, int64_t max_len, int64_t heads,
                   int64_t head_dim, Stream) {
  if (batch * heads * head_dim == 0) return;
  const int64_t pos = position[0];
  COL_CHECK_MSG(pos >= 0 && pos < max_len, "attention_decode: position outside the cache");
  AttentionDecodeRef(q, k_cache, v_cache, out, batch, pos + 1, max_len, heads, head_dim);
}
const Registrar<AttentionForwardFn> kForward(AttentionForwardTable(), Backend::kRef,
                                             DType::kF32, &ForwardRefTwin);
const Registrar<AttentionBackwardFn> kBackward(AttentionBackwardTable(), Backend::kRef,
                                               DType::kF32, &BackwardRefTwin);
const Registrar<AttentionDecodeFn> kDecode(AttentionDecodeTable(), Backend::kRef, DType::kF32,
                                           &DecodeRefTwin);
}  // namespace

}  // namespace colossal::kernels
