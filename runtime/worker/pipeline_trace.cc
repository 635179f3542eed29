// Chrome trace of a pipeline step.
#include "runtime/worker/pipeline_trace.h"

#include <algorithm>
#include <climits>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace colossal::worker {

std::string ChromeTrace(const parallel::pipeline::PipelineSchedule& schedule,
                        const std::vector<std::vector<parallel::pipeline::TimedAction>>& timelines, int64_t step,
                        double bubble) {
  namespace pp = parallel::pipeline;
  int64_t t0 = INT64_MAX;
  for (const auto& rank : timelines) {
    for (const pp::TimedAction& t : rank) t0 = std::min(t0, t.start_us);
  }
  nlohmann::json events = nlohmann::json::array();
  events.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", 0}, {"args", {{"name", "pipeline"}}}});
  for (int r = 0; r < static_cast<int>(timelines.size()); ++r) {
    events.push_back({{"name", "thread_name"}, {"ph", "M"}, {"pid", 0}, {"tid", r},
                      {"args", {{"name", absl::StrCat("stage ", r)}}}});
    for (const pp::TimedAction& t : timelines[r]) {
      const pp::Action& a = t.action;
      const int64_t start = t.start_us, end = t.end_us;
      const char* letter = a.kind == pp::ActionKind::kForward          ? "F"
                           : a.kind == pp::ActionKind::kBackwardWeight ? "W"
                                                                      : "B";
      events.push_back({{"name", absl::StrCat(letter, a.microbatch, schedule.chunks > 1 ? absl::StrCat(" c", a.chunk) : "")},
                        {"cat", a.kind == pp::ActionKind::kForward          ? "forward"
                                : a.kind == pp::ActionKind::kBackward       ? "backward"
                                : a.kind == pp::ActionKind::kBackwardInput  ? "backward_input"
                                                                            : "backward_weight"},
                        {"ph", "X"},
                        {"pid", 0},
                        {"tid", r},
                        {"ts", start - t0},
                        {"dur", end - start},
                        {"args", {{"microbatch", a.microbatch}, {"chunk", a.chunk},
                                  {"virtual_stage", schedule.VirtualStage(r, a.chunk)}}}});
    }
  }
  nlohmann::json trace = {{"traceEvents", events},
                          {"displayTimeUnit", "ms"},
                          {"otherData", {{"step", step}, {"schedule", std::string(pp::ScheduleName(schedule.kind))},
                                         {"stages", static_cast<int>(timelines.size())}, {"chunks", schedule.chunks},
                                         {"microbatches", schedule.microbatches}, {"bubble", bubble}}}};
  return trace.dump(1) + "\n";
}

absl::Status WriteChromeTrace(const std::string& path, const parallel::pipeline::PipelineSchedule& schedule,
                              const std::vector<std::vector<parallel::pipeline::TimedAction>>& timelines, int64_t step,
                              double bubble) {
  std::ofstream out(path);
  if (!(out << ChromeTrace(schedule, timelines, step, bubble))) {
    return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  }
  return absl::OkStatus();
}

}  // namespace colossal::worker
