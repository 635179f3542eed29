// Tests of checkpoint directories: round trip, discovery of the latest complete step
// (ignoring interrupted writes), replacement, pruning, and failed writes that leave
// nothing behind.
#include "runtime/checkpoint/checkpoint.h"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/base/env.h"
#include "runtime/checkpoint/file_io.h"

namespace colossal::checkpoint {
namespace {

namespace fs = std::filesystem;

std::string FreshDir(const std::string& name) {
  std::string dir = *base::GetEnv(base::kEnvTestTmpDir) + "/checkpoint_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool Contains(const absl::Status& s, const std::string& what) {
  return std::string(s.message()).find(what) != std::string::npos;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A tiny model + optimizer whose values depend on `seed`.
struct State {
  std::vector<float> w;
  std::vector<uint16_t> emb;  // BF16 bits.
  std::vector<float> m;
  std::vector<int64_t> t;
  std::vector<TensorView> model;
  std::vector<TensorView> optimizer;

  explicit State(float seed) {
    w = {seed, seed + 1, seed + 2, seed + 3, seed + 4, seed + 5};
    emb = {0x3f80, static_cast<uint16_t>(seed)};
    m = {seed / 2, -seed};
    t = {static_cast<int64_t>(seed) * 1000};
    model = {{"h.0.w", "F32", {2, 3}, w.data()}, {"wte", "BF16", {2}, emb.data()}};
    optimizer = {{"h.0.w.exp_avg", "F32", {2}, m.data()}, {"step", "I64", {1}, t.data()}};
  }
};

absl::Status Write(const std::string& dir, int64_t step, float seed, int64_t keep) {
  State s(seed);
  return WriteCheckpoint(dir, step, s.model, s.optimizer,
                         "{\"step\": " + std::to_string(step) + "}", keep);
}

float FirstWeight(const std::string& step_dir) {
  auto ckpt = ReadCheckpoint(step_dir);
  REQUIRE(ckpt.ok());
  std::vector<float> w(6);
  std::vector<int64_t> shape = {2, 3};
  REQUIRE(ckpt->model.CopyF32("h.0.w", shape, w).ok());
  return w[0];
}

void MakeStepDir(const std::string& path, bool with_optimizer) {
  fs::create_directories(path);
  std::ofstream(path + "/model.safetensors") << "x";
  if (with_optimizer) std::ofstream(path + "/optimizer.safetensors") << "x";
  std::ofstream(path + "/state.json") << "{}";
}

TEST_CASE("a checkpoint round-trips model, optimizer, metadata and state") {
  std::string dir = FreshDir("roundtrip") + "/run/ckpt";  // Created on demand.
  State s(3.0f);
  REQUIRE(WriteCheckpoint(dir, 10, s.model, s.optimizer, R"({"step": 10, "rng": [1, 2]})", 0)
              .ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{"step-10"});
  REQUIRE(Entries(dir + "/step-10") ==
          std::vector<std::string>{"model.safetensors", "optimizer.safetensors", "state.json"});

  auto latest = LatestCheckpoint(dir);
  REQUIRE(latest.ok());
  REQUIRE(latest->value() == dir + "/step-10");
  REQUIRE(CheckpointStep(**latest).value() == 10);

  auto ckpt = ReadCheckpoint(**latest);
  REQUIRE(ckpt.ok());
  REQUIRE(ckpt->step == 10);
  REQUIRE(ckpt->path == dir + "/step-10");
  REQUIRE(ckpt->state_json == R"({"step": 10, "rng": [1, 2]})");
  REQUIRE(ckpt->model.metadata() ==
          std::map<std::string, std::string>{{"format", "pt"}, {"colossal_step", "10"}});
  REQUIRE(ckpt->optimizer.metadata() ==
          std::map<std::string, std::string>{{"colossal_step", "10"}});

  std::vector<float> w(6);
  std::vector<int64_t> shape = {2, 3};
  REQUIRE(ckpt->model.CopyF32("h.0.w", shape, w).ok());
  REQUIRE(w == s.w);
  uint16_t emb[2];
  std::vector<int64_t> two = {2};
  REQUIRE(ckpt->model.CopyTensor("wte", "BF16", two, emb, sizeof(emb)).ok());
  REQUIRE(emb[0] == 0x3f80);
  REQUIRE(emb[1] == 3);
  int64_t t = 0;
  std::vector<int64_t> one = {1};
  REQUIRE(ckpt->optimizer.CopyTensor("step", "I64", one, &t, 8).ok());
  REQUIRE(t == 3000);
}

TEST_CASE("LatestCheckpoint compares steps numerically and ignores interrupted writes") {
  std::string dir = FreshDir("latest");
  REQUIRE_FALSE(LatestCheckpoint(dir).value().has_value());
  REQUIRE_FALSE(LatestCheckpoint(dir + "/does/not/exist").value().has_value());

  REQUIRE(Write(dir, 5, 1, 0).ok());
  REQUIRE(Write(dir, 20, 2, 0).ok());
  REQUIRE(Write(dir, 100, 3, 0).ok());  // "step-100" < "step-20" as strings.
  // Interrupted writes and look-alikes, all with higher steps:
  MakeStepDir(dir + "/.step-200.tmp-12345", /*with_optimizer=*/true);   // Not yet renamed.
  MakeStepDir(dir + "/step-300", /*with_optimizer=*/false);             // Missing a file.
  MakeStepDir(dir + "/step-0400", /*with_optimizer=*/true);             // Not canonical.
  MakeStepDir(dir + "/step-4x", /*with_optimizer=*/true);
  std::ofstream(dir + "/step-500") << "a file, not a directory";
  fs::create_directories(dir + "/step-600/model.safetensors");          // A dir, not a file.
  std::ofstream(dir + "/step-600/optimizer.safetensors") << "x";
  std::ofstream(dir + "/step-600/state.json") << "{}";

  auto latest = LatestCheckpoint(dir);
  REQUIRE(latest.ok());
  REQUIRE(latest->value() == dir + "/step-100");
  REQUIRE(FirstWeight(**latest) == 3.0f);
}

TEST_CASE("LatestCheckpoint on a path that is a regular file is an error") {
  std::string dir = FreshDir("latest_file");
  std::ofstream(dir + "/plain") << "x";
  auto latest = LatestCheckpoint(dir + "/plain");
  REQUIRE_FALSE(latest.ok());
  REQUIRE(Contains(latest.status(), dir + "/plain"));
}

TEST_CASE("keep=2 prunes the oldest complete checkpoints and stale tmp dirs") {
  std::string dir = FreshDir("prune");
  // A stale tmp dir from a dead process, one from a live process (our parent),
  // and an incomplete step directory: only the first may be removed.
  MakeStepDir(dir + "/.step-9.tmp-2147483646", true);
  MakeStepDir(dir + "/.step-8.old-2147483646", true);
  std::string live = dir + "/.step-9.tmp-" + std::to_string(::getppid());
  MakeStepDir(live, true);
  MakeStepDir(dir + "/step-0", false);

  REQUIRE(Write(dir, 1, 1, 2).ok());
  REQUIRE(Write(dir, 2, 2, 2).ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{
                              ".step-9.tmp-" + std::to_string(::getppid()), "step-0", "step-1",
                              "step-2"});
  REQUIRE(Write(dir, 3, 3, 2).ok());
  REQUIRE(Write(dir, 4, 4, 2).ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{
                              ".step-9.tmp-" + std::to_string(::getppid()), "step-0", "step-3",
                              "step-4"});
  REQUIRE(FirstWeight(dir + "/step-3") == 3.0f);
  REQUIRE(FirstWeight(dir + "/step-4") == 4.0f);

  // The checkpoint just written is never pruned, even when older than the others.
  REQUIRE(Write(dir, 2, 22, 2).ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{
                              ".step-9.tmp-" + std::to_string(::getppid()), "step-0", "step-2",
                              "step-4"});

  // keep=0 keeps everything.
  REQUIRE(Write(dir, 5, 5, 0).ok());
  REQUIRE(Write(dir, 6, 6, 0).ok());
  REQUIRE(Entries(dir).size() == 6);
  // keep=1 keeps only the new one.
  REQUIRE(Write(dir, 7, 7, 1).ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{
                              ".step-9.tmp-" + std::to_string(::getppid()), "step-0", "step-7"});
}

TEST_CASE("rewriting a step replaces it") {
  std::string dir = FreshDir("replace");
  REQUIRE(Write(dir, 7, 1, 0).ok());
  REQUIRE(Write(dir, 7, 2, 0).ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{"step-7"});
  REQUIRE(FirstWeight(dir + "/step-7") == 2.0f);
}

TEST_CASE("a failed write leaves nothing new and keeps an existing step") {
  std::string dir = FreshDir("failed");
  REQUIRE(Write(dir, 7, 1, 0).ok());

  // Fails after the tmp dir and model.safetensors exist: bad optimizer dtype.
  State s(9.0f);
  s.optimizer[0].dtype = "F33";
  absl::Status st = WriteCheckpoint(dir, 7, s.model, s.optimizer, "{}", 0);
  REQUIRE(st.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(st, "optimizer.safetensors"));
  REQUIRE(Contains(st, "unknown dtype 'F33'"));
  st = WriteCheckpoint(dir, 8, s.model, s.optimizer, "{}", 0);
  REQUIRE_FALSE(st.ok());
  REQUIRE(Entries(dir) == std::vector<std::string>{"step-7"});
  REQUIRE(FirstWeight(dir + "/step-7") == 1.0f);

  // Invalid state JSON.
  State good(9.0f);
  st = WriteCheckpoint(dir, 8, good.model, good.optimizer, "{not json", 0);
  REQUIRE(st.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(st, dir + "/step-8"));
  REQUIRE(Contains(st, "state.json"));
  REQUIRE(Entries(dir) == std::vector<std::string>{"step-7"});

  REQUIRE(WriteCheckpoint(dir, -1, good.model, good.optimizer, "{}", 0).code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(WriteCheckpoint(dir, 1, good.model, good.optimizer, "{}", -1).code() ==
          absl::StatusCode::kInvalidArgument);
  REQUIRE(Entries(dir) == std::vector<std::string>{"step-7"});
}

TEST_CASE("a checkpoint dir under a regular file fails and creates nothing") {
  std::string dir = FreshDir("notdir");
  std::ofstream(dir + "/plain") << "x";
  absl::Status st = Write(dir + "/plain/ckpt", 1, 1, 0);
  REQUIRE_FALSE(st.ok());
  REQUIRE(Contains(st, dir + "/plain/ckpt"));
  REQUIRE(Entries(dir) == std::vector<std::string>{"plain"});
  REQUIRE(ReadFile(dir + "/plain").value() == "x");
}

TEST_CASE("ReadCheckpoint reports a corrupt file by name") {
  std::string dir = FreshDir("corrupt");
  REQUIRE(Write(dir, 3, 1, 0).ok());
  std::string model = dir + "/step-3/model.safetensors";
  std::string bytes = ReadFile(model).value();
  REQUIRE(WriteFileAtomic(model, bytes.substr(0, bytes.size() - 1)).ok());
  auto ckpt = ReadCheckpoint(dir + "/step-3");
  REQUIRE(ckpt.status().code() == absl::StatusCode::kDataLoss);
  REQUIRE(Contains(ckpt.status(), model));

  REQUIRE(Write(dir, 4, 1, 0).ok());
  REQUIRE(WriteFileAtomic(dir + "/step-4/state.json", "{").ok());
  ckpt = ReadCheckpoint(dir + "/step-4");
  REQUIRE(ckpt.status().code() == absl::StatusCode::kDataLoss);
  REQUIRE(ckpt.status().message() == dir + "/step-4/state.json: not valid JSON");
}

TEST_CASE("CheckpointStep parses step-<N> and nothing else") {
  REQUIRE(CheckpointStep("runs/x/step-12").value() == 12);
  REQUIRE(CheckpointStep("runs/x/step-12/").value() == 12);
  REQUIRE(CheckpointStep("step-0").value() == 0);
  REQUIRE(CheckpointStep("/a/step-9223372036854775807").value() == INT64_MAX);
  for (const char* bad : {"runs/x/step-", "runs/x/step-012", "runs/x/step-1x", "runs/x/foo",
                          "step--1", "/a/step-9223372036854775808", ".step-3.tmp-1"}) {
    absl::StatusOr<int64_t> r = CheckpointStep(bad);
    REQUIRE(r.status().code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(Contains(r.status(), bad));
  }
  REQUIRE(StepDir("runs/x", 42) == "runs/x/step-42");
}

}  // namespace
}  // namespace colossal::checkpoint
