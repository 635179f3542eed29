// `colossal run`: the whole system on one machine — an embedded coordinator and one node
// daemon per resources.nodes on loopback, workers as child processes (`colossal worker`),
// the job submitted and followed like any other.
#include <unistd.h>

#include <chrono>
#include <climits>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "runtime/cli/args.h"
#include "runtime/cli/follow.h"
#include "runtime/cli/job_commands.h"
#include "runtime/config/job_spec.h"
#include "runtime/coordinator/coordinator.h"
#include "runtime/daemon/node_daemon.h"

namespace colossal::cli {
namespace {

namespace fs = std::filesystem;

std::string SelfExe() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : std::string("colossal");
}

}  // namespace

int RunCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs("run", argv, {"--threads"}, {"--no-resume", "--no-checkpoints"});
  if (!args.ok()) return ReportError("run", args.status());
  if (args->positional.size() != 1) {
    return ReportError("run", absl::InvalidArgumentError(
                                  "usage: colossal run JOB.yaml [--set key.path=value]... "
                                  "[--threads N] [--no-resume] [--no-checkpoints]"));
  }
  std::vector<std::string> sets = args->sets;
  if (args->Has("--no-resume")) sets.push_back("train.resume=false");
  if (args->Has("--no-checkpoints")) sets.push_back("train.checkpoint.save=false");
  if (args->Has("--threads")) sets.push_back("resources.threads_per_rank=" + args->Get("--threads"));
  config::JobSpec spec;
  auto request = MakeSubmitRequest(args->positional[0], sets, &spec);
  if (!request.ok()) return ReportError("run", request.status());

  // The embedded services log state changes at info; a terminal user follows the job
  // instead (COLOSSAL_LOG_LEVEL shows them).
  if (!base::GetEnv(base::kEnvLogLevel)) spdlog::set_level(spdlog::level::warn);

  // Everything the embedded services keep lives under the run directory.
  const fs::path root = fs::path(spec.run_dir) / ".colossal";
  // The services' state (job store, worker logs) is per invocation: a new run starts
  // with none (checkpoints and metrics live outside it).
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root, ec);
  if (ec) return ReportError("run", absl::PermissionDeniedError(absl::StrCat(root.string(), ": ", ec.message())));

  coordinator::CoordinatorOptions co;
  co.listen = "127.0.0.1:0";
  co.state_dir = (root / "coordinator").string();
  co.heartbeat_ms = 200;
  auto coord = coordinator::Coordinator::Start(co);
  if (!coord.ok()) return ReportError("run", coord.status());

  std::vector<std::unique_ptr<daemon::NodeDaemon>> daemons;
  for (int64_t i = 0; i < spec.resources.nodes; ++i) {
    daemon::DaemonOptions d;
    d.coordinator = (*coord)->address();
    d.slots = static_cast<int>(spec.resources.ranks_per_node);
    d.node_id = absl::StrCat("local-", i);
    d.state_dir = (root / d.node_id).string();
    d.worker_command = {SelfExe(), "worker"};
    d.heartbeat_ms = 200;
    auto started = daemon::NodeDaemon::Start(d);
    if (!started.ok()) return ReportError("run", started.status());
    daemons.push_back(std::move(*started));
  }

  ClientOptions client_options;
  client_options.coordinator = (*coord)->address();
  auto client = JobClient::Connect(client_options);
  if (!client.ok()) return ReportError("run", client.status());
  // Every embedded daemon registered before the job is placed (a job needing more nodes
  // than are registered is rejected).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    auto nodes = (*client)->Nodes();
    if (nodes.ok() && static_cast<int64_t>(nodes->size()) >= spec.resources.nodes) break;
    if (std::chrono::steady_clock::now() > deadline) {
      return ReportError("run", absl::DeadlineExceededError("embedded node daemons did not register"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto response = (*client)->Submit(*request);
  if (!response.ok()) return ReportError("run", response.status());

  v1::Job job;
  const int code = FollowJob(**client, response->job_id(), FollowOptions(), &job);
  if (code == 0) {
    std::ifstream sample(fs::path(spec.run_dir) / "sample.txt");
    if (sample) {
      std::stringstream ss;
      ss << sample.rdbuf();
      std::printf("--- sample ---\n%s--------------\n", ss.str().c_str());
    }
    std::printf("%s: %lld steps, loss %.4f%s, run directory %s\n", spec.name.c_str(),
                static_cast<long long>(job.step()), job.loss(),
                job.val_loss() >= 0 ? absl::StrCat(", val_loss ", job.val_loss()).c_str() : "",
                spec.run_dir.c_str());
  }
  std::fflush(stdout);
  for (auto& d : daemons) d->Stop(/*kill_workers=*/true);
  (*coord)->Shutdown();
  return code;
}

}  // namespace colossal::cli
