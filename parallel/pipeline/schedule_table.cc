// Prints, for every schedule at 2 and 4 stages and 4 / 8 / 16 micro-batches, the
// replayed bubble fraction at unit action costs (F = B = W = 1, the fused backward 2)
// beside the textbook one and each rank's peak in-flight micro-batch chunks, then the
// text chart of each schedule at 4 stages and 8 micro-batches:
//   bazel run //parallel/pipeline:schedule_table
// This is the schedules' own arithmetic; measured step times come with the interpreter.
#include <cstdio>
#include <string>

#include "parallel/pipeline/schedule.h"

using namespace colossal::parallel::pipeline;

int main() {
  struct Kind {
    ScheduleKind kind;
    int chunks;
  };
  const Kind kinds[] = {{ScheduleKind::kGpipe, 1}, {ScheduleKind::k1f1b, 1}, {ScheduleKind::kInterleaved, 2},
                        {ScheduleKind::kZbH1, 1},  {ScheduleKind::kZbv, 2}};
  std::printf("%-12s %2s %3s %6s %10s %10s  %s\n", "schedule", "P", "M", "chunks", "bubble", "textbook",
              "peak in-flight per rank (chunks)");
  for (int P : {2, 4}) {
    for (int M : {4, 8, 16}) {
      for (const Kind& k : kinds) {
        auto s = MakeSchedule(k.kind, P, M, k.chunks);
        if (!s.ok()) {
          std::printf("%-12s %2d %3d  %s\n", std::string(ScheduleName(k.kind)).c_str(), P, M,
                      std::string(s.status().message()).c_str());
          continue;
        }
        auto tl = Simulate(*s);
        if (!tl.ok()) return 1;
        std::string peaks;
        for (int p : tl->peak_in_flight) peaks += std::to_string(p) + " ";
        std::printf("%-12s %2d %3d %6d %10.4f %10.4f  %s\n", std::string(ScheduleName(k.kind)).c_str(), P, M,
                    k.chunks, tl->bubble, TheoreticalBubble(*s), peaks.c_str());
      }
    }
  }
  for (const Kind& k : kinds) {
    auto s = MakeSchedule(k.kind, 4, 8, k.chunks);
    auto tl = Simulate(*s);
    std::printf("\n%s, 4 stages, 8 micro-batches:\n%s", std::string(ScheduleName(k.kind)).c_str(),
                TimelineChart(*s, *tl).c_str());
  }
  return 0;
}
