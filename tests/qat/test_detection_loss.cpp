// The QAT detection loss against ultralytics yolov5 v7.0's own ComputeLoss
// (tests/python/yolo_loss_oracle.py), and the training labels: COCO boxes through the
// augmentation, and the errors for annotation files that do not fit the images.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qat/qat_internal.h"
#include "qyolo/npy.h"
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

}  // namespace
}  // namespace qyolo
