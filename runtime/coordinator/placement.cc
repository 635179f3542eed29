// Fit checks, node choice, master ports and thread counts.
#include "runtime/coordinator/placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "runtime/base/env.h"

namespace colossal::coordinator {
namespace {

std::string Plural(int64_t n, const char* one, const char* many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

// "n-1: 2, n-2: 4" for the first few nodes.
std::string SlotList(const std::vector<NodeCapacity>& live) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < live.size() && i < kShown; ++i) {
    absl::StrAppend(&out, i ? ", " : "", live[i].id, ": ", live[i].slots);
  }
  if (live.size() > kShown) absl::StrAppend(&out, ", ...");
  return out;
}

// "n-1: 8, n-2: 0" GPUs per node, for the first few nodes.
std::string GpuList(const std::vector<NodeCapacity>& live) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < live.size() && i < kShown; ++i) {
    absl::StrAppend(&out, i ? ", " : "", live[i].id, ": ", live[i].gpus.size());
  }
  if (live.size() > kShown) absl::StrAppend(&out, ", ...");
  return out;
}

absl::Status CheckCudaCanFit(int64_t nodes, int64_t ranks_per_node, const std::vector<NodeCapacity>& live) {
  auto fits = [&](const NodeCapacity& n) {
    return n.slots >= ranks_per_node && static_cast<int64_t>(n.gpus.size()) >= ranks_per_node;
  };
  const int64_t big_enough = std::count_if(live.begin(), live.end(), fits);
  if (big_enough >= nodes) return absl::OkStatus();
  int64_t most_gpus = 0;
  for (const NodeCapacity& n : live) most_gpus = std::max<int64_t>(most_gpus, n.gpus.size());
  std::string why;
  if (most_gpus == 0) {
    why = absl::StrCat("no registered node reported a CUDA device (",
                       Plural(live.size(), "daemon is", "daemons are"), " registered)");
  } else if (static_cast<int64_t>(live.size()) < nodes) {
    why = absl::StrCat("resources.nodes is ", nodes, " but ", Plural(live.size(), "daemon is", "daemons are"),
                       " registered");
  } else if (ranks_per_node > most_gpus) {
    why = absl::StrCat("resources.ranks_per_node is ", ranks_per_node, " (one rank per GPU) but the node with the "
                       "most has ", Plural(most_gpus, "GPU", "GPUs"));
  } else {
    why = absl::StrCat("only ", big_enough, " of the ", live.size(), " nodes have ", ranks_per_node,
                       " or more GPUs and slots");
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("the job can never fit the registered nodes: it needs ", nodes, " x ", ranks_per_node,
                   " GPUs (resources.device: cuda, one rank per GPU), and ", why, " (GPUs per node: ", GpuList(live),
                   "; slots per node: ", SlotList(live), ")"));
}

}  // namespace

std::vector<int> CudaOrdinals(const std::vector<std::string>& devices) {
  std::vector<int> out;
  for (const std::string& d : devices) {
    const int ordinal = base::CudaOrdinalOf(d.substr(0, d.find(' ')));
    if (ordinal >= 0) out.push_back(ordinal);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}


absl::Status CheckCanFit(int64_t nodes, int64_t ranks_per_node,
                         const std::vector<NodeCapacity>& live, bool cuda) {
  if (live.empty()) return absl::OkStatus();
  if (cuda) return CheckCudaCanFit(nodes, ranks_per_node, live);
  const int64_t big_enough = std::count_if(
      live.begin(), live.end(), [&](const NodeCapacity& n) { return n.slots >= ranks_per_node; });
  if (big_enough >= nodes) return absl::OkStatus();
  int largest = 0;
  for (const NodeCapacity& n : live) largest = std::max(largest, n.slots);
  std::string why;
  if (static_cast<int64_t>(live.size()) < nodes) {
    why = absl::StrCat("resources.nodes is ", nodes, " but ",
                       Plural(live.size(), "daemon is", "daemons are"), " registered");
  } else if (ranks_per_node > largest) {
    why = absl::StrCat("resources.ranks_per_node is ", ranks_per_node, " but the largest node has ",
                       Plural(largest, "slot", "slots"));
  } else {
    why = absl::StrCat("only ", big_enough, " of the ", live.size(), " nodes have ", ranks_per_node,
                       " or more slots");
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("the job can never fit the registered nodes: it needs ", nodes, " x ",
                   ranks_per_node, " ranks (resources.nodes x resources.ranks_per_node), and ", why,
                   " (slots per node: ", SlotList(live), ")"));
}

std::vector<size_t> PickNodes(int64_t nodes, int64_t ranks_per_node,
                              const std::vector<NodeCapacity>& live, bool cuda) {
  std::vector<size_t> chosen;
  for (size_t i = 0; i < live.size() && static_cast<int64_t>(chosen.size()) < nodes; ++i) {
    if (live[i].free_slots >= ranks_per_node &&
        (!cuda || static_cast<int64_t>(live[i].free_gpus.size()) >= ranks_per_node)) {
      chosen.push_back(i);
    }
  }
  if (static_cast<int64_t>(chosen.size()) < nodes) chosen.clear();
  return chosen;
}

std::string WaitReason(int64_t nodes, int64_t ranks_per_node,
                       const std::vector<NodeCapacity>& live, bool cuda) {
  if (live.empty()) return "waiting for a node daemon to register";
  const int64_t ready = std::count_if(live.begin(), live.end(), [&](const NodeCapacity& n) {
    return n.free_slots >= ranks_per_node && (!cuda || static_cast<int64_t>(n.free_gpus.size()) >= ranks_per_node);
  });
  return absl::StrCat("waiting for capacity: needs ", Plural(nodes, "node", "nodes"), " with ",
                      Plural(ranks_per_node, "free slot", "free slots"),
                      cuda ? absl::StrCat(" and ", Plural(ranks_per_node, "free GPU", "free GPUs")) : "", "; ", ready,
                      " of ",
                      Plural(live.size(), "live node has", "live nodes have"), " them");
}

int MasterPort(int64_t job_seq, int attempt) {
  const int64_t index = ((job_seq - 1) * 16 + (attempt - 1)) % kMasterPortSpan;
  return kMasterPortBase + static_cast<int>(index < 0 ? index + kMasterPortSpan : index);
}

int ThreadsPerRank(int64_t threads_per_rank, int cpu_cores, int64_t ranks_on_node) {
  if (threads_per_rank > 0) return static_cast<int>(threads_per_rank);
  if (ranks_on_node <= 0) return std::max(1, cpu_cores);
  return std::max<int>(1, static_cast<int>(cpu_cores / ranks_on_node));
}

}  // namespace colossal::coordinator
