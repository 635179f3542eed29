// Embedding specification: the gather, and the scatter-add summed per element in
// double in the order of i; also defines the dispatch tables and registers the float
// ref twins.
#include <vector>

#include "kernels/embedding/embedding.h"
#include "runtime/base/check.h"

namespace colossal::kernels {

Dispatch<EmbeddingForwardFn>& EmbeddingForwardTable() {
  static Dispatch<EmbeddingForwardFn> table("embedding_forward");
  return table;
}

Dispatch<EmbeddingBackwardFn>& EmbeddingBackwardTable() {
  static Dispatch<EmbeddingBackwardFn> table("embedding_backward");
  return table;
}

template <typename T>
void EmbeddingForwardRef(const int32_t* ids, const T* table, T* out, int64_t n, int64_t rows,
                         int64_t c) {
  COL_CHECK(n >= 0 && rows >= 0 && c >= 0);
  for (int64_t i = 0; i < n; ++i) {
    COL_CHECK(ids[i] >= 0);
    const bool here = ids[i] < rows;
    for (int64_t j = 0; j < c; ++j) out[i * c + j] = here ? table[ids[i] * c + j] : T(0);
  }
}

template <typename T>
void EmbeddingBackwardRef(const int32_t* ids, const T* dout, T* dtable, int64_t n, int64_t rows,
                          int64_t c, Accumulate accumulate) {
  COL_CHECK(n >= 0 && rows >= 0 && c >= 0);
  // Positions i grouped by id, each group in increasing i (a stable counting sort).
  std::vector<int64_t> start(rows + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    COL_CHECK(ids[i] >= 0);
    if (ids[i] < rows) ++start[ids[i] + 1];
  }
  for (int64_t r = 0; r < rows; ++r) start[r + 1] += start[r];
  std::vector<int64_t> order(n), next(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < rows) order[next[ids[i]]++] = i;
  }

  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < c; ++j) {
      double sum = accumulate == Accumulate::kYes ? static_cast<double>(dtable[r * c + j]) : 0.0;
      for (int64_t p = start[r]; p < start[r + 1]; ++p) {
        sum += static_cast<double>(dout[order[p] * c + j]);
      }
      dtable[r * c + j] = static_cast<T>(sum);
    }
  }
}

template void EmbeddingForwardRef<float>(const int32_t*, const float*, float*, int64_t, int64_t,
                                         int64_t);
template void EmbeddingForwardRef<double>(const int32_t*, const double*, double*, int64_t,
                                          int64_t, int64_t);
template void EmbeddingBackwardRef<float>(const int32_t*, const float*, float*, int64_t, int64_t,
                                          int64_t, Accumulate);
template void EmbeddingBackwardRef<double>(const int32_t*, const double*, double*, int64_t,
                                           int64_t, int64_t, Accumulate);

namespace {
void ForwardRefTwin(const int32_t* ids, const float* table, float* out, int64_t n, int64_t rows,
                    int64_t c, Stream) {
  EmbeddingForwardRef(ids, table, out, n, rows, c);
}
void BackwardRefTwin(const int32_t* ids, const float* dout, float* dtable, int64_t n,
                     int64_t rows, int64_t c, Accumulate accumulate, Stream) {
  EmbeddingBackwardRef(ids, dout, dtable, n, rows, c, accumulate);
}
const Registrar<EmbeddingForwardFn> kForward(EmbeddingForwardTable(), Backend::kRef,
                                             DType::kF32, &ForwardRefTwin);
const Registrar<EmbeddingBackwardFn> kBackward(EmbeddingBackwardTable(), Backend::kRef,
                                               DType::kF32, &BackwardRefTwin);
}  // namespace

}  // namespace colossal::kernels
