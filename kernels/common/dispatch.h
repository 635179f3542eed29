// The dispatch table: for one kernel signature `Fn`, maps (backend, dtype) to the twin
// that implements it, so a missing twin is a clear error rather than a link failure.
//
// Each kernel family declares its tables in its header (one `Dispatch<Fn>&
// XxxTable()` per entry point) and each twin registers itself from its own .cc with a
// static `Registrar` (the twin's cc_library is `alwayslink = True`). Registration
// happens during static initialisation; lookups after main() starts are lock-free.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "kernels/common/kernel.h"
#include "runtime/base/check.h"

namespace colossal::kernels {

// Every table, for listing (`colossal kernels`) and for the all-twins test harness.
struct DispatchInfo {
  std::string name;
  // registered[backend][dtype]
  std::array<std::array<bool, 4>, kNumBackends> registered{};
};
std::vector<DispatchInfo> ListDispatchTables();

namespace internal {
void RecordTable(const std::string& name, const void* table,
                 std::array<std::array<bool, 4>, kNumBackends> (*probe)(const void*));
}  // namespace internal

template <typename Fn>
class Dispatch {
 public:
  explicit Dispatch(std::string name) : name_(std::move(name)) {
    internal::RecordTable(name_, this, &Probe);
  }
  Dispatch(const Dispatch&) = delete;
  Dispatch& operator=(const Dispatch&) = delete;

  const std::string& name() const { return name_; }

  void Register(Backend backend, DType dtype, Fn* fn) {
    COL_CHECK(fn != nullptr);
    fns_[Index(backend)][Index(dtype)] = fn;
  }

  // The twin for (backend, dtype), or nullptr when none is registered.
  Fn* Find(Backend backend, DType dtype) const {
    return fns_[Index(backend)][Index(dtype)];
  }

  // The twin for (backend, dtype); a missing twin is a programmer error.
  Fn* Get(Backend backend, DType dtype) const {
    Fn* fn = Find(backend, dtype);
    if (fn == nullptr) {
      std::string msg = "no " + std::string(BackendName(backend)) + " twin of kernel " +
                        name_ + " for " + std::string(DTypeName(dtype));
      base::CheckFailed(__FILE__, __LINE__, "kernel registered", msg.c_str());
    }
    return fn;
  }

 private:
  template <typename E>
  static constexpr int Index(E e) {
    return static_cast<int>(e);
  }
  static std::array<std::array<bool, 4>, kNumBackends> Probe(const void* self) {
    const auto* d = static_cast<const Dispatch*>(self);
    std::array<std::array<bool, 4>, kNumBackends> out{};
    for (int b = 0; b < kNumBackends; ++b)
      for (int t = 0; t < 4; ++t) out[b][t] = d->fns_[b][t] != nullptr;
    return out;
  }

  std::string name_;
  std::array<std::array<Fn*, 4>, kNumBackends> fns_{};
};

// Registers `fn` as the (backend, dtype) twin of `table` at static-initialisation time:
//   static const Registrar<LayerNormForwardFn> reg(LayerNormForwardTable(),
//                                                  Backend::kCpu, DType::kF32,
//                                                  &LayerNormForwardCpu);
template <typename Fn>
struct Registrar {
  Registrar(Dispatch<Fn>& table, Backend backend, DType dtype, Fn* fn) {
    table.Register(backend, dtype, fn);
  }
};

}  // namespace colossal::kernels
