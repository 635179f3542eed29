// Unit tests of the worker pieces that the golden and CLI tests do not pin down on their
// own: the LR schedule at its boundaries, loading Hugging Face-style parameter files,
// and the KV-cache sampler against the training graph's forward pass.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "graph/models/gpt.h"
#include "runtime/base/env.h"
#include "runtime/checkpoint/safetensors.h"
#include "runtime/config/job_spec.h"
#include "runtime/worker/lr_schedule.h"
#include "runtime/worker/model.h"
#include "runtime/worker/sampler.h"

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
