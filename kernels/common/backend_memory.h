// Where a backend's twins read and write: how to allocate its memory and move bytes
// between it and the host. The host backends (ref, cpu) are registered here; a device
// backend registers its own from its library (as its twins register in the dispatch
// tables), and every kernel-harness case then runs its twins in device memory with no
// test edits (kernels/testing/twin_case.h). Registration happens at static
// initialisation; lookups after main() starts are lock-free.
#pragma once

#include <cstdint>

#include "kernels/common/kernel.h"

namespace colossal::kernels {

struct BackendMemory {
  void* (*allocate)(int64_t bytes) = nullptr;  // never null for bytes > 0
  void (*release)(void* ptr) = nullptr;
  void (*to_backend)(void* dst, const void* host_src, int64_t bytes) = nullptr;
  void (*to_host)(void* host_dst, const void* src, int64_t bytes) = nullptr;
  void (*synchronize)(Stream stream) = nullptr;  // every kernel enqueued on `stream` done
  // Whether the backend can run in this process (a device backend: a driver and at least
  // one device); asked once, on the first FindBackendMemory. Null: always.
  bool (*present)() = nullptr;
  // Within the backend's memory, ordered on `stream` after the kernels enqueued on it
  // (the host's: at once): a copy between non-overlapping ranges, and zero-filling.
  void (*copy)(void* dst, const void* src, int64_t bytes, Stream stream) = nullptr;
  void (*zero)(void* dst, int64_t bytes, Stream stream) = nullptr;
};

void RegisterBackendMemory(Backend backend, const BackendMemory& memory);
// The backend's memory operations, or nullptr when none are registered or the backend's
// `present` says no (a CUDA build on a machine without a GPU).
const BackendMemory* FindBackendMemory(Backend backend);

}  // namespace colossal::kernels
