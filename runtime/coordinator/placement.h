// Placement rules as plain functions over node capacities: whether a job can ever fit,
// which nodes it gets now (and, for resources.device: cuda, which GPU each rank gets),
// its MASTER_PORT and threads per rank. No state, no locks; the scheduler (scheduler.h)
// feeds them its live nodes.
//
// A cuda job runs one rank per GPU: a node takes ranks_per_node of its ranks when it has
// that many free slots and that many free GPUs (the CUDA devices its daemon reported, less
// those held by ranks of unfinished cuda attempts). GPUs are handed out lowest ordinal
// first, so a node's ranks get consecutive devices when the node is idle.
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
  std::vector<int> gpus;       // the CUDA ordinals the daemon reported, ascending
  std::vector<int> free_gpus;  // those not held by a rank of an unfinished cuda attempt
};

// The CUDA ordinals in a node's device list ("cuda:3 NVIDIA H100 ..." -> 3; other kinds
// skipped), ascending. (A rank's device text is base::CudaDeviceName.)
std::vector<int> CudaOrdinals(const std::vector<std::string>& devices);

// OK when `nodes` nodes of `live` have at least `ranks_per_node` slots each (all slots
// free) and, with `cuda`, that many GPUs each; and when `live` is empty (the job waits
// for daemons); RESOURCE_EXHAUSTED naming the numbers otherwise: the job can never run
// on these nodes.
absl::Status CheckCanFit(int64_t nodes, int64_t ranks_per_node,
                         const std::vector<NodeCapacity>& live, bool cuda = false);

// The nodes a job gets now: indexes into `live` of the first `nodes` nodes, in the
// order given (callers sort by node id, so placement is deterministic), with at least
// `ranks_per_node` free slots (and, with `cuda`, free GPUs). Empty when fewer than
// `nodes` qualify. A chosen node's ranks take the first ranks_per_node of its free_gpus.
std::vector<size_t> PickNodes(int64_t nodes, int64_t ranks_per_node,
                              const std::vector<NodeCapacity>& live, bool cuda = false);

// Why a job waits: "needs 2 nodes with 4 free slots; 1 of 3 live nodes has them" (or
// "4 free slots and 4 free GPUs").
std::string WaitReason(int64_t nodes, int64_t ranks_per_node,
                       const std::vector<NodeCapacity>& live, bool cuda = false);

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
