// Piece-aware tensor reads.
#include "runtime/checkpoint/pieces.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace colossal::checkpoint {

std::string PieceName(std::string_view name, int64_t offset) {
  return absl::StrCat(std::string(name), "@", offset);
}

std::string BlockPieceName(std::string_view name, int64_t offset, int64_t stride) {
  return absl::StrCat(std::string(name), "@", offset, ":", stride);
}

absl::StatusOr<PieceReader> PieceReader::Open(const std::vector<std::string>& files) {
  PieceReader r;
  for (const std::string& path : files) {
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) return file.status();
    r.files_.push_back(std::move(*file));
  }
  for (int f = 0; f < static_cast<int>(r.files_.size()); ++f) {
    for (const TensorInfo& t : r.files_[f].tensors()) {
      std::string base = t.name;
      int64_t offset = 0, stride = 0;
      const auto at = t.name.rfind('@');
      const bool piece = at != std::string::npos;
      if (piece) {
        base = t.name.substr(0, at);
        const std::string spec = t.name.substr(at + 1);
        const auto colon = spec.find(':');
        const bool block = colon != std::string::npos;
        if (!absl::SimpleAtoi(spec.substr(0, colon), &offset) || offset < 0 ||
            (block && (!absl::SimpleAtoi(spec.substr(colon + 1), &stride) || stride < 1))) {
          return absl::InvalidArgumentError(
              absl::StrCat(r.files_[f].path(), ": tensor '", t.name, "' has a bad piece offset"));
        }
        if (t.dtype != "F32" || t.shape.size() != (block ? 2u : 1u) || (block && t.shape[1] > stride)) {
          return absl::InvalidArgumentError(absl::StrCat(
              r.files_[f].path(), ": piece '", t.name,
              block ? "' must be 2-D F32 [rows, width] with width <= its stride" : "' must be 1-D F32"));
        }
        if (block) {
          for (int64_t i = 0; i < t.shape[0]; ++i) {
            r.pieces_[base].push_back({f, &t, offset + i * stride, t.shape[1], i * t.shape[1]});
          }
          continue;
        }
      } else if (t.dtype == "F32") {
        r.whole_shapes_[base] = t.shape;
      }
      r.pieces_[base].push_back({f, &t, offset, t.num_elements()});
    }
  }
  for (auto& [name, list] : r.pieces_) {
    std::sort(list.begin(), list.end(), [](const Piece& a, const Piece& b) { return a.offset < b.offset; });
    for (size_t i = 1; i < list.size(); ++i) {
      if (list[i - 1].offset + list[i - 1].count > list[i].offset) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "': pieces in ", r.files_[list[i - 1].file].path(), " and ",
            r.files_[list[i].file].path(), " overlap at element ", list[i].offset));
      }
    }
  }
  return r;
}

absl::Status PieceReader::ReadF32(std::string_view name, int64_t offset, int64_t count,
                                  float* out) const {
  auto it = pieces_.find(name);
  if (it == pieces_.end()) {
    return absl::NotFoundError(absl::StrCat("tensor '", std::string(name), "' is not in the checkpoint"));
  }
  int64_t next = offset;  // first element not yet copied
  const int64_t end = offset + count;
  for (const Piece& p : it->second) {
    if (p.offset + p.count <= next || p.offset >= end) continue;
    if (p.offset > next) break;  // gap
    if (p.info->dtype != "F32") {
      return absl::InvalidArgumentError(absl::StrCat(files_[p.file].path(), ": tensor '",
                                                     p.info->name, "' is ", p.info->dtype, ", not F32"));
    }
    const int64_t stop = std::min(end, p.offset + p.count);
    std::span<const uint8_t> bytes = files_[p.file].Bytes(*p.info);
    std::memcpy(out + (next - offset), bytes.data() + (p.src + next - p.offset) * sizeof(float),
                (stop - next) * sizeof(float));
    next = stop;
    if (next == end) break;
  }
  if (next < end) {
    return absl::NotFoundError(absl::StrCat("tensor '", std::string(name), "': element ", next,
                                            " is in no file of the checkpoint"));
  }
  return absl::OkStatus();
}

int64_t PieceReader::CoveredElements(std::string_view name) const {
  auto it = pieces_.find(name);
  if (it == pieces_.end()) return 0;
  int64_t n = 0;
  for (const Piece& p : it->second) n += p.count;
  return n;
}

const std::vector<int64_t>* PieceReader::WholeShape(std::string_view name) const {
  auto it = whole_shapes_.find(name);
  return it == whole_shapes_.end() ? nullptr : &it->second;
}

std::vector<std::string> PieceReader::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, list] : pieces_) names.push_back(name);
  return names;
}

}  // namespace colossal::checkpoint
