// HostBuffer: an owned, 64-byte-aligned, zero-filled block of host memory (RAII).
// Used for the activation arena, the parameter store and optimizer states. Move-only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace colossal::memory {

class HostBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  HostBuffer() = default;
  // Allocates `bytes` (rounded up to the alignment) and zero-fills them. Aborts on
  // allocation failure with the size in the message (callers size budgets beforehand).
  explicit HostBuffer(size_t bytes);
  ~HostBuffer();
  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace colossal::memory
