// Pipeline schedules as data: a pure function (schedule kind, stages P, micro-batches M,
// virtual chunks v) → per rank, the ordered list of actions it runs in one optimizer step:
// forward of (chunk, micro-batch), backward (input and weight gradients together), or,
// for the zero-bubble schedules, backward-input B and backward-weight W apart, and the
// send / receive of activations and their gradients between consecutive virtual stages
// on different ranks. One interpreter runs any list; this file does not run anything.
//
// Virtual stages: the model's layers are cut into P·v consecutive virtual stages; rank r
// holds chunks c = 0..v−1 of them:
//   gpipe, 1f1b, zb-h1   v = 1, virtual stage r
//   interleaved          v ≥ 2 (Megatron), virtual stage c·P + r
//   zbv                  v = 2 (Qi et al., "Zero Bubble Pipeline Parallelism"), a V:
//                        chunk 0 is virtual stage r, chunk 1 is 2P − 1 − r, so rank 0
//                        holds the first and the last
// Schedules:
//   gpipe        every forward, then every backward
//   1f1b         P − r − 1 warm-up forwards, then one forward one backward, then the
//                remaining backwards (PipeDream-flush / Megatron)
//   interleaved  1f1b over the v chunks (Megatron's virtual pipeline; M % P == 0)
//   zb-h1        1f1b's order (rank r at most P − r forwards ahead of its B) with W
//                deferred into the bubbles, holding at most P micro-batches until their W
//                (1f1b's first-rank peak, on every rank)
//   zbv          the V placement, B before F before W, at most 2P chunks (half stages)
//                held until their W, W filling the bubbles
// The zero-bubble lists come from a greedy list scheduler over unit action costs
// (priority B, then F within the bounds, then W) in the spirit of the paper's
// heuristic; at 4 stages and 8 micro-batches it reaches a bubble of 0.172 (zb-h1; the
// paper's hand-made ZB-H1 0.111) and 0.059 (zbv) against 1f1b's 0.273.
// Simulate() replays any lists with given action costs (a rank runs its list in order;
// an action starts when the rank is free and its inputs are done) and reports the
// makespan, each rank's busy time, the bubble fraction and the peak in-flight
// micro-batches per rank; tests hold every schedule to it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace colossal::parallel::pipeline {

enum class ScheduleKind { kGpipe, k1f1b, kInterleaved, kZbH1, kZbv };
std::string_view ScheduleName(ScheduleKind kind);  // "gpipe", "1f1b", "interleaved", "zb-h1", "zbv"
// The kind named `name`; InvalidArgument naming the nearest known name otherwise.
absl::StatusOr<ScheduleKind> ParseSchedule(std::string_view name);

enum class ActionKind {
  kForward,
  kBackward,        // input and weight gradients together
  kBackwardInput,   // B: the input gradient, which the previous stage waits for
  kBackwardWeight,  // W: the weight gradients, which nothing downstream waits for
  kSendActivation,  // this chunk's output of micro-batch m to the next virtual stage
  kRecvActivation,  // this chunk's input of micro-batch m from the previous one
  kSendGrad,        // the gradient of this chunk's input to the previous virtual stage
  kRecvGrad,        // the gradient of this chunk's output from the next one
};
std::string_view ActionName(ActionKind kind);

struct Action {
  ActionKind kind = ActionKind::kForward;
  int microbatch = 0;
  int chunk = 0;  // on this rank; its virtual stage is VirtualStage(rank, chunk)
  // Send/recv: the peer rank.
  int peer = -1;
  bool operator==(const Action& o) const {
    return kind == o.kind && microbatch == o.microbatch && chunk == o.chunk && peer == o.peer;
  }
};

struct PipelineSchedule {
  ScheduleKind kind = ScheduleKind::k1f1b;
  int stages = 1;        // P: ranks along the pipeline axis
  int microbatches = 1;  // M per optimizer step
  int chunks = 1;        // v per rank
  std::vector<std::vector<Action>> ranks;  // per pipeline rank, in order

  int virtual_stages() const { return stages * chunks; }
  int VirtualStage(int rank, int chunk) const;
  int RankOf(int virtual_stage) const;
  int ChunkOf(int virtual_stage) const;
  // Whether backward is split into B and W.
  bool split_backward() const { return kind == ScheduleKind::kZbH1 || kind == ScheduleKind::kZbv; }
};

// InvalidArgument (naming the value and what it needs) when P or M < 1, chunks do not fit
// the kind (1 for gpipe/1f1b/zb-h1, ≥ 2 for interleaved, 2 for zbv) or interleaved's M is
// not a multiple of P.
absl::StatusOr<PipelineSchedule> MakeSchedule(ScheduleKind kind, int stages, int microbatches,
                                              int chunks = 1);

// Checks a schedule's lists: every compute action of every (virtual stage, micro-batch)
// exactly once on the rank holding it (B and W, or the fused backward), each send with
// its receive on the peer, and (by simulation) that the lists can run to the end.
absl::Status ValidatePipelineSchedule(const PipelineSchedule& schedule);

// Costs of one action of one chunk (the whole stage's work over v), in any unit.
struct ActionCosts {
  double forward = 1, backward_input = 1, backward_weight = 1;  // fused backward: B + W
};

struct Timeline {
  struct Slot {
    Action action;
    double start = 0, end = 0;
  };
  std::vector<std::vector<Slot>> ranks;  // compute actions only, in start order
  double makespan = 0;
  std::vector<double> busy;              // per rank
  double bubble = 0;                     // 1 − Σ busy / (P · makespan)
  // Per rank: the most micro-batch chunks whose forward has run and whose backward
  // (W, when split) has not — the activations the rank holds at its peak.
  std::vector<int> peak_in_flight;
};

// Per chunk of rank `rank`: the most micro-batches its list has forwarded and not yet
// finished (the fused backward, or W), in list order — the activations it holds at once.
std::vector<int> PeakHeldPerChunk(const PipelineSchedule& schedule, int rank);

// Replays the lists; FailedPrecondition naming the stuck ranks' next actions when they
// cannot run to the end (a dependency cycle).
absl::StatusOr<Timeline> Simulate(const PipelineSchedule& schedule, const ActionCosts& costs = {});
// The same with each virtual stage's own costs (per_stage[vs]; measured, say).
absl::StatusOr<Timeline> Simulate(const PipelineSchedule& schedule, const std::vector<ActionCosts>& per_stage);

// The textbook bubble fraction of the kind: (P−1)/(M+P−1) for gpipe and 1f1b,
// (P−1)/(v·M+P−1) for interleaved; for the zero-bubble kinds their simulated value at
// unit costs (the paper: ≈ 0 once M ≥ 2P).
double TheoreticalBubble(const PipelineSchedule& schedule);

// One text row per rank ("rank 0 |...|"), one character per `unit` of time: F, B and W
// (the fused backward is B) for chunk 0, f, b and w for the other chunks, '.' idle.
std::string TimelineChart(const PipelineSchedule& schedule, const Timeline& timeline, double unit = 1);

}  // namespace colossal::parallel::pipeline
