// colossal-worker.
#include "runtime/worker/worker_main.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/env.h"
#include "runtime/base/logging.h"
#include "parallel/comm/tcp_store.h"
#include "parallel/comm/ucx/ucx_communicator.h"
#include "parallel/plan.h"
#include "parallel/process_groups.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/device_setup.h"
#include "runtime/worker/rendezvous_bootstrap.h"
#include "runtime/worker/progress_reporter.h"
#include "runtime/worker/trainer.h"

namespace colossal::worker {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

int EnvInt(std::string_view name, int fallback) {
  int value = fallback;
  if (auto v = base::GetEnv(name); v && !absl::SimpleAtoi(*v, &value)) return fallback;
  return value;
}

bool BadInput(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kPermissionDenied:
      return true;
    default:
      return false;
  }
}

// The worker's last word when it fails: one plain line that the coordinator keeps in the
// job's message and `colossal run` prints (runtime/cli/follow.cc, WorkerError).
// The job's parallel layout as the one Plan the worker logs and (next) builds its groups
// from; JobSpec validation has already checked every rule Plan::Create checks again.
int Fatal(int code, absl::string_view message) {
  std::fprintf(stderr, "colossal-worker: error: %.*s\n", static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  return code;
}

}  // namespace

int WorkerMain(const std::vector<std::string>& args) {
  base::InitLogging();
  std::string spec_path;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--spec" && i + 1 < args.size()) {
      spec_path = args[++i];
    } else if (args[i].rfind("--spec=", 0) == 0) {
      spec_path = args[i].substr(7);
    } else {
      std::fprintf(stderr, "colossal-worker: unknown argument '%s' (usage: --spec FILE)\n",
                   args[i].c_str());
      return 2;
    }
  }
  if (spec_path.empty()) {
    std::fprintf(stderr, "colossal-worker: usage: colossal-worker --spec FILE\n");
    return 2;
  }
  const int rank = EnvInt(base::kEnvRank, 0);
  const int world = EnvInt(base::kEnvWorldSize, 1);
  const int attempt = EnvInt(base::kEnvAttempt, 1);
  const std::string job_id = base::GetEnv(base::kEnvJobId).value_or("local");
  base::SetLogContext(job_id, rank);

  auto spec = config::LoadJobSpec(spec_path);
  if (!spec.ok()) return Fatal(2, spec.status().message());
  if (world != spec->resources.WorldSize()) {
    return Fatal(2, absl::StrCat("WORLD_SIZE ", world, " does not match the job's ",
                                 spec->resources.WorldSize(), " ranks"));
  }
  if (auto status = config::ValidateJobFiles(*spec); !status.ok()) return Fatal(2, status.message());
  // Before anything starts CUDA: the rank's GPU is made the only visible one.
  std::string device_line;
  absl::StatusOr<memory::Place> place = SetUpDevice(*spec, &device_line);
  if (!place.ok()) return Fatal(absl::IsInvalidArgument(place.status()) ? 2 : 1, place.status().message());
  LOG_INFO("{}", device_line);

  rpc::SecurityOptions security;
  security.token_file = base::GetEnv(base::kEnvTokenFile).value_or("");
  security.tls_ca = base::GetEnv(base::kEnvTlsCa).value_or("");
  const auto coordinator = base::GetEnv(base::kEnvCoordinator);

  // The world communicator, split along the plan's axes into its process groups.
  std::unique_ptr<parallel::Bootstrap> bootstrap;
  std::unique_ptr<parallel::Communicator> world_comm;
  const config::ParallelSpec& p = spec->parallel;
  auto plan = parallel::Plan::Create(PlanOptionsOf(p), world);
  if (!plan.ok()) return Fatal(2, plan.status().message());
  LOG_INFO("plan: {}", plan->ToString());
  if (world > 1) {
    const std::chrono::milliseconds timeout(p.timeout_s * 1000);
    if (coordinator) {
      auto b = RendezvousBootstrap::Create(*coordinator, security, job_id, attempt, rank, world, timeout);
      if (!b.ok()) return Fatal(2, b.status().message());
      bootstrap = std::move(*b);
    } else {
      auto b = parallel::TcpStore::FromEnv(timeout);
      if (!b.ok()) return Fatal(2, b.status().message());
      bootstrap = std::move(*b);
    }
    parallel::CommOptions comm_options;
    comm_options.timeout = timeout;
    auto comm = parallel::CreateUcxCommunicator(*bootstrap, comm_options);
    if (!comm.ok()) return Fatal(1, comm.status().message());
    world_comm = std::move(*comm);
  }
  auto groups = parallel::ProcessGroups::Create(*plan, world_comm.get());
  if (!groups.ok()) return Fatal(1, groups.status().message());
  if (world > 1) {
    LOG_INFO("{} ranks over UCX: data group of {}, tensor group of {}", world,
             plan->degree(parallel::Axis::kData), plan->degree(parallel::Axis::kTensor));
  }

  std::unique_ptr<ProgressReporter> reporter;
  if (coordinator && rank == 0) {
    auto created = ProgressReporter::Create(*coordinator, security, job_id, attempt, rank);
    if (!created.ok()) return Fatal(2, created.status().message());
    reporter = std::move(*created);
  }

  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  TrainOptions options;
  options.threads = EnvInt(base::kEnvThreads, 0);
  options.progress = 0;
  options.print_sample = false;  // rank 0 writes sample.txt; `colossal run` prints it
  options.stop = &g_stop;
  options.groups = world > 1 ? groups->get() : nullptr;
  options.place = &*place;
  if (reporter) {
    options.on_step = [&](const StepReport& r) { reporter->Step(r); };
    options.on_val = [&](int64_t step, double val) { reporter->Val(step, val); };
  }
  LOG_INFO("worker pid {} rank {}/{} attempt {}", getpid(), rank, world, attempt);
  auto summary = Train(*spec, options);
  reporter.reset();  // flush
  if (summary.ok()) {
    LOG_INFO("done: {} steps, loss {:.4f}", summary->steps_done, summary->last_loss);
    return 0;
  }
  if (absl::IsCancelled(summary.status())) {
    LOG_INFO("{}", summary.status().message());
    return 143;
  }
  return Fatal(BadInput(summary.status()) ? 2 : 1, summary.status().message());
}

}  // namespace colossal::worker
