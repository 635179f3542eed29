// NcclCommunicator (nccl_communicator.h): the Communicator interface over a Core
// (nccl_core.h): argument checks before NCCL, the collectives' NCCL calls, Split, and the
// creation handshake through the Bootstrap (NCCL version, device place, unique ids).
#include "parallel/comm/nccl/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallel/comm/nccl/nccl_check.h"
#include "parallel/comm/nccl/nccl_core.h"
#include "runtime/base/logging.h"
#include "runtime/base/status_macros.h"

namespace colossal::parallel {
namespace {

using nccl::Call;
using nccl::Core;
using nccl::DeviceGuard;
using nccl::NcclWork;
using nccl::OpKind;
using nccl::UniqueIds;

// Creation blob: magic, NCCL version, id count, ids, then "host pci-bus-id".
constexpr uint32_t kHelloMagic = 0x4c43434e;  // "NCCL"

ncclDataType_t NcclType(DType dtype) {
  switch (dtype) {
    case DType::kF32: return ncclFloat32;
    case DType::kBF16: return ncclBfloat16;
    case DType::kF16: return ncclFloat16;
    case DType::kI32: return ncclInt32;
  }
  return ncclUint8;
}

std::string DtypeName(DType dtype) { return std::string(kernels::DTypeName(dtype)); }

class NcclCommunicatorImpl final : public NcclCommunicator {
 public:
  explicit NcclCommunicatorImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~NcclCommunicatorImpl() override { core_->Close(); }

  int rank() const override { return core_->rank(); }
  int size() const override { return core_->size(); }
  const std::vector<int>& global_ranks() const override { return core_->global_ranks(); }
  int device() const override { return core_->device(); }

  std::unique_ptr<Work> AllReduce(void* buf, int64_t count, DType dtype) override {
    const std::string name = absl::StrCat("AllReduce(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckSum(name, buf, buf, count, dtype)) return bad;
    CountSent(SentByRing(Collective::kAllReduce, count * kernels::DTypeSize(dtype), size()));
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclAllReduce(buf, buf, static_cast<size_t>(count), NcclType(dtype), ncclSum, comm,
                           stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> ReduceScatter(const void* send, void* recv, int64_t count,
                                      DType dtype) override {
    const std::string name =
        absl::StrCat("ReduceScatter(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckSum(name, send, recv, count, dtype)) return bad;
    CountSent(SentByRing(Collective::kReduceScatter, count * kernels::DTypeSize(dtype), size()));
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclReduceScatter(send, recv, static_cast<size_t>(count), NcclType(dtype), ncclSum,
                               comm, stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> AllGather(const void* send, void* recv, int64_t count,
                                  DType dtype) override {
    const std::string name = absl::StrCat("AllGather(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckBuffers(name, send, recv, count)) return bad;
    CountSent(SentByRing(Collective::kAllGather, count * kernels::DTypeSize(dtype), size()));
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclAllGather(send, recv, static_cast<size_t>(count), NcclType(dtype), comm, stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> Broadcast(void* buf, int64_t count, DType dtype, int root) override {
    const std::string name = absl::StrCat("Broadcast(count=", count, ", ", DtypeName(dtype),
                                          ", root=", root, ")");
    if (auto bad = CheckBuffers(name, buf, buf, count)) return bad;
    if (root < 0 || root >= size()) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": root ", root, " is not a rank of a communicator of ",
                                     size())));
    }
    CountSent(SentByRing(Collective::kBroadcast, count * kernels::DTypeSize(dtype), size()));
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) {
      return ncclBroadcast(buf, buf, static_cast<size_t>(count), NcclType(dtype), root, comm,
                           stream);
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  // One NCCL group of a Send and a Recv per member (self included), on the collective lane.
  std::unique_ptr<Work> AllToAll(const void* send, void* recv, int64_t count,
                                 DType dtype) override {
    const std::string name = absl::StrCat("AllToAll(count=", count, ", ", DtypeName(dtype), ")");
    if (auto bad = CheckBuffers(name, send, recv, count)) return bad;
    const int n = size();
    const int64_t block = count * kernels::DTypeSize(dtype);
    CountSent(SentByRing(Collective::kAllToAll, block, n));
    const Call call = [=](ncclComm_t comm, cudaStream_t stream) -> ncclResult_t {
      ncclResult_t first = ncclGroupStart();
      if (first != ncclSuccess) return first;
      for (int q = 0; q < n; ++q) {
        ncclResult_t r = ncclSend(static_cast<const char*>(send) + q * block,
                                  static_cast<size_t>(count), NcclType(dtype), q, comm, stream);
        if (r == ncclSuccess) {
          r = ncclRecv(static_cast<char*>(recv) + q * block, static_cast<size_t>(count),
                       NcclType(dtype), q, comm, stream);
        }
        if (r != ncclSuccess && first == ncclSuccess) first = r;
      }
      ncclResult_t end = ncclGroupEnd();
      return first != ncclSuccess ? first : end;
    };
    return core_->Collective(name, count > 0 ? &call : nullptr);
  }

  std::unique_ptr<Work> Send(const void* buf, int64_t bytes, int peer, int tag) override {
    std::string name = absl::StrCat("Send(", bytes, " bytes to rank ", peer, ", tag ", tag, ")");
    if (auto bad = CheckPointToPoint(name, buf, bytes, peer, tag)) return bad;
    CountSent(bytes);
    return core_->PointToPoint(OpKind::kSend, std::move(name), const_cast<void*>(buf), bytes,
                               peer);
  }

  std::unique_ptr<Work> Recv(void* buf, int64_t bytes, int peer, int tag) override {
    std::string name = absl::StrCat("Recv(", bytes, " bytes from rank ", peer, ", tag ", tag, ")");
    if (auto bad = CheckPointToPoint(name, buf, bytes, peer, tag)) return bad;
    return core_->PointToPoint(OpKind::kRecv, std::move(name), buf, bytes, peer);
  }

  std::unique_ptr<Work> Barrier() override { return core_->Barrier(); }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(const std::vector<int>& ranks) override {
    const std::string name = absl::StrCat("Split([", absl::StrJoin(ranks, ", "), "])");
    int new_rank = -1;
    for (size_t i = 0; i < ranks.size(); ++i) {
      if (ranks[i] < 0 || ranks[i] >= size() || (i > 0 && ranks[i] <= ranks[i - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": ranks must be ascending, distinct and in [0, ", size(), ")"));
      }
      if (ranks[i] == rank()) new_rank = static_cast<int>(i);
    }
    if (new_rank < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": rank ", rank(), " called Split but is not a member"));
    }
    ASSIGN_OR_RETURN(UniqueIds ids, core_->ExchangeSplitIds(ranks));
    std::vector<int> globals;
    for (int r : ranks) globals.push_back(global_ranks()[r]);
    auto child = std::make_shared<Core>(device(), new_rank, std::move(globals), core_->options());
    RETURN_IF_ERROR(child->Init(ids, core_->compute_stream()));
    LOG_INFO("{}: split from {}", child->Where(), core_->Where());
    return std::unique_ptr<Communicator>(new NcclCommunicatorImpl(std::move(child)));
  }

  void Abort(const absl::Status& status) override { core_->Abort(status); }

  absl::Status SetComputeStream(CudaStream stream) override {
    return core_->SetComputeStream(stream);
  }

  absl::Status StreamWaitFor(CudaStream stream, Work& work) override {
    auto* nccl_work = dynamic_cast<NcclWork*>(&work);
    if (nccl_work == nullptr || nccl_work->core() != core_.get()) {
      return absl::InvalidArgumentError(
          "StreamWaitFor: the Work is not an operation of this NCCL communicator");
    }
    return core_->StreamWaitFor(stream, nccl_work->op());
  }

 private:
  std::unique_ptr<Work> CheckBuffers(const std::string& name, const void* send, const void* recv,
                                     int64_t count) {
    if (count < 0) {
      return core_->Failed(name, absl::InvalidArgumentError(
                                     absl::StrCat(name, ": negative count ", count)));
    }
    if (count > 0 && (send == nullptr || recv == nullptr)) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": null buffer for ", count, " elements")));
    }
    return nullptr;
  }

  std::unique_ptr<Work> CheckSum(const std::string& name, const void* send, const void* recv,
                                 int64_t count, DType dtype) {
    if (auto bad = CheckBuffers(name, send, recv, count)) return bad;
    if (dtype != DType::kF32 && dtype != DType::kBF16) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": sums f32 or bf16 elements, not ", DtypeName(dtype))));
    }
    return nullptr;
  }

  std::unique_ptr<Work> CheckPointToPoint(const std::string& name, const void* buf, int64_t bytes,
                                          int peer, int tag) {
    if (auto bad = CheckBuffers(name, buf, buf, bytes)) return bad;
    if (peer < 0 || peer >= size()) {
      return core_->Failed(name, absl::InvalidArgumentError(absl::StrCat(
                                     name, ": peer ", peer, " is not a rank of a communicator of ",
                                     size())));
    }
    if (tag < 0) {
      return core_->Failed(name, absl::InvalidArgumentError(
                                     absl::StrCat(name, ": tag ", tag, " is negative")));
    }
    return nullptr;
  }

  std::shared_ptr<Core> core_;
};

// The creation blob each rank sends through the Bootstrap.
struct Hello {
  int version = 0;              // ncclGetVersion
  std::vector<ncclUniqueId> ids;  // rank 0 only: the two lanes' ids
  std::string location;         // "host pci-bus-id" of the rank's device
};

std::string EncodeHello(const Hello& hello) {
  std::string blob(12 + hello.ids.size() * NCCL_UNIQUE_ID_BYTES, '\0');
  const uint32_t magic = kHelloMagic;
  const int32_t version = hello.version;
  const int32_t n_ids = static_cast<int32_t>(hello.ids.size());
  std::memcpy(blob.data(), &magic, 4);
  std::memcpy(blob.data() + 4, &version, 4);
  std::memcpy(blob.data() + 8, &n_ids, 4);
  if (!hello.ids.empty()) std::memcpy(blob.data() + 12, hello.ids.data(), hello.ids.size() * NCCL_UNIQUE_ID_BYTES);
  return blob + hello.location;
}

absl::StatusOr<Hello> DecodeHello(const std::string& blob, int from) {
  uint32_t magic = 0;
  int32_t version = 0, n_ids = -1;
  if (blob.size() >= 12) {
    std::memcpy(&magic, blob.data(), 4);
    std::memcpy(&version, blob.data() + 4, 4);
    std::memcpy(&n_ids, blob.data() + 8, 4);
  }
  if (magic != kHelloMagic || n_ids < 0 || n_ids > 2 ||
      blob.size() < 12 + static_cast<size_t>(n_ids) * NCCL_UNIQUE_ID_BYTES) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CreateNcclCommunicator: rank ", from, " sent ", blob.size(),
        " bytes that are not an NCCL hello (is every rank creating an NCCL communicator?)"));
  }
  Hello hello;
  hello.version = version;
  hello.ids.resize(n_ids);
  if (n_ids > 0) std::memcpy(hello.ids.data(), blob.data() + 12, n_ids * NCCL_UNIQUE_ID_BYTES);
  hello.location = blob.substr(12 + n_ids * NCCL_UNIQUE_ID_BYTES);
  return hello;
}

// "host pci-bus-id boot-id": equal for two ranks only on the same GPU of one machine (the
// kernel's boot id tells apart machines that share a host name; containers share it).
absl::StatusOr<std::string> Location(int device) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "?");
  char bus[64] = {};
  RETURN_IF_ERROR(CudaCheck(cudaDeviceGetPCIBusId(bus, sizeof(bus), device),
                            "cudaDeviceGetPCIBusId"));
  std::string boot_id = "?";
  if (std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r")) {
    char line[64] = {};
    if (std::fgets(line, sizeof(line), f) != nullptr) boot_id = std::string(line, std::strcspn(line, "\n"));
    std::fclose(f);
  }
  return absl::StrCat(host, " ", bus, " ", boot_id);
}

}  // namespace

bool NcclBackendBuilt() { return true; }

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(Bootstrap& bootstrap,
                                                                     const CommOptions& options,
                                                                     int device) {
  const std::string what = absl::StrCat("CreateNcclCommunicator(rank ", bootstrap.rank(), " of ",
                                        bootstrap.size(), ", device ", device, ")");
  if (options.timeout.count() <= 0 || device < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": needs timeout > 0 (got ",
                                                   options.timeout.count(),
                                                   " ms) and a device >= 0"));
  }
  auto in_context = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
  };
  Hello mine;
  {
    DeviceGuard guard(device);  // fails for a device that does not exist
    if (!guard.status().ok()) return in_context(guard.status());
    absl::StatusOr<std::string> location = Location(device);
    if (!location.ok()) return in_context(location.status());
    mine.location = *location;
  }
  absl::Status status = NcclCheck(ncclGetVersion(&mine.version), "ncclGetVersion");
  if (status.ok() && bootstrap.rank() == 0) {
    mine.ids.resize(2);
    for (ncclUniqueId& id : mine.ids) {
      if (status.ok()) status = NcclCheck(ncclGetUniqueId(&id), "ncclGetUniqueId");
    }
  }
  if (!status.ok()) return in_context(status);
  absl::StatusOr<std::vector<std::string>> blobs = bootstrap.AllGather(EncodeHello(mine));
  if (!blobs.ok()) return in_context(blobs.status());
  if (static_cast<int>(blobs->size()) != bootstrap.size()) {
    return absl::InternalError(absl::StrCat(what, ": the bootstrap returned ", blobs->size(),
                                            " blobs"));
  }
  UniqueIds ids;
  for (int r = 0; r < bootstrap.size(); ++r) {
    ASSIGN_OR_RETURN(Hello theirs, DecodeHello((*blobs)[r], r));
    if (theirs.version != mine.version) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": rank ", r, " runs NCCL version code ", theirs.version, ", this rank ",
          mine.version, " (every rank needs the same NCCL)"));
    }
    if (r == 0) {
      if (theirs.ids.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": rank 0 sent no NCCL unique ids"));
      }
      std::memcpy(ids.data(), theirs.ids.data(), 2 * NCCL_UNIQUE_ID_BYTES);
    }
    if (r != bootstrap.rank() && theirs.location == mine.location) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": rank ", r, " uses the same GPU (", mine.location,
          "); NCCL needs one device per rank (pick the device by local rank)"));
    }
  }
  std::vector<int> world(bootstrap.size());
  for (int r = 0; r < bootstrap.size(); ++r) world[r] = r;
  auto core = std::make_shared<Core>(device, bootstrap.rank(), std::move(world), options);
  RETURN_IF_ERROR(core->Init(ids, nullptr));
  LOG_INFO("{}: created ({}), NCCL version code {}", core->Where(), mine.location, mine.version);
  return std::unique_ptr<Communicator>(new NcclCommunicatorImpl(std::move(core)));
}

}  // namespace colossal::parallel

