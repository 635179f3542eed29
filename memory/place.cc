// The host Place and device Places over the backend memory registry.
#include "memory/place.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace colossal::memory {

Place Place::Host() {
  const kernels::BackendMemory* memory = kernels::FindBackendMemory(kernels::Backend::kCpu);
  COL_CHECK_MSG(memory != nullptr, "the host backend memory is always registered");
  return Place(kernels::Stream{kernels::Backend::kCpu, nullptr}, 0, &HostAllocator(), memory);
}

Place Place::HostAsDevice() {
  Place p = Host();
  p.as_device_ = true;
  return p;
}

absl::StatusOr<Place> Place::Device(kernels::Backend backend, int device, kernels::Stream stream) {
  if (stream.backend != backend) {
    return absl::InvalidArgumentError(absl::StrCat("a ", std::string(kernels::BackendName(backend)),
                                                   " place needs a stream of that backend, not ",
                                                   std::string(kernels::BackendName(stream.backend))));
  }
  if (backend == kernels::Backend::kCpu || backend == kernels::Backend::kRef) {
    return Place(stream, 0, &HostAllocator(), kernels::FindBackendMemory(backend));
  }
  const kernels::BackendMemory* memory = kernels::FindBackendMemory(backend);
  if (memory == nullptr || memory->copy == nullptr || memory->zero == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("the ", std::string(kernels::BackendName(backend)),
                                                      " backend is not available in this process (its plugin is "
                                                      "not loaded or no device is visible)"));
  }
  absl::StatusOr<Allocator*> allocator = DeviceAllocator(backend, MemoryKind::kDevice, device);
  if (!allocator.ok()) return allocator.status();
  return Place(stream, device, *allocator, memory);
}

absl::StatusOr<Buffer> Place::Allocate(int64_t bytes, Purpose purpose) const {
  return Buffer::Make(*allocator_, bytes, purpose);
}

void Place::Copy(void* dst, const void* src, int64_t bytes) const {
  if (bytes > 0 && dst != src) memory_->copy(dst, src, bytes, stream_);
}

void Place::Zero(void* dst, int64_t bytes) const {
  if (bytes > 0) memory_->zero(dst, bytes, stream_);
}

void Place::CopyToHost(void* host_dst, const void* src, int64_t bytes) const {
  if (bytes <= 0) return;
  memory_->synchronize(stream_);
  memory_->to_host(host_dst, src, bytes);
}

void Place::CopyFromHost(void* dst, const void* host_src, int64_t bytes) const {
  if (bytes <= 0) return;
  memory_->synchronize(stream_);
  memory_->to_backend(dst, host_src, bytes);
}

void Place::Synchronize() const { memory_->synchronize(stream_); }

const float* Place::HostView(const float* src, int64_t n, std::deque<std::vector<float>>& staged) const {
  if (on_host()) return src;
  std::vector<float>& host = staged.emplace_back(static_cast<size_t>(n));
  CopyToHost(host.data(), src, n * static_cast<int64_t>(sizeof(float)));
  return host.data();
}

absl::Status Place::FillFromHost(float* dst, int64_t n, std::vector<float>& staging,
                                 const std::function<absl::Status(float*)>& fill) const {
  if (on_host()) return fill(dst);
  staging.resize(static_cast<size_t>(n));
  const absl::Status s = fill(staging.data());
  if (s.ok()) CopyFromHost(dst, staging.data(), n * static_cast<int64_t>(sizeof(float)));
  return s;
}

}  // namespace colossal::memory
