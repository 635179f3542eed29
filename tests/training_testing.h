// Shared by the cross-module training tests: a small GPT job, training it on N ranks as
// threads over the in-process communicator (parallel/comm/local) with the process
// groups of its plan, and the equality checks of a parallel run against one rank.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "parallel/comm/local/local_communicator.h"
#include "parallel/plan.h"
#include "parallel/process_groups.h"
#include "runtime/base/env.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/trainer.h"
#include "tests/weight_bounds.h"

namespace colossal::testing {

namespace fs = std::filesystem;

struct Result {
  std::vector<double> losses;
  std::vector<double> val;
  std::map<std::string, std::vector<float>> weights;  // final model.safetensors
};

inline fs::path Scratch(const std::string& leaf) {
  fs::path p = fs::path(base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp")) / leaf;
  fs::remove_all(p);
  return p;
}

// A small GPT job on the golden corpus: `data` x `tensor` ranks, ZeRO `zero`,
// micro-batch `micro` of the global batch 8, `heads` attention heads, Megatron sequence
// parallelism when `sequence_parallel`, tensor mode `mode`.
inline std::string Job(const std::string& optimizer, int data, int zero, int micro, int steps,
                       const fs::path& dir, int tensor = 1, int heads = 2,
                       bool sequence_parallel = false, const std::string& mode = "1d") {
  const std::string corpus = fs::absolute("tests/golden/adamw/corpus.txt").string();
  return "name: dp\n"
         "run_dir: " + dir.string() + "\n"
         "model: {type: gpt, n_layer: 2, n_head: " + std::to_string(heads) +
         ", d_model: 32, seq_len: 16, vocab: 256}\n"
         "data: {train: " + corpus + ", val_fraction: 0.1, shuffle: true}\n"
         "train:\n"
         "  steps: " + std::to_string(steps) + "\n"
         "  global_batch: 8\n"
         "  micro_batch: " + std::to_string(micro) + "\n"
         "  optimizer: {type: " + optimizer + ", lr: 1.0e-2, weight_decay: 0.1, no_decay: [bias, ln_]}\n"
         "  lr_schedule: {warmup: 2, decay: cosine, min_lr: 1.0e-3}\n"
         "  grad_clip: 1.0\n"
         "  seed: 7\n"
         "  val_every: 5\n"
         "  val_batches: 4\n"
         "  checkpoint: {every: 0, keep: 0}\n"
         "parallel: {data: " + std::to_string(data) + ", zero: " + std::to_string(zero) +
         ", tensor: {size: " + std::to_string(tensor) + ", mode: " + mode +
         (sequence_parallel ? ", sequence_parallel: true" : "") + "}}\n"
         "resources: {ranks_per_node: " + std::to_string(data * tensor) + "}\n";
}

// Trains `yaml` on `ranks` threads over the in-process communicator, each with the
// process groups of the job's plan; returns rank 0's losses and the final weights
// (consolidated from whatever pieces the checkpoint holds).
// `place` (null: the host) is every rank's TrainOptions::place.
inline Result Train(const std::string& yaml, int ranks, const std::vector<std::string>& sets = {},
                    const memory::Place* place = nullptr) {
  auto spec = config::ParseJobSpec(yaml, "dp.yaml", sets);
  INFO(spec.status().message());
  REQUIRE(spec.ok());
  Result result;
  auto group = parallel::LocalGroup::Create(ranks, std::chrono::seconds(60));
  std::vector<absl::Status> statuses(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      auto comm = group->Member(r);
      worker::TrainOptions options;
      options.threads = 1;
      options.progress = 0;
      options.print_sample = false;
      options.place = place;
      auto plan = parallel::Plan::Create(worker::PlanOptionsOf(spec->parallel), ranks);
      if (!plan.ok()) {
        statuses[r] = plan.status();
        return;
      }
      auto groups = parallel::ProcessGroups::Create(*plan, ranks > 1 ? comm.get() : nullptr);
      if (!groups.ok()) {
        statuses[r] = groups.status();
        return;
      }
      if (ranks > 1) options.groups = groups->get();
      if (r == 0) {
        options.on_step = [&](const worker::StepReport& s) { result.losses.push_back(s.loss); };
        options.on_val = [&](int64_t, double v) { result.val.push_back(v); };
      }
      statuses[r] = worker::Train(*spec, options).status();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < ranks; ++r) {
    INFO("rank " << r << ": " << statuses[r].message());
    REQUIRE(statuses[r].ok());
  }
  auto latest = checkpoint::LatestCheckpoint(spec->train.checkpoint.dir);
  REQUIRE(latest.ok());
  if (*latest) {
    // Whole tensors, or pieces in every rank's model file (ZeRO 3).
    auto files = checkpoint::StepFiles(**latest, "model");
    REQUIRE(files.ok());
    auto model = checkpoint::PieceReader::Open(*files);
    INFO(model.status().message());
    REQUIRE(model.ok());
    for (const std::string& name : model->Names()) {
      std::vector<float> v(model->CoveredElements(name));
      REQUIRE(model->ReadF32(name, 0, static_cast<int64_t>(v.size()), v.data()).ok());
      result.weights[name] = std::move(v);
    }
  }
  return result;
}

// Every tensor of `a` and `b` within `bounds` (weight_bounds.h); prints the worst figures.
inline void RequireSameWeights(const std::map<std::string, std::vector<float>>& a,
                               const std::map<std::string, std::vector<float>>& b,
                               Bounds bounds = Bounds::kTight) {
  REQUIRE(a.size() == b.size());
  double worst_of_rms = 0, worst_norm = 0;
  for (const auto& [name, wa] : a) {
    REQUIRE(b.count(name) == 1);
    const TensorComparison c = CompareTensor(name, wa, b.at(name), bounds);
    INFO(c.failure);
    REQUIRE(c.ok);
    worst_of_rms = std::max(worst_of_rms, c.worst_of_rms);
    if (c.norm_checked) worst_norm = std::max(worst_norm, c.norm_relative);
  }
  std::fprintf(stderr, "weights: worst element %.2g of its tensor's rms, worst tensor %.2g in norm\n",
               worst_of_rms, worst_norm);
}

inline void RequireSame(const Result& a, const Result& b, const std::string& what,
                        Bounds bounds = Bounds::kTight) {
  INFO(what);
  REQUIRE(a.losses.size() == b.losses.size());
  for (size_t s = 0; s < a.losses.size(); ++s) {
    INFO("step " << s + 1 << ": " << a.losses[s] << " vs " << b.losses[s]);
    REQUIRE(std::fabs(a.losses[s] - b.losses[s]) <= 1e-5 * std::fabs(a.losses[s]));
  }
  REQUIRE(a.val.size() == b.val.size());
  for (size_t i = 0; i < a.val.size(); ++i) REQUIRE(std::fabs(a.val[i] - b.val[i]) <= 1e-5 * a.val[i]);
  RequireSameWeights(a.weights, b.weights, bounds);
}

// Runs of the same arithmetic in other memory or through another code path: per-step
// losses and validation losses within `rtol` relative, each weight within `rtol` of its
// tensor's largest magnitude; rtol 0 asks for equal losses and bit-identical weights.
inline void RequireSameRun(const Result& a, const Result& b, const std::string& what, double rtol = 0) {
  INFO(what);
  REQUIRE(a.losses.size() == b.losses.size());
  REQUIRE(!a.losses.empty());
  for (size_t s = 0; s < a.losses.size(); ++s) {
    INFO("step " << s + 1 << ": " << a.losses[s] << " vs " << b.losses[s]);
    CHECK(std::fabs(a.losses[s] - b.losses[s]) <= rtol * std::fabs(a.losses[s]));
  }
  REQUIRE(a.val.size() == b.val.size());
  for (size_t i = 0; i < a.val.size(); ++i) CHECK(std::fabs(a.val[i] - b.val[i]) <= rtol * std::fabs(a.val[i]));
  REQUIRE(a.weights.size() == b.weights.size());
  REQUIRE(!a.weights.empty());
  for (const auto& [name, wa] : a.weights) {
    INFO(name);
    REQUIRE(b.weights.count(name) == 1);
    const std::vector<float>& wb = b.weights.at(name);
    REQUIRE(wb.size() == wa.size());
    if (rtol == 0) {
      CHECK(std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)) == 0);
      continue;
    }
    float largest = 0, worst = 0;
    for (size_t i = 0; i < wa.size(); ++i) {
      largest = std::max(largest, std::fabs(wa[i]));
      worst = std::max(worst, std::fabs(wa[i] - wb[i]));
    }
    CHECK(worst <= static_cast<float>(rtol) * largest);
  }
}

}  // namespace colossal::testing
