// Matmul specification: naive triple loop accumulating in double, instantiated for
// float and double; also defines the dispatch tables and registers the float ref twin.
// The fast twin lives in matmul_cpu.cc.
#include "kernels/matmul/matmul.h"

#include <vector>

#include "kernels/common/half.h"
#include "runtime/base/check.h"

namespace colossal::kernels {

Dispatch<MatmulFn>& MatmulTable() {
  static Dispatch<MatmulFn> table("matmul");
  return table;
}

Dispatch<MatmulLowFn>& MatmulLowTable() {
  static Dispatch<MatmulLowFn> table("matmul_low");
  return table;
}

Dispatch<BiasGradFn>& BiasGradTable() {
  static Dispatch<BiasGradFn> table("bias_grad");
  return table;
}

template <typename T>
void MatmulRef(const MatmulArgsT<T>& args) {
  const auto& p = args;
  COL_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0);
  // A leading dimension matters only when its matrix holds elements.
  if (p.m > 0 && p.k > 0) COL_CHECK(p.lda >= (p.trans_a == Trans::kNo ? p.k : p.m));
  if (p.k > 0 && p.n > 0) COL_CHECK(p.ldb >= (p.trans_b == Trans::kNo ? p.n : p.k));
  if (p.m > 0 && p.n > 0) COL_CHECK(p.ldc >= p.n);
  // op(A)[i, l] and op(B)[l, j] as stored.
  auto a_at = [&](int64_t i, int64_t l) -> double {
    return p.trans_a == Trans::kNo ? p.a[i * p.lda + l] : p.a[l * p.lda + i];
  };
  auto b_at = [&](int64_t l, int64_t j) -> double {
    return p.trans_b == Trans::kNo ? p.b[l * p.ldb + j] : p.b[j * p.ldb + l];
  };
  const double alpha = p.alpha;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double sum = 0;
      for (int64_t l = 0; l < p.k; ++l) sum += a_at(i, l) * b_at(l, j);
      double out = alpha * sum;
      if (p.bias != nullptr) out += static_cast<double>(p.bias[j]);
      T& c = p.c[i * p.ldc + j];
      if (p.accumulate == Accumulate::kYes) out += static_cast<double>(c);
      c = static_cast<T>(out);
    }
  }
}

template <typename T>
void BiasGradRef(const T* dy, int64_t m, int64_t n, int64_t ld, T* db, Accumulate accumulate) {
  COL_CHECK(m >= 0 && n >= 0);
  if (m > 0) COL_CHECK(ld >= n);
  for (int64_t j = 0; j < n; ++j) {
    double sum = accumulate == Accumulate::kYes ? static_cast<double>(db[j]) : 0.0;
    for (int64_t i = 0; i < m; ++i) sum += static_cast<double>(dy[i * ld + j]);
    db[j] = static_cast<T>(sum);
  }
}

template void MatmulRef<float>(const MatmulArgsT<float>&);
template void MatmulRef<double>(const MatmulArgsT<double>&);
template void BiasGradRef<float>(const float*, int64_t, int64_t, int64_t, float*, Accumulate);
template void BiasGradRef<double>(const double*, int64_t, int64_t, int64_t, double*,
                                  Accumulate);

void MatmulLowRef(DType dtype, const MatmulLowArgs& p) {
  COL_CHECK(dtype == DType::kBF16 || dtype == DType::kF16);
  // A and B widened (exactly) to double over their stored extents, then the double GEMM.
  auto widen = [&](const uint16_t* x, int64_t rows, int64_t cols, int64_t ld) {
    std::vector<double> out(rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0);
    for (size_t i = 0; i < out.size(); ++i) out[i] = dtype == DType::kBF16 ? Bf16ToF32(x[i]) : F16ToF32(x[i]);
    return out;
  };
  const bool ta = p.trans_a == Trans::kYes, tb = p.trans_b == Trans::kYes;
  const std::vector<double> a = widen(p.a, ta ? p.k : p.m, ta ? p.m : p.k, p.lda);
  const std::vector<double> b = widen(p.b, tb ? p.n : p.k, tb ? p.k : p.n, p.ldb);
  const int64_t c_size = p.m > 0 && p.n > 0 ? (p.m - 1) * p.ldc + p.n : 0;
  std::vector<double> c(p.c, p.c + c_size);
  std::vector<double> bias;
  if (p.bias != nullptr) bias.assign(p.bias, p.bias + p.n);
  MatmulArgsT<double> d;
  d.trans_a = p.trans_a, d.trans_b = p.trans_b;
  d.m = p.m, d.n = p.n, d.k = p.k;
  d.a = a.data(), d.lda = p.lda, d.b = b.data(), d.ldb = p.ldb;
  d.c = c.data(), d.ldc = p.ldc;
  d.bias = p.bias != nullptr ? bias.data() : nullptr;
  d.alpha = p.alpha, d.accumulate = p.accumulate;
  MatmulRef(d);
  // Only C's elements change; its padding between rows keeps what was there.
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) p.c[i * p.ldc + j] = static_cast<float>(c[i * p.ldc + j]);
  }
}

namespace {
template <DType D>
void MatmulLowRefTwin(const MatmulLowArgs& args, Stream) {
  MatmulLowRef(D, args);
}
const Registrar<MatmulLowFn> kMatmulLowBf16(MatmulLowTable(), Backend::kRef, DType::kBF16,
                                            &MatmulLowRefTwin<DType::kBF16>);
const Registrar<MatmulLowFn> kMatmulLowF16(MatmulLowTable(), Backend::kRef, DType::kF16,
                                           &MatmulLowRefTwin<DType::kF16>);

void MatmulRefTwin(const MatmulArgs& args, Stream) { MatmulRef(args); }
void BiasGradRefTwin(const float* dy, int64_t m, int64_t n, int64_t ld, float* db,
                     Accumulate accumulate, Stream) {
  BiasGradRef(dy, m, n, ld, db, accumulate);
}
const Registrar<MatmulFn> kMatmul(MatmulTable(), Backend::kRef, DType::kF32, &MatmulRefTwin);
const Registrar<BiasGradFn> kBiasGrad(BiasGradTable(), Backend::kRef, DType::kF32,
                                      &BiasGradRefTwin);
}  // namespace

}  // namespace colossal::kernels
