// Schedule generators, validation, the replaying simulator and the text chart.
#include "parallel/pipeline/schedule.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace colossal::parallel::pipeline {
namespace {

constexpr double kNever = std::numeric_limits<double>::infinity();

const std::array<std::pair<ScheduleKind, std::string_view>, 5> kNames = {{
    {ScheduleKind::kGpipe, "gpipe"},
    {ScheduleKind::k1f1b, "1f1b"},
    {ScheduleKind::kInterleaved, "interleaved"},
    {ScheduleKind::kZbH1, "zb-h1"},
    {ScheduleKind::kZbv, "zbv"},
}};

int EditDistance(std::string_view a, std::string_view b) {
  std::vector<int> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    int diag = row[0];
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      const int up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool IsCompute(ActionKind k) {
  return k == ActionKind::kForward || k == ActionKind::kBackward || k == ActionKind::kBackwardInput ||
         k == ActionKind::kBackwardWeight;
}

Action Compute(ActionKind kind, int microbatch, int chunk) { return Action{kind, microbatch, chunk, -1}; }

// Per (virtual stage, micro-batch) end times of F, B (input or fused) and W.
struct Done {
  Done(int stages, int microbatches)
      : microbatches(microbatches),
        f(stages * microbatches, kNever),
        b(stages * microbatches, kNever),
        w(stages * microbatches, kNever) {}
  int microbatches;
  std::vector<double> f, b, w;
  double& at(std::vector<double>& v, int vs, int m) { return v[vs * microbatches + m]; }
};

// The latest end time among an action's inputs, or kNever while one is not done.
double Ready(const PipelineSchedule& s, Done& done, int vs, const Action& a) {
  const int m = a.microbatch, last = s.virtual_stages() - 1;
  switch (a.kind) {
    case ActionKind::kForward: return vs == 0 ? 0 : done.at(done.f, vs - 1, m);
    case ActionKind::kBackward:
    case ActionKind::kBackwardInput:
      return std::max(done.at(done.f, vs, m), vs == last ? 0 : done.at(done.b, vs + 1, m));
    case ActionKind::kBackwardWeight: return done.at(done.b, vs, m);
    default: return 0;
  }
}

void Record(Done& done, int vs, const Action& a, double end) {
  switch (a.kind) {
    case ActionKind::kForward: done.at(done.f, vs, a.microbatch) = end; break;
    case ActionKind::kBackward:
      done.at(done.b, vs, a.microbatch) = end;
      done.at(done.w, vs, a.microbatch) = end;
      break;
    case ActionKind::kBackwardInput: done.at(done.b, vs, a.microbatch) = end; break;
    case ActionKind::kBackwardWeight: done.at(done.w, vs, a.microbatch) = end; break;
    default: break;
  }
}

double Cost(const ActionCosts& c, ActionKind k) {
  switch (k) {
    case ActionKind::kForward: return c.forward;
    case ActionKind::kBackward: return c.backward_input + c.backward_weight;
    case ActionKind::kBackwardInput: return c.backward_input;
    case ActionKind::kBackwardWeight: return c.backward_weight;
    default: return 0;
  }
}

void Gpipe(PipelineSchedule& s) {
  for (auto& list : s.ranks) {
    for (int m = 0; m < s.microbatches; ++m) list.push_back(Compute(ActionKind::kForward, m, 0));
    for (int m = 0; m < s.microbatches; ++m) list.push_back(Compute(ActionKind::kBackward, m, 0));
  }
}

// 1f1b, and with v chunks Megatron's interleaved order: the k-th forward of a rank is of
// chunk (k / P) mod v and micro-batch (k / (P·v))·P + k mod P; the k-th backward the same
// with the chunks reversed.
void OneForwardOneBackward(PipelineSchedule& s) {
  const int P = s.stages, v = s.chunks, total = s.microbatches * v;
  auto mb = [&](int k) { return (k / (P * v)) * P + k % P; };
  for (int r = 0; r < P; ++r) {
    const int warmup = std::min(v == 1 ? P - r - 1 : (P - r - 1) * 2 + (v - 1) * P, total);
    auto forward = [&](int k) { return Compute(ActionKind::kForward, mb(k), (k / P) % v); };
    auto backward = [&](int k) { return Compute(ActionKind::kBackward, mb(k), v - 1 - (k / P) % v); };
    auto& list = s.ranks[r];
    for (int k = 0; k < warmup; ++k) list.push_back(forward(k));
    for (int i = 0; i < total - warmup; ++i) {
      list.push_back(forward(warmup + i));
      list.push_back(backward(i));
    }
    for (int i = total - warmup; i < total; ++i) list.push_back(backward(i));
  }
}

// The zero-bubble lists: a greedy list scheduler over unit costs. Each time a rank is
// free it runs, of what is ready, the oldest B (its upstream waits for it), else the
// oldest F while fewer than forward_bound[r] chunks await their B and fewer than
// memory_bound[r] their W (the activations it holds), else the oldest W; otherwise it
// idles until the next completion.
void ZeroBubble(PipelineSchedule& s, const std::vector<int>& forward_bound, const std::vector<int>& memory_bound) {
  const int P = s.stages, M = s.microbatches, VS = s.virtual_stages();
  Done done(VS, M);
  std::vector<double> free_at(P, 0);
  std::vector<int> awaiting_b(P, 0), awaiting_w(P, 0), left(P, 3 * s.chunks * M);
  std::vector<std::vector<bool>> f_run(VS, std::vector<bool>(M)), b_run = f_run, w_run = f_run;
  // Unit costs: no list is longer than every action of every rank back to back; past
  // that the bound admits no order (the lists stay short and validation names it).
  const double horizon = 3.0 * VS * M + 1;
  for (;;) {
    int r = -1;
    for (int x = 0; x < P; ++x) {
      if (left[x] > 0 && (r < 0 || free_at[x] < free_at[r])) r = x;
    }
    if (r < 0 || free_at[r] > horizon) return;
    const double t = free_at[r];
    // Candidates: (micro-batch, −virtual stage) smallest first.
    std::tuple<int, int, ActionKind> best{M, 0, ActionKind::kForward};
    bool found = false;
    for (ActionKind kind : {ActionKind::kBackwardInput, ActionKind::kForward, ActionKind::kBackwardWeight}) {
      for (int m = 0; m < M; ++m) {
        for (int c = s.chunks - 1; c >= 0; --c) {
          const int vs = s.VirtualStage(r, c);
          const auto& run = kind == ActionKind::kForward ? f_run : kind == ActionKind::kBackwardInput ? b_run : w_run;
          if (run[vs][m]) continue;
          if (kind == ActionKind::kForward &&
              (awaiting_b[r] >= forward_bound[r] || awaiting_w[r] >= memory_bound[r])) {
            continue;
          }
          if (Ready(s, done, vs, Compute(kind, m, c)) > t) continue;
          const std::tuple<int, int, ActionKind> key{m, -vs, kind};
          if (!found || key < best) best = key, found = true;
        }
      }
      if (found) break;
    }
    if (!found) {
      // Idle until something finishes: a recorded end, or another rank's next start.
      double next = kNever;
      for (const std::vector<double>* v : {&done.f, &done.b, &done.w}) {
        for (double e : *v) {
          if (e > t && e < next) next = e;
        }
      }
      for (int x = 0; x < P; ++x) {
        if (x != r && left[x] > 0 && free_at[x] > t) next = std::min(next, free_at[x]);
      }
      free_at[r] = next == kNever ? t + 1 : next;  // (validation reports a true cycle)
      continue;
    }
    const auto [m, neg_vs, kind] = best;
    const int vs = -neg_vs, c = s.ChunkOf(vs);
    const Action a = Compute(kind, m, c);
    (kind == ActionKind::kForward ? f_run : kind == ActionKind::kBackwardInput ? b_run : w_run)[vs][m] = true;
    awaiting_b[r] += kind == ActionKind::kForward ? 1 : kind == ActionKind::kBackwardInput ? -1 : 0;
    awaiting_w[r] += kind == ActionKind::kForward ? 1 : kind == ActionKind::kBackwardWeight ? -1 : 0;
    --left[r];
    Record(done, vs, a, t + 1);
    free_at[r] = t + 1;
    s.ranks[r].push_back(a);
  }
}

// Inserts each list's sends and receives around its compute actions.
void AddCommunication(PipelineSchedule& s) {
  const int last = s.virtual_stages() - 1;
  for (int r = 0; r < s.stages; ++r) {
    std::vector<Action> out;
    for (const Action& a : s.ranks[r]) {
      const int vs = s.VirtualStage(r, a.chunk);
      const int prev = vs > 0 ? s.RankOf(vs - 1) : r, next = vs < last ? s.RankOf(vs + 1) : r;
      const bool forward = a.kind == ActionKind::kForward;
      const bool input_grad = a.kind == ActionKind::kBackward || a.kind == ActionKind::kBackwardInput;
      if (forward && prev != r) out.push_back({ActionKind::kRecvActivation, a.microbatch, a.chunk, prev});
      if (input_grad && next != r) out.push_back({ActionKind::kRecvGrad, a.microbatch, a.chunk, next});
      out.push_back(a);
      if (forward && next != r) out.push_back({ActionKind::kSendActivation, a.microbatch, a.chunk, next});
      if (input_grad && prev != r) out.push_back({ActionKind::kSendGrad, a.microbatch, a.chunk, prev});
    }
    s.ranks[r] = std::move(out);
  }
}

}  // namespace

std::string_view ScheduleName(ScheduleKind kind) {
  for (const auto& [k, name] : kNames) {
    if (k == kind) return name;
  }
  return "?";
}

absl::StatusOr<ScheduleKind> ParseSchedule(std::string_view name) {
  std::string_view nearest;
  int best = std::numeric_limits<int>::max();
  std::string all;
  for (const auto& [k, n] : kNames) {
    if (n == name) return k;
    const int d = EditDistance(name, n);
    if (d < best) best = d, nearest = n;
    absl::StrAppend(&all, all.empty() ? "" : ", ", std::string(n));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown schedule '", std::string(name), "'; did you mean '", std::string(nearest),
                                                 "'? (one of ", all, ")"));
}

std::string_view ActionName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kForward: return "F";
    case ActionKind::kBackward: return "B+W";
    case ActionKind::kBackwardInput: return "B";
    case ActionKind::kBackwardWeight: return "W";
    case ActionKind::kSendActivation: return "send-activation";
    case ActionKind::kRecvActivation: return "recv-activation";
    case ActionKind::kSendGrad: return "send-grad";
    case ActionKind::kRecvGrad: return "recv-grad";
  }
  return "?";
}

int PipelineSchedule::VirtualStage(int rank, int chunk) const {
  if (kind == ScheduleKind::kZbv) return chunk == 0 ? rank : 2 * stages - 1 - rank;
  return chunk * stages + rank;
}

int PipelineSchedule::RankOf(int virtual_stage) const {
  if (kind == ScheduleKind::kZbv) return virtual_stage < stages ? virtual_stage : 2 * stages - 1 - virtual_stage;
  return virtual_stage % stages;
}

int PipelineSchedule::ChunkOf(int virtual_stage) const {
  if (kind == ScheduleKind::kZbv) return virtual_stage < stages ? 0 : 1;
  return virtual_stage / stages;
}

absl::StatusOr<PipelineSchedule> MakeSchedule(ScheduleKind kind, int stages, int microbatches, int chunks) {
  const std::string name(ScheduleName(kind));
  if (stages < 1) return absl::InvalidArgumentError(absl::StrCat("pipeline size must be >= 1, got ", stages));
  if (microbatches < 1) {
    return absl::InvalidArgumentError(absl::StrCat("pipeline microbatches must be >= 1, got ", microbatches));
  }
  const bool one_chunk = kind == ScheduleKind::kGpipe || kind == ScheduleKind::k1f1b || kind == ScheduleKind::kZbH1;
  if (one_chunk && chunks != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule ", name, " runs one chunk per rank, got chunks ", chunks, "; use interleaved or zbv"));
  }
  if (kind == ScheduleKind::kZbv && chunks != 2) {
    return absl::InvalidArgumentError(absl::StrCat("schedule zbv places two chunks per rank (a V), got chunks ", chunks));
  }
  if (kind == ScheduleKind::kInterleaved) {
    if (chunks < 2) {
      return absl::InvalidArgumentError(absl::StrCat("schedule interleaved needs chunks >= 2, got ", chunks));
    }
    if (microbatches % stages != 0) {
      return absl::InvalidArgumentError(absl::StrCat("schedule interleaved needs microbatches (", microbatches,
                                                     ") to be a multiple of the pipeline size (", stages, ")"));
    }
  }
  PipelineSchedule s;
  s.kind = kind, s.stages = stages, s.microbatches = microbatches, s.chunks = chunks;
  s.ranks.resize(stages);
  switch (kind) {
    case ScheduleKind::kGpipe: Gpipe(s); break;
    case ScheduleKind::k1f1b:
    case ScheduleKind::kInterleaved: OneForwardOneBackward(s); break;
    case ScheduleKind::kZbH1: {
      // 1f1b's order (rank r runs at most P − r forwards ahead of its backwards) and its
      // peak memory on every rank (P micro-batches until their W): a rank deferring Ws
      // fills its bubbles with them.
      std::vector<int> ahead(stages);
      for (int r = 0; r < stages; ++r) ahead[r] = stages - r;
      ZeroBubble(s, ahead, std::vector<int>(stages, stages));
      break;
    }
    case ScheduleKind::kZbv:
      // Each chunk is half a stage: 2P chunks are 1f1b's first-rank peak, on every rank.
      ZeroBubble(s, std::vector<int>(stages, 2 * stages), std::vector<int>(stages, 2 * stages));
      break;
  }
  AddCommunication(s);
  return s;
}

absl::Status ValidatePipelineSchedule(const PipelineSchedule& s) {
  const int VS = s.virtual_stages(), M = s.microbatches;
  std::vector<std::array<int, 4>> count(VS * M, {0, 0, 0, 0});
  std::map<std::tuple<int, int, int>, int> messages;  // (grad?, micro-batch, from stage) → sends − recvs
  for (int r = 0; r < s.stages; ++r) {
    for (const Action& a : s.ranks[r]) {
      const std::string what = absl::StrCat("rank ", r, ": ", std::string(ActionName(a.kind)), " of micro-batch ",
                                            a.microbatch, " chunk ", a.chunk);
      if (a.microbatch < 0 || a.microbatch >= M || a.chunk < 0 || a.chunk >= s.chunks) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": out of range"));
      }
      const int vs = s.VirtualStage(r, a.chunk);
      switch (a.kind) {
        case ActionKind::kForward: ++count[vs * M + a.microbatch][0]; break;
        case ActionKind::kBackward: ++count[vs * M + a.microbatch][1]; break;
        case ActionKind::kBackwardInput: ++count[vs * M + a.microbatch][2]; break;
        case ActionKind::kBackwardWeight: ++count[vs * M + a.microbatch][3]; break;
        case ActionKind::kSendActivation: ++messages[{0, a.microbatch, vs}]; break;
        case ActionKind::kSendGrad: ++messages[{1, a.microbatch, vs}]; break;
        case ActionKind::kRecvActivation: --messages[{0, a.microbatch, vs - 1}]; break;
        case ActionKind::kRecvGrad: --messages[{1, a.microbatch, vs + 1}]; break;
      }
    }
  }
  for (int vs = 0; vs < VS; ++vs) {
    for (int m = 0; m < M; ++m) {
      const auto& c = count[vs * M + m];
      const bool ok = c[0] == 1 && (s.split_backward() ? c[1] == 0 && c[2] == 1 && c[3] == 1
                                                       : c[1] == 1 && c[2] == 0 && c[3] == 0);
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat("virtual stage ", vs, " micro-batch ", m, ": ", c[0],
                                                       " forwards, ", c[1], " fused backwards, ", c[2], " B, ",
                                                       c[3], " W"));
      }
    }
  }
  for (const auto& [key, balance] : messages) {
    if (balance != 0) {
      return absl::InvalidArgumentError(absl::StrCat(std::get<0>(key) ? "gradient" : "activation",
                                                     " of micro-batch ", std::get<1>(key), " from virtual stage ",
                                                     std::get<2>(key), ": ", balance > 0 ? "sent, never received"
                                                                                         : "received, never sent"));
    }
  }
  return Simulate(s).status();
}

std::vector<int> PeakHeldPerChunk(const PipelineSchedule& s, int rank) {
  std::vector<int> held(s.chunks, 0), peak(s.chunks, 0);
  for (const Action& a : s.ranks[rank]) {
    if (a.kind == ActionKind::kForward) peak[a.chunk] = std::max(peak[a.chunk], ++held[a.chunk]);
    if (a.kind == ActionKind::kBackward || a.kind == ActionKind::kBackwardWeight) --held[a.chunk];
  }
  return peak;
}

absl::StatusOr<Timeline> Simulate(const PipelineSchedule& s, const ActionCosts& costs) {
  return Simulate(s, std::vector<ActionCosts>(s.virtual_stages(), costs));
}

absl::StatusOr<Timeline> Simulate(const PipelineSchedule& s, const std::vector<ActionCosts>& per_stage) {
  if (static_cast<int>(per_stage.size()) != s.virtual_stages()) {
    return absl::InvalidArgumentError(absl::StrCat("Simulate: ", per_stage.size(), " stage costs for ",
                                                   s.virtual_stages(), " virtual stages"));
  }
  const int P = s.stages;
  Done done(s.virtual_stages(), s.microbatches);
  Timeline tl;
  tl.ranks.resize(P);
  tl.busy.assign(P, 0);
  std::vector<size_t> next(P, 0);
  std::vector<double> free_at(P, 0);
  for (bool progressed = true; progressed;) {
    progressed = false;
    for (int r = 0; r < P; ++r) {
      while (next[r] < s.ranks[r].size()) {
        const Action& a = s.ranks[r][next[r]];
        if (!IsCompute(a.kind)) {
          ++next[r];
          continue;
        }
        const int vs = s.VirtualStage(r, a.chunk);
        const double ready = Ready(s, done, vs, a);
        if (ready == kNever) break;
        const double start = std::max(free_at[r], ready), end = start + Cost(per_stage[vs], a.kind);
        Record(done, vs, a, end);
        tl.ranks[r].push_back({a, start, end});
        tl.busy[r] += end - start;
        free_at[r] = end;
        ++next[r];
        progressed = true;
      }
    }
  }
  std::string stuck;
  for (int r = 0; r < P; ++r) {
    if (next[r] < s.ranks[r].size()) {
      const Action& a = s.ranks[r][next[r]];
      absl::StrAppend(&stuck, stuck.empty() ? "" : "; ", "rank ", r, " at ", std::string(ActionName(a.kind)),
                      " of micro-batch ", a.microbatch, " chunk ", a.chunk);
    }
  }
  if (!stuck.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("the pipeline schedule cannot finish: ", stuck));
  }
  double total = 0;
  for (int r = 0; r < P; ++r) {
    tl.makespan = std::max(tl.makespan, free_at[r]);
    total += tl.busy[r];
  }
  tl.bubble = tl.makespan > 0 ? 1 - total / (P * tl.makespan) : 0;
  tl.peak_in_flight.assign(P, 0);
  for (int r = 0; r < P; ++r) {
    // +1 when a forward starts, −1 when the chunk's last backward action ends.
    std::vector<std::pair<double, int>> events;
    for (const Timeline::Slot& slot : tl.ranks[r]) {
      if (slot.action.kind == ActionKind::kForward) events.push_back({slot.start, +1});
      if (slot.action.kind == ActionKind::kBackward || slot.action.kind == ActionKind::kBackwardWeight) {
        events.push_back({slot.end, -1});
      }
    }
    std::sort(events.begin(), events.end());  // at one instant, releases before takes
    int live = 0;
    for (const auto& [t, d] : events) tl.peak_in_flight[r] = std::max(tl.peak_in_flight[r], live += d);
  }
  return tl;
}

double TheoreticalBubble(const PipelineSchedule& s) {
  const double P = s.stages, M = s.microbatches, v = s.chunks;
  switch (s.kind) {
    case ScheduleKind::kGpipe:
    case ScheduleKind::k1f1b: return (P - 1) / (M + P - 1);
    case ScheduleKind::kInterleaved: return (P - 1) / (v * M + P - 1);
    default: {
      auto tl = Simulate(s);
      return tl.ok() ? tl->bubble : NAN;
    }
  }
}

std::string TimelineChart(const PipelineSchedule& s, const Timeline& tl, double unit) {
  const int width = static_cast<int>(std::ceil(tl.makespan / unit - 1e-9));
  std::string out;
  for (int r = 0; r < s.stages; ++r) {
    std::string row(width, '.');
    for (const Timeline::Slot& slot : tl.ranks[r]) {
      char ch = slot.action.kind == ActionKind::kForward          ? 'F'
                : slot.action.kind == ActionKind::kBackwardWeight ? 'W'
                                                                  : 'B';
      if (slot.action.chunk > 0) ch = static_cast<char>(ch - 'A' + 'a');
      const int a = static_cast<int>(std::floor(slot.start / unit + 1e-9));
      const int b = static_cast<int>(std::ceil(slot.end / unit - 1e-9));
      for (int x = a; x < b && x < width; ++x) row[x] = ch;
    }
    absl::StrAppend(&out, "rank ", r, " |", row, "|\n");
  }
  return out;
}

}  // namespace colossal::parallel::pipeline
