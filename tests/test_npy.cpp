// .npy reading and writing: round trips, header variants, every refused input, and numpy
// itself as the oracle in both directions (tests/python/npy_oracle.py).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "qyolo/npy.h"
#include "test_util.h"

namespace qyolo {
namespace {

using ::qyolo::testing::have_python_oracles;
using ::qyolo::testing::run_command;
using ::qyolo::testing::temp_dir;
using ::qyolo::testing::write_file;

const std::string kMagic("\x93NUMPY", 6);

const std::vector<DType> kAllDTypes = {DType::kFloat32, DType::kFloat64, DType::kFloat16,
                                       DType::kInt8,    DType::kUInt8,   DType::kInt32,
                                       DType::kInt64,   DType::kBool};
const std::vector<Shape> kShapes = {{}, {0, 3}, {5}, {2, 3, 4, 5}};

// Deterministic values that use each dtype's sign and range, so a mix-up of types shows.
Tensor sample_tensor(DType dtype, const Shape& shape) {
  Tensor tensor(dtype, shape);
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    const int64_t k = (i * 7919) % 251;
    switch (dtype) {
      case DType::kFloat32:
        tensor.data<float>()[i] = static_cast<float>(k) * 0.25f - 30.5f;
        break;
      case DType::kFloat64:
        tensor.data<double>()[i] = static_cast<double>(k) / 3.0 - 41.0;
        break;
      case DType::kFloat16:
        tensor.data<uint16_t>()[i] = float_to_half(static_cast<float>(k) * 0.5f - 60.0f);
        break;
      case DType::kInt8:
        tensor.data<int8_t>()[i] = static_cast<int8_t>(k - 125);
        break;
      case DType::kUInt8:
        tensor.data<uint8_t>()[i] = static_cast<uint8_t>(k + 4);
        break;
      case DType::kInt32:
        tensor.data<int32_t>()[i] = static_cast<int32_t>(k * 1000003 - 99999999);
        break;
      case DType::kInt64:
        tensor.data<int64_t>()[i] = k * 1000000007LL * 1000 - 123456789012LL;
        break;
      case DType::kBool:
        tensor.data<bool>()[i] = k % 3 == 0;
        break;
      case DType::kUndefined:
        break;
    }
  }
  return tensor;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A version 1.0 file (or 2.0/3.0 with a 4-byte length) holding `dict` and then `data`.
std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
  std::string out = kMagic;
  out += static_cast<char>(major);
  out += '\0';
  const std::string header = dict + "\n";
  const size_t length_bytes = major == 1 ? 2 : 4;
  for (size_t i = 0; i < length_bytes; ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string float_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

const std::vector<float> kSixFloats = {1.0f, -2.0f, 3.5f, 0.0f, 5.25f, -6.0f};

// Expects reading `path` to fail with a one-line message naming the file and every word.
void expect_read_error(const std::filesystem::path& path, const std::vector<std::string>& words) {
  Expected<Tensor> tensor = read_npy(path.string());
  ASSERT_FALSE(tensor.has_value()) << path;
  const std::string message = tensor.status().message();
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  for (const std::string& word : words) {
    EXPECT_NE(message.find(word), std::string::npos) << "missing '" << word << "' in: " << message;
  }
}

// Writes `bytes` to a file named `name` and expects read_npy to refuse it.
void expect_bytes_error(const std::string& name, const std::string& bytes,
                        const std::vector<std::string>& words) {
  const auto path = temp_dir() / name;
  write_file(path, bytes);
  expect_read_error(path, words);
  // The in-memory parser gives the same message, naming its source.
  Expected<Tensor> parsed = parse_npy(bytes, "memory:" + name);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.status().message().rfind("memory:" + name + ": ", 0), 0u)
      << parsed.status().message();
}

// ---- Round trips ----

TEST(NpyRoundTrip, EveryDTypeAndShapeIsByteEqual) {
  const auto dir = temp_dir();
  for (DType dtype : kAllDTypes) {
    for (const Shape& shape : kShapes) {
      SCOPED_TRACE(dtype_name(dtype) + " " + shape_str(shape));
      const Tensor tensor = sample_tensor(dtype, shape);
      const std::string bytes = serialize_npy(tensor);
      ASSERT_GE(bytes.size(), tensor.nbytes() + 64);
      EXPECT_EQ((bytes.size() - tensor.nbytes()) % 64, 0u) << "data is not 64-byte aligned";
      EXPECT_EQ(bytes.substr(bytes.size() - tensor.nbytes()),
                std::string(static_cast<const char*>(tensor.raw()), tensor.nbytes()));

      Expected<Tensor> parsed = parse_npy(bytes, "bytes");
      ASSERT_TRUE(parsed.has_value()) << parsed.status().message();
      EXPECT_TRUE(*parsed == tensor);

      const auto path = dir / (dtype_name(dtype) + "_" + shape_str(shape) + ".npy");
      ASSERT_TRUE(write_npy(tensor, path.string()).is_ok());
      EXPECT_EQ(read_file(path), bytes);
      Expected<Tensor> read = read_npy(path.string());
      ASSERT_TRUE(read.has_value()) << read.status().message();
      EXPECT_EQ(read->dtype(), dtype);
      EXPECT_EQ(read->shape(), shape);
      EXPECT_TRUE(*read == tensor);
    }
  }
}

TEST(NpyWrite, HeaderIsLaidOutAsNumpyDoes) {
  struct Case {
    DType dtype;
    Shape shape;
    std::string dict;
  };
  const std::vector<Case> cases = {
      {DType::kFloat32, {1, 3}, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }"},
      {DType::kFloat64, {3}, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"},
      {DType::kFloat16, {}, "{'descr': '<f2', 'fortran_order': False, 'shape': (), }"},
      {DType::kInt8, {2, 2}, "{'descr': '|i1', 'fortran_order': False, 'shape': (2, 2), }"},
      {DType::kUInt8,
       {1, 3, 640, 640},
       "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 3, 640, 640), }"},
      {DType::kInt32, {0, 3}, "{'descr': '<i4', 'fortran_order': False, 'shape': (0, 3), }"},
      {DType::kInt64, {10}, "{'descr': '<i8', 'fortran_order': False, 'shape': (10,), }"},
      {DType::kBool, {4}, "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dict);
    const Tensor tensor(c.dtype, c.shape);
    const std::string bytes = serialize_npy(tensor);
    const size_t header_size = bytes.size() - tensor.nbytes();
    ASSERT_EQ(header_size % 64, 0u);
    EXPECT_EQ(bytes.substr(0, 8), kMagic + std::string("\x01\x00", 2));
    const size_t dict_size =
        static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    EXPECT_EQ(10 + dict_size, header_size);
    EXPECT_EQ(bytes.substr(10, c.dict.size()), c.dict);
    EXPECT_EQ(bytes[header_size - 1], '\n');
    const std::string padding = bytes.substr(10 + c.dict.size(), header_size - 11 - c.dict.size());
    EXPECT_EQ(padding.find_first_not_of(' '), std::string::npos);
    // numpy leaves room for axis 0 to grow to 21 digits: 21 - len(str(shape[0])) spaces.
    if (!c.shape.empty()) {
      EXPECT_GE(padding.size(), 21 - std::to_string(c.shape[0]).size());
    }
  }
}

TEST(NpyWrite, RefusesWhatCannotBeWritten) {
  const auto dir = temp_dir();
  const std::string path = (dir / "out.npy").string();
  Status status = write_npy(Tensor(), path);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("dtype"), std::string::npos) << status.message();
  EXPECT_EQ(serialize_npy(Tensor()), "");

  status = write_npy(Tensor(DType::kFloat32, {-1, 3}), path);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find(path), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("?x3"), std::string::npos) << status.message();

  const std::string missing_dir = (dir / "no_such_dir" / "out.npy").string();
  status = write_npy(Tensor::from_vector<float>({1.0f}), missing_dir);
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.code(), StatusCode::kIo);
  EXPECT_NE(status.message().find(missing_dir), std::string::npos) << status.message();
}

// ---- Reading what other writers produce ----

TEST(NpyRead, HeaderVariants) {
  const std::vector<std::string> dicts = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
      "{ 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }",
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
      "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",
      "{'descr': u'<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
      "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'descr': 'f4', 'fortran_order': False, 'shape': [2, 3]}",
      "{'descr': '<f4',\n 'fortran_order': False,\n 'shape': (2, 3)}    ",
      "{'descr': '<f4', 'fortran_order': False, 'shape': ((2), +3), }",
  };
  for (const std::string& dict : dicts) {
    SCOPED_TRACE(dict);
    Expected<Tensor> tensor = parse_npy(npy_file(dict, float_bytes(kSixFloats)), "variant");
    ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
    EXPECT_EQ(tensor->dtype(), DType::kFloat32);
    EXPECT_EQ(tensor->shape(), (Shape{2, 3}));
    EXPECT_EQ(tensor->to_double(), std::vector<double>(kSixFloats.begin(), kSixFloats.end()));
  }
}

TEST(NpyRead, ShapesAsNumpyWritesThem) {
  const std::vector<std::pair<std::string, Shape>> cases = {
      {"()", {}},         {"(6,)", {6}}, {"(1, 6)", {1, 6}}, {"(1, 2, 1, 3)", {1, 2, 1, 3}},
      {"(0, 3)", {0, 3}}, {"(0,)", {0}}};
  for (const auto& [text, shape] : cases) {
    SCOPED_TRACE(text);
    const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': " + text + ", }";
    Expected<Tensor> tensor = parse_npy(npy_file(dict, float_bytes(kSixFloats)), "shape");
    ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
    EXPECT_EQ(tensor->shape(), shape);
    EXPECT_EQ(tensor->numel(), shape_numel(shape));
  }
}

TEST(NpyRead, OneByteDescrForms) {
  const std::vector<std::pair<std::string, DType>> cases = {
      {"|i1", DType::kInt8},  {"<i1", DType::kInt8},    {">i1", DType::kInt8},
      {"|u1", DType::kUInt8}, {"<u1", DType::kUInt8},   {"|b1", DType::kBool},
      {"<b1", DType::kBool},  {"=f8", DType::kFloat64}, {"<f2", DType::kFloat16},
      {"=i4", DType::kInt32}, {"<i8", DType::kInt64}};
  for (const auto& [descr, dtype] : cases) {
    SCOPED_TRACE(descr);
    const std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (1,), }";
    Expected<Tensor> tensor = parse_npy(npy_file(dict, std::string(8, '\0')), "descr");
    ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
    EXPECT_EQ(tensor->dtype(), dtype);
  }
}

TEST(NpyRead, FormatVersions2And3) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }";
  for (int major : {2, 3}) {
    SCOPED_TRACE(major);
    const auto path = temp_dir() / "v.npy";
    write_file(path, npy_file(dict, float_bytes(kSixFloats), major));
    Expected<Tensor> tensor = read_npy(path.string());
    ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
    EXPECT_EQ(tensor->shape(), (Shape{6}));
    EXPECT_EQ(tensor->to_double(), std::vector<double>(kSixFloats.begin(), kSixFloats.end()));
  }
}

TEST(NpyRead, TrailingBytesAreIgnored) {
  const auto path = temp_dir() / "trailing.npy";
  const Tensor tensor = sample_tensor(DType::kInt32, {2, 3});
  write_file(path, serialize_npy(tensor) + "extra bytes after the data");
  Expected<Tensor> read = read_npy(path.string());
  ASSERT_TRUE(read.has_value()) << read.status().message();
  EXPECT_TRUE(*read == tensor);
}

TEST(NpyRead, BoolBytesOtherThanOneReadAsTrue) {
  const std::string dict = "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }";
  Expected<Tensor> tensor = parse_npy(npy_file(dict, std::string("\x00\x01\x02\xff", 4)), "b");
  ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
  const auto* bytes = static_cast<const uint8_t*>(tensor->raw());
  EXPECT_EQ(std::vector<uint8_t>(bytes, bytes + 4), (std::vector<uint8_t>{0, 1, 1, 1}));
}

// With at most one dimension above 1, Fortran and C order are the same bytes.
TEST(NpyRead, FortranOrderWithOneLongDimensionIsAccepted) {
  for (const std::string shape : {"(6,)", "(1, 6)", "(6, 1, 1)", "()", "(0, 4)"}) {
    SCOPED_TRACE(shape);
    const std::string dict = "{'descr': '<f4', 'fortran_order': True, 'shape': " + shape + ", }";
    Expected<Tensor> tensor = parse_npy(npy_file(dict, float_bytes(kSixFloats)), "f");
    ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
  }
}

// A pipe has no size to check against; the reader falls back to reading it whole.
TEST(NpyRead, ReadsFromAPipe) {
  const auto path = temp_dir() / "pipe.npy";
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  const Tensor tensor = sample_tensor(DType::kFloat16, {3, 4});
  std::thread writer([&] { write_file(path, serialize_npy(tensor)); });
  Expected<Tensor> read = read_npy(path.string());
  writer.join();
  ASSERT_TRUE(read.has_value()) << read.status().message();
  EXPECT_TRUE(*read == tensor);
}

// ---- Refused inputs: each names the file and what was expected ----

const std::string kGoodDict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

TEST(NpyErrors, MissingFile) {
  const auto path = temp_dir() / "does_not_exist.npy";
  expect_read_error(path, {"no such file"});
  EXPECT_EQ(read_npy(path.string()).status().code(), StatusCode::kNotFound);
}

TEST(NpyErrors, Directory) { expect_read_error(temp_dir(), {"is a directory"}); }

TEST(NpyErrors, EmptyFile) { expect_bytes_error("empty.npy", "", {"empty file"}); }

TEST(NpyErrors, BadMagic) {
  expect_bytes_error("zip.npy", std::string("PK\x03\x04", 4) + std::string(100, 'x'),
                     {"not a .npy file", "magic"});
  expect_bytes_error("text.npy", "hello", {"not a .npy file"});
}

TEST(NpyErrors, TruncatedHeader) {
  expect_bytes_error("magic_only.npy", kMagic.substr(0, 4), {"truncated header"});
  expect_bytes_error("no_length.npy", kMagic + std::string("\x01\x00\x10", 3),
                     {"truncated header"});
  const std::string full = npy_file(kGoodDict, float_bytes(kSixFloats));
  expect_bytes_error(
      "cut.npy", full.substr(0, 30),
      {"truncated header", "expected " + std::to_string(kGoodDict.size() + 1), "found 20"});
  expect_bytes_error("cut_v2.npy", npy_file(kGoodDict, "", 2).substr(0, 40), {"truncated header"});
}

TEST(NpyErrors, UnsupportedVersion) {
  std::string bytes = npy_file(kGoodDict, float_bytes(kSixFloats));
  bytes[6] = 4;
  expect_bytes_error("v4.npy", bytes, {"version 4.0", "1.0, 2.0, 3.0"});
  bytes[6] = 1;
  bytes[7] = 1;
  expect_bytes_error("v1_1.npy", bytes, {"version 1.1"});
}

TEST(NpyErrors, UnsupportedDType) {
  for (const std::string descr : {"<c8", "<U5", "|S3", "<u2", "<i2", "float32", "<f16", ""}) {
    SCOPED_TRACE(descr);
    const std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }";
    expect_bytes_error("dtype.npy", npy_file(dict, std::string(64, '\0')),
                       {"unsupported dtype '" + descr + "'",
                        "supported: '<f4', '<f8', '<f2', "
                        "'|i1', '|u1', '<i4', '<i8', '|b1'"});
  }
}

TEST(NpyErrors, BigEndian) {
  const std::string dict = "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }";
  expect_bytes_error("big.npy", npy_file(dict, float_bytes(kSixFloats)),
                     {"big-endian '>f4' not supported: save with dtype '<f4'"});
  const std::string dict8 = "{'descr': '>i8', 'fortran_order': False, 'shape': (1,), }";
  expect_bytes_error("big8.npy", npy_file(dict8, std::string(8, '\0')),
                     {"big-endian '>i8' not supported: save with dtype '<i8'"});
}

TEST(NpyErrors, FortranOrder) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
  expect_bytes_error("fortran.npy", npy_file(dict, float_bytes(kSixFloats)),
                     {"Fortran-order array", "save with np.ascontiguousarray"});
}

TEST(NpyErrors, ObjectArray) {
  const std::string dict = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }";
  expect_bytes_error("object.npy", npy_file(dict, "\x80\x04pickle bytes"),
                     {"object array", "pickle"});
}

TEST(NpyErrors, StructuredDType) {
  const std::string dict =
      "{'descr': [('x', '<f4'), ('y', '<i4')], 'fortran_order': False, 'shape': (3,), }";
  expect_bytes_error("structured.npy", npy_file(dict, std::string(24, '\0')), {"structured"});
}

TEST(NpyErrors, TruncatedData) {
  const std::string bytes = npy_file(kGoodDict, float_bytes(kSixFloats));
  expect_bytes_error("short.npy", bytes.substr(0, bytes.size() - 4),
                     {"truncated: expected 24 bytes of data", "found 20"});
  expect_bytes_error("no_data.npy", npy_file(kGoodDict, ""),
                     {"truncated: expected 24 bytes of data", "found 0"});
}

TEST(NpyErrors, NegativeDimension) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }";
  expect_bytes_error("negative.npy", npy_file(dict, float_bytes(kSixFloats)),
                     {"negative dimension -1", "(2, -1)"});
}

TEST(NpyErrors, ShapeTooLarge) {
  const std::string dict =
      "{'descr': '<f4', 'fortran_order': False, "
      "'shape': (4294967296, 4294967296), }";
  expect_bytes_error("huge.npy", npy_file(dict, ""), {"too large"});
  const std::string digits =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }";
  expect_bytes_error("digits.npy", npy_file(digits, ""), {"malformed header", "64 bits"});
  // A huge but representable shape must fail on the data size, not allocate.
  const std::string big = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }";
  expect_bytes_error("big.npy", npy_file(big, float_bytes(kSixFloats)),
                     {"truncated: expected 4000000000000 bytes of data", "found 24"});
}

TEST(NpyErrors, MalformedHeader) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{'descr': '<f4', 'fortran_order': False}", "no 'shape' key"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1}",
       "unexpected key 'extra'"},
      {"('<f4', False, (6,))", "expected a dict"},
      {"{'descr': <f4, 'fortran_order': False, 'shape': (6,)}", "malformed header"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,)", "malformed header"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (6,)}", "malformed header"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} trailing", "end of header"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", "'shape' must be a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': ('6',)}", "'shape' must be a tuple"},
      {"{'descr': '<f4', 'fortran_order': 'no', 'shape': (6,)}", "True or False"},
      {"{'descr': 4, 'fortran_order': False, 'shape': (6,)}", "'descr' must be a string"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': " + std::string(100, '(') + "6" +
           std::string(100, ')') + "}",
       "malformed header"},
      {"", "malformed header"},
  };
  for (const auto& [dict, words] : cases) {
    SCOPED_TRACE(dict);
    expect_bytes_error("malformed.npy", npy_file(dict, float_bytes(kSixFloats)), {words});
  }
}

// ---- numpy as the oracle ----

std::string oracle_script() { return std::string(QYOLO_TESTS_DIR) + "/python/npy_oracle.py"; }

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) parts.push_back(part);
  if (!text.empty() && text.back() == separator) parts.push_back("");
  return parts;
}

bool is_float(DType dtype) {
  return dtype == DType::kFloat32 || dtype == DType::kFloat64 || dtype == DType::kFloat16;
}

TEST(NpyNumpy, ReadsFilesNumpyWrote) {
  if (!have_python_oracles()) GTEST_SKIP() << "no Python with numpy at " << QYOLO_PYTHON;
  const auto dir = temp_dir();
  const auto result = run_command(std::string(QYOLO_PYTHON) + " '" + oracle_script() + "' write '" +
                                  dir.string() + "'");
  ASSERT_EQ(result.exit_code, 0) << result.output;

  std::ifstream manifest(dir / "manifest.tsv");
  std::string line;
  int good = 0, refused = 0;
  while (std::getline(manifest, line)) {
    const std::vector<std::string> fields = split(line, '\t');
    ASSERT_GE(fields.size(), 3u) << line;
    const auto path = dir / fields[1];
    SCOPED_TRACE(fields[1]);
    if (fields[0] == "error") {
      expect_read_error(path, {fields[2]});
      ++refused;
      continue;
    }
    ASSERT_EQ(fields[0], "ok");
    ASSERT_EQ(fields.size(), 5u) << line;
    Expected<Tensor> tensor = read_npy(path.string());
    ASSERT_TRUE(tensor.has_value()) << tensor.status().message();
    EXPECT_EQ(dtype_name(tensor->dtype()), fields[2]);
    Shape shape;
    for (const std::string& dim : split(fields[3], ',')) {
      if (!dim.empty()) shape.push_back(std::stoll(dim));
    }
    EXPECT_EQ(tensor->shape(), shape);

    std::vector<std::string> values;
    for (const std::string& value : split(fields[4], ' ')) {
      if (!value.empty()) values.push_back(value);
    }
    ASSERT_EQ(static_cast<int64_t>(values.size()), tensor->numel());
    if (is_float(tensor->dtype())) {
      const std::vector<double> actual = tensor->to_double();
      for (size_t i = 0; i < values.size(); ++i) {
        const double expected = std::strtod(values[i].c_str(), nullptr);
        EXPECT_EQ(actual[i], expected) << "element " << i;
        EXPECT_EQ(std::signbit(actual[i]), std::signbit(expected)) << "element " << i;
      }
    } else {
      const std::vector<int64_t> actual = tensor->to_int64();
      for (size_t i = 0; i < values.size(); ++i) {
        EXPECT_EQ(actual[i], std::stoll(values[i])) << "element " << i;
      }
    }
    ++good;
  }
  EXPECT_GE(good, 15);
  EXPECT_GE(refused, 5);
}

TEST(NpyNumpy, NumpyReadsFilesQyoloWrote) {
  if (!have_python_oracles()) GTEST_SKIP() << "no Python with numpy at " << QYOLO_PYTHON;
  const auto dir = temp_dir();
  std::string command = std::string(QYOLO_PYTHON) + " '" + oracle_script() + "' check";
  for (DType dtype : kAllDTypes) {
    for (const Shape& shape : kShapes) {
      const Tensor tensor = sample_tensor(dtype, shape);
      const auto path = dir / (dtype_name(dtype) + "_" + shape_str(shape) + ".npy");
      ASSERT_TRUE(write_npy(tensor, path.string()).is_ok());
      double sum = 0;
      for (double value : tensor.to_double()) sum += value;
      std::string shape_arg;
      for (int64_t dim : shape) shape_arg += (shape_arg.empty() ? "" : ",") + std::to_string(dim);
      char sum_text[64];
      std::snprintf(sum_text, sizeof(sum_text), "%.17g", sum);
      command +=
          " '" + path.string() + "' " + dtype_name(dtype) + " '" + shape_arg + "' " + sum_text;
    }
  }
  const auto result = run_command(command);
  EXPECT_EQ(result.exit_code, 0) << result.output;
}

}  // namespace
}  // namespace qyolo
