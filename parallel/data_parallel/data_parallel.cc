// Bucketed gradient reduction, sharded optimizer views and parameter gathering.
#include "parallel/data_parallel/data_parallel.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/optim/grad_norm.h"
#include "runtime/base/check.h"

namespace colossal::parallel {

int64_t DataParallel::PaddedNumel(int64_t flat, int ranks, const DataParallelOptions& options) {
  return BucketLayout(flat, ranks, options.bucket_bytes / 4).padded_numel();
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    Communicator* dp, const graph::Graph& graph, memory::ParamStore* params,
    const DataParallelOptions& options) {
  if (options.zero_stage < 0 || options.zero_stage > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("ZeRO stage ", options.zero_stage, " is not handled by DataParallel"));
  }
  BucketLayout layout(memory::ParamStore::FlatNumel([&] {
                        std::vector<memory::ParamStore::Spec> specs;
                        for (const memory::ParamInfo& i : params->infos()) specs.push_back({i.name, i.shape});
                        return specs;
                      }()),
                      dp->size(), options.bucket_bytes / 4);
  if (params->flat_numel() < layout.padded_numel()) {
    return absl::InternalError(absl::StrCat("parameter store holds ", params->flat_numel(),
                                            " elements; the data-parallel layout needs ",
                                            layout.padded_numel()));
  }
  std::unique_ptr<DataParallel> d(new DataParallel(dp, params, options, layout));
  // Which backward node writes each parameter's gradient last.
  std::vector<int> param_of_value(graph.values().size(), -1);
  for (size_t i = 0; i < graph.params().size(); ++i) param_of_value[graph.params()[i]] = static_cast<int>(i);
  std::vector<int> last_writer(params->size(), -1);
  for (const graph::Node& n : graph.nodes()) {
    if (!n.backward) continue;
    for (int out : n.outputs) {
      const graph::Value& v = graph.value(out);
      if (v.kind == graph::ValueKind::kParamGrad) last_writer[param_of_value[v.grad_of]] = n.id;
    }
  }
  d->finalized_at_.resize(graph.nodes().size());
  d->param_buckets_.resize(params->size());
  d->bucket_params_.assign(layout.num_buckets(), 0);
  for (int p = 0; p < params->size(); ++p) {
    const memory::ParamInfo& info = params->info(p);
    if (last_writer[p] >= 0) d->finalized_at_[last_writer[p]].push_back(p);
    if (info.numel == 0) continue;
    for (int b = layout.BucketOf(info.offset); b <= layout.BucketOf(info.offset + info.numel - 1); ++b) {
      d->param_buckets_[p].push_back(b);
      // Parameters without a gradient never complete their buckets; FinishReduction
      // launches those.
      if (last_writer[p] >= 0) ++d->bucket_params_[b];
    }
  }
  const int64_t shard = layout.padded_numel() / dp->size();
  if (options.zero_stage == 2) d->shard_grad_ = memory::HostBuffer(shard * sizeof(float));
  if (options.zero_stage >= 1) d->stage_ = memory::HostBuffer(shard * sizeof(float));
  return d;
}

void DataParallel::BeginReduction() {
  pending_ = bucket_params_;
  launched_.assign(layout_.num_buckets(), false);
  works_.clear();
}

void DataParallel::Launch(int b) {
  if (launched_[b]) return;
  launched_[b] = true;
  float* grad = params_->flat_grad() + layout_.bucket_begin(b);
  if (options_.zero_stage == 2) {
    works_.push_back(dp_->ReduceScatter(grad, shard_grad_.as<float>() + b * layout_.piece_size(),
                                        layout_.piece_size(), DType::kF32));
  } else {
    works_.push_back(dp_->AllReduce(grad, layout_.bucket_size(), DType::kF32));
  }
}

void DataParallel::OnBackwardNode(int node) {
  if (node < 0 || node >= static_cast<int>(finalized_at_.size())) return;
  for (int p : finalized_at_[node]) {
    for (int b : param_buckets_[p]) {
      if (--pending_[b] == 0) Launch(b);
    }
  }
}

absl::Status DataParallel::FinishReduction() {
  // Launch in bucket order what backward did not complete (buckets of parameters without
  // gradients, padding-only buckets): every rank issues the same sequence.
  for (int b = layout_.num_buckets() - 1; b >= 0; --b) Launch(b);
  absl::Status status;
  for (auto& w : works_) {
    absl::Status s = w->Wait();
    if (status.ok() && !s.ok()) status = s;
  }
  works_.clear();
  return status;
}

std::vector<memory::ParamSegment> DataParallel::OptimizerSegments() const {
  if (options_.zero_stage == 0) return params_->WholeTensors();
  std::vector<memory::ParamSegment> out;
  for (auto [begin, end] : layout_.Owned(rank())) {
    for (const memory::ParamSegment& s : params_->SegmentsIn(begin, end)) out.push_back(s);
  }
  return out;
}

const float* DataParallel::ShardGrad(int64_t flat) const {
  const int b = layout_.BucketOf(flat);
  const int64_t within = flat - layout_.piece_begin(b, rank());
  COL_CHECK(within >= 0 && within < layout_.piece_size());
  return shard_grad_.as<float>() + b * layout_.piece_size() + within;
}

std::vector<const float*> DataParallel::OptimizerGrads() const {
  std::vector<const float*> grads;
  for (const memory::ParamSegment& s : OptimizerSegments()) {
    grads.push_back(options_.zero_stage == 2 ? ShardGrad(s.flat_offset)
                                             : params_->flat_grad() + s.flat_offset);
  }
  return grads;
}

absl::StatusOr<std::vector<double>> DataParallel::Sum(std::vector<double> values) {
  // (hi, lo) float pairs: each rank's value to ~1e-14; the float sums of the hi parts
  // round at ~6e-8 of the total, ample for norms and losses.
  std::vector<float> pairs(2 * values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    pairs[2 * i] = static_cast<float>(values[i]);
    pairs[2 * i + 1] = static_cast<float>(values[i] - static_cast<double>(pairs[2 * i]));
  }
  absl::Status s = dp_->AllReduce(pairs.data(), static_cast<int64_t>(pairs.size()), DType::kF32)->Wait();
  if (!s.ok()) return s;
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<double>(pairs[2 * i]) + static_cast<double>(pairs[2 * i + 1]);
  }
  return values;
}

std::function<void(std::vector<double>&)> DataParallel::SumReducer() {
  if (options_.zero_stage == 0) return {};
  return [this](std::vector<double>& values) {
    auto summed = Sum(values);
    // A failed collective leaves the per-rank values; the next collective of the step
    // (the parameter all-gather) reports the error.
    if (summed.ok()) values = std::move(*summed);
  };
}

absl::StatusOr<double> DataParallel::GradSumSquares() {
  double sum = 0;
  if (options_.zero_stage < 2) {
    // Every rank holds the whole reduced gradient.
    kernels::SumSquares(params_->flat_grad(), layout_.padded_numel(), &sum);
    return sum;
  }
  kernels::SumSquares(shard_grad_.as<float>(), layout_.padded_numel() / size(), &sum);
  auto total = Sum({sum});
  if (!total.ok()) return total.status();
  return (*total)[0];
}

absl::Status DataParallel::GatherParams() {
  if (options_.zero_stage == 0) return absl::OkStatus();
  const int64_t L = layout_.piece_size();
  std::vector<std::unique_ptr<Work>> works;
  for (int b = 0; b < layout_.num_buckets(); ++b) {
    float* stage = stage_.as<float>() + b * L;
    std::memcpy(stage, params_->flat_data() + layout_.piece_begin(b, rank()), L * sizeof(float));
    works.push_back(dp_->AllGather(stage, params_->flat_data() + layout_.bucket_begin(b), L, DType::kF32));
  }
  absl::Status status;
  for (auto& w : works) {
    absl::Status s = w->Wait();
    if (status.ok() && !s.ok()) status = s;
  }
  return status;
}

absl::Status DataParallel::Barrier() { return dp_->Barrier()->Wait(); }

int64_t DataParallel::reduced_grad_bytes() const {
  return options_.zero_stage == 2 ? layout_.padded_numel() / size() * 4
                                  : layout_.padded_numel() * 4;
}

}  // namespace colossal::parallel
