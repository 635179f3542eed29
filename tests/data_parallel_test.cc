// Data parallelism and ZeRO 0–2 against one rank: the per-step losses of a small GPT
// trained with N ranks (threads over the in-process communicator) equal those of one
// rank within 1e-5 relative, and so do the final weights, for AdamW and LAMB, with and
// without gradient accumulation; a sharded checkpoint resumes under another degree and
// ZeRO stage with the same losses. (The same runs across processes over UCX are in
// tests/multiprocess; these keep the logic covered in seconds.)
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <thread>

#include "parallel/comm/local/local_communicator.h"
#include "runtime/base/env.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/pieces.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/trainer.h"

namespace colossal {
namespace {

namespace fs = std::filesystem;

struct Result {
  std::vector<double> losses;
  std::vector<double> val;
  std::map<std::string, std::vector<float>> weights;  // final model.safetensors
};

fs::path Scratch(const std::string& leaf) {
  fs::path p = fs::path(base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp")) / leaf;
  fs::remove_all(p);
  return p;
}

std::string Job(const std::string& optimizer, int data, int zero, int micro, int steps,
                const fs::path& dir) {
  const std::string corpus = fs::absolute("tests/golden/adamw/corpus.txt").string();
  return "name: dp\n"
         "run_dir: " + dir.string() + "\n"
         "model: {type: gpt, n_layer: 2, n_head: 2, d_model: 32, seq_len: 16, vocab: 256}\n"
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
         "parallel: {data: " + std::to_string(data) + ", zero: " + std::to_string(zero) + "}\n"
         "resources: {ranks_per_node: " + std::to_string(data) + "}\n";
}

Result Train(const std::string& yaml, int ranks, const std::vector<std::string>& sets = {}) {
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
      if (ranks > 1) options.data_parallel = comm.get();
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
    REQUIRE(model.ok());
    for (const std::string& name : model->Names()) {
      std::vector<float> v(model->CoveredElements(name));
      REQUIRE(model->ReadF32(name, 0, static_cast<int64_t>(v.size()), v.data()).ok());
      result.weights[name] = std::move(v);
    }
  }
  return result;
}

// Final weights within 1e-5 relative (+1e-6 absolute), except the attention key bias
// (c_attn.bias[C, 2C)): its exact gradient is zero (a constant added to every key score
// of a row leaves the softmax unchanged), so its fp32 gradient is rounding noise whose
// sign depends on summation order, and Adam-style updates turn that noise into steps of
// ±lr. Those elements may differ by the sum of the learning rates (< 0.1 here).
void RequireSameWeights(const std::map<std::string, std::vector<float>>& a,
                        const std::map<std::string, std::vector<float>>& b) {
  constexpr size_t kC = 32;
  REQUIRE(a.size() == b.size());
  for (const auto& [name, wa] : a) {
    const std::vector<float>& wb = b.at(name);
    const bool key_bias = name.size() > 16 && name.compare(name.size() - 16, 16, "attn.c_attn.bias") == 0;
    for (size_t i = 0; i < wa.size(); ++i) {
      INFO(name << "[" << i << "]: " << wa[i] << " vs " << wb[i]);
      const double bound = key_bias && i >= kC && i < 2 * kC ? 0.1 : 1e-5 * std::fabs(wa[i]) + 1e-6;
      REQUIRE(std::fabs(wa[i] - wb[i]) <= bound);
    }
  }
}

void RequireSame(const Result& a, const Result& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.losses.size() == b.losses.size());
  for (size_t s = 0; s < a.losses.size(); ++s) {
    INFO("step " << s + 1 << ": " << a.losses[s] << " vs " << b.losses[s]);
    REQUIRE(std::fabs(a.losses[s] - b.losses[s]) <= 1e-5 * std::fabs(a.losses[s]));
  }
  REQUIRE(a.val.size() == b.val.size());
  for (size_t i = 0; i < a.val.size(); ++i) REQUIRE(std::fabs(a.val[i] - b.val[i]) <= 1e-5 * a.val[i]);
  RequireSameWeights(a.weights, b.weights);
}

TEST_CASE("data parallel with ZeRO 0, 1, 2 equals one rank (AdamW and LAMB)") {
  for (const std::string opt : {"adamw", "lamb"}) {
    const Result one = Train(Job(opt, 1, 0, 2, 10, Scratch("one-" + opt)), 1);
    REQUIRE(one.losses.size() == 10);
    REQUIRE(one.losses.back() < one.losses.front());
    for (int zero : {0, 1, 2}) {
      // 2 ranks, micro-batch 2: 2 accumulation steps per rank.
      RequireSame(one, Train(Job(opt, 2, zero, 2, 10, Scratch("two")), 2),
                  opt + " 2 ranks zero " + std::to_string(zero));
    }
    // 4 ranks without accumulation (micro-batch 2) and with it (micro-batch 1).
    RequireSame(one, Train(Job(opt, 4, 2, 2, 10, Scratch("four")), 4), opt + " 4 ranks zero 2");
    RequireSame(one, Train(Job(opt, 4, 1, 1, 10, Scratch("four-acc")), 4),
                opt + " 4 ranks zero 1 accumulation");
    // ZeRO 3 with small parameter groups (so gathering, prefetching and releasing happen
    // within every pass), with and without accumulation.
    RequireSame(one, Train(Job(opt, 2, 3, 2, 10, Scratch("z3-two")), 2, {"parallel.bucket=16KiB"}),
                opt + " 2 ranks zero 3");
    RequireSame(one, Train(Job(opt, 4, 3, 1, 10, Scratch("z3-four")), 4, {"parallel.bucket=8KiB"}),
                opt + " 4 ranks zero 3 accumulation");
  }
}

TEST_CASE("a sharded checkpoint resumes under another degree and ZeRO stage") {
  const Result straight = Train(Job("lamb", 1, 0, 2, 8, Scratch("straight")), 1);
  const fs::path dir = Scratch("resharded");
  // 2 ranks, ZeRO 1: checkpoints every 4 steps; the one at step 8 is dropped to resume at 4.
  Train(Job("lamb", 2, 1, 2, 8, dir), 2, {"train.checkpoint.every=4"});
  fs::remove_all(checkpoint::StepDir((dir / "checkpoints").string(), 8));
  REQUIRE(fs::exists(checkpoint::StepDir((dir / "checkpoints").string(), 4) + "/optimizer-1.safetensors"));
  // Resume on 4 ranks with ZeRO 2, on 2 with ZeRO 3, and on 1 rank: steps 5..8 as if
  // never stopped.
  for (auto [ranks, zero] : {std::pair{4, 2}, std::pair{2, 3}, std::pair{1, 0}}) {
    fs::path again = Scratch("again");
    fs::copy(dir, again, fs::copy_options::recursive);
    fs::remove_all(checkpoint::StepDir((again / "checkpoints").string(), 8));
    std::string yaml = Job("lamb", ranks, zero, 2, 8, again);
    Result resumed = Train(yaml, ranks, {"parallel.bucket=16KiB"});
    REQUIRE(resumed.losses.size() == 4);
    for (size_t s = 0; s < 4; ++s) {
      INFO("ranks " << ranks << " step " << s + 5);
      REQUIRE(std::fabs(resumed.losses[s] - straight.losses[s + 4]) <= 1e-5 * straight.losses[s + 4]);
    }
    RequireSameWeights(straight.weights, resumed.weights);
  }
}

}  // namespace
}  // namespace colossal
