// Aligned host allocation. Large buffers are touched by memset so their pages exist
// before the first step (no page faults inside a timed step).
#include "memory/host_buffer.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "runtime/base/check.h"

namespace colossal::memory {

HostBuffer::HostBuffer(size_t bytes) {
  if (bytes == 0) return;
  bytes_ = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  data_ = std::aligned_alloc(kAlignment, bytes_);
  COL_CHECK_MSG(data_ != nullptr,
                ("host allocation of " + std::to_string(bytes_) + " bytes failed").c_str());
  std::memset(data_, 0, bytes_);
}

HostBuffer::~HostBuffer() { std::free(data_); }

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

}  // namespace colossal::memory
