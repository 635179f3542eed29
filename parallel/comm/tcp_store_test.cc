// TcpStore: AllGather rounds among threads on loopback, and the errors of a missing
// rank, an absent rank 0, a mismatched world size and a malformed environment.
#include "parallel/comm/tcp_store.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace colossal::parallel {
namespace {

using std::chrono::milliseconds;

std::string Blob(int rank, int round) {
  // Sizes differ by rank (an empty one included) and one is larger than a socket buffer.
  size_t bytes = rank == 1 ? 0 : rank == 2 ? (1u << 20) + 3 : 17 * rank + round;
  std::string blob(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) blob[i] = static_cast<char>(rank * 31 + round * 7 + i);
  return blob;
}

TEST_CASE("TcpStore gathers every rank's blob, by rank, over several rounds") {
  const int size = 4;
  auto root = TcpStore::Create({"127.0.0.1", 0, 0, size, milliseconds(10000)});
  REQUIRE(root.ok());
  const int port = (*root)->port();
  REQUIRE(port > 0);
  std::vector<std::future<std::string>> ranks;
  for (int r = 0; r < size; ++r) {
    ranks.push_back(std::async(std::launch::async, [&, r]() -> std::string {
      std::unique_ptr<TcpStore> own;
      TcpStore* store = root->get();
      if (r != 0) {
        auto created = TcpStore::Create({"127.0.0.1", port, r, size, milliseconds(10000)});
        if (!created.ok()) return std::string(created.status().message());
        own = std::move(*created);
        store = own.get();
      }
      for (int round = 0; round < 3; ++round) {
        auto blobs = store->AllGather(Blob(r, round));
        if (!blobs.ok()) return std::string(blobs.status().message());
        if (blobs->size() != size) return "wrong number of blobs";
        for (int q = 0; q < size; ++q) {
          if ((*blobs)[q] != Blob(q, round)) {
            return "rank " + std::to_string(r) + " got a wrong blob of rank " + std::to_string(q);
          }
        }
      }
      return "";
    }));
  }
  for (auto& f : ranks) CHECK(f.get() == "");
}

TEST_CASE("TcpStore with a missing rank times out naming it") {
  const int size = 3;
  auto root = TcpStore::Create({"127.0.0.1", 0, 0, size, milliseconds(700)});
  REQUIRE(root.ok());
  const int port = (*root)->port();
  auto rank1 = std::async(std::launch::async, [&] {
    auto store = TcpStore::Create({"127.0.0.1", port, 1, size, milliseconds(700)});
    if (!store.ok()) return store.status();
    return (*store)->AllGather("one").status();
  });
  auto start = std::chrono::steady_clock::now();
  auto blobs = (*root)->AllGather("zero");
  auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(blobs.ok());
  CHECK(blobs.status().code() == absl::StatusCode::kDeadlineExceeded);
  const std::string message(blobs.status().message());
  INFO(message);
  CHECK(message.find("rank(s) 2 of 3 did not connect") != std::string::npos);
  CHECK(message.find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(elapsed < milliseconds(3000));
  // Rank 1 sees rank 0 give up (its connection closes) or its own deadline.
  CHECK_FALSE(rank1.get().ok());
}

TEST_CASE("TcpStore rank > 0 without a rank 0 fails to connect within its timeout") {
  // A port nobody listens on: bind one, read its number, close it.
  auto probe = TcpStore::Create({"127.0.0.1", 0, 0, 2, milliseconds(100)});
  REQUIRE(probe.ok());
  const int port = (*probe)->port();
  probe->reset();
  auto start = std::chrono::steady_clock::now();
  auto store = TcpStore::Create({"127.0.0.1", port, 1, 2, milliseconds(400)});
  auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == absl::StatusCode::kDeadlineExceeded);
  const std::string message(store.status().message());
  INFO(message);
  CHECK(message.find("rank 1 could not connect to rank 0 at 127.0.0.1:" +
                     std::to_string(port)) != std::string::npos);
  CHECK(elapsed >= milliseconds(300));
  CHECK(elapsed < milliseconds(2000));
}

TEST_CASE("TcpStore rejects a peer with another world size") {
  auto root = TcpStore::Create({"127.0.0.1", 0, 0, 2, milliseconds(2000)});
  REQUIRE(root.ok());
  const int port = (*root)->port();
  auto peer = std::async(std::launch::async, [&] {
    auto store = TcpStore::Create({"127.0.0.1", port, 1, 3, milliseconds(2000)});
    if (store.ok()) (void)(*store)->AllGather("x");
  });
  auto blobs = (*root)->AllGather("zero");
  peer.get();
  REQUIRE_FALSE(blobs.ok());
  const std::string message(blobs.status().message());
  INFO(message);
  CHECK(message.find("rank 1 of 3, but rank 0 has WORLD_SIZE=2") != std::string::npos);
}

TEST_CASE("TcpStore::FromEnv reads the torchrun variables and names a bad one") {
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", "0", 1);
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "1", 1);
  auto single = TcpStore::FromEnv(milliseconds(1000));
  REQUIRE(single.ok());
  auto blobs = (*single)->AllGather("only");
  REQUIRE(blobs.ok());
  CHECK(*blobs == std::vector<std::string>{"only"});

  setenv("RANK", "one", 1);
  auto bad = TcpStore::FromEnv(milliseconds(1000));
  REQUIRE_FALSE(bad.ok());
  CHECK(std::string(bad.status().message()).find("RANK='one' is not an integer") !=
        std::string::npos);

  unsetenv("MASTER_ADDR");
  auto missing = TcpStore::FromEnv(milliseconds(1000));
  REQUIRE_FALSE(missing.ok());
  CHECK(std::string(missing.status().message()).find("MASTER_ADDR is not set") !=
        std::string::npos);
  unsetenv("MASTER_PORT");
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
}

}  // namespace
}  // namespace colossal::parallel
