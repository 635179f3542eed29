// Execution order as data: the nodes one training step runs, in order, each with its
// phase, kept apart from node ids. The memory plan computes lifetimes over a schedule and
// the executor runs it; node ids only name nodes. Today's order (every forward node by
// id, then every backward node by id) is DefaultSchedule; recompute, pipeline and
// zero-bubble orders are other schedules over the same graph. Does not own what a node
// computes (op_registry.h) or where its bytes live (memory_plan.h).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "graph/ir.h"

namespace colossal::graph {

enum class Phase : uint8_t {
  kForward,         // a forward node
  kBackwardInput,   // backward node producing activation gradients (the B of zero-bubble)
  kBackwardWeight,  // backward node whose outputs are all parameter gradients (the W)
  kRecompute,       // a forward node run again before its block's backward
  kComm,            // a communication node
  kCommWait,        // the completion of an asynchronous communication node started earlier
};
std::string_view PhaseName(Phase phase);

struct ScheduleEntry {
  int node = -1;
  Phase phase = Phase::kForward;
};

// An asynchronous communication node has two entries: its start (the node's own
// entry, which posts the collective, OpDef::start) and a later kCommWait entry of the
// same node where it completes; between them its inputs and outputs belong to it, and
// the entries in between run while the bytes move.
struct Schedule {
  std::vector<ScheduleEntry> entries;
  // entries[0, num_forward) are the forward pass (run by Executor::Forward, also alone
  // for validation); the rest the backward pass of a micro-batch.
  int num_forward = 0;
  // When >= 0 (SplitBackward): the backward pass is entries[num_forward, num_forward +
  // num_backward_input), the input gradients (zero-bubble B, Executor::BackwardInput),
  // then the rest, weight gradients only (W, Executor::BackwardWeight). -1: one part.
  int num_backward_input = -1;
};

// The phase a node has in any schedule that runs it once: kForward for forward nodes;
// kBackwardWeight for backward nodes that write parameter gradients only; else
// kBackwardInput.
Phase NodePhase(const Graph& graph, int node);

// Forward nodes in id order, then backward nodes in id order, each recompute clone
// (recompute.h) placed right before the first entry that reads what it writes.
Schedule DefaultSchedule(const Graph& graph);

// `schedule` with every asynchronous-capable communication node (OpDef::start, its
// outputs written by it alone and overwritten) posted right after the last entry it
// depends on and waited for right before the first entry that depends on it, when some
// entry can run in between (Megatron's overlap of the input gradient's all-reduce with
// the weight gradient's product). Node order is otherwise kept.
Schedule OverlapCommunication(const Graph& graph, const Schedule& schedule);

// `schedule` with its backward part split for the zero-bubble schedules: every
// backward-weight node that can run after every input-gradient node (no later entry it
// stays before writes what it reads or touches what it writes) moves, in order, into a
// W part at the end; the rest keeps its order as the B part. A graph built with
// BuildBackward(..., defer_weight_grads = true) has every weight-gradient node movable.
// Recompute clones (recompute.h) read only by moving nodes move with them, in order.
Schedule SplitBackward(const Graph& graph, const Schedule& schedule);

// Checks that `schedule` runs every node of `graph` exactly once, that every forward
// node is in the forward part and every backward node after it, and that every value a
// node reads was written earlier in the schedule (inputs and parameters are written
// before a run), and that a node reading or writing a value stays on the same side of
// each other writer of that value as in id order (accumulated gradients are written
// several times), and that an asynchronous node's wait follows its start in the same
// part, the node can start (OpDef::start), and no entry in between touches its outputs or
// writes its inputs. InvalidArgument naming the node otherwise.
absl::Status ValidateSchedule(const Graph& graph, const Schedule& schedule);

}  // namespace colossal::graph
