// One pipeline step's measured timeline as a Chrome trace (the JSON chrome://tracing and
// Perfetto open): a thread per pipeline stage, an event per compute action (F, B or W of
// micro-batch m, chunk c) at its measured start and duration, times from the step's first
// action, and the schedule and bubble as otherData.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parallel/pipeline/runner.h"
#include "parallel/pipeline/schedule.h"

namespace colossal::worker {

std::string ChromeTrace(const parallel::pipeline::PipelineSchedule& schedule,
                        const std::vector<std::vector<parallel::pipeline::TimedAction>>& timelines, int64_t step,
                        double bubble);
// Writes it to `path` (PermissionDenied naming the path when it cannot).
absl::Status WriteChromeTrace(const std::string& path, const parallel::pipeline::PipelineSchedule& schedule,
                              const std::vector<std::vector<parallel::pipeline::TimedAction>>& timelines, int64_t step,
                              double bubble);

}  // namespace colossal::worker
