// Tests for the safetensors reader and writer: round trips, layout, malformed files, fuzzing.
#include "base/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace blockserve {
namespace {

using ::testing::HasSubstr;
using TensorList = std::vector<std::pair<std::string, ConstTensorView>>;

constexpr char kBufferName[] = "mem.safetensors";

std::string TempPath(absl::string_view name) {
  return absl::StrCat(::testing::TempDir(), "/safetensors_test_", ::getpid(), "_", name);
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool FileExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string Le64(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out;
}

// Hand-built file: length prefix, header (padded with spaces so that the data buffer starts
// at a multiple of 8 unless `pad` is false), then `data`.
std::string RawFile(std::string header, absl::string_view data, bool pad = true) {
  while (pad && (8 + header.size()) % 8 != 0) header.push_back(' ');
  return absl::StrCat(Le64(header.size()), header, data);
}

// `bytes` zero bytes ... of a recognizable non-zero pattern.
std::string Bytes(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(0x11 + i);
  return out;
}

// An F32 header entry.
std::string F32Entry(const std::string& name, const std::string& shape, uint64_t begin,
                     uint64_t end) {
  return absl::StrCat("\"", name, "\":{\"dtype\":\"F32\",\"shape\":", shape, ",\"data_offsets\":[",
                      begin, ",", end, "]}");
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> Load(const std::string& bytes) {
  return SafetensorsFile::FromBuffer(bytes, kBufferName);
}

// Owns test tensors filled with random non-zero bytes.
struct TestTensors {
  std::vector<std::string> names;
  std::vector<Tensor> tensors;

  void Add(std::string name, DType dtype, Shape shape, std::mt19937* rng) {
    Tensor t(dtype, std::move(shape));
    auto* bytes = static_cast<uint8_t*>(t.data());
    std::uniform_int_distribution<int> byte(1, 255);
    for (size_t i = 0; i < t.num_bytes(); ++i) {
      bytes[i] = dtype == DType::kBool ? 1 : static_cast<uint8_t>(byte(*rng));
    }
    names.push_back(std::move(name));
    tensors.push_back(std::move(t));
  }
  TensorList List() const {
    TensorList list;
    for (size_t i = 0; i < names.size(); ++i) list.emplace_back(names[i], tensors[i].view());
    return list;
  }
};

const std::vector<Shape>& TestShapes() {
  static const auto* shapes =
      new std::vector<Shape>{{}, {7}, {2, 3}, {0}, {3, 0, 2}, {2, 3, 5}, {1, 1, 1, 9}};
  return *shapes;
}

TestTensors AllDTypeTensors(uint32_t seed) {
  std::mt19937 rng(seed);
  TestTensors out;
  for (DType dtype : AllDTypes()) {
    for (size_t i = 0; i < TestShapes().size(); ++i) {
      out.Add(absl::StrCat(DTypeName(dtype), "/t", i), dtype, TestShapes()[i], &rng);
    }
  }
  return out;
}

// A small valid file with several dtypes, a scalar, a zero-size tensor and metadata.
std::string SmallValidFile() {
  std::mt19937 rng(7);
  TestTensors t;
  t.Add("w", DType::kF32, {2, 3}, &rng);
  t.Add("h", DType::kF16, {3}, &rng);
  t.Add("s", DType::kI64, {}, &rng);
  t.Add("b", DType::kU8, {5}, &rng);
  t.Add("z", DType::kBF16, {0, 4}, &rng);
  auto bytes = SerializeSafetensors(t.List(), {{"format", "pt"}});
  BS_CHECK(bytes.ok());
  return *bytes;
}

void ExpectSameTensors(const SafetensorsFile& file, const TestTensors& expected) {
  std::vector<std::string> sorted = expected.names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(file.names(), sorted);
  for (size_t i = 0; i < expected.names.size(); ++i) {
    SCOPED_TRACE(expected.names[i]);
    const Tensor& want = expected.tensors[i];
    ASSERT_TRUE(file.contains(expected.names[i]));
    auto view = file.Get(expected.names[i]);
    ASSERT_TRUE(view.ok()) << view.status();
    EXPECT_EQ(view->dtype, want.dtype());
    EXPECT_EQ(view->shape, want.shape());
    ASSERT_EQ(view->num_bytes(), want.num_bytes());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % DTypeSize(view->dtype), 0u);
    if (want.num_bytes() > 0) {
      EXPECT_EQ(std::memcmp(view->data, want.data(), want.num_bytes()), 0);
    }
  }
}

// ---------------------------------------------------------------- round trips and layout

TEST(SafetensorsTest, RoundTripEveryDTypeFromBuffer) {
  const TestTensors t = AllDTypeTensors(1);
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "h\u00e9llo \"quoted\"\n"}, {"", "empty key"}};
  auto bytes = SerializeSafetensors(t.List(), metadata);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto file = Load(*bytes);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), metadata);
  EXPECT_EQ((*file)->size_bytes(), bytes->size());
  EXPECT_EQ((*file)->display_name(), kBufferName);
  ExpectSameTensors(**file, t);
}

TEST(SafetensorsTest, RoundTripEveryDTypeThroughFile) {
  const TestTensors t = AllDTypeTensors(2);
  const std::map<std::string, std::string> metadata = {{"step", "1234"}};
  const std::string path = TempPath("roundtrip.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, t.List(), metadata).ok());
  EXPECT_FALSE(FileExists(absl::StrCat(path, ".tmp.", ::getpid())));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), metadata);
  ExpectSameTensors(**file, t);
  // The streamed file and the in-memory serialization are byte-identical.
  auto bytes = SerializeSafetensors(t.List(), metadata);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(ReadFileBytes(path), *bytes);
  EXPECT_EQ((*file)->size_bytes(), bytes->size());
  ::unlink(path.c_str());
}

TEST(SafetensorsTest, WriterLayoutIsAligned) {
  const TestTensors t = AllDTypeTensors(3);
  auto bytes = SerializeSafetensors(t.List(), {{"a", "b"}});
  ASSERT_TRUE(bytes.ok());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<uint8_t>((*bytes)[i])) << (8 * i);
  EXPECT_EQ((8 + n) % 8, 0u);
  const std::string header = bytes->substr(8, n);
  const size_t close = header.rfind('}');
  ASSERT_NE(close, std::string::npos);
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos) << "padding is spaces";
  const nlohmann::json json = nlohmann::json::parse(header);
  struct Placed {
    uint64_t begin;
    size_t element_size;
    std::string name;
  };
  std::vector<Placed> placed;
  for (const auto& item : json.items()) {
    if (item.key() == "__metadata__") continue;
    const size_t size = DTypeSize(*ParseDType(item.value()["dtype"].get<std::string>()));
    const uint64_t begin = item.value()["data_offsets"][0].get<uint64_t>();
    EXPECT_EQ((8 + n + begin) % size, 0u) << item.key();
    placed.push_back({begin, size, item.key()});
  }
  std::sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
  });
  for (size_t i = 1; i < placed.size(); ++i) {
    const Placed& a = placed[i - 1];
    const Placed& b = placed[i];
    if (a.begin == b.begin) continue;  // zero-size tensors share offsets
    EXPECT_GE(a.element_size, b.element_size) << a.name << " then " << b.name;
    if (a.element_size == b.element_size) {
      EXPECT_LT(a.name, b.name);
    }
  }
}

TEST(SafetensorsTest, ZeroTensorsAndZeroSizeTensorsAreValid) {
  auto empty = SerializeSafetensors({}, {});
  ASSERT_TRUE(empty.ok());
  auto file = Load(*empty);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->names().empty());
  EXPECT_TRUE((*file)->metadata().empty());

  // Hand-written: zero-size tensors before, between and after real ones, two at one offset.
  const std::string header =
      absl::StrCat("{", F32Entry("a", "[2]", 0, 8), ",", F32Entry("z0", "[0]", 0, 0), ",",
                   F32Entry("z1", "[3,0]", 8, 8), ",", F32Entry("z2", "[0]", 8, 8), ",",
                   F32Entry("b", "[1,2]", 8, 16), ",", F32Entry("z3", "[0,0]", 16, 16), "}");
  file = Load(RawFile(header, Bytes(16)));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"a", "b", "z0", "z1", "z2", "z3"}));
  auto z = (*file)->Get("z1");
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->num_elements(), 0);
  EXPECT_EQ(z->shape, (Shape{3, 0}));

  // Only zero-size tensors and no data at all.
  file = Load(RawFile(absl::StrCat("{", F32Entry("z", "[0]", 0, 0), "}"), ""));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE((*file)->contains("z"));

  // A writer view with null data but zero elements is fine.
  auto bytes = SerializeSafetensors({{"e", ConstTensorView{DType::kF32, {0, 5}, nullptr}}}, {});
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_TRUE(Load(*bytes).ok());
}

TEST(SafetensorsTest, GetMissingTensorIsNotFound) {
  auto file = Load(SmallValidFile());
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE((*file)->contains("nope"));
  auto missing = (*file)->Get("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("tensor 'nope' not found"));
  EXPECT_THAT(missing.status().message(), HasSubstr(kBufferName));
}

TEST(SafetensorsTest, ConcurrentReads) {
  const TestTensors t = AllDTypeTensors(4);
  auto bytes = SerializeSafetensors(t.List(), {});
  ASSERT_TRUE(bytes.ok());
  auto file = Load(*bytes);
  ASSERT_TRUE(file.ok());
  const SafetensorsFile& shared = **file;
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = 0; i < t.names.size(); ++i) {
          auto view = shared.Get(t.names[i]);
          if (!view.ok() || view->num_bytes() != t.tensors[i].num_bytes() ||
              (view->num_bytes() > 0 &&
               std::memcmp(view->data, t.tensors[i].data(), view->num_bytes()) != 0)) {
            ++failures[k];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

// ---------------------------------------------------------------- writer

TEST(SafetensorsWriterTest, RejectsBadInput) {
  const float values[4] = {1, 2, 3, 4};
  const ConstTensorView ok_view{DType::kF32, {4}, values};
  struct Case {
    const char* label;
    TensorList tensors;
    std::map<std::string, std::string> metadata;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"duplicate", {{"x", ok_view}, {"x", ok_view}}, {}, "duplicate tensor name 'x'"},
      {"empty name", {{"x", ok_view}, {"", ok_view}}, {}, "tensor #1 has an empty name"},
      {"reserved", {{"__metadata__", ok_view}}, {}, "'__metadata__' is reserved"},
      {"null data",
       {{"n", ConstTensorView{DType::kF32, {2}, nullptr}}},
       {},
       "tensor 'n' has 2 elements but null data"},
      {"negative dim",
       {{"neg", ConstTensorView{DType::kF32, {2, -1}, values}}},
       {},
       "negative dimension -1"},
      {"bad utf8 name", {{"bad\xff", ok_view}}, {}, "tensor name 'bad\\xff' is not valid UTF-8"},
      {"bad utf8 metadata", {{"x", ok_view}}, {{"k", "\xc3"}}, "metadata entry 'k'"},
  };
  const std::string path = TempPath("rejected.safetensors");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    auto bytes = SerializeSafetensors(c.tensors, c.metadata);
    ASSERT_FALSE(bytes.ok());
    EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(bytes.status().message(), HasSubstr(c.message));
    absl::Status written = WriteSafetensors(path, c.tensors, c.metadata);
    EXPECT_THAT(written.message(), HasSubstr(c.message));
    EXPECT_FALSE(FileExists(path));
    EXPECT_FALSE(FileExists(absl::StrCat(path, ".tmp.", ::getpid())));
  }
}

TEST(SafetensorsWriterTest, OverwritesAtomicallyAndReportsIoErrors) {
  const std::string path = TempPath("overwrite.safetensors");
  const float a[2] = {1, 2};
  const int32_t b[3] = {7, 8, 9};
  ASSERT_TRUE(WriteSafetensors(path, {{"a", ConstTensorView{DType::kF32, {2}, a}}}, {}).ok());
  ASSERT_TRUE(WriteSafetensors(path, {{"b", ConstTensorView{DType::kI32, {3}, b}}}, {}).ok());
  EXPECT_FALSE(FileExists(absl::StrCat(path, ".tmp.", ::getpid())));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names(), std::vector<std::string>{"b"});
  EXPECT_EQ((*file)->Get("b")->as<int32_t>()[2], 9);
  ::unlink(path.c_str());

  absl::Status status = WriteSafetensors("/nonexistent_dir_for_safetensors_test/x.safetensors",
                                         {{"a", ConstTensorView{DType::kF32, {2}, a}}}, {});
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("cannot create"));
}

// ---------------------------------------------------------------- Open() errors

TEST(SafetensorsOpenTest, FileSystemErrors) {
  auto missing = SafetensorsFile::Open(TempPath("does_not_exist.safetensors"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("does_not_exist.safetensors"));

  auto dir = SafetensorsFile::Open(::testing::TempDir());
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(dir.status().message(), HasSubstr("is not a regular file"));

  const std::string empty = TempPath("empty.safetensors");
  WriteFileBytes(empty, "");
  auto opened = SafetensorsFile::Open(empty);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(opened.status().message(), HasSubstr("file is 0 bytes, shorter than the 8-byte"));
  EXPECT_THAT(opened.status().message(), HasSubstr(empty));
  ::unlink(empty.c_str());
}

// ---------------------------------------------------------------- malformed files

struct Malformed {
  Malformed(std::string label_in, std::string bytes_in, std::string message_in,
            std::string tensor_in = "")
      : label(std::move(label_in)),
        bytes(std::move(bytes_in)),
        message(std::move(message_in)),
        tensor(std::move(tensor_in)) {}

  std::string label;
  std::string bytes;
  std::string message;  // a substring unique to this failure
  std::string tensor;   // the tensor the message must name, if any
};

void ExpectAllRejected(const std::vector<Malformed>& cases) {
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.label);
    auto file = Load(c.bytes);
    ASSERT_FALSE(file.ok()) << "accepted";
    const absl::StatusCode code = file.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kDataLoss)
        << file.status();
    EXPECT_THAT(file.status().message(), HasSubstr(c.message));
    EXPECT_THAT(file.status().message(), HasSubstr(absl::StrCat("'", kBufferName, "'")));
    if (!c.tensor.empty()) {
      EXPECT_THAT(file.status().message(), HasSubstr(absl::StrCat("tensor '", c.tensor, "'")));
    }
  }
}

std::string OneF32(const std::string& shape, uint64_t begin, uint64_t end) {
  return absl::StrCat("{", F32Entry("t", shape, begin, end), "}");
}

TEST(SafetensorsMalformedTest, LengthPrefix) {
  std::vector<Malformed> cases;
  for (size_t n = 0; n < 8; ++n) {
    cases.push_back({absl::StrCat("short ", n), std::string(n, '\0'),
                     absl::StrCat("file is ", n, " bytes, shorter than the 8-byte header")});
  }
  cases.push_back({"over limit", absl::StrCat(Le64(100'000'001), "{}"),
                   "header length 100000001 exceeds the limit of 100000000 bytes"});
  cases.push_back({"max u64", absl::StrCat(Le64(~uint64_t{0}), "{}"), "exceeds the limit"});
  cases.push_back({"past end", absl::StrCat(Le64(100), "{}      "),
                   "header length 100 runs past the end of the file (file is 16 bytes)"});
  ExpectAllRejected(cases);
}

TEST(SafetensorsMalformedTest, HeaderJson) {
  ExpectAllRejected({
      {"syntax", RawFile("{\"t\": }", ""), "header is not valid JSON"},
      {"no brace", RawFile("xx{}", ""), "header is not valid JSON"},
      {"empty header", Le64(0), "header is not valid JSON"},
      {"trailing garbage", RawFile("{} x", ""), "header is not valid JSON"},
      {"bad utf8", RawFile("{\"\xff\":1}", ""), "ill-formed UTF-8"},
      {"number overflow", RawFile(OneF32("[1e400]", 0, 4), Bytes(4)), "header is not valid JSON"},
      {"deep nesting", RawFile(std::string(200, '[') + std::string(200, ']'), ""),
       "header nests deeper than 16 levels"},
      {"array", RawFile("[1, 2]", ""), "header is not a JSON object (got array)"},
      {"scalar", RawFile("7", ""), "header is not a JSON object (got 7)"},
  });
}

TEST(SafetensorsMalformedTest, EntryStructure) {
  ExpectAllRejected({
      {"not object", RawFile("{\"t\": [1]}", ""), "entry is not a JSON object (got array)", "t"},
      {"missing dtype", RawFile("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", Bytes(4)),
       "missing key 'dtype'", "t"},
      {"missing shape", RawFile("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", Bytes(4)),
       "missing key 'shape'", "t"},
      {"missing offsets", RawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", Bytes(4)),
       "missing key 'data_offsets'", "t"},
      {"extra key",
       RawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
               Bytes(4)),
       "unexpected key 'x'", "t"},
      {"unknown dtype",
       RawFile("{\"t\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", Bytes(8)),
       "unknown dtype 'F8'", "t"},
      {"dtype not string",
       RawFile("{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", Bytes(8)),
       "dtype is not a string (got 4)", "t"},
  });
}

TEST(SafetensorsMalformedTest, Shapes) {
  ExpectAllRejected({
      {"not array", RawFile(OneF32("\"2x3\"", 0, 24), Bytes(24)),
       "shape is not an array (got string)", "t"},
      {"float", RawFile(OneF32("[2.5]", 0, 8), Bytes(8)),
       "shape dimension 0 is not a non-negative 64-bit integer (got 2.5)", "t"},
      {"integral float", RawFile(OneF32("[3, 2.0]", 0, 24), Bytes(24)),
       "shape dimension 1 is not a non-negative 64-bit integer (got 2.0)", "t"},
      {"negative", RawFile(OneF32("[-1]", 0, 4), Bytes(4)),
       "shape dimension 0 is not a non-negative 64-bit integer (got -1)", "t"},
      {"bool", RawFile(OneF32("[true]", 0, 4), Bytes(4)), "(got true)", "t"},
      {"above int64", RawFile(OneF32("[18446744073709551615]", 0, 4), Bytes(4)),
       "(got 18446744073709551615)", "t"},
      {"product overflow", RawFile(OneF32("[4294967296, 4294967296]", 0, 4), Bytes(4)),
       "has too many elements for dtype F32", "t"},
  });
}

TEST(SafetensorsMalformedTest, DataOffsets) {
  const auto entry = [](const std::string& offsets) {
    return absl::StrCat("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":", offsets, "}}");
  };
  ExpectAllRejected({
      {"one element", RawFile(entry("[0]"), Bytes(8)),
       "data_offsets must be an array of two non-negative integers", "t"},
      {"three elements", RawFile(entry("[0,8,8]"), Bytes(8)), "(got [0,8,8])", "t"},
      {"strings", RawFile(entry("[\"0\",\"8\"]"), Bytes(8)), "(got [\"0\",\"8\"])", "t"},
      {"negative", RawFile(entry("[-8,0]"), Bytes(8)), "(got [-8,0])", "t"},
      {"object", RawFile(entry("{}"), Bytes(8)), "(got object)", "t"},
      {"reversed", RawFile(entry("[8,0]"), Bytes(8)), "data_offsets begin 8 is greater than end 0",
       "t"},
      {"byte count", RawFile(OneF32("[2, 3]", 0, 20), Bytes(20)),
       "shape [2, 3] with dtype F32 needs 24 bytes, data_offsets span 20", "t"},
      {"past end", RawFile(OneF32("[2, 3]", 0, 24), Bytes(16)),
       "data_offsets [0, 24) extend past the end of the data buffer (16 bytes)", "t"},
      {"far past end", RawFile(OneF32("[2]", ~uint64_t{0} - 8, ~uint64_t{0} - 0), Bytes(8)),
       "extend past the end of the data buffer (8 bytes)", "t"},
  });
}

TEST(SafetensorsMalformedTest, Coverage) {
  ExpectAllRejected({
      {"overlap",
       RawFile(
           absl::StrCat("{", F32Entry("a", "[6]", 0, 24), ",", F32Entry("b", "[6]", 16, 40), "}"),
           Bytes(40)),
       "tensor 'b' [16, 40) overlaps tensor 'a' [0, 24)"},
      {"identical ranges",
       RawFile(absl::StrCat("{", F32Entry("a", "[2]", 0, 8), ",", F32Entry("b", "[2]", 0, 8), "}"),
               Bytes(8)),
       "tensor 'b' [0, 8) overlaps tensor 'a' [0, 8)"},
      {"empty inside another",
       RawFile(absl::StrCat("{", F32Entry("a", "[2]", 0, 8), ",", F32Entry("z", "[0]", 4, 4), "}"),
               Bytes(8)),
       "tensor 'z' [4, 4) overlaps tensor 'a' [0, 8)"},
      {"gap",
       RawFile(
           absl::StrCat("{", F32Entry("a", "[2]", 0, 8), ",", F32Entry("b", "[2]", 16, 24), "}"),
           Bytes(24)),
       "gap in the data buffer: bytes [8, 16) before tensor 'b' belong to no tensor"},
      {"leading gap", RawFile(OneF32("[2]", 8, 16), Bytes(16)),
       "gap in the data buffer: bytes [0, 8) before tensor 't'"},
      {"trailing", RawFile(OneF32("[2]", 0, 8), Bytes(12)),
       "data buffer has 4 trailing bytes [8, 12) after the last tensor 't'"},
      {"data without tensors", RawFile("{}", Bytes(3)),
       "data buffer has 3 trailing bytes [0, 3) after the last tensor"},
      {"misaligned", RawFile(OneF32("[2]", 0, 8), Bytes(8), /*pad=*/false),
       "is not aligned to the 4-byte element size of F32", "t"},
  });
}

TEST(SafetensorsMalformedTest, DuplicatesAndMetadata) {
  const std::string t = F32Entry("t", "[2]", 0, 8);
  ExpectAllRejected({
      {"duplicate tensor", RawFile(absl::StrCat("{", t, ",", t, "}"), Bytes(8)),
       "tensor name 't' appears twice in the header"},
      {"duplicate field",
       RawFile("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               Bytes(8)),
       "tensor 't': duplicate key 'dtype'"},
      {"duplicate metadata",
       RawFile(absl::StrCat("{\"__metadata__\":{},", t, ",\"__metadata__\":{}}"), Bytes(8)),
       "'__metadata__' appears twice in the header"},
      {"duplicate metadata key",
       RawFile(absl::StrCat("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"},", t, "}"), Bytes(8)),
       "__metadata__ has the key 'k' twice"},
      {"metadata array", RawFile(absl::StrCat("{\"__metadata__\":[],", t, "}"), Bytes(8)),
       "__metadata__ is not an object of strings (got array)"},
      {"metadata null", RawFile(absl::StrCat("{\"__metadata__\":null,", t, "}"), Bytes(8)),
       "__metadata__ is not an object of strings (got null)"},
      {"metadata number value",
       RawFile(absl::StrCat("{\"__metadata__\":{\"k\":1},", t, "}"), Bytes(8)),
       "__metadata__ value for key 'k' is not a string (got 1)"},
  });
}

// Edits of a valid writer output.
TEST(SafetensorsMalformedTest, EditedValidFile) {
  const std::string valid = SmallValidFile();
  ASSERT_TRUE(Load(valid).ok());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(valid[i])) << (8 * i);

  const size_t close = valid.rfind('}', 8 + n);
  ASSERT_NE(close, std::string::npos);
  std::string longer_header = valid;  // the header swallows a data byte, set to 'x'
  longer_header.replace(0, 8, Le64(n + 1));
  longer_header[8 + n] = 'x';
  std::string cut_header = valid;  // the header loses its closing brace
  cut_header.replace(0, 8, Le64(close - 8));
  std::string dtype_edit = valid;
  const size_t f32 = dtype_edit.find("\"F32\"");
  ASSERT_NE(f32, std::string::npos);
  dtype_edit.replace(f32, 5, "\"F31\"");
  std::string name_dup = valid;
  const size_t b = name_dup.find("\"b\":");
  ASSERT_NE(b, std::string::npos);
  name_dup[b + 1] = 'h';  // the U8 tensor "b" becomes a second "h"
  ExpectAllRejected({
      {"appended byte", valid + "x", "trailing bytes", "b"},
      {"dropped byte", valid.substr(0, valid.size() - 1), "extend past the end of the data buffer",
       "b"},
      {"header length + 1", longer_header, "header is not valid JSON"},
      {"header cut before '}'", cut_header, "header is not valid JSON"},
      {"dtype renamed", dtype_edit, "unknown dtype 'F31'", "w"},
      {"name collision", name_dup, "tensor name 'h' appears twice"},
  });
}

TEST(SafetensorsMalformedTest, EveryTruncationIsAnError) {
  const std::string valid = SmallValidFile();
  ASSERT_TRUE(Load(valid).ok());
  const std::string path = TempPath("truncated.safetensors");
  for (size_t cut = 0; cut < valid.size(); ++cut) {
    SCOPED_TRACE(cut);
    const std::string prefix = valid.substr(0, cut);
    auto file = Load(prefix);
    EXPECT_FALSE(file.ok());
    EXPECT_THAT(file.status().message(), HasSubstr(kBufferName));
    WriteFileBytes(path, prefix);
    auto opened = SafetensorsFile::Open(path);
    EXPECT_FALSE(opened.ok());
    EXPECT_THAT(opened.status().message(), HasSubstr(path));
  }
  ::unlink(path.c_str());
}

// Random byte edits never crash; whatever is accepted is fully readable.
TEST(SafetensorsFuzzTest, RandomByteFlips) {
  const std::string valid = SmallValidFile();
  const std::string path = TempPath("fuzz.safetensors");
  std::mt19937 rng(12345);
  std::uniform_int_distribution<size_t> pos(0, valid.size() - 1);
  std::uniform_int_distribution<int> flip(1, 255);
  std::uniform_int_distribution<int> count(1, 3);
  int accepted = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    std::string bytes = valid;
    for (int k = count(rng); k > 0; --k) {
      bytes[pos(rng)] ^= static_cast<char>(flip(rng));
    }
    const bool via_file = iter % 25 == 0;
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file;
    if (via_file) {
      WriteFileBytes(path, bytes);
      file = SafetensorsFile::Open(path);
    } else {
      file = Load(bytes);
    }
    if (!file.ok()) continue;
    ++accepted;
    uint64_t checksum = 0;
    for (const std::string& name : (*file)->names()) {
      auto view = (*file)->Get(name);
      ASSERT_TRUE(view.ok()) << view.status();
      ASSERT_EQ(reinterpret_cast<uintptr_t>(view->data) % DTypeSize(view->dtype), 0u);
      const auto* p = static_cast<const uint8_t*>(view->data);
      for (size_t i = 0; i < view->num_bytes(); ++i) checksum += p[i];
    }
    (void)checksum;
  }
  // Flips of data bytes keep the file valid, so a good share must have been accepted.
  EXPECT_GT(accepted, 100);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace blockserve
