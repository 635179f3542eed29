// Unit tests of the worker pieces that the golden and CLI tests do not pin down on their
// own: the LR schedule at its boundaries, loading Hugging Face-style parameter files,
// and the KV-cache sampler against the training graph's forward pass.
#include <catch2/catch.hpp>

#include <cmath>
#include <deque>
#include <filesystem>
#include <numeric>

#include "graph/models/gpt.h"
#include "runtime/base/env.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/lr_schedule.h"
#include "runtime/worker/model.h"
#include "runtime/worker/sampler.h"
#include "runtime/worker/stored_pieces.h"

namespace colossal::worker {
namespace {

namespace fs = std::filesystem;

config::JobSpec TinySpec() {
  auto spec = config::ParseJobSpec(
      "name: t\n"
      "model: {type: gpt, n_layer: 2, n_head: 2, d_model: 16, seq_len: 8, vocab: 256}\n"
      "data: {train: x.txt}\n"
      "train: {steps: 10, global_batch: 2}\n",
      "<test>");
  REQUIRE(spec.ok());
  return *spec;
}

// Every rank's pieces of a global [R, C] tensor under `splits` (its segment cut into
// `shards` ZeRO-like flat ranges), written to one file per rank and shard and read back.
// Returns the pieces written by all ranks; the whole tensor must read back exactly.
size_t WriteAndReadBack(const std::string& dir, const graph::Shape& global, const std::vector<graph::DimSplit>& splits,
                        int64_t parts, int64_t shards) {
  std::vector<float> whole(graph::NumElements(global));
  std::iota(whole.begin(), whole.end(), 0.0f);
  std::vector<std::string> files;
  size_t pieces = 0;
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (int64_t part = 0; part < parts; ++part) {
    // Rank `part`'s index along each split, the last split fastest.
    std::vector<graph::DimSplit> mine = splits;
    int64_t rest = part;
    for (auto d = mine.rbegin(); d != mine.rend(); ++d) {
      d->part = rest % d->parts;
      rest /= d->parts;
    }
    auto layout = graph::MakeLayout(global, mine);
    REQUIRE(layout.ok());
    const graph::Shape local = graph::LocalShape(*layout);
    // The rank's local tensor, element by element from the whole one.
    std::vector<float> data(graph::NumElements(local));
    for (const graph::ElementRun& r : graph::GlobalRuns(local, *layout, 0, static_cast<int64_t>(data.size()))) {
      std::copy_n(whole.begin() + r.global, r.count, data.begin() + r.local);
    }
    const int64_t n = static_cast<int64_t>(data.size()), per = (n + shards - 1) / shards;
    for (int64_t k = 0; k < shards; ++k) {
      const int64_t offset = std::min(n, k * per), length = std::min(n, offset + per) - offset;
      std::deque<std::vector<float>> gathered;
      std::vector<checkpoint::TensorView> views;
      for (const StoredPiece& p : StoredPieces("w", local, *layout, offset, length)) {
        views.push_back({p.name, "F32", p.shape, p.Data(data.data() + offset, gathered)});
      }
      pieces += views.size();
      files.push_back(dir + "/" + std::to_string(part) + "-" + std::to_string(k) + ".safetensors");
      REQUIRE(checkpoint::WriteSafetensors(files.back(), views, {}).ok());
    }
  }
  auto reader = checkpoint::PieceReader::Open(files);
  REQUIRE(reader.ok());
  std::vector<float> back(whole.size(), -1.0f);
  REQUIRE(reader->ReadF32("w", 0, static_cast<int64_t>(back.size()), back.data()).ok());
  REQUIRE(back == whole);
  return pieces;
}

TEST_CASE("stored pieces: a rank's block of a matrix is one piece (c_attn's thirds three), and reads back") {
  const std::string dir = base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp") + std::string("/stored_pieces");
  // 1d column split of a packed [16, 3·12] c_attn over 2 ranks: each rank's q, k, v
  // thirds are three blocks of 16 rows (gathered, their rows are not back to back).
  CHECK(WriteAndReadBack(dir, {16, 36}, {{1, 2, 0, 3, "tensor"}}, 2, 1) == 2 * 3);
  // A plain column split: one block per rank; a row split: one run per rank.
  CHECK(WriteAndReadBack(dir, {16, 12}, {{1, 4, 0, 1, "tensor"}}, 4, 1) == 4);
  CHECK(WriteAndReadBack(dir, {16, 12}, {{0, 4, 0, 1, "tensor"}}, 4, 1) == 4);
  // 2D blocks of a [12, 8] matrix on a 2 x 2 grid: one piece each.
  CHECK(WriteAndReadBack(dir, {12, 8}, {{0, 2, 0, 1, "row"}, {1, 2, 0, 1, "col"}}, 4, 1) == 4);
  // With ZeRO-like shards of each rank's part cutting rows: a few pieces per shard (the
  // partial rows at its ends and the block between), never one per row.
  const size_t zero = WriteAndReadBack(dir, {16, 36}, {{1, 2, 0, 3, "tensor"}}, 2, 3);
  CHECK(zero <= 2 * 3 * 5);
  // Unsplit, sharded: one 1-D piece per shard.
  CHECK(WriteAndReadBack(dir, {7, 5}, {}, 1, 4) == 4);
}

TEST_CASE("LR schedule: warm-up, cosine, linear, constant at their boundaries") {
  config::OptimizerSpec o;
  o.lr = 1.0;
  config::LrScheduleSpec s;
  s.warmup = 4;
  s.min_lr = 0.1;
  s.decay = config::LrDecay::kCosine;
  REQUIRE(LearningRate(o, s, 0, 14) == Approx(0.25));
  REQUIRE(LearningRate(o, s, 3, 14) == Approx(1.0));
  REQUIRE(LearningRate(o, s, 4, 14) == Approx(1.0));            // p = 0
  REQUIRE(LearningRate(o, s, 9, 14) == Approx(0.1 + 0.45 * (1 + std::cos(M_PI * 5 / 9.0))));
  REQUIRE(LearningRate(o, s, 13, 14) == Approx(0.1));           // p = 1: min_lr
  s.decay = config::LrDecay::kLinear;
  REQUIRE(LearningRate(o, s, 13, 14) == Approx(0.1));
  REQUIRE(LearningRate(o, s, 8, 14) == Approx(1.0 - 0.9 * 4 / 9.0));
  s.decay = config::LrDecay::kConstant;
  REQUIRE(LearningRate(o, s, 12, 14) == Approx(1.0));
  s.warmup = 0;
  s.decay = config::LrDecay::kCosine;
  REQUIRE(LearningRate(o, s, 0, 1) == Approx(1.0));             // one step: no division by 0
}

TEST_CASE("Hugging Face-style files load: prefix, buffers, tied head, longer wpe") {
  config::JobSpec spec = TinySpec();
  auto model = BuildModel(spec, 1);
  REQUIRE(model.ok());
  memory::ParamStore& params = *(*model)->params;
  const fs::path dir = fs::path(base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp")) / "hf";
  fs::create_directories(dir);

  // Every parameter, with value = its index + position/1000; wpe with 20 rows instead of 8.
  std::vector<std::vector<float>> data;
  std::vector<checkpoint::TensorView> views;
  for (int i = 0; i < params.size(); ++i) {
    memory::ParamInfo info = params.info(i);
    std::vector<int64_t> shape = info.shape;
    if (info.name == "wpe.weight") shape[0] = 20;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    data.emplace_back(n);
    for (int64_t j = 0; j < n; ++j) data.back()[j] = i + j / 1000.0f;
  }
  for (int i = 0; i < params.size(); ++i) {
    std::vector<int64_t> shape = params.info(i).shape;
    if (params.info(i).name == "wpe.weight") shape[0] = 20;
    views.push_back({"transformer." + params.info(i).name, "F32", shape, data[i].data()});
  }
  std::vector<float> mask(64, 1.0f);
  views.push_back({"transformer.h.0.attn.bias", "F32", {1, 1, 8, 8}, mask.data()});
  views.push_back({"lm_head.weight", "F32", params.info(params.Find("wte.weight")).shape,
                   data[params.Find("wte.weight")].data()});
  const std::string file = (dir / "hf.safetensors").string();
  REQUIRE(checkpoint::WriteSafetensors(file, views, {}).ok());
  REQUIRE(LoadParams(params, file).ok());
  for (int i = 0; i < params.size(); ++i) {
    for (int64_t j = 0; j < params.info(i).numel; ++j) {
      REQUIRE(params.data(i)[j] == data[i][j]);
    }
  }

  // An unknown extra tensor and a wrong shape are errors naming file and tensor.
  views.push_back({"h.0.attn.rotary", "F32", {4}, mask.data()});
  REQUIRE(checkpoint::WriteSafetensors(file, views, {}).ok());
  auto extra = LoadParams(params, file);
  REQUIRE_THAT(std::string(extra.message()), Catch::Contains("hf.safetensors") &&
                                                 Catch::Contains("h.0.attn.rotary"));
  views.pop_back();
  views[0].shape = {params.info(0).shape[0] - 1, params.info(0).shape[1]};
  REQUIRE(checkpoint::WriteSafetensors(file, views, {}).ok());
  auto shape = LoadParams(params, file);
  REQUIRE_FALSE(shape.ok());
  REQUIRE_THAT(std::string(shape.message()), Catch::Contains(params.info(0).name));
}

TEST_CASE("the KV-cache sampler's logits equal the training graph's forward pass") {
  config::JobSpec spec = TinySpec();
  auto built = BuildModel(spec, 1);
  REQUIRE(built.ok());
  Model& model = **built;
  InitParams(model, 5);
  // Make the model sharp enough that a wrong position or cache would show.
  for (int i = 0; i < model.params->size(); ++i) {
    for (int64_t j = 0; j < model.params->info(i).numel; ++j) model.params->data(i)[j] *= 10.0f;
  }
  const std::vector<int32_t> tokens = {3, 200, 17, 17, 99, 0, 255, 42};
  std::copy(tokens.begin(), tokens.end(), model.executor->Data<int32_t>(model.ids));
  std::fill_n(model.executor->Data<int32_t>(model.targets), 8, 0);
  model.executor->Forward();
  const graph::Graph& g = model.graph;
  const float* logits = model.executor->Data<float>(g.Find("logits"));

  auto sampler = GptSampler::Create(model.gpt, model.params.get());
  REQUIRE(sampler.ok());
  for (int64_t pos = 0; pos < 8; ++pos) {
    const float* step = (*sampler)->Step(tokens[pos], pos);
    double max_err = 0, max_abs = 0;
    for (int64_t v = 0; v < 256; ++v) {
      max_err = std::max(max_err, std::fabs(static_cast<double>(step[v]) - logits[pos * 256 + v]));
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(logits[pos * 256 + v])));
    }
    INFO("position " << pos << ": max |diff| " << max_err << " of max |logit| " << max_abs);
    REQUIRE(max_err <= 1e-4 * max_abs + 1e-5);
  }
}

}  // namespace
}  // namespace colossal::worker
