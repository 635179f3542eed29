// LocalGroup: every collective against a locally computed reference, sub-groups, and
// a missing member timing out with its rank named.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "parallel/comm/local/local_communicator.h"

namespace colossal::parallel {
namespace {

template <typename F>
void RunRanks(int n, F&& body) {
  auto group = LocalGroup::Create(n, std::chrono::seconds(2));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] { body(group->Member(r)); });
  }
  for (auto& t : threads) t.join();
}

TEST_CASE("local collectives match their definitions") {
  const int n = 3;
  const int64_t count = 5;
  RunRanks(n, [&](std::unique_ptr<Communicator> c) {
    const int r = c->rank();
    std::vector<float> buf(count);
    for (int64_t i = 0; i < count; ++i) buf[i] = r * 10 + i;
    REQUIRE(c->AllReduce(buf.data(), count, DType::kF32)->Wait().ok());
    for (int64_t i = 0; i < count; ++i) REQUIRE(buf[i] == 30 + 3 * i);

    std::vector<float> send(count * n), recv(count);
    for (int64_t i = 0; i < count * n; ++i) send[i] = r + i;
    REQUIRE(c->ReduceScatter(send.data(), recv.data(), count, DType::kF32)->Wait().ok());
    for (int64_t i = 0; i < count; ++i) REQUIRE(recv[i] == 3 + 3 * (r * count + i));

    std::vector<float> mine(count, static_cast<float>(r)), gathered(count * n);
    REQUIRE(c->AllGather(mine.data(), gathered.data(), count, DType::kF32)->Wait().ok());
    for (int64_t i = 0; i < count * n; ++i) REQUIRE(gathered[i] == i / count);

    std::vector<float> b(count, static_cast<float>(r + 1));
    REQUIRE(c->Broadcast(b.data(), count, DType::kF32, 2)->Wait().ok());
    for (float v : b) REQUIRE(v == 3.0f);

    std::vector<float> a2a_in(n * 2), a2a_out(n * 2);
    for (int d = 0; d < n; ++d) a2a_in[d * 2] = a2a_in[d * 2 + 1] = r * 100 + d;
    REQUIRE(c->AllToAll(a2a_in.data(), a2a_out.data(), 2, DType::kF32)->Wait().ok());
    for (int src = 0; src < n; ++src) REQUIRE(a2a_out[src * 2] == src * 100 + r);
    REQUIRE(c->Barrier()->Wait().ok());
    // What the ring algorithms send per rank: all-reduce 2(n-1)/n of the buffer (20
    // bytes: 2·2·20/3 = 26 by integer division), reduce-scatter and all-gather (n-1)
    // blocks, broadcast (n-1)/n of the buffer, all-to-all (n-1) blocks; barriers nothing.
    const int64_t block = count * 4;
    REQUIRE(c->bytes_sent() == 2 * (n - 1) * block / n + (n - 1) * block + (n - 1) * block +
                                   block * (n - 1) / n + (n - 1) * 8);
  });
}

TEST_CASE("sub-groups reduce among their members only") {
  RunRanks(4, [&](std::unique_ptr<Communicator> c) {
    const std::vector<int> members = c->rank() % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3};
    auto sub = c->Split(members);
    REQUIRE(sub.ok());
    float v = static_cast<float>(c->rank());
    REQUIRE((*sub)->AllReduce(&v, 1, DType::kF32)->Wait().ok());
    REQUIRE(v == (c->rank() % 2 == 0 ? 2.0f : 4.0f));
    REQUIRE((*sub)->global_ranks() == members);
  });
}

TEST_CASE("point to point: matched by (peer, tag) in order, sizes checked, a missing send times out") {
  RunRanks(2, [&](std::unique_ptr<Communicator> c) {
    const int r = c->rank(), peer = 1 - r;
    // Each rank posts its receives first, then sends: no deadlock.
    float a = -1, b = -1;
    auto ra = c->Recv(&a, 4, peer, 7);
    auto rb = c->Recv(&b, 4, peer, 8);
    float x = 10.0f + r, y = 20.0f + r;
    REQUIRE(c->Send(&y, 4, peer, 8)->Wait().ok());
    REQUIRE(c->Send(&x, 4, peer, 7)->Wait().ok());
    REQUIRE(ra->Wait().ok());
    REQUIRE(rb->Wait().ok());
    REQUIRE(a == 10.0f + peer);
    REQUIRE(b == 20.0f + peer);
    // Same tag twice: first sent, first received.
    float one = 1.0f + r, two = 2.0f + r;
    REQUIRE(c->Send(&one, 4, peer, 9)->Wait().ok());
    REQUIRE(c->Send(&two, 4, peer, 9)->Wait().ok());
    REQUIRE(c->Recv(&a, 4, peer, 9)->Wait().ok());
    REQUIRE(c->Recv(&b, 4, peer, 9)->Wait().ok());
    REQUIRE(a == 1.0f + peer);
    REQUIRE(b == 2.0f + peer);
    double wide = 0;
    REQUIRE(c->Send(&one, 4, peer, 10)->Wait().ok());
    CHECK_THAT(std::string(c->Recv(&wide, 8, peer, 10)->Wait().message()), Catch::Contains("got a message of 4"));
  });
  auto group = LocalGroup::Create(2, std::chrono::milliseconds(200));
  auto c = group->Member(0);
  float late = -1;
  auto never = c->Recv(&late, 4, 1, 11);
  REQUIRE_FALSE(never->Done());
  const absl::Status s = never->Wait();
  CHECK(s.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK_THAT(std::string(s.message()), Catch::Contains("from rank 1"));
}

TEST_CASE("a member that never arrives is named in the timeout") {
  auto group = LocalGroup::Create(3, std::chrono::milliseconds(200));
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(2);
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      auto c = group->Member(r);
      float v = 1;
      results[r] = c->AllReduce(&v, 1, DType::kF32)->Wait();
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : results) {
    REQUIRE(absl::IsDeadlineExceeded(s));
    REQUIRE_THAT(std::string(s.message()), Catch::Contains("rank(s) 2"));
  }
}

}  // namespace
}  // namespace colossal::parallel
