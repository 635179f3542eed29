// Matmul: C (=|+=) alpha * op(A) · op(B) + bias, row-major, fp32, with fused bias;
// and the bias gradient. The CPU twin calls oneDNN's dnnl_sgemm (chosen over OpenBLAS
// by matmul_bench on this machine, see kernels/matmul/README.md); the reference is a
// naive triple loop accumulating in double.
//
// Shapes: op(A) is [m, k], op(B) is [k, n], C is [m, n]; op(X) = X or Xᵀ per Trans.
// Leading dimensions are row strides of the matrices as stored (A stored [m, k] with
// lda >= k when trans_a == kNo, stored [k, m] with lda >= m when kYes; same for B).
// bias (optional, [n]) is added to every row of C.
// Accumulate::kNo: C = alpha·op(A)op(B) + bias.  kYes: C += alpha·op(A)op(B) + bias.
// m, n or k may be 0 (k == 0 gives C = bias, or C unchanged + bias when accumulating).
// Threading: the CPU twin uses the calling thread's OpenMP team; called from inside a
// parallel region it runs on the calling thread alone (attention relies on this).
//
// Tolerance against the reference (fp32 inputs in [-1, 1]): rtol =
// Fp32ReductionRtol(k) · max(1, |alpha|), atol = rtol · max(1, sqrt(k)/3): the GEMM sums
// k products in fp32 with blocked order. A sum's rounding error scales with its partial
// sums (RMS sqrt(k)/3 for such inputs), not with its final value, so elements that
// cancel to near 0 need the absolute term in those units.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/dispatch.h"
#include "kernels/common/kernel.h"
#include "kernels/common/tolerance.h"

namespace colossal::kernels {

enum class Trans : uint8_t { kNo, kYes };

// The GEMM's contract above (inputs in [-1, 1]): relative Fp32ReductionRtol(k) scaled by
// |alpha|, absolute the same in units of the partial sums' RMS sqrt(k)/3.
inline Tolerance MatmulTolerance(int64_t k, float alpha) {
  const double a = alpha < 0 ? -static_cast<double>(alpha) : static_cast<double>(alpha);
  const double rtol = Fp32ReductionRtol(k) * (a > 1.0 ? a : 1.0);
  const double units = std::sqrt(static_cast<double>(k)) / 3.0;
  return {rtol * (units > 1.0 ? units : 1.0), rtol};
}
// BiasGrad sums a column in double and rounds once to fp32.
inline Tolerance BiasGradTolerance() { return {1e-30, 1.2e-7}; }

// T: C's and the bias's element type; In: A's and B's (T, or uint16_t bit patterns of
// bf16 / fp16 for the mixed-precision GEMM below).
template <typename T, typename In = T>
struct MatmulArgsT {
  Trans trans_a = Trans::kNo;
  Trans trans_b = Trans::kNo;
  int64_t m = 0, n = 0, k = 0;
  const In* a = nullptr;
  int64_t lda = 0;
  const In* b = nullptr;
  int64_t ldb = 0;
  T* c = nullptr;
  int64_t ldc = 0;
  const T* bias = nullptr;  // [n] or nullptr
  float alpha = 1.0f;
  Accumulate accumulate = Accumulate::kNo;
};
using MatmulArgs = MatmulArgsT<float>;

using MatmulFn = void(const MatmulArgs& args, Stream stream);
Dispatch<MatmulFn>& MatmulTable();

// Mixed precision: A and B in a 16-bit type (the table's dtype, kBF16 or kF16), C and the
// bias fp32, the products and sums in fp32: the GEMM of train.precision bf16 / fp16. A
// product of two bf16 (8-bit significands) or two fp16 (11-bit) values is exact in fp32,
// so the contract's rounding is the fp32 GEMM's: MatmulTolerance(k, alpha) against the
// reference over the same 16-bit inputs. The CPU twin runs oneDNN's bf16 matmul where the
// CPU has AVX512-BF16 or AMX, and elsewhere widens A and B to fp32 (exact) and runs the
// fp32 GEMM; the CUDA twin is cuBLASLt with 16-bit inputs and fp32 compute.
using MatmulLowArgs = MatmulArgsT<float, uint16_t>;
using MatmulLowFn = void(const MatmulLowArgs& args, Stream stream);
Dispatch<MatmulLowFn>& MatmulLowTable();

// db[j] (=|+=) sum_i dy[i, j] for dy [m, n] with row stride ld (>= n).
using BiasGradFn = void(const float* dy, int64_t m, int64_t n, int64_t ld, float* db,
                        Accumulate accumulate, Stream stream);
Dispatch<BiasGradFn>& BiasGradTable();

// The specification (double accumulation); instantiated for float and double.
template <typename T>
void MatmulRef(const MatmulArgsT<T>& args);
// The mixed-precision specification: A and B read as `dtype`, then MatmulRef in double.
void MatmulLowRef(DType dtype, const MatmulLowArgs& args);
template <typename T>
void BiasGradRef(const T* dy, int64_t m, int64_t n, int64_t ld, T* db, Accumulate accumulate);

// Convenience entry points through the dispatch table.
inline void Matmul(const MatmulArgs& args, Stream stream = {}) {
  MatmulTable().Get(stream.backend, DType::kF32)(args, stream);
}
inline void MatmulLow(DType dtype, const MatmulLowArgs& args, Stream stream = {}) {
  MatmulLowTable().Get(stream.backend, dtype)(args, stream);
}
inline void BiasGrad(const float* dy, int64_t m, int64_t n, int64_t ld, float* db,
                     Accumulate accumulate, Stream stream = {}) {
  BiasGradTable().Get(stream.backend, DType::kF32)(dy, m, n, ld, db, accumulate, stream);
}

}  // namespace colossal::kernels
