// Load and latency probe for a running coordinator (used by tests/services_test.sh):
// `validate` concurrent validate_only SubmitJob calls from as many threads, then `jobs`
// real submits of the job file, each followed until it ends. Prints one JSON object with
// the figures and exits 0 only when every validate_only call succeeded and every job
// SUCCEEDED within the timeout.
//   services_load --coordinator HOST:PORT --job FILE [--validate 500] [--jobs 20]
//                 [--timeout_s 240]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/job.grpc.pb.h"
#include "runtime/rpc/rpc.h"

namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string coordinator, job_file;
  int validate = 500, jobs = 20, timeout_s = 240;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--coordinator") coordinator = v;
    else if (a == "--job") job_file = v;
    else if (a == "--validate") validate = std::atoi(v.c_str());
    else if (a == "--jobs") jobs = std::atoi(v.c_str());
    else if (a == "--timeout_s") timeout_s = std::atoi(v.c_str());
  }
  std::ifstream in(job_file);
  std::stringstream ss;
  ss << in.rdbuf();
  auto channel = colossal::rpc::MakeChannel(coordinator, {});
  if (!channel.ok()) return 2;
  auto stub = colossal::v1::JobService::NewStub(*channel);
  // Real jobs each get their own run directory (an override, as `--set` would).
  auto request = [&](bool validate_only, int index = 0) {
    colossal::v1::SubmitJobRequest r;
    if (!validate_only) {
      r.add_overrides("run_dir=" + (std::filesystem::path(job_file).parent_path() /
                                    ("runs/load-" + std::to_string(index))).string());
    }
    r.set_yaml(ss.str());
    r.set_validate_only(validate_only);
    r.set_base_dir(std::filesystem::path(job_file).parent_path().string());
    r.set_source(job_file);
    return r;
  };

  // 1. Concurrent validate_only submits, one thread each.
  std::vector<double> latency(validate);
  std::atomic<int> ok{0};
  const auto t0 = Clock::now();
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < validate; ++i) {
      threads.emplace_back([&, i] {
        auto ctx = colossal::rpc::NewContext(std::chrono::seconds(60), "");
        colossal::v1::SubmitJobResponse resp;
        const auto s = Clock::now();
        grpc::Status st = stub->SubmitJob(ctx.get(), request(true), &resp);
        latency[i] = Ms(Clock::now() - s);
        if (st.ok() && resp.job_id().empty() && !resp.spec_yaml().empty()) ++ok;
      });
    }
    for (auto& t : threads) t.join();
  }
  const double validate_wall_ms = Ms(Clock::now() - t0);

  // 2. Real jobs, submitted back to back, then followed.
  std::vector<std::string> ids;
  std::vector<double> submit_ms;
  std::vector<Clock::time_point> submitted;
  for (int i = 0; i < jobs; ++i) {
    auto ctx = colossal::rpc::NewContext(std::chrono::seconds(30), "");
    colossal::v1::SubmitJobResponse resp;
    const auto s = Clock::now();
    grpc::Status st = stub->SubmitJob(ctx.get(), request(false, i), &resp);
    submit_ms.push_back(Ms(Clock::now() - s));
    if (!st.ok()) {
      std::fprintf(stderr, "submit %d failed: %s\n", i, st.error_message().c_str());
      return 1;
    }
    ids.push_back(resp.job_id());
    submitted.push_back(s);
  }
  std::vector<double> first_step_ms(jobs, -1);
  std::vector<std::string> final_state(jobs);
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  int done = 0;
  while (done < jobs && Clock::now() < deadline) {
    done = 0;
    for (int i = 0; i < jobs; ++i) {
      if (!final_state[i].empty()) {
        ++done;
        continue;
      }
      auto ctx = colossal::rpc::NewContext(std::chrono::seconds(10), "");
      colossal::v1::GetJobRequest g;
      g.set_job_id(ids[i]);
      colossal::v1::Job job;
      if (!stub->GetJob(ctx.get(), g, &job).ok()) continue;
      if (first_step_ms[i] < 0 && job.step() >= 1) first_step_ms[i] = Ms(Clock::now() - submitted[i]);
      if (job.state() == colossal::v1::SUCCEEDED || job.state() == colossal::v1::FAILED ||
          job.state() == colossal::v1::CANCELLED) {
        final_state[i] = colossal::v1::JobState_Name(job.state());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  int succeeded = 0;
  for (const auto& s : final_state) succeeded += s == "SUCCEEDED";
  std::vector<double> fs;
  for (double v : first_step_ms) {
    if (v >= 0) fs.push_back(v);
  }
  nlohmann::json out = {
      {"validate_calls", validate},
      {"validate_ok", ok.load()},
      {"validate_latency_ms_p50", Percentile(latency, 0.5)},
      {"validate_latency_ms_p95", Percentile(latency, 0.95)},
      {"validate_per_s", validate / (validate_wall_ms / 1000.0)},
      {"jobs", jobs},
      {"jobs_succeeded", succeeded},
      {"submit_latency_ms_p50", Percentile(submit_ms, 0.5)},
      {"submit_to_first_step_ms_p50", Percentile(fs, 0.5)},
      {"submit_to_first_step_ms_min", fs.empty() ? 0 : *std::min_element(fs.begin(), fs.end())}};
  std::printf("%s\n", out.dump().c_str());
  return ok == validate && succeeded == jobs ? 0 : 1;
}
