// ZeRO stages 0–2: bucketed gradient reduction, sharded optimizer views and parameter
// all-gather; plus what every stage shares.
#include "parallel/data_parallel/data_parallel.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/convert/convert.h"
#include "kernels/optim/grad_norm.h"
#include "memory/allocator.h"
#include "parallel/data_parallel/bucket_layout.h"
#include "parallel/process_groups.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

absl::Status WaitAll(std::vector<std::unique_ptr<Work>>& works) {
  absl::Status status;
  for (auto& w : works) {
    absl::Status s = w->Wait();
    if (status.ok() && !s.ok()) status = s;
  }
  works.clear();
  return status;
}

class Replicated : public DataParallel {
 public:
  Replicated(Communicator* dp, memory::ParamStore* params, const DataParallelOptions& options,
             BucketLayout layout)
      : DataParallel(dp, params, options), layout_(layout) {}

  absl::Status Init(const graph::Graph& graph) {
    if (params_->flat_numel() < layout_.padded_numel()) {
      return absl::InternalError(absl::StrCat("parameter store holds ", params_->flat_numel(),
                                              " elements; the data-parallel layout needs ",
                                              layout_.padded_numel()));
    }
    const std::vector<int> last_writer = LastGradWriters(graph);
    finalized_at_.resize(graph.nodes().size());
    param_buckets_.resize(params_->size());
    bucket_params_.assign(layout_.num_buckets(), 0);
    for (int p = 0; p < params_->size(); ++p) {
      const memory::ParamInfo& info = params_->info(p);
      if (last_writer[p] >= 0) finalized_at_[last_writer[p]].push_back(p);
      if (info.numel == 0) continue;
      for (int b = layout_.BucketOf(info.offset); b <= layout_.BucketOf(info.offset + info.numel - 1); ++b) {
        param_buckets_[p].push_back(b);
        // Parameters without a gradient never complete their buckets; FinishReduction
        // launches those.
        if (last_writer[p] >= 0) ++bucket_params_[b];
      }
    }
    const int64_t shard = layout_.padded_numel() / size();
    // Where the parameters are (the host, or the device the collectives read on).
    const memory::Place& place = params_->place();
    const int64_t bytes = shard * static_cast<int64_t>(sizeof(float));
    if (zero_stage() == 2) {
      ASSIGN_OR_RETURN(shard_grad_, place.Allocate(bytes, memory::Purpose::kGradients));
    }
    if (zero_stage() >= 1) {
      ASSIGN_OR_RETURN(stage_, place.Allocate(bytes, memory::Purpose::kCommunication));
    }
    if (options_.reduce_bf16) {
      // bf16 copies of the flat gradients (and, stage 2, of this rank's reduced pieces).
      ASSIGN_OR_RETURN(low_, place.Allocate(layout_.padded_numel() * 2, memory::Purpose::kCommunication));
      if (zero_stage() == 2) {
        ASSIGN_OR_RETURN(low_shard_, place.Allocate(shard * 2, memory::Purpose::kCommunication));
      }
    }
    return absl::OkStatus();
  }

  void Attach(graph::Executor*) override {}

  void BeginMicroStep(int, bool last) override {
    armed_ = last;
    if (!last) return;
    pending_ = bucket_params_;
    launched_.assign(layout_.num_buckets(), false);
    works_.clear();
  }

  void BeforeNode(int) override {}

  void AfterNode(int node) override {
    if (!armed_) return;
    for (int p : finalized_at_[node]) {
      for (int b : param_buckets_[p]) {
        if (--pending_[b] == 0) Launch(b);
      }
    }
  }

  absl::Status FinishReduction() override {
    armed_ = false;
    // Launch, in a fixed order, what backward did not complete (buckets of parameters
    // without gradients, padding): every rank issues the same sequence.
    for (int b = layout_.num_buckets() - 1; b >= 0; --b) Launch(b);
    RETURN_IF_ERROR(WaitAll(works_));
    if (options_.reduce_bf16) {
      // The bf16 sums back to fp32 where the optimizer reads them.
      const kernels::Stream stream = params_->place().stream();
      if (zero_stage() == 2) {
        kernels::Cast16ToF32(DType::kBF16, low_shard_.as<uint16_t>(), shard_grad_.as<float>(),
                             layout_.padded_numel() / size(), stream);
      } else {
        kernels::Cast16ToF32(DType::kBF16, low_.as<uint16_t>(), params_->flat_grad(), layout_.padded_numel(), stream);
      }
    }
    return absl::OkStatus();
  }

  std::vector<memory::ParamSegment> OptimizerSegments() const override {
    if (zero_stage() == 0) return params_->WholeTensors();
    std::vector<memory::ParamSegment> out;
    for (auto [begin, end] : layout_.Owned(rank())) {
      for (const memory::ParamSegment& s : params_->SegmentsIn(begin, end)) out.push_back(s);
    }
    return out;
  }

  std::vector<float*> OptimizerWeights() const override {
    return params_->SegmentData(OptimizerSegments());
  }

  std::vector<const float*> OptimizerGrads() const override {
    std::vector<const float*> grads;
    for (const memory::ParamSegment& s : OptimizerSegments()) {
      if (zero_stage() == 2) {
        const int b = layout_.BucketOf(s.flat_offset);
        const int64_t within = s.flat_offset - layout_.piece_begin(b, rank());
        COL_CHECK(within >= 0 && within < layout_.piece_size());
        grads.push_back(shard_grad_.as<float>() + b * layout_.piece_size() + within);
      } else {
        grads.push_back(params_->flat_grad() + s.flat_offset);
      }
    }
    return grads;
  }

  absl::StatusOr<double> GradSumSquares() override {
    if (zero_stage() == 2) {
      return ShardedSumSquares(shard_grad_.as<float>(), layout_.padded_numel() / size());
    }
    // Every rank holds the whole reduced gradient.
    return kernels::SumSquaresToHost(params_->flat_grad(), layout_.padded_numel(), params_->place().stream());
  }

  absl::Status AfterOptimizerStep() override {
    if (zero_stage() == 0) return absl::OkStatus();
    const int64_t L = layout_.piece_size();
    std::vector<std::unique_ptr<Work>> works;
    for (int b = 0; b < layout_.num_buckets(); ++b) {
      float* stage = stage_.as<float>() + b * L;
      params_->place().Copy(stage, params_->flat_data() + layout_.piece_begin(b, rank()), L * sizeof(float));
      works.push_back(dp_->AllGather(stage, params_->flat_data() + layout_.bucket_begin(b), L, DType::kF32));
    }
    return WaitAll(works);
  }

  HeldParams Held() override {
    HeldParams h;
    h.segments = params_->WholeTensors();
    h.data = params_->SegmentData(h.segments);
    return h;
  }

  absl::Status GatherAll(memory::ParamStore& full) override {
    for (int i = 0; i < params_->size(); ++i) {
      params_->place().CopyToHost(full.data(i), params_->data(i), params_->info(i).numel * sizeof(float));
    }
    return absl::OkStatus();
  }

  int64_t param_bytes() const override { return params_->flat_numel() * 4; }
  int64_t grad_bytes() const override {
    return zero_stage() == 2 ? layout_.padded_numel() / size() * 4 : layout_.padded_numel() * 4;
  }

 private:
  void Launch(int b) {
    if (launched_[b]) return;
    launched_[b] = true;
    float* grad = params_->flat_grad() + layout_.bucket_begin(b);
    if (options_.reduce_bf16) {
      uint16_t* low = low_.as<uint16_t>() + layout_.bucket_begin(b);
      kernels::CastTo16(DType::kBF16, grad, low, layout_.bucket_size(), params_->place().stream());
      if (zero_stage() == 2) {
        works_.push_back(dp_->ReduceScatter(low, low_shard_.as<uint16_t>() + b * layout_.piece_size(),
                                            layout_.piece_size(), DType::kBF16));
      } else {
        works_.push_back(dp_->AllReduce(low, layout_.bucket_size(), DType::kBF16));
      }
      return;
    }
    if (zero_stage() == 2) {
      works_.push_back(dp_->ReduceScatter(grad, shard_grad_.as<float>() + b * layout_.piece_size(),
                                          layout_.piece_size(), DType::kF32));
    } else {
      works_.push_back(dp_->AllReduce(grad, layout_.bucket_size(), DType::kF32));
    }
  }

  BucketLayout layout_;
  bool armed_ = false;
  std::vector<std::vector<int>> finalized_at_;   // per graph node: params whose grad is done
  std::vector<std::vector<int>> param_buckets_;  // per param: buckets it touches
  std::vector<int> bucket_params_;               // per bucket: params touching it
  std::vector<int> pending_;
  std::vector<bool> launched_;
  std::vector<std::unique_ptr<Work>> works_;
  memory::Buffer shard_grad_;  // stage 2: reduced gradients of this rank's pieces
  memory::Buffer stage_;            // stages 1, 2: this rank's pieces, sent by all-gather
  memory::Buffer low_, low_shard_;  // reduce_bf16: the bf16 gradients, and stage 2's pieces
};

}  // namespace

std::vector<int> LastGradWriters(const graph::Graph& graph) {
  std::vector<int> param_of_value(graph.values().size(), -1);
  for (size_t i = 0; i < graph.params().size(); ++i) param_of_value[graph.params()[i]] = static_cast<int>(i);
  std::vector<int> last_writer(graph.params().size(), -1);
  for (const graph::Node& n : graph.nodes()) {
    if (!n.backward) continue;
    for (int out : n.outputs) {
      const graph::Value& v = graph.value(out);
      if (v.kind == graph::ValueKind::kParamGrad) last_writer[param_of_value[v.grad_of]] = n.id;
    }
  }
  return last_writer;
}

int64_t DataParallel::PaddedNumel(int64_t flat, int ranks, const DataParallelOptions& options) {
  return BucketLayout(flat, ranks, options.bucket_bytes / 4).padded_numel();
}

absl::StatusOr<std::unique_ptr<DataParallel>> CreateReplicated(Communicator* dp,
                                                               const graph::Graph& graph,
                                                               memory::ParamStore* params,
                                                               const DataParallelOptions& options) {
  auto d = std::make_unique<Replicated>(
      dp, params, options,
      BucketLayout(memory::ParamStore::FlatNumel(params->specs()), dp->size(), options.bucket_bytes / 4));
  absl::Status s = d->Init(graph);
  if (!s.ok()) return s;
  return std::unique_ptr<DataParallel>(std::move(d));
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    Communicator* dp, const graph::Graph& graph, memory::ParamStore* params,
    const DataParallelOptions& options) {
  if (options.zero_stage < 0 || options.zero_stage > 3) {
    return absl::InvalidArgumentError(absl::StrCat("ZeRO stage ", options.zero_stage, " (0..3)"));
  }
  if (options.zero_stage == 3 && options.reduce_bf16) {
    return absl::InvalidArgumentError("ZeRO 3 reduces its gradients in fp32 only");
  }
  if (options.zero_stage == 3) return CreateZero3(dp, graph, params, options);
  return CreateReplicated(dp, graph, params, options);
}

absl::StatusOr<std::vector<double>> DataParallel::Sum(std::vector<double> values) {
  return SumDoubles(*dp_, std::move(values));
}

absl::Status DataParallel::Barrier() { return dp_->Barrier()->Wait(); }

std::function<void(std::vector<double>&)> DataParallel::SumReducer() {
  if (zero_stage() == 0) return {};
  return [this](std::vector<double>& values) {
    auto summed = Sum(values);
    // A failed collective leaves the per-rank values; the collectives that follow in the
    // same step report the error.
    if (summed.ok()) values = std::move(*summed);
  };
}

absl::StatusOr<double> DataParallel::ShardedSumSquares(const float* shard, int64_t n) {
  const double sum = kernels::SumSquaresToHost(shard, n, params_->place().stream());
  auto total = Sum({sum});
  if (!total.ok()) return total.status();
  return (*total)[0];
}

}  // namespace colossal::parallel
