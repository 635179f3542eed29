// The worker process of one rank (`colossal-worker --spec FILE`, also `colossal worker`):
// started by a node daemon with the environment a torchrun-launched program sees
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) plus
// COLOSSAL_COORDINATOR, COLOSSAL_JOB_ID, COLOSSAL_ATTEMPT, COLOSSAL_THREADS and the
// coordinator's credentials (COLOSSAL_TOKEN_FILE, COLOSSAL_TLS_CA). It runs the step
// loop on the spec, reports progress to the coordinator (rank 0), and exits with
//   0 success · 2 bad input (the job fails, no restart) · 1 runtime failure ·
//   143 stopped by SIGTERM/SIGINT (after writing a checkpoint).
#pragma once

#include <string>
#include <vector>

namespace colossal::worker {

int WorkerMain(const std::vector<std::string>& args);

}  // namespace colossal::worker
