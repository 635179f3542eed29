// Memory per rank under each ZeRO stage, on GPT-2-shaped parameters: optimizer-visible
// segments (hence optimizer state) fall as 1/N from stage 1, reduced gradients from
// stage 2, parameters from stage 3; pieces of all ranks tile every parameter exactly
// once. (Numerical equivalence with one rank is tests/data_parallel_test.)
#include <catch2/catch.hpp>

#include <thread>

#include "graph/autodiff.h"
#include "graph/executor.h"
#include "graph/models/gpt.h"
#include "parallel/comm/local/local_communicator.h"
#include "parallel/data_parallel/data_parallel.h"

namespace colossal::parallel {
namespace {

TEST_CASE("bytes per rank fall as 1/N with the ZeRO stage, and the pieces tile the model") {
  auto g = graph::BuildGpt({4, 4, 64, 32, 300}, 1);
  REQUIRE(g.ok());
  REQUIRE(graph::BuildBackward(*g).ok());
  const std::vector<memory::ParamStore::Spec> specs = graph::ParamSpecs(*g);
  const int64_t flat = memory::ParamStore::FlatNumel(specs);
  int64_t num_params = 0;
  for (const auto& s : specs) num_params += graph::NumElements(s.shape);

  for (int n : {1, 2, 4}) {
    for (int stage : {0, 1, 2, 3}) {
      DataParallelOptions options{stage, 16 << 10};
      auto group = LocalGroup::Create(n);
      std::vector<int64_t> seg_elems(n), param_bytes(n), grad_bytes(n);
      std::vector<std::vector<int64_t>> covered(n);  // per rank: elements per parameter
      std::vector<std::thread> threads;
      for (int r = 0; r < n; ++r) {
        threads.emplace_back([&, r] {
          auto comm = group->Member(r);
          memory::ParamStore store(specs, stage == 3 ? flat : DataParallel::PaddedNumel(flat, n, options),
                                   /*allocate=*/stage != 3);
          auto dp = DataParallel::Create(comm.get(), *g, &store, options);
          REQUIRE(dp.ok());
          covered[r].assign(specs.size(), 0);
          for (const memory::ParamSegment& s : (*dp)->OptimizerSegments()) {
            seg_elems[r] += s.length;
            covered[r][s.param] += s.length;
          }
          param_bytes[r] = (*dp)->param_bytes();
          grad_bytes[r] = (*dp)->grad_bytes();
        });
      }
      for (auto& t : threads) t.join();
      INFO("ranks " << n << " stage " << stage);
      for (size_t p = 0; p < specs.size(); ++p) {
        int64_t total = 0;
        for (int r = 0; r < n; ++r) total += covered[r][p];
        REQUIRE(total == (stage == 0 ? n : 1) * graph::NumElements(specs[p].shape));
      }
      for (int r = 0; r < n; ++r) {
        // Padding to whole buckets/groups costs at most a few percent here.
        const double share = stage == 0 ? 1.0 : 1.0 / n;
        REQUIRE(seg_elems[r] >= share * num_params * 0.9);
        REQUIRE(seg_elems[r] <= share * num_params * 1.1 + 1);
        const double param_share = stage == 3 ? 1.0 / n : 1.0;
        REQUIRE(param_bytes[r] <= param_share * flat * 4 * 1.15 + 64 * n);
        REQUIRE(param_bytes[r] >= param_share * num_params * 4 * 0.95);
        const double grad_share = stage >= 2 ? 1.0 / n : 1.0;
        REQUIRE(grad_bytes[r] <= grad_share * flat * 4 * 1.15 + 64 * n);
      }
    }
  }
}

}  // namespace
}  // namespace colossal::parallel
