// Tests of the safetensors writer and reader: byte-exact layout of a small file
// (derived by hand from the format spec), round trip of mixed dtypes and metadata, and
// one test per corruption the reader must reject.
#include "runtime/checkpoint/safetensors.h"

#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/base/env.h"
#include "runtime/checkpoint/file_io.h"

namespace colossal::checkpoint {
namespace {

namespace fs = std::filesystem;

std::string FreshDir(const std::string& name) {
  std::string dir = *base::GetEnv(base::kEnvTestTmpDir) + "/safetensors_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

bool Contains(const absl::Status& s, const std::string& what) {
  return std::string(s.message()).find(what) != std::string::npos;
}

std::string Le64(uint64_t v) {
  std::string out(8, '\0');
  std::memcpy(out.data(), &v, 8);
  return out;
}

// A file from a raw header (padded to 8 like the writer would) and raw data bytes.
std::string WriteRaw(const std::string& path, std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  REQUIRE(WriteFileAtomic(path, Le64(header.size()) + header + data).ok());
  return path;
}

TEST_CASE("DtypeSize") {
  REQUIRE(DtypeSize("F32") == 4);
  REQUIRE(DtypeSize("BF16") == 2);
  REQUIRE(DtypeSize("F16") == 2);
  REQUIRE(DtypeSize("I64") == 8);
  REQUIRE(DtypeSize("U8") == 1);
  REQUIRE(DtypeSize("BOOL") == 1);
  REQUIRE(DtypeSize("F33") == 0);
  REQUIRE(DtypeSize("f32") == 0);
}

TEST_CASE("tensors given by fill write the bytes data views would, and a failed fill leaves no file") {
  std::string dir = FreshDir("fill");
  const float a[3] = {1.5f, -2.0f, 3.25f};
  const uint8_t b[2] = {4, 5};
  std::vector<TensorView> direct = {{"a", "F32", {3}, a}, {"b", "U8", {2}, b}};
  std::vector<TensorView> filled = {{"a", "F32", {3}, nullptr}, {"b", "U8", {2}, b}};
  int calls = 0;
  filled[0].fill = [&](void* dst) {
    ++calls;
    std::memcpy(dst, a, sizeof(a));
    return absl::OkStatus();
  };
  REQUIRE(WriteSafetensors(dir + "/d.safetensors", direct, {}).ok());
  REQUIRE(WriteSafetensors(dir + "/f.safetensors", filled, {}).ok());
  REQUIRE(calls == 1);
  REQUIRE(*ReadFile(dir + "/d.safetensors") == *ReadFile(dir + "/f.safetensors"));
  filled[0].fill = [](void*) { return absl::DataLossError("chunk 3 unreadable"); };
  absl::Status s = WriteSafetensors(dir + "/x.safetensors", filled, {});
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(Contains(s, "tensor 'a': chunk 3 unreadable"));
  REQUIRE_FALSE(fs::exists(dir + "/x.safetensors"));
  REQUIRE_FALSE(fs::exists(dir + "/x.safetensors.tmp"));
}

TEST_CASE("writer produces the exact bytes of the format") {
  std::string dir = FreshDir("golden");
  const float a[2] = {1.0f, 2.0f};
  const uint8_t b[3] = {7, 8, 9};
  std::vector<TensorView> views = {{"b", "U8", {3}, b}, {"a", "F32", {2}, a}};
  REQUIRE(WriteSafetensors(dir + "/g.safetensors", views, {{"format", "pt"}}).ok());

  std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  REQUIRE(header.size() == 138);
  header += std::string(6, ' ');  // Padded to 144 = 18 * 8.
  std::string data(11, '\0');
  std::memcpy(data.data(), a, 8);
  std::memcpy(data.data() + 8, b, 3);
  std::string expected = Le64(144) + header + data;
  REQUIRE(ReadFile(dir + "/g.safetensors").value() == expected);
  REQUIRE_FALSE(fs::exists(dir + "/g.safetensors.tmp"));
}

TEST_CASE("round trip of mixed dtypes, shapes and metadata") {
  std::string dir = FreshDir("roundtrip");
  std::string path = dir + "/m.safetensors";
  std::vector<float> w = {0.5f, -1.25f, 3.0f, 4.5f, -0.0f, 1e-30f};
  std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x7f80, 0x0001};
  std::vector<int64_t> i64 = {-1, int64_t{1} << 40};
  std::vector<uint8_t> u8 = {1, 2, 3, 4, 5};
  int32_t scalar = -42;
  std::vector<TensorView> views = {
      {"weight", "F32", {2, 3}, w.data()},
      {"bias.bf16", "BF16", {4}, bf16.data()},
      {"counts", "I64", {2}, i64.data()},
      {"bytes", "U8", {5}, u8.data()},
      {"scalar", "I32", {}, &scalar},
      {"empty", "F32", {0, 3}, nullptr},
  };
  std::map<std::string, std::string> metadata = {{"step", "17"}, {"note", "héllo \"q\""}};
  REQUIRE(WriteSafetensors(path, views, metadata).ok());

  auto file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  REQUIRE(file->metadata() == metadata);
  std::vector<std::string> names;
  for (const TensorInfo& t : file->tensors()) names.push_back(t.name);
  REQUIRE(names == std::vector<std::string>{"bias.bf16", "bytes", "counts", "empty", "scalar",
                                            "weight"});
  // Data is laid out in name order: offsets increase with the names.
  uint64_t cursor = 0;
  for (const TensorInfo& t : file->tensors()) {
    REQUIRE(t.begin == cursor);
    cursor = t.end;
  }
  REQUIRE(cursor == 8 + 5 + 16 + 0 + 4 + 24);

  const TensorInfo* weight = file->Find("weight");
  REQUIRE(weight != nullptr);
  REQUIRE(weight->dtype == "F32");
  REQUIRE(weight->shape == std::vector<int64_t>{2, 3});
  REQUIRE(weight->num_elements() == 6);
  std::vector<float> got(6);
  std::vector<int64_t> shape = {2, 3};
  REQUIRE(file->CopyF32("weight", shape, got).ok());
  REQUIRE(std::memcmp(got.data(), w.data(), 24) == 0);  // Bit-exact, -0.0 included.

  auto bytes_of = [&](const char* name) {
    std::span<const uint8_t> s = file->Bytes(*file->Find(name));
    return std::vector<uint8_t>(s.begin(), s.end());
  };
  std::vector<uint8_t> bf16_bytes = bytes_of("bias.bf16");
  REQUIRE(bf16_bytes == std::vector<uint8_t>{0x80, 0x3f, 0x00, 0xc0, 0x80, 0x7f, 0x01, 0x00});
  int64_t counts[2];
  std::vector<int64_t> two = {2};
  REQUIRE(file->CopyTensor("counts", "I64", two, counts, sizeof(counts)).ok());
  REQUIRE(counts[0] == -1);
  REQUIRE(counts[1] == int64_t{1} << 40);
  REQUIRE(bytes_of("bytes") == u8);
  int32_t s = 0;
  REQUIRE(file->CopyTensor("scalar", "I32", {}, &s, 4).ok());
  REQUIRE(s == -42);
  REQUIRE(file->Find("scalar")->shape.empty());
  REQUIRE(file->Find("scalar")->num_elements() == 1);
  REQUIRE(file->Find("empty")->num_bytes() == 0);
  REQUIRE(file->Find("empty")->num_elements() == 0);
  REQUIRE(file->Find("nope") == nullptr);
}

TEST_CASE("a file with no tensors and no metadata round-trips") {
  std::string dir = FreshDir("empty");
  REQUIRE(WriteSafetensors(dir + "/e.safetensors", {}, {}).ok());
  REQUIRE(ReadFile(dir + "/e.safetensors").value() == Le64(8) + "{}      ");
  auto file = SafetensorsFile::Open(dir + "/e.safetensors");
  REQUIRE(file.ok());
  REQUIRE(file->tensors().empty());
  REQUIRE(file->metadata().empty());
}

TEST_CASE("the typed accessor checks name, dtype, shape and buffer size") {
  std::string dir = FreshDir("accessor");
  std::string path = dir + "/a.safetensors";
  std::vector<float> w(6, 1.0f);
  std::vector<TensorView> views = {{"w", "F32", {2, 3}, w.data()},
                                   {"h", "F16", {2}, w.data()}};
  REQUIRE(WriteSafetensors(path, views, {}).ok());
  auto file = SafetensorsFile::Open(path);
  REQUIRE(file.ok());
  std::vector<float> out(6);

  std::vector<int64_t> wrong = {3, 2};
  absl::Status s = file->CopyF32("w", wrong, out);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(s.message() == path + ": tensor 'w' has shape [2, 3], expected [3, 2]");

  std::vector<int64_t> two = {2};
  s = file->CopyF32("h", two, std::span<float>(out).first(1));
  REQUIRE(s.message() == path + ": tensor 'h' has dtype F16, expected F32");

  s = file->CopyF32("x", two, out);
  REQUIRE(s.code() == absl::StatusCode::kNotFound);
  REQUIRE(Contains(s, path));
  REQUIRE(Contains(s, "'x'"));

  std::vector<int64_t> right = {2, 3};
  s = file->CopyF32("w", right, std::span<float>(out).first(5));
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(s, "24 bytes but the buffer is 20"));
}

TEST_CASE("writer rejects bad tensors before creating anything") {
  std::string dir = FreshDir("writer_errors");
  std::string path = dir + "/bad.safetensors";
  float x[4] = {};
  auto expect_bad = [&](std::vector<TensorView> views, const std::string& what) {
    absl::Status s = WriteSafetensors(path, views, {});
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(Contains(s, path));
    REQUIRE(Contains(s, what));
    REQUIRE_FALSE(fs::exists(path));
    REQUIRE_FALSE(fs::exists(path + ".tmp"));
  };
  expect_bad({{"a", "F32", {1}, x}, {"a", "F32", {1}, x}}, "duplicate tensor name 'a'");
  expect_bad({{"a", "F33", {1}, x}}, "unknown dtype 'F33'");
  expect_bad({{"a", "F32", {-1}, x}}, "negative dim");
  expect_bad({{"", "F32", {1}, x}}, "empty name");
  expect_bad({{"__metadata__", "F32", {1}, x}}, "__metadata__");
  expect_bad({{"a", "F32", {1}, nullptr}}, "data is null");
}

TEST_CASE("writer into a path under a regular file fails and leaves nothing") {
  std::string dir = FreshDir("writer_notdir");
  std::ofstream(dir + "/plain") << "x";
  float x = 1;
  std::vector<TensorView> views = {{"a", "F32", {1}, &x}};
  std::string path = dir + "/plain/m.safetensors";
  absl::Status s = WriteSafetensors(path, views, {});
  REQUIRE_FALSE(s.ok());
  REQUIRE(Contains(s, path));
  REQUIRE_FALSE(fs::exists(path));
}

// --------------------------------------------------------------- reader corruption

struct Valid {
  std::string path;
  std::string bytes;
};

Valid WriteValid(const std::string& dir) {
  std::vector<float> a = {1, 2, 3, 4};
  std::vector<float> b = {5, 6};
  std::vector<TensorView> views = {{"a", "F32", {2, 2}, a.data()}, {"b", "F32", {2}, b.data()}};
  std::string path = dir + "/valid.safetensors";
  REQUIRE(WriteSafetensors(path, views, {{"k", "v"}}).ok());
  REQUIRE(SafetensorsFile::Open(path).ok());
  return {path, ReadFile(path).value()};
}

absl::Status OpenBytes(const std::string& path, const std::string& bytes) {
  REQUIRE(WriteFileAtomic(path, bytes).ok());
  return SafetensorsFile::Open(path).status();
}

TEST_CASE("reader rejects a missing file") {
  std::string dir = FreshDir("missing");
  absl::Status s = SafetensorsFile::Open(dir + "/nope.safetensors").status();
  REQUIRE(s.code() == absl::StatusCode::kNotFound);
  REQUIRE(Contains(s, dir + "/nope.safetensors"));
}

TEST_CASE("reader rejects truncated files and size fields that lie") {
  std::string dir = FreshDir("truncated");
  Valid v = WriteValid(dir);
  std::string path = dir + "/t.safetensors";

  absl::Status s = OpenBytes(path, v.bytes.substr(0, 5));
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(s.message() == path + ": file is 5 bytes, shorter than the 8-byte header size field");

  s = OpenBytes(path, "");
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);

  // Cut inside the header: the size field now exceeds what follows.
  s = OpenBytes(path, v.bytes.substr(0, 20));
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(Contains(s, path));
  REQUIRE(Contains(s, "larger than the 12 bytes that follow"));

  // Cut inside the data: the last tensor runs past the end.
  s = OpenBytes(path, v.bytes.substr(0, v.bytes.size() - 4));
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(Contains(s, path));
  REQUIRE(Contains(s, "tensor 'b'"));
  REQUIRE(Contains(s, "past the end"));

  // A huge header size.
  std::string huge = v.bytes;
  std::memcpy(huge.data(), Le64(uint64_t{1} << 62).data(), 8);
  s = OpenBytes(path, huge);
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(Contains(s, "header size 4611686018427387904 is larger"));
}

TEST_CASE("reader rejects trailing garbage") {
  std::string dir = FreshDir("trailing");
  Valid v = WriteValid(dir);
  absl::Status s = OpenBytes(v.path, v.bytes + "junk");
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(s.message() == v.path + ": 4 bytes of trailing data after the last tensor (tensors "
                                  "end at 24, buffer is 28 bytes)");
}

TEST_CASE("reader rejects a header that is not JSON") {
  std::string dir = FreshDir("badjson");
  Valid v = WriteValid(dir);
  // Flip the header's opening brace.
  std::string flipped = v.bytes;
  REQUIRE(flipped[8] == '{');
  flipped[8] = '[';
  absl::Status s = OpenBytes(v.path, flipped);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(s, v.path + ": header is not valid JSON"));

  // Corrupt a byte in the middle of the header.
  flipped = v.bytes;
  size_t colon = flipped.find(':', 8);
  flipped[colon] = 0x01;
  s = OpenBytes(v.path, flipped);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(s, "header is not valid JSON"));

  std::string path = dir + "/array.safetensors";
  s = SafetensorsFile::Open(WriteRaw(path, "[1, 2]", "")).status();
  REQUIRE(s.message() == path + ": header is not a JSON object");
}

TEST_CASE("reader rejects entries with missing or malformed fields") {
  std::string dir = FreshDir("fields");
  std::string path = dir + "/f.safetensors";
  std::string data(8, '\0');
  auto open = [&](const std::string& header) {
    return SafetensorsFile::Open(WriteRaw(path, header, data)).status();
  };
  auto expect = [&](const std::string& header, const std::string& message) {
    absl::Status s = open(header);
    REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
    REQUIRE(s.message() == path + ": " + message);
  };
  expect(R"({"x":{"shape":[2],"data_offsets":[0,8]}})", R"(tensor 'x': missing "dtype")");
  expect(R"({"x":{"dtype":"F32","data_offsets":[0,8]}})", R"(tensor 'x': missing "shape")");
  expect(R"({"x":{"dtype":"F32","shape":[2]}})", R"(tensor 'x': missing "data_offsets")");
  expect(R"({"x":[1]})", "tensor 'x': entry is not an object");
  expect(R"({"x":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})",
         "tensor 'x': unknown dtype 'F33' (known: BOOL U8 I8 F8_E4M3 F8_E5M2 I16 U16 F16 BF16 "
         "I32 U32 F32 I64 U64 F64)");
  expect(R"({"x":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", "tensor 'x': dtype is not a string");
  expect(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
         "tensor 'x': shape [-2] is not a list of non-negative integers");
  expect(R"({"x":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})",
         "tensor 'x': shape [2.5] is not a list of non-negative integers");
  expect(R"({"x":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", "tensor 'x': shape is not a list");
  expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
         "tensor 'x': data_offsets [0] is not [begin, end] with non-negative integers");
  expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
         "tensor 'x': data_offsets [8, 0] has begin > end");
  expect(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
         "tensor 'x': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8");
  expect(R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
         "tensor 'x': shape [4611686018427387904,4] is too large");
  expect(R"({"__metadata__":{"k":1},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
         "__metadata__ value for 'k' is not a string");
  expect(R"({"__metadata__":[],"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
         "__metadata__ is not an object");
  expect(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
         R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
         "duplicate header key 'x'");
}

TEST_CASE("reader rejects offsets out of range, overlapping, or leaving gaps") {
  std::string dir = FreshDir("offsets");
  std::string path = dir + "/o.safetensors";
  auto open = [&](const std::string& header, size_t data_bytes) {
    return SafetensorsFile::Open(WriteRaw(path, header, std::string(data_bytes, '\0'))).status();
  };
  absl::Status s = open(R"({"x":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}})", 8);
  REQUIRE(s.code() == absl::StatusCode::kDataLoss);
  REQUIRE(s.message() == path + ": tensor 'x': data_offsets [0, 100] run past the end of the "
                                "8-byte data buffer (file truncated?)");

  s = open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(s.message() == path + ": tensor 'b' [4, 12) overlaps tensor 'a' [0, 8)");

  s = open(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(Contains(s, "overlaps"));

  s = open(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12);
  REQUIRE(s.code() == absl::StatusCode::kInvalidArgument);
  REQUIRE(s.message() == path + ": gap of 4 bytes before tensor 'b' at offset 8");

  // Offsets in any order are fine as long as they tile the buffer.
  s = open(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
           R"("z":{"dtype":"U8","shape":[0],"data_offsets":[8,8]}})", 8);
  REQUIRE(s.ok());
}

}  // namespace
}  // namespace colossal::checkpoint
