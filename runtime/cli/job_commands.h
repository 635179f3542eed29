// The `colossal` commands that talk to a coordinator: submit, status, logs, cancel,
// nodes — and `run`, which starts an embedded coordinator and node daemon(s) on
// loopback, submits, follows and exits with the job's result. Exit codes: 0 success,
// 1 failure (job failed or cancelled, coordinator unreachable), 2 rejected or bad input.
#pragma once

#include <string>
#include <vector>

#include "runtime/cli/job_client.h"
#include "runtime/config/job_spec.h"

namespace colossal::cli {

int SubmitCommand(const ClientOptions& client, const std::vector<std::string>& args);
int StatusCommand(const ClientOptions& client, const std::vector<std::string>& args);
int LogsCommand(const ClientOptions& client, const std::vector<std::string>& args);
int CancelCommand(const ClientOptions& client, const std::vector<std::string>& args);
int NodesCommand(const ClientOptions& client, const std::vector<std::string>& args);
int RunCommand(const std::vector<std::string>& args);

// Reads a job file and builds the SubmitJob request (base_dir = the working directory);
// checks the job's files locally first (they must exist where the job runs). `spec`, when
// given, receives the parsed job with its paths resolved against base_dir.
absl::StatusOr<v1::SubmitJobRequest> MakeSubmitRequest(const std::string& path,
                                                       const std::vector<std::string>& sets,
                                                       config::JobSpec* spec = nullptr);

}  // namespace colossal::cli
