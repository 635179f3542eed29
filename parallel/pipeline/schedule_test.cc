// Pipeline schedules: every kind over a grid of stages and micro-batches is complete and
// runs to the end; the replayed timelines respect every dependency (checked here from
// the slots, independently of the simulator); 1f1b's and gpipe's bubbles equal
// (P−1)/(M+P−1) and interleaved's (P−1)/(vM+P−1); the zero-bubble schedules beat 1f1b
// within its activation bound; broken lists and bad arguments are named.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <tuple>

#include "parallel/pipeline/schedule.h"

namespace colossal::parallel::pipeline {
namespace {

struct Case {
  ScheduleKind kind;
  int chunks;
};
const std::vector<Case> kCases = {{ScheduleKind::kGpipe, 1},       {ScheduleKind::k1f1b, 1},
                                  {ScheduleKind::kInterleaved, 2}, {ScheduleKind::kInterleaved, 3},
                                  {ScheduleKind::kZbH1, 1},        {ScheduleKind::kZbv, 2}};

// Every slot starts after the ends of what it reads, and a rank's slots do not overlap.
void RequireDependencies(const PipelineSchedule& s, const Timeline& tl) {
  std::map<std::tuple<ActionKind, int, int>, double> end;  // (kind, virtual stage, mb)
  for (int r = 0; r < s.stages; ++r) {
    for (const Timeline::Slot& slot : tl.ranks[r]) {
      ActionKind k = slot.action.kind;
      if (k == ActionKind::kBackward) k = ActionKind::kBackwardInput;
      end[{k, s.VirtualStage(r, slot.action.chunk), slot.action.microbatch}] = slot.end;
    }
  }
  const int last = s.virtual_stages() - 1;
  for (int r = 0; r < s.stages; ++r) {
    double previous_end = 0;
    for (const Timeline::Slot& slot : tl.ranks[r]) {
      const int vs = s.VirtualStage(r, slot.action.chunk), m = slot.action.microbatch;
      INFO("rank " << r << " " << ActionName(slot.action.kind) << " vs " << vs << " mb " << m);
      REQUIRE(slot.start >= previous_end);
      previous_end = slot.end;
      switch (slot.action.kind) {
        case ActionKind::kForward:
          if (vs > 0) REQUIRE(slot.start >= end.at({ActionKind::kForward, vs - 1, m}));
          break;
        case ActionKind::kBackward:
        case ActionKind::kBackwardInput:
          REQUIRE(slot.start >= end.at({ActionKind::kForward, vs, m}));
          if (vs < last) REQUIRE(slot.start >= end.at({ActionKind::kBackwardInput, vs + 1, m}));
          break;
        case ActionKind::kBackwardWeight:
          REQUIRE(slot.start >= end.at({ActionKind::kBackwardInput, vs, m}));
          break;
        default: FAIL("a communication action in the timeline");
      }
    }
  }
}

TEST_CASE("every schedule is complete, runs to the end and respects its dependencies") {
  for (const Case& c : kCases) {
    for (int P = 1; P <= 4; ++P) {
      for (int M = 1; M <= 12; ++M) {
        if (c.kind == ScheduleKind::kInterleaved && M % P != 0) continue;
        CAPTURE(std::string(ScheduleName(c.kind)), c.chunks, P, M);
        auto s = MakeSchedule(c.kind, P, M, c.chunks);
        REQUIRE(s.ok());
        const absl::Status valid = ValidatePipelineSchedule(*s);
        INFO(valid.message());
        REQUIRE(valid.ok());
        auto tl = Simulate(*s);
        REQUIRE(tl.ok());
        RequireDependencies(*s, *tl);
        // Total work is 3 units per chunk and micro-batch on every rank.
        for (int r = 0; r < P; ++r) REQUIRE(tl->busy[r] == Approx(3.0 * c.chunks * M));
      }
    }
  }
}

TEST_CASE("1f1b, gpipe and interleaved reach the textbook bubble; their in-flight peaks") {
  for (int P : {2, 3, 4}) {
    for (int M : {4, 8, 12, 16}) {
      CAPTURE(P, M);
      for (ScheduleKind kind : {ScheduleKind::kGpipe, ScheduleKind::k1f1b}) {
        auto s = MakeSchedule(kind, P, M);
        REQUIRE(s.ok());
        auto tl = Simulate(*s);
        REQUIRE(tl.ok());
        CHECK(tl->bubble == Approx(double(P - 1) / (M + P - 1)).epsilon(1e-12));
        CHECK(TheoreticalBubble(*s) == Approx(tl->bubble).epsilon(1e-12));
        for (int r = 0; r < P; ++r) {
          CHECK(tl->peak_in_flight[r] == (kind == ScheduleKind::kGpipe ? M : std::min(P - r, M)));
        }
      }
      if (M % P != 0) continue;
      for (int v : {2, 3}) {
        CAPTURE(v);
        auto s = MakeSchedule(ScheduleKind::kInterleaved, P, M, v);
        REQUIRE(s.ok());
        auto tl = Simulate(*s);
        REQUIRE(tl.ok());
        CHECK(tl->bubble == Approx(double(P - 1) / (v * M + P - 1)).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("zero-bubble schedules beat 1f1b within its activation bound") {
  for (int P : {2, 4}) {
    for (int M : {4, 8, 16}) {
      CAPTURE(P, M);
      auto one = MakeSchedule(ScheduleKind::k1f1b, P, M);
      auto h1 = MakeSchedule(ScheduleKind::kZbH1, P, M);
      auto v = MakeSchedule(ScheduleKind::kZbv, P, M, 2);
      REQUIRE(one.ok());
      REQUIRE(h1.ok());
      REQUIRE(v.ok());
      auto t1 = Simulate(*one), th = Simulate(*h1), tv = Simulate(*v);
      REQUIRE(t1.ok());
      REQUIRE(th.ok());
      REQUIRE(tv.ok());
      INFO("1f1b " << t1->bubble << ", zb-h1 " << th->bubble << ", zbv " << tv->bubble);
      CHECK(th->bubble < t1->bubble);
      CHECK(tv->bubble < t1->bubble);
      for (int r = 0; r < P; ++r) {
        CHECK(th->peak_in_flight[r] <= P);       // 1f1b's first-rank peak, whole stages
        CHECK(tv->peak_in_flight[r] <= 2 * P);  // chunks of half a stage
      }
    }
  }
}

TEST_CASE("the text chart of a 2-stage 1f1b") {
  auto s = MakeSchedule(ScheduleKind::k1f1b, 2, 2);
  REQUIRE(s.ok());
  ActionCosts costs;  // F 1, fused backward 2
  auto tl = Simulate(*s, costs);
  REQUIRE(tl.ok());
  CHECK(tl->makespan == 9);
  CHECK(TimelineChart(*s, *tl) == "rank 0 |FF..BB.BB|\nrank 1 |.FBBFBB..|\n");
  // Sends and receives sit beside the compute they feed.
  const std::vector<Action>& r1 = s->ranks[1];
  REQUIRE(r1.size() == 8);
  CHECK(r1[0] == Action{ActionKind::kRecvActivation, 0, 0, 0});
  CHECK(r1[1] == Action{ActionKind::kForward, 0, 0, -1});
  CHECK(r1[2] == Action{ActionKind::kBackward, 0, 0, -1});
  CHECK(r1[3] == Action{ActionKind::kSendGrad, 0, 0, 0});
}

TEST_CASE("broken lists and bad arguments are named") {
  auto s = MakeSchedule(ScheduleKind::k1f1b, 2, 3);
  REQUIRE(s.ok());
  PipelineSchedule missing = *s;
  missing.ranks[0].erase(missing.ranks[0].begin());  // rank 0's first forward
  CHECK_THAT(std::string(ValidatePipelineSchedule(missing).message()),
             Catch::Contains("virtual stage 0 micro-batch 0: 0 forwards"));
  PipelineSchedule cycle = *s;  // rank 1 runs micro-batch 0's backward before its forward
  std::swap(cycle.ranks[1][1], cycle.ranks[1][2]);
  CHECK_THAT(std::string(ValidatePipelineSchedule(cycle).message()), Catch::Contains("rank 1 at B+W of micro-batch 0 chunk 0"));
  PipelineSchedule unmatched = *s;
  unmatched.ranks[1].erase(unmatched.ranks[1].begin());  // the first receive
  CHECK_THAT(std::string(ValidatePipelineSchedule(unmatched).message()),
             Catch::Contains("activation of micro-batch 0 from virtual stage 0: sent, never received"));

  CHECK_THAT(std::string(ParseSchedule("1fb1").status().message()),
             Catch::Contains("unknown schedule '1fb1'; did you mean '1f1b'?"));
  CHECK(*ParseSchedule("zb-h1") == ScheduleKind::kZbH1);
  CHECK_THAT(std::string(MakeSchedule(ScheduleKind::kInterleaved, 4, 6, 2).status().message()),
             Catch::Contains("microbatches (6) to be a multiple of the pipeline size (4)"));
  CHECK_THAT(std::string(MakeSchedule(ScheduleKind::k1f1b, 2, 4, 2).status().message()),
             Catch::Contains("runs one chunk per rank"));
  CHECK_THAT(std::string(MakeSchedule(ScheduleKind::kZbv, 2, 4, 3).status().message()),
             Catch::Contains("two chunks per rank"));
  CHECK(!MakeSchedule(ScheduleKind::kGpipe, 0, 4).ok());
  CHECK(!MakeSchedule(ScheduleKind::kGpipe, 2, 0).ok());
}


TEST_CASE("the micro-batches each chunk holds at once") {
  // 1f1b at 2 stages: rank 0 forwards two before its first backward, rank 1 one; gpipe
  // holds every micro-batch; interleaved: each chunk at least one, together no fewer than
  // the rank's simulated peak.
  auto f = MakeSchedule(ScheduleKind::k1f1b, 2, 4);
  auto g = MakeSchedule(ScheduleKind::kGpipe, 2, 4);
  auto i = MakeSchedule(ScheduleKind::kInterleaved, 2, 4, 2);
  REQUIRE((f.ok() && g.ok() && i.ok()));
  CHECK(PeakHeldPerChunk(*f, 0) == std::vector<int>{2});
  CHECK(PeakHeldPerChunk(*f, 1) == std::vector<int>{1});
  CHECK(PeakHeldPerChunk(*g, 0) == std::vector<int>{4});
  CHECK(PeakHeldPerChunk(*g, 1) == std::vector<int>{4});
  const std::vector<int> inter = PeakHeldPerChunk(*i, 0);
  REQUIRE(inter.size() == 2);
  // Its sum is the simulated peak of the rank (both count chunks forwarded, not finished).
  auto tl = Simulate(*i);
  REQUIRE(tl.ok());
  CHECK(inter[0] + inter[1] >= tl->peak_in_flight[0]);
  CHECK(inter[0] >= 1);
  CHECK(inter[1] >= 1);
}

TEST_CASE("simulate with each virtual stage's own costs") {
  // gpipe, 2 stages, 1 micro-batch: F0 (1), F1 (2), B1 (4), B0 (2) back to back.
  auto s = MakeSchedule(ScheduleKind::kGpipe, 2, 1);
  REQUIRE(s.ok());
  auto tl = Simulate(*s, std::vector<ActionCosts>{{1, 2, 0}, {2, 4, 0}});
  REQUIRE(tl.ok());
  CHECK(tl->makespan == 9);
  CHECK(tl->busy == std::vector<double>{3, 6});
  CHECK(tl->bubble == Approx(0.5));
  CHECK(Simulate(*s, std::vector<ActionCosts>{{1, 1, 1}}).status().message() ==
        "Simulate: 1 stage costs for 2 virtual stages");
}

}  // namespace
}  // namespace colossal::parallel::pipeline
