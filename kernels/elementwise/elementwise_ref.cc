// Elementwise specification: each op evaluated in double and rounded once; also
// defines the dispatch tables and registers the float ref twins.
#include "kernels/elementwise/elementwise.h"

namespace colossal::kernels {

Dispatch<AddFn>& AddTable() {
  static Dispatch<AddFn> table("add");
  return table;
}

Dispatch<AddIntoFn>& AddIntoTable() {
  static Dispatch<AddIntoFn> table("add_into");
  return table;
}

Dispatch<ScaleFn>& ScaleTable() {
  static Dispatch<ScaleFn> table("scale");
  return table;
}

Dispatch<FillFn>& FillTable() {
  static Dispatch<FillFn> table("fill");
  return table;
}

template <typename T>
void AddRef(const T* a, const T* b, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<double>(a[i]) + static_cast<double>(b[i]));
  }
}

template <typename T>
void AddIntoRef(const T* src, T* dst, int64_t n, Accumulate accumulate) {
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = accumulate == Accumulate::kYes
                 ? static_cast<T>(static_cast<double>(dst[i]) + static_cast<double>(src[i]))
                 : src[i];
  }
}

template <typename T>
void ScaleRef(T* x, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<T>(static_cast<double>(x[i]) * static_cast<double>(alpha));
  }
}

template <typename T>
void FillRef(T* x, int64_t n, float value) {
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<T>(value);
}

template void AddRef<float>(const float*, const float*, float*, int64_t);
template void AddRef<double>(const double*, const double*, double*, int64_t);
template void AddIntoRef<float>(const float*, float*, int64_t, Accumulate);
template void AddIntoRef<double>(const double*, double*, int64_t, Accumulate);
template void ScaleRef<float>(float*, int64_t, float);
template void ScaleRef<double>(double*, int64_t, float);
template void FillRef<float>(float*, int64_t, float);
template void FillRef<double>(double*, int64_t, float);

namespace {
void AddRefTwin(const float* a, const float* b, float* out, int64_t n, Stream) {
  AddRef(a, b, out, n);
}
void AddIntoRefTwin(const float* src, float* dst, int64_t n, Accumulate accumulate, Stream) {
  AddIntoRef(src, dst, n, accumulate);
}
void ScaleRefTwin(float* x, int64_t n, float alpha, Stream) { ScaleRef(x, n, alpha); }
void FillRefTwin(float* x, int64_t n, float value, Stream) { FillRef(x, n, value); }

const Registrar<AddFn> kAdd(AddTable(), Backend::kRef, DType::kF32, &AddRefTwin);
const Registrar<AddIntoFn> kAddInto(AddIntoTable(), Backend::kRef, DType::kF32,
                                    &AddIntoRefTwin);
const Registrar<ScaleFn> kScale(ScaleTable(), Backend::kRef, DType::kF32, &ScaleRefTwin);
const Registrar<FillFn> kFill(FillTable(), Backend::kRef, DType::kF32, &FillRefTwin);
}  // namespace

}  // namespace colossal::kernels
