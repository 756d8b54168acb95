// Image decoding, resizing and letterboxing against OpenCV (the library ultralytics uses),
// and NMS / decoding against hand-made cases.
#include <gtest/gtest.h>

#include <cmath>

#include "qyolo/npy.h"
#include "qyolo/vision.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;

// How many bytes differ, and by how much at most.
struct PixelDiff {
  int64_t differing = 0;
  int max_delta = 0;
};

PixelDiff compare(const Image& ours, const Tensor& expected) {
  PixelDiff d;
  EXPECT_EQ(expected.shape(), (Shape{ours.height, ours.width, 3}));
  if (expected.shape() != Shape{ours.height, ours.width, 3}) return {-1, 999};
  for (size_t i = 0; i < ours.pixels.size(); ++i) {
    const int delta = std::abs(int(ours.pixels[i]) - int(expected.data<uint8_t>()[i]));
    d.differing += delta != 0;
    d.max_delta = std::max(d.max_delta, delta);
  }
  return d;
}

class VisionOracle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::have_python_oracles()) GTEST_SKIP() << "no Python oracles at " QYOLO_PYTHON;
    dir_ = testing::temp_dir();
    for (const char* name : {"000000000139.jpg", "000000000802.jpg"}) {
      images_.push_back(data_path(std::string("coco/val2017-mini/images/") + name).string());
    }
    std::string cmd =
        std::string(QYOLO_PYTHON) + " " QYOLO_TESTS_DIR "/python/vision_oracle.py " + dir_.string();
    for (const auto& i : images_) cmd += " " + i;
    const auto result = testing::run_command(cmd);
    if (result.exit_code != 0 && result.output.find("No module named 'cv2'") != std::string::npos) {
      GTEST_SKIP() << "OpenCV (opencv-python-headless) is not installed";
    }
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  Tensor expected(const std::string& stem, const std::string& what) {
    auto t = read_npy((dir_ / (stem + "_" + what + ".npy")).string());
    EXPECT_TRUE(t) << t.status().message();
    return t ? *t : Tensor();
  }
  std::filesystem::path dir_;
  std::vector<std::string> images_;
};

std::string stem_of(const std::string& path) { return std::filesystem::path(path).stem().string(); }

TEST_F(VisionOracle, JpegDecodingMatchesOpenCv) {
  for (const auto& path : images_) {
    auto image = read_image(path);
    ASSERT_TRUE(image) << image.status().message();
    const PixelDiff d = compare(*image, expected(stem_of(path), "decoded"));
    EXPECT_EQ(d.differing, 0) << path << " max delta " << d.max_delta;
  }
}

TEST_F(VisionOracle, ResizeMatchesOpenCv) {
  const std::pair<int, int> sizes[] = {{333, 250}, {640, 427}, {801, 600}, {97, 61}};
  for (const auto& path : images_) {
    auto image = read_image(path);
    ASSERT_TRUE(image);
    for (auto [w, h] : sizes) {
      const std::string size = std::to_string(w) + "x" + std::to_string(h);
      const PixelDiff linear =
          compare(resize_linear(*image, w, h), expected(stem_of(path), "linear_" + size));
      EXPECT_EQ(linear.differing, 0)
          << path << " linear " << size << " max delta " << linear.max_delta;
      const PixelDiff area =
          compare(resize_area(*image, w, h), expected(stem_of(path), "area_" + size));
      // OpenCV takes other code paths when enlarging with INTER_AREA; only shrinking is ours.
      if (w <= image->width && h <= image->height) {
        EXPECT_EQ(area.differing, 0) << path << " area " << size << " max delta " << area.max_delta;
      }
    }
  }
}

TEST_F(VisionOracle, LetterboxMatchesUltralytics) {
  for (const auto& path : images_) {
    auto image = read_image(path);
    ASSERT_TRUE(image);
    for (auto [size, canvas] : {std::pair{640, 640}, {640, 672}, {320, 320}}) {
      Letterbox placement;
      const Image boxed = letterbox(*image, size, canvas, &placement);
      const std::string what = "letterbox_" + std::to_string(size) + "_" + std::to_string(canvas);
      const PixelDiff d = compare(boxed, expected(stem_of(path), what));
      EXPECT_EQ(d.differing, 0) << path << " " << what << " max delta " << d.max_delta;
      EXPECT_EQ(placement.canvas_width, canvas);
    }
  }
}

TEST(Vision, BadImagesAreNamed) {
  const auto dir = testing::temp_dir();
  testing::write_file(dir / "empty.jpg", "");
  auto r = read_image((dir / "empty.jpg").string());
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("empty.jpg"), std::string::npos);
  testing::write_file(dir / "text.jpg", "hello, not an image");
  r = read_image((dir / "text.jpg").string());
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("not a JPEG or PNG"), std::string::npos);
  testing::write_file(dir / "cut.jpg", std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF", 10));
  r = read_image((dir / "cut.jpg").string());
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("cut.jpg"), std::string::npos) << r.status().message();
  r = read_image((dir / "none.jpg").string());
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("none.jpg"), std::string::npos);
}

TEST(Vision, PngRoundTrip) {
  Image image;
  image.width = 7;
  image.height = 5;
  for (int i = 0; i < 7 * 5 * 3; ++i) image.pixels.push_back(static_cast<uint8_t>(i * 7));
  const auto dir = testing::temp_dir();
  ASSERT_TRUE(write_image(image, (dir / "a.png").string()).is_ok());
  auto back = read_image((dir / "a.png").string());
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(back->pixels, image.pixels);
}

TEST(Vision, LetterboxPlacementMapsBoxesBack) {
  Image image;
  image.width = 500;
  image.height = 375;
  image.pixels.assign(500 * 375 * 3, 0);
  Letterbox p;
  const Image boxed = letterbox(image, 640, 640, &p);
  EXPECT_EQ(p.resized_width, 640);
  EXPECT_EQ(p.resized_height, 480);
  EXPECT_FLOAT_EQ(p.pad_y, 80.0f);
  EXPECT_EQ(p.top, 80);
  std::vector<Detection> d = {{0, 80, 640, 560, 0.9f, 0}};
  scale_boxes(p, d);
  EXPECT_NEAR(d[0].x2, 500.0f, 1e-3);
  EXPECT_NEAR(d[0].y1, 0.0f, 1e-3);
  EXPECT_NEAR(d[0].y2, 375.0f, 1e-3);
  EXPECT_EQ(boxed.pixels[0], 114);
}

// Rows of cx, cy, w, h, obj, then `classes` class scores.
std::vector<float> rows_of(std::initializer_list<std::vector<float>> rows) {
  std::vector<float> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

TEST(Nms, MultiLabelClassAwareSuppression) {
  // Two overlapping boxes of class 0, one of them also class 1 above threshold.
  const auto p = rows_of({{50, 50, 20, 20, 0.9f, 0.9f, 0.5f},
                          {51, 50, 20, 20, 0.8f, 0.9f, 0.0f},
                          {200, 200, 10, 10, 0.0005f, 1.0f, 1.0f}});
  NmsOptions options;
  options.iou_threshold = 0.6f;
  const auto d = non_max_suppression(p.data(), 3, 7, options);
  ASSERT_EQ(d.size(), 2u);  // box 2 suppressed in class 0; box 1's class-1 label survives
  EXPECT_EQ(d[0].class_id, 0);
  EXPECT_NEAR(d[0].score, 0.81f, 1e-6);
  EXPECT_EQ(d[1].class_id, 1);
  EXPECT_NEAR(d[1].score, 0.45f, 1e-6);
  EXPECT_NEAR(d[1].x1, 40.0f, 1e-6);
}

TEST(Nms, MaxDetAndThreshold) {
  std::vector<std::vector<float>> rows;
  std::vector<float> flat;
  for (int i = 0; i < 50; ++i) {
    const std::vector<float> r = {10.0f + 30 * i, 10, 20, 20, 0.5f + i * 0.001f, 1.0f};
    flat.insert(flat.end(), r.begin(), r.end());
  }
  NmsOptions options;
  options.max_det = 7;
  auto d = non_max_suppression(flat.data(), 50, 6, options);
  ASSERT_EQ(d.size(), 7u);
  EXPECT_GT(d[0].score, d[6].score);
  options.conf_threshold = 0.9f;
  EXPECT_TRUE(non_max_suppression(flat.data(), 50, 6, options).empty());
}

TEST(Decode, TrimmedHeadsMatchTheDetectLayer) {
  // All-zero logits: sigmoid 0.5, so xy = (1 + grid - 0.5) * stride and wh = anchor.
  Tensor p3(DType::kFloat32, {1, 255, 4, 4}), p4(DType::kFloat32, {1, 255, 2, 2}),
      p5(DType::kFloat32, {1, 255, 1, 1});
  auto out = decode_heads({&p5, &p3, &p4}, HeadAnchors{});
  ASSERT_TRUE(out) << out.status().message();
  EXPECT_EQ(out->shape(), (Shape{1, 3 * (16 + 4 + 1), 85}));
  const float* r = out->data<float>();
  EXPECT_FLOAT_EQ(r[0], 4.0f);   // x of anchor 0, cell (0,0), stride 8
  EXPECT_FLOAT_EQ(r[2], 10.0f);  // w = anchor 10
  EXPECT_FLOAT_EQ(r[3], 13.0f);
  EXPECT_FLOAT_EQ(r[4], 0.5f);
  const float* last = r + (3 * 21 - 1) * 85;  // stride 32, anchor 2
  EXPECT_FLOAT_EQ(last[0], 16.0f);
  EXPECT_FLOAT_EQ(last[2], 373.0f);
  auto bad = parse_anchors("1,2,3;4");
  EXPECT_FALSE(bad);
  auto good = parse_anchors("1,2,3,4,5,6;7,8,9,10,11,12;13,14,15,16,17,18");
  ASSERT_TRUE(good);
  EXPECT_FLOAT_EQ(good->anchors[2][5], 18.0f);
}

}  // namespace
}  // namespace qyolo
