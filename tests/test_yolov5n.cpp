// The whole yolov5n model: against onnxruntime on real letterboxed COCO images, and the
// executor's own invariants (fused == unfused, repeated runs identical).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qyolo/executor.h"
#include "qyolo/onnx.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::yolov5n_path;

Tensor random_image(uint32_t seed) {
  Tensor x(DType::kFloat32, {1, 3, 640, 640});
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = dist(rng);
  return x;
}

double max_relative_difference(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(double(a.data<float>()[i]) - b.data<float>()[i]));
    scale = std::max(scale, std::abs(double(b.data<float>()[i])));
  }
  return diff / scale;
}

TEST(Yolov5n, MatchesOnnxRuntimeOnCocoImages) {
  if (!testing::have_python_oracles())
    GTEST_SKIP() << "no Python with onnxruntime at " QYOLO_PYTHON;
  const auto result = testing::run_command(
      std::string(QYOLO_PYTHON) + " " QYOLO_TESTS_DIR "/python/compare_onnxruntime.py --qyolo " +
      QYOLO_BINARY + " --model " + yolov5n_path().string() + " --images " +
      data_path("coco/val2017-mini/images").string() + " --count 3 --tol 1e-4");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("worst"), std::string::npos) << result.output;
}

TEST(Yolov5n, FusedAndUnfusedAgree) {
  auto graph = load_onnx(yolov5n_path());
  ASSERT_TRUE(graph) << graph.status().message();
  auto fused = CpuExecutor::create(*graph);
  ExecutorOptions unfused_options;
  unfused_options.fuse = false;
  auto unfused = CpuExecutor::create(*graph, unfused_options);
  ASSERT_TRUE(fused && unfused);
  EXPECT_LT((*fused)->num_steps(), (*unfused)->num_steps()) << "fusion removed no step";
  const Tensor x = random_image(1);
  auto a = (*fused)->run({{"images", x}});
  auto b = (*unfused)->run({{"images", x}});
  ASSERT_TRUE(a && b);
  EXPECT_LT(max_relative_difference(a->at("output0"), b->at("output0")), 1e-5);
}

TEST(Yolov5n, RepeatedRunsAreIdentical) {
  auto graph = load_onnx(yolov5n_path());
  ASSERT_TRUE(graph);
  auto executor = CpuExecutor::create(*graph);
  ASSERT_TRUE(executor);
  const Tensor x1 = random_image(2), x2 = random_image(3);
  auto first = (*executor)->run({{"images", x1}});
  auto other = (*executor)->run({{"images", x2}});
  auto again = (*executor)->run({{"images", x1}});
  ASSERT_TRUE(first && other && again);
  EXPECT_TRUE(first->at("output0") == again->at("output0"));
  EXPECT_FALSE(first->at("output0") == other->at("output0"));
}

TEST(Yolov5n, ReferenceConvolutionsAgreeWithOnednn) {
  auto graph = load_onnx(yolov5n_path());
  ASSERT_TRUE(graph);
  ExecutorOptions slow;
  slow.fast_conv = false;
  auto reference = CpuExecutor::create(*graph, slow);
  auto fast = CpuExecutor::create(*graph);
  ASSERT_TRUE(reference && fast);
  const Tensor x = random_image(4);
  auto a = (*reference)->run({{"images", x}});
  auto b = (*fast)->run({{"images", x}});
  ASSERT_TRUE(a && b);
  EXPECT_LT(max_relative_difference(b->at("output0"), a->at("output0")), 1e-5);
}

}  // namespace
}  // namespace qyolo
