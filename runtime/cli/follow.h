// Following a job from the CLI (`colossal run`, `colossal submit --follow`): state
// changes and validation losses as lines on stderr, a progress line on a terminal
// (stderr), rank 0's log forwarded to stdout when stderr is not a terminal (or
// `logs_to_stdout`), and the exit code of the job's result:
//   0 succeeded · 2 failed on bad input (a rank exited 2; its error line is printed) ·
//   1 failed or cancelled.
// SIGINT/SIGTERM while following cancels the job (once) and keeps following to the end.
#pragma once

#include <string>

#include "runtime/cli/job_client.h"

namespace colossal::cli {

struct FollowOptions {
  int progress = -1;          // -1: stderr is a terminal (or COLOSSAL_PROGRESS=1)
  bool cancel_on_signal = true;
  std::string command = "run";  // names the command in error lines
};

// Follows `job_id` to its end; returns the exit code described above (1 when the
// coordinator becomes unreachable, with the reason on stderr).
int FollowJob(JobClient& client, const std::string& job_id, const FollowOptions& options,
              v1::Job* final_job = nullptr);

// The worker's own error line from a failed job's log tail ("colossal-worker: error: ..."),
// or the last non-empty line of the tail.
std::string WorkerError(const std::string& tail);

}  // namespace colossal::cli
