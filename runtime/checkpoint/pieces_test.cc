// PieceReader: ranges across whole tensors and pieces in several files, gaps and
// overlaps; sharded checkpoints: shard files moved into the step directory.
#include <catch2/catch.hpp>

#include <filesystem>
#include <numeric>

#include "runtime/base/env.h"
#include "runtime/checkpoint/checkpoint.h"
#include "runtime/checkpoint/pieces.h"

namespace colossal::checkpoint {
namespace {

namespace fs = std::filesystem;

fs::path Tmp(const std::string& leaf) {
  fs::path p = fs::path(base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp")) / leaf;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST_CASE("ranges read across pieces in several files equal the whole tensor") {
  fs::path dir = Tmp("pieces");
  std::vector<float> full(37);
  std::iota(full.begin(), full.end(), 0.0f);
  // Three ranks' pieces of "w" (10 + 10 + 17 elements) and "b" whole.
  std::vector<float> bias = {1, 2, 3};
  std::vector<TensorView> r0 = {{PieceName("w", 0), "F32", {10}, full.data()},
                                {"b", "F32", {3}, bias.data()}};
  std::vector<TensorView> r1 = {{PieceName("w", 10), "F32", {10}, full.data() + 10}};
  std::vector<TensorView> r2 = {{PieceName("w", 20), "F32", {17}, full.data() + 20}};
  REQUIRE(WriteSafetensors((dir / "0.safetensors").string(), r0, {}).ok());
  REQUIRE(WriteSafetensors((dir / "1.safetensors").string(), r1, {}).ok());
  REQUIRE(WriteSafetensors((dir / "2.safetensors").string(), r2, {}).ok());
  auto reader = PieceReader::Open({(dir / "2.safetensors").string(), (dir / "0.safetensors").string(),
                                   (dir / "1.safetensors").string()});
  REQUIRE(reader.ok());
  REQUIRE(reader->Names() == std::vector<std::string>{"b", "w"});
  REQUIRE(reader->CoveredElements("w") == 37);
  REQUIRE(reader->WholeShape("b") != nullptr);
  REQUIRE(reader->WholeShape("w") == nullptr);
  for (auto [off, n] : {std::pair{0, 37}, std::pair{5, 10}, std::pair{9, 2}, std::pair{19, 18}, std::pair{36, 1}}) {
    std::vector<float> out(n, -1);
    REQUIRE(reader->ReadF32("w", off, n, out.data()).ok());
    for (int i = 0; i < n; ++i) REQUIRE(out[i] == full[off + i]);
  }
  std::vector<float> b(3);
  REQUIRE(reader->ReadF32("b", 1, 2, b.data()).ok());
  REQUIRE(b[0] == 2);
  REQUIRE(b[1] == 3);

  // A missing piece is an error naming the tensor and the first uncovered element.
  auto partial = PieceReader::Open({(dir / "0.safetensors").string(), (dir / "2.safetensors").string()});
  REQUIRE(partial.ok());
  std::vector<float> out(37);
  auto gap = partial->ReadF32("w", 0, 37, out.data());
  REQUIRE(absl::IsNotFound(gap));
  REQUIRE_THAT(std::string(gap.message()), Catch::Contains("'w': element 10"));
  // Overlapping pieces are rejected at open.
  auto twice = PieceReader::Open({(dir / "1.safetensors").string(), (dir / "1.safetensors").string()});
  REQUIRE_THAT(std::string(twice.status().message()), Catch::Contains("overlap"));
}

TEST_CASE("block pieces: a 2-D block of a matrix is one piece; rows read back by global offset") {
  fs::path dir = Tmp("blocks");
  // A [6, 10] matrix in 2 x 2 blocks of [3, 5], one file per block, plus a 1-D piece of
  // another tensor beside them.
  std::vector<float> full(60);
  std::iota(full.begin(), full.end(), 0.0f);
  std::vector<std::string> files;
  std::vector<std::vector<float>> blocks;
  for (int bi = 0; bi < 2; ++bi) {
    for (int bj = 0; bj < 2; ++bj) {
      std::vector<float> b;
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 5; ++c) b.push_back(full[(bi * 3 + r) * 10 + bj * 5 + c]);
      blocks.push_back(std::move(b));
      const int64_t offset = bi * 3 * 10 + bj * 5;
      REQUIRE(BlockPieceName("m", offset, 10) == "m@" + std::to_string(offset) + ":10");
      std::vector<TensorView> views = {{BlockPieceName("m", offset, 10), "F32", {3, 5}, blocks.back().data()}};
      files.push_back((dir / (std::to_string(bi * 2 + bj) + ".safetensors")).string());
      REQUIRE(WriteSafetensors(files.back(), views, {}).ok());
    }
  }
  auto reader = PieceReader::Open(files);
  REQUIRE(reader.ok());
  REQUIRE(reader->CoveredElements("m") == 60);
  for (auto [off, n] : {std::pair{0, 60}, std::pair{3, 9}, std::pair{27, 11}, std::pair{59, 1}}) {
    std::vector<float> out(n, -1);
    REQUIRE(reader->ReadF32("m", off, n, out.data()).ok());
    for (int i = 0; i < n; ++i) REQUIRE(out[i] == full[off + i]);
  }
  // Three of the four blocks leave a gap named by its first element; a block wider than
  // its stride, or overlapping another, is refused at open.
  auto three = PieceReader::Open({files[0], files[1], files[3]});
  REQUIRE(three.ok());
  std::vector<float> out(60);
  REQUIRE_THAT(std::string(three->ReadF32("m", 0, 60, out.data()).message()), Catch::Contains("element 30"));
  std::vector<TensorView> wide = {{BlockPieceName("x", 0, 4), "F32", {3, 5}, blocks[0].data()}};
  REQUIRE(WriteSafetensors((dir / "wide.safetensors").string(), wide, {}).ok());
  REQUIRE_THAT(std::string(PieceReader::Open({(dir / "wide.safetensors").string()}).status().message()),
               Catch::Contains("width <= its stride"));
  std::vector<TensorView> shifted = {{BlockPieceName("m", 12, 10), "F32", {3, 5}, blocks[0].data()}};
  REQUIRE(WriteSafetensors((dir / "shifted.safetensors").string(), shifted, {}).ok());
  REQUIRE_THAT(std::string(PieceReader::Open({files[0], (dir / "shifted.safetensors").string()}).status().message()),
               Catch::Contains("overlap"));
}

TEST_CASE("shard files staged by other ranks move into the published step directory") {
  fs::path dir = Tmp("sharded");
  float x = 1;
  std::vector<TensorView> model = {{"m", "F32", {1}, &x}};
  std::vector<TensorView> opt0 = {{PieceName("m.exp_avg", 0), "F32", {1}, &x}};
  const std::string staging = StagingDir(dir.string(), 3);
  fs::create_directories(staging);
  const std::string shard = ShardFile(staging, "optimizer", 1);
  REQUIRE(WriteSafetensors(shard, opt0, {}).ok());
  REQUIRE(WriteCheckpoint(dir.string(), 3, model, opt0, "{}", 0, std::vector<std::string>{shard}).ok());
  REQUIRE(fs::exists(StepDir(dir.string(), 3) + "/optimizer-1.safetensors"));
  auto model_files = StepFiles(StepDir(dir.string(), 3), "model");
  REQUIRE(model_files.ok());
  REQUIRE(*model_files == std::vector<std::string>{StepDir(dir.string(), 3) + "/model.safetensors"});
  auto optimizer_files = StepFiles(StepDir(dir.string(), 3), "optimizer");
  REQUIRE(optimizer_files.ok());
  REQUIRE(*optimizer_files == std::vector<std::string>{StepDir(dir.string(), 3) + "/optimizer-1.safetensors",
                                                       StepDir(dir.string(), 3) + "/optimizer.safetensors"});
  REQUIRE_FALSE(fs::exists(staging));  // staging of a published step is pruned
  auto latest = LatestCheckpoint(dir.string());
  REQUIRE(latest.ok());
  REQUIRE(*latest == StepDir(dir.string(), 3));
}

}  // namespace
}  // namespace colossal::checkpoint
