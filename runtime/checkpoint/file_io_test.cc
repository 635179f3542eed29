// Tests of AtomicFile, WriteFileAtomic and ReadFile: content, replacement, and that
// nothing is left behind at the target when a write fails or is abandoned.
#include "runtime/checkpoint/file_io.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "runtime/base/env.h"

namespace colossal::checkpoint {
namespace {

namespace fs = std::filesystem;

std::string FreshDir(const std::string& name) {
  std::string dir = *base::GetEnv(base::kEnvTestTmpDir) + "/file_io_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST_CASE("WriteFileAtomic writes and replaces, leaving no tmp file") {
  std::string dir = FreshDir("write");
  std::string path = dir + "/a.bin";
  REQUIRE(WriteFileAtomic(path, "first").ok());
  REQUIRE(ReadFile(path).value() == "first");
  REQUIRE(WriteFileAtomic(path, std::string("sec\0ond", 7)).ok());
  REQUIRE(ReadFile(path).value() == std::string("sec\0ond", 7));
  REQUIRE_FALSE(fs::exists(path + ".tmp"));
  REQUIRE(WriteFileAtomic(path, "").ok());
  REQUIRE(ReadFile(path).value().empty());
}

TEST_CASE("an abandoned AtomicFile keeps the old content and removes its tmp file") {
  std::string dir = FreshDir("abandon");
  std::string path = dir + "/a.txt";
  REQUIRE(WriteFileAtomic(path, "old").ok());
  {
    auto file = AtomicFile::Create(path);
    REQUIRE(file.ok());
    REQUIRE(file->Append("new content").ok());
    REQUIRE(file->bytes_written() == 11);
    REQUIRE(fs::exists(path + ".tmp"));
  }
  REQUIRE_FALSE(fs::exists(path + ".tmp"));
  REQUIRE(ReadFile(path).value() == "old");
}

TEST_CASE("a moved-from AtomicFile does not abandon the moved-to one") {
  std::string dir = FreshDir("move");
  std::string path = dir + "/m.txt";
  auto created = AtomicFile::Create(path);
  REQUIRE(created.ok());
  AtomicFile a = std::move(created).value();
  AtomicFile b = std::move(a);
  REQUIRE(b.Append("xyz").ok());
  REQUIRE(b.Commit().ok());
  REQUIRE(ReadFile(path).value() == "xyz");
  absl::Status again = b.Commit();
  REQUIRE(again.code() == absl::StatusCode::kFailedPrecondition);
  REQUIRE(b.Append("more").code() == absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("a path under a regular file fails and leaves nothing") {
  std::string dir = FreshDir("notdir");
  std::string blocker = dir + "/plain";
  std::ofstream(blocker) << "I am a file";
  std::string path = blocker + "/a.txt";
  absl::Status s = WriteFileAtomic(path, "data");
  REQUIRE_FALSE(s.ok());
  REQUIRE(std::string(s.message()).find(path + ".tmp") != std::string::npos);
  REQUIRE_FALSE(fs::exists(path));
  REQUIRE(ReadFile(blocker).value() == "I am a file");
}

TEST_CASE("ReadFile reports a missing file as NotFound naming it") {
  std::string dir = FreshDir("read");
  absl::StatusOr<std::string> r = ReadFile(dir + "/missing");
  REQUIRE(r.status().code() == absl::StatusCode::kNotFound);
  REQUIRE(std::string(r.status().message()).find(dir + "/missing") != std::string::npos);
  REQUIRE(ReadFile(dir).status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("ParentDir") {
  REQUIRE(ParentDir("a/b/c") == "a/b");
  REQUIRE(ParentDir("c") == ".");
  REQUIRE(ParentDir("/c") == "/");
}

}  // namespace
}  // namespace colossal::checkpoint
