// Placement rules as plain functions over node capacities: whether a job can ever fit,
// which nodes it gets now, its MASTER_PORT and threads per rank. No state, no locks;
// the scheduler (scheduler.h) feeds them its live nodes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace colossal::coordinator {

// A live, registered node as placement sees it.
struct NodeCapacity {
  std::string id;
  int slots = 0;       // ranks it runs at once
  int free_slots = 0;  // slots minus ranks of unfinished attempts placed on it
};

// OK when `nodes` nodes of `live` have at least `ranks_per_node` slots each (all slots
// free), and when `live` is empty (the job waits for daemons); RESOURCE_EXHAUSTED
// naming the numbers otherwise: the job can never run on these nodes.
absl::Status CheckCanFit(int64_t nodes, int64_t ranks_per_node,
                         const std::vector<NodeCapacity>& live);

// The nodes a job gets now: indexes into `live` of the first `nodes` nodes, in the
// order given (callers sort by node id, so placement is deterministic), with at least
// `ranks_per_node` free slots. Empty when fewer than `nodes` qualify.
std::vector<size_t> PickNodes(int64_t nodes, int64_t ranks_per_node,
                              const std::vector<NodeCapacity>& live);

// Why a job waits: "needs 2 nodes with 4 free slots; 1 of 3 live nodes has them".
std::string WaitReason(int64_t nodes, int64_t ranks_per_node,
                       const std::vector<NodeCapacity>& live);

// MASTER_PORT of an attempt: kMasterPortBase + ((seq - 1) * 16 + attempt - 1) mod
// kMasterPortSpan, i.e. in [30000, 32047], below Linux's ephemeral range (32768+).
// Attempts of one job get distinct ports (a restarted rank 0 never waits for its
// predecessor's socket to leave TIME_WAIT); 128 consecutive jobs get distinct ranges.
inline constexpr int kMasterPortBase = 30000;
inline constexpr int kMasterPortSpan = 2048;
int MasterPort(int64_t job_seq, int attempt);

// Compute threads of one rank: `threads_per_rank` when set (> 0), else the node's
// cores shared by the job's ranks on it, at least 1.
int ThreadsPerRank(int64_t threads_per_rank, int cpu_cores, int64_t ranks_on_node);

}  // namespace colossal::coordinator
