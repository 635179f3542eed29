// RendezvousTable: a barrier over threads, blob replacement, deadlines, cancellation,
// superseded attempts, closed jobs and shutdown.
#include "runtime/coordinator/rendezvous.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

namespace colossal::coordinator {
namespace {

using Clock = std::chrono::system_clock;

auto In(int ms) { return Clock::now() + std::chrono::milliseconds(ms); }
bool Never() { return false; }

TEST_CASE("three ranks joining from threads all get every blob, by rank") {
  RendezvousTable table;
  table.Open("j", 1);
  std::vector<absl::StatusOr<std::vector<std::string>>> results(3, absl::UnknownError(""));
  std::vector<std::thread> threads;
  for (int r : {2, 0, 1}) {
    threads.emplace_back([&, r] {
      results[r] = table.Join("j", 1, r, 3, "ep" + std::to_string(r), In(10000), Never);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    REQUIRE(results[r].ok());
    CHECK(*results[r] == std::vector<std::string>{"ep0", "ep1", "ep2"});
  }
  // The group is complete: a rank joining again replaces its blob and returns at once.
  CHECK(table.Join("j", 1, 1, 3, "new", In(10000), Never).value() ==
        std::vector<std::string>{"ep0", "new", "ep2"});
  CHECK(absl::IsInvalidArgument(table.Join("j", 1, 0, 4, "x", In(100), Never).status()));
  CHECK(absl::IsInvalidArgument(table.Join("j", 1, 3, 3, "x", In(100), Never).status()));
}

TEST_CASE("a join that runs into its deadline or is cancelled leaves no blob behind") {
  RendezvousTable table;
  const auto begin = Clock::now();
  absl::StatusOr<std::vector<std::string>> late = table.Join("j", 1, 0, 2, "stale", In(150), Never);
  CHECK(absl::IsDeadlineExceeded(late.status()));
  CHECK(Clock::now() - begin >= std::chrono::milliseconds(150));
  CHECK(std::string(late.status().message()) ==
        "rendezvous of j attempt 1: 1 of 2 ranks joined; missing ranks 1 by the deadline");
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cancel = true;
  });
  CHECK(absl::IsCancelled(
      table.Join("j", 1, 1, 2, "gone", In(10000), [&] { return cancel.load(); }).status()));
  canceller.join();
  // Neither blob remains: rank 1 alone is still waiting for rank 0.
  CHECK(absl::IsDeadlineExceeded(table.Join("j", 1, 1, 2, "x", In(100), Never).status()));
}

TEST_CASE("superseded attempts, closed jobs and shutdown end waits") {
  RendezvousTable table;
  table.Open("j", 1);
  absl::Status waiting;
  std::thread waiter([&] { waiting = table.Join("j", 1, 0, 2, "x", In(10000), Never).status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  table.Open("j", 2);
  waiter.join();
  CHECK(absl::IsAborted(waiting));
  CHECK(absl::IsAborted(table.Join("j", 1, 1, 2, "x", In(1000), Never).status()));

  std::thread waiter2([&] { waiting = table.Join("j", 2, 0, 2, "x", In(10000), Never).status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  table.Close("j");
  waiter2.join();
  CHECK(absl::IsAborted(waiting));
  CHECK(absl::IsAborted(table.Join("j", 3, 0, 2, "x", In(1000), Never).status()));

  std::thread waiter3([&] { waiting = table.Join("k", 1, 0, 2, "x", In(10000), Never).status(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  table.Shutdown();
  waiter3.join();
  CHECK(absl::IsUnavailable(waiting));
}

}  // namespace
}  // namespace colossal::coordinator
