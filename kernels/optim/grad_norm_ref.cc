// Sum-of-squares specification: one double accumulator, in index order; also defines
// the dispatch table and registers the float reference as Backend::kRef.
#include "kernels/optim/grad_norm.h"

namespace colossal::kernels {

Dispatch<SumSquaresFn>& SumSquaresTable() {
  static Dispatch<SumSquaresFn> table("sum_squares");
  return table;
}

template <typename T>
void SumSquaresRef(const T* x, int64_t n, double* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  *out = sum;
}

template void SumSquaresRef<float>(const float*, int64_t, double*);
template void SumSquaresRef<double>(const double*, int64_t, double*);

namespace {
void SumSquaresRefTwin(const float* x, int64_t n, double* out, Stream) {
  SumSquaresRef(x, n, out);
}
const Registrar<SumSquaresFn> kSumSquares(SumSquaresTable(), Backend::kRef, DType::kF32,
                                          &SumSquaresRefTwin);
}  // namespace

}  // namespace colossal::kernels
