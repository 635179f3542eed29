// Chunk graphs of a pipeline rank and the interpreter of its action list.
#include "parallel/pipeline/runner.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "graph/autodiff.h"
#include "graph/schedule.h"
#include "graph/stage_split.h"

namespace colossal::parallel::pipeline {
namespace {

constexpr int kMaxValuesPerBoundary = 16;
enum Direction { kActivation = 0, kGradient = 1, kEval = 2 };

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsCompute(ActionKind k) {
  return k == ActionKind::kForward || k == ActionKind::kBackward || k == ActionKind::kBackwardInput ||
         k == ActionKind::kBackwardWeight;
}
bool IsRecv(ActionKind k) { return k == ActionKind::kRecvActivation || k == ActionKind::kRecvGrad; }
bool IsSend(ActionKind k) { return k == ActionKind::kSendActivation || k == ActionKind::kSendGrad; }

}  // namespace

absl::StatusOr<std::vector<Chunk>> BuildChunks(const graph::Graph& whole, const PipelineSchedule& schedule, int rank,
                                               const std::vector<int>& layers_per_stage,
                                               const std::function<absl::Status(graph::Graph&)>& after_backward) {
  const int VS = schedule.virtual_stages();
  absl::StatusOr<graph::StageSplit> split = graph::SplitStages(whole, VS, layers_per_stage);
  if (!split.ok()) return split.status();
  // The parameters any chunk of this rank reads: every chunk graph lists them all.
  std::set<int> rank_params;
  for (int c = 0; c < schedule.chunks; ++c) {
    for (int n : split->nodes[schedule.VirtualStage(rank, c)]) {
      for (int v : whole.node(n).inputs) {
        if (whole.value(v).kind == graph::ValueKind::kParam) rank_params.insert(v);
      }
    }
  }
  const std::vector<int> also(rank_params.begin(), rank_params.end());
  std::vector<Chunk> chunks;
  for (int c = 0; c < schedule.chunks; ++c) {
    const int vs = schedule.VirtualStage(rank, c);
    absl::StatusOr<graph::StageGraph> sg = graph::BuildStageGraph(whole, *split, vs, also);
    if (!sg.ok()) return sg.status();
    Chunk chunk;
    chunk.virtual_stage = vs;
    chunk.graph = std::make_unique<graph::Graph>(std::move(sg->graph));
    graph::Graph& g = *chunk.graph;
    // What it receives must be exactly what the previous virtual stage sends, in that order.
    std::set<std::string> got;
    for (int v : sg->received) got.insert(g.value(v).name);
    if (vs > 0) {
      for (int v : split->sends[vs - 1]) {
        const std::string& name = whole.value(v).name;
        if (got.erase(name) == 0) {
          return absl::InvalidArgumentError(absl::StrCat("pipeline: '", name, "' (virtual stage ", vs - 1,
                                                         ") is read past virtual stage ", vs,
                                                         ": values may cross one stage boundary only"));
        }
        chunk.received.push_back(g.Find(name));
      }
    }
    if (!got.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("pipeline: virtual stage ", vs, " reads '", *got.begin(),
                                                     "' from a stage before the previous one: values may "
                                                     "cross one stage boundary only"));
    }
    if (chunk.received.size() > kMaxValuesPerBoundary || sg->sent.size() > kMaxValuesPerBoundary) {
      return absl::InvalidArgumentError(absl::StrCat("pipeline: more than ", kMaxValuesPerBoundary,
                                                     " values cross a stage boundary"));
    }
    chunk.sent = sg->sent;
    absl::StatusOr<std::vector<int>> grads =
        graph::BuildBackward(g, chunk.sent, chunk.received, /*defer_weight_grads=*/schedule.split_backward());
    if (!grads.ok()) {
      return absl::Status(grads.status().code(),
                          absl::StrCat("pipeline virtual stage ", vs, ": ", grads.status().message()));
    }
    for (size_t j = 0; j < grads->size(); ++j) {
      if ((*grads)[j] < 0) {
        return absl::InvalidArgumentError(absl::StrCat("pipeline virtual stage ", vs, ": no gradient flows into '",
                                                       g.value(chunk.received[j]).name, "'"));
      }
    }
    chunk.received_grads = std::move(*grads);
    for (int v : chunk.sent) chunk.sent_grads.push_back(g.Find(g.value(v).name + ".grad"));
    if (after_backward) {
      if (absl::Status s = after_backward(g); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("pipeline virtual stage ", vs, ": ", s.message()));
      }
    }
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

double MeasuredBubble(const std::vector<std::vector<TimedAction>>& ranks) {
  int64_t first = INT64_MAX, last = INT64_MIN;
  double busy = 0;
  for (const auto& rank : ranks) {
    for (const TimedAction& t : rank) {
      first = std::min(first, t.start_us);
      last = std::max(last, t.end_us);
      busy += static_cast<double>(t.end_us - t.start_us);
    }
  }
  if (last <= first || ranks.empty()) return 0;
  return 1.0 - busy / (static_cast<double>(ranks.size()) * static_cast<double>(last - first));
}

absl::StatusOr<std::unique_ptr<Runner>> Runner::Create(const PipelineSchedule& schedule, int rank,
                                                       std::vector<Chunk> chunks, memory::ParamStore* store,
                                                       Communicator* pipe, SetupFn setup) {
  if (static_cast<int>(chunks.size()) != schedule.chunks) {
    return absl::InvalidArgumentError(
        absl::StrCat("pipeline rank ", rank, ": ", chunks.size(), " chunks for a schedule of ", schedule.chunks));
  }
  if (schedule.stages > 1 && (pipe == nullptr || pipe->size() != schedule.stages || pipe->rank() != rank)) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline rank ", rank, ": the pipeline group does not match the ",
                                                   schedule.stages, " stages"));
  }
  std::unique_ptr<Runner> r(new Runner());
  r->schedule_ = schedule;
  r->rank_ = rank;
  r->chunks_ = std::move(chunks);
  r->store_ = store;
  r->pipe_ = pipe;
  r->setup_ = std::move(setup);
  r->slots_.resize(r->chunks_.size());
  for (const Chunk& c : r->chunks_) {
    r->orders_.push_back(ChunkOrder(*c.graph, schedule));
  }
  // One slot per chunk now: a bad graph or store fails here, not mid-step.
  for (int c = 0; c < r->num_chunks(); ++c) {
    absl::StatusOr<Slot*> s = r->Acquire(c, -1);
    if (!s.ok()) return s.status();
  }
  return r;
}

int64_t Runner::arena_bytes() const {
  int64_t total = 0;
  for (const auto& chunk : slots_) {
    for (const auto& s : chunk) total += s->ex->plan().arena_bytes;
  }
  return total;
}

graph::Schedule ChunkOrder(const graph::Graph& chunk, const PipelineSchedule& schedule) {
  graph::Schedule order = graph::OverlapCommunication(chunk, graph::DefaultSchedule(chunk));
  return schedule.split_backward() ? graph::SplitBackward(chunk, order) : order;
}

absl::StatusOr<std::vector<std::vector<TimedAction>>> GatherTimelines(const PipelineSchedule& schedule, int rank,
                                                                      const std::vector<TimedAction>& mine,
                                                                      Communicator* pipe) {
  const int P = schedule.stages;
  std::vector<std::vector<TimedAction>> out(P);
  size_t most = 0;
  for (int r = 0; r < P; ++r) {
    for (const Action& a : schedule.ranks[r]) {
      if (a.kind == ActionKind::kForward || a.kind == ActionKind::kBackward ||
          a.kind == ActionKind::kBackwardInput || a.kind == ActionKind::kBackwardWeight) {
        out[r].push_back({a, 0, 0});
      }
    }
    most = std::max(most, out[r].size());
  }
  if (mine.size() != out[rank].size()) {
    return absl::InternalError(
        absl::StrCat("pipeline rank ", rank, " timed ", mine.size(), " actions of ", out[rank].size()));
  }
  // (start, end) µs of each action as int64 bits, padded to the longest list.
  std::vector<int64_t> send(2 * most, 0), all(2 * most * P);
  for (size_t i = 0; i < mine.size(); ++i) {
    send[2 * i] = mine[i].start_us;
    send[2 * i + 1] = mine[i].end_us;
  }
  if (P > 1) {
    if (absl::Status s = pipe->AllGather(send.data(), all.data(), static_cast<int64_t>(4 * most), graph::DType::kF32)->Wait();
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("pipeline rank ", rank, ": gathering the step's timeline: ", s.message()));
    }
  } else {
    all = send;
  }
  for (int r = 0; r < P; ++r) {
    for (size_t i = 0; i < out[r].size(); ++i) {
      out[r][i].start_us = all[2 * most * r + 2 * i];
      out[r][i].end_us = all[2 * most * r + 2 * i + 1];
    }
  }
  return out;
}

absl::StatusOr<std::vector<SharedParam>> SharedParams(const graph::Graph& whole, const PipelineSchedule& schedule,
                                                      const std::vector<int>& layers_per_stage) {
  absl::StatusOr<graph::StageSplit> split = graph::SplitStages(whole, schedule.virtual_stages(), layers_per_stage);
  if (!split.ok()) return split.status();
  std::vector<SharedParam> out;
  for (const graph::StageSplit::Shared& s : split->shared_params) {
    std::set<int> ranks;
    for (int vs : s.stages) ranks.insert(schedule.RankOf(vs));
    if (ranks.size() > 1) out.push_back({whole.value(s.param).name, std::vector<int>(ranks.begin(), ranks.end())});
  }
  return out;
}

absl::Status Runner::SumSharedGrads(const std::vector<SharedParam>& shared) {
  for (size_t k = 0; k < shared.size(); ++k) {
    const SharedParam& sp = shared[k];
    if (std::find(sp.ranks.begin(), sp.ranks.end(), rank_) == sp.ranks.end()) continue;
    const int p = store_->Find(sp.name);
    if (p < 0 || pipe_ == nullptr) {
      return absl::InternalError(absl::StrCat("pipeline rank ", rank_, ": shared parameter '", sp.name,
                                              "' is not in its store or there is no pipeline group"));
    }
    const int64_t n = store_->info(p).numel;
    float* grad = store_->grad(p);
    // Every holder's gradient, by position in sp.ranks; this rank's own in place.
    std::vector<std::vector<float>> theirs(sp.ranks.size());
    std::vector<std::unique_ptr<Work>> works;
    const int tag = Tag(2, 0, 0, static_cast<int>(k));
    for (size_t i = 0; i < sp.ranks.size(); ++i) {
      if (sp.ranks[i] == rank_) continue;
      works.push_back(pipe_->Send(grad, n * static_cast<int64_t>(sizeof(float)), sp.ranks[i], tag));
      theirs[i].resize(n);
      works.push_back(pipe_->Recv(theirs[i].data(), n * static_cast<int64_t>(sizeof(float)), sp.ranks[i], tag));
    }
    if (absl::Status st = WaitAll(works, [&] { return absl::StrCat("pipeline rank ", rank_, ": summing the gradient of '", sp.name, "'"); });
        !st.ok()) {
      return st;
    }
    // The same order on every holder: ranks ascending.
    std::vector<float> sum(n, 0.0f);
    for (size_t i = 0; i < sp.ranks.size(); ++i) {
      const float* g = sp.ranks[i] == rank_ ? grad : theirs[i].data();
      for (int64_t e = 0; e < n; ++e) sum[e] += g[e];
    }
    std::copy(sum.begin(), sum.end(), grad);
  }
  return absl::OkStatus();
}

int Runner::Tag(int direction, int boundary, int m, int j) const {
  return ((direction * schedule_.virtual_stages() + boundary) * (schedule_.microbatches + 1) + m) *
             kMaxValuesPerBoundary +
         j;
}

absl::Status Runner::WaitAll(std::vector<std::unique_ptr<Work>>& works, const std::function<std::string()>& what) {
  absl::Status status;
  for (auto& w : works) {
    absl::Status s = w->Wait();
    if (!s.ok() && status.ok()) status = absl::Status(s.code(), absl::StrCat(what(), ": ", s.message()));
  }
  works.clear();
  return status;
}

Runner::Slot* Runner::Held(int chunk, int m) {
  for (auto& s : slots_[chunk]) {
    if (s->microbatch == m) return s.get();
  }
  return nullptr;
}

absl::StatusOr<Runner::Slot*> Runner::Acquire(int chunk, int m) {
  if (m != -1) {
    if (Slot* s = Held(chunk, m)) return s;
  }
  Slot* slot = nullptr;
  for (auto& s : slots_[chunk]) {
    if (s->microbatch == -1) {
      slot = s.get();
      break;
    }
  }
  if (slot == nullptr) {
    absl::StatusOr<std::unique_ptr<graph::Executor>> ex =
        graph::Executor::Create(chunks_[chunk].graph.get(), store_, orders_[chunk]);
    if (!ex.ok()) return ex.status();
    (*ex)->SetParamGrads(graph::Executor::ParamGrads::kAlwaysAdd);
    if (setup_) {
      absl::Status s = setup_(chunk, **ex);
      if (!s.ok()) return s;
    }
    auto s = std::make_unique<Slot>();
    s->ex = std::move(*ex);
    slot = s.get();
    slots_[chunk].push_back(std::move(s));
  }
  // Its previous micro-batch's sends read its buffers until they complete.
  absl::Status s = WaitAll(slot->sends, [&] { return absl::StrCat("pipeline rank ", rank_, ": a send"); });
  if (!s.ok()) return s;
  slot->microbatch = m;
  return slot;
}

void Runner::Release(int chunk, int m) {
  if (Slot* s = Held(chunk, m)) s->microbatch = -1;
}

absl::Status Runner::PostRecv(const Action& a) {
  absl::StatusOr<Slot*> slot = Acquire(a.chunk, a.microbatch);
  if (!slot.ok()) return slot.status();
  graph::Executor& ex = *(*slot)->ex;
  const Chunk& c = chunks_[a.chunk];
  const bool act = a.kind == ActionKind::kRecvActivation;
  const std::vector<int>& into = act ? c.received : c.sent_grads;
  // Activations cross boundary vs − 1 → vs, gradients vs + 1 → vs (named by the lower).
  const int boundary = act ? c.virtual_stage - 1 : c.virtual_stage;
  for (size_t j = 0; j < into.size(); ++j) {
    (act ? (*slot)->activation_recvs : (*slot)->grad_recvs)
        .push_back(pipe_->Recv(ex.Data(into[j]), c.graph->value(into[j]).bytes(), a.peer,
                               Tag(act ? kActivation : kGradient, boundary, a.microbatch, static_cast<int>(j))));
  }
  return absl::OkStatus();
}

absl::Status Runner::PostSend(const Action& a) {
  Slot* slot = Held(a.chunk, a.microbatch);
  if (slot == nullptr) return absl::InternalError("pipeline: a send from a micro-batch not in flight");
  const Chunk& c = chunks_[a.chunk];
  const bool act = a.kind == ActionKind::kSendActivation;
  const std::vector<int>& from = act ? c.sent : c.received_grads;
  const int boundary = act ? c.virtual_stage : c.virtual_stage - 1;
  for (size_t j = 0; j < from.size(); ++j) {
    slot->sends.push_back(pipe_->Send(slot->ex->Data(from[j]), c.graph->value(from[j]).bytes(), a.peer,
                                      Tag(act ? kActivation : kGradient, boundary, a.microbatch, static_cast<int>(j))));
  }
  return absl::OkStatus();
}

namespace {
// Copies `from`'s values `src` into `to`'s values `dst` (a handover between two chunks
// of one rank).
void Copy(graph::Executor& from, const graph::Graph& gf, const std::vector<int>& src, graph::Executor& to,
          const std::vector<int>& dst) {
  for (size_t j = 0; j < src.size(); ++j) {
    std::memcpy(to.Data(dst[j]), from.Data(src[j]), static_cast<size_t>(gf.value(src[j]).bytes()));
  }
}
}  // namespace

absl::Status Runner::Run(const Action& a, const FeedFn& feed, const LossFn& on_loss) {
  const Chunk& c = chunks_[a.chunk];
  const int last = schedule_.virtual_stages() - 1;
  // Names the action in errors (built only then).
  auto where = [&] {
    return absl::StrCat("pipeline rank ", rank_, ", virtual stage ", c.virtual_stage, ", micro-batch ", a.microbatch);
  };
  Slot* slot = nullptr;
  if (a.kind == ActionKind::kForward) {
    absl::StatusOr<Slot*> got = Acquire(a.chunk, a.microbatch);
    if (!got.ok()) return got.status();
    slot = *got;
    absl::Status s = WaitAll(slot->activation_recvs, [&] { return absl::StrCat(where(), ": receiving its activations"); });
    if (!s.ok()) return s;
  } else {
    slot = Held(a.chunk, a.microbatch);
    if (slot == nullptr) return absl::InternalError(absl::StrCat(where(), ": a backward before its forward"));
    absl::Status s = WaitAll(slot->grad_recvs, [&] { return absl::StrCat(where(), ": receiving its output's gradient"); });
    if (!s.ok()) return s;
  }
  graph::Executor& ex = *slot->ex;
  TimedAction timed{a, NowUs(), 0};
  switch (a.kind) {
    case ActionKind::kForward: {
      if (feed) feed(a.chunk, a.microbatch, ex);
      ex.Forward();
      if (!ex.status().ok()) break;
      if (c.virtual_stage == last && on_loss) on_loss(a.microbatch, ex);
      if (c.virtual_stage < last && schedule_.RankOf(c.virtual_stage + 1) == rank_) {
        const int next = schedule_.ChunkOf(c.virtual_stage + 1);
        absl::StatusOr<Slot*> to = Acquire(next, a.microbatch);
        if (!to.ok()) return to.status();
        Copy(ex, *c.graph, c.sent, *(*to)->ex, chunks_[next].received);
      }
      break;
    }
    case ActionKind::kBackward:
    case ActionKind::kBackwardInput: {
      if (a.kind == ActionKind::kBackward) {
        ex.Backward(a.microbatch);
      } else {
        ex.BackwardInput(a.microbatch);
      }
      if (!ex.status().ok()) break;
      if (c.virtual_stage > 0 && schedule_.RankOf(c.virtual_stage - 1) == rank_) {
        const int prev = schedule_.ChunkOf(c.virtual_stage - 1);
        Slot* to = Held(prev, a.microbatch);
        if (to == nullptr) return absl::InternalError(absl::StrCat(where(), ": the previous chunk is not in flight"));
        Copy(ex, *c.graph, c.received_grads, *to->ex, chunks_[prev].sent_grads);
      }
      break;
    }
    case ActionKind::kBackwardWeight: ex.BackwardWeight(a.microbatch); break;
    default: return absl::InternalError("pipeline: not a compute action");
  }
  if (!ex.status().ok()) return absl::Status(ex.status().code(), absl::StrCat(where(), ": ", ex.status().message()));
  timed.end_us = NowUs();
  timeline_.push_back(timed);
  return absl::OkStatus();
}

absl::Status Runner::Step(const FeedFn& feed, const LossFn& on_loss) {
  std::fill(store_->flat_grad(), store_->flat_grad() + store_->flat_numel(), 0.0f);
  timeline_.clear();
  const std::vector<Action>& list = schedule_.ranks[rank_];
  std::vector<size_t> compute;
  for (size_t i = 0; i < list.size(); ++i) {
    if (IsCompute(list[i].kind)) compute.push_back(i);
  }
  size_t posted = 0;  // list entries before this are posted (receives) or passed
  auto post_until = [&](size_t limit) -> absl::Status {
    for (; posted < limit; ++posted) {
      if (IsRecv(list[posted].kind)) {
        absl::Status s = PostRecv(list[posted]);
        if (!s.ok()) return s;
      }
    }
    return absl::OkStatus();
  };
  absl::Status status = post_until(compute.empty() ? list.size() : compute[0]);
  for (size_t k = 0; k < compute.size() && status.ok(); ++k) {
    // The receives of the next compute action go out before this one runs.
    const size_t end = k + 1 < compute.size() ? compute[k + 1] : list.size();
    status = post_until(end);
    if (!status.ok()) break;
    const Action& a = list[compute[k]];
    status = Run(a, feed, on_loss);
    for (size_t i = compute[k] + 1; i < end && status.ok(); ++i) {
      if (IsSend(list[i].kind)) status = PostSend(list[i]);
    }
    // Its last action frees the micro-batch's slot (fused backward, or W).
    if (a.kind == ActionKind::kBackward || a.kind == ActionKind::kBackwardWeight) Release(a.chunk, a.microbatch);
  }
  for (auto& chunk : slots_) {
    for (auto& s : chunk) {
      absl::Status w = WaitAll(s->sends, [&] { return absl::StrCat("pipeline rank ", rank_, ": a send"); });
      if (status.ok() && !w.ok()) status = w;
      if (!status.ok()) {
        s->activation_recvs.clear();
        s->grad_recvs.clear();
        s->microbatch = -1;
      }
    }
  }
  return status;
}

absl::Status Runner::Forward(const FeedFn& feed, const LossFn& on_loss) {
  const int last = schedule_.virtual_stages() - 1;
  constexpr int kEvalBatch = -2;  // the slot a validation micro-batch holds
  std::vector<int> order(chunks_.size());
  for (int c = 0; c < num_chunks(); ++c) order[c] = c;
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return chunks_[a].virtual_stage < chunks_[b].virtual_stage; });
  absl::Status status;
  std::vector<std::unique_ptr<Work>> sends;
  for (int c : order) {
    const Chunk& chunk = chunks_[c];
    const int vs = chunk.virtual_stage;
    absl::StatusOr<Slot*> slot = Acquire(c, kEvalBatch);
    if (!slot.ok()) {
      status = slot.status();
      break;
    }
    graph::Executor& ex = *(*slot)->ex;
    if (vs > 0 && schedule_.RankOf(vs - 1) != rank_) {
      std::vector<std::unique_ptr<Work>> recvs;
      for (size_t j = 0; j < chunk.received.size(); ++j) {
        recvs.push_back(pipe_->Recv(ex.Data(chunk.received[j]), chunk.graph->value(chunk.received[j]).bytes(),
                                    schedule_.RankOf(vs - 1), Tag(kEval, vs - 1, 0, static_cast<int>(j))));
      }
      status = WaitAll(recvs, [&] {
        return absl::StrCat("pipeline rank ", rank_, ", virtual stage ", vs, ": receiving a validation activation");
      });
      if (!status.ok()) break;
    }
    if (feed) feed(c, 0, ex);
    ex.Forward();
    if (!ex.status().ok()) {
      status = ex.status();
      break;
    }
    if (vs == last) {
      if (on_loss) on_loss(0, ex);
      continue;
    }
    if (schedule_.RankOf(vs + 1) == rank_) {
      const int next = schedule_.ChunkOf(vs + 1);
      absl::StatusOr<Slot*> to = Acquire(next, kEvalBatch);
      if (!to.ok()) {
        status = to.status();
        break;
      }
      Copy(ex, *chunk.graph, chunk.sent, *(*to)->ex, chunks_[next].received);
      continue;
    }
    for (size_t j = 0; j < chunk.sent.size(); ++j) {
      sends.push_back(pipe_->Send(ex.Data(chunk.sent[j]), chunk.graph->value(chunk.sent[j]).bytes(),
                                  schedule_.RankOf(vs + 1), Tag(kEval, vs, 0, static_cast<int>(j))));
    }
  }
  absl::Status w = WaitAll(sends, [&] { return absl::StrCat("pipeline rank ", rank_, ": sending a validation activation"); });
  if (status.ok()) status = w;
  for (int c = 0; c < num_chunks(); ++c) Release(c, kEvalBatch);
  return status;
}

}  // namespace colossal::parallel::pipeline
