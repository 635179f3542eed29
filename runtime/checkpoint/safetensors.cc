// safetensors writer (sorted, padded header; streamed data through AtomicFile) and
// strict reader (whole file read once, every header field and offset validated).
#include "runtime/checkpoint/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/base/status_macros.h"
#include "runtime/checkpoint/file_io.h"

namespace colossal::checkpoint {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps");

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // The Python library's limit.
constexpr std::string_view kMetadataKey = "__metadata__";

struct DtypeEntry {
  std::string_view name;
  int64_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
};

std::string KnownDtypes() {
  std::string names;
  for (const DtypeEntry& d : kDtypes) {
    if (!names.empty()) names += ' ';
    names += d.name;
  }
  return names;
}

// product(shape) * elem_size, or nullopt on overflow of int64.
std::optional<int64_t> ByteSize(std::span<const int64_t> shape, int64_t elem_size) {
  int64_t n = elem_size;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return std::nullopt;
    n *= d;
  }
  return n;
}

}  // namespace

int64_t DtypeSize(std::string_view dtype) {
  for (const DtypeEntry& d : kDtypes) {
    if (d.name == dtype) return d.size;
  }
  return 0;
}

std::string ShapeString(std::span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // Validated against overflow at Open().
  return n;
}

// ---------------------------------------------------------------------------- writer

absl::Status WriteSafetensors(const std::string& path, std::span<const TensorView> tensors,
                              const std::map<std::string, std::string>& metadata) {
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("write ", path, ": ", what));
  };
  std::vector<const TensorView*> order;
  std::vector<int64_t> bytes(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    if (t.name.empty()) return bad(absl::StrCat("tensor #", i, " has an empty name"));
    if (t.name == kMetadataKey) return bad("a tensor may not be called __metadata__");
    int64_t elem = DtypeSize(t.dtype);
    if (elem == 0) {
      return bad(absl::StrCat("tensor '", t.name, "': unknown dtype '", t.dtype,
                              "' (known: ", KnownDtypes(), ")"));
    }
    std::optional<int64_t> n = ByteSize(t.shape, elem);
    if (!n) {
      return bad(absl::StrCat("tensor '", t.name, "': shape ", ShapeString(t.shape),
                              " has a negative dim or is too large"));
    }
    if (*n > 0 && t.data == nullptr && !t.fill) {
      return bad(absl::StrCat("tensor '", t.name, "': data is null"));
    }
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(),
            [](const TensorView* a, const TensorView* b) { return a->name < b->name; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->name == order[i - 1]->name) {
      return bad(absl::StrCat("duplicate tensor name '", order[i]->name, "'"));
    }
  }

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[std::string(kMetadataKey)] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const TensorView* t : order) {
    uint64_t n = static_cast<uint64_t>(*ByteSize(t->shape, DtypeSize(t->dtype)));
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = t->dtype;
    entry["shape"] = t->shape;
    entry["data_offsets"] = {offset, offset + n};
    header[t->name] = std::move(entry);
    offset += n;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    return bad(absl::StrCat("names and metadata must be valid UTF-8 (", e.what(), ")"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  uint8_t size_le[8];
  uint64_t header_size = text.size();
  std::memcpy(size_le, &header_size, 8);

  ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path));
  RETURN_IF_ERROR(file.Append(size_le, 8));
  RETURN_IF_ERROR(file.Append(text));
  std::vector<char> filled;  // the bytes of a tensor given by `fill`, one at a time
  for (const TensorView* t : order) {
    int64_t n = *ByteSize(t->shape, DtypeSize(t->dtype));
    if (n == 0) continue;
    if (t->data != nullptr) {
      RETURN_IF_ERROR(file.Append(t->data, static_cast<size_t>(n)));
      continue;
    }
    filled.resize(static_cast<size_t>(n));
    if (absl::Status s = t->fill(filled.data()); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(path, ": tensor '", t->name, "': ", s.message()));
    }
    RETURN_IF_ERROR(file.Append(filled.data(), static_cast<size_t>(n)));
  }
  return file.Commit();
}

// ---------------------------------------------------------------------------- reader

absl::StatusOr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  auto invalid = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  auto data_loss = [&](const std::string& what) {
    return absl::DataLossError(absl::StrCat(path, ": ", what));
  };

  SafetensorsFile file;
  file.path_ = path;
  ASSIGN_OR_RETURN(file.contents_, ReadFile(path));
  const std::string& bytes = file.contents_;
  if (bytes.size() < 8) {
    return data_loss(absl::StrCat("file is ", bytes.size(),
                                  " bytes, shorter than the 8-byte header size field"));
  }
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  if (header_size > bytes.size() - 8) {
    return data_loss(absl::StrCat("header size ", header_size, " is larger than the ",
                                  bytes.size() - 8, " bytes that follow it"));
  }
  if (header_size > kMaxHeaderBytes) {
    return invalid(absl::StrCat("header size ", header_size, " exceeds the limit of ",
                                kMaxHeaderBytes, " bytes"));
  }
  file.data_start_ = 8 + header_size;
  const uint64_t buffer_size = bytes.size() - file.data_start_;

  // Parse, noticing duplicate top-level keys (nlohmann would silently keep the last).
  std::set<std::string> keys;
  std::string duplicate;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys.insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  std::string_view text(bytes.data() + 8, header_size);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text.begin(), text.end(), callback);
  } catch (const nlohmann::json::exception& e) {
    return invalid(absl::StrCat("header is not valid JSON: ", e.what()));
  }
  if (!header.is_object()) return invalid("header is not a JSON object");
  if (!duplicate.empty()) return invalid(absl::StrCat("duplicate header key '", duplicate, "'"));

  auto non_negative = [](const nlohmann::json& v) {
    return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  };
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) return invalid("__metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          return invalid(absl::StrCat("__metadata__ value for '", mk, "' is not a string"));
        }
        file.metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    std::string where = absl::StrCat("tensor '", key, "': ");
    if (!value.is_object()) return invalid(absl::StrCat(where, "entry is not an object"));
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!value.contains(field)) return invalid(absl::StrCat(where, "missing \"", field, "\""));
    }
    TensorInfo info;
    info.name = key;
    const nlohmann::json& dtype = value["dtype"];
    if (!dtype.is_string()) return invalid(absl::StrCat(where, "dtype is not a string"));
    info.dtype = dtype.get<std::string>();
    int64_t elem = DtypeSize(info.dtype);
    if (elem == 0) {
      return invalid(absl::StrCat(where, "unknown dtype '", info.dtype,
                                  "' (known: ", KnownDtypes(), ")"));
    }
    const nlohmann::json& shape = value["shape"];
    if (!shape.is_array()) return invalid(absl::StrCat(where, "shape is not a list"));
    for (const nlohmann::json& d : shape) {
      if (!non_negative(d) || d.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
        return invalid(absl::StrCat(where, "shape ", shape.dump(),
                                    " is not a list of non-negative integers"));
      }
      info.shape.push_back(d.get<int64_t>());
    }
    const nlohmann::json& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !non_negative(offsets[0]) ||
        !non_negative(offsets[1])) {
      return invalid(absl::StrCat(where, "data_offsets ", offsets.dump(),
                                  " is not [begin, end] with non-negative integers"));
    }
    info.begin = offsets[0].get<uint64_t>();
    info.end = offsets[1].get<uint64_t>();
    if (info.begin > info.end) {
      return invalid(absl::StrCat(where, "data_offsets [", info.begin, ", ", info.end,
                                  "] has begin > end"));
    }
    if (info.end > buffer_size) {
      return data_loss(absl::StrCat(where, "data_offsets [", info.begin, ", ", info.end,
                                    "] run past the end of the ", buffer_size,
                                    "-byte data buffer (file truncated?)"));
    }
    std::optional<int64_t> expected = ByteSize(info.shape, elem);
    if (!expected) return invalid(absl::StrCat(where, "shape ", shape.dump(), " is too large"));
    if (static_cast<uint64_t>(*expected) != info.num_bytes()) {
      return invalid(absl::StrCat(where, "shape ", ShapeString(info.shape), " of ", info.dtype,
                                  " needs ", *expected, " bytes but data_offsets [",
                                  info.begin, ", ", info.end, "] hold ", info.num_bytes()));
    }
    file.tensors_.push_back(std::move(info));
  }

  // The tensors must tile [0, buffer_size) exactly.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : file.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t cursor = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (t->begin < cursor) {
      return invalid(absl::StrCat("tensor '", t->name, "' [", t->begin, ", ", t->end,
                                  ") overlaps tensor '", previous->name, "' [",
                                  previous->begin, ", ", previous->end, ")"));
    }
    if (t->begin > cursor) {
      return invalid(absl::StrCat("gap of ", t->begin - cursor, " bytes before tensor '",
                                  t->name, "' at offset ", t->begin));
    }
    cursor = t->end;
    if (t->end > t->begin || previous == nullptr) previous = t;
  }
  if (cursor != buffer_size) {
    return data_loss(absl::StrCat(buffer_size - cursor, " bytes of trailing data after the last "
                                  "tensor (tensors end at ", cursor, ", buffer is ",
                                  buffer_size, " bytes)"));
  }
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return file;
}

const TensorInfo* SafetensorsFile::Find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

std::span<const uint8_t> SafetensorsFile::Bytes(const TensorInfo& info) const {
  const uint8_t* base = reinterpret_cast<const uint8_t*>(contents_.data()) + data_start_;
  return {base + info.begin, static_cast<size_t>(info.num_bytes())};
}

absl::Status SafetensorsFile::CopyTensor(std::string_view name, std::string_view dtype,
                                         std::span<const int64_t> shape, void* out,
                                         size_t out_bytes) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", std::string(name),
                                            "' (the file has ",
                                            tensors_.size(), " tensors)"));
  }
  if (info->dtype != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", info->name, "' has dtype ",
                                                   info->dtype, ", expected ", std::string(dtype)));
  }
  if (!std::equal(shape.begin(), shape.end(), info->shape.begin(), info->shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", info->name, "' has shape ",
                                                   ShapeString(info->shape), ", expected ",
                                                   ShapeString(shape)));
  }
  if (out_bytes != info->num_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", info->name, "' is ",
                                                   info->num_bytes(), " bytes but the buffer is ",
                                                   out_bytes));
  }
  if (out_bytes > 0) std::memcpy(out, Bytes(*info).data(), out_bytes);
  return absl::OkStatus();
}

absl::Status SafetensorsFile::CopyF32(std::string_view name, std::span<const int64_t> shape,
                                      std::span<float> out) const {
  return CopyTensor(name, "F32", shape, out.data(), out.size_bytes());
}

}  // namespace colossal::checkpoint
