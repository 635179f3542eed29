// Every kernel's dispatch table has its specification (the reference twin) and a CPU
// twin for each dtype it serves (fp32; bf16 and fp16 for the casts), so the per-op tests that loop over Twins() compare something real; and
// every table is run through the kernel harness (TwinCase::Run) by some kernel test, so a
// twin registered later (CUDA) is tested against the reference with no test edits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "kernels/common/dispatch.h"
#include "kernels/embedding/embedding.h"
#include "kernels/testing/twins.h"

namespace colossal::kernels {
namespace {

TEST_CASE("every dispatch table has a reference and a CPU twin for each of its dtypes") {
  const std::vector<DispatchInfo> tables = ListDispatchTables();
  REQUIRE(tables.size() >= 10);
  for (const DispatchInfo& t : tables) {
    INFO(t.name);
    bool any = false;
    for (int d = 0; d < 4; ++d) {
      bool registered = false;
      for (int b = 0; b < kNumBackends; ++b) registered = registered || t.registered[b][d];
      if (!registered) continue;
      any = true;
      INFO(DTypeName(static_cast<DType>(d)));
      CHECK(t.registered[static_cast<int>(Backend::kRef)][d]);
      CHECK(t.registered[static_cast<int>(Backend::kCpu)][d]);
    }
    CHECK(any);
  }
  CHECK(testing::Twins(EmbeddingForwardTable()) == std::vector<Backend>{Backend::kRef, Backend::kCpu});
}

// Lower case without underscores: "adamw_step" and AdamWStepTable() -> "adamwstep".
std::string Key(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

TEST_CASE("every dispatch table is run through the kernel harness by a kernel test") {
  // The kernel tests, as this test's data (BUILD.bazel); a new kernel family adds its
  // test there, and a table no test runs through TwinCase::Run fails here by name.
  const std::vector<std::string> tests = {
      "kernels/attention/attention_test.cc", "kernels/attention/block_attention_test.cc",
      "kernels/attention/kv_cache_test.cc", "kernels/convert/convert_test.cc",
      "kernels/elementwise/elementwise_test.cc", "kernels/elementwise/mean_test.cc",
      "kernels/embedding/embedding_test.cc", "kernels/gelu/gelu_test.cc",
      "kernels/layer_norm/layer_norm_test.cc", "kernels/matmul/matmul_test.cc",
      "kernels/optim/adamw_test.cc", "kernels/optim/grad_norm_test.cc",
      "kernels/optim/lamb_test.cc", "kernels/optim/lars_test.cc",
      "kernels/optim/sgd_test.cc", "kernels/softmax_xent/softmax_xent_test.cc",
  };
  std::set<std::string> harnessed;
  const std::regex run(R"(\.Run\(\s*(\w+)Table\(\))");
  for (const std::string& path : tests) {
    std::ifstream in(path);
    INFO(path);
    REQUIRE(in.good());
    std::stringstream text;
    text << in.rdbuf();
    const std::string body = text.str();
    for (std::sregex_iterator it(body.begin(), body.end(), run), end; it != end; ++it) {
      harnessed.insert(Key((*it)[1].str()));
    }
  }
  const std::vector<DispatchInfo> tables = ListDispatchTables();
  REQUIRE(tables.size() >= 24);
  for (const DispatchInfo& t : tables) {
    INFO("dispatch table " << t.name << " is run through TwinCase by no kernel test");
    CHECK(harnessed.count(Key(t.name)) == 1);
  }
}

}  // namespace
}  // namespace colossal::kernels
