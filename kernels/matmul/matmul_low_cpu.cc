// The mixed-precision GEMM's CPU twin (matmul.h, MatmulLow).
//
// Where the CPU computes in the 16-bit type natively (AVX512-BF16 or AMX for bf16,
// AVX512-FP16 for fp16), one oneDNN matmul primitive per problem (16-bit src and
// weights with the strides as stored, fp32 dst, fp32 bias, a sum post-op for
// Accumulate::kYes), created once and cached. Several threads may run one cached
// primitive at once (ranks on threads in the tests, OpenMP-parallel callers), which
// oneDNN allows only with a user-managed scratchpad: each primitive is created with
// dnnl_scratchpad_mode_user and each call passes its thread's own scratchpad, on its
// thread's own stream (oneDNN streams are not thread-safe; the engine is). With oneDNN's
// default library scratchpad, two threads running one primitive overwrite each other's
// partial sums. oneDNN is asked only for problems with
// alpha = 1 (its output scale would also scale the bias), and a primitive whose
// implementation is oneDNN's reference loop is not used.
// Everywhere else (and for those problems): A and B widened to fp32 (exact) into
// per-thread buffers, then the fp32 GEMM twin. Same products, same fp32 sums.
#include <dnnl.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "kernels/convert/convert.h"
#include "kernels/matmul/matmul.h"
#include "runtime/base/check.h"

namespace colossal::kernels {
namespace {

// Whether oneDNN runs `dtype` GEMMs in hardware on this CPU.
bool NativeLow(DType dtype) {
  static const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  if (dtype == DType::kBF16) return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
  return isa == dnnl_cpu_isa_avx512_core_amx;  // Sapphire Rapids and later also have AVX512-FP16
}

dnnl_engine_t CpuEngine() {
  static const dnnl_engine_t engine = [] {
    dnnl_engine_t e = nullptr;
    COL_CHECK(dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success);
    return e;
  }();
  return engine;
}

// This thread's stream on the CPU engine, destroyed with the thread.
dnnl_stream_t ThreadStream() {
  struct Owned {
    dnnl_stream_t stream = nullptr;
    Owned() { COL_CHECK(dnnl_stream_create(&stream, CpuEngine(), dnnl_stream_default_flags) == dnnl_success); }
    ~Owned() { dnnl_stream_destroy(stream); }
  };
  thread_local Owned owned;
  return owned.stream;
}

using Key = std::tuple<int, int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool>;
struct Primitive {
  dnnl_primitive_t prim = nullptr;  // null: oneDNN has no native kernel for it
  dnnl_memory_desc_t a, b, c, bias;
  dnnl_memory_desc_t scratchpad;  // what each call passes as DNNL_ARG_SCRATCHPAD
  size_t scratchpad_bytes = 0;
};

const Primitive& PrimitiveFor(DType dtype, const MatmulLowArgs& p) {
  static std::mutex mu;
  static std::map<Key, Primitive> cache;
  const bool has_bias = p.bias != nullptr, acc = p.accumulate == Accumulate::kYes;
  const Key key{static_cast<int>(dtype), static_cast<int>(p.trans_a), static_cast<int>(p.trans_b), p.m, p.n, p.k,
                p.lda, p.ldb, p.ldc, has_bias, acc};
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Primitive pr;
  const dnnl_data_type_t low = dtype == DType::kBF16 ? dnnl_bf16 : dnnl_f16;
  const dnnl_dims_t a_dims = {p.m, p.k}, b_dims = {p.k, p.n}, c_dims = {p.m, p.n}, bias_dims = {1, p.n};
  const dnnl_dims_t a_strides = {p.trans_a == Trans::kYes ? 1 : p.lda, p.trans_a == Trans::kYes ? p.lda : 1};
  const dnnl_dims_t b_strides = {p.trans_b == Trans::kYes ? 1 : p.ldb, p.trans_b == Trans::kYes ? p.ldb : 1};
  const dnnl_dims_t c_strides = {p.ldc, 1}, bias_strides = {p.n, 1};
  bool ok = dnnl_memory_desc_init_by_strides(&pr.a, 2, a_dims, low, a_strides) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&pr.b, 2, b_dims, low, b_strides) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&pr.c, 2, c_dims, dnnl_f32, c_strides) == dnnl_success &&
            dnnl_memory_desc_init_by_strides(&pr.bias, 2, bias_dims, dnnl_f32, bias_strides) == dnnl_success;
  dnnl_matmul_desc_t desc;
  ok = ok && dnnl_matmul_desc_init(&desc, &pr.a, &pr.b, has_bias ? &pr.bias : nullptr, &pr.c) == dnnl_success;
  dnnl_primitive_attr_t attr = nullptr;
  dnnl_post_ops_t post_ops = nullptr;
  ok = ok && dnnl_primitive_attr_create(&attr) == dnnl_success &&
       dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
  if (ok && acc) {
    ok = dnnl_post_ops_create(&post_ops) == dnnl_success && dnnl_post_ops_append_sum(post_ops, 1.0f) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, post_ops) == dnnl_success;
  }
  dnnl_primitive_desc_t pd = nullptr;
  ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, CpuEngine(), nullptr) == dnnl_success;
  if (ok) {
    const dnnl_memory_desc_t* md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (md != nullptr) {
      pr.scratchpad = *md;
      pr.scratchpad_bytes = dnnl_memory_desc_get_size(md);
    }
  }
  if (ok) {
    const char* impl = nullptr;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    if (impl != nullptr && std::strncmp(impl, "ref", 3) != 0) {
      if (dnnl_primitive_create(&pr.prim, pd) != dnnl_success) pr.prim = nullptr;
    }
  }
  if (pd != nullptr) dnnl_primitive_desc_destroy(pd);
  if (post_ops != nullptr) dnnl_post_ops_destroy(post_ops);
  if (attr != nullptr) dnnl_primitive_attr_destroy(attr);
  return cache.emplace(key, pr).first->second;
}

bool RunNative(DType dtype, const MatmulLowArgs& p) {
  if (!NativeLow(dtype) || p.alpha != 1.0f) return false;
  const Primitive& pr = PrimitiveFor(dtype, p);
  if (pr.prim == nullptr) return false;
  const dnnl_engine_t engine = CpuEngine();
  const dnnl_stream_t stream = ThreadStream();
  dnnl_memory_t a = nullptr, b = nullptr, c = nullptr, bias = nullptr, scratch = nullptr;
  COL_CHECK(dnnl_memory_create(&a, &pr.a, engine, const_cast<uint16_t*>(p.a)) == dnnl_success);
  COL_CHECK(dnnl_memory_create(&b, &pr.b, engine, const_cast<uint16_t*>(p.b)) == dnnl_success);
  COL_CHECK(dnnl_memory_create(&c, &pr.c, engine, p.c) == dnnl_success);
  std::vector<dnnl_exec_arg_t> args = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
  if (p.bias != nullptr) {
    COL_CHECK(dnnl_memory_create(&bias, &pr.bias, engine, const_cast<float*>(p.bias)) == dnnl_success);
    args.push_back({DNNL_ARG_BIAS, bias});
  }
  if (pr.scratchpad_bytes > 0) {
    // This thread's scratchpad, grown to the largest primitive it has run (64-byte aligned).
    thread_local std::vector<char> scratchpad;
    if (scratchpad.size() < pr.scratchpad_bytes + 64) scratchpad.resize(pr.scratchpad_bytes + 64);
    char* aligned = scratchpad.data() + (64 - reinterpret_cast<uintptr_t>(scratchpad.data()) % 64) % 64;
    COL_CHECK(dnnl_memory_create(&scratch, &pr.scratchpad, engine, aligned) == dnnl_success);
    args.push_back({DNNL_ARG_SCRATCHPAD, scratch});
  }
  COL_CHECK(dnnl_primitive_execute(pr.prim, stream, static_cast<int>(args.size()), args.data()) == dnnl_success);
  COL_CHECK(dnnl_stream_wait(stream) == dnnl_success);
  for (dnnl_memory_t m : {a, b, c, bias, scratch}) {
    if (m != nullptr) dnnl_memory_destroy(m);
  }
  return true;
}

// The stored extent of a rows × cols matrix with leading dimension ld.
int64_t Extent(int64_t rows, int64_t cols, int64_t ld) { return rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0; }

template <DType D>
void MatmulLowCpu(const MatmulLowArgs& p, Stream stream) {
  COL_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0);
  if (p.m == 0 || p.n == 0) return;
  if (p.k > 0 && RunNative(D, p)) return;
  const bool ta = p.trans_a == Trans::kYes, tb = p.trans_b == Trans::kYes;
  thread_local std::vector<float> wide_a, wide_b;
  const int64_t na = p.k > 0 ? Extent(ta ? p.k : p.m, ta ? p.m : p.k, p.lda) : 0;
  const int64_t nb = p.k > 0 ? Extent(tb ? p.n : p.k, tb ? p.k : p.n, p.ldb) : 0;
  if (static_cast<int64_t>(wide_a.size()) < na) wide_a.resize(na);
  if (static_cast<int64_t>(wide_b.size()) < nb) wide_b.resize(nb);
  Cast16ToF32(D, p.a, wide_a.data(), na, stream);
  Cast16ToF32(D, p.b, wide_b.data(), nb, stream);
  MatmulArgs f;
  f.trans_a = p.trans_a, f.trans_b = p.trans_b;
  f.m = p.m, f.n = p.n, f.k = p.k;
  f.a = wide_a.data(), f.lda = p.lda, f.b = wide_b.data(), f.ldb = p.ldb;
  f.c = p.c, f.ldc = p.ldc, f.bias = p.bias, f.alpha = p.alpha, f.accumulate = p.accumulate;
  MatmulTable().Get(Backend::kCpu, DType::kF32)(f, stream);
}

const Registrar<MatmulLowFn> kBf16(MatmulLowTable(), Backend::kCpu, DType::kBF16, &MatmulLowCpu<DType::kBF16>);
const Registrar<MatmulLowFn> kF16(MatmulLowTable(), Backend::kCpu, DType::kF16, &MatmulLowCpu<DType::kF16>);

}  // namespace
}  // namespace colossal::kernels
