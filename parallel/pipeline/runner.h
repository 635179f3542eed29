// The pipeline interpreter: runs one rank's action list (schedule.h) over its chunks —
// the virtual stages it holds, each a stage graph (graph/stage_split.h) with its
// backward, all sharing the rank's one parameter store.
//
// Activations: every micro-batch in flight on a chunk has an executor of its own (a
// "slot": its arena holds that micro-batch's activations from its forward until its
// backward, or its W under the zero-bubble schedules), taken when the micro-batch first
// arrives and returned after its last backward action; the pool grows to the
// schedule's peak in-flight count on the first step and is reused after. Parameter
// gradients of every slot add into the shared store (Executor::ParamGrads::kAlwaysAdd),
// zeroed by Step first.
//
// Communication: a chunk's receives are posted one compute action ahead of the action
// that reads them, straight into the slot's input buffers; sends are posted right after
// the action that produced them and waited for before the slot is reused (and at the end
// of the step). Consecutive virtual stages on the same rank (zbv's turn) hand their
// values over by copy. Messages are matched by (peer, tag), the tag naming the direction,
// the virtual-stage boundary, the micro-batch and the value.
//
// Every compute action is timed (wall clock, microseconds, so timelines of different
// ranks line up); Step keeps the last step's.
// Not thread-safe; one per rank.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/executor.h"
#include "graph/ir.h"
#include "memory/param_store.h"
#include "parallel/comm/communicator.h"
#include "parallel/pipeline/schedule.h"

namespace colossal::parallel::pipeline {

// One chunk of a rank: its graph (forward + backward) and what crosses its boundaries.
struct Chunk {
  std::unique_ptr<graph::Graph> graph;
  int virtual_stage = 0;
  // Inputs that the previous virtual stage produces, ordered as its `sent`, and their
  // gradients (graph outputs) in the same order.
  std::vector<int> received, received_grads;
  // Values the next virtual stage reads, and the inputs ("<name>.grad") where their
  // gradients arrive, in the same order.
  std::vector<int> sent, sent_grads;
};

// The chunks of pipeline rank `rank` under `schedule`, cut from the whole forward graph
// `whole` (unmodified; layers marked) into schedule.virtual_stages() stages (FLOP
// balanced, or `layers_per_stage`, one entry per virtual stage). Each chunk graph lists
// the parameters of every chunk of the rank, in the whole graph's order (the store's
// order), and carries its backward (weight gradients deferrable for the zero-bubble
// schedules). `after_backward`, when set, transforms each chunk graph once its backward
// is built (activation checkpointing, graph/recompute.h). InvalidArgument when the split
// fails or a value crosses more than one virtual-stage boundary.
absl::StatusOr<std::vector<Chunk>> BuildChunks(const graph::Graph& whole, const PipelineSchedule& schedule,
                                               int rank, const std::vector<int>& layers_per_stage = {},
                                               const std::function<absl::Status(graph::Graph&)>& after_backward = {});

// The node order a chunk's executors run: overlapped communication, and the backward
// split into B and W for the zero-bubble schedules.
graph::Schedule ChunkOrder(const graph::Graph& chunk, const PipelineSchedule& schedule);

// A parameter that chunks on more than one pipeline rank read (GPT's tied wte: the
// embedding on the first virtual stage, the head on the last), with those ranks in
// ascending order. Each holds the value; their gradients are summed between them.
struct SharedParam {
  std::string name;
  std::vector<int> ranks;
};
// The shared parameters of the split BuildChunks makes (same arguments); under zbv the
// first and last virtual stages are both on rank 0, so wte is not shared across ranks.
absl::StatusOr<std::vector<SharedParam>> SharedParams(const graph::Graph& whole, const PipelineSchedule& schedule,
                                                      const std::vector<int>& layers_per_stage = {});

// A compute action as it ran.
struct TimedAction {
  Action action;
  int64_t start_us = 0, end_us = 0;  // wall clock (system_clock), microseconds
};

// The bubble of one step as measured: 1 − Σ busy / (P · (latest end − earliest start))
// over every pipeline rank's timed compute actions (`ranks[r]` = rank r's), the
// fraction of the P ranks' time spent idle. 0 when nothing ran.
double MeasuredBubble(const std::vector<std::vector<TimedAction>>& ranks);

// Every pipeline rank's timed compute actions of one step on every rank of `pipe` (rank
// `rank` contributes `mine`, its list's compute actions in order; the actions themselves
// come from the schedule, only the times travel). Collective over `pipe`.
absl::StatusOr<std::vector<std::vector<TimedAction>>> GatherTimelines(const PipelineSchedule& schedule, int rank,
                                                                      const std::vector<TimedAction>& mine,
                                                                      Communicator* pipe);

class Runner {
 public:
  // Prepares a new executor (slot): binds its process groups, fixed inputs (positions,
  // the loss seed). Called for every slot when it is created.
  using SetupFn = std::function<absl::Status(int chunk, graph::Executor& ex)>;
  // Fills the data inputs of micro-batch `m` into a slot of `chunk` (the first virtual
  // stage's ids, the last's targets: whatever its graph reads).
  using FeedFn = std::function<void(int chunk, int m, graph::Executor& ex)>;
  // After the forward of micro-batch `m` on the last virtual stage (its loss is ready).
  using LossFn = std::function<void(int m, graph::Executor& ex)>;

  // `chunks` of this rank (schedule.ranks[rank]'s), `store` their shared parameters;
  // `pipe` the pipeline group (rank = pipeline rank; null when there is one stage).
  static absl::StatusOr<std::unique_ptr<Runner>> Create(const PipelineSchedule& schedule, int rank,
                                                        std::vector<Chunk> chunks, memory::ParamStore* store,
                                                        Communicator* pipe, SetupFn setup);

  // One optimizer step's forward and backward of every micro-batch: zeroes the store's
  // gradients, runs the rank's list, waits for every send. After it the store holds
  // this stage's parameter gradients summed over the micro-batches.
  absl::Status Step(const FeedFn& feed, const LossFn& on_loss);
  // The forward of one micro-batch through every chunk of this rank, in virtual-stage
  // order, blocking (validation). The last virtual stage's loss goes to `on_loss`
  // (m = 0).
  absl::Status Forward(const FeedFn& feed, const LossFn& on_loss);

  // Sums the gradients of `shared` (those this rank holds) in the store between the
  // pipeline ranks holding them, in rank order, so every holder gets the same bits.
  // Call after Step, before any data-parallel reduction (whose shards differ per stage).
  absl::Status SumSharedGrads(const std::vector<SharedParam>& shared);

  int num_chunks() const { return static_cast<int>(chunks_.size()); }
  // Executors created so far for `chunk` (its peak in-flight micro-batches).
  int slots(int chunk) const { return static_cast<int>(slots_[chunk].size()); }
  // Arena bytes of every slot of every chunk (the activation memory the schedule holds).
  int64_t arena_bytes() const;
  const std::vector<TimedAction>& last_timeline() const { return timeline_; }

 private:
  struct Slot {
    std::unique_ptr<graph::Executor> ex;
    int microbatch = -1;  // held by, or -1 when free
    std::vector<std::unique_ptr<Work>> sends;  // posted from its buffers
    // Receives posted into its buffers, waited for by the action that reads them.
    std::vector<std::unique_ptr<Work>> activation_recvs, grad_recvs;
  };
  Runner() = default;
  absl::StatusOr<Slot*> Acquire(int chunk, int m);
  Slot* Held(int chunk, int m);
  void Release(int chunk, int m);
  absl::Status PostRecv(const Action& a);
  absl::Status Run(const Action& a, const FeedFn& feed, const LossFn& on_loss);
  absl::Status PostSend(const Action& a);
  int Tag(int direction, int boundary, int m, int j) const;
  // Waits for every work; the first failure is named by `what()` (built only then).
  absl::Status WaitAll(std::vector<std::unique_ptr<Work>>& works, const std::function<std::string()>& what);

  PipelineSchedule schedule_;
  int rank_ = 0;
  std::vector<Chunk> chunks_;
  std::vector<graph::Schedule> orders_;  // per chunk: the node order every slot runs
  memory::ParamStore* store_ = nullptr;
  Communicator* pipe_ = nullptr;
  SetupFn setup_;
  std::vector<std::vector<std::unique_ptr<Slot>>> slots_;  // per chunk
  std::vector<TimedAction> timeline_;
};

}  // namespace colossal::parallel::pipeline
