// qyolo detect end to end on yolov5n: drawn images of the original size, detections.json with
// what the model sees, folders expanded, and bad images or models reported by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "qyolo/draw.h"
#include "qyolo/vision.h"
#include "test_util.h"

namespace qyolo {
namespace {

namespace fs = std::filesystem;
using testing::run_qyolo;
using testing::temp_dir;
using testing::write_file;
using testing::yolov5n_path;

fs::path coco_image(const std::string& name) {
  return testing::data_path("coco/val2017-mini/images/" + name);
}

std::string detect_args(const fs::path& out, const std::string& inputs) {
  return "detect --onnx " + yolov5n_path().string() + " -o " + out.string() + " " + inputs;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
}

int count_lines_with(const std::string& text, const std::string& needle) {
  int count = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string::npos) ++count;
    start = end + 1;
  }
  return count;
}

class Detect : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(yolov5n_path()) || !fs::exists(coco_image("000000000139.jpg"))) {
      GTEST_SKIP() << "needs " << yolov5n_path() << " and the val2017-mini images";
    }
  }
};

TEST_F(Detect, DrawsBoxesAndWritesJson) {
  const auto out = temp_dir() / "out";
  const auto result = run_qyolo(detect_args(out, coco_image("000000000139.jpg").string() + " " +
                                                     coco_image("000000000802.jpg").string()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("000000000139.jpg: 9 detections ("), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("-> " + (out / "000000000139.jpg").string()), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("2 images, "), std::string::npos) << result.output;

  for (const char* name : {"000000000139.jpg", "000000000802.jpg"}) {
    auto original = read_image(coco_image(name).string());
    auto drawn = read_image((out / name).string());
    ASSERT_TRUE(original) << original.status().message();
    ASSERT_TRUE(drawn) << drawn.status().message();
    EXPECT_EQ(drawn->width, original->width) << name;
    EXPECT_EQ(drawn->height, original->height) << name;
    // JPEG re-encoding changes pixels a little; drawn boxes and labels change them a lot.
    int strongly_changed = 0;
    for (size_t i = 0; i + 2 < drawn->pixels.size(); i += 3) {
      int diff = 0;
      for (size_t c = i; c < i + 3; ++c) {
        diff = std::max(diff, std::abs(drawn->pixels[c] - original->pixels[c]));
      }
      strongly_changed += diff > 80;
    }
    EXPECT_GT(strongly_changed, 500) << name;
  }

  // The tv's label: a patch of the tv's class colour just above its box (2, 164, 156, 270).
  auto drawn = read_image((out / "000000000139.jpg").string());
  ASSERT_TRUE(drawn);
  const Color tv = class_color(62);
  int tv_coloured = 0;
  for (int y = 140; y < 163; ++y) {
    for (int x = 0; x < 80; ++x) {
      const uint8_t* p = drawn->row(y) + x * 3;
      tv_coloured +=
          std::abs(p[0] - tv.r) < 40 && std::abs(p[1] - tv.g) < 40 && std::abs(p[2] - tv.b) < 40;
    }
  }
  EXPECT_GT(tv_coloured, 300);

  const nlohmann::json json = read_json(out / "detections.json");
  ASSERT_TRUE(json.is_array()) << "detections.json does not parse";
  ASSERT_EQ(json.size(), 2u);
  const auto& first = json[0];
  EXPECT_EQ(first["image"], coco_image("000000000139.jpg").string());
  EXPECT_EQ(first["width"], 640);
  EXPECT_EQ(first["height"], 426);
  std::set<std::string> classes;
  for (const auto& d : first["detections"]) {
    classes.insert(d["class"].get<std::string>());
    const int id = d["class_id"];
    ASSERT_GE(id, 0);
    ASSERT_LT(id, 80);
    EXPECT_EQ(d["class"], coco_class_names()[id]);
    EXPECT_GE(d["score"].get<double>(), 0.25);
    ASSERT_EQ(d["box_xyxy"].size(), 4u);
    EXPECT_LT(d["box_xyxy"][0].get<double>(), d["box_xyxy"][2].get<double>());
    EXPECT_LE(d["box_xyxy"][3].get<double>(), 426.0);
  }
  for (const char* expected : {"tv", "person", "chair", "clock", "potted plant"}) {
    EXPECT_TRUE(classes.count(expected)) << expected;
  }
  EXPECT_EQ(json[1]["width"], 424);
  EXPECT_EQ(json[1]["height"], 640);
}

TEST_F(Detect, MissingAndCorruptImagesAreReportedAndTheRestWritten) {
  const auto dir = temp_dir();
  write_file(dir / "corrupt.jpg", std::string("\xFF\xD8\xFF\xE0 not really a JPEG", 22));
  const auto result = run_qyolo(detect_args(
      dir / "out", (dir / "missing.jpg").string() + " " + coco_image("000000000139.jpg").string() +
                       " " + (dir / "corrupt.jpg").string()));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_EQ(count_lines_with(result.output, "missing.jpg"), 1) << result.output;
  EXPECT_EQ(count_lines_with(result.output, "corrupt.jpg"), 1) << result.output;
  EXPECT_EQ(count_lines_with(result.output, "error"), 2) << result.output;
  EXPECT_NE(result.output.find("2 failed"), std::string::npos) << result.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "000000000139.jpg"));
  EXPECT_FALSE(fs::exists(dir / "out" / "missing.jpg"));
  const nlohmann::json json = read_json(dir / "out" / "detections.json");
  ASSERT_TRUE(json.is_array());
  EXPECT_EQ(json.size(), 1u);
}

TEST_F(Detect, FoldersAreExpandedSortedAndNamesKeptApart) {
  const auto dir = temp_dir();
  const auto folder = dir / "images";
  fs::create_directories(folder);
  fs::copy_file(coco_image("000000000139.jpg"), folder / "000000000139.jpg");
  auto image = read_image(coco_image("000000000802.jpg").string());
  ASSERT_TRUE(image);
  ASSERT_TRUE(write_image(*image, (folder / "a.png").string()).is_ok());
  write_file(folder / "notes.txt", "not an image\n");
  // The same stem from two places must give two outputs, and a PNG stays a PNG.
  const auto result = run_qyolo(
      detect_args(dir / "out", coco_image("000000000139.jpg").string() + " " + folder.string()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(fs::exists(dir / "out" / "000000000139.jpg"));
  EXPECT_TRUE(fs::exists(dir / "out" / "000000000139_2.jpg"));
  EXPECT_TRUE(fs::exists(dir / "out" / "a.png"));
  EXPECT_FALSE(fs::exists(dir / "out" / "notes.jpg"));
  auto png = read_image((dir / "out" / "a.png").string());
  ASSERT_TRUE(png) << png.status().message();
  EXPECT_EQ(png->width, 424);
  const nlohmann::json json = read_json(dir / "out" / "detections.json");
  ASSERT_EQ(json.size(), 3u);
  EXPECT_EQ(json[1]["image"], (folder / "000000000139.jpg").string());  // sorted in the folder
  EXPECT_EQ(json[2]["image"], (folder / "a.png").string());
  EXPECT_EQ(json[0]["detections"], json[1]["detections"]);
}

TEST_F(Detect, EmptyFolderIsAFailure) {
  const auto dir = temp_dir();
  fs::create_directories(dir / "empty");
  const auto result = run_qyolo(detect_args(dir / "out", (dir / "empty").string()));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_EQ(count_lines_with(result.output, "empty"), 1) << result.output;
}

TEST_F(Detect, BadModelIsOneLine) {
  const auto dir = temp_dir();
  write_file(dir / "bad.onnx", "this is not a model");
  const auto result =
      run_qyolo("detect --onnx " + (dir / "bad.onnx").string() + " -o " + (dir / "out").string() +
                " " + coco_image("000000000139.jpg").string());
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("bad.onnx"), std::string::npos) << result.output;
  EXPECT_EQ(count_lines_with(result.output, ""), 1) << result.output;
  EXPECT_FALSE(fs::exists(dir / "out" / "000000000139.jpg"));
}

TEST_F(Detect, ImageSizeLargerThanTheModelIsOneLine) {
  const auto dir = temp_dir();
  const auto result = run_qyolo(detect_args(dir / "out", coco_image("000000000139.jpg").string()) +
                                " --imgsz 1280");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("1280"), std::string::npos) << result.output;
  EXPECT_EQ(count_lines_with(result.output, ""), 1) << result.output;
}

}  // namespace
}  // namespace qyolo
