// Quantization-aware training: the LibTorch model against the CPU executor, the passes (the
// student's engine rounding too), calibration through quant.h's calibrator, the distillation
// losses against their formulas, fine-tuning (reproducible, resumable, stops on NaN) and the
// CLI's export through onnx.checker, onnxruntime, translate and val --int8.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "qat/qat_internal.h"
#include "qyolo/executor.h"
#include "qyolo/onnx.h"
#include "qyolo/qat.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::run_command;
using testing::run_qyolo;
using testing::temp_dir;
using testing::yolov5n_path;

std::string calib_images() { return data_path("coco/calib2017/images").string(); }

Tensor letterboxed(const std::string& path, int size) {
  auto image = read_image(path);
  EXPECT_TRUE(image) << image.status().message();
  Letterbox placement;
  Tensor input(DType::kFloat32, {1, 3, size, size});
  image_to_tensor(letterbox(*image, size, size, &placement), input, 0);
  return input;
}

std::string first_image() { return (*list_training_images(calib_images()))[0]; }

Graph yolov5n() {
  auto graph = load_onnx(yolov5n_path().string());
  EXPECT_TRUE(graph) << graph.status().message();
  return *graph;
}

// Largest |a - b| / max(1, |b|) over the elements.
double max_relative_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.data<float>()[i], y = b.data<float>()[i];
    worst = std::max(worst, std::fabs(x - y) / std::max(1.0, std::fabs(y)));
  }
  return worst;
}

std::vector<Tensor> executor_outputs(const Graph& graph, const Tensor& input) {
  auto executor = CpuExecutor::create(graph);
  EXPECT_TRUE(executor) << executor.status().message();
  auto outputs = (*executor)->run({{graph.inputs[0].name, input}});
  EXPECT_TRUE(outputs) << outputs.status().message();
  std::vector<Tensor> ordered;
  for (const auto& output : graph.outputs) ordered.push_back(outputs->at(output.name));
  return ordered;
}

TEST(QatModel, Fp32ForwardMatchesExecutorOnYolov5n) {
  const Graph graph = yolov5n();
  const Tensor input = letterboxed(first_image(), 640);
  auto model = QatModel::create(graph);
  ASSERT_TRUE(model) << model.status().message();
  EXPECT_EQ((*model)->num_parameters(), 1867405);
  auto outputs = (*model)->forward(input);
  ASSERT_TRUE(outputs) << outputs.status().message();
  const auto expected = executor_outputs(graph, input);
  ASSERT_EQ(outputs->size(), 1u);
  const double difference = max_relative_difference((*outputs)[0], expected[0]);
  EXPECT_LT(difference, 1e-4);
  std::printf("full yolov5n at 640: max |torch - executor| / max(1, |executor|) = %.3g\n",
              difference);
}

TEST(QatModel, TrimmedForwardMatchesExecutorAtAnotherSize) {
  auto trimmed = trim_at_heads(yolov5n());
  ASSERT_TRUE(trimmed) << trimmed.status().message();
  auto sized = with_input_size(*trimmed, 320);
  ASSERT_TRUE(sized) << sized.status().message();
  ASSERT_EQ(sized->outputs.size(), 3u);
  EXPECT_EQ(sized->outputs[0].name, "/model.24/m.0/Conv_output_0");
  EXPECT_EQ(sized->outputs[0].shape, (Shape{1, 255, 40, 40}));
  EXPECT_EQ(sized->outputs[2].shape, (Shape{1, 255, 10, 10}));
  const Tensor input = letterboxed(first_image(), 320);
  auto model = QatModel::create(*sized);
  ASSERT_TRUE(model) << model.status().message();
  auto outputs = (*model)->forward(input);
  ASSERT_TRUE(outputs) << outputs.status().message();
  const auto expected = executor_outputs(*sized, input);
  for (size_t k = 0; k < 3; ++k)
    EXPECT_LT(max_relative_difference((*outputs)[k], expected[k]), 1e-4);
}

TEST(QatModel, FullExportRefusesAnotherSize) {
  auto sized = with_input_size(yolov5n(), 672);
  ASSERT_FALSE(sized);
  EXPECT_NE(sized.status().message().find("trim"), std::string::npos) << sized.status().message();
}

TEST(QatModel, NamesAnOpItLacks) {
  Graph graph = yolov5n();
  for (auto& node : graph.nodes) {
    if (node.name == "/model.24/Sigmoid") node.op_type = "HardSigmoid";
  }
  auto model = QatModel::create(graph);
  ASSERT_FALSE(model);
  EXPECT_EQ(model.status().message(),
            "HardSigmoid '/model.24/Sigmoid': the QAT trainer has no HardSigmoid");
}

TEST(QatModel, CudaIsAClearErrorWithoutIt) {
  if (qat_cuda_available()) GTEST_SKIP() << "this LibTorch has CUDA";
  auto model = QatModel::create(yolov5n(), "cuda");
  ASSERT_FALSE(model);
  EXPECT_NE(model.status().message().find("no CUDA"), std::string::npos);
}

// Q/DQ graphs: the fake-quantized torch model runs as the executor runs Q/DQ. A value on a
// rounding boundary may land one step apart (oneDNN and torch sum convolutions in other
// orders), and that spreads through later layers, so the whole network is compared
// statistically against the size of the quantization noise itself; the exact check is
// QuantizeDequantizeMatchesExecutorExactly.
TEST(QatModel, FakeQuantizationMatchesExecutorQdq) {
  auto trimmed = trim_at_heads(yolov5n());
  ASSERT_TRUE(trimmed);
  auto sized = with_input_size(*trimmed, 256);
  ASSERT_TRUE(sized);
  for (QdqPlacement placement : {QdqPlacement::kTensorRT, QdqPlacement::kAllNodes}) {
    const auto tensors = qdq_activation_tensors(*sized, placement);
    const Tensor input = letterboxed(first_image(), 256);
    auto ranges = max_abs_ranges(*sized, {{{sized->inputs[0].name, input}}}, tensors);
    ASSERT_TRUE(ranges) << ranges.status().message();
    auto qat = insert_qdq(*sized, placement, *ranges);
    ASSERT_TRUE(qat) << qat.status().message();
    auto model = QatModel::create(*qat);
    ASSERT_TRUE(model) << model.status().message();
    auto outputs = (*model)->forward(input);
    ASSERT_TRUE(outputs) << outputs.status().message();
    const auto expected = executor_outputs(*qat, input);
    const auto fp32 = executor_outputs(*sized, input);
    double diff = 0.0, noise = 0.0;
    int64_t n = 0;
    for (size_t k = 0; k < 3; ++k) {
      for (int64_t i = 0; i < expected[k].numel(); ++i, ++n) {
        diff += std::fabs((*outputs)[k].data<float>()[i] - expected[k].data<float>()[i]);
        noise += std::fabs(fp32[k].data<float>()[i] - expected[k].data<float>()[i]);
      }
    }
    std::printf("placement %d: mean |torch - executor| %.3g, quantization noise %.3g\n",
                static_cast<int>(placement), diff / n, noise / n);
    EXPECT_GT(noise / n, 1e-3);  // the Q/DQ are really there
    EXPECT_LT(diff, 0.7 * noise);
  }
}

TEST(QatModel, QuantizeDequantizeMatchesExecutorExactly) {
  Graph graph;
  graph.name = "qdq";
  graph.inputs.push_back({"x", DType::kFloat32, true, {1, 3, 8, 8}, {"", "", "", ""}});
  graph.outputs.push_back({"y", DType::kFloat32, true, {1, 3, 8, 8}, {"", "", "", ""}});
  Node identity;
  identity.name = "id";
  identity.op_type = "Identity";
  identity.inputs = {"x"};
  identity.outputs = {"y"};
  graph.nodes.push_back(identity);
  // insert_qdq quantizes Conv inputs only; write the pair by hand on the Identity's input.
  Graph g = graph;
  g.opset_imports[""] = 13;
  g.initializers["s"] = Tensor::from_vector(std::vector<float>{0.25f}, {});
  g.initializers["z"] = Tensor(DType::kInt8, {});
  Node q, dq;
  q.name = "q", q.op_type = "QuantizeLinear", q.inputs = {"x", "s", "z"}, q.outputs = {"xq"};
  dq.name = "dq", dq.op_type = "DequantizeLinear", dq.inputs = {"xq", "s", "z"},
  dq.outputs = {"xd"};
  g.nodes = {q, dq, identity};
  g.nodes[2].inputs = {"xd"};
  Tensor input(DType::kFloat32, {1, 3, 8, 8});
  for (int64_t i = 0; i < input.numel(); ++i)
    input.data<float>()[i] = 0.375f * (i - 96);  // ties, clipping
  auto model = QatModel::create(g);
  ASSERT_TRUE(model) << model.status().message();
  auto outputs = (*model)->forward(input);
  ASSERT_TRUE(outputs);
  const auto expected = executor_outputs(g, input);
  EXPECT_EQ((*outputs)[0], expected[0]);
  EXPECT_EQ((*outputs)[0].data<float>()[0], -32.0f);    // -36 clips to -128 * 0.25
  EXPECT_EQ((*outputs)[0].data<float>()[95], -0.5f);    // -0.375 = -1.5 steps: a tie, to even
  EXPECT_EQ((*outputs)[0].data<float>()[191], 31.75f);  // 35.625 clips to 127 * 0.25
}

// A Q/DQ'd convolution: the weight gradient is that of the fake-quantized weight (straight
// through), and no gradient reaches inputs clipped by the activation quantizer.
TEST(QatModel, StraightThroughGradients) {
  Graph graph;
  graph.name = "qdq_conv";
  graph.inputs.push_back({"x", DType::kFloat32, true, {1, 3, 4, 4}, {"", "", "", ""}});
  graph.outputs.push_back({"y", DType::kFloat32, true, {1, 2, 4, 4}, {"", "", "", ""}});
  std::vector<float> weight(2 * 3 * 9);
  for (size_t i = 0; i < weight.size(); ++i) weight[i] = 0.1f * std::sin(1.0f + i);
  graph.initializers["w"] = Tensor::from_vector(weight, {2, 3, 3, 3});
  graph.initializers["b"] = Tensor::from_vector(std::vector<float>{0.5f, -0.5f}, {2});
  Node conv;
  conv.name = "conv";
  conv.op_type = "Conv";
  conv.inputs = {"x", "w", "b"};
  conv.outputs = {"y"};
  conv.attributes["pads"] = Attribute::of_ints({1, 1, 1, 1});
  conv.attributes["kernel_shape"] = Attribute::of_ints({3, 3});
  graph.nodes.push_back(conv);
  auto qat = insert_qdq(graph, QdqPlacement::kTensorRT, {{"x", 1.0f}});
  ASSERT_TRUE(qat) << qat.status().message();
  auto model = QatModel::create(*qat);
  ASSERT_TRUE(model) << model.status().message();
  auto& impl = (*model)->impl();
  ASSERT_EQ(impl.parameter_names, (std::vector<std::string>{"b", "w"}));
  torch::Tensor x = torch::linspace(-2.0, 2.0, 48).reshape({1, 3, 4, 4}).set_requires_grad(true);
  impl.run(x)[0].sum().backward();
  const torch::Tensor inside = x.abs() <= 1.0f;
  EXPECT_TRUE(x.grad().masked_select(~inside).eq(0).all().item<bool>());
  EXPECT_TRUE(x.grad().masked_select(inside).ne(0).any().item<bool>());
  // d(sum y)/dw of a conv is the sum of input patches: the same for the fake-quantized weight.
  const torch::Tensor xq =
      torch::fake_quantize_per_tensor_affine(x.detach(), 1.0 / 127, 0, -128, 127);
  torch::Tensor w = impl.parameters[1].detach().clone().set_requires_grad(true);
  torch::conv2d(xq, w, {}, 1, 1).sum().backward();
  EXPECT_TRUE(torch::allclose(impl.parameters[1].grad(), w.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(impl.parameters[0].grad().eq(16.0f).all().item<bool>());
}

TEST(QatCalibrate, ScalesComeFromQuantsCalibrator) {
  const Graph graph = yolov5n();
  auto files = list_training_images(calib_images());
  ASSERT_TRUE(files);
  const std::vector<std::string> two(files->begin(), files->begin() + 2);
  CalibrationOptions options;
  options.method = CalibrationMethod::kPercentile;
  auto result = calibrate_qat(graph, QdqPlacement::kAllNodes, two, 320, options);
  ASSERT_TRUE(result) << result.status().message();
  EXPECT_EQ(result->images, 2);
  // The same amax as quant.h's Calibrator computes on the same images.
  auto source = upgrade_to_opset13(graph);
  auto trimmed = with_input_size(*trim_at_heads(*source), 320);
  ASSERT_TRUE(trimmed);
  const auto tensors = qdq_activation_tensors(*source, QdqPlacement::kAllNodes);
  auto calibrator = Calibrator::create(*trimmed, tensors);
  ASSERT_TRUE(calibrator);
  for (const auto& path : two) {
    ASSERT_TRUE((*calibrator)->add_batch({{"images", letterboxed(path, 320)}}).is_ok());
  }
  const auto amax = (*calibrator)->amax(options);
  ASSERT_EQ(result->amax.size(), tensors.size());
  for (size_t k = 0; k < tensors.size(); ++k)
    EXPECT_EQ(result->amax[tensors[k]], amax[k]) << tensors[k];
  // And those amax are the Q/DQ scales of the graph (a shared quantizer, as on a Concat's
  // inputs, takes the largest of its tensors').
  int exact = 0, checked = 0;
  for (const Node& node : result->graph.nodes) {
    if (node.op_type != "QuantizeLinear" || !result->amax.count(node.inputs[0])) continue;
    const float scale_amax =
        result->graph.initializers.at(node.inputs[1]).data<float>()[0] * 127.0f;
    EXPECT_GE(scale_amax, result->amax[node.inputs[0]] * (1 - 1e-6f)) << node.name;
    exact += std::fabs(scale_amax - result->amax[node.inputs[0]]) <= 1e-6f * scale_amax;
    ++checked;
  }
  EXPECT_GT(checked, 100);
  EXPECT_GT(exact, checked / 2);
}

TEST(QatCalibrate, NoImagesIsAnError) {
  const auto dir = temp_dir();
  auto files = list_training_images(dir.string());
  ASSERT_FALSE(files);
  EXPECT_EQ(files.status().message(), "no images (.jpg, .jpeg, .png) in " + dir.string());
}

// Fine-tuning at a small size on four images keeps these tests quick.
struct SmallRun {
  Graph fp32;
  std::vector<std::string> images;
  Graph qat(QdqPlacement placement) const {
    CalibrationOptions options;
    options.method = CalibrationMethod::kMax;
    auto result = calibrate_qat(fp32, placement, images, 128, options);
    EXPECT_TRUE(result) << result.status().message();
    return result->graph;
  }
  FineTuneOptions options(const std::filesystem::path& dir, int epochs) const {
    FineTuneOptions o;
    o.epochs = epochs;
    o.batch = 2;
    o.lr = 1e-3;
    o.image_size = 128;
    o.seed = 7;
    o.output_dir = dir.string();
    return o;
  }
};

SmallRun small_run() {
  auto files = list_training_images(calib_images());
  EXPECT_TRUE(files);
  return {yolov5n(), std::vector<std::string>(files->begin(), files->begin() + 4)};
}

TEST(QatFineTune, SeededRunIsReproducibleAndResumesExactly) {
  const SmallRun run = small_run();
  const Graph qat = run.qat(QdqPlacement::kTensorRT);
  const auto dir = temp_dir();
  auto straight = fine_tune(run.fp32, qat, run.images, run.options(dir / "a", 2));
  ASSERT_TRUE(straight) << straight.status().message();
  // Interrupted after epoch 1 (the cosine schedule spans the two epochs), then rerun.
  FineTuneOptions interrupted = run.options(dir / "b", 2);
  interrupted.inject_nan_at_step = 3;
  ASSERT_FALSE(fine_tune(run.fp32, qat, run.images, interrupted));
  auto resumed = fine_tune(run.fp32, qat, run.images, run.options(dir / "b", 2));
  ASSERT_TRUE(resumed) << resumed.status().message();
  EXPECT_EQ(resumed->resumed_from_epoch, 1);
  ASSERT_EQ(straight->log.size(), 2u);
  ASSERT_EQ(resumed->log.size(), 2u);
  for (size_t e = 0; e < 2; ++e) {
    EXPECT_GT(straight->log[e].loss, 0.0);
    EXPECT_EQ(straight->log[e].loss, resumed->log[e].loss) << "epoch " << e + 1;
  }
  EXPECT_LT(straight->log[1].lr, straight->log[0].lr);  // cosine decay
  int changed = 0;
  for (const auto& [name, tensor] : straight->graph.initializers) {
    EXPECT_EQ(tensor, resumed->graph.initializers.at(name)) << name;
    changed += !(tensor == qat.initializers.at(name));
  }
  EXPECT_GT(changed, 100);  // weights and their per-channel scales moved
  std::ifstream csv(dir / "a" / "log.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_EQ(header, "epoch,loss,lr,images_per_second");
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  EXPECT_EQ(lines, 2);
  auto plot = read_image((dir / "a" / "loss.png").string());
  ASSERT_TRUE(plot) << plot.status().message();
  EXPECT_EQ(plot->width, 640);
}

// The engine student reads the heads' weights unquantized; the export still has their Q/DQ,
// whose scales must follow the trained weights as every other weight scale does.
TEST(QatFineTune, EngineStudentExportsWeightScalesThatFollowTheWeights) {
  const SmallRun run = small_run();
  const Graph qat = run.qat(QdqPlacement::kAllNodes);
  FineTuneOptions options = run.options(temp_dir(), 1);
  options.engine_rounding = true;
  auto tuned = fine_tune(run.fp32, qat, run.images, options);
  ASSERT_TRUE(tuned) << tuned.status().message();
  EXPECT_FALSE(tuned->graph.initializers.at("model.24.m.0.weight") ==
               qat.initializers.at("model.24.m.0.weight"));
  int checked = 0;
  for (const Node& node : tuned->graph.nodes) {
    if (node.op_type != "QuantizeLinear") continue;
    const auto weight = tuned->graph.initializers.find(node.inputs[0]);
    if (weight == tuned->graph.initializers.end()) continue;
    const torch::Tensor expected = weight_scales(to_torch(weight->second));
    EXPECT_TRUE(torch::equal(to_torch(tuned->graph.initializers.at(node.inputs[1])), expected))
        << node.name;
    ++checked;
  }
  EXPECT_EQ(checked, 60);
}

TEST(QatFineTune, ResumingAnotherModelsCheckpointIsAnError) {
  const SmallRun run = small_run();
  const auto dir = temp_dir();
  ASSERT_TRUE(
      fine_tune(run.fp32, run.qat(QdqPlacement::kTensorRT), run.images, run.options(dir, 1)));
  auto other =
      fine_tune(run.fp32, run.qat(QdqPlacement::kAllNodes), run.images, run.options(dir, 2));
  ASSERT_FALSE(other);
  const std::string message = other.status().message();
  EXPECT_NE(message.find("checkpoint " + (dir / "checkpoint.pt").string() +
                         " was made for another model, placement or loss"),
            std::string::npos)
      << message;
}

TEST(QatFineTune, ResumingWithAnotherDistillationTargetIsAnError) {
  const SmallRun run = small_run();
  const Graph qat = run.qat(QdqPlacement::kTensorRT);
  const auto dir = temp_dir();
  FineTuneOptions options = run.options(dir, 1);
  options.distill_on = DistillationTarget::kObjectness;
  auto first = fine_tune(run.fp32, qat, run.images, options);
  ASSERT_TRUE(first) << first.status().message();
  EXPECT_GT(first->log[0].loss, 0.0);
  options.epochs = 2;
  options.distill_on = DistillationTarget::kSigmoid;
  auto other = fine_tune(run.fp32, qat, run.images, options);
  ASSERT_FALSE(other);
  EXPECT_NE(other.status().message().find("was made for another model, placement or loss"),
            std::string::npos)
      << other.status().message();
  options.distill_on = DistillationTarget::kObjectness;
  auto resumed = fine_tune(run.fp32, qat, run.images, options);
  ASSERT_TRUE(resumed) << resumed.status().message();
  EXPECT_EQ(resumed->resumed_from_epoch, 1);
}

TEST(QatFineTune, NanLossStopsAtTheStepAndKeepsTheLastCheckpoint) {
  const SmallRun run = small_run();
  const Graph qat = run.qat(QdqPlacement::kTensorRT);
  const auto dir = temp_dir();
  FineTuneOptions options = run.options(dir, 3);
  options.inject_nan_at_step = 3;  // epoch 2, step 1 (two steps per epoch)
  auto failed = fine_tune(run.fp32, qat, run.images, options);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.status().message(),
            "loss is nan at epoch 2 step 1 (global step 3); stopped. The last good checkpoint, " +
                (dir / "checkpoint.pt").string() + " (epoch 1), is kept");
  options.inject_nan_at_step = 0;
  auto resumed = fine_tune(run.fp32, qat, run.images, options);
  ASSERT_TRUE(resumed) << resumed.status().message();
  EXPECT_EQ(resumed->resumed_from_epoch, 1);
}

int count_op(const Graph& graph, const std::string& op) {
  return static_cast<int>(std::count_if(graph.nodes.begin(), graph.nodes.end(),
                                        [&](const Node& node) { return node.op_type == op; }));
}

const Node& node_named(const Graph& graph, const std::string& name) {
  for (const auto& node : graph.nodes)
    if (node.name == name) return node;
  ADD_FAILURE() << "no node " << name;
  return graph.nodes.front();
}

// Option 2 rounds a Conv+SiLU's pre-activation and sigmoid, and quantizes the heads' inputs
// and weights; the INT8 engine does neither (fused SiLU, FP16 heads): the student must not.
TEST(QatPasses, EngineRoundingKeepsOnlyTheEnginesRoundings) {
  const Graph fp32 = yolov5n();
  std::map<std::string, float> amax;
  for (const auto& tensor : qdq_activation_tensors(fp32, QdqPlacement::kAllNodes))
    amax[tensor] = 4.0f;
  auto qat = insert_qdq(fp32, QdqPlacement::kAllNodes, amax);
  ASSERT_TRUE(qat) << qat.status().message();
  ASSERT_EQ(count_op(*qat, "QuantizeLinear"), 276);  // 216 activations, 60 weights
  const Graph engine = engine_rounding(*qat);
  // 57 Conv+SiLU x 2 inside pairs, 3 heads x (input, weight).
  EXPECT_EQ(count_op(engine, "QuantizeLinear"), 276 - 114 - 6);
  EXPECT_EQ(count_op(engine, "DequantizeLinear"), 276 - 114 - 6);
  EXPECT_EQ(node_named(engine, "/model.0/act/Mul").inputs,
            (std::vector<std::string>{"/model.0/conv/Conv_output_0", "/model.0/act/Sigmoid_output_0"}));
  const Node& head = node_named(engine, "/model.24/m.0/Conv");
  EXPECT_EQ(head.inputs[1], "model.24.m.0.weight");
  EXPECT_EQ(head.inputs[0], "/model.17/cv3/act/Mul_output_0");
  // Still quantized: a conv's input from another's SiLU output, and its weight.
  const Node& conv = node_named(engine, "/model.1/conv/Conv");
  EXPECT_EQ(conv.inputs[0], "/model.1/conv/Conv/input0/DequantizeLinear_output_0");
  EXPECT_EQ(conv.inputs[1], "/model.1/conv/Conv/input1/DequantizeLinear_output_0");
  // --layerPrecisions: a named conv runs in float too.
  const Graph fp16 = engine_rounding(*qat, {"/model.23/cv3/conv/Conv"});
  EXPECT_EQ(count_op(fp16, "QuantizeLinear"), 276 - 114 - 6 - 2);
  EXPECT_EQ(node_named(fp16, "/model.23/cv3/conv/Conv").inputs[1], "model.23.cv3.conv.weight");
  auto model = QatModel::create(*trim_at_heads(engine));
  EXPECT_TRUE(model) << model.status().message();
}

// Two heads of 2 anchors x (5 + 1 class) channels on a 1 x 2 grid, checked against the
// formulas of docs/qat.md computed element by element in double.
struct DistillationCase {
  std::vector<torch::Tensor> student, teacher;
  DistillationCase() {
    torch::manual_seed(3);
    for (int64_t width : {2, 1}) {
      torch::Tensor t = torch::randn({1, 12, 1, width}, torch::kFloat64) * 3.0;
      torch::Tensor s = t + torch::randn({1, 12, 1, width}, torch::kFloat64) * 0.5;
      student.push_back(s.set_requires_grad(true));
      teacher.push_back(t.set_requires_grad(true));
    }
  }
};

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

TEST(QatDistillation, LossesAndGradientsMatchTheirFormulas) {
  for (DistillationTarget target : {DistillationTarget::kLogits, DistillationTarget::kSigmoid,
                                    DistillationTarget::kObjectness}) {
    SCOPED_TRACE(distillation_target_name(target));
    DistillationCase c;
    const torch::Tensor loss = distillation_loss(c.student, c.teacher, target, 2);
    loss.backward();
    double expected = 0.0;
    for (size_t k = 0; k < 2; ++k) {
      const auto s = c.student[k].detach(), t = c.teacher[k].detach();
      const int64_t cells = s.size(3);
      double sum = 0.0, weights = 0.0;
      std::vector<double> grad(12 * cells, 0.0);
      for (int64_t a = 0; a < 2; ++a) {
        for (int64_t x = 0; x < cells; ++x) {
          const double ws = sigmoid(s[0][a * 6 + 4][0][x].item<double>());
          const double wt = sigmoid(t[0][a * 6 + 4][0][x].item<double>());
          const double w = target == DistillationTarget::kObjectness ? std::max(ws, wt) : 1.0;
          weights += w * 6;
          for (int64_t ch = 0; ch < 6; ++ch) {
            const double u = s[0][a * 6 + ch][0][x].item<double>();
            const double v = t[0][a * 6 + ch][0][x].item<double>();
            const double d = target == DistillationTarget::kLogits ? u - v : sigmoid(u) - sigmoid(v);
            const double slope = target == DistillationTarget::kLogits
                                     ? 1.0
                                     : sigmoid(u) * (1.0 - sigmoid(u));
            sum += w * d * d;
            grad[(a * 6 + ch) * cells + x] = 2.0 * w * d * slope;  // the weight has no gradient
          }
        }
      }
      expected += sum / weights / 2.0;
      for (int64_t i = 0; i < 12 * cells; ++i) {
        EXPECT_NEAR(c.student[k].grad().flatten()[i].item<double>(), grad[i] / weights / 2.0,
                    1e-12)
            << "head " << k << " element " << i;
      }
      EXPECT_FALSE(c.teacher[k].grad().defined()) << "the teacher is a constant";
    }
    EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
  }
}

// The point of the sigmoid: a background cell whose logits differ a lot but whose
// probabilities do not is no error, while a confident cell's error still is.
TEST(QatDistillation, BackgroundLogitsNoLongerDominate) {
  // One head, one anchor, 5 + 1 channels, two cells: cell 0 background (every logit -12 in
  // the student, -9 in the teacher), cell 1 an object whose class logit is off by 0.5.
  torch::Tensor t = torch::full({1, 6, 1, 2}, -9.0, torch::kFloat64);
  torch::Tensor s = torch::full({1, 6, 1, 2}, -12.0, torch::kFloat64);
  for (int64_t ch = 0; ch < 6; ++ch) {
    t[0][ch][0][1] = 2.0;
    s[0][ch][0][1] = 2.0;
  }
  s[0][5][0][1] = 2.5;
  auto loss = [&](DistillationTarget target, const torch::Tensor& student) {
    return distillation_loss({student}, {t}, target, 1).item<double>();
  };
  torch::Tensor object_only = s.clone();
  object_only.slice(3, 0, 1).fill_(-9.0);  // the background cell as the teacher has it
  // Raw logits: the background's 3.0 per element outweighs the object's 0.5 36 times over.
  EXPECT_GT(loss(DistillationTarget::kLogits, s), 10.0 * loss(DistillationTarget::kLogits, object_only));
  for (DistillationTarget target : {DistillationTarget::kSigmoid, DistillationTarget::kObjectness}) {
    EXPECT_NEAR(loss(target, s), loss(target, object_only), 1e-3 * loss(target, object_only))
        << distillation_target_name(target);
  }
}

// The CLI end to end at 640: the QAT ONNX passes onnx.checker, runs in onnxruntime as qyolo
// runs it, and translate -> val --int8 takes it.
TEST(QatCli, ExportPassesCheckerOnnxruntimeTranslateAndVal) {
  if (!testing::have_python_oracles()) GTEST_SKIP() << "no Python oracles at " << QYOLO_PYTHON;
  const auto dir = temp_dir();
  const std::string model = (dir / "qat.onnx").string();
  auto trained = run_qyolo("qat --onnx " + yolov5n_path().string() + " --images " + calib_images() +
                           " --max-images 2 --epochs 1 --batch 2 --placement opt2 --calib-method "
                           "percentile -o " +
                           dir.string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find("epoch   1 loss"), std::string::npos) << trained.output;
  const std::string python = std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR + "/python/";
  auto checked = run_command(python + "check_onnx.py " + model);
  EXPECT_EQ(checked.exit_code, 0) << checked.output;
  auto compared = run_command(python + "compare_qat.py --qyolo " + QYOLO_BINARY + " --model " +
                              model + " --images " + calib_images() + " --count 1");
  EXPECT_EQ(compared.exit_code, 0) << compared.output;
  auto translated = run_qyolo("translate " + model + " -o " + (dir / "t").string());
  ASSERT_EQ(translated.exit_code, 0) << translated.output;
  const std::string val_dir = data_path("coco/val2017-mini").string();
  auto validated = run_qyolo(
      "val --onnx " + (dir / "t" / "qat_noqdq.onnx").string() + " --int8 --calib " +
      (dir / "t" / "qat_precision_config_calib.cache").string() + " --images " + val_dir +
      "/images --annotations " + val_dir + "/annotations/instances_val2017.json --max-images 2");
  EXPECT_EQ(validated.exit_code, 0) << validated.output;
}

TEST(QatCli, TrimmedExportAtTheDlaSize) {
  if (!testing::have_python_oracles()) GTEST_SKIP() << "no Python oracles at " << QYOLO_PYTHON;
  const auto dir = temp_dir();
  const std::string model = (dir / "trim672.onnx").string();
  auto result = run_qyolo("qat --onnx " + yolov5n_path().string() + " --images " + calib_images() +
                          " --max-images 1 --epochs 0 --imgsz 672 --trim --export " + model +
                          " -o " + dir.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto graph = load_onnx(model);
  ASSERT_TRUE(graph) << graph.status().message();
  ASSERT_EQ(graph->outputs.size(), 3u);
  EXPECT_EQ(graph->outputs[0].shape, (Shape{1, 255, 84, 84}));
  EXPECT_EQ(graph->opset(), 13);
  int weight_dq = 0;
  for (const Node& node : graph->nodes) {
    if (node.op_type == "DequantizeLinear" && node.get_int("axis", 1) == 0) ++weight_dq;
  }
  EXPECT_EQ(weight_dq, 60);
  auto checked = run_command(std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR +
                             "/python/check_onnx.py " + model);
  EXPECT_EQ(checked.exit_code, 0) << checked.output;
}

// --annotations end to end on two images (a synthetic file: the shared data has no
// training annotations), one step at a small size.
TEST(QatCli, SupervisedFineTuningRuns) {
  const auto dir = temp_dir();
  const auto images = *list_training_images(calib_images());
  std::string json = R"({"images": [)";
  for (int k = 0; k < 2; ++k) {
    json += str_cat(k ? "," : "", R"({"id": )", k + 1, R"(, "file_name": ")",
                    std::filesystem::path(images[k]).filename().string(), R"("})");
  }
  json += R"(], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 40, 200,
          300], "area": 60000, "iscrowd": 0}], "categories": [{"id": 1}]})";
  testing::write_file(dir / "instances.json", json);
  auto result = run_qyolo("qat --onnx " + yolov5n_path().string() + " --images " + calib_images() +
                          " --annotations " + (dir / "instances.json").string() +
                          " --max-images 2 --epochs 1 --batch 2 --imgsz 128 --calib-method max "
                          "--distill-weight 0.5 --trim -o " +
                          dir.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("labels    1 boxes on 1 of 2 images; loss: detection + 0.5 x "
                               "distillation"),
            std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("epoch   1 loss"), std::string::npos) << result.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "qat.onnx"));
}

TEST(QatCli, BadInputsAreOneLine) {
  const auto dir = temp_dir();
  const std::string base =
      "qat --onnx " + yolov5n_path().string() + " -o " + (dir / "out").string();
  std::filesystem::create_directories(dir / "empty");
  auto empty = run_qyolo(base + " --images " + (dir / "empty").string());
  EXPECT_EQ(empty.exit_code, 1);
  EXPECT_EQ(empty.output, "qyolo qat: error: no images (.jpg, .jpeg, .png) in " +
                              (dir / "empty").string() + "\n");
  auto cuda = run_qyolo(base + " --images " + calib_images() + " --device cuda");
  if (!qat_cuda_available()) {
    EXPECT_EQ(cuda.exit_code, 1);
    EXPECT_NE(cuda.output.find("qyolo qat: error: --device cuda: this LibTorch has no CUDA"),
              std::string::npos)
        << cuda.output;
  }
  // Annotations that name images the folder lacks, and a file that is not COCO instances.
  const auto images = *list_training_images(calib_images());
  const std::string first = std::filesystem::path(images[0]).filename().string();
  testing::write_file(dir / "missing.json",
                      R"({"images": [{"id": 1, "file_name": ")" + first +
                          R"("}, {"id": 2, "file_name": "not_here.jpg"}], "annotations": [],
                          "categories": [{"id": 1}]})");
  auto missing = run_qyolo(base + " --images " + calib_images() + " --annotations " +
                           (dir / "missing.json").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.output, "qyolo qat: error: " + (dir / "missing.json").string() +
                                ": 1 of its 2 images are not in " + calib_images() +
                                ", the first 'not_here.jpg'\n");
  testing::write_file(dir / "other.json", R"({"info": {"year": 2017}})");
  auto other = run_qyolo(base + " --images " + calib_images() + " --annotations " +
                         (dir / "other.json").string());
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_EQ(other.output, "qyolo qat: error: " + (dir / "other.json").string() +
                              ": no 'images' array: expected a COCO instances file\n");
  auto negative = run_qyolo(base + " --images " + calib_images() + " --distill-weight -1");
  EXPECT_EQ(negative.output, "qyolo qat: error: --distill-weight -1 is negative\n");
  auto nothing = run_qyolo(base + " --images " + calib_images() + " --distill-weight 0");
  EXPECT_EQ(nothing.output,
            "qyolo qat: error: --distill-weight 0 without --annotations leaves nothing to train "
            "on\n");
  auto placement = run_qyolo(base + " --images " + calib_images() + " --placement opt3");
  EXPECT_EQ(
      placement.output,
      "qyolo qat: error: --placement 'opt3': expected opt1 (TensorRT's) or opt2 (all nodes)\n");
  auto student = run_qyolo(base + " --images " + calib_images() + " --student int8");
  EXPECT_EQ(student.output,
            "qyolo qat: error: --student 'int8': expected engine (rounds where the INT8 engine "
            "does) or qdq (at every Q/DQ)\n");
  auto distill_on = run_qyolo(base + " --images " + calib_images() + " --distill-on probs");
  EXPECT_EQ(distill_on.output,
            "qyolo qat: error: --distill-on 'probs': expected logits, sigmoid or objectness\n");
}

}  // namespace
}  // namespace qyolo
