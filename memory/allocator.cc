#include "memory/allocator.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/base/check.h"

namespace colossal::memory {

std::string_view MemoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kHost: return "host";
    case MemoryKind::kPinned: return "pinned host";
    case MemoryKind::kDevice: return "device";
  }
  return "?";
}

std::string_view PurposeName(Purpose purpose) {
  switch (purpose) {
    case Purpose::kParameters: return "parameters";
    case Purpose::kGradients: return "gradients";
    case Purpose::kOptimizerState: return "optimizer state";
    case Purpose::kActivations: return "activations";
    case Purpose::kGraphState: return "graph state";
    case Purpose::kCommunication: return "communication buffers";
    case Purpose::kWorkspace: return "workspace";
    case Purpose::kChunks: return "chunks";
    case Purpose::kOther: return "other";
  }
  return "?";
}

std::string FormatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
  return u == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.2f %s", v, units[u]);
}

int64_t AllocationSize(int64_t bytes) { return (bytes + 255) / 256 * 256; }

absl::StatusOr<void*> Allocator::Allocate(int64_t bytes, Purpose purpose) {
  COL_CHECK(bytes > 0);
  const int64_t size = AllocationSize(bytes);
  const int64_t limit = limit_.load();
  if (limit > 0 && used_.load() + size > limit) return absl::ResourceExhaustedError(OutOfMemory(size, purpose));
  void* p = Get(size);
  if (p == nullptr) return absl::ResourceExhaustedError(OutOfMemory(size, purpose));
  Zero(p, size);
  const int64_t used = used_.fetch_add(size) + size;
  int64_t peak = peak_.load();
  while (used > peak && !peak_.compare_exchange_weak(peak, used)) {
  }
  allocations_.fetch_add(1);
  by_purpose_[static_cast<int>(purpose)].fetch_add(size);
  return p;
}

void Allocator::Free(void* ptr, int64_t bytes, Purpose purpose) {
  if (ptr == nullptr) return;
  const int64_t size = AllocationSize(bytes);
  Put(ptr, size);
  used_.fetch_sub(size);
  allocations_.fetch_sub(1);
  by_purpose_[static_cast<int>(purpose)].fetch_sub(size);
}

AllocatorStats Allocator::stats() const {
  AllocatorStats s;
  s.used = used_.load();
  s.peak = peak_.load();
  s.reserved = Reserved();
  s.allocations = allocations_.load();
  for (int i = 0; i < kNumPurposes; ++i) s.by_purpose[i] = by_purpose_[i].load();
  return s;
}

std::string Allocator::OutOfMemory(int64_t bytes, Purpose purpose) const {
  const AllocatorStats s = stats();
  std::string holders;
  for (int i = 0; i < kNumPurposes; ++i) {
    if (s.by_purpose[i] == 0) continue;
    absl::StrAppend(&holders, holders.empty() ? "" : ", ", std::string(PurposeName(static_cast<Purpose>(i))), " ",
                    FormatBytes(s.by_purpose[i]));
  }
  std::string msg = absl::StrCat(name(), ": out of memory asking ", FormatBytes(bytes), " for ",
                                 std::string(PurposeName(purpose)), ": peak ", FormatBytes(s.peak), ", in use ",
                                 FormatBytes(s.used), " (", holders.empty() ? "nothing" : holders, ")");
  if (limit_.load() > 0) absl::StrAppend(&msg, ", limit ", FormatBytes(limit_.load()));
  if (s.reserved > s.used) absl::StrAppend(&msg, ", cached ", FormatBytes(s.reserved - s.used));
  return msg;
}

namespace {

class HostAllocatorImpl final : public Allocator {
 public:
  MemoryKind kind() const override { return MemoryKind::kHost; }
  std::string name() const override { return "host"; }

 protected:
  void* Get(int64_t bytes) override {
    return std::aligned_alloc(bytes % 4096 == 0 ? 4096 : 256, static_cast<size_t>(bytes));
  }
  void Put(void* ptr, int64_t) override { std::free(ptr); }
  void Zero(void* ptr, int64_t bytes) override { std::memset(ptr, 0, static_cast<size_t>(bytes)); }
};

struct Registry {
  std::mutex mu;
  std::array<AllocatorFactory, kernels::kNumBackends> factories{};
  std::map<std::tuple<int, int, int>, Allocator*> made;
};
Registry& GetRegistry() {
  static Registry* r = new Registry;
  return *r;
}

}  // namespace

Allocator& HostAllocator() {
  static HostAllocatorImpl* host = new HostAllocatorImpl;
  return *host;
}

void RegisterAllocatorFactory(kernels::Backend backend, AllocatorFactory factory) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.factories[static_cast<int>(backend)] = factory;
}

absl::StatusOr<Allocator*> DeviceAllocator(kernels::Backend backend, MemoryKind kind, int device) {
  Registry& r = GetRegistry();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto key = std::make_tuple(static_cast<int>(backend), static_cast<int>(kind), device);
  auto it = r.made.find(key);
  if (it != r.made.end()) return it->second;
  AllocatorFactory factory = r.factories[static_cast<int>(backend)];
  if (factory == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("no ", std::string(MemoryKindName(kind)), " memory for backend ",
                                                      std::string(kernels::BackendName(backend)),
                                                      ": its plugin is not loaded"));
  }
  absl::StatusOr<Allocator*> made = factory(kind, device);
  if (made.ok()) r.made.emplace(key, *made);
  return made;
}

absl::StatusOr<Buffer> Buffer::Make(Allocator& allocator, int64_t bytes, Purpose purpose) {
  Buffer b;
  if (bytes <= 0) return b;
  absl::StatusOr<void*> p = allocator.Allocate(bytes, purpose);
  if (!p.ok()) return p.status();
  b.allocator_ = &allocator;
  b.data_ = *p;
  b.bytes_ = bytes;
  b.purpose_ = purpose;
  return b;
}

Buffer Buffer::Host(int64_t bytes, Purpose purpose) {
  absl::StatusOr<Buffer> b = Make(HostAllocator(), bytes, purpose);
  COL_CHECK_MSG(b.ok(), std::string(b.status().message()).c_str());
  return std::move(*b);
}

void Buffer::Reset() {
  if (allocator_ != nullptr) allocator_->Free(data_, bytes_, purpose_);
  allocator_ = nullptr;
  data_ = nullptr;
  bytes_ = 0;
}

Buffer::~Buffer() { Reset(); }

Buffer::Buffer(Buffer&& other) noexcept
    : allocator_(std::exchange(other.allocator_, nullptr)),
      data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      purpose_(other.purpose_) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Reset();
    allocator_ = std::exchange(other.allocator_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    purpose_ = other.purpose_;
  }
  return *this;
}

}  // namespace colossal::memory
