// CUDA twins of the optimizer kernels (adamw.h, sgd.h, lamb.h, lars.h, grad_norm.h): one
// fused elementwise pass per step or phase, plus deterministic double sums. Does not hold
// the host-side steps between phases (LambTrustRatio, LarsLocalLr) nor multi-tensor steps.
//
// Walk: a segment [0, n) is split into a scalar head of 0-3 elements that brings every
// pointer to a 16-byte boundary (when all share one misalignment), groups of 4 elements
// (float4 loads and stores; four scalar ones when the pointers' alignments differ) and a
// scalar tail of 0-3. Blocks of 256 threads run a grid-stride loop over the groups; global
// threads 0-2 also take the head and the tail elements. Every element is read before it
// is written at the same index by the same thread, and no thread touches another's.
//
// Sums (LambMoments, LarsNorms, SumSquares): the same walk, each thread adding its
// elements' terms in double in a fixed order (head, groups in stride order, tail); the
// block adds its threads by warp butterflies (__shfl_xor_sync) and one warp over the warp
// sums, and writes K partials. At most 1024 blocks (a count fixed by n and alignment
// only); with more than one, the partials go to stream-ordered scratch
// (cudaMallocAsync/cudaFreeAsync) and a single block adds them the same way into `sums`.
// So the sums are bit-identical run to run, with no atomics. Outputs are overwritten (n = 0
// writes zeros).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "kernels/common/cuda_backend.h"
#include "kernels/optim/adamw.h"
#include "kernels/optim/grad_norm.h"
#include "kernels/optim/lamb.h"
#include "kernels/optim/lars.h"
#include "kernels/optim/sgd.h"

namespace colossal::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// Reduction grid cap: about one full wave of 256-thread blocks on an H100/H200 (132 SMs x
// 8); fixed, so the partials' order never depends on the device.
constexpr int64_t kMaxSumBlocks = 1024;

// The split of [0, n) described above.
struct Span {
  int64_t n = 0;
  int64_t head = 0;    // scalar elements [0, head), head <= 3
  int64_t groups = 0;  // groups of 4 from `head`
  bool vec = false;    // groups load and store as float4
};

Span SpanOf(int64_t n, std::initializer_list<const void*> ptrs) {
  Span s;
  if (n <= 0) return s;
  s.n = n;
  const uintptr_t low = reinterpret_cast<uintptr_t>(*ptrs.begin()) & 15;
  bool same = true;
  for (const void* p : ptrs) same = same && (reinterpret_cast<uintptr_t>(p) & 15) == low;
  if (same && low % 4 == 0) {
    s.vec = true;
    s.head = static_cast<int64_t>(((16 - low) & 15) / 4);
    if (s.head > n) s.head = n;
  }
  s.groups = (n - s.head) / 4;
  return s;
}

struct F4 {
  float v[4];
};

__device__ inline F4 Load4(const float* p, int64_t i, bool vec) {
  if (vec) {
    const float4 x = *reinterpret_cast<const float4*>(p + i);
    return {{x.x, x.y, x.z, x.w}};
  }
  return {{p[i], p[i + 1], p[i + 2], p[i + 3]}};
}

__device__ inline void Store4(float* p, int64_t i, const F4& x, bool vec) {
  if (vec) {
    *reinterpret_cast<float4*>(p + i) = make_float4(x.v[0], x.v[1], x.v[2], x.v[3]);
  } else {
    for (int k = 0; k < 4; ++k) p[i + k] = x.v[k];
  }
}

// Calls body(i, /*four=*/bool) for the elements this thread owns, in a fixed order: the
// head element `tid`, the groups tid, tid + stride, ..., then the tail element `tid`.
template <typename Body>
__device__ inline void Walk(const Span& s, Body&& body) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (tid < s.head) body(tid, false);
  for (int64_t q = tid; q < s.groups; q += stride) body(s.head + 4 * q, true);
  const int64_t t = s.head + 4 * s.groups + tid;
  if (t < s.n) body(t, false);
}

// Op::One(i) updates element i; Op::Four(i, vec) elements i..i+3.
template <typename Op>
__global__ void __launch_bounds__(kThreads) MapKernel(Span s, Op op) {
  Walk(s, [&](int64_t i, bool four) {
    if (four) {
      op.Four(i, s.vec);
    } else {
      op.One(i);
    }
  });
}

template <typename Op>
void Map(const Span& s, const Op& op, Stream stream) {
  if (s.n <= 0) return;
  const int64_t work = s.groups > 0 ? s.groups : 1;
  MapKernel<<<cuda::GridFor(work, kThreads), kThreads, 0, cuda::StreamOf(stream)>>>(s, op);
  COL_CUDA_LAUNCHED();
}

__device__ inline double WarpSum(double x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// acc[k] summed over the block; the result is valid in warp 0 (every lane, since the
// butterfly's a + b == b + a). Called once per kernel (its shared memory is not reused).
template <int K>
__device__ inline void BlockSum(double (&acc)[K]) {
  __shared__ double warp_sums[K][kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int k = 0; k < K; ++k) acc[k] = WarpSum(acc[k]);
  if (lane == 0) {
    for (int k = 0; k < K; ++k) warp_sums[k][warp] = acc[k];
  }
  __syncthreads();
  if (warp == 0) {
    for (int k = 0; k < K; ++k) acc[k] = WarpSum(lane < kWarps ? warp_sums[k][lane] : 0.0);
  }
}

// Op::One(i, acc) / Op::Four(i, vec, acc) do their elements' work and add their terms to
// acc[0..K). Writes the block's K sums to out[blockIdx.x·K + k].
template <int K, typename Op>
__global__ void __launch_bounds__(kThreads) SumKernel(Span s, Op op, double* out) {
  double acc[K];
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  Walk(s, [&](int64_t i, bool four) {
    if (four) {
      op.Four(i, s.vec, acc);
    } else {
      op.One(i, acc);
    }
  });
  BlockSum<K>(acc);
  if (threadIdx.x == 0) {
    for (int k = 0; k < K; ++k) out[static_cast<int64_t>(blockIdx.x) * K + k] = acc[k];
  }
}

// One block: out[k] = Σ over b of partials[b·K + k], thread t taking b = t, t + 256, ...
template <int K>
__global__ void __launch_bounds__(kThreads) FinishKernel(const double* partials, int blocks, double* out) {
  double acc[K];
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int b = threadIdx.x; b < blocks; b += kThreads) {
    for (int k = 0; k < K; ++k) acc[k] += partials[static_cast<int64_t>(b) * K + k];
  }
  BlockSum<K>(acc);
  if (threadIdx.x == 0) {
    for (int k = 0; k < K; ++k) out[k] = acc[k];
  }
}

// sums[0..K) = the K sums of `op` over the span (device memory, overwritten).
template <int K, typename Op>
void Sums(const Span& s, const Op& op, double* sums, Stream stream) {
  const cudaStream_t cs = cuda::StreamOf(stream);
  if (s.n <= 0) {
    COL_CUDA_CHECK(cudaMemsetAsync(sums, 0, K * sizeof(double), cs));  // all-zero bits: 0.0
    return;
  }
  const unsigned blocks = cuda::GridFor(s.groups > 0 ? s.groups : 1, kThreads, kMaxSumBlocks);
  if (blocks == 1) {
    SumKernel<K><<<1, kThreads, 0, cs>>>(s, op, sums);
    COL_CUDA_LAUNCHED();
    return;
  }
  double* partials = nullptr;
  COL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partials), blocks * K * sizeof(double), cs));
  SumKernel<K><<<blocks, kThreads, 0, cs>>>(s, op, partials);
  COL_CUDA_LAUNCHED();
  FinishKernel<K><<<1, kThreads, 0, cs>>>(partials, static_cast<int>(blocks), sums);
  COL_CUDA_LAUNCHED();
  COL_CUDA_CHECK(cudaFreeAsync(partials, cs));
}

// ---- AdamW: read w, g, m, v; write w, m, v (28 bytes per element). ----

struct AdamWOp {
  float* w;
  const float* g;
  float* m;
  float* v;
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size, inv_sqrt_bc2, decay, eps, scale;

  // m̂/(√v̂ + eps) = (m/bc1) / (√v·(1/√bc2) + eps), step_size = lr/bc1.
  __device__ void Element(float& wi, float gi, float& mi, float& vi) const {
    const float gs = scale * gi;
    mi = beta1 * mi + one_minus_beta1 * gs;
    vi = beta2 * vi + one_minus_beta2 * gs * gs;
    wi = wi * decay - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
  __device__ void One(int64_t i) const {
    float wi = w[i], mi = m[i], vi = v[i];
    Element(wi, g[i], mi, vi);
    w[i] = wi, m[i] = mi, v[i] = vi;
  }
  __device__ void Four(int64_t i, bool vec) const {
    F4 w4 = Load4(w, i, vec), m4 = Load4(m, i, vec), v4 = Load4(v, i, vec);
    const F4 g4 = Load4(g, i, vec);
    for (int k = 0; k < 4; ++k) Element(w4.v[k], g4.v[k], m4.v[k], v4.v[k]);
    Store4(w, i, w4, vec);
    Store4(m, i, m4, vec);
    Store4(v, i, v4, vec);
  }
};

void AdamWStepCuda(const AdamWArgs& a, Stream stream) {
  COL_CHECK(a.step >= 1);
  if (a.n <= 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), static_cast<double>(a.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), static_cast<double>(a.step));
  const AdamWOp op{a.w,
                   a.g,
                   a.m,
                   a.v,
                   a.beta1,
                   static_cast<float>(1.0 - a.beta1),
                   a.beta2,
                   static_cast<float>(1.0 - a.beta2),
                   static_cast<float>(static_cast<double>(a.lr) / bc1),
                   static_cast<float>(1.0 / std::sqrt(bc2)),
                   static_cast<float>(1.0 - static_cast<double>(a.lr) * static_cast<double>(a.weight_decay)),
                   a.eps,
                   a.grad_scale};
  Map(SpanOf(a.n, {a.w, a.g, a.m, a.v}), op, stream);
}

// ---- SGD: read w, g, buf (not buf when μ = 0); write w, buf (20 bytes per element). ----

template <bool kNesterov, bool kMomentum>
struct SgdOp {
  float* w;
  const float* g;
  float* buf;
  float lr, mu, wd, scale;

  // Returns the new buf; b is the old one (unread when !kMomentum).
  __device__ float Element(float& wi, float gi, float b) const {
    const float gs = scale * gi + wd * wi;
    const float bi = kMomentum ? mu * b + gs : gs;
    wi = wi - lr * (kNesterov ? gs + mu * bi : bi);
    return bi;
  }
  __device__ void One(int64_t i) const {
    float wi = w[i];
    buf[i] = Element(wi, g[i], kMomentum ? buf[i] : 0.0f);
    w[i] = wi;
  }
  __device__ void Four(int64_t i, bool vec) const {
    F4 w4 = Load4(w, i, vec), b4 = {{0.0f, 0.0f, 0.0f, 0.0f}};
    const F4 g4 = Load4(g, i, vec);
    if (kMomentum) b4 = Load4(buf, i, vec);
    for (int k = 0; k < 4; ++k) b4.v[k] = Element(w4.v[k], g4.v[k], b4.v[k]);
    Store4(w, i, w4, vec);
    Store4(buf, i, b4, vec);
  }
};

template <bool kNesterov, bool kMomentum>
void SgdRun(const SgdArgs& a, Stream stream) {
  const SgdOp<kNesterov, kMomentum> op{a.w, a.g, a.buf, a.lr, a.momentum, a.weight_decay, a.grad_scale};
  Map(SpanOf(a.n, {a.w, a.g, a.buf}), op, stream);
}

void SgdStepCuda(const SgdArgs& a, Stream stream) {
  if (a.n <= 0) return;
  const bool momentum = a.momentum != 0.0f;
  if (momentum && a.nesterov == Nesterov::kYes) {
    SgdRun<true, true>(a, stream);
  } else if (momentum) {
    SgdRun<false, true>(a, stream);
  } else {
    SgdRun<false, false>(a, stream);  // μ = 0: Nesterov's g' + μ·buf is g' too
  }
}

// ---- LAMB. ----

// u = m̂/(√v̂ + eps) + wd·w with every rounding pinned (the _rn intrinsics are never fused
// into FMAs), so both phases form the very same u from the same m, v, w.
__device__ inline float LambUpdate(const LambConsts& c, float m, float v, float w) {
  const float den = __fadd_rn(__fmul_rn(__fsqrt_rn(v), c.inv_sqrt_bc2), c.eps);
  return __fadd_rn(__fdiv_rn(__fmul_rn(m, c.inv_bc1), den), __fmul_rn(c.wd, w));
}

// Phase 1: read w, g, m, v; write m, v (24 bytes per element); acc += {w², u²}.
struct LambMomentsOp {
  const float* w;
  const float* g;
  float* m;
  float* v;
  LambConsts c;

  __device__ void Element(float wi, float gi, float& mi, float& vi, double (&acc)[2]) const {
    const float gs = c.scale * gi;
    mi = c.beta1 * mi + c.one_minus_beta1 * gs;
    vi = c.beta2 * vi + c.one_minus_beta2 * gs * gs;
    const double ui = LambUpdate(c, mi, vi, wi);
    acc[0] += static_cast<double>(wi) * static_cast<double>(wi);
    acc[1] += ui * ui;
  }
  __device__ void One(int64_t i, double (&acc)[2]) const {
    float mi = m[i], vi = v[i];
    Element(w[i], g[i], mi, vi, acc);
    m[i] = mi, v[i] = vi;
  }
  __device__ void Four(int64_t i, bool vec, double (&acc)[2]) const {
    const F4 w4 = Load4(w, i, vec), g4 = Load4(g, i, vec);
    F4 m4 = Load4(m, i, vec), v4 = Load4(v, i, vec);
    for (int k = 0; k < 4; ++k) Element(w4.v[k], g4.v[k], m4.v[k], v4.v[k], acc);
    Store4(m, i, m4, vec);
    Store4(v, i, v4, vec);
  }
};

void LambMomentsCuda(const LambArgs& a, double* sums, Stream stream) {
  const LambMomentsOp op{a.w, a.g, a.m, a.v, LambConstsOf(a)};
  Sums<2>(SpanOf(a.n, {a.w, a.g, a.m, a.v}), op, sums, stream);
}

// Phase 2: read w, m, v; write w (16 bytes per element).
struct LambApplyOp {
  float* w;
  const float* m;
  const float* v;
  LambConsts c;
  float step;  // lr·r

  __device__ void One(int64_t i) const {
    const float wi = w[i];
    w[i] = wi - step * LambUpdate(c, m[i], v[i], wi);
  }
  __device__ void Four(int64_t i, bool vec) const {
    F4 w4 = Load4(w, i, vec);
    const F4 m4 = Load4(m, i, vec), v4 = Load4(v, i, vec);
    for (int k = 0; k < 4; ++k) w4.v[k] = w4.v[k] - step * LambUpdate(c, m4.v[k], v4.v[k], w4.v[k]);
    Store4(w, i, w4, vec);
  }
};

void LambApplyCuda(const LambArgs& a, float trust_ratio, Stream stream) {
  const LambConsts c = LambConstsOf(a);
  if (a.n <= 0) return;
  const LambApplyOp op{a.w, a.m, a.v, c, static_cast<float>(static_cast<double>(a.lr) * trust_ratio)};
  Map(SpanOf(a.n, {a.w, a.m, a.v}), op, stream);
}

// ---- LARS. ----

// Phase 1: read w, g (8 bytes per element); acc += {w², (grad_scale·g)²}, the product
// grad_scale·g exact in double (two 24-bit significands) as in the reference.
struct LarsNormsOp {
  const float* w;
  const float* g;
  double scale;

  __device__ void Element(float wi, float gi, double (&acc)[2]) const {
    const double gs = scale * static_cast<double>(gi);
    acc[0] += static_cast<double>(wi) * static_cast<double>(wi);
    acc[1] += gs * gs;
  }
  __device__ void One(int64_t i, double (&acc)[2]) const { Element(w[i], g[i], acc); }
  __device__ void Four(int64_t i, bool vec, double (&acc)[2]) const {
    const F4 w4 = Load4(w, i, vec), g4 = Load4(g, i, vec);
    for (int k = 0; k < 4; ++k) Element(w4.v[k], g4.v[k], acc);
  }
};

void LarsNormsCuda(const LarsArgs& a, double* sums, Stream stream) {
  const LarsNormsOp op{a.w, a.g, static_cast<double>(a.grad_scale)};
  Sums<2>(SpanOf(a.n, {a.w, a.g}), op, sums, stream);
}

// Phase 2: read w, g, buf (not buf when μ = 0); write w, buf (20 bytes per element).
template <bool kMomentum>
struct LarsApplyOp {
  float* w;
  const float* g;
  float* buf;
  float mu, wd, scale, local_lr;

  __device__ float Element(float& wi, float gi, float b) const {
    const float gs = scale * gi + wd * wi;
    const float bi = kMomentum ? mu * b + local_lr * gs : local_lr * gs;
    wi = wi - bi;
    return bi;
  }
  __device__ void One(int64_t i) const {
    float wi = w[i];
    buf[i] = Element(wi, g[i], kMomentum ? buf[i] : 0.0f);
    w[i] = wi;
  }
  __device__ void Four(int64_t i, bool vec) const {
    F4 w4 = Load4(w, i, vec), b4 = {{0.0f, 0.0f, 0.0f, 0.0f}};
    const F4 g4 = Load4(g, i, vec);
    if (kMomentum) b4 = Load4(buf, i, vec);
    for (int k = 0; k < 4; ++k) b4.v[k] = Element(w4.v[k], g4.v[k], b4.v[k]);
    Store4(w, i, w4, vec);
    Store4(buf, i, b4, vec);
  }
};

template <bool kMomentum>
void LarsApplyRun(const LarsArgs& a, float local_lr, Stream stream) {
  const LarsApplyOp<kMomentum> op{a.w, a.g, a.buf, a.momentum, a.weight_decay, a.grad_scale, local_lr};
  Map(SpanOf(a.n, {a.w, a.g, a.buf}), op, stream);
}

void LarsApplyCuda(const LarsArgs& a, float local_lr, Stream stream) {
  if (a.n <= 0) return;
  if (a.momentum != 0.0f) {
    LarsApplyRun<true>(a, local_lr, stream);
  } else {
    LarsApplyRun<false>(a, local_lr, stream);
  }
}

// ---- SumSquares: read x (4 bytes per element); acc += x² (exact in double). ----

struct SumSquaresOp {
  const float* x;

  __device__ void One(int64_t i, double (&acc)[1]) const {
    const double xi = x[i];
    acc[0] += xi * xi;
  }
  __device__ void Four(int64_t i, bool vec, double (&acc)[1]) const {
    const F4 x4 = Load4(x, i, vec);
    for (int k = 0; k < 4; ++k) {
      const double xi = x4.v[k];
      acc[0] += xi * xi;
    }
  }
};

void SumSquaresCuda(const float* x, int64_t n, double* out, Stream stream) {
  Sums<1>(SpanOf(n, {x}), SumSquaresOp{x}, out, stream);
}

const Registrar<AdamWStepFn> kAdamW(AdamWStepTable(), Backend::kCuda, DType::kF32, &AdamWStepCuda);
const Registrar<SgdStepFn> kSgd(SgdStepTable(), Backend::kCuda, DType::kF32, &SgdStepCuda);
const Registrar<LambMomentsFn> kLambMoments(LambMomentsTable(), Backend::kCuda, DType::kF32, &LambMomentsCuda);
const Registrar<LambApplyFn> kLambApply(LambApplyTable(), Backend::kCuda, DType::kF32, &LambApplyCuda);
const Registrar<LarsNormsFn> kLarsNorms(LarsNormsTable(), Backend::kCuda, DType::kF32, &LarsNormsCuda);
const Registrar<LarsApplyFn> kLarsApply(LarsApplyTable(), Backend::kCuda, DType::kF32, &LarsApplyCuda);
const Registrar<SumSquaresFn> kSumSquares(SumSquaresTable(), Backend::kCuda, DType::kF32, &SumSquaresCuda);

}  // namespace
}  // namespace colossal::kernels
