// The QAT detection loss against ultralytics yolov5 v7.0's own ComputeLoss
// (tests/python/yolo_loss_oracle.py); the training labels (COCO boxes through the
// augmentation, errors for annotation files that do not fit the images); supervised
// fine-tuning.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qat/qat_internal.h"
#include "qyolo/coco.h"
#include "qyolo/npy.h"
#include "qyolo/onnx.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::run_command;
using testing::temp_dir;

constexpr int kImageSize = 256;  // heads 32, 16 and 8 cells wide

// Fixed head outputs for three images and targets that exercise build_targets: cell
// borders (a fraction just under and exactly at 0.5, centres just past cell 1), the image
// edge (x = 1 lands in a clamped cell), shapes the anchor_t filter drops at some or all
// heads, several targets in one cell, and an image with none.
struct LossCase {
  std::vector<torch::Tensor> heads;
  torch::Tensor targets;
  torch::Tensor anchors = default_grid_anchors(torch::TensorOptions());
};

LossCase loss_case() {
  torch::manual_seed(20240501);
  LossCase c;
  for (int64_t cells : {32, 16, 8}) c.heads.push_back(1.5 * torch::randn({3, 3, cells, cells, 85}));
  std::vector<std::array<float, 6>> rows = {
      {0, 0, 0.5f, 0.5f, 0.2f, 0.3f},
      {0, 5, 10.499f / 32, 7.501f / 32, 0.1f, 0.12f},  // just under / over half a P3 cell
      {0, 6, 12.5f / 32, 12.5f / 32, 0.08f, 0.05f},    // exactly half a cell
      {0, 7, 1.2f / 32, 0.7f / 32, 0.06f, 0.09f},      // just past cell 1 / inside cell 0
      {0, 8, 1.0f, 0.999f, 0.15f, 0.1f},               // the right edge: gi clamped
      {0, 9, 0.01f, 1.0f, 0.02f, 0.03f},
      {0, 9, 0.5f, 0.5f, 0.21f, 0.28f},     // shares a cell with the first
      {1, 10, 0.4f, 0.6f, 0.9f, 0.02f},     // aspect 45: dropped by every anchor
      {1, 11, 0.3f, 0.3f, 0.3f, 0.05f},     // dropped by some anchors only
      {1, 12, 0.7f, 0.2f, 0.004f, 0.004f},  // too small for any anchor
      {1, 79, 0.65f, 0.45f, 0.45f, 0.7f},
  };
  torch::Tensor random = torch::rand({12, 6});
  for (int64_t k = 0; k < 12; ++k) {
    auto r = random[k];
    rows.push_back({static_cast<float>(k % 2), std::floor(r[1].item<float>() * 80),
                    r[2].item<float>(), r[3].item<float>(), 0.01f + 0.5f * r[4].item<float>(),
                    0.01f + 0.5f * r[5].item<float>()});
  }
  c.targets = torch::empty({static_cast<int64_t>(rows.size()), 6});
  for (size_t i = 0; i < rows.size(); ++i)
    for (int j = 0; j < 6; ++j) c.targets[i][j] = rows[i][j];
  return c;
}

void save(const torch::Tensor& tensor, const std::filesystem::path& path) {
  auto converted = from_torch(tensor.contiguous());
  ASSERT_TRUE(converted) << converted.status().message();
  ASSERT_TRUE(write_npy(*converted, path.string()).is_ok()) << path;
}

struct OracleResult {
  bool ran = false;
  std::string message;
  nlohmann::json loss;
  std::vector<torch::Tensor> grads;
};

OracleResult run_oracle(const LossCase& c, const std::filesystem::path& dir) {
  OracleResult result;
  for (size_t i = 0; i < 3; ++i) save(c.heads[i], dir / ("p" + std::to_string(i) + ".npy"));
  save(c.targets, dir / "targets.npy");
  save(c.anchors, dir / "anchors.npy");
  if (!testing::have_python_oracles()) {
    result.message = std::string("no Python oracles at ") + QYOLO_PYTHON;
    return result;
  }
  auto run = run_command(std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR +
                         "/python/yolo_loss_oracle.py --dir " + dir.string() + " --imgsz " +
                         std::to_string(kImageSize));
  result.message = run.output;
  if (run.exit_code == 77) return result;
  EXPECT_EQ(run.exit_code, 0) << run.output;
  std::ifstream in(dir / "loss.json");
  result.loss = nlohmann::json::parse(in, nullptr, false);
  for (int i = 0; i < 3; ++i) {
    auto grad = read_npy((dir / ("grad" + std::to_string(i) + ".npy")).string());
    EXPECT_TRUE(grad) << grad.status().message();
    if (grad) result.grads.push_back(to_torch(*grad));
  }
  result.ran = !result.loss.is_discarded() && result.grads.size() == 3;
  return result;
}

double relative(double value, double expected) {
  return std::fabs(value - expected) / std::max(std::fabs(expected), 1e-30);
}

DetectionLoss cpp_loss(const LossCase& c, const DetectionLossHyp& hyp,
                       std::vector<torch::Tensor>* grads = nullptr) {
  std::vector<torch::Tensor> heads;
  for (const auto& h : c.heads) heads.push_back(h.detach().clone().set_requires_grad(true));
  DetectionLoss loss =
      detection_loss(heads, c.targets, c.anchors, detection_loss_gains(hyp, 3, 80, kImageSize));
  loss.total.sum().backward();
  if (grads) {
    for (const auto& h : heads) grads->push_back(h.grad());
  }
  return loss;
}

TEST(QatDetectionLoss, MatchesUltralyticsComputeLoss) {
  const LossCase c = loss_case();
  const auto dir = temp_dir();
  const OracleResult oracle = run_oracle(c, dir);
  if (!oracle.ran) {
    if (std::getenv("QYOLO_REQUIRE_ORACLES"))
      FAIL() << "QYOLO_REQUIRE_ORACLES is set but the oracle did not run: " << oracle.message;
    GTEST_SKIP() << "ultralytics ComputeLoss oracle unavailable (scripts/setup.sh installs it): "
                 << oracle.message;
  }
  std::vector<torch::Tensor> grads;
  const DetectionLoss loss = cpp_loss(c, DetectionLossHyp(), &grads);
  const std::pair<const char*, torch::Tensor> terms[] = {
      {"box", loss.box}, {"obj", loss.obj}, {"cls", loss.cls}, {"total", loss.total}};
  double worst = 0.0;
  for (const auto& [name, value] : terms) {
    const double expected = oracle.loss.at(name).get<double>();
    const double difference = relative(value.item<double>(), expected);
    EXPECT_LT(difference, 1e-5) << name << " " << value.item<double>() << " vs " << expected;
    EXPECT_GT(expected, 0.0) << name;
    worst = std::max(worst, difference);
  }
  double worst_grad = 0.0;
  for (size_t i = 0; i < 3; ++i) {
    const double scale = oracle.grads[i].abs().max().item<double>();
    const double difference = (grads[i] - oracle.grads[i]).abs().max().item<double>() / scale;
    EXPECT_LT(difference, 1e-5) << "gradient of head " << i;
    worst_grad = std::max(worst_grad, difference);
  }
  std::printf(
      "loss vs ComputeLoss: max relative difference %.3g (box %.6g obj %.6g cls %.6g "
      "total %.6g); gradients %.3g of their max\n",
      worst, loss.box.item<double>(), loss.obj.item<double>(), loss.cls.item<double>(),
      loss.total.item<double>(), worst_grad);

  // The comparison is sharp enough to see a slip in any of the constants.
  DetectionLossHyp other_balance;
  other_balance.balance = {4.0, 1.0, 0.25};
  EXPECT_GT(relative(cpp_loss(c, other_balance).obj.item<double>(), oracle.loss.at("obj")), 1e-3);
  DetectionLossHyp other_anchor_t;
  other_anchor_t.anchor_t = 3.9;
  EXPECT_GT(relative(cpp_loss(c, other_anchor_t).box.item<double>(), oracle.loss.at("box")), 1e-4);
}

TEST(QatDetectionLoss, NoTargetsLeavesObjectnessOnly) {
  LossCase c = loss_case();
  c.targets = torch::zeros({0, 6});
  const DetectionLoss loss = cpp_loss(c, DetectionLossHyp());
  EXPECT_EQ(loss.box.item<double>(), 0.0);
  EXPECT_EQ(loss.cls.item<double>(), 0.0);
  EXPECT_GT(loss.obj.item<double>(), 0.0);
  EXPECT_NEAR(loss.total.item<double>(), 3 * loss.obj.item<double>(), 1e-6);
}

TEST(QatDetectionLoss, DetectLayoutIsDetectsTrainingView) {
  const torch::Tensor raw = torch::arange(2 * 255 * 4 * 5, torch::kFloat32).view({2, 255, 4, 5});
  const torch::Tensor p = detect_layout(raw, 3);
  EXPECT_EQ(p.sizes(), (std::vector<int64_t>{2, 3, 4, 5, 85}));
  // Anchor 1, cell (y 2, x 3), channel 4 (objectness) is raw channel 85 + 4.
  EXPECT_EQ(p[1][1][2][3][4].item<float>(), raw[1][89][2][3].item<float>());
}

// ---------------------------------------------------------------------------------------
// Labels.

std::vector<std::string> two_calib_images() {
  auto files = list_training_images(testing::data_path("coco/calib2017/images").string());
  EXPECT_TRUE(files) << files.status().message();
  return {(*files)[0], (*files)[1]};
}

// A COCO instances file for `images` with `boxes` (image index, category id, x, y, w, h,
// iscrowd) and `extra_files` listed as images that have no annotations.
std::string instances_json(const std::vector<std::string>& images,
                           const std::vector<std::array<double, 7>>& boxes,
                           const std::vector<std::string>& extra_files = {}) {
  nlohmann::json json;
  json["images"] = nlohmann::json::array();
  int64_t id = 100;
  for (const auto& path : images)
    json["images"].push_back({{"id", id++}, {"file_name", std::filesystem::path(path).filename()}});
  for (const auto& name : extra_files)
    json["images"].push_back({{"id", id++}, {"file_name", name}});
  json["annotations"] = nlohmann::json::array();
  for (size_t k = 0; k < boxes.size(); ++k) {
    const auto& b = boxes[k];
    json["annotations"].push_back({{"id", k + 1},
                                   {"image_id", 100 + static_cast<int64_t>(b[0])},
                                   {"category_id", static_cast<int64_t>(b[1])},
                                   {"bbox", {b[2], b[3], b[4], b[5]}},
                                   {"area", b[4] * b[5]},
                                   {"iscrowd", static_cast<int64_t>(b[6])}});
  }
  json["categories"] = nlohmann::json::array();
  for (int c = 0; c < kCoco80Classes; ++c) json["categories"].push_back({{"id", coco80_to_91(c)}});
  return json.dump();
}

TEST(QatLabels, CocoBoxesByFileNameWithoutCrowds) {
  const auto images = two_calib_images();
  const auto dir = temp_dir();
  const std::string path = (dir / "instances.json").string();
  testing::write_file(path, instances_json(images, {{1, 1, 10, 20, 30, 40, 0},
                                                    {1, 90, 5, 6, 7, 8, 0},
                                                    {1, 3, 0, 0, 50, 50, 1},   // crowd
                                                    {0, 3, 1, 2, 0, 4, 0}}));  // empty
  auto labels = load_training_labels(path, images, testing::data_path("coco/calib2017/images"));
  ASSERT_TRUE(labels) << labels.status().message();
  ASSERT_EQ(labels->size(), 2u);
  EXPECT_TRUE((*labels)[0].empty());
  ASSERT_EQ((*labels)[1].size(), 2u);
  EXPECT_EQ((*labels)[1][0].class_index, 0);  // person
  EXPECT_EQ((*labels)[1][0].width, 30.0);
  EXPECT_EQ((*labels)[1][1].class_index, 79);  // toothbrush, COCO id 90
}

TEST(QatLabels, ImagesMissingFromTheFolderAreAnError) {
  const auto images = two_calib_images();
  const auto dir = temp_dir();
  const std::string path = (dir / "instances.json").string();
  testing::write_file(path, instances_json(images, {}, {"gone_1.jpg", "gone_2.jpg"}));
  auto labels = load_training_labels(path, images, "calib");
  ASSERT_FALSE(labels);
  EXPECT_EQ(labels.status().message(),
            path + ": 2 of its 4 images are not in calib, the first 'gone_1.jpg'");
}

TEST(QatLabels, OtherJsonIsAnErrorNamingTheFile) {
  const auto images = two_calib_images();
  const auto dir = temp_dir();
  const std::string results = (dir / "results.json").string();
  testing::write_file(results, R"([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4],
                                    "score": 0.5}])");
  auto labels = load_training_labels(results, images, "calib");
  ASSERT_FALSE(labels);
  EXPECT_EQ(labels.status().message().rfind(results + ": ", 0), 0u) << labels.status().message();
  const std::string category = (dir / "category.json").string();
  testing::write_file(category, instances_json(images, {{0, 91, 1, 2, 3, 4, 0}}));
  labels = load_training_labels(category, images, "calib");
  ASSERT_FALSE(labels);
  EXPECT_EQ(
      labels.status().message(),
      category + ": annotations[0]: category_id 91 is not one of COCO's 80 detection classes");
}

// A red rectangle through augment(): the target drawn back on the canvas covers it.
TEST(QatLabels, TargetsFollowTheAugmentedImage) {
  Image image;
  image.width = 300, image.height = 180;
  image.pixels.assign(300 * 180 * 3, 40);
  const TrainingBox box{3, 50, 30, 120, 60};
  for (int y = 30; y < 90; ++y)
    for (int x = 50; x < 170; ++x) image.row(y)[3 * x] = 250;
  AugmentOptions options;
  options.hsv_h = options.hsv_s = options.hsv_v = 0.0;
  for (double flip : {0.0, 1.0}) {
    options.flip = flip;
    std::mt19937_64 rng(3);
    AugmentPlacement placement;
    const Image out = augment(image, 160, options, rng, &placement);
    EXPECT_EQ(placement.flipped, flip == 1.0);
    const auto targets = augmented_targets({box}, placement);
    ASSERT_EQ(targets.size(), 1u);
    EXPECT_EQ(targets[0][0], 3.0f);
    int x0 = 160, x1 = 0, y0 = 160, y1 = 0;
    for (int y = 0; y < out.height; ++y) {
      for (int x = 0; x < out.width; ++x) {
        if (out.row(y)[3 * x] > 145)
          x0 = std::min(x0, x), x1 = std::max(x1, x + 1), y0 = std::min(y0, y),
          y1 = std::max(y1, y + 1);
      }
    }
    EXPECT_NEAR(targets[0][1] * 160, (x0 + x1) / 2.0, 1.0) << "flip " << flip;
    EXPECT_NEAR(targets[0][2] * 160, (y0 + y1) / 2.0, 1.0);
    EXPECT_NEAR(targets[0][3] * 160, x1 - x0, 1.5);
    EXPECT_NEAR(targets[0][4] * 160, y1 - y0, 1.5);
  }
  // Under 2 pixels after scaling: dropped.
  AugmentPlacement placement;
  std::mt19937_64 rng(3);
  augment(image, 160, options, rng, &placement);
  EXPECT_TRUE(augmented_targets({{0, 10, 10, 2, 40}}, placement).empty());
}

// Supervised fine-tuning runs a step on real images with a synthetic annotation file (the
// shared data has no training annotations), and the losses mix as documented.
TEST(QatFineTune, SupervisedStepAndLossMixing) {
  const auto images = two_calib_images();
  const auto dir = temp_dir();
  const std::string path = (dir / "instances.json").string();
  testing::write_file(path, instances_json(images, {{0, 1, 100, 80, 200, 300, 0},
                                                    {0, 18, 300, 200, 120, 90, 0},
                                                    {1, 62, 20, 30, 400, 200, 0}}));
  auto labels = load_training_labels(path, images, testing::data_path("coco/calib2017/images"));
  ASSERT_TRUE(labels) << labels.status().message();
  auto fp32 = load_onnx(testing::yolov5n_path().string());
  ASSERT_TRUE(fp32) << fp32.status().message();
  CalibrationOptions calibration;
  calibration.method = CalibrationMethod::kMax;
  auto qat = calibrate_qat(*fp32, QdqPlacement::kTensorRT, images, 128, calibration);
  ASSERT_TRUE(qat) << qat.status().message();
  auto run = [&](const std::string& name, bool supervised, double distill_weight) {
    FineTuneOptions o;
    o.epochs = 1, o.batch = 2, o.lr = 1e-3, o.image_size = 128, o.seed = 5;
    o.output_dir = (dir / name).string();
    if (supervised) o.labels = *labels;
    o.distill_weight = distill_weight;
    auto result = fine_tune(*fp32, qat->graph, images, o);
    EXPECT_TRUE(result) << result.status().message();
    return result ? result->log.at(0).loss : std::nan("");
  };
  const double detection = run("detection", true, -1.0);
  const double distillation = run("distillation", false, -1.0);
  const double mixed = run("mixed", true, 0.5);
  EXPECT_GT(detection, distillation);
  // One step from the same start on the same batch: the terms add.
  EXPECT_NEAR(mixed, detection + 0.5 * distillation, 1e-5 * mixed);
  std::ifstream csv(dir / "detection" / "log.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header, "epoch,loss,lr,images_per_second");
  // A checkpoint of one loss does not resume another.
  FineTuneOptions o;
  o.epochs = 2, o.batch = 2, o.image_size = 128;
  o.output_dir = (dir / "detection").string();
  auto other = fine_tune(*fp32, qat->graph, images, o);
  ASSERT_FALSE(other);
  EXPECT_NE(other.status().message().find("was made for another model, placement or loss"),
            std::string::npos)
      << other.status().message();
}

}  // namespace
}  // namespace qyolo
