// ParamStore: where the trainable parameters and their gradients live: two flat fp32
// buffers (data, grad) with the same layout, each tensor at a 64-byte-aligned offset, in
// the memory of a Place (place.h: the host, or a device — then data()/grad() are device
// pointers the host must not dereference; stage through place().CopyToHost). Flat storage lets the optimizer, the gradient norm and (later)
// data-parallel all-reduce and ZeRO sharding treat all parameters as one vector.
// Gradients start at zero. Not thread-safe to construct; pointers stay valid for the
// store's lifetime.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/allocator.h"
#include "memory/place.h"

namespace colossal::memory {

struct ParamInfo {
  std::string name;             // Hugging Face name for GPT models
  std::vector<int64_t> shape;
  int64_t numel = 0;
  int64_t offset = 0;           // in floats, into the flat buffers
};

// A contiguous part of one parameter tensor: elements [offset, offset + length) of its
// flattened values, at flat_offset in the store's flat buffers. A rank's share of the
// parameters under sharding (ZeRO) is a list of these; unsharded, one per tensor.
struct ParamSegment {
  int param = 0;
  int64_t offset = 0;       // within the tensor
  int64_t length = 0;
  int64_t flat_offset = 0;  // into flat_data() / flat_grad()
};

class ParamStore {
 public:
  struct Spec {
    std::string name;
    std::vector<int64_t> shape;
  };
  // `min_flat_numel` pads the flat buffers to at least that many floats (data-parallel
  // layouts need a multiple of ranks × bucket pieces); padding stays zero.
  // With `allocate` false the store holds the layout alone (ZeRO 3 keeps parameters in
  // shards and gathered buffers elsewhere); data()/grad() must not be used then.
  // In host memory (aborts when the host is out of memory, as `new` would).
  explicit ParamStore(const std::vector<Spec>& specs, int64_t min_flat_numel = 0,
                      bool allocate = true);
  // In `place`'s memory: the allocator's RESOURCE_EXHAUSTED (bytes asked, peak, holders)
  // when it does not fit.
  static absl::StatusOr<std::unique_ptr<ParamStore>> Make(const std::vector<Spec>& specs, int64_t min_flat_numel,
                                                          bool allocate, const Place& place);
  const Place& place() const { return place_; }
  bool allocated() const { return data_.data() != nullptr || flat_numel_ == 0; }

  // The flat size the specs need without extra padding (each tensor 64-byte aligned).
  static int64_t FlatNumel(const std::vector<Spec>& specs);
  // The specs of this store's tensors, in store order (for a store with the same tensors,
  // e.g. a whole copy of a sharded one).
  std::vector<Spec> specs() const;

  int size() const { return static_cast<int>(infos_.size()); }
  const ParamInfo& info(int i) const { return infos_[i]; }
  const std::vector<ParamInfo>& infos() const { return infos_; }
  // Index of the parameter named `name`, or -1.
  int Find(const std::string& name) const;

  float* data(int i) { return data_.as<float>() + infos_[i].offset; }
  const float* data(int i) const { return data_.as<float>() + infos_[i].offset; }
  float* grad(int i) { return grad_.as<float>() + infos_[i].offset; }
  const float* grad(int i) const { return grad_.as<float>() + infos_[i].offset; }

  // The flat buffers, padding included (padding stays zero).
  float* flat_data() { return data_.as<float>(); }
  float* flat_grad() { return grad_.as<float>(); }
  const float* flat_data() const { return data_.as<float>(); }
  const float* flat_grad() const { return grad_.as<float>(); }
  int64_t flat_numel() const { return flat_numel_; }
  // Parameters without padding.
  int64_t num_params() const { return num_params_; }

  // One segment per tensor (the unsharded view).
  std::vector<ParamSegment> WholeTensors() const;
  // The parts of tensors inside the flat range [begin, end), in flat order.
  std::vector<ParamSegment> SegmentsIn(int64_t begin, int64_t end) const;
  // Where `segments` lie in the flat buffers: flat_data() / flat_grad() + flat_offset each.
  std::vector<float*> SegmentData(const std::vector<ParamSegment>& segments);
  std::vector<const float*> SegmentGrads(const std::vector<ParamSegment>& segments);

 private:
  std::vector<ParamInfo> infos_;
  std::map<std::string, int> by_name_;
  int64_t flat_numel_ = 0;
  int64_t num_params_ = 0;
  Place place_ = Place::Host();
  Buffer data_;
  Buffer grad_;
};

}  // namespace colossal::memory
