// Hugging Face safetensors files: a strict reader and an atomic writer.
// Owns the byte format only; which tensors a checkpoint holds, and what they mean, is
// checkpoint.h's and the worker's business.
//
// Format (https://github.com/huggingface/safetensors):
//   u64 little-endian N | N bytes of UTF-8 JSON header | byte buffer
//   header = {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]}, ...,
//             "__metadata__": {"<key>": "<string value>", ...}}   (metadata optional)
//   data_offsets are relative to the start of the byte buffer; tensor data is
//   row-major, little-endian, and the tensors tile the buffer exactly (no gaps, no
//   overlap, nothing after the last one).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace colossal::checkpoint {

// Bytes per element of a safetensors dtype name ("F32" → 4, "BF16" → 2, ...), or 0 for
// a name we do not know. Known: BOOL U8 I8 F8_E4M3 F8_E5M2 I16 U16 F16 BF16 I32 U32
// F32 I64 U64 F64.
int64_t DtypeSize(std::string_view dtype);

// A tensor to write. Borrowed: `data` must hold product(shape) * DtypeSize(dtype)
// bytes (row-major) and stay valid for the duration of the write call.
struct TensorView {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  // With `data` null: writes the tensor's bytes into `dst` when the writer reaches it
  // (tensors paged out of memory are copied in one at a time, never gathered first).
  std::function<absl::Status(void* dst)> fill;
};

// Writes `tensors` and `metadata` to `path` atomically (file_io.h AtomicFile: path.tmp,
// fsync, rename, fsync dir; on error nothing new is at `path`). Header: compact JSON,
// "__metadata__" first (omitted when empty), then the tensors sorted by name (byte
// order), padded with spaces to a multiple of 8 bytes, as the Python library writes
// it; data stored contiguously in name order. (The Python library orders data by dtype
// size first, then name, to keep every tensor aligned; readers accept any order, and
// ours copies, so name order is all we promise.) Data is streamed from the views, not
// gathered into one buffer.
// InvalidArgument (before anything is created) for an empty or duplicate name, the
// name "__metadata__", an unknown dtype, a negative dim, or a null `data` for a
// non-empty tensor.
absl::Status WriteSafetensors(const std::string& path, std::span<const TensorView> tensors,
                              const std::map<std::string, std::string>& metadata);

// One tensor of an opened file. `begin`/`end` are byte offsets into the data buffer.
struct TensorInfo {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;

  int64_t num_elements() const;
  uint64_t num_bytes() const { return end - begin; }
};

// An opened, fully validated safetensors file. The whole file is read into memory with
// one read loop at Open() (no mmap: a file truncated or replaced by another process
// afterwards cannot fault us, and checkpoints are read once at start-up). Immutable
// after Open(), so every const method is safe to call from several threads. Movable,
// not copyable.
//
// Open() rejects, each with one line naming the file (and the tensor where there is
// one): a missing/unreadable file (errno code), a file shorter than 8 bytes, a header
// size larger than the rest of the file or than 100 MB, a header that is not a JSON
// object (or has duplicate keys), entries that are not objects or lack dtype / shape /
// data_offsets, an unknown dtype, a shape that is not a list of non-negative integers,
// data_offsets that are not [begin, end] with begin <= end <= buffer size, a byte length
// != product(shape) * dtype size, tensors that overlap or leave a gap, trailing bytes
// after the last tensor, and "__metadata__" that is not a {string: string} object.
// Problems inside the header (JSON, fields, dtype, length vs shape, overlap, gaps) are
// InvalidArgument; sizes that disagree with the bytes present (short file, header or
// offsets past the end, trailing data) are DataLoss.
class SafetensorsFile {
 public:
  static absl::StatusOr<SafetensorsFile> Open(const std::string& path);

  const std::string& path() const { return path_; }
  // Every tensor, sorted by name.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The tensor called `name`, or nullptr.
  const TensorInfo* Find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The raw little-endian bytes of `info` (which must come from this file).
  std::span<const uint8_t> Bytes(const TensorInfo& info) const;

  // Copies tensor `name` into `out` after checking that it exists, has dtype `dtype`
  // and exactly `shape`. `out_bytes` must equal the tensor's byte size. Errors
  // (NotFound / InvalidArgument) name the file, the tensor, and expected vs actual.
  absl::Status CopyTensor(std::string_view name, std::string_view dtype,
                          std::span<const int64_t> shape, void* out, size_t out_bytes) const;
  // CopyTensor for "F32".
  absl::Status CopyF32(std::string_view name, std::span<const int64_t> shape,
                       std::span<float> out) const;

 private:
  SafetensorsFile() = default;

  std::string path_;
  std::string contents_;  // The whole file.
  uint64_t data_start_ = 0;  // 8 + N.
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// "[2, 3]" for error messages.
std::string ShapeString(std::span<const int64_t> shape);

}  // namespace colossal::checkpoint
