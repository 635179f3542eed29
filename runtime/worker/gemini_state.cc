// Model state in chunks: the plan from the schedule, the executor hooks, the optimizer
// chunk by chunk, and checkpoints streamed out of (and into) the chunks.
#include "runtime/worker/gemini_state.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "graph/layout.h"
#include "kernels/optim/grad_norm.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"
#include "runtime/worker/optimizer.h"
#include "runtime/worker/stored_pieces.h"

namespace colossal::worker {
namespace {

constexpr int kParamKind = 0, kGradKind = 1, kState1Kind = 2, kState2Kind = 3;
// Chunk sizes are multiples of the NVMe alignment (4 KiB = 1024 floats).
constexpr int64_t kChunkGranularity = memory::kNvmeAlignment / 4;

bool Adam(config::OptimizerType t) {
  return t == config::OptimizerType::kAdamW || t == config::OptimizerType::kLamb;
}

// Per node: the parameters it reads and those whose gradients it reads or writes.
struct NodeParams {
  std::vector<int> data, grad;
};

std::vector<NodeParams> ParamsOfNodes(const graph::Graph& graph) {
  std::vector<int> param_of_value(graph.values().size(), -1);
  for (size_t i = 0; i < graph.params().size(); ++i) param_of_value[graph.params()[i]] = static_cast<int>(i);
  std::vector<NodeParams> out(graph.nodes().size());
  auto add = [](std::vector<int>& v, int p) {
    if (std::find(v.begin(), v.end(), p) == v.end()) v.push_back(p);
  };
  for (size_t n = 0; n < graph.nodes().size(); ++n) {
    const graph::Node& node = graph.node(static_cast<int>(n));
    for (const auto* list : {&node.inputs, &node.outputs}) {
      for (int v : *list) {
        const graph::Value& value = graph.value(v);
        if (value.kind == graph::ValueKind::kParam) add(out[n].data, param_of_value[v]);
        if (value.kind == graph::ValueKind::kParamGrad) add(out[n].grad, param_of_value[value.grad_of]);
      }
    }
  }
  return out;
}

std::string Frac(double f) { return absl::StrCat(static_cast<int>(std::lround(f * 100)), "%"); }

memory::ChunkManagerOptions ManagerOptions(const GeminiPlan& plan, const config::JobSpec& spec,
                                           const memory::Place& place) {
  memory::ChunkManagerOptions o;
  for (int c = 0; c < plan.layout.num_chunks(); ++c) {
    for (int k = 0; k < plan.kinds; ++k) {
      o.bytes.push_back(plan.layout.capacity(c) * 4);
      o.purpose.push_back(k == kParamKind  ? memory::Purpose::kParameters
                          : k == kGradKind ? memory::Purpose::kGradients
                                           : memory::Purpose::kOptimizerState);
    }
  }
  o.pinned = plan.pinned;
  o.place = place;
  o.budget = spec.memory.device_budget;
  if (spec.memory.placement == config::Placement::kStatic) {
    o.transient_room = plan.transient_room;
    o.keep_window = 32;  // offloaded chunks stay only while the next nodes use them
  }
  o.nvme_dir = spec.memory.nvme_dir;
  o.slot_bytes = plan.chunk_bytes;
  o.io_threads = 4;
  return o;
}


}  // namespace

absl::StatusOr<GeminiPlan> PlanGemini(const config::JobSpec& spec, const graph::Graph& graph,
                                      const graph::Schedule& schedule, const memory::ParamStore& layout,
                                      int64_t micro_steps) {
  const config::MemorySpec& m = spec.memory;
  const std::vector<NodeParams> node_params = ParamsOfNodes(graph);
  // First-use order: the schedule's reads of parameter values, then any never read.
  std::vector<int> order;
  std::vector<bool> seen(layout.size(), false);
  for (const graph::ScheduleEntry& e : schedule.entries) {
    for (int p : node_params[e.node].data) {
      if (!seen[p]) seen[p] = true, order.push_back(p);
    }
  }
  for (int p = 0; p < layout.size(); ++p) {
    if (!seen[p]) order.push_back(p);
  }
  std::vector<int64_t> numel;
  int64_t total = 0;
  for (const memory::ParamInfo& info : layout.infos()) numel.push_back(info.numel), total += info.numel;
  const int64_t chunk_numel =
      m.chunk_bytes > 0 ? m.chunk_bytes / 4
                        : memory::SearchChunkNumel(numel, order, memory::DefaultChunkSearch(total, kChunkGranularity));
  GeminiPlan plan;
  ASSIGN_OR_RETURN(plan.layout, memory::ChunkLayout::Pack(numel, order, chunk_numel));
  plan.chunk_bytes = chunk_numel * 4;
  plan.kinds = Adam(spec.train.optimizer.type) ? 4 : 3;
  const int chunks = plan.layout.num_chunks();
  auto buffer = [&](int c, int kind) { return c * plan.kinds + kind; };

  // Static placement: the last fractions of the chunks (in first-use order) go to NVMe.
  plan.pinned.assign(static_cast<size_t>(chunks) * plan.kinds, false);
  if (m.placement == config::Placement::kStatic) {
    const int off_params = static_cast<int>(std::lround(m.offload_param_frac * chunks));
    const int off_optim = static_cast<int>(std::lround(m.offload_optim_frac * chunks));
    for (int c = 0; c < chunks; ++c) {
      plan.pinned[buffer(c, kParamKind)] = plan.pinned[buffer(c, kGradKind)] = c < chunks - off_params;
      for (int k = kState1Kind; k < plan.kinds; ++k) plan.pinned[buffer(c, k)] = c < chunks - off_optim;
    }
  }
  for (int b = 0; b < chunks * plan.kinds; ++b) {
    const int64_t bytes = plan.layout.capacity(b / plan.kinds) * 4;
    (plan.pinned[b] ? plan.pinned_bytes : plan.paged_bytes) += bytes;
  }

  // The accesses of a step: each node that touches chunks, every micro-step, then the
  // optimizer's update of each chunk.
  std::vector<std::vector<int>> step_uses;
  for (const graph::ScheduleEntry& e : schedule.entries) {
    if (e.phase == graph::Phase::kCommWait) continue;
    std::vector<int> uses;
    for (int p : node_params[e.node].data) uses.push_back(buffer(plan.layout.place(p).chunk, kParamKind));
    for (int p : node_params[e.node].grad) uses.push_back(buffer(plan.layout.place(p).chunk, kGradKind));
    std::sort(uses.begin(), uses.end());
    uses.erase(std::unique(uses.begin(), uses.end()), uses.end());
    if (!uses.empty()) step_uses.push_back(std::move(uses));
  }
  for (int64_t s = 0; s < micro_steps; ++s) plan.uses.insert(plan.uses.end(), step_uses.begin(), step_uses.end());
  for (int c = 0; c < chunks; ++c) {
    std::vector<int> uses;
    for (int k = 0; k < plan.kinds; ++k) uses.push_back(buffer(c, k));
    plan.uses.push_back(std::move(uses));
  }
  int64_t paged_at_once = 0;
  for (const std::vector<int>& uses : plan.uses) {
    int64_t all = 0, paged = 0;
    for (int b : uses) {
      const int64_t bytes = plan.layout.capacity(b / plan.kinds) * 4;
      all += bytes;
      if (!plan.pinned[b]) paged += bytes;
    }
    plan.working_bytes = std::max(plan.working_bytes, all);
    paged_at_once = std::max(paged_at_once, paged);
  }
  // Room for what one position pages in and the next one's prefetch.
  plan.transient_room = 2 * paged_at_once;

  // What must fit, said in the job's terms.
  if (m.device_budget > 0 && m.device_budget < plan.pinned_bytes + paged_at_once) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory.device_budget: ", memory::FormatBytes(m.device_budget), " cannot hold what the model state needs in ",
        "memory at once: ", memory::FormatBytes(paged_at_once), " of chunk buffers one step touches together (",
        "chunks of ", memory::FormatBytes(plan.chunk_bytes), "; a chunk's parameters, gradients and moments at its ",
        "optimizer update)", plan.pinned_bytes > 0 ? absl::StrCat(" plus ", memory::FormatBytes(plan.pinned_bytes),
                                                                  " placed in memory by the static fractions")
                                                   : "",
        "; give at least ", memory::FormatBytes(plan.pinned_bytes + paged_at_once),
        m.chunk_bytes > 0 ? " or smaller memory.chunk_bytes" : ""));
  }
  const bool pages = plan.paged_bytes > 0 && (m.device_budget > 0 || m.placement == config::Placement::kStatic);
  if (pages && m.nvme_dir.empty() && (m.device_budget == 0 || plan.pinned_bytes + plan.paged_bytes > m.device_budget)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory.device_budget: ", memory::FormatBytes(m.device_budget), " cannot hold the model state's ",
        memory::FormatBytes(plan.pinned_bytes + plan.paged_bytes), " and memory.nvme_dir is not set to page the rest"));
  }
  if (m.nvme_budget > 0 && !m.nvme_dir.empty() && plan.paged_bytes > m.nvme_budget) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory.nvme_budget: ", memory::FormatBytes(m.nvme_budget), " cannot hold the ",
        memory::FormatBytes(plan.paged_bytes), " of chunk buffers paged to ", m.nvme_dir));
  }
  return plan;
}

std::vector<std::string> DescribeGeminiPlan(const GeminiPlan& plan, const config::JobSpec& spec) {
  const memory::ChunkLayout& l = plan.layout;
  const config::MemorySpec& m = spec.memory;
  std::string s = absl::StrCat(
      "gemini: ", l.num_chunks(), " chunks of ", memory::FormatBytes(plan.chunk_bytes),
      m.chunk_bytes > 0 ? " (memory.chunk_bytes)" : " (searched)", ", ", plan.kinds,
      " buffers each (parameters, gradients, ", plan.kinds == 4 ? "two moments" : "one moment", "), ",
      memory::FormatBytes(l.wasted() * 4 * plan.kinds), " of padding");
  std::string t = "gemini: placement ";
  absl::StrAppend(&t, m.placement == config::Placement::kAuto ? "auto" : "static");
  if (m.placement == config::Placement::kStatic) {
    absl::StrAppend(&t, " (offload_param_frac ", Frac(m.offload_param_frac), ", offload_optim_frac ",
                    Frac(m.offload_optim_frac), ")");
  }
  absl::StrAppend(&t, "; compute memory: ", memory::FormatBytes(plan.pinned_bytes), " placed, budget ",
                  m.device_budget > 0 ? memory::FormatBytes(m.device_budget) : std::string("unlimited"),
                  "; paged: ", memory::FormatBytes(plan.paged_bytes), m.nvme_dir.empty() ? "" : " on NVMe (",
                  m.nvme_dir, m.nvme_dir.empty() ? "" : ")", "; ", plan.uses.size(), " chunk accesses per step, at most ",
                  memory::FormatBytes(plan.working_bytes), " at once");
  return {s, t};
}

void GeminiState::AddMetrics(MetricRecord& record) {
  const memory::MemStats& s = manager_->stats();
  record.Int("nvme_read_bytes", s.nvme.bytes_out - reported_read_)
      .Int("nvme_write_bytes", s.nvme.bytes_in - reported_written_)
      .Num("nvme_wait_ms", (s.read_wait_seconds - reported_wait_) * 1e3)
      .Num("chunk_wait_ms", (s.access_seconds - reported_access_) * 1e3)
      .Int("chunk_mem_peak", s.compute.peak);
  reported_read_ = s.nvme.bytes_out;
  reported_written_ = s.nvme.bytes_in;
  reported_wait_ = s.read_wait_seconds;
  reported_access_ = s.access_seconds;
}

absl::StatusOr<GeminiTraffic> PredictGeminiTraffic(const GeminiPlan& plan, const config::JobSpec& spec) {
  memory::ChunkManagerOptions o = ManagerOptions(plan, spec, memory::Place::Host());
  o.simulate = true;
  ASSIGN_OR_RETURN(std::unique_ptr<memory::ChunkManager> m, memory::ChunkManager::Create(std::move(o)));
  m->SetSchedule(plan.uses);
  using Mode = memory::ChunkManager::Mode;
  const int chunks = plan.layout.num_chunks();
  // Initialisation writes every chunk's parameters; then steps, as GeminiState runs them.
  for (int c = 0; c < chunks; ++c) {
    RETURN_IF_ERROR(m->Access(c * plan.kinds + kParamKind, Mode::kOverwrite).status());
    m->Release(c * plan.kinds + kParamKind);
  }
  const int optimizer_from = static_cast<int>(plan.uses.size()) - chunks;
  GeminiTraffic t;
  for (int step = 0; step < 2; ++step) {
    const memory::MemStats before = m->stats();
    for (int k = 0; k < static_cast<int>(plan.uses.size()); ++k) {
      m->Advance(k);
      const bool update = k >= optimizer_from;
      for (int b : plan.uses[k]) {
        const int kind = b % plan.kinds;
        const Mode mode = kind == kParamKind ? (update ? Mode::kWrite : Mode::kRead)
                          : kind == kGradKind ? (update ? Mode::kRead : Mode::kWrite)
                                              : Mode::kWrite;
        RETURN_IF_ERROR(m->Access(b, mode).status());
      }
      for (int b : plan.uses[k]) m->Release(b);
      if (update) m->Discard((k - optimizer_from) * plan.kinds + kGradKind);
    }
    RETURN_IF_ERROR(m->Flush());
    t.nvme_read = m->stats().nvme.bytes_out - before.nvme.bytes_out;
    t.nvme_written = m->stats().nvme.bytes_in - before.nvme.bytes_in;
  }
  t.compute_peak = m->stats().compute.peak;
  return t;
}

absl::StatusOr<std::unique_ptr<GeminiState>> GeminiState::Create(const config::JobSpec& spec,
                                                                 const graph::Graph& graph,
                                                                 graph::Executor* executor,
                                                                 memory::ParamStore* params, int64_t micro_steps) {
  COL_CHECK(!params->allocated() || params->flat_numel() == 0);
  std::unique_ptr<GeminiState> g(new GeminiState());
  g->spec_ = &spec;
  g->graph_ = &graph;
  g->executor_ = executor;
  g->params_ = params;
  ASSIGN_OR_RETURN(g->plan_, PlanGemini(spec, graph, executor->schedule(), *params, micro_steps));
  const GeminiPlan& plan = g->plan_;
  memory::ChunkManagerOptions o = ManagerOptions(plan, spec, params->place());
  absl::StatusOr<std::unique_ptr<memory::ChunkManager>> manager = memory::ChunkManager::Create(std::move(o));
  if (!manager.ok()) {
    return absl::Status(manager.status().code(), absl::StrCat("memory: ", manager.status().message()));
  }
  g->manager_ = std::move(*manager);
  g->manager_->SetSchedule(plan.uses);

  const std::vector<NodeParams> node_params = ParamsOfNodes(graph);
  const int num_nodes = static_cast<int>(graph.nodes().size());
  const int chunks = plan.layout.num_chunks();
  g->position_of_node_.assign(num_nodes, -1);
  g->data_chunks_.resize(num_nodes);
  g->grad_chunks_.resize(num_nodes);
  g->node_params_.resize(num_nodes);
  g->accessed_.resize(num_nodes);
  g->last_grad_node_.assign(chunks, -1);
  int position = 0;
  for (const graph::ScheduleEntry& e : executor->schedule().entries) {
    if (e.phase == graph::Phase::kCommWait) continue;
    const int n = e.node;
    auto add = [](std::vector<int>& v, int x) {
      if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
    };
    for (int p : node_params[n].data) add(g->data_chunks_[n], plan.layout.place(p).chunk), add(g->node_params_[n], p);
    for (int p : node_params[n].grad) {
      add(g->grad_chunks_[n], plan.layout.place(p).chunk);
      add(g->node_params_[n], p);
      g->last_grad_node_[plan.layout.place(p).chunk] = n;
    }
    if (!g->data_chunks_[n].empty() || !g->grad_chunks_[n].empty()) g->position_of_node_[n] = position++;
  }
  g->positions_per_micro_step_ = position;
  g->data_base_.assign(chunks, nullptr);
  g->grad_base_.assign(chunks, nullptr);
  g->data_ptr_.assign(params->size(), nullptr);
  g->grad_ptr_.assign(params->size(), nullptr);
  g->grad_sq_.assign(params->size(), 0.0);
  g->decay_ = DecayMask(spec.train.optimizer, *params);
  GeminiState* self = g.get();
  executor->SetHooks([self](int node) { self->BeforeNode(node); }, [self](int node) { self->AfterNode(node); });
  return g;
}

void GeminiState::BeginMicroStep(int micro_step, bool last) {
  micro_step_ = micro_step;
  last_micro_step_ = last;
  if (micro_step == 0) std::fill(grad_sq_.begin(), grad_sq_.end(), 0.0);
}

void GeminiState::BeforeNode(int node) {
  if (position_of_node_[node] < 0 || !status_.ok()) return;
  manager_->Advance(micro_step_ * positions_per_micro_step_ + position_of_node_[node]);
  std::vector<int>& held = accessed_[node];
  held.clear();
  const memory::ChunkLayout& l = plan_.layout;
  auto access = [&](int chunk, int kind, memory::ChunkManager::Mode mode) -> float* {
    absl::StatusOr<float*> p = manager_->Access(Buffer(chunk, kind), mode);
    if (!p.ok()) {
      if (status_.ok()) status_ = p.status();
      return nullptr;
    }
    held.push_back(Buffer(chunk, kind));
    return *p;
  };
  std::vector<float*>& data_base = data_base_;
  std::vector<float*>& grad_base = grad_base_;
  for (int c : data_chunks_[node]) data_base[c] = access(c, kParamKind, memory::ChunkManager::Mode::kRead);
  // (A gradient chunk is dead after the optimizer's update: its first access of a step
  // reads zeros, and the first micro-step's writers overwrite them.)
  for (int c : grad_chunks_[node]) grad_base[c] = access(c, kGradKind, memory::ChunkManager::Mode::kWrite);
  if (!status_.ok()) {
    for (int b : held) manager_->Release(b);
    held.clear();
    std::fill(data_base.begin(), data_base.end(), nullptr);
    std::fill(grad_base.begin(), grad_base.end(), nullptr);
    executor_->Fail(status_);
    return;
  }
  for (int p : node_params_[node]) {
    const memory::ChunkPlace& at = l.place(p);
    data_ptr_[p] = data_base[at.chunk] ? data_base[at.chunk] + at.offset : nullptr;
    grad_ptr_[p] = grad_base[at.chunk] ? grad_base[at.chunk] + at.offset : nullptr;
    executor_->RebindParam(p, data_ptr_[p], grad_ptr_[p]);
  }
  for (int c : data_chunks_[node]) data_base[c] = nullptr;
  for (int c : grad_chunks_[node]) grad_base[c] = nullptr;
}

void GeminiState::AfterNode(int node) {
  if (position_of_node_[node] < 0) return;
  if (last_micro_step_ && status_.ok()) {
    // A chunk whose last gradient is written: its per-tensor Σg² while it is here.
    for (int c : grad_chunks_[node]) {
      if (last_grad_node_[c] != node) continue;
      for (int p : plan_.layout.params(c)) {
        if (grad_ptr_[p] == nullptr) continue;
        grad_sq_[p] = kernels::SumSquaresToHost(grad_ptr_[p], params_->info(p).numel, params_->place().stream());
      }
    }
  }
  for (int b : accessed_[node]) manager_->Release(b);
  accessed_[node].clear();
}

absl::StatusOr<double> GeminiState::GradSumSquares() const {
  RETURN_IF_ERROR(status_);
  double sum = 0;
  for (double x : grad_sq_) sum += x;
  return sum;
}

std::vector<memory::ParamSegment> GeminiState::Segments(int chunk) const {
  std::vector<memory::ParamSegment> out;
  for (int p : plan_.layout.params(chunk)) out.push_back({p, 0, params_->info(p).numel, 0});
  return out;
}

std::vector<float*> GeminiState::At(int chunk, float* base) const {
  std::vector<float*> out;
  for (int p : plan_.layout.params(chunk)) out.push_back(base + plan_.layout.place(p).offset);
  return out;
}

absl::Status GeminiState::Step(double lr, float grad_scale) {
  RETURN_IF_ERROR(status_);
  ++step_;
  const int chunks = plan_.layout.num_chunks();
  const int base = static_cast<int>(plan_.uses.size()) - chunks;
  using Mode = memory::ChunkManager::Mode;
  for (int c = 0; c < chunks; ++c) {
    manager_->Advance(base + c);
    float* at[4] = {nullptr, nullptr, nullptr, nullptr};
    for (int k = 0; k < plan_.kinds; ++k) {
      absl::StatusOr<float*> p = manager_->Access(Buffer(c, k), k == kGradKind ? Mode::kRead : Mode::kWrite);
      if (!p.ok()) {
        for (int j = 0; j < k; ++j) manager_->Release(Buffer(c, j));
        return status_ = p.status();
      }
      at[k] = *p;
    }
    const std::vector<memory::ParamSegment> segments = Segments(c);
    SegmentState state;
    state.segments = &segments;
    state.weights = At(c, at[kParamKind]);
    for (float* g : At(c, at[kGradKind])) state.grads.push_back(g);
    state.state1 = At(c, at[kState1Kind]);
    if (plan_.kinds == 4) state.state2 = At(c, at[kState2Kind]);
    else state.state2.assign(segments.size(), nullptr);
    std::vector<double> sums(2 * segments.size());
    state.sums = sums.data();
    ApplyUpdate({&spec_->train.optimizer, &decay_, step_, lr, grad_scale, {}}, state, params_->place());
    for (int k = 0; k < plan_.kinds; ++k) manager_->Release(Buffer(c, k));
    manager_->Discard(Buffer(c, kGradKind));  // a new step writes them afresh
  }
  return manager_->status();
}

absl::Status GeminiState::FillParams(
    const std::function<absl::Status(const std::vector<memory::ParamSegment>&, const std::vector<float*>&)>& fill) {
  for (int c = 0; c < plan_.layout.num_chunks(); ++c) {
    ASSIGN_OR_RETURN(float* base, manager_->Access(Buffer(c, kParamKind), memory::ChunkManager::Mode::kOverwrite));
    absl::Status s = fill(Segments(c), At(c, base));
    manager_->Release(Buffer(c, kParamKind));
    RETURN_IF_ERROR(s);
  }
  return manager_->status();
}

absl::Status GeminiState::CopyOut(int param, int kind, void* dst) {
  const memory::ChunkPlace& at = plan_.layout.place(param);
  ASSIGN_OR_RETURN(float* base, manager_->Access(Buffer(at.chunk, kind), memory::ChunkManager::Mode::kRead));
  std::memcpy(dst, base + at.offset, static_cast<size_t>(params_->info(param).numel) * sizeof(float));
  manager_->Release(Buffer(at.chunk, kind));
  return absl::OkStatus();
}

std::vector<checkpoint::TensorView> GeminiState::ModelViews() {
  std::vector<checkpoint::TensorView> views;
  for (int p = 0; p < params_->size(); ++p) {
    checkpoint::TensorView v{params_->info(p).name, "F32", params_->info(p).shape, nullptr};
    v.fill = [this, p](void* dst) { return CopyOut(p, kParamKind, dst); };
    views.push_back(std::move(v));
  }
  return views;
}

std::vector<checkpoint::TensorView> GeminiState::OptimizerViews() {
  std::vector<checkpoint::TensorView> views;
  const bool adam = plan_.kinds == 4;
  for (int p = 0; p < params_->size(); ++p) {
    const memory::ParamInfo& info = params_->info(p);
    for (int k = kState1Kind; k < plan_.kinds; ++k) {
      const char* suffix = StateSuffix(adam, k - kState1Kind);
      checkpoint::TensorView v{info.name + suffix, "F32", info.shape, nullptr};
      v.fill = [this, p, k](void* dst) { return CopyOut(p, k, dst); };
      views.push_back(std::move(v));
    }
  }
  return views;
}

absl::Status GeminiState::LoadOptimizer(const checkpoint::PieceReader& reader) {
  const bool adam = plan_.kinds == 4;
  const graph::Layout whole;
  for (int c = 0; c < plan_.layout.num_chunks(); ++c) {
    for (int k = kState1Kind; k < plan_.kinds; ++k) {
      const char* suffix = StateSuffix(adam, k - kState1Kind);
      ASSIGN_OR_RETURN(float* base, manager_->Access(Buffer(c, k), memory::ChunkManager::Mode::kOverwrite));
      absl::Status s;
      for (int p : plan_.layout.params(c)) {
        const memory::ParamInfo& info = params_->info(p);
        s = ReadSegment(reader, info.name + suffix, info.shape, whole, 0, info.numel, base + plan_.layout.place(p).offset);
        if (!s.ok()) break;
      }
      manager_->Release(Buffer(c, k));
      RETURN_IF_ERROR(s);
    }
  }
  return manager_->status();
}

absl::Status GeminiState::CopyParams(memory::ParamStore& full) {
  for (int p = 0; p < params_->size(); ++p) {
    const int q = full.Find(params_->info(p).name);
    COL_CHECK(q >= 0 && full.info(q).numel == params_->info(p).numel);
    RETURN_IF_ERROR(CopyOut(p, kParamKind, full.data(q)));
  }
  return absl::OkStatus();
}

}  // namespace colossal::worker
