// ZeRO stage 3: parameters, gradients and optimizer state all live as this rank's
// 1/N pieces; parameters are all-gathered group by group into pooled buffers around the
// nodes that use them (the next group prefetched while the current one computes), and
// each micro-step's gradients are reduce-scattered into the shards group by group as
// backward finishes them.
//
// Groups: consecutive parameters in store order, about bucket_bytes each. Group g covers
// store offsets [begin, begin + size) with size a multiple of N·16; rank r owns the
// group-relative piece [r·L, (r+1)·L), L = size / N; this rank's pieces are stored back
// to back in its shard buffers (parameters, gradients; optimizer state follows them).
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/elementwise/elementwise.h"
#include "memory/allocator.h"
#include "parallel/data_parallel/data_parallel.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

// Nodes of slack before a gathered group that is not needed is released.
constexpr int kReleaseSlack = 4;
// How far ahead (in nodes) prefetching looks for the next group.
constexpr int kPrefetchWindow = 64;

struct Group {
  int p0 = 0, p1 = 0;      // parameters [p0, p1)
  int64_t begin = 0;       // store offset of p0
  int64_t real = 0;        // store elements of the group's parameters (with their padding)
  int64_t size = 0;        // real rounded up to a multiple of N·16
  int64_t piece = 0;       // size / N
  int64_t shard = 0;       // offset of this rank's piece in the shard buffers
};

struct Slot {
  memory::Buffer buf;
  int group = -1;
  std::unique_ptr<Work> gather;  // in flight (data slots)
};

struct PendingReduce {
  std::unique_ptr<Work> work;
  int group;
  int slot;
};

class Zero3 : public DataParallel {
 public:
  Zero3(Communicator* dp, memory::ParamStore* params, const DataParallelOptions& options)
      : DataParallel(dp, params, options) {}

  absl::Status Init(const graph::Graph& graph) {
    if (params_->allocated()) {
      return absl::InternalError("ZeRO 3 needs a parameter store without buffers");
    }
    const int n = size();
    const int64_t unit = static_cast<int64_t>(n) * 16;
    const int64_t target = std::max<int64_t>(options_.bucket_bytes / 4, 1);
    int64_t shard = 0;
    for (int p = 0; p < params_->size();) {
      Group g;
      g.p0 = p;
      g.begin = params_->info(p).offset;
      int64_t end = g.begin;
      do {
        end = params_->info(p).offset + (params_->info(p).numel + 15) / 16 * 16;
        ++p;
      } while (p < params_->size() && end - g.begin < target);
      g.p1 = p;
      g.real = end - g.begin;
      g.size = (g.real + unit - 1) / unit * unit;
      g.piece = g.size / n;
      g.shard = shard;
      shard += g.piece;
      for (int q = g.p0; q < g.p1; ++q) group_of_param_.push_back(static_cast<int>(groups_.size()));
      max_group_ = std::max(max_group_, g.size);
      groups_.push_back(g);
    }
    shard_numel_ = shard;
    // The shards live where the store's place says (the host, or the device).
    const memory::Place& place = params_->place();
    const int64_t bytes = shard * static_cast<int64_t>(sizeof(float));
    ASSIGN_OR_RETURN(shard_param_, place.Allocate(bytes, memory::Purpose::kParameters));
    ASSIGN_OR_RETURN(shard_grad_, place.Allocate(bytes, memory::Purpose::kGradients));
    ASSIGN_OR_RETURN(reduce_out_, place.Allocate(bytes, memory::Purpose::kCommunication));

    // Which groups each node reads (parameters) and writes (parameter gradients).
    std::vector<int> param_of_value(graph.values().size(), -1);
    for (size_t i = 0; i < graph.params().size(); ++i) param_of_value[graph.params()[i]] = static_cast<int>(i);
    const int num_nodes = static_cast<int>(graph.nodes().size());
    data_groups_.resize(num_nodes);
    grad_groups_.resize(num_nodes);
    data_uses_.resize(groups_.size());
    last_grad_node_.assign(groups_.size(), -1);
    for (int node = 0; node < num_nodes; ++node) {
      const graph::Node& nd = graph.node(node);
      auto add = [](std::vector<int>& v, int g) {
        if (std::find(v.begin(), v.end(), g) == v.end()) v.push_back(g);
      };
      for (int v : nd.inputs) {
        const graph::Value& value = graph.value(v);
        if (value.kind == graph::ValueKind::kParam) add(data_groups_[node], group_of_param_[param_of_value[v]]);
        if (value.kind == graph::ValueKind::kParamGrad) {
          add(grad_groups_[node], group_of_param_[param_of_value[value.grad_of]]);
        }
      }
      for (int v : nd.outputs) {
        const graph::Value& value = graph.value(v);
        if (value.kind == graph::ValueKind::kParamGrad) {
          const int g = group_of_param_[param_of_value[value.grad_of]];
          add(grad_groups_[node], g);
          last_grad_node_[g] = node;
        }
      }
      for (int g : data_groups_[node]) data_uses_[g].push_back(node);
    }
    data_slot_of_.assign(groups_.size(), -1);
    grad_slot_of_.assign(groups_.size(), -1);
    data_ptr_.assign(params_->size(), nullptr);
    grad_ptr_.assign(params_->size(), nullptr);
    return absl::OkStatus();
  }

  void Attach(graph::Executor* executor) override {
    executor_ = executor;
    executor_->SetParamGrads(graph::Executor::ParamGrads::kFresh);
  }

  void BeginMicroStep(int micro_step, bool) override {
    if (micro_step == 0) params_->place().Zero(shard_grad_.data(), shard_grad_.bytes());
  }

  void BeforeNode(int node) override {
    for (int g : data_groups_[node]) EnsureData(g);
    for (int g : grad_groups_[node]) EnsureGrad(g);
    Prefetch(node);
  }

  void AfterNode(int node) override {
    for (int g : grad_groups_[node]) {
      if (last_grad_node_[g] == node) LaunchReduce(g);
    }
    // Release gathered groups not needed again soon.
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (data_slot_of_[g] < 0) continue;
      const auto& uses = data_uses_[g];
      auto next = std::upper_bound(uses.begin(), uses.end(), node);
      if (next == uses.end() || *next > node + kReleaseSlack) ReleaseData(static_cast<int>(g));
    }
    // A failure stays in status_ and is returned by FinishReduction.
    CompleteReduces(/*wait=*/false).IgnoreError();
  }

  absl::Status FinishReduction() override { return CompleteReduces(/*wait=*/true); }

  std::vector<memory::ParamSegment> OptimizerSegments() const override {
    std::vector<memory::ParamSegment> out;
    for (const Group& g : groups_) {
      const int64_t lo = g.begin + rank() * g.piece;
      const int64_t hi = std::min(lo + g.piece, g.begin + g.real);
      for (const memory::ParamSegment& s : params_->SegmentsIn(lo, hi)) out.push_back(s);
    }
    return out;
  }

  std::vector<float*> OptimizerWeights() const override {
    std::vector<float*> w;
    for (const memory::ParamSegment& s : OptimizerSegments()) w.push_back(shard_param_.as<float>() + ShardIndex(s));
    return w;
  }

  std::vector<const float*> OptimizerGrads() const override {
    std::vector<const float*> g;
    for (const memory::ParamSegment& s : OptimizerSegments()) g.push_back(shard_grad_.as<float>() + ShardIndex(s));
    return g;
  }

  absl::StatusOr<double> GradSumSquares() override {
    return ShardedSumSquares(shard_grad_.as<float>(), shard_numel_);
  }

  absl::Status AfterOptimizerStep() override {
    // Gathered copies are stale now.
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (data_slot_of_[g] >= 0) ReleaseData(static_cast<int>(g));
    }
    return status_;
  }

  HeldParams Held() override {
    HeldParams h;
    h.segments = OptimizerSegments();
    h.data = OptimizerWeights();
    return h;
  }

  absl::Status GatherAll(memory::ParamStore& full) override {
    const memory::Place& place = params_->place();
    ASSIGN_OR_RETURN(memory::Buffer tmp,
                     place.Allocate(max_group_ * static_cast<int64_t>(sizeof(float)), memory::Purpose::kCommunication));
    for (const Group& g : groups_) {
      absl::Status s = dp_->AllGather(shard_param_.as<float>() + g.shard, tmp.as<float>(), g.piece, DType::kF32)->Wait();
      if (!s.ok()) return s;
      for (int p = g.p0; p < g.p1; ++p) {
        place.CopyToHost(full.data(p), tmp.as<float>() + (params_->info(p).offset - g.begin),
                         params_->info(p).numel * static_cast<int64_t>(sizeof(float)));
      }
    }
    return absl::OkStatus();
  }

  int64_t param_bytes() const override { return shard_numel_ * 4; }
  int64_t grad_bytes() const override { return shard_numel_ * 4; }
  int64_t gathered_peak_bytes() const override {
    return static_cast<int64_t>(data_slots_.size() + grad_slots_.size()) * max_group_ * 4;
  }

 private:
  int64_t ShardIndex(const memory::ParamSegment& s) const {
    const Group& g = groups_[group_of_param_[s.param]];
    return g.shard + (s.flat_offset - (g.begin + rank() * g.piece));
  }

  int FreeSlot(std::vector<Slot>& slots) {
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i].group < 0) return static_cast<int>(i);
    }
    // The pool grows to the most groups in flight at once (a few); running out of memory
    // here is fatal, with the allocator's line naming the bytes and what holds them.
    absl::StatusOr<memory::Buffer> buf =
        params_->place().Allocate(max_group_ * static_cast<int64_t>(sizeof(float)), memory::Purpose::kParameters);
    COL_CHECK_MSG(buf.ok(), std::string(buf.status().message()).c_str());
    slots.push_back(Slot{std::move(*buf), -1, nullptr});
    return static_cast<int>(slots.size()) - 1;
  }

  void Bind(int g) {
    const Group& grp = groups_[g];
    for (int p = grp.p0; p < grp.p1; ++p) executor_->RebindParam(p, data_ptr_[p], grad_ptr_[p]);
  }

  void StartGather(int g) {
    const int s = FreeSlot(data_slots_);
    data_slots_[s].group = g;
    data_slot_of_[g] = s;
    data_slots_[s].gather = dp_->AllGather(shard_param_.as<float>() + groups_[g].shard,
                                           data_slots_[s].buf.as<float>(), groups_[g].piece, DType::kF32);
  }

  void EnsureData(int g) {
    if (data_slot_of_[g] < 0) StartGather(g);
    Slot& slot = data_slots_[data_slot_of_[g]];
    if (slot.gather) {
      absl::Status s = slot.gather->Wait();
      if (!s.ok() && status_.ok()) status_ = s;
      slot.gather.reset();
      const Group& grp = groups_[g];
      for (int p = grp.p0; p < grp.p1; ++p) {
        data_ptr_[p] = slot.buf.as<float>() + (params_->info(p).offset - grp.begin);
      }
      Bind(g);
    }
  }

  void ReleaseData(int g) {
    Slot& slot = data_slots_[data_slot_of_[g]];
    if (slot.gather) {
      slot.gather->Wait().IgnoreError();
      slot.gather.reset();
    }
    slot.group = -1;
    data_slot_of_[g] = -1;
    const Group& grp = groups_[g];
    for (int p = grp.p0; p < grp.p1; ++p) data_ptr_[p] = nullptr;
    Bind(g);
  }

  void Prefetch(int node) {
    const int end = std::min<int>(static_cast<int>(data_groups_.size()), node + 1 + kPrefetchWindow);
    for (int n = node + 1; n < end; ++n) {
      for (int g : data_groups_[n]) {
        if (data_slot_of_[g] < 0) {
          StartGather(g);
          return;  // one group ahead
        }
      }
    }
  }

  void EnsureGrad(int g) {
    if (grad_slot_of_[g] >= 0) return;
    const int s = FreeSlot(grad_slots_);
    grad_slots_[s].group = g;
    grad_slot_of_[g] = s;
    // Parameters without a gradient and the padding reduce as zeros.
    params_->place().Zero(grad_slots_[s].buf.data(), groups_[g].size * static_cast<int64_t>(sizeof(float)));
    const Group& grp = groups_[g];
    for (int p = grp.p0; p < grp.p1; ++p) {
      grad_ptr_[p] = grad_slots_[s].buf.as<float>() + (params_->info(p).offset - grp.begin);
    }
    Bind(g);
  }

  void LaunchReduce(int g) {
    const int s = grad_slot_of_[g];
    if (s < 0) return;
    pending_.push_back({dp_->ReduceScatter(grad_slots_[s].buf.as<float>(),
                                           reduce_out_.as<float>() + groups_[g].shard,
                                           groups_[g].piece, DType::kF32),
                        g, s});
    // The slot stays owned by the reduction until it completes.
    grad_slot_of_[g] = -1;
    const Group& grp = groups_[g];
    for (int p = grp.p0; p < grp.p1; ++p) grad_ptr_[p] = nullptr;
    Bind(g);
  }

  absl::Status CompleteReduces(bool wait) {
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (!wait && !it->work->Done()) {
        ++it;
        continue;
      }
      absl::Status s = it->work->Wait();
      if (!s.ok() && status_.ok()) status_ = s;
      const Group& grp = groups_[it->group];
      float* acc = shard_grad_.as<float>() + grp.shard;
      const float* add = reduce_out_.as<float>() + grp.shard;
      kernels::AddInto(add, acc, grp.piece, kernels::Accumulate::kYes, params_->place().stream());
      grad_slots_[it->slot].group = -1;
      it = pending_.erase(it);
    }
    return status_;
  }

  std::vector<Group> groups_;
  std::vector<int> group_of_param_;
  int64_t max_group_ = 0;
  int64_t shard_numel_ = 0;
  mutable memory::Buffer shard_param_, shard_grad_, reduce_out_;
  std::vector<std::vector<int>> data_groups_, grad_groups_, data_uses_;
  std::vector<int> last_grad_node_;
  std::vector<Slot> data_slots_, grad_slots_;
  std::vector<int> data_slot_of_, grad_slot_of_;
  std::vector<float*> data_ptr_, grad_ptr_;
  std::vector<PendingReduce> pending_;
  graph::Executor* executor_ = nullptr;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DataParallel>> CreateZero3(Communicator* dp,
                                                          const graph::Graph& graph,
                                                          memory::ParamStore* params,
                                                          const DataParallelOptions& options) {
  auto d = std::make_unique<Zero3>(dp, params, options);
  absl::Status s = d->Init(graph);
  if (!s.ok()) return s;
  return std::unique_ptr<DataParallel>(std::move(d));
}

}  // namespace colossal::parallel
