// NCCL communicator on forked ranks, one per visible GPU: world 1 always, and 2, 3 and
// every device where there are that many. Every collective against a host reference
// computed from the same (rank, index) formula (exact for f32 sums of small integers,
// within the bf16 rounding bound otherwise), Send/Recv both ways, Barrier, issue order,
// the compute stream, Split, Abort, destruction, and (two GPUs or more) a silent peer's
// timeout and a dead peer. Without a CUDA device it prints "no CUDA device: skipped" and
// passes; the `gpu` tag keeps it out of a plain `bazel test` in the first place.
#include "parallel/comm/nccl/nccl_communicator.h"

#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallel/comm/nccl/nccl_check.h"
#include "parallel/comm/tcp_store.h"
#include "parallel/comm/testing/fork_ranks.h"

namespace colossal::parallel {
namespace {

using kernels::DType;
using testing::Failures;
using testing::ForkOptions;
using testing::ForkRanks;
using Clock = std::chrono::steady_clock;

// The device count, asked in a forked child so that this process never initializes CUDA
// (a CUDA context does not survive fork; ForkRanks' children make their own).
int VisibleDevices() {
  static const int count = [] {
    int fds[2];
    if (pipe(fds) != 0) return 0;
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      int n = 0;
      if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
      ssize_t written = write(fds[1], &n, sizeof(n));
      _exit(written == sizeof(n) ? 0 : 1);
    }
    close(fds[1]);
    int n = 0;
    if (pid < 0 || read(fds[0], &n, sizeof(n)) != sizeof(n)) n = 0;
    close(fds[0]);
    if (pid > 0) waitpid(pid, nullptr, 0);
    return n;
  }();
  return count;
}

bool NoDevice() {
  if (VisibleDevices() > 0) return false;
  std::fprintf(stderr, "no CUDA device: skipped\n");
  return true;
}

// World sizes to run: 1, 2, 3 and all devices, as far as there are devices.
std::vector<int> WorldSizes() {
  std::set<int> sizes;
  for (int n : {1, 2, 3, VisibleDevices()}) {
    if (n >= 1 && n <= VisibleDevices()) sizes.insert(n);
  }
  return {sizes.begin(), sizes.end()};
}

ForkOptions Fork() {
  ForkOptions options;
  options.deadline = std::chrono::milliseconds(150000);
  options.store_timeout = std::chrono::milliseconds(60000);
  return options;
}

CommOptions Options(int timeout_ms = 60000) {
  CommOptions options;
  options.timeout = std::chrono::milliseconds(timeout_ms);
  return options;
}

NcclCommunicator& Nccl(Communicator& comm) { return dynamic_cast<NcclCommunicator&>(comm); }

// bf16 on the host, round to nearest even (the inputs hold no NaN).
uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
float FromBf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Element i of rank r's input. f32: small integers (sums exact in any order); bf16:
// fractions that need rounding.
float Input(DType dtype, int r, int64_t i) {
  if (dtype == DType::kF32) return static_cast<float>((r * 7 + i * 13) % 17) - 8.0f;
  return FromBf16(ToBf16(0.37f * (r + 1) + 0.0113f * static_cast<float>(i % 97)));
}

std::vector<char> Fill(DType dtype, int r, int64_t offset, int64_t count) {
  std::vector<char> out(count * kernels::DTypeSize(dtype) + 1);
  for (int64_t i = 0; i < count; ++i) {
    const float v = Input(dtype, r, offset + i);
    if (dtype == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v, 4);
    } else {
      const uint16_t b = ToBf16(v);
      std::memcpy(out.data() + 2 * i, &b, 2);
    }
  }
  return out;
}

float Get(DType dtype, const std::vector<char>& buf, int64_t i) {
  if (dtype == DType::kF32) {
    float v;
    std::memcpy(&v, buf.data() + 4 * i, 4);
    return v;
  }
  uint16_t b;
  std::memcpy(&b, buf.data() + 2 * i, 2);
  return FromBf16(b);
}

// Checks buf[0..count) against Σ_r Input(r, offset + i) over `ranks`. f32: exact (small
// integers). bf16: NCCL adds in fp32 and rounds to bf16 once per hop (unit roundoff 2^-8),
// an element sees at most n-1 hops (ring; fewer on a tree), so |error| ≤ n·2^-8·Σ_r |x_r|.
absl::Status CheckSum(const std::string& what, DType dtype, const std::vector<int>& ranks,
                      int64_t offset, int64_t count, const std::vector<char>& buf) {
  const int n = static_cast<int>(ranks.size());
  for (int64_t i = 0; i < count; ++i) {
    double want = 0, scale = 0;
    for (int r : ranks) {
      want += Input(dtype, r, offset + i);
      scale += std::fabs(Input(dtype, r, offset + i));
    }
    const double got = Get(dtype, buf, i);
    const double tol = dtype == DType::kF32 ? 0.0 : n * std::ldexp(1.0, -8) * scale;
    if (!(std::fabs(got - want) <= tol)) {
      return absl::InternalError(absl::StrCat(what, ": element ", offset + i, " is ", got,
                                              " but the reference is ", want, " (tolerance ",
                                              tol, ")"));
    }
  }
  return absl::OkStatus();
}

// Device memory for one rank; at least one byte so that every pointer is valid.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t bytes) : bytes_(std::max<int64_t>(bytes, 1)) {
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) ptr_ = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  absl::Status Upload(const std::vector<char>& host) const {
    if (ptr_ == nullptr) return absl::ResourceExhaustedError("cudaMalloc failed");
    CUDA_RETURN_IF_ERROR(cudaMemcpy(ptr_, host.data(), std::min<int64_t>(bytes_, host.size()),
                                    cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<char>> Download() const {
    if (ptr_ == nullptr) return absl::ResourceExhaustedError("cudaMalloc failed");
    std::vector<char> host(bytes_);
    CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  int64_t bytes_;
  void* ptr_ = nullptr;
};

absl::Status Same(const std::string& what, const std::vector<char>& got,
                  const std::vector<char>& want, int64_t bytes) {
  if (std::memcmp(got.data(), want.data(), bytes) != 0) {
    return absl::InternalError(absl::StrCat(what, ": differs from the reference"));
  }
  return absl::OkStatus();
}

// Every collective of `comm` for `count` elements of `dtype`. `members[k]` is the pattern
// (global) rank of comm's rank k.
absl::Status CheckCollectives(Communicator& comm, const std::vector<int>& members, int64_t count,
                              DType dtype) {
  const int n = comm.size(), r = comm.rank(), me = members[r];
  const int64_t es = kernels::DTypeSize(dtype);
  const std::string what = absl::StrCat(std::string(kernels::DTypeName(dtype)), " count=", count,
                                        " on ", n, " ranks (this is rank ", r, ")");
  {  // AllReduce, in place.
    DeviceBuffer buf(count * es);
    RETURN_IF_ERROR(buf.Upload(Fill(dtype, me, 0, count)));
    RETURN_IF_ERROR(comm.AllReduce(buf.get(), count, dtype)->Wait());
    ASSIGN_OR_RETURN(std::vector<char> got, buf.Download());
    RETURN_IF_ERROR(CheckSum("AllReduce " + what, dtype, members, 0, count, got));
  }
  {  // ReduceScatter: every rank's input is its pattern over n·count elements.
    DeviceBuffer send(n * count * es), recv(count * es);
    RETURN_IF_ERROR(send.Upload(Fill(dtype, me, 0, n * count)));
    RETURN_IF_ERROR(comm.ReduceScatter(send.get(), recv.get(), count, dtype)->Wait());
    ASSIGN_OR_RETURN(std::vector<char> got, recv.Download());
    RETURN_IF_ERROR(CheckSum("ReduceScatter " + what, dtype, members, r * count, count, got));
  }
  {  // AllGather.
    DeviceBuffer send(count * es), recv(n * count * es);
    RETURN_IF_ERROR(send.Upload(Fill(dtype, me, 0, count)));
    RETURN_IF_ERROR(comm.AllGather(send.get(), recv.get(), count, dtype)->Wait());
    ASSIGN_OR_RETURN(std::vector<char> got, recv.Download());
    for (int q = 0; q < n; ++q) {
      const std::vector<char> want = Fill(dtype, members[q], 0, count);
      const std::vector<char> block(got.begin() + q * count * es,
                                    got.begin() + (q + 1) * count * es);
      RETURN_IF_ERROR(Same(absl::StrCat("AllGather ", what, " block of rank ", q), block, want,
                           count * es));
    }
  }
  {  // Broadcast from a root that depends on the count.
    const int root = static_cast<int>(count % n);
    DeviceBuffer buf(count * es);
    RETURN_IF_ERROR(buf.Upload(Fill(dtype, me, 0, count)));
    RETURN_IF_ERROR(comm.Broadcast(buf.get(), count, dtype, root)->Wait());
    ASSIGN_OR_RETURN(std::vector<char> got, buf.Download());
    RETURN_IF_ERROR(Same(absl::StrCat("Broadcast ", what, " root ", root), got,
                         Fill(dtype, members[root], 0, count), count * es));
  }
  {  // AllToAll: block q of rank r's send is its pattern at q·count.
    DeviceBuffer send(n * count * es), recv(n * count * es);
    RETURN_IF_ERROR(send.Upload(Fill(dtype, me, 0, n * count)));
    RETURN_IF_ERROR(comm.AllToAll(send.get(), recv.get(), count, dtype)->Wait());
    ASSIGN_OR_RETURN(std::vector<char> got, recv.Download());
    for (int q = 0; q < n; ++q) {
      const std::vector<char> block(got.begin() + q * count * es,
                                    got.begin() + (q + 1) * count * es);
      RETURN_IF_ERROR(Same(absl::StrCat("AllToAll ", what, " block from rank ", q), block,
                           Fill(dtype, members[q], r * count, count), count * es));
    }
  }
  return absl::OkStatus();
}

std::vector<int> Iota(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

std::vector<char> Bytes(int from, int to, int64_t bytes) {
  std::vector<char> v(bytes + 1);
  for (int64_t i = 0; i < bytes; ++i) v[i] = static_cast<char>((from * 31 + to * 7 + i) % 251);
  return v;
}

// Send to the next rank and receive from the previous one (self at world 1): Send issued
// first, then the other direction with Recv issued first; then zero bytes.
absl::Status CheckSendRecv(Communicator& comm, int64_t bytes) {
  const int n = comm.size(), r = comm.rank();
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  DeviceBuffer out(bytes), in(bytes);
  RETURN_IF_ERROR(out.Upload(Bytes(r, next, bytes)));
  auto send = comm.Send(out.get(), bytes, next, 7);
  auto recv = comm.Recv(in.get(), bytes, prev, 7);
  RETURN_IF_ERROR(send->Wait());
  RETURN_IF_ERROR(recv->Wait());
  ASSIGN_OR_RETURN(std::vector<char> got, in.Download());
  RETURN_IF_ERROR(Same(absl::StrCat("Recv of ", bytes, " bytes from rank ", prev), got,
                       Bytes(prev, r, bytes), bytes));
  RETURN_IF_ERROR(out.Upload(Bytes(r, prev, bytes)));
  auto recv2 = comm.Recv(in.get(), bytes, next, 8);
  auto send2 = comm.Send(out.get(), bytes, prev, 8);
  RETURN_IF_ERROR(recv2->Wait());
  RETURN_IF_ERROR(send2->Wait());
  ASSIGN_OR_RETURN(got, in.Download());
  RETURN_IF_ERROR(Same(absl::StrCat("Recv (issued first) of ", bytes, " bytes from rank ", next),
                       got, Bytes(next, r, bytes), bytes));
  auto empty_send = comm.Send(out.get(), 0, next, 9);
  auto empty_recv = comm.Recv(in.get(), 0, prev, 9);
  RETURN_IF_ERROR(empty_send->Wait());
  return empty_recv->Wait();
}

// Collectives complete in issue order: three all-reduces waited for in reverse order, and
// a Barrier after which the op before it reports done.
absl::Status CheckOrder(Communicator& comm) {
  const int64_t count = 4099;
  std::vector<int> members = Iota(comm.size());
  std::vector<std::unique_ptr<DeviceBuffer>> bufs;
  std::vector<std::unique_ptr<Work>> works;
  for (int k = 0; k < 3; ++k) {
    bufs.push_back(std::make_unique<DeviceBuffer>(count * 4));
    RETURN_IF_ERROR(bufs.back()->Upload(Fill(DType::kF32, comm.rank(), k * count, count)));
    works.push_back(comm.AllReduce(bufs.back()->get(), count, DType::kF32));
  }
  for (int k = 2; k >= 0; --k) {
    RETURN_IF_ERROR(works[k]->Wait());
    ASSIGN_OR_RETURN(std::vector<char> got, bufs[k]->Download());
    RETURN_IF_ERROR(CheckSum(absl::StrCat("AllReduce #", k, " of 3 in flight"), DType::kF32,
                             members, k * count, count, got));
  }
  RETURN_IF_ERROR(bufs[0]->Upload(Fill(DType::kF32, comm.rank(), 0, count)));
  auto before = comm.AllReduce(bufs[0]->get(), count, DType::kF32);
  RETURN_IF_ERROR(comm.Barrier()->Wait());
  if (!before->Done()) return absl::InternalError("an AllReduce issued before a Barrier is not done after it");
  return before->Wait();
}

void BlockHost(void* arg) { std::this_thread::sleep_for(std::chrono::milliseconds(*static_cast<int*>(arg))); }

// SetComputeStream / StreamWaitFor: the input is written on a user stream behind a 200 ms
// host function, the result read back on the same stream; no host synchronization between.
absl::Status CheckComputeStream(Communicator& comm) {
  NcclCommunicator& nccl = Nccl(comm);
  const int64_t count = 1000;
  std::vector<int> members = Iota(comm.size());
  cudaStream_t stream = nullptr;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  DeviceBuffer buf(count * 4);
  RETURN_IF_ERROR(buf.Upload(std::vector<char>(count * 4, 0)));
  std::vector<char> input = Fill(DType::kF32, comm.rank(), 0, count);
  std::vector<char> result(count * 4 + 1, 0);
  static int delay_ms = 200;
  CUDA_RETURN_IF_ERROR(cudaLaunchHostFunc(stream, &BlockHost, &delay_ms));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf.get(), input.data(), count * 4, cudaMemcpyHostToDevice, stream));
  RETURN_IF_ERROR(nccl.SetComputeStream(stream));
  auto work = comm.AllReduce(buf.get(), count, DType::kF32);
  RETURN_IF_ERROR(nccl.StreamWaitFor(stream, *work));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(result.data(), buf.get(), count * 4, cudaMemcpyDeviceToHost, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  RETURN_IF_ERROR(work->Wait());
  RETURN_IF_ERROR(nccl.SetComputeStream(nullptr));
  CUDA_RETURN_IF_ERROR(cudaStreamDestroy(stream));
  return CheckSum("AllReduce ordered by the compute stream", DType::kF32, members, 0, count, result);
}

TEST_CASE("NCCL collectives, Send/Recv, Barrier and streams equal the host reference") {
  if (NoDevice()) return;
  for (int size : WorldSizes()) {
    auto exits = ForkRanks(size, [](int rank, int size, TcpStore& store) -> absl::Status {
      ASSIGN_OR_RETURN(auto comm, CreateNcclCommunicator(store, Options(), /*device=*/rank));
      if (comm->rank() != rank || comm->size() != size || Nccl(*comm).device() != rank) {
        return absl::InternalError("rank, size or device differs from the bootstrap");
      }
      const std::vector<int> members = Iota(size);
      for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{size - 1}, int64_t{1000},
                            int64_t{1000003}}) {
        for (DType dtype : {DType::kF32, DType::kBF16}) {
          RETURN_IF_ERROR(CheckCollectives(*comm, members, count, dtype));
        }
      }
      for (int64_t bytes : {int64_t{1}, int64_t{4096}, int64_t{3 << 20}}) {
        RETURN_IF_ERROR(CheckSendRecv(*comm, bytes));
      }
      RETURN_IF_ERROR(CheckOrder(*comm));
      RETURN_IF_ERROR(CheckComputeStream(*comm));
      for (int k = 0; k < 3; ++k) RETURN_IF_ERROR(comm->Barrier()->Wait());
      // Arguments NCCL never sees.
      DeviceBuffer buf(64);
      if (comm->AllReduce(buf.get(), 4, DType::kI32)->Wait().code() != absl::StatusCode::kInvalidArgument ||
          comm->Broadcast(buf.get(), 4, DType::kF32, size)->Wait().code() != absl::StatusCode::kInvalidArgument ||
          comm->Send(buf.get(), 4, size, 0)->Wait().code() != absl::StatusCode::kInvalidArgument ||
          comm->AllGather(nullptr, buf.get(), 4, DType::kF32)->Wait().code() != absl::StatusCode::kInvalidArgument) {
        return absl::InternalError("a bad argument was not INVALID_ARGUMENT");
      }
      return comm->Barrier()->Wait();  // still healthy: bad arguments do not poison
    }, Fork());
    INFO("world size " << size << " of " << VisibleDevices() << " devices");
    CHECK(Failures(exits) == "");
  }
}

TEST_CASE("NCCL Split: sub-communicators of evens and odds, and of the first and last") {
  if (NoDevice()) return;
  const int n = VisibleDevices();
  auto exits = ForkRanks(n, [](int rank, int size, TcpStore& store) -> absl::Status {
    ASSIGN_OR_RETURN(auto world, CreateNcclCommunicator(store, Options(), rank));
    if (world->Split({}).status().code() != absl::StatusCode::kInvalidArgument ||
        world->Split({size}).status().code() != absl::StatusCode::kInvalidArgument ||
        world->Split({rank, rank}).status().code() != absl::StatusCode::kInvalidArgument) {
      return absl::InternalError("a bad Split was not INVALID_ARGUMENT");
    }
    std::vector<int> mine;
    for (int r = rank % 2; r < size; r += 2) mine.push_back(r);
    ASSIGN_OR_RETURN(auto half, world->Split(mine));
    if (half->size() != static_cast<int>(mine.size()) || half->global_ranks() != mine ||
        mine[half->rank()] != rank) {
      return absl::InternalError("the split communicator's rank, size or global ranks are wrong");
    }
    for (int64_t count : {int64_t{5}, int64_t{100003}}) {
      for (DType dtype : {DType::kF32, DType::kBF16}) {
        RETURN_IF_ERROR(CheckCollectives(*half, mine, count, dtype));
      }
    }
    RETURN_IF_ERROR(CheckSendRecv(*half, 1000));
    // The parent is unaffected, and the child outlives it.
    RETURN_IF_ERROR(CheckCollectives(*world, Iota(size), 1001, DType::kF32));
    if (size >= 2 && (rank == 0 || rank == size - 1)) {
      ASSIGN_OR_RETURN(auto ends, world->Split({0, size - 1}));
      RETURN_IF_ERROR(CheckCollectives(*ends, {0, size - 1}, 77, DType::kBF16));
    }
    RETURN_IF_ERROR(world->Barrier()->Wait());
    world.reset();
    return CheckCollectives(*half, mine, 33, DType::kF32);
  }, Fork());
  INFO(n << " devices");
  CHECK(Failures(exits) == "");
}

TEST_CASE("NCCL Abort poisons, keeps completed ops, and destruction cancels what is queued") {
  if (NoDevice()) return;
  auto exits = ForkRanks(1, [](int rank, int size, TcpStore& store) -> absl::Status {
    DeviceBuffer buf(4096);
    RETURN_IF_ERROR(buf.Upload(Fill(DType::kF32, 0, 0, 1024)));
    std::unique_ptr<Work> done_before, queued;
    {
      ASSIGN_OR_RETURN(auto comm, CreateNcclCommunicator(store, Options(), 0));
      done_before = comm->AllReduce(buf.get(), 1024, DType::kF32);
      RETURN_IF_ERROR(done_before->Wait());
      comm->Abort(absl::DataLossError("test abort"));
      auto after = comm->AllReduce(buf.get(), 1024, DType::kF32);
      if (after->Wait().code() != absl::StatusCode::kDataLoss ||
          comm->Send(buf.get(), 4, 0, 0)->Wait().code() != absl::StatusCode::kDataLoss ||
          comm->Split({0}).status().code() != absl::StatusCode::kDataLoss) {
        return absl::InternalError("an op after Abort did not fail with Abort's status");
      }
      RETURN_IF_ERROR(done_before->Wait());  // completed before the abort: still OK
    }
    {
      ASSIGN_OR_RETURN(auto comm, CreateNcclCommunicator(store, Options(), 0));
      done_before = comm->AllReduce(buf.get(), 1024, DType::kF32);
      RETURN_IF_ERROR(done_before->Wait());
      queued = comm->Send(buf.get(), 64, 0, 0);  // never launched: nothing waited for it
    }
    if (queued->Wait().code() != absl::StatusCode::kCancelled) {
      return absl::InternalError("a Send queued at destruction was not CANCELLED");
    }
    return done_before->Wait();  // Works outlive their communicator
  }, Fork());
  CHECK(Failures(exits) == "");
}

TEST_CASE("NCCL timeout: a silent peer fails Wait within the bound, aborts and poisons") {
  if (NoDevice()) return;
  if (VisibleDevices() < 2) {
    std::fprintf(stderr, "timeout and dead-peer cases need 2 CUDA devices: skipped\n");
    return;
  }
  auto exits = ForkRanks(2, [](int rank, int size, TcpStore& store) -> absl::Status {
    const int timeout_ms = 3000;
    ASSIGN_OR_RETURN(auto comm, CreateNcclCommunicator(store, Options(timeout_ms), rank));
    DeviceBuffer buf(1 << 20);
    RETURN_IF_ERROR(buf.Upload(Fill(DType::kF32, rank, 0, 1 << 18)));
    RETURN_IF_ERROR(comm->AllReduce(buf.get(), 1 << 18, DType::kF32)->Wait());
    if (rank == 0) {
      // Rank 1 never joins this one.
      const Clock::time_point start = Clock::now();
      absl::Status status = comm->AllReduce(buf.get(), 1 << 18, DType::kF32)->Wait();
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      if (status.code() != absl::StatusCode::kDeadlineExceeded || took.count() < timeout_ms ||
          took.count() > 4 * timeout_ms) {
        return absl::InternalError(absl::StrCat("Wait of a collective rank 1 never joined: ",
                                                status.ToString(), " after ", took.count(), " ms"));
      }
      if (comm->Barrier()->Wait().code() != absl::StatusCode::kDeadlineExceeded) {
        return absl::InternalError("the op after the timeout did not fail with the same error");
      }
      // Destruction with an op in flight on a second communicator: CANCELLED.
    }
    RETURN_IF_ERROR(store.AllGather("timeout seen").status());
    ASSIGN_OR_RETURN(auto second, CreateNcclCommunicator(store, Options(timeout_ms), rank));
    std::unique_ptr<Work> in_flight;
    if (rank == 0) {
      in_flight = second->AllReduce(buf.get(), 1 << 18, DType::kF32);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      second.reset();
      if (in_flight->Wait().code() != absl::StatusCode::kCancelled) {
        return absl::InternalError("an op in flight at destruction was not CANCELLED");
      }
    }
    RETURN_IF_ERROR(store.AllGather("destroyed").status());
    // A dead peer: rank 1 exits; rank 0's next collective fails (NCCL may not notice the
    // death on one node, so it may be the timeout).
    ASSIGN_OR_RETURN(auto third, CreateNcclCommunicator(store, Options(timeout_ms), rank));
    RETURN_IF_ERROR(third->Barrier()->Wait());
    if (rank == 1) _exit(0);
    const Clock::time_point start = Clock::now();
    absl::Status status = third->AllReduce(buf.get(), 1 << 18, DType::kF32)->Wait();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    if (status.ok() || took.count() > 4 * timeout_ms) {
      return absl::InternalError(absl::StrCat("Wait with a dead peer: ", status.ToString(),
                                              " after ", took.count(), " ms"));
    }
    return absl::OkStatus();
  }, Fork());
  CHECK(Failures(exits) == "");
}

}  // namespace
}  // namespace colossal::parallel
