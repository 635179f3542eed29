// Matmul specification: naive triple loop accumulating in double, instantiated for
// float and double; also defines the dispatch tables and registers the float ref twin.
// The fast twin lives in matmul_cpu.cc.
#include "kernels/matmul/matmul.h"

#include "runtime/base/check.h"

namespace colossal::kernels {

Dispatch<MatmulFn>& MatmulTable() {
  static Dispatch<MatmulFn> table("matmul");
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

namespace {
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
