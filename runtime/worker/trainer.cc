// The step loop.
#include "runtime/worker/trainer.h"

#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/optim/grad_norm.h"
#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/data/loader.h"
#include "runtime/data/token_file.h"
#include "runtime/data/tokenizer.h"
#include "parallel/data_parallel/data_parallel.h"
#include "parallel/pipeline/runner.h"
#include "parallel/process_groups.h"
#include "runtime/worker/batch_io.h"
#include "runtime/worker/checkpointing.h"
#include "runtime/worker/device_peak.h"
#include "runtime/worker/loss_scaler.h"
#include "runtime/worker/lr_schedule.h"
#include "runtime/worker/metrics.h"
#include "runtime/worker/model.h"
#include "runtime/worker/optimizer.h"
#include "runtime/worker/partial_grads.h"
#include "runtime/worker/pipeline_stage.h"
#include "runtime/worker/pipeline_trace.h"
#include "runtime/worker/sampler.h"
#include "runtime/worker/step_line.h"

namespace colossal::worker {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int PickThreads(const config::JobSpec& spec, const TrainOptions& options) {
  if (options.threads > 0) return options.threads;
  if (auto env = base::GetEnv(base::kEnvThreads)) {
    int n = std::atoi(env->c_str());
    if (n > 0) return n;
  }
  if (spec.resources.threads_per_rank > 0) return static_cast<int>(spec.resources.threads_per_rank);
  int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores / static_cast<int>(std::max<int64_t>(1, spec.resources.ranks_per_node)));
}

bool WantProgress(const TrainOptions& options) {
  if (options.progress >= 0) return options.progress > 0;
  if (auto env = base::GetEnv(base::kEnvProgress)) return *env == "1";
  return isatty(STDERR_FILENO) == 1;
}

// Everything one run holds.
class Run {
 public:
  Run(const config::JobSpec& spec, const TrainOptions& options) : spec_(spec), options_(options) {}

  absl::StatusOr<TrainSummary> Execute();

 private:
  absl::Status Setup();
  absl::Status Restore();
  absl::Status TrainStep(int64_t step);
  absl::StatusOr<double> Validate();
  absl::Status SaveCheckpoint(int64_t steps_done);
  bool rank0() const { return world_rank_ == 0; }
  TrainState State() {
    return {&spec_, model_->params.get(), optimizer_.get(), dp_.get(), options_.groups,
            tp_size_ > 1 ? &model_->layouts : nullptr,
            pp_size_ > 1 ? &stored_ : (tp_size_ > 1 ? &counted_ : nullptr), gemini_.get()};
  }
  // Σ over `comm` (null: this rank's values).
  absl::StatusOr<std::vector<double>> SumOver(parallel::Communicator* comm, std::vector<double> v) {
    if (comm == nullptr) return v;
    return parallel::SumDoubles(*comm, std::move(v));
  }
  absl::Status ExecutorStatus() const { return model_->executor->status(); }
  // Whether this rank counts parameter `param` in norms summed over the tensor group (and
  // stores it in checkpoints): its part of a tensor split over every tensor axis the mode
  // has; a tensor whole along an axis only on that axis's first rank.
  bool CountsInTensorSums(int param) const { return counted_[param]; }
  bool ComputeCounted(int param) const {
    const graph::Layout& l = model_->layouts[param];
    if (two_d_ || three_d_) {
      return (l.split_over("row") || row_index_ == 0) && (l.split_over("col") || col_index_ == 0) &&
             (l.split_over("depth") || depth_index_ == 0);
    }
    return tp_rank_ == 0 || l.split();
  }
  absl::StatusOr<double> GradSumSquares();
  // Pipeline parallelism: the slot executors' process groups and fixed inputs; one
  // step's forwards and backwards through the Runner; the measured bubble of the step
  // over the pipeline group.
  absl::Status SetupSlot(const graph::Graph& chunk, graph::Executor& ex);
  // fp16: times the loss scale (loss_scaler.h).
  float LossSeed() const { return scaler_.scale() / static_cast<float>(accumulation_ * replicas_ * q_ * depth_); }
  // The executor's tensor-parallel groups ("tensor", or the grid's "row", "col", "depth")
  // and the sequence group.
  void BindTensorGroups(graph::Executor& ex) const;
  absl::Status PipelineStep(int64_t step, double& loss_sum);
  // One step's micro-batches through the one executor.
  absl::Status MicroSteps(int64_t step, double& loss_sum);
  // Sums the gradients that are partial over the tensor group (sequence parallelism) in
  // the segments this rank's optimizer reads, in one all-reduce.
  absl::Status SumPartialGrads();
  // Bytes this rank has sent so far over each communicator of its plan, by axis name
  // ("data", "tensor"; "world" when that is a communicator of its own).
  std::vector<std::pair<std::string, int64_t>> CommBytes() const;
  void ReduceTensorSums(std::vector<double>& sums);
  std::string StateJson(int64_t steps_done) const;
  std::string Sample();

  const config::JobSpec& spec_;
  const TrainOptions& options_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  std::unique_ptr<data::WindowLoader> train_loader_;
  std::unique_ptr<data::WindowLoader> val_loader_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<parallel::DataParallel> dp_;  // null: one rank
  std::unique_ptr<GeminiState> gemini_;  // the memory keys' chunks (then optimizer_ is null)
  int rank_ = 0;   // in the data-parallel group
  int ranks_ = 1;
  // Sequence parallelism: this rank's place in the sequence group; the replicas of the
  // parameters (data × sequence) are what the data-parallel engine reduces over.
  int sp_rank_ = 0, sp_size_ = 1;
  parallel::Communicator* sp_comm_ = nullptr;
  parallel::Communicator* replica_comm_ = nullptr;
  int replica_rank_ = 0, replicas_ = 1;
  int world_rank_ = 0;
  int world_size_ = 1;
  int tp_rank_ = 0;
  int tp_size_ = 1;
  parallel::Communicator* data_comm_ = nullptr;
  parallel::Communicator* tp_comm_ = nullptr;
  // 2d: the q×q grid, this rank's (row, col) and the grid column / grid row groups
  // ("row": ranks that differ in the row index; "col": in the column index).
  bool two_d_ = false;
  // 2.5d: depth slices of that grid, this rank's slice and the depth group.
  // 3d: the q×q×q cube (depth_ = q), with the same three groups.
  bool three_d_ = false;
  int64_t q_ = 1, depth_ = 1, row_index_ = 0, col_index_ = 0, depth_index_ = 0;
  parallel::Communicator* row_comm_ = nullptr;
  parallel::Communicator* col_comm_ = nullptr;
  parallel::Communicator* depth_comm_ = nullptr;
  std::vector<bool> counted_;  // per parameter, CountsInTensorSums
  // Pipeline parallelism: this rank's stage, the group along the pipeline and the
  // interpreter of the schedule over this rank's chunks (their graphs, its per-chunk
  // data inputs). A shared parameter (wte) is counted in norms and stored by its first
  // holder only (Model::stage_owned); stored_ = counted_ and stage_owned.
  int pp_rank_ = 0, pp_size_ = 1;
  parallel::Communicator* pp_comm_ = nullptr;
  std::unique_ptr<PipelineStage> stage_;
  std::vector<bool> stored_;
  BatchIo batch_io_;  // the one executor's inputs and losses, staged on the host
  bool stop_agreed_ = false;
  std::optional<JsonlSink> metrics_;
  int64_t start_step_ = 0;
  bool profile_ = false;
  double optimizer_seconds_ = 0;
  int64_t accumulation_ = 1;
  double peak_flops_ = 0;
  bool OnDevice() const { return options_.place != nullptr && options_.place->backend() == kernels::Backend::kCuda; }
  // Last step's figures.
  double loss_ = 0, lr_ = 0, grad_norm_ = 0;
  std::string last_checkpoint_;
  LossScaler scaler_{spec_.train.loss_scale, spec_.train.precision == config::Precision::kFp16};
};

absl::Status Run::Setup() {
  omp_set_num_threads(PickThreads(spec_, options_));
  if (const parallel::ProcessGroups* g = options_.groups) {
    world_rank_ = g->rank();
    world_size_ = g->world_size();
    data_comm_ = g->axis(parallel::Axis::kData);
    tp_comm_ = g->axis(parallel::Axis::kTensor);
    rank_ = static_cast<int>(g->index(parallel::Axis::kData));
    ranks_ = static_cast<int>(g->plan().degree(parallel::Axis::kData));
    tp_rank_ = static_cast<int>(g->index(parallel::Axis::kTensor));
    tp_size_ = static_cast<int>(g->plan().degree(parallel::Axis::kTensor));
    pp_comm_ = g->axis(parallel::Axis::kPipeline);
    pp_rank_ = static_cast<int>(g->index(parallel::Axis::kPipeline));
    pp_size_ = static_cast<int>(g->plan().degree(parallel::Axis::kPipeline));
    sp_comm_ = g->axis(parallel::Axis::kSequence);
    sp_rank_ = static_cast<int>(g->index(parallel::Axis::kSequence));
    sp_size_ = static_cast<int>(g->plan().degree(parallel::Axis::kSequence));
    replica_comm_ = g->replicas();
    replica_rank_ = static_cast<int>(g->replica_index());
    replicas_ = static_cast<int>(g->num_replicas());
    const parallel::TensorMode mode = g->plan().tensor_mode();
    if (mode != parallel::TensorMode::k1d && tp_size_ > 1) {
      two_d_ = mode != parallel::TensorMode::k3d;
      three_d_ = !two_d_;
      q_ = g->plan().tensor_q();
      if (mode != parallel::TensorMode::k2d) {
        depth_ = g->plan().tensor_depth();
        depth_index_ = g->tensor_index(parallel::TensorAxis::kDepth);
        depth_comm_ = g->tensor_axis(parallel::TensorAxis::kDepth);
      }
      row_index_ = g->tensor_index(parallel::TensorAxis::kRow);
      col_index_ = g->tensor_index(parallel::TensorAxis::kCol);
      row_comm_ = g->tensor_axis(parallel::TensorAxis::kRow);
      col_comm_ = g->tensor_axis(parallel::TensorAxis::kCol);
    }
  }
  const config::ParallelSpec& par = spec_.parallel;
  if (ranks_ != par.data || tp_size_ != par.tensor || pp_size_ != par.pipeline || sp_size_ != par.sequence) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel.data, tensor, pipeline and sequence are ", par.data, ", ", par.tensor, ", ", par.pipeline, " and ",
        par.sequence, " but the process groups have ", ranks_, ", ", tp_size_, ", ", pp_size_, " and ", sp_size_,
        " ranks"));
  }
  std::error_code ec;
  fs::create_directories(spec_.run_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(spec_.run_dir, ": ", ec.message()));
  if (rank0()) {
    std::ofstream out(fs::path(spec_.run_dir) / "job.yaml");
    out << config::ToYaml(spec_);
  }

  ASSIGN_OR_RETURN(tokenizer_, data::MakeTokenizer(spec_.data.tokenizer));
  ASSIGN_OR_RETURN(data::TokenStream stream, data::LoadTokens(spec_.data.train, *tokenizer_));
  accumulation_ = spec_.train.AccumulationSteps(spec_.parallel.data);
  parallel::DataParallelOptions dp_options;
  dp_options.zero_stage = static_cast<int>(spec_.parallel.zero);
  dp_options.bucket_bytes = spec_.parallel.bucket_bytes;
  dp_options.reduce_bf16 = spec_.parallel.reduce_dtype == config::ReduceDType::kBf16;
  const bool zero3 = replicas_ > 1 && spec_.parallel.zero == 3;
  const bool gemini = spec_.memory.gemini();  // chunks hold the parameters, not the store
  PipelinePlacement placement;
  if (pp_size_ > 1 && options_.place != nullptr && options_.place->backend() != kernels::Backend::kCpu) {
    // The pipeline runner's executors and transfers are host-only so far.
    return absl::FailedPreconditionError(
        absl::StrCat("parallel.pipeline: pipeline stages do not run on the ",
                     std::string(kernels::BackendName(options_.place->backend())), " backend yet"));
  }
  if (pp_size_ > 1) {
    const config::ParallelSpec& p = spec_.parallel;
    ASSIGN_OR_RETURN(placement.schedule,
                     parallel::pipeline::MakeSchedule(p.pipeline_schedule, static_cast<int>(p.pipeline),
                                                      static_cast<int>(accumulation_),
                                                      static_cast<int>(p.pipeline_chunks)));
    placement.rank = pp_rank_;
    for (int64_t n : p.pipeline_layers_per_stage) placement.layers_per_stage.push_back(static_cast<int>(n));
  }
  ASSIGN_OR_RETURN(model_, BuildModel(
                               spec_, spec_.train.micro_batch,
                               [&](int64_t flat) {
                                 return replicas_ > 1 && !zero3
                                            ? parallel::DataParallel::PaddedNumel(flat, replicas_, dp_options)
                                            : flat;
                               },
                               /*allocate_params=*/!zero3 && !gemini,
                               TensorParallelOf(spec_.parallel, tp_rank_),
                               pp_size_ > 1 ? &placement : nullptr, SequenceParallelOf(spec_.parallel, sp_rank_),
                               options_.place));
  for (int p = 0; p < model_->params->size(); ++p) {
    counted_.push_back(ComputeCounted(p));
    stored_.push_back(counted_.back() && model_->stage_owned[p]);
  }
  if (model_->pipelined) {
    ASSIGN_OR_RETURN(stage_, PipelineStage::Create(placement.schedule, pp_rank_, *model_, pp_comm_,
                                                   [this](const graph::Graph& g, graph::Executor& ex) {
                                                     return SetupSlot(g, ex);
                                                   }));
  } else {
    BindTensorGroups(*model_->executor);
  }
  if (stream.vocab_size > model_->vocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec_.data.train, ": tokens use a vocabulary of ", stream.vocab_size,
        " but model.vocab is ", model_->vocab, " (set model.vocab >= ", stream.vocab_size, ")"));
  }
  ASSIGN_OR_RETURN(data::TrainValSplit split,
                   data::SplitTrainVal(std::move(stream), spec_.data.val_fraction));
  ASSIGN_OR_RETURN(auto train_loader,
                   data::WindowLoader::Create(
                       split.train, model_->window,
                       spec_.data.shuffle ? data::Shuffle::kYes : data::Shuffle::kNo,
                       spec_.train.seed, spec_.data.train));
  train_loader_ = std::make_unique<data::WindowLoader>(std::move(train_loader));
  if (spec_.data.val_fraction > 0) {
    auto val_loader = data::WindowLoader::Create(split.val, model_->window, data::Shuffle::kNo, 0,
                                                 "validation split of " + spec_.data.train);
    if (!val_loader.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("data.val_fraction: ", val_loader.status().message()));
    }
    val_loader_ = std::make_unique<data::WindowLoader>(std::move(*val_loader));
  }
  if (gemini) {
    ASSIGN_OR_RETURN(gemini_, GeminiState::Create(spec_, model_->graph, model_->executor.get(), model_->params.get(),
                                                   accumulation_));
    for (const std::string& line : DescribeGeminiPlan(gemini_->plan(), spec_)) LOG_INFO("{}", line);
    if (!gemini_->io_note().empty()) LOG_INFO("gemini: NVMe I/O {}", gemini_->io_note());
  } else if (replicas_ > 1) {
    ASSIGN_OR_RETURN(dp_, parallel::DataParallel::Create(replica_comm_, model_->graph,
                                                         model_->params.get(), dp_options));
    if (!model_->pipelined) {
      // Buckets are reduced as the backward completes them. (A pipeline's micro-batches
      // of different chunks interleave: its buckets are all reduced after the step.)
      dp_->Attach(model_->executor.get());
      model_->executor->SetHooks([this](int node) { dp_->BeforeNode(node); },
                                 [this](int node) { dp_->AfterNode(node); });
    }
    auto dp_sums = dp_->SumReducer();
    Optimizer::ReduceSums sums = dp_sums;
    if (tp_size_ > 1) {
      sums = [this, dp_sums](std::vector<double>& v) {
        if (dp_sums) dp_sums(v);
        ReduceTensorSums(v);
      };
    }
    optimizer_ = std::make_unique<Optimizer>(spec_.train.optimizer, model_->params.get(),
                                             dp_->OptimizerSegments(), dp_->OptimizerWeights(),
                                             dp_->OptimizerGrads(), sums);
  } else {
    const auto whole = model_->params->WholeTensors();
    Optimizer::ReduceSums sums;
    if (tp_size_ > 1) sums = [this](std::vector<double>& v) { ReduceTensorSums(v); };
    optimizer_ = std::make_unique<Optimizer>(spec_.train.optimizer, model_->params.get(), whole,
                                             model_->params->SegmentData(whole),
                                             model_->params->SegmentGrads(whole), sums);
  }
  if (optimizer_) RETURN_IF_ERROR(optimizer_->status());
  if (tp_size_ > 1) optimizer_->SetLayouts(&model_->layouts);
  // The loss seed: each micro-batch's mean loss weighs 1/accumulation of the step's mean,
  // and the reduction sums the replicas' gradients, so 1/replicas more (a sequence rank's
  // loss is the mean over its equal share of the window's tokens).
  // 2d / 2.5d: each rank's loss is its token block's mean, 1/(q·depth) of the
  // micro-batch's; 3d: 1/q² (depth_ = q).
  // (Written every step in MicroSteps, with the loss scale; pipeline slots: SetupSlot.)
  RETURN_IF_ERROR(Restore());
  if (rank0()) {
    ASSIGN_OR_RETURN(metrics_, JsonlSink::Open((fs::path(spec_.run_dir) / "metrics.jsonl").string(),
                                               /*truncate=*/start_step_ == 0));
  }
  peak_flops_ = OnDevice() ? GpuBf16PeakFlops(CudaDevice0Name()) : MatmulPeakFlops();  // MFU's denominator
  profile_ = base::GetEnv(base::kEnvProfile).value_or("0") == "1";
  if (stage_) {
    LOG_INFO("pipeline stage {} of {}: schedule {}, {} chunk(s) of virtual stages", pp_rank_, pp_size_,
             parallel::pipeline::ScheduleName(spec_.parallel.pipeline_schedule), stage_->num_chunks());
  } else {
    model_->executor->EnableProfiling(profile_);
  }
  // (A pipeline's arenas are its slots', grown during the first step.)
  LOG_INFO("model: {} parameters on this rank, micro-batch {} x {} tokens, {} micro-batches "
           "per step, arena {:.1f} MiB, {} threads, {} data-parallel x {} tensor-parallel x {} pipeline "
           "x {} sequence rank(s), ZeRO {}; bytes per rank: "
           "parameters {:.1f} MiB, gradients {:.1f} MiB, optimizer state {:.1f} MiB",
           model_->params->num_params(), model_->batch, model_->seq, accumulation_,
           stage_ ? 0.0 : model_->executor->plan().arena_bytes / 1048576.0, omp_get_max_threads(), ranks_,
           tp_size_, pp_size_, sp_size_, spec_.parallel.zero,
           (dp_ ? dp_->param_bytes() : model_->params->flat_numel() * 4) / 1048576.0,
           (dp_ ? dp_->grad_bytes() : model_->params->flat_numel() * 4) / 1048576.0,
           optimizer_ ? optimizer_->state_bytes() / 1048576.0 : 0.0);
  return absl::OkStatus();
}

absl::Status Run::Restore() {
  if (spec_.train.resume) {
    ASSIGN_OR_RETURN(std::optional<Restored> restored, RestoreLatest(State()));
    if (restored) {
      start_step_ = restored->step;
      if (restored->loss_scale > 0) {
        scaler_.Restore({restored->loss_scale, restored->loss_scale_good_steps, restored->skipped_steps});
      }
      last_checkpoint_ = restored->path;
      LOG_INFO("resumed from {} (step {})", restored->path, start_step_);
      return absl::OkStatus();
    }
  }
  if (gemini_) {  // chunk by chunk: whole tensors, the same values as in one store
    std::unique_ptr<memory::ParamStore> full;
    if (!spec_.model.init_from.empty()) {
      full = std::make_unique<memory::ParamStore>(model_->model_specs);
      RETURN_IF_ERROR(LoadParams(*full, spec_.model.init_from));
    }
    return gemini_->FillParams([&](const std::vector<memory::ParamSegment>& segments, const std::vector<float*>& data) {
      if (full) TakeHeld(*model_, *full, segments, data);
      else InitParams(*model_, segments, data, spec_.train.seed);
      return absl::OkStatus();
    });
  }
  const parallel::HeldParams held = Held(State());
  if (!spec_.model.init_from.empty()) {
    if (model_->params->allocated() && tp_size_ == 1 && !model_->pipelined) {
      RETURN_IF_ERROR(LoadParams(*model_->params, spec_.model.init_from));
    } else {
      // Sharded or split parameters: load whole into a transient store, keep this rank's
      // elements.
      memory::ParamStore full(model_->model_specs);
      RETURN_IF_ERROR(LoadParams(full, spec_.model.init_from));
      TakeHeld(*model_, full, held.segments, held.data);
    }
    LOG_INFO("initialised from {}", spec_.model.init_from);
  } else {
    InitParams(*model_, held.segments, held.data, spec_.train.seed);
  }
  return absl::OkStatus();
}

void Run::BindTensorGroups(graph::Executor& ex) const {
  if (two_d_ || three_d_) {
    ex.SetGroup("row", row_comm_);
    ex.SetGroup("col", col_comm_);
    if (three_d_) ex.SetGroup("depth", depth_comm_);
  } else if (tp_comm_) {
    ex.SetGroup("tensor", tp_comm_);
  }
  if (sp_comm_) ex.SetGroup("sequence", sp_comm_);
}

absl::Status Run::SetupSlot(const graph::Graph& g, graph::Executor& ex) {
  BindTensorGroups(ex);
  if (const int positions = g.Find("positions"); positions >= 0) {
    RETURN_IF_ERROR(WritePositions(ex, positions, model_->batch, model_->sequence));
  }
  if (g.loss_seed() >= 0) RETURN_IF_ERROR(ex.WriteScalar<float>(g.loss_seed(), LossSeed()));
  return absl::OkStatus();
}

absl::Status Run::PipelineStep(int64_t step, double& loss_sum) {
  const int64_t b = model_->batch;
  absl::Status read = absl::OkStatus();
  RETURN_IF_ERROR(stage_->Step(
      *train_loader_, b,
      [&](int m) { return data::FirstSample(step, spec_.train.global_batch, rank_, ranks_, m, b); }, model_->shared,
      [&](int, graph::Executor& ex) {
        absl::StatusOr<float> loss = ex.ReadScalar<float>(model_->loss);
        if (loss.ok()) loss_sum += *loss;
        if (!loss.ok() && read.ok()) read = loss.status();
      }));
  RETURN_IF_ERROR(read);
  // The tied wte was summed between its holders; now the data-parallel reduction of
  // every bucket (FinishReduction launches them).
  if (dp_) dp_->BeginMicroStep(0, /*last=*/true);
  return absl::OkStatus();
}

absl::Status Run::MicroSteps(int64_t step, double& loss_sum) {
  graph::Executor& ex = *model_->executor;
  const int64_t b = model_->batch;
  RETURN_IF_ERROR(ex.WriteScalar<float>(model_->loss_grad, LossSeed()));
  const data::WindowLoader::Runs runs = model_->sequence.Runs();
  for (int64_t m = 0; m < accumulation_; ++m) {
    const int64_t first =
        data::FirstSample(step, spec_.train.global_batch, rank_, ranks_, m, b);
    RETURN_IF_ERROR(batch_io_.FillWindows(ex, model_->ids, model_->targets, *train_loader_, first, b, runs));
    // The data-parallel engine's hooks reduce gradients (on the last micro-batch only,
    // below ZeRO 3) and gather sharded parameters (ZeRO 3).
    if (dp_) dp_->BeginMicroStep(static_cast<int>(m), m + 1 == accumulation_);
    if (gemini_) gemini_->BeginMicroStep(static_cast<int>(m), m + 1 == accumulation_);
    ex.Forward();
    ex.Backward(static_cast<int>(m));
    RETURN_IF_ERROR(ExecutorStatus());
    ASSIGN_OR_RETURN(const float loss, ex.ReadScalar<float>(model_->loss));
    loss_sum += loss;
  }
  return absl::OkStatus();
}

absl::Status Run::TrainStep(int64_t step) {
  double loss_sum = 0;
  if (model_->pipelined) {
    RETURN_IF_ERROR(PipelineStep(step, loss_sum));
  } else {
    RETURN_IF_ERROR(MicroSteps(step, loss_sum));
  }
  loss_ = loss_sum / static_cast<double>(accumulation_);
  const bool stop_here = options_.stop && options_.stop->load();
  if (dp_) RETURN_IF_ERROR(dp_->FinishReduction());
  RETURN_IF_ERROR(SumPartialGrads());
  // One small collective: the global mean loss (the ranks of a tensor group hold the
  // same loss; only the last pipeline stage has one) and whether any rank must stop.
  ASSIGN_OR_RETURN(std::vector<double> agreed,
                   SumOver(options_.groups ? options_.groups->world() : nullptr,
                           {loss_, stop_here ? 1.0 : 0.0}));
  loss_ = agreed[0] / (world_size_ / pp_size_);
  stop_agreed_ = agreed[1] > 0;
  if (options_.on_gradients && !gemini_) options_.on_gradients(step, *model_->params);
  ASSIGN_OR_RETURN(const double sum_sq, GradSumSquares());
  // The gradients carry the loss scale (fp16): the norm and the update divide it out.
  const double loss_scale = scaler_.scale();
  grad_norm_ = std::sqrt(sum_sq) / loss_scale;
  float scale = static_cast<float>(1.0 / loss_scale);
  if (spec_.train.grad_clip > 0) {
    scale *= static_cast<float>(std::min(1.0, spec_.train.grad_clip / (grad_norm_ + 1e-6)));
  }
  lr_ = LearningRate(spec_.train.optimizer, spec_.train.lr_schedule, step, spec_.train.steps);
  if (!scaler_.Update(grad_norm_)) return absl::OkStatus();  // fp16 overflow: the step is skipped
  const auto t0 = Clock::now();
  if (gemini_) {
    RETURN_IF_ERROR(gemini_->Step(lr_, scale));
  } else {
    optimizer_->Step(lr_, scale);
  }
  if (dp_) RETURN_IF_ERROR(dp_->AfterOptimizerStep());
  optimizer_seconds_ += Seconds(t0, Clock::now());
  return absl::OkStatus();
}

std::vector<std::pair<std::string, int64_t>> Run::CommBytes() const {
  std::vector<std::pair<std::string, int64_t>> out;
  if (data_comm_) out.emplace_back("data", data_comm_->bytes_sent());
  if (tp_comm_) out.emplace_back("tensor", tp_comm_->bytes_sent());
  if (pp_comm_) out.emplace_back("pipeline", pp_comm_->bytes_sent());
  if (sp_comm_) out.emplace_back("sequence", sp_comm_->bytes_sent());
  if (replica_comm_ && replica_comm_ != data_comm_ && replica_comm_ != sp_comm_) {
    out.emplace_back("replicas", replica_comm_->bytes_sent());
  }
  if (row_comm_) out.emplace_back("tensor_row", row_comm_->bytes_sent());
  if (col_comm_) out.emplace_back("tensor_col", col_comm_->bytes_sent());
  if (depth_comm_) out.emplace_back("tensor_depth", depth_comm_->bytes_sent());
  parallel::Communicator* world = options_.groups ? options_.groups->world() : nullptr;
  if (world && world != data_comm_ && world != tp_comm_ && world != pp_comm_ && world != sp_comm_ &&
      world != replica_comm_) out.emplace_back("world", world->bytes_sent());
  return out;
}

absl::Status Run::SumPartialGrads() {
  if (tp_comm_ == nullptr) return absl::OkStatus();
  for (auto [axis, comm] : {std::pair{"tensor", tp_comm_}, std::pair{"depth", depth_comm_},
                            std::pair{"row", row_comm_}, std::pair{"col", col_comm_}}) {
    // (The optimizer's view of the gradients is read-only; this rank owns the storage.)
    std::vector<float*> grads;
    for (const float* g : optimizer_->grads()) grads.push_back(const_cast<float*>(g));
    RETURN_IF_ERROR(worker::SumPartialGrads(model_->layouts, optimizer_->segments(), grads, axis, comm));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Run::GradSumSquares() {
  if (gemini_) return gemini_->GradSumSquares();
  if (tp_size_ == 1 && pp_size_ == 1) {
    if (dp_) return dp_->GradSumSquares();
    return kernels::SumSquaresToHost(model_->params->flat_grad(), model_->params->flat_numel(),
                                     model_->params->place().stream());
  }
  // Replicated tensors counted on the tensor group's first rank only.
  // The gradients this rank's optimizer reads (its ZeRO shard, or every tensor whole).
  const std::vector<memory::ParamSegment>& segments = optimizer_->segments();
  const std::vector<const float*>& grads = optimizer_->grads();
  // Pipeline: each stage its own tensors, a shared one (wte) on its first holder.
  double local = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    if (!CountsInTensorSums(segments[i].param) || !model_->stage_owned[segments[i].param]) continue;
    local += kernels::SumSquaresToHost(grads[i], segments[i].length, model_->params->place().stream());
  }
  if (pp_size_ > 1) {
    // Every rank's share over the world; ZeRO 0's data replicas count once.
    if (dp_ && dp_->zero_stage() == 0 && replica_rank_ != 0) local = 0;
    ASSIGN_OR_RETURN(std::vector<double> total, SumOver(options_.groups->world(), {local}));
    return total[0];
  }
  // ZeRO 1-3 shards partition the data group's tensors: sum over it too.
  const bool over_data = dp_ && dp_->zero_stage() >= 1;
  ASSIGN_OR_RETURN(std::vector<double> total,
                   SumOver(over_data ? options_.groups->world() : tp_comm_, {local}));
  return total[0];
}

void Run::ReduceTensorSums(std::vector<double>& sums) {
  // sums[2p], sums[2p + 1]: per-parameter norms (LAMB / LARS), already summed over the
  // data group's shards.
  for (int p = 0; 2 * p < static_cast<int>(sums.size()); ++p) {
    if (!CountsInTensorSums(p)) sums[2 * p] = sums[2 * p + 1] = 0;
  }
  auto summed = SumOver(tp_comm_, sums);
  // A failed collective leaves the per-rank values; the collectives that follow in the
  // same step report the error.
  if (summed.ok()) sums = std::move(*summed);
}

absl::StatusOr<double> Run::Validate() {
  const int64_t b = model_->batch;
  // val_batches global batches of windows, in micro-batches taken by the ranks in turn;
  // the mean is over exactly those windows' tokens, whatever the micro-batch and degree.
  const int64_t total =
      std::min(spec_.train.val_batches * spec_.train.global_batch, val_loader_->num_windows());
  const int64_t micro_batches = (total + b - 1) / b;
  double sum = 0, tokens = 0;
  for (int64_t k = rank_; k < micro_batches; k += ranks_) {
    const int64_t rows = std::min(b, total - k * b);
    if (model_->pipelined) {
      // Through every stage; the last one's loss.
      absl::Status read = absl::OkStatus();
      RETURN_IF_ERROR(stage_->Forward(*val_loader_, b, k * b, [&](int, graph::Executor& ex) {
        if (read.ok()) read = batch_io_.AddValidationLoss(ex, *model_, rows, sum, tokens);
      }));
      RETURN_IF_ERROR(read);
      continue;
    }
    graph::Executor& ex = *model_->executor;
    RETURN_IF_ERROR(batch_io_.FillWindows(ex, model_->ids, model_->targets, *val_loader_, k * b, b,
                                          model_->sequence.Runs()));
    ex.Forward();
    RETURN_IF_ERROR(ExecutorStatus());
    RETURN_IF_ERROR(batch_io_.AddValidationLoss(ex, *model_, rows, sum, tokens));
  }
  // Over every rank: the ranks of a tensor group that hold the same sequences add them
  // the same number of times to both sums.
  ASSIGN_OR_RETURN(std::vector<double> agreed,
                   SumOver(options_.groups ? options_.groups->world() : nullptr, {sum, tokens}));
  sum = agreed[0];
  tokens = agreed[1];
  return tokens > 0 ? sum / tokens : NAN;
}

std::string Run::StateJson(int64_t steps_done) const {
  StateFacts f;
  f.steps_done = steps_done;
  f.optimizer_step = gemini_ ? gemini_->step() : optimizer_->step();
  f.loss = loss_;
  const LossScaler::State ls = scaler_.state();
  f.loss_scale = ls.scale, f.good_steps = ls.good_steps, f.skipped_steps = ls.skipped_steps;
  f.data = ranks_, f.tensor = tp_size_, f.pipeline = pp_size_, f.sequence = sp_size_;
  return CheckpointStateJson(spec_, f, model_->model_specs, model_->is_gpt ? &model_->gpt : nullptr);
}

absl::Status Run::SaveCheckpoint(int64_t steps_done) {
  ASSIGN_OR_RETURN(last_checkpoint_, worker::SaveCheckpoint(State(), steps_done, StateJson(steps_done)));
  LOG_INFO("checkpoint {}", last_checkpoint_);
  return absl::OkStatus();
}

std::string Run::Sample() {
  if (!model_->is_gpt || spec_.sample.tokens <= 0) return "";
  // Sharded and split parameters are gathered whole first (every rank takes part).
  std::unique_ptr<memory::ParamStore> full, whole;
  const memory::ParamStore* params = model_->params.get();
  if ((dp_ && dp_->params_sharded()) || gemini_) {
    full = std::make_unique<memory::ParamStore>(model_->params->specs());
    if (!(gemini_ ? gemini_->CopyParams(*full) : dp_->GatherAll(*full)).ok()) return "";
    params = full.get();
  }
  if (tp_size_ > 1) {
    whole = std::make_unique<memory::ParamStore>(model_->GlobalSpecs());
    if (!GatherWhole(*model_, *params, tp_comm_, *whole).ok()) return "";
    params = whole.get();
  }
  if (model_->pipelined) {
    auto all = std::make_unique<memory::ParamStore>(model_->model_specs);
    if (!GatherStages(*params, model_->stage_owned, pp_comm_, *all).ok()) return "";
    full = std::move(all);
    params = full.get();
  }
  if (!rank0()) return "";
  if (!params->place().on_host()) {
    // The sampler runs on the host: a host copy of the (whole) parameters.
    auto host = std::make_unique<memory::ParamStore>(params->specs());
    params->place().CopyToHost(host->flat_data(), params->flat_data(),
                               host->flat_numel() * static_cast<int64_t>(sizeof(float)));
    full = std::move(host);
    params = full.get();
  }
  return SampleText(spec_.sample, spec_.train.seed, model_->gpt, *params, *tokenizer_);
}

absl::StatusOr<TrainSummary> Run::Execute() {
  RETURN_IF_ERROR(Setup());
  const bool progress = WantProgress(options_);
  const int64_t total = spec_.train.steps;
  const int64_t tokens_per_step = spec_.train.global_batch * model_->window;
  const double flops_per_step = model_->flops_per_micro_batch * accumulation_;
  const auto t_start = Clock::now();
  double val_loss = -1;
  TrainSummary summary;
  for (int64_t step = start_step_; step < total; ++step) {
    base::SetLogStep(step + 1);
    const auto t0 = Clock::now();
    std::vector<std::pair<std::string, int64_t>> comm_bytes = CommBytes();
    RETURN_IF_ERROR(TrainStep(step));
    const double dt = Seconds(t0, Clock::now());
    {
      const auto after = CommBytes();
      for (size_t i = 0; i < after.size(); ++i) comm_bytes[i].second = after[i].second - comm_bytes[i].second;
    }
    StepReport r;
    r.step = step + 1;
    r.total_steps = total;
    r.loss = loss_;
    r.lr = lr_;
    r.grad_norm = grad_norm_;
    r.step_ms = dt * 1e3;
    r.tokens_per_s = tokens_per_step / dt;
    r.mfu = peak_flops_ > 0 ? flops_per_step / dt / peak_flops_ : 0;
    if (metrics_) {
      MetricRecord record = MetricRecord()
                                .Int("step", r.step)
                                .Num("loss", r.loss)
                                .Num("lr", r.lr)
                                .Num("grad_norm", r.grad_norm)
                                .Num("tokens_per_s", r.tokens_per_s)
                                .Num("step_ms", r.step_ms)
                                .Num("mfu", r.mfu)
                                .Int("skipped_steps", scaler_.skipped_steps())
                                .Int("rss_peak", PeakResidentBytes())
                                .Ints("comm_bytes", comm_bytes);
      if (spec_.train.precision == config::Precision::kFp16) record.Num("loss_scale", scaler_.scale());
      if (stage_) record.Num("bubble", stage_->bubble());  // measured, this step
      if (OnDevice()) record.Int("gpu_mem_peak", options_.place->allocator().stats().peak);  // bytes
      if (gemini_) gemini_->AddMetrics(record);
      RETURN_IF_ERROR(metrics_->Write(record));
    }
    if (!std::isfinite(loss_)) {
      return absl::InternalError(absl::StrCat("loss is ", loss_, " at step ", r.step,
                                              " (diverged; lower train.optimizer.lr?)"));
    }
    if (options_.on_step) options_.on_step(r);
    const bool last = r.step == total;
    // One warm step's measured timeline (the second of this run, or its only one).
    if (stage_ && rank0() && r.step == std::min(total, start_step_ + 2)) {
      RETURN_IF_ERROR(WriteChromeTrace((fs::path(spec_.run_dir) / "timeline.json").string(), stage_->schedule(),
                                       stage_->timelines(), r.step, stage_->bubble()));
    }
    if (val_loader_ && ((spec_.train.val_every > 0 && r.step % spec_.train.val_every == 0) || last)) {
      ASSIGN_OR_RETURN(val_loss, Validate());
      if (metrics_) {
        RETURN_IF_ERROR(metrics_->Write(MetricRecord().Int("step", r.step).Num("val_loss", val_loss)));
      }
      if (options_.on_val) options_.on_val(r.step, val_loss);
      if (!progress) LOG_INFO("val_loss {:.4f}", val_loss);
    }
    const double elapsed = Seconds(t_start, Clock::now());
    PrintStepLine(r, val_loss, elapsed / (r.step - start_step_) * (total - r.step), progress,
                  progress || r.step % spec_.train.log_every == 0 || last);
    const int64_t every = spec_.train.checkpoint.every;
    const bool stopping = stop_agreed_;
    if (spec_.train.checkpoint.save &&
        (last || stopping || (every > 0 && r.step % every == 0))) {
      if (progress && !last) std::fprintf(stderr, "\n");
      RETURN_IF_ERROR(SaveCheckpoint(r.step));
    }
    summary.steps_done = r.step;
    if (stopping) return absl::CancelledError(absl::StrCat("stopped after step ", r.step));
  }
  base::SetLogStep(-1);
  if (profile_ && model_->executor) {
    const double steps = static_cast<double>(total - start_step_);
    LOG_INFO("profile (ms per step):");
    for (const auto& [op, seconds] : model_->executor->ProfileByOp()) {
      LOG_INFO("  {:<24} {:9.2f}", op, seconds * 1e3 / steps);
    }
    LOG_INFO("  {:<24} {:9.2f}", "optimizer", optimizer_seconds_ * 1e3 / steps);
  }
  summary.last_loss = loss_;
  if (start_step_ >= total && val_loader_) {
    ASSIGN_OR_RETURN(val_loss, Validate());
  }
  summary.val_loss = val_loss;
  summary.last_checkpoint = last_checkpoint_;
  summary.sample = Sample();
  if (rank0() && !summary.sample.empty()) {
    std::ofstream(fs::path(spec_.run_dir) / "sample.txt") << summary.sample << "\n";
  }
  if (options_.print_sample && !summary.sample.empty()) {
    std::printf("--- sample ---\n%s\n--------------\n", summary.sample.c_str());
    std::fflush(stdout);
  }
  return summary;
}

}  // namespace

parallel::PlanOptions PlanOptionsOf(const config::ParallelSpec& p) {
  parallel::PlanOptions o;
  o.dims = {p.data, p.pipeline, p.tensor, p.sequence};
  o.tensor_mode = p.tensor_mode;
  o.tensor_depth = p.tensor_depth;
  o.zero_stage = static_cast<int>(p.zero);
  return o;
}

absl::StatusOr<TrainSummary> Train(const config::JobSpec& spec, const TrainOptions& options) {
  Run run(spec, options);
  return run.Execute();
}

}  // namespace colossal::worker
