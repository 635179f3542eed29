// submit, status, logs, cancel, nodes.
#include "runtime/cli/job_commands.h"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "runtime/cli/args.h"
#include "runtime/cli/follow.h"
#include "runtime/config/job_spec.h"

namespace colossal::cli {
namespace {

namespace fs = std::filesystem;

nlohmann::json JobJson(const v1::Job& j) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const v1::RankPlacement& r : j.ranks()) {
    ranks.push_back({{"rank", r.rank()}, {"node", r.node_id()}, {"local_rank", r.local_rank()},
                     {"pid", r.pid()}, {"state", r.state()}});
  }
  return {{"id", j.id()},
          {"name", j.name()},
          {"state", StateName(j.state())},
          {"attempt", j.attempt()},
          {"step", j.step()},
          {"total_steps", j.total_steps()},
          {"loss", j.loss()},
          {"val_loss", j.val_loss()},
          {"restarts", j.restarts()},
          {"world_size", j.world_size()},
          {"exit_code", j.exit_code()},
          {"message", j.message()},
          {"run_dir", j.run_dir()},
          {"submitted_unix_ms", j.submitted_unix_ms()},
          {"started_unix_ms", j.started_unix_ms()},
          {"finished_unix_ms", j.finished_unix_ms()},
          {"ranks", ranks}};
}

std::string Age(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const int64_t s = static_cast<int64_t>(std::time(nullptr)) - unix_ms / 1000;
  if (s < 120) return absl::StrCat(std::max<int64_t>(0, s), "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  return absl::StrCat(s / 3600, "h");
}

}  // namespace

absl::StatusOr<v1::SubmitJobRequest> MakeSubmitRequest(const std::string& path,
                                                       const std::vector<std::string>& sets,
                                                       config::JobSpec* spec_out) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open job file"));
  std::stringstream ss;
  ss << in.rdbuf();
  // Validate here too: the same messages as the coordinator's, and the job's files checked
  // where the user stands.
  ASSIGN_OR_RETURN(config::JobSpec spec, config::ParseJobSpec(ss.str(), path, sets));
  const std::string cwd = fs::current_path().string();
  config::ResolvePaths(spec, cwd);
  RETURN_IF_ERROR(config::ValidateJobFiles(spec));
  v1::SubmitJobRequest request;
  request.set_yaml(ss.str());
  for (const std::string& s : sets) request.add_overrides(s);
  request.set_base_dir(cwd);
  request.set_source(path);
  if (spec_out != nullptr) *spec_out = std::move(spec);
  return request;
}

int SubmitCommand(const ClientOptions& options, const std::vector<std::string>& argv) {
  auto args = ParseArgs("submit", argv, {}, {"--follow", "--validate-only"});
  if (!args.ok()) return ReportError("submit", args.status());
  if (args->positional.size() != 1) {
    return ReportError("submit", absl::InvalidArgumentError(
                                     "usage: colossal submit JOB.yaml [--set key.path=value]... [--follow]"));
  }
  auto request = MakeSubmitRequest(args->positional[0], args->sets);
  if (!request.ok()) return ReportError("submit", request.status());
  request->set_validate_only(args->Has("--validate-only"));
  auto client = JobClient::Connect(options);
  if (!client.ok()) return ReportError("submit", client.status());
  auto response = (*client)->Submit(*request);
  if (!response.ok()) return ReportError("submit", response.status());
  if (request->validate_only()) {
    std::printf("%s", response->spec_yaml().c_str());
    return 0;
  }
  const std::string id = response->job_id();
  std::printf("%s\n", id.c_str());
  if (!args->Has("--follow")) return 0;
  std::fflush(stdout);
  FollowOptions follow;
  follow.command = "submit";
  const int code = FollowJob(**client, id, follow);
  std::printf("%s\n", id.c_str());
  return code;
}

int StatusCommand(const ClientOptions& options, const std::vector<std::string>& argv) {
  auto args = ParseArgs("status", argv, {"--limit"}, {"--json", "--active"});
  if (!args.ok()) return ReportError("status", args.status());
  auto client = JobClient::Connect(options);
  if (!client.ok()) return ReportError("status", client.status());
  const bool json = args->Has("--json");
  if (args->positional.size() == 1) {
    auto job = (*client)->Get(args->positional[0]);
    if (!job.ok()) return ReportError("status", job.status());
    if (json) {
      std::printf("%s\n", JobJson(*job).dump().c_str());
      return 0;
    }
    std::printf("id          %s\nname        %s\nstate       %s\nattempt     %d (restarts %d)\n"
                "step        %lld / %lld\nloss        %.4f\n",
                job->id().c_str(), job->name().c_str(), StateName(job->state()).c_str(),
                job->attempt(), job->restarts(), static_cast<long long>(job->step()),
                static_cast<long long>(job->total_steps()), job->loss());
    if (job->val_loss() >= 0) std::printf("val_loss    %.4f\n", job->val_loss());
    std::printf("run_dir     %s\n", job->run_dir().c_str());
    if (!job->message().empty()) std::printf("message     %s\n", WorkerError(job->message()).c_str());
    for (const v1::RankPlacement& r : job->ranks()) {
      std::printf("rank %-6d node %s local_rank %d pid %lld %s\n", r.rank(), r.node_id().c_str(),
                  r.local_rank(), static_cast<long long>(r.pid()), r.state().c_str());
    }
    return 0;
  }
  if (!args->positional.empty()) {
    return ReportError("status", absl::InvalidArgumentError("usage: colossal status [JOB] [--json]"));
  }
  int limit = 0;
  if (args->Has("--limit") && !absl::SimpleAtoi(args->Get("--limit"), &limit)) {
    return ReportError("status", absl::InvalidArgumentError("--limit must be an integer"));
  }
  auto jobs = (*client)->List(args->Has("--active"), limit);
  if (!jobs.ok()) return ReportError("status", jobs.status());
  if (json) {
    nlohmann::json all = nlohmann::json::array();
    for (const v1::Job& j : *jobs) all.push_back(JobJson(j));
    std::printf("%s\n", nlohmann::json{{"jobs", all}}.dump().c_str());
    return 0;
  }
  std::printf("%-10s %-10s %-7s %-13s %-8s %-6s %s\n", "ID", "STATE", "ATTEMPT", "STEP", "LOSS",
              "AGE", "NAME");
  for (const v1::Job& j : *jobs) {
    std::printf("%-10s %-10s %-7d %-13s %-8.4f %-6s %s\n", j.id().c_str(),
                StateName(j.state()).c_str(), j.attempt(),
                absl::StrCat(j.step(), "/", j.total_steps()).c_str(), j.loss(),
                Age(j.submitted_unix_ms()).c_str(), j.name().c_str());
  }
  return 0;
}

int LogsCommand(const ClientOptions& options, const std::vector<std::string>& argv) {
  auto args = ParseArgs("logs", argv, {"--rank"}, {"-f", "--follow"});
  if (!args.ok()) return ReportError("logs", args.status());
  if (args->positional.size() != 1) {
    return ReportError("logs", absl::InvalidArgumentError("usage: colossal logs JOB [--rank N] [-f]"));
  }
  int rank = -1;
  if (args->Has("--rank") && (!absl::SimpleAtoi(args->Get("--rank"), &rank) || rank < 0)) {
    return ReportError("logs", absl::InvalidArgumentError("--rank must be a rank number"));
  }
  auto client = JobClient::Connect(options);
  if (!client.ok()) return ReportError("logs", client.status());
  // With every rank, prefix complete lines with their rank (partial lines wait).
  std::map<std::pair<int, int>, std::string> partial;
  absl::Status s = (*client)->Logs(args->positional[0], rank, args->Has("-f") || args->Has("--follow"),
                                   [&](const v1::LogChunk& c) {
    if (rank >= 0) {
      std::fwrite(c.data().data(), 1, c.data().size(), stdout);
    } else {
      std::string& buf = partial[{c.attempt(), c.rank()}];
      buf += c.data();
      size_t start = 0, nl;
      while ((nl = buf.find('\n', start)) != std::string::npos) {
        std::printf("[rank %d] %.*s\n", c.rank(), static_cast<int>(nl - start), buf.data() + start);
        start = nl + 1;
      }
      buf.erase(0, start);
    }
    std::fflush(stdout);
    return true;
  });
  for (auto& [key, rest] : partial) {
    if (!rest.empty()) std::printf("[rank %d] %s\n", key.second, rest.c_str());
  }
  return s.ok() ? 0 : ReportError("logs", s);
}

int CancelCommand(const ClientOptions& options, const std::vector<std::string>& argv) {
  auto args = ParseArgs("cancel", argv, {}, {});
  if (!args.ok()) return ReportError("cancel", args.status());
  if (args->positional.size() != 1) {
    return ReportError("cancel", absl::InvalidArgumentError("usage: colossal cancel JOB"));
  }
  auto client = JobClient::Connect(options);
  if (!client.ok()) return ReportError("cancel", client.status());
  auto job = (*client)->Cancel(args->positional[0]);
  if (!job.ok()) return ReportError("cancel", job.status());
  std::printf("%s %s\n", job->id().c_str(), StateName(job->state()).c_str());
  return 0;
}

int NodesCommand(const ClientOptions& options, const std::vector<std::string>& argv) {
  auto args = ParseArgs("nodes", argv, {}, {"--json"});
  if (!args.ok()) return ReportError("nodes", args.status());
  auto client = JobClient::Connect(options);
  if (!client.ok()) return ReportError("nodes", client.status());
  auto nodes = (*client)->Nodes();
  if (!nodes.ok()) return ReportError("nodes", nodes.status());
  if (args->Has("--json")) {
    nlohmann::json all = nlohmann::json::array();
    for (const v1::NodeInfo& n : *nodes) {
      all.push_back({{"node_id", n.node_id()}, {"hostname", n.hostname()}, {"address", n.address()},
                     {"slots", n.slots()}, {"slots_used", n.slots_used()}, {"cpu_cores", n.cpu_cores()},
                     {"devices", std::vector<std::string>(n.devices().begin(), n.devices().end())},
                     {"last_seen_unix_ms", n.last_seen_unix_ms()}, {"alive", n.alive()}});
    }
    std::printf("%s\n", nlohmann::json{{"nodes", all}}.dump().c_str());
    return 0;
  }
  std::printf("%-28s %-16s %-10s %-6s %-6s %s\n", "NODE", "ADDRESS", "SLOTS", "CORES", "ALIVE", "DEVICES");
  for (const v1::NodeInfo& n : *nodes) {
    std::string devices;
    for (const std::string& d : n.devices()) devices += (devices.empty() ? "" : ", ") + d;
    std::printf("%-28s %-16s %-10s %-6d %-6s %s\n", n.node_id().c_str(), n.address().c_str(),
                absl::StrCat(n.slots_used(), "/", n.slots()).c_str(), n.cpu_cores(),
                n.alive() ? "yes" : "no", devices.c_str());
  }
  return 0;
}

}  // namespace colossal::cli
