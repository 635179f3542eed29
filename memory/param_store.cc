// Flat parameter and gradient buffers.
#include "memory/param_store.h"

#include "runtime/base/check.h"

namespace colossal::memory {

ParamStore::ParamStore(const std::vector<Spec>& specs) {
  constexpr int64_t kAlignFloats = HostBuffer::kAlignment / sizeof(float);
  int64_t offset = 0;
  for (const Spec& s : specs) {
    ParamInfo info;
    info.name = s.name;
    info.shape = s.shape;
    info.numel = 1;
    for (int64_t d : s.shape) info.numel *= d;
    info.offset = offset;
    offset += (info.numel + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
    num_params_ += info.numel;
    COL_CHECK_MSG(by_name_.emplace(info.name, static_cast<int>(infos_.size())).second,
                  ("duplicate parameter " + info.name).c_str());
    infos_.push_back(std::move(info));
  }
  flat_numel_ = offset;
  data_ = HostBuffer(flat_numel_ * sizeof(float));
  grad_ = HostBuffer(flat_numel_ * sizeof(float));
}

int ParamStore::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

}  // namespace colossal::memory
