// Vocabulary shared by every kernel family: element types, backends, the stream a
// kernel is ordered on, and the overwrite-or-accumulate switch.
// Kernels are plain functions over raw pointers + shapes + a Stream; the same
// signature serves the reference, the CPU twin and the CUDA twin (dispatch.h).
#pragma once

#include <cstdint>
#include <string_view>

namespace colossal::kernels {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32 };

// Bytes per element.
constexpr int64_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI32: return 4;
  }
  return 0;
}

constexpr std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI32: return "i32";
  }
  return "?";
}

// Which twin of a kernel runs. kRef is the double-precision specification: slow,
// single-threaded, used by tests and nowhere on a hot path.
enum class Backend : uint8_t { kRef, kCpu, kCuda };
inline constexpr int kNumBackends = 3;

constexpr std::string_view BackendName(Backend b) {
  switch (b) {
    case Backend::kRef: return "ref";
    case Backend::kCpu: return "cpu";
    case Backend::kCuda: return "cuda";
  }
  return "?";
}

// Where and in what order a kernel runs. CPU twins run synchronously on the calling
// thread's OpenMP team (omp_get_max_threads() threads) and ignore `cuda_stream`; a
// CUDA twin enqueues on `cuda_stream` (a cudaStream_t) and returns at once.
struct Stream {
  Backend backend = Backend::kCpu;
  void* cuda_stream = nullptr;
};

// Whether a kernel overwrites its output (`=`) or adds into it (`+=`). Every output
// that receives gradients takes one, so gradient accumulation over micro-batches and
// fan-in of a value used twice need no extra buffers or memsets.
enum class Accumulate : uint8_t { kNo, kYes };

}  // namespace colossal::kernels
