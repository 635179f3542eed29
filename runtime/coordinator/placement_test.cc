// Placement rules: fit checks with their messages, deterministic node choice, wait
// reasons, master ports, threads per rank; and job ids.
#include "runtime/coordinator/placement.h"

#include <catch2/catch.hpp>
#include <set>

#include "runtime/base/env.h"
#include "runtime/coordinator/scheduler.h"

namespace colossal::coordinator {
namespace {

TEST_CASE("CheckCanFit: OK without nodes, RESOURCE_EXHAUSTED with the numbers") {
  CHECK(CheckCanFit(4, 8, {}).ok());
  const std::vector<NodeCapacity> nodes = {{"a", 4, 0}, {"b", 2, 2}, {"c", 4, 4}};
  CHECK(CheckCanFit(2, 4, nodes).ok());  // all slots count, free or not
  CHECK(CheckCanFit(3, 2, nodes).ok());
  absl::Status too_many = CheckCanFit(4, 1, nodes);
  CHECK(absl::IsResourceExhausted(too_many));
  CHECK(std::string(too_many.message()) ==
        "the job can never fit the registered nodes: it needs 4 x 1 ranks (resources.nodes x "
        "resources.ranks_per_node), and resources.nodes is 4 but 3 daemons are registered (slots "
        "per node: a: 4, b: 2, c: 4)");
  CHECK(std::string(CheckCanFit(1, 5, nodes).message())
            .find("resources.ranks_per_node is 5 but the largest node has 4 slots") !=
        std::string::npos);
  CHECK(std::string(CheckCanFit(3, 4, nodes).message())
            .find("only 2 of the 3 nodes have 4 or more slots") != std::string::npos);
}

TEST_CASE("PickNodes takes the first nodes in order with enough free slots") {
  const std::vector<NodeCapacity> nodes = {{"a", 4, 1}, {"b", 2, 2}, {"c", 4, 4}, {"d", 2, 2}};
  CHECK(PickNodes(2, 2, nodes) == std::vector<size_t>{1, 2});
  CHECK(PickNodes(1, 4, nodes) == std::vector<size_t>{2});
  CHECK(PickNodes(3, 2, nodes) == std::vector<size_t>{1, 2, 3});
  CHECK(PickNodes(4, 2, nodes).empty());
  CHECK(PickNodes(1, 5, nodes).empty());
  CHECK(WaitReason(2, 4, nodes) ==
        "waiting for capacity: needs 2 nodes with 4 free slots; 1 of 4 live nodes have them");
  CHECK(WaitReason(1, 1, {}) == "waiting for a node daemon to register");
}

// A node with `slots` slots (all free) and CUDA ordinals `gpus` (all free).
NodeCapacity GpuNode(std::string id, int slots, std::vector<int> gpus) {
  NodeCapacity n{std::move(id), slots, slots};
  n.gpus = gpus;
  n.free_gpus = gpus;
  return n;
}

TEST_CASE("cuda jobs: one rank per GPU, RESOURCE_EXHAUSTED naming the GPUs") {
  const std::vector<NodeCapacity> none = {GpuNode("a", 8, {}), GpuNode("b", 8, {})};
  absl::Status no_gpu = CheckCanFit(1, 1, none, /*cuda=*/true);
  CHECK(absl::IsResourceExhausted(no_gpu));
  CHECK(std::string(no_gpu.message()) ==
        "the job can never fit the registered nodes: it needs 1 x 1 GPUs (resources.device: cuda, one rank per "
        "GPU), and no registered node reported a CUDA device (2 daemons are registered) (GPUs per node: a: 0, "
        "b: 0; slots per node: a: 8, b: 8)");
  CHECK(CheckCanFit(1, 1, none).ok());  // the same nodes run CPU ranks

  const std::vector<NodeCapacity> nodes = {GpuNode("a", 8, {0, 1}), GpuNode("b", 8, {0, 1, 2, 3}),
                                           GpuNode("c", 2, {0, 1, 2, 3})};
  CHECK(CheckCanFit(1, 4, nodes, true).ok());
  CHECK(CheckCanFit(3, 2, nodes, true).ok());
  CHECK(std::string(CheckCanFit(1, 8, nodes, true).message())
            .find("resources.ranks_per_node is 8 (one rank per GPU) but the node with the most has 4 GPUs") !=
        std::string::npos);
  // c has 4 GPUs but 2 slots: a rank needs both.
  CHECK(std::string(CheckCanFit(2, 4, nodes, true).message())
            .find("only 1 of the 3 nodes have 4 or more GPUs and slots") != std::string::npos);
  CHECK(std::string(CheckCanFit(4, 1, nodes, true).message())
            .find("resources.nodes is 4 but 3 daemons are registered") != std::string::npos);

  // Free GPUs decide now: a's two are held, so 2 x 2 goes to b and c.
  std::vector<NodeCapacity> busy = nodes;
  busy[0].free_gpus.clear();
  CHECK(PickNodes(2, 2, busy, true) == std::vector<size_t>{1, 2});
  CHECK(PickNodes(1, 2, busy) == std::vector<size_t>{0});  // CPU ranks ignore GPUs
  CHECK(PickNodes(3, 2, busy, true).empty());
  CHECK(WaitReason(3, 2, busy, true) ==
        "waiting for capacity: needs 3 nodes with 2 free slots and 2 free GPUs; 2 of 3 live nodes have them");
}

TEST_CASE("cuda ordinals from a node's device list and rank device names") {
  CHECK(CudaOrdinals({"cpu:0 AMD EPYC", "cuda:1 NVIDIA H100 80GB HBM3 (79.1 GiB)", "cuda:0 NVIDIA H100",
                      "cpu:1 AMD EPYC", "cudax:2", "cuda:", "cuda:-1"}) == std::vector<int>{0, 1});
  CHECK(base::CudaDeviceName(3) == "cuda:3");
  CHECK(base::CudaOrdinalOf("cuda:3") == 3);
  CHECK(base::CudaOrdinalOf("cuda:3 NVIDIA") == -1);
  CHECK(base::CudaOrdinalOf("cuda:-1") == -1);
  CHECK(base::CudaOrdinalOf("cuda:") == -1);
  CHECK(base::CudaOrdinalOf("cpu") == -1);
  CHECK(base::CudaOrdinalOf("") == -1);
}

TEST_CASE("master ports are fixed per (job, attempt), distinct across attempts, in range") {
  CHECK(MasterPort(1, 1) == 30000);
  CHECK(MasterPort(1, 2) == 30001);
  CHECK(MasterPort(2, 1) == 30016);
  std::set<int> ports;
  for (int64_t job = 1; job <= 1000; ++job) {
    for (int attempt = 1; attempt <= 4; ++attempt) {
      const int port = MasterPort(job, attempt);
      CHECK((port >= 30000 && port < 30000 + 2048));
      ports.insert(port);
    }
  }
  CHECK(ports.size() == 2048 / 16 * 4);  // the range is used evenly
  for (int attempt = 1; attempt <= 16; ++attempt)
    CHECK(MasterPort(7, attempt) == 30096 + attempt - 1);
}

TEST_CASE("threads per rank: the spec's value, else cores shared by the node's ranks") {
  CHECK(ThreadsPerRank(3, 64, 8) == 3);
  CHECK(ThreadsPerRank(0, 64, 8) == 8);
  CHECK(ThreadsPerRank(0, 6, 4) == 1);
  CHECK(ThreadsPerRank(0, 2, 4) == 1);
  CHECK(ThreadsPerRank(0, 0, 1) == 1);  // cores unknown
}

TEST_CASE("job ids: j-%06d, and only those parse back") {
  CHECK(JobId(1) == "j-000001");
  CHECK(JobId(1234567) == "j-1234567");
  CHECK(JobSeq("j-000042") == 42);
  CHECK(JobSeq("j-1234567") == 1234567);
  for (const char* bad :
       {"", "j-", "j-42", "j-0000042", "j--00001", "x-000001", "j-00000a", "../j-000001"}) {
    INFO(bad);
    CHECK(JobSeq(bad) == -1);
  }
}

}  // namespace
}  // namespace colossal::coordinator
