// ChunkManager: where each chunk buffer of the model state is — in the compute tier (the
// memory kernels read: host memory on the CPU backend) or on NVMe (nvme_store.h) — and
// the moves between them under a byte budget.
//
// A buffer is one chunk's parameters, gradients or one optimizer moment (the caller
// numbers them; chunk.h). Kernels reach a buffer only between Access and Release; while
// accessed it stays in compute memory at the same address. Every other buffer may be
// moved: when the compute tier needs room, the manager evicts the unpinned, unaccessed
// buffer whose next use is farthest (Belady's rule over the known schedule: the graph is
// static, so the order of every access of a step is known before the first step), and
// after each Advance it prefetches the next buffers the schedule uses into free room
// (or room freed by evicting buffers used later than they are), with the NVMe reads
// overlapping the kernels of the nodes before.
//
// Contents: a buffer starts zero. Evicting one writes it to NVMe only when its compute
// copy was written since NVMe last had it; Discard drops contents no longer needed
// (gradients after the optimizer step) so they are neither written nor read back.
//
// Static placement pins buffers: a pinned buffer is allocated in the compute tier at
// Create and never leaves it; the others page through the room that is left (the
// budget minus the pinned bytes, or `transient_room` without a budget).
//
// Not thread-safe (one per rank, driven by the step loop); the NVMe I/O runs on the
// store's own threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/allocator.h"
#include "memory/mem_stats.h"
#include "memory/nvme_store.h"
#include "memory/place.h"

namespace colossal::memory {

struct ChunkManagerOptions {
  // Bytes of each buffer: multiples of `slot_bytes` (which is a multiple of
  // kNvmeAlignment when NVMe is used).
  std::vector<int64_t> bytes;
  std::vector<Purpose> purpose;  // per buffer: what the allocator counts it as
  std::vector<bool> pinned;      // per buffer (empty: none)
  Place place = Place::Host();   // the compute tier (must be on the host: on_host())
  // Bytes the compute tier may hold (0: unlimited; then, when `transient_room` > 0, the
  // unpinned buffers page through that much: static placement's offloaded chunks).
  int64_t budget = 0;
  int64_t transient_room = 0;
  // Static placement: an unpinned buffer released with no use in the next `keep_window`
  // schedule positions leaves compute memory at once (written to NVMe when changed), so
  // offloaded state lives on NVMe between its uses instead of filling the room as a
  // cache. 0: buffers stay until room is needed (auto).
  int keep_window = 0;
  std::string nvme_dir;   // empty: no NVMe tier (every buffer must then fit the budget)
  int64_t slot_bytes = 0;
  int io_threads = 2;
  // A dry run: no memory is allocated or touched and the NVMe tier moves nothing, but
  // every decision and byte count is the real one (`colossal graph` predicts a step's
  // traffic with it). Access returns addresses that must not be dereferenced.
  bool simulate = false;
};

class ChunkManager {
 public:
  // Allocates the pinned buffers and opens the NVMe tier (reserving a slot for every
  // unpinned buffer). Errors: the NVMe store's (directory, disk space), RESOURCE_EXHAUSTED
  // when the pinned buffers exceed the budget, or when there is no NVMe tier and the
  // buffers cannot all fit.
  static absl::StatusOr<std::unique_ptr<ChunkManager>> Create(ChunkManagerOptions options);
  ~ChunkManager();

  // The accesses of one step in order: uses[k] lists the buffers position k touches. The
  // schedule repeats (position 0 follows the last). Without one, eviction is
  // least-recently-used and nothing is prefetched.
  void SetSchedule(std::vector<std::vector<int>> uses);
  // The step is at schedule position `position` now: next uses are counted from it, and
  // the buffers of the positions ahead are prefetched into the room there is.
  void Advance(int position);

  enum class Mode {
    kRead,       // contents kept, not changed
    kWrite,      // contents kept and changed (written back when evicted)
    kOverwrite,  // contents not needed: the buffer is zeroed, then changed
  };
  // The compute-tier address of `buffer`, valid until its Release (accesses nest:
  // released when every Access has its Release). Waits for its NVMe read if one is in
  // flight. Errors: RESOURCE_EXHAUSTED when the budget cannot make room (naming the
  // budget and the buffers held in it), or the NVMe I/O's error (also kept in status()).
  absl::StatusOr<float*> Access(int buffer, Mode mode);
  void Release(int buffer);
  // The contents of `buffer` are no longer needed (it reads as zeros next time).
  void Discard(int buffer);
  // Waits for every NVMe write in flight; the first I/O error so far.
  absl::Status Flush();
  const absl::Status& status() const { return status_; }

  int num_buffers() const { return static_cast<int>(entries_.size()); }
  bool resident(int buffer) const { return entries_[buffer].mem != nullptr; }
  const MemStats& stats() const { return stats_; }
  // Which I/O engine the NVMe tier runs ("" without NVMe).
  std::string io_note() const { return nvme_ ? nvme_->engine_note() : ""; }
  int64_t room() const { return room_; }

 private:
  struct Entry {
    int64_t bytes = 0;
    Purpose purpose = Purpose::kParameters;
    float* mem = nullptr;      // compute-tier copy, or null
    bool pinned = false;
    bool dead = true;          // contents are zero / not needed
    bool on_nvme = false;      // NVMe holds the contents
    bool dirty = false;        // mem was written since NVMe had it
    int pins = 0;              // open Accesses
    int64_t slot = -1;         // first NVMe slot
    std::vector<NvmeStore::Ticket> io;  // in flight: a read into mem, or a write from it
    bool io_is_write = false;
    bool drop_after_write = false;  // evicted: mem is freed when the write lands
    int64_t last_use = 0;      // Access counter, for LRU without a schedule
  };

  explicit ChunkManager(ChunkManagerOptions options) : options_(std::move(options)) {}
  absl::StatusOr<float*> AccessNow(int buffer, Mode mode);
  absl::Status Init();
  // A compute block of `bytes` for a buffer used `at` positions from now: a free block,
  // one allocated within the room, or an evicted buffer's, evicting as needed; `wait` false (prefetch):
  // only room there is without waiting for writes and without evicting against Belady's
  // order, else null.
  absl::StatusOr<float*> Block(int64_t bytes, bool wait, int64_t at, int exclude);
  void FreeBlock(float* p, int64_t bytes);  // kept in free_ for reuse
  // The allocator's block (a fake address in a dry run), its return, and zeroing.
  absl::StatusOr<float*> NewBlock(int64_t bytes);
  void DeleteBlock(float* p, int64_t bytes);
  void Clear(float* p, int64_t bytes);
  // Starts moving `buffer` out of compute memory (a write when NVMe lacks its contents).
  void Evict(int buffer);
  // Finishes the I/O of `buffer` (blocking when `wait`); false when still in flight.
  bool Complete(int buffer, bool wait);
  void CompleteAll(bool wait);
  // Distance from now to the next use of `buffer` at or after `from` positions ahead
  // (larger: later; never used: max).
  int64_t NextUse(int buffer, int64_t from) const;
  void StartRead(int buffer, float* block);
  void Prefetch();
  std::string Holders() const;

  ChunkManagerOptions options_;
  std::vector<Entry> entries_;
  std::unique_ptr<NvmeStore> nvme_;
  int64_t room_ = 0;   // bytes unpinned buffers may hold in compute memory (max: unlimited)
  int64_t used_ = 0;   // unpinned bytes held (resident, being written out, free blocks)
  std::multimap<int64_t, float*> free_;  // blocks of evicted buffers, kept for reuse by size
  int64_t pinned_bytes_ = 0;
  uintptr_t fake_next_ = 1 << 20;  // a dry run's next address
  std::vector<std::vector<int>> uses_;   // the schedule
  std::vector<std::vector<int>> use_positions_;  // per buffer, sorted
  int position_ = 0;
  int64_t clock_ = 0;
  std::vector<int> in_flight_;  // buffers with I/O in flight
  MemStats stats_;
  absl::Status status_;
};

}  // namespace colossal::memory
