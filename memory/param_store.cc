// Flat parameter and gradient buffers.
#include "memory/param_store.h"

#include <algorithm>

#include "runtime/base/check.h"

namespace colossal::memory {

namespace {
// Each tensor starts on a 64-byte boundary (a cache line; 16 floats for SIMD and float4).
constexpr int64_t kAlignFloats = 64 / sizeof(float);
int64_t Padded(int64_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }
}  // namespace

int64_t ParamStore::FlatNumel(const std::vector<Spec>& specs) {
  int64_t total = 0;
  for (const Spec& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    total += Padded(n);
  }
  return total;
}

absl::StatusOr<std::unique_ptr<ParamStore>> ParamStore::Make(const std::vector<Spec>& specs, int64_t min_flat_numel,
                                                             bool allocate, const Place& place) {
  std::unique_ptr<ParamStore> store(new ParamStore(specs, min_flat_numel, /*allocate=*/false));
  store->place_ = place;
  if (allocate && store->flat_numel_ > 0) {
    const int64_t bytes = store->flat_numel_ * static_cast<int64_t>(sizeof(float));
    absl::StatusOr<Buffer> data = place.Allocate(bytes, Purpose::kParameters);
    if (!data.ok()) return data.status();
    absl::StatusOr<Buffer> grad = place.Allocate(bytes, Purpose::kGradients);
    if (!grad.ok()) return grad.status();
    store->data_ = std::move(*data);
    store->grad_ = std::move(*grad);
  }
  return store;
}

ParamStore::ParamStore(const std::vector<Spec>& specs, int64_t min_flat_numel, bool allocate) {
  int64_t offset = 0;
  for (const Spec& s : specs) {
    ParamInfo info;
    info.name = s.name;
    info.shape = s.shape;
    info.numel = 1;
    for (int64_t d : s.shape) info.numel *= d;
    info.offset = offset;
    offset += Padded(info.numel);
    num_params_ += info.numel;
    COL_CHECK_MSG(by_name_.emplace(info.name, static_cast<int>(infos_.size())).second,
                  ("duplicate parameter " + info.name).c_str());
    infos_.push_back(std::move(info));
  }
  flat_numel_ = std::max(offset, min_flat_numel);
  if (allocate) {
    data_ = Buffer::Host(flat_numel_ * sizeof(float), Purpose::kParameters);
    grad_ = Buffer::Host(flat_numel_ * sizeof(float), Purpose::kGradients);
  }
}

std::vector<ParamStore::Spec> ParamStore::specs() const {
  std::vector<Spec> out;
  for (const ParamInfo& info : infos_) out.push_back({info.name, info.shape});
  return out;
}

std::vector<ParamSegment> ParamStore::WholeTensors() const {
  std::vector<ParamSegment> out;
  for (int i = 0; i < size(); ++i) out.push_back({i, 0, infos_[i].numel, infos_[i].offset});
  return out;
}

std::vector<ParamSegment> ParamStore::SegmentsIn(int64_t begin, int64_t end) const {
  std::vector<ParamSegment> out;
  for (int i = 0; i < size(); ++i) {
    const int64_t lo = std::max(begin, infos_[i].offset);
    const int64_t hi = std::min(end, infos_[i].offset + infos_[i].numel);
    if (lo < hi) out.push_back({i, lo - infos_[i].offset, hi - lo, lo});
  }
  return out;
}

std::vector<float*> ParamStore::SegmentData(const std::vector<ParamSegment>& segments) {
  std::vector<float*> out;
  for (const ParamSegment& s : segments) out.push_back(flat_data() + s.flat_offset);
  return out;
}

std::vector<const float*> ParamStore::SegmentGrads(const std::vector<ParamSegment>& segments) {
  std::vector<const float*> out;
  for (const ParamSegment& s : segments) out.push_back(flat_grad() + s.flat_offset);
  return out;
}

int ParamStore::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

}  // namespace colossal::memory
