// LogStore: positional (idempotent) writes, attempt/rank ordering, reads, tails, and
// the change counter followers wait on.
#include "runtime/coordinator/log_store.h"

#include <catch2/catch.hpp>
#include <thread>

#include "runtime/coordinator/test_cluster.h"

namespace colossal::coordinator {
namespace {

v1::LogChunk Chunk(int attempt, int rank, int64_t offset, const std::string& data) {
  v1::LogChunk c;
  c.set_job_id("j-000001");
  c.set_attempt(attempt);
  c.set_rank(rank);
  c.set_offset(offset);
  c.set_data(data);
  return c;
}

TEST_CASE("chunks written at their offsets; resent chunks change nothing") {
  LogStore logs(testing::FreshDir("logs_write"));
  REQUIRE(logs.Write(Chunk(1, 0, 0, "abc")).ok());
  REQUIRE(logs.Write(Chunk(1, 0, 3, "def\n")).ok());
  REQUIRE(logs.Write(Chunk(1, 0, 0, "abc")).ok());
  REQUIRE(logs.Write(Chunk(1, 0, 3, "def\n")).ok());
  std::vector<LogStore::File> files = logs.List("j-000001", 0);
  REQUIRE(files.size() == 1);
  CHECK(files[0].size == 7);
  CHECK(logs.Read(files[0].path, 0, 100).value() == "abcdef\n");
  CHECK(logs.Read(files[0].path, 2, 3).value() == "cde");
  CHECK(logs.Read(files[0].path, 7, 10).value().empty());
  CHECK(absl::IsInvalidArgument(logs.Write(Chunk(1, 0, -1, "x"))));
}

TEST_CASE("files list by attempt, then rank, numerically; tails") {
  LogStore logs(testing::FreshDir("logs_list"));
  for (auto [attempt, rank] : {std::pair{10, 0}, {2, 1}, {2, 0}, {1, 11}, {1, 2}}) {
    REQUIRE(logs.Write(Chunk(attempt, rank, 0, "line\n")).ok());
  }
  std::vector<std::pair<int, int>> order;
  for (const LogStore::File& f : logs.List("j-000001", -1)) order.emplace_back(f.attempt, f.rank);
  CHECK(order == std::vector<std::pair<int, int>>{{1, 2}, {1, 11}, {2, 0}, {2, 1}, {10, 0}});
  CHECK(logs.List("j-000001", 0).size() == 2);
  CHECK(logs.List("j-000002", -1).empty());

  REQUIRE(logs.Write(Chunk(3, 0, 0, "first\nsecond\nthird\n")).ok());
  CHECK(logs.Tail("j-000001", 3, 0, 6) == "third\n");
  CHECK(logs.Tail("j-000001", 3, 0, 1000) == "first\nsecond\nthird\n");
  CHECK(logs.Tail("j-000001", 9, 0, 1000).empty());
}

TEST_CASE("followers wake on writes, on a timeout, and at shutdown") {
  LogStore logs(testing::FreshDir("logs_wait"));
  const uint64_t g0 = logs.generation();
  const auto begin = std::chrono::steady_clock::now();
  CHECK(logs.WaitForWrite(g0, std::chrono::milliseconds(50)) == g0);
  CHECK(std::chrono::steady_clock::now() - begin >= std::chrono::milliseconds(50));
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(logs.Write(Chunk(1, 0, 0, "x")).ok());
  });
  CHECK(logs.WaitForWrite(g0, std::chrono::seconds(10)) != g0);
  writer.join();
  const uint64_t g1 = logs.generation();
  logs.Shutdown();
  const auto before = std::chrono::steady_clock::now();
  CHECK(logs.WaitForWrite(g1, std::chrono::seconds(10)) == g1);
  CHECK(std::chrono::steady_clock::now() - before < std::chrono::seconds(5));
}

}  // namespace
}  // namespace colossal::coordinator
