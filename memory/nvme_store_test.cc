// NvmeStore's contract: random whole slots round-trip through both engines with many I/Os
// in flight from several threads, the byte counters equal what moved, and the file is gone
// from the directory once Open returns; Open refuses a missing, non-directory or
// unwritable dir, a bad size and a reservation larger than the disk, naming the dir.
#include "memory/nvme_store.h"

#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/base/env.h"

namespace colossal::memory {
namespace {

namespace fs = std::filesystem;

// A fresh directory under TEST_TMPDIR (Bazel's) or /tmp, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string path = base::GetEnv(base::kEnvTestTmpDir).value_or("/tmp") + "/nvme_store_test-XXXXXX";
    REQUIRE(::mkdtemp(path.data()) != nullptr);
    path_ = path;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, ec);
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  int Entries() const {
    int n = 0;
    for ([[maybe_unused]] const fs::directory_entry& e : fs::directory_iterator(path_)) ++n;
    return n;
  }

 private:
  std::string path_;
};

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

AlignedBuffer MakeBuffer(int64_t bytes) {
  AlignedBuffer b(static_cast<uint8_t*>(std::aligned_alloc(kNvmeAlignment, static_cast<size_t>(bytes))));
  REQUIRE(b != nullptr);
  return b;
}

void FillRandom(uint8_t* p, int64_t bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < bytes; i += 8) {
    const uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
}

// Writes random data to every slot with all writes in flight at once, reads it back
// (again all at once, in reverse order), then rewrites and rereads every slot from four
// threads at once. The data of each slot comes from its own seed, so a wrong offset
// shows up as a mismatch.
void RoundTrip(NvmeStore& store) {
  const int64_t slots = store.slots();
  const int64_t bytes = store.slot_bytes();
  std::vector<AlignedBuffer> src, dst;
  for (int64_t i = 0; i < slots; ++i) {
    src.push_back(MakeBuffer(bytes));
    dst.push_back(MakeBuffer(bytes));
    FillRandom(src[i].get(), bytes, 1000 + i);
  }

  std::vector<NvmeStore::Ticket> writes;
  for (int64_t i = 0; i < slots; ++i) writes.push_back(store.Write(i, src[i].get()));
  for (NvmeStore::Ticket t : writes) REQUIRE(t != 0);
  for (NvmeStore::Ticket t : writes) REQUIRE(store.Wait(t).ok());
  CHECK(store.bytes_written() == slots * bytes);
  CHECK(store.bytes_read() == 0);

  std::vector<NvmeStore::Ticket> reads(slots);
  for (int64_t i = slots - 1; i >= 0; --i) {
    std::memset(dst[i].get(), 0, static_cast<size_t>(bytes));
    reads[i] = store.Read(i, dst[i].get());
  }
  // Done turns true by itself, without a Wait (bounded poll).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool done = false;
  while (!(done = store.Done(reads[0])) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(done);
  for (NvmeStore::Ticket t : reads) REQUIRE(store.Wait(t).ok());
  for (int64_t i = 0; i < slots; ++i) {
    INFO("slot " << i);
    REQUIRE(std::memcmp(src[i].get(), dst[i].get(), static_cast<size_t>(bytes)) == 0);
  }
  CHECK(store.bytes_read() == slots * bytes);

  // Four threads, each owning the slots i % 4 == k: new data, written, read, compared.
  constexpr int kThreads = 4;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; ++k) {
    threads.emplace_back([&, k] {
      std::vector<NvmeStore::Ticket> tickets;
      for (int64_t i = k; i < slots; i += kThreads) {
        FillRandom(src[i].get(), bytes, 5000 + i);
        tickets.push_back(store.Write(i, src[i].get()));
      }
      for (NvmeStore::Ticket t : tickets) failures += store.Wait(t).ok() ? 0 : 1;
      tickets.clear();
      for (int64_t i = k; i < slots; i += kThreads) {
        std::memset(dst[i].get(), 0, static_cast<size_t>(bytes));
        tickets.push_back(store.Read(i, dst[i].get()));
      }
      for (NvmeStore::Ticket t : tickets) failures += store.Wait(t).ok() ? 0 : 1;
      for (int64_t i = k; i < slots; i += kThreads) {
        failures += std::memcmp(src[i].get(), dst[i].get(), static_cast<size_t>(bytes)) == 0 ? 0 : 1;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  CHECK(failures.load() == 0);
  CHECK(store.bytes_written() == 2 * slots * bytes);
  CHECK(store.bytes_read() == 2 * slots * bytes);
}

// 48 slots of 256 KiB with 4 threads (a ring of depth 4): most I/Os wait their turn.
constexpr int64_t kSlotBytes = 256 * 1024;
constexpr int64_t kSlots = 48;
constexpr int kIoThreads = 4;

TEST_CASE("whole slots round-trip through the engine Open picks") {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(dir.path(), kSlotBytes, kSlots, kIoThreads);
  REQUIRE(store.ok());
  WARN("engine: " << (*store)->engine_note());
  CHECK(((*store)->engine() == IoEngine::kIoUring) ==
        ((*store)->engine_note().rfind("io_uring, depth 4", 0) == 0));
  CHECK(dir.Entries() == 0);  // unlinked as soon as it was open
  CHECK((*store)->path().rfind(dir.path() + "/colossal-chunks-", 0) == 0);
  CHECK((*store)->slots() == kSlots);
  CHECK((*store)->slot_bytes() == kSlotBytes);
  RoundTrip(**store);
}

TEST_CASE("whole slots round-trip through the forced thread pool") {
  TempDir dir;
  ForceThreadEngineForTesting(true);
  absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(dir.path(), kSlotBytes, kSlots, kIoThreads);
  ForceThreadEngineForTesting(false);
  REQUIRE(store.ok());
  WARN("engine: " << (*store)->engine_note());
  REQUIRE((*store)->engine() == IoEngine::kThreads);
  CHECK((*store)->engine_note().find("threads forced for testing; 4 pread/pwrite threads") == 0);
  CHECK(dir.Entries() == 0);
  RoundTrip(**store);
}

TEST_CASE("COLOSSAL_NVME_IO=threads forces the thread pool; an unknown value is refused") {
  TempDir dir;
  ::setenv(std::string(base::kEnvNvmeIo).c_str(), "threads", 1);
  absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(dir.path(), kNvmeAlignment, 4);
  ::setenv(std::string(base::kEnvNvmeIo).c_str(), "uring", 1);
  absl::StatusOr<std::unique_ptr<NvmeStore>> refused = NvmeStore::Open(dir.path(), kNvmeAlignment, 4);
  ::unsetenv(std::string(base::kEnvNvmeIo).c_str());
  REQUIRE(store.ok());
  CHECK((*store)->engine() == IoEngine::kThreads);
  CHECK((*store)->engine_note().find("COLOSSAL_NVME_IO=threads; 2 pread/pwrite threads") == 0);
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(refused.status().message()) == "COLOSSAL_NVME_IO=uring: want threads or auto");
}

TEST_CASE("the destructor waits for I/O in flight") {
  TempDir dir;
  for (bool force : {false, true}) {
    ForceThreadEngineForTesting(force);
    absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(dir.path(), kSlotBytes, kSlots, 2);
    ForceThreadEngineForTesting(false);
    REQUIRE(store.ok());
    AlignedBuffer src = MakeBuffer(kSlotBytes);
    FillRandom(src.get(), kSlotBytes, 7);
    for (int64_t i = 0; i < kSlots; ++i) (*store)->Write(i, src.get());  // never waited for
    store->reset();  // must return (not hang) with every write done before `src` goes
  }
  CHECK(dir.Entries() == 0);
}

absl::Status OpenStatus(const std::string& dir, int64_t slot_bytes = kNvmeAlignment, int64_t slots = 4,
                        int threads = 2) {
  absl::StatusOr<std::unique_ptr<NvmeStore>> store = NvmeStore::Open(dir, slot_bytes, slots, threads);
  return store.status();
}

bool Contains(const absl::Status& status, const std::string& text) {
  return std::string(status.message()).find(text) != std::string::npos;
}

TEST_CASE("Open refuses a missing dir, a file, an unwritable dir and bad sizes") {
  TempDir dir;
  const std::string missing = dir.path() + "/no-such-dir";
  absl::Status s = OpenStatus(missing);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(Contains(s, "memory.nvme_dir " + missing + ": does not exist"));

  const std::string file = dir.path() + "/a-file";
  std::ofstream(file) << "x";
  s = OpenStatus(file);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(Contains(s, "memory.nvme_dir " + file + ": is not a directory"));

  const std::string read_only = dir.path() + "/read-only";
  fs::create_directory(read_only);
  fs::permissions(read_only, fs::perms::owner_read | fs::perms::owner_exec);
  if (::geteuid() == 0) {
    // Root writes into a 0500 directory regardless, and Open asks access(W_OK), which
    // says so: the refusal can only be seen unprivileged.
    WARN("running as root: the unwritable-directory case is skipped");
  } else {
    s = OpenStatus(read_only);
    CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
    CHECK(Contains(s, "memory.nvme_dir " + read_only + ": not writable"));
  }
  fs::permissions(read_only, fs::perms::owner_all);

  for (int64_t bad : {int64_t{0}, -kNvmeAlignment, int64_t{1000}, 3 * kNvmeAlignment + 512}) {
    INFO("slot_bytes " << bad);
    s = OpenStatus(dir.path(), bad);
    CHECK(s.code() == absl::StatusCode::kInvalidArgument);
    CHECK(Contains(s, "is not a positive multiple of 4096"));
  }
  CHECK(OpenStatus(dir.path(), kNvmeAlignment, 0).code() == absl::StatusCode::kInvalidArgument);
  CHECK(OpenStatus(dir.path(), int64_t{1} << 40, int64_t{1} << 40).code() == absl::StatusCode::kInvalidArgument);
  CHECK(OpenStatus(dir.path(), kNvmeAlignment, 4, 0).code() == absl::StatusCode::kInvalidArgument);
  CHECK(dir.Entries() == 2);  // a-file and read-only: no store file anywhere
}

TEST_CASE("a reservation larger than the free space is refused, naming the dir and the sizes") {
  TempDir dir;
  struct statvfs vfs;
  REQUIRE(::statvfs(dir.path().c_str(), &vfs) == 0);
  const int64_t free_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
  constexpr int64_t kGiB = int64_t{1} << 30;
  const int64_t slots = free_bytes / kGiB + 2;  // at least 1 GiB past the free space
  absl::Status s = OpenStatus(dir.path(), kGiB, slots);
  INFO(s.message());
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(Contains(s, "memory.nvme_dir " + dir.path() + ": needs "));
  if (slots < 1024) CHECK(Contains(s, ": needs " + std::to_string(slots) + ".00 GiB"));  // else TiB
  CHECK(Contains(s, " for " + std::to_string(slots) + " chunks of 1.00 GiB, "));
  CHECK(Contains(s, " free"));
  CHECK(dir.Entries() == 0);
}

}  // namespace
}  // namespace colossal::memory
