// Matmul, MatmulLow and BiasGrad CUDA twins.
//
// Matmul is one cublasLtMatmul in fp32 (CUBLAS_COMPUTE_32F: no TF32, so the fp32
// contract holds); MatmulLow the same with bf16 / fp16 A and B (tensor cores, fp32
// accumulation). cuBLASLt is column-major; a row-major C[m, n] is the column-major
// Cᵀ[n, m] = op(B)ᵀ·op(A)ᵀ, so the call passes B's storage as cuBLASLt's A and A's as its
// B, with the transposes as given and m and n swapped; bias[n] is then one value per
// row of the column-major result, which is what CUBLASLT_EPILOGUE_BIAS adds.
// Accumulate::kYes is beta = 1 with D = C. k == 0 (no GEMM to run) is a bias/zero fill.
// The layouts, the descriptor and the heuristic's algorithm are cached per problem
// (shape, transposes, strides, pointer alignments, bias, beta) for the process: a
// training step asks the same few dozen problems every step.
//
// BiasGrad sums each column in double and rounds once (the contract: one fp32
// rounding), deterministically: blocks of 32 columns × 8 row lanes; each block sums a
// segment of rows into double partials (lane sums combined in a fixed order in shared
// memory); with more than one segment a second kernel adds the segments' partials in
// order (scratch from cudaMallocAsync on the stream).
#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/common/cuda_backend.h"
#include "kernels/common/cuda_blas.h"
#include "kernels/matmul/matmul.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

// The largest power of two (up to 256) dividing the address: what the heuristic may assume.
uint32_t AlignmentOf(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 4 && v % a != 0) a /= 2;
  return a;
}

struct GemmKey {
  int trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t align_a, align_b, align_c, align_bias;
  bool bias, beta;
  int device;
  cudaDataType_t ab_type;  // A's and B's: fp32, or bf16 / fp16 for MatmulLow
  auto Tie() const {
    return std::tie(trans_a, trans_b, m, n, k, lda, ldb, ldc, align_a, align_b, align_c, align_bias, bias, beta,
                    device, ab_type);
  }
  bool operator<(const GemmKey& o) const { return Tie() < o.Tie(); }
};

// Descriptors and algorithm of one problem (never freed: a process asks a bounded set).
struct GemmPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

const GemmPlan& PlanFor(const GemmKey& key, const cuda::BlasContext& blas) {
  static std::mutex mu;
  static std::map<GemmKey, GemmPlan> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it != plans.end()) return it->second;
  GemmPlan plan;
  // cuBLASLt's A is our B (row-major [k, n] is column-major n×k: op N; stored [n, k]: op T).
  const cublasOperation_t op_a = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  COL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  COL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
  COL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
  if (key.bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    COL_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    COL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                    sizeof(bias_type)));
  }
  // Stored shapes, column-major: rows × cols with leading dimension ld.
  const uint64_t a_rows = key.trans_b ? key.k : key.n, a_cols = key.trans_b ? key.n : key.k;
  const uint64_t b_rows = key.trans_a ? key.m : key.k, b_cols = key.trans_a ? key.k : key.m;
  COL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, key.ab_type, a_rows, a_cols, key.ldb));
  COL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, key.ab_type, b_rows, b_cols, key.lda));
  COL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, key.n, key.m, key.ldc));

  cublasLtMatmulPreference_t pref = nullptr;
  COL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = blas.workspace_bytes;
  COL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                        sizeof(workspace)));
  const uint32_t aligns[4] = {key.align_b, key.align_a, key.align_c, key.align_c};
  const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; ++i) {
    COL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &aligns[i], sizeof(aligns[i])));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  COL_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(blas.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, 1,
                                                  &result, &found));
  COL_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  COL_CHECK_MSG(found > 0, "cuBLASLt has no algorithm for this GEMM");
  plan.algo = result.algo;
  return plans.emplace(key, plan).first->second;
}

// C = bias / 0 (kNo) or C += bias (kYes; nothing without a bias): the k == 0 GEMM.
__global__ void FillWithBias(float* c, int64_t m, int64_t n, int64_t ldc, const float* bias, bool accumulate) {
  const int64_t total = m * n;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / n, j = e % n;
    const float b = bias != nullptr ? bias[j] : 0.0f;
    float& out = c[i * ldc + j];
    out = accumulate ? out + b : b;
  }
}

// One GEMM with A and B of type `ab_type` (In's), C and bias fp32, fp32 compute.
template <typename In>
void Gemm(const MatmulArgsT<float, In>& p, cudaDataType_t ab_type, Stream stream) {
  COL_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0);
  if (p.m == 0 || p.n == 0) return;
  const bool accumulate = p.accumulate == Accumulate::kYes;
  const cudaStream_t s = cuda::StreamOf(stream);
  if (p.k == 0) {
    if (accumulate && p.bias == nullptr) return;
    FillWithBias<<<cuda::GridFor(p.m * p.n, 256), 256, 0, s>>>(p.c, p.m, p.n, p.ldc, p.bias, accumulate);
    COL_CUDA_LAUNCHED();
    return;
  }
  COL_CHECK(p.lda >= (p.trans_a == Trans::kYes ? p.m : p.k));
  COL_CHECK(p.ldb >= (p.trans_b == Trans::kYes ? p.k : p.n));
  COL_CHECK(p.ldc >= p.n);
  const cuda::BlasContext& blas = cuda::BlasFor(stream);
  int device = 0;
  COL_CUDA_CHECK(cudaGetDevice(&device));
  const GemmKey key{p.trans_a == Trans::kYes ? 1 : 0,
                    p.trans_b == Trans::kYes ? 1 : 0,
                    p.m, p.n, p.k, p.lda, p.ldb, p.ldc,
                    AlignmentOf(p.a), AlignmentOf(p.b), AlignmentOf(p.c),
                    p.bias != nullptr ? AlignmentOf(p.bias) : 0u,
                    p.bias != nullptr, accumulate, device, ab_type};
  const GemmPlan& plan = PlanFor(key, blas);
  // The bias pointer is per call but lives on the descriptor every call of this problem
  // shares; cublasLtMatmul reads it when it enqueues, so setting it and enqueueing are one
  // critical section (two threads multiplying the same problem would race otherwise).
  static std::mutex bias_mu;
  std::unique_lock<std::mutex> lock(bias_mu, std::defer_lock);
  if (p.bias != nullptr) {
    lock.lock();
    COL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                                    sizeof(p.bias)));
  }
  const float alpha = p.alpha, beta = accumulate ? 1.0f : 0.0f;
  COL_CUBLAS_CHECK(cublasLtMatmul(blas.handle, plan.desc, &alpha, p.b, plan.a, p.a, plan.b, &beta, p.c, plan.c, p.c,
                                  plan.c, &plan.algo, blas.workspace, blas.workspace_bytes, s));
}

void MatmulCuda(const MatmulArgs& p, Stream stream) { Gemm(p, CUDA_R_32F, stream); }

template <DType D>
void MatmulLowCuda(const MatmulLowArgs& p, Stream stream) {
  Gemm(p, D == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F, stream);
}

constexpr int kBiasCols = 32, kBiasLanes = 8;
// Rows per segment: enough work per block to hide latency, few enough segments to fill
// the GPU for short, wide dy.
constexpr int64_t kBiasRowsPerSegment = 512;

// partial[seg, j] = Σ dy[i, j] over the segment's rows, in double; lanes combined in
// lane order. With `finish` (one segment) it writes db directly.
__global__ void BiasGradPartial(const float* dy, int64_t m, int64_t n, int64_t ld, double* partial, float* db,
                                bool finish, bool accumulate) {
  __shared__ double lane_sum[kBiasLanes][kBiasCols];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kBiasCols + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kBiasRowsPerSegment;
  const int64_t r1 = r0 + kBiasRowsPerSegment < m ? r0 + kBiasRowsPerSegment : m;
  double sum = 0.0;
  if (j < n) {
    for (int64_t i = r0 + threadIdx.y; i < r1; i += kBiasLanes) sum += static_cast<double>(dy[i * ld + j]);
  }
  lane_sum[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || j >= n) return;
  double total = 0.0;
  for (int l = 0; l < kBiasLanes; ++l) total += lane_sum[l][threadIdx.x];
  if (finish) {
    db[j] = static_cast<float>(accumulate ? static_cast<double>(db[j]) + total : total);
  } else {
    partial[blockIdx.y * n + j] = total;
  }
}

__global__ void BiasGradFinish(const double* partial, int64_t segments, int64_t n, float* db, bool accumulate) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double total = accumulate ? static_cast<double>(db[j]) : 0.0;
    double sum = 0.0;
    for (int64_t s = 0; s < segments; ++s) sum += partial[s * n + j];
    db[j] = static_cast<float>(total + sum);
  }
}

void BiasGradCuda(const float* dy, int64_t m, int64_t n, int64_t ld, float* db, Accumulate accumulate,
                  Stream stream) {
  COL_CHECK(m >= 0 && n >= 0);
  if (n == 0) return;
  if (m > 0) COL_CHECK(ld >= n);
  const bool acc = accumulate == Accumulate::kYes;
  const cudaStream_t s = cuda::StreamOf(stream);
  const int64_t segments = m == 0 ? 1 : (m + kBiasRowsPerSegment - 1) / kBiasRowsPerSegment;
  COL_CHECK(segments <= 65535);
  const dim3 block(kBiasCols, kBiasLanes);
  const dim3 grid(static_cast<unsigned>((n + kBiasCols - 1) / kBiasCols), static_cast<unsigned>(segments));
  if (segments == 1) {
    BiasGradPartial<<<grid, block, 0, s>>>(dy, m, n, ld, nullptr, db, true, acc);
    COL_CUDA_LAUNCHED();
    return;
  }
  void* scratch = nullptr;
  COL_CUDA_CHECK(cudaMallocAsync(&scratch, static_cast<size_t>(segments * n) * sizeof(double), s));
  auto* partial = static_cast<double*>(scratch);
  BiasGradPartial<<<grid, block, 0, s>>>(dy, m, n, ld, partial, db, false, acc);
  COL_CUDA_LAUNCHED();
  BiasGradFinish<<<cuda::GridFor(n, 256), 256, 0, s>>>(partial, segments, n, db, acc);
  COL_CUDA_LAUNCHED();
  COL_CUDA_CHECK(cudaFreeAsync(scratch, s));
}

const Registrar<MatmulFn> kMatmul(MatmulTable(), Backend::kCuda, DType::kF32, &MatmulCuda);
const Registrar<MatmulLowFn> kMatmulBf16(MatmulLowTable(), Backend::kCuda, DType::kBF16,
                                         &MatmulLowCuda<DType::kBF16>);
const Registrar<MatmulLowFn> kMatmulF16(MatmulLowTable(), Backend::kCuda, DType::kF16, &MatmulLowCuda<DType::kF16>);
const Registrar<BiasGradFn> kBiasGrad(BiasGradTable(), Backend::kCuda, DType::kF32, &BiasGradCuda);

}  // namespace
}  // namespace colossal::kernels
