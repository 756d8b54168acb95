// Calibration caches: NVIDIA's own file parsed exactly, round trips byte for byte, every
// malformed input an error naming the file and line, and caches made for another model.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::temp_dir;
using testing::write_file;

std::string read_text(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

std::filesystem::path nvidia_cache() { return data_path("caches/yolov5s_qat2ptq.cache"); }

void expect_error(const Expected<CalibrationCache>& cache, const std::string& needle) {
  ASSERT_FALSE(cache) << "expected an error containing '" << needle << "'";
  EXPECT_NE(cache.status().message().find(needle), std::string::npos)
      << "expected '" << needle << "' in: " << cache.status().message();
}

TEST(CalibCache, ParsesNvidiasYolov5sCache) {
  auto cache = read_calibration_cache(nvidia_cache().string());
  ASSERT_TRUE(cache) << cache.status().message();
  EXPECT_EQ(cache->version, "8600");
  EXPECT_EQ(cache->algorithm, "EntropyCalibration2");
  ASSERT_EQ(cache->entries.size(), 197u);
  EXPECT_EQ(cache->entries[0].tensor, "images");
  EXPECT_EQ(std::bit_cast<uint32_t>(cache->entries[0].scale), 0x3c00f9f4u);
  EXPECT_NEAR(cache->entries[0].scale, 0.0078721, 1e-7);
  EXPECT_NEAR(cache->entries[0].scale * 127.0, 0.99976, 1e-5);  // amax of images in [0, 1]
  EXPECT_EQ(cache->entries[1].tensor, "/model.0/act/Mul_output_0");
  EXPECT_EQ(scale_to_hex(cache->entries[1].scale), "3e6c9314");
  EXPECT_EQ(cache->entries.back().tensor, "/model.0/act/Sigmoid_output_0");
  ASSERT_NE(cache->find("/model.23/cv3/conv/Conv_output_0"), nullptr);
  EXPECT_EQ(scale_to_hex(cache->find("/model.23/cv3/conv/Conv_output_0")->scale), "3e0230f1");
  EXPECT_EQ(cache->find("output0"), nullptr);
}

TEST(CalibCache, NvidiasCacheRoundTripsByteForByte) {
  const std::string original = read_text(nvidia_cache());
  auto cache = parse_calibration_cache(original, "nvidia");
  ASSERT_TRUE(cache) << cache.status().message();
  auto text = format_calibration_cache(*cache);
  ASSERT_TRUE(text) << text.status().message();
  EXPECT_EQ(*text, original);
}

TEST(CalibCache, WriteReadWriteIsByteIdentical) {
  const auto dir = temp_dir();
  CalibrationCache cache;
  cache.version = "8510";
  cache.algorithm = "MinMaxCalibration";
  cache.entries = {{"images", 0.0078721f},
                   {"tf:0", 1.0f},
                   {"tiny", std::numeric_limits<float>::denorm_min()},
                   {"big", 3.0e38f},
                   {"/model.2/Concat_output_0", 1.0f / 127.0f}};
  const auto first = (dir / "a.cache").string();
  const auto second = (dir / "b.cache").string();
  ASSERT_TRUE(write_calibration_cache(cache, first).is_ok());
  auto read = read_calibration_cache(first);
  ASSERT_TRUE(read) << read.status().message();
  ASSERT_EQ(read->entries.size(), cache.entries.size());
  for (size_t i = 0; i < cache.entries.size(); ++i) {
    EXPECT_EQ(read->entries[i].tensor, cache.entries[i].tensor);
    EXPECT_EQ(std::bit_cast<uint32_t>(read->entries[i].scale),
              std::bit_cast<uint32_t>(cache.entries[i].scale));
  }
  ASSERT_TRUE(write_calibration_cache(*read, second).is_ok());
  EXPECT_EQ(read_text(first), read_text(second));
  EXPECT_EQ(read_text(first).substr(0, 28), "TRT-8510-MinMaxCalibration\ni");
}

TEST(CalibCache, HexHasNoLeadingZerosAndReadersAcceptAnyWidth) {
  EXPECT_EQ(scale_to_hex(std::bit_cast<float>(0x3c00f9f4u)), "3c00f9f4");
  EXPECT_EQ(scale_to_hex(1.0f), "3f800000");
  EXPECT_EQ(scale_to_hex(std::numeric_limits<float>::denorm_min()), "1");
  EXPECT_EQ(scale_to_hex(1e-40f), "116c2");
  auto cache = parse_calibration_cache(
      "TRT-8600-EntropyCalibration2\na: 1\nb: 000116c2\nc: 3C00F9F4\nd: 00000000003f800000\n", "t");
  ASSERT_TRUE(cache) << cache.status().message();
  ASSERT_EQ(cache->entries.size(), 4u);
  EXPECT_EQ(std::bit_cast<uint32_t>(cache->entries[0].scale), 1u);
  EXPECT_EQ(std::bit_cast<uint32_t>(cache->entries[1].scale), 0x116c2u);
  EXPECT_EQ(scale_to_hex(cache->entries[2].scale), "3c00f9f4");
  EXPECT_EQ(cache->entries[3].scale, 1.0f);
  auto text = format_calibration_cache(*cache);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "TRT-8600-EntropyCalibration2\na: 1\nb: 116c2\nc: 3c00f9f4\nd: 3f800000\n");
}

TEST(CalibCache, ToleratesCrlfBlankLinesAndMissingFinalNewline) {
  auto cache = parse_calibration_cache(
      "TRT-8600-EntropyCalibration2\r\nx: 3f800000\r\n\r\ny: 3f800000", "t");
  ASSERT_TRUE(cache) << cache.status().message();
  EXPECT_EQ(cache->entries.size(), 2u);
  auto empty = parse_calibration_cache("TRT-7000-LegacyCalibration\n", "t");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->entries.empty());
}

TEST(CalibCache, MalformedLinesNameFileAndLine) {
  expect_error(parse_calibration_cache("", "my.cache"), "my.cache: empty file");
  expect_error(parse_calibration_cache("images: 3c00f9f4\n", "my.cache"),
               "my.cache:1: expected a header");
  expect_error(parse_calibration_cache("TRT-86a0-EntropyCalibration2\n", "my.cache"),
               "my.cache:1:");
  expect_error(parse_calibration_cache("TRT-8600-\n", "my.cache"), "my.cache:1:");
  const std::string header = "TRT-8600-EntropyCalibration2\n";
  expect_error(parse_calibration_cache(header + "a: 3f800000\nno colon here\n", "my.cache"),
               "my.cache:3: malformed line 'no colon here'");
  expect_error(parse_calibration_cache(header + "a: 3f80000g\n", "my.cache"),
               "my.cache:2: malformed line");
  expect_error(parse_calibration_cache(header + "a:3f800000\n", "my.cache"),
               "my.cache:2: malformed line");
  expect_error(parse_calibration_cache(header + ": 3f800000\n", "my.cache"),
               "my.cache:2: malformed line");
  expect_error(parse_calibration_cache(header + "a: \n", "my.cache"), "my.cache:2: malformed line");
  expect_error(parse_calibration_cache(header + "a: 13f800000\n", "my.cache"),
               "my.cache:2: tensor 'a': '13f800000' does not fit in 32 bits");
  expect_error(parse_calibration_cache(header + "a: 3f800000\nb: 1\na: 1\n", "my.cache"),
               "my.cache:4: tensor 'a' is listed again (first on line 2)");
}

TEST(CalibCache, InvalidScalesNameTensorAndLine) {
  const std::string header = "TRT-8600-EntropyCalibration2\nok: 3f800000\n";
  expect_error(parse_calibration_cache(header + "zero: 0\n", "c"),
               "c:3: tensor 'zero' has scale 0");
  expect_error(parse_calibration_cache(header + "negzero: 80000000\n", "c"),
               "c:3: tensor 'negzero'");
  expect_error(parse_calibration_cache(header + "neg: bf800000\n", "c"),
               "c:3: tensor 'neg' has scale -1");
  expect_error(parse_calibration_cache(header + "inf: 7f800000\n", "c"),
               "c:3: tensor 'inf' has scale inf");
  expect_error(parse_calibration_cache(header + "nan: 7fc00000\n", "c"), "c:3: tensor 'nan'");
  expect_error(parse_calibration_cache(header + "nan: 7fc00000\n", "c"), "positive and finite");

  CalibrationCache cache;
  cache.entries = {{"bad", -1.0f}};
  auto text = format_calibration_cache(cache);
  ASSERT_FALSE(text);
  EXPECT_NE(text.status().message().find("'bad'"), std::string::npos);
  cache.entries = {{"nan", std::nanf("")}};
  EXPECT_FALSE(format_calibration_cache(cache));
  cache.entries = {{"a", 1.0f}, {"a", 2.0f}};
  EXPECT_FALSE(format_calibration_cache(cache));
  cache.entries = {{"two\nlines", 1.0f}};
  EXPECT_FALSE(format_calibration_cache(cache));
  cache.entries.clear();
  cache.version = "8.6";
  EXPECT_FALSE(format_calibration_cache(cache));
}

TEST(CalibCache, MissingFileIsAnIoError) {
  auto cache = read_calibration_cache("/nonexistent/x.cache");
  ASSERT_FALSE(cache);
  EXPECT_NE(cache.status().message().find("/nonexistent/x.cache"), std::string::npos);
}

TEST(CalibCache, ListsTensorsTheModelLacks) {
  auto graph = load_onnx(testing::yolov5n_path().string());
  ASSERT_TRUE(graph) << graph.status().message();
  auto cache = read_calibration_cache(nvidia_cache().string());
  ASSERT_TRUE(cache);
  // NVIDIA's yolov5s names its C3 concats and residual adds by module ("concat", "addop");
  // the ultralytics export of yolov5n does not.
  const auto missing = cache_tensors_missing_from(*cache, *graph);
  EXPECT_FALSE(missing.empty());
  EXPECT_NE(std::find(missing.begin(), missing.end(), "/model.2/concat/Concat_output_0"),
            missing.end());
  EXPECT_NE(std::find(missing.begin(), missing.end(), "/model.4/m/m.0/addop/Add_output_0"),
            missing.end());
  EXPECT_EQ(std::find(missing.begin(), missing.end(), "images"), missing.end());
  EXPECT_EQ(std::find(missing.begin(), missing.end(), "/model.0/act/Mul_output_0"), missing.end());
  for (const auto& name : missing) {
    EXPECT_TRUE(name.find("concat/") != std::string::npos ||
                name.find("addop/") != std::string::npos)
        << name;
  }
  CalibrationCache mine;
  mine.entries = {
      {"images", 1.0f}, {"/model.0/conv/Conv_output_0", 1.0f}, {"model.0.conv.weight", 1.0f}};
  EXPECT_TRUE(cache_tensors_missing_from(mine, *graph).empty());
  mine.entries.push_back({"nope", 1.0f});
  EXPECT_EQ(cache_tensors_missing_from(mine, *graph), std::vector<std::string>{"nope"});
}

}  // namespace
}  // namespace qyolo
