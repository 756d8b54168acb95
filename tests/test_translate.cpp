// The Q/DQ translator: each of NVIDIA's rules on a small graph built here, every bad QAT
// input, the output files byte for byte, and yolov5n end to end in both of NVIDIA's Q/DQ
// placements (made by qyolo's insertion pass, checked by onnx.checker and onnxruntime).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "qyolo/executor.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::run_command;
using testing::run_qyolo;
using testing::temp_dir;

// Builds small graphs node by node; shapes are left out (the translator needs none).
struct GraphBuilder {
  Graph g;
  int counter = 0;

  GraphBuilder() { g.opset_imports = {{"", 13}}; }
  void input(const std::string& name) {
    ValueInfo v;
    v.name = name;
    v.dtype = DType::kFloat32;
    g.inputs.push_back(v);
  }
  void output(const std::string& name) {
    ValueInfo v;
    v.name = name;
    v.dtype = DType::kFloat32;
    g.outputs.push_back(v);
  }
  Node& node(const std::string& op, const std::string& name, std::vector<std::string> inputs,
             std::vector<std::string> outputs) {
    Node n;
    n.op_type = op;
    n.name = name;
    n.inputs = std::move(inputs);
    n.outputs = std::move(outputs);
    g.nodes.push_back(n);
    return g.nodes.back();
  }
  // value -> Q -> DQ, returning the DQ output. Separate scale tensors for Q and DQ.
  std::string qdq(const std::string& value, float q_scale, float dq_scale = 0.0f, int8_t zero = 0,
                  int64_t axis = -1, std::vector<float> channel_scales = {}) {
    const std::string tag = "qdq" + std::to_string(counter++);
    Tensor qs = channel_scales.empty() ? Tensor::from_vector(std::vector<float>{q_scale}, {})
                                       : Tensor::from_vector(channel_scales);
    Tensor ds = qs;
    if (dq_scale != 0.0f) ds = Tensor::from_vector(std::vector<float>{dq_scale}, {});
    Tensor zp(DType::kInt8, qs.shape());
    zp.data<int8_t>()[0] = zero;
    g.initializers[tag + "/qs"] = qs;
    g.initializers[tag + "/ds"] = ds;
    g.initializers[tag + "/zp"] = zp;
    Node& q = node("QuantizeLinear", tag + "/Q", {value, tag + "/qs", tag + "/zp"}, {tag + "/q"});
    if (axis >= 0) q.attributes["axis"] = Attribute::of_int(axis);
    Node& dq = node("DequantizeLinear", tag + "/DQ", {tag + "/q", tag + "/ds", tag + "/zp"},
                    {tag + "/dq"});
    if (axis >= 0) dq.attributes["axis"] = Attribute::of_int(axis);
    return tag + "/dq";
  }
  // A Conv with a 2x1x1x1 weight whose per-channel Q/DQ has max|w|/127 scales.
  void conv(const std::string& name, const std::string& x, const std::string& y,
            std::vector<float> weights = {1.27f, -2.54f}) {
    const std::string w = name + ".weight";
    g.initializers[w] = Tensor::from_vector(weights, {2, 1, 1, 1});
    std::vector<float> scales;
    for (float v : weights) scales.push_back(std::fabs(v) / 127.0f);
    const std::string wq = qdq(w, 0.0f, 0.0f, 0, 0, scales);
    node("Conv", name, {x, wq}, {y});
  }
};

std::vector<std::string> keys(const Translation& t) {
  std::vector<std::string> out;
  for (const auto& s : t.scales) out.push_back(s.tensor);
  return out;
}

double scale(const Translation& t, const std::string& tensor) {
  for (const auto& s : t.scales) {
    if (s.tensor == tensor) return s.scale;
  }
  ADD_FAILURE() << "no scale for " << tensor;
  return 0.0;
}

bool has_scale(const Translation& t, const std::string& tensor) {
  for (const auto& s : t.scales) {
    if (s.tensor == tensor) return true;
  }
  return false;
}

Translation translate_ok(const Graph& g, const TranslateOptions& options = {}) {
  auto t = translate_qdq(g, options);
  EXPECT_TRUE(t) << t.status().message();
  return t ? std::move(t).value() : Translation{};
}

void expect_error(const Graph& g, const std::string& needle, const TranslateOptions& options = {}) {
  auto t = translate_qdq(g, options);
  ASSERT_FALSE(t) << "expected an error containing '" << needle << "'";
  EXPECT_NE(t.status().message().find(needle), std::string::npos)
      << "expected '" << needle << "' in: " << t.status().message();
}

TranslateOptions nvidia_yolo_flags() {
  TranslateOptions options;
  options.infer_concat_scales = true;
  options.infer_mul_scales = true;
  return options;
}

// ---------------------------------------------------------------------------------------
// Extraction.

TEST(Translate, RecordsActivationScalesAndRemovesQdq) {
  GraphBuilder b;
  b.input("images");
  b.conv("conv", b.qdq("images", 0.0078721f), "c");
  b.node("Tanh", "relu", {b.qdq("c", 0.05f)}, {"y"});
  b.output("y");
  const Translation t = translate_ok(b.g);
  EXPECT_EQ(keys(t), (std::vector<std::string>{"images", "c"}));
  EXPECT_FLOAT_EQ(scale(t, "images"), 0.0078721f);
  EXPECT_EQ(t.activation_qdq, 2);
  EXPECT_EQ(t.weight_qdq, 1);
  ASSERT_EQ(t.graph.nodes.size(), 2u);
  EXPECT_EQ(t.graph.nodes[0].inputs, (std::vector<std::string>{"images", "conv.weight"}));
  EXPECT_EQ(t.graph.nodes[1].inputs, (std::vector<std::string>{"c"}));
  // Only the weight survives of the initializers: scales and zero points went with the Q/DQ.
  ASSERT_EQ(t.graph.initializers.size(), 1u);
  EXPECT_EQ(t.graph.initializers.begin()->first, "conv.weight");
  EXPECT_TRUE(t.fp16_nodes.empty());
}

TEST(Translate, LastQuantizerWinsFirstSetsThePosition) {
  GraphBuilder b;
  b.input("a");
  b.input("b");
  b.node("Tanh", "r1", {b.qdq("a", 0.1f)}, {"y1"});
  b.node("Tanh", "r2", {b.qdq("b", 0.3f)}, {"y2"});
  b.node("Tanh", "r3", {b.qdq("a", 0.2f)}, {"y3"});
  for (const char* y : {"y1", "y2", "y3"}) b.output(y);
  const Translation t = translate_ok(b.g);
  EXPECT_EQ(keys(t), (std::vector<std::string>{"a", "b"}));
  EXPECT_FLOAT_EQ(scale(t, "a"), 0.2f);
}

TEST(Translate, NodeOrderIsDepthFromTheInputsNotFileOrder) {
  GraphBuilder b;
  b.input("a");
  b.input("b");
  b.node("Tanh", "deep1", {"a"}, {"t1"});
  b.node("Tanh", "deep2", {"t1"}, {"t2"});
  b.node("Tanh", "r1", {b.qdq("t2", 0.1f)}, {"y1"});
  b.node("Tanh", "r2", {b.qdq("b", 0.3f)}, {"y2"});  // later in the file, shallower
  b.output("y1");
  b.output("y2");
  const Translation t = translate_ok(b.g);
  EXPECT_EQ(keys(t), (std::vector<std::string>{"b", "t2"}));
  // The graph keeps its file order.
  EXPECT_EQ(t.graph.nodes[0].name, "deep1");
}

TEST(Translate, DequantizedGraphOutputKeepsItsName) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "relu", {"x"}, {"y"});
  const std::string dq = b.qdq("y", 0.25f);
  b.output(dq);
  const Translation t = translate_ok(b.g);
  EXPECT_EQ(keys(t), (std::vector<std::string>{"y", dq}));
  ASSERT_EQ(t.graph.nodes.size(), 1u);
  EXPECT_EQ(t.graph.nodes[0].outputs[0], dq);
  EXPECT_EQ(t.graph.outputs[0].name, dq);
}

TEST(Translate, WeightScalesAreCheckedForMaxCalibration) {
  GraphBuilder b;
  b.input("x");
  const std::string w = "conv.weight";
  b.g.initializers[w] = Tensor::from_vector(std::vector<float>{1.27f, -2.54f}, {2, 1, 1, 1});
  const std::string wq = b.qdq(w, 0.0f, 0.0f, 0, 0, {0.01f, 0.05f});  // channel 1 should be 0.02
  b.node("Conv", "the_conv", {b.qdq("x", 0.1f), wq}, {"y"});
  b.output("y");
  expect_error(b.g, "Conv 'the_conv': weight 'conv.weight' channel 1 has scale");
  TranslateOptions hist;
  hist.check_weight_scales = false;
  const Translation t = translate_ok(b.g, hist);
  EXPECT_EQ(t.graph.nodes[0].inputs[1], w);
}

TEST(Translate, InferAllClampsWeightsToTheQatRange) {
  GraphBuilder b;
  b.input("x");
  const std::string w = "conv.weight";
  b.g.initializers[w] = Tensor::from_vector(std::vector<float>{1.27f, -2.54f}, {2, 1, 1, 1});
  const std::string wq = b.qdq(w, 0.0f, 0.0f, 0, 0, {0.01f, 0.01f});
  b.node("Conv", "conv", {b.qdq("x", 0.1f), wq}, {"y"});
  b.output("y");
  TranslateOptions options;
  options.check_weight_scales = false;
  options.infer_all = true;
  const Translation t = translate_ok(b.g, options);
  const float* clamped = t.graph.initializers.at(w).data<float>();
  EXPECT_FLOAT_EQ(clamped[0], 1.27f);
  EXPECT_FLOAT_EQ(clamped[1], -1.27f);
  options.infer_all = false;
  EXPECT_FLOAT_EQ(translate_ok(b.g, options).graph.initializers.at(w).data<float>()[1], -2.54f);
}

// ---------------------------------------------------------------------------------------
// Bad QAT models: each a clear error naming the node.

TEST(Translate, NonZeroZeroPointNamesTheNode) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", 0.1f, 0.0f, 3)}, {"y"});
  b.output("y");
  expect_error(b.g, "QuantizeLinear 'qdq0/Q': zero point 'qdq0/zp' is 3");
}

TEST(Translate, ZeroPointMustBeInt8) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", 0.1f)}, {"y"});
  b.output("y");
  Graph uint8_zp = b.g;
  uint8_zp.initializers["qdq0/zp"] = Tensor(DType::kUInt8, {});
  expect_error(uint8_zp, "QuantizeLinear 'qdq0/Q': zero point 'qdq0/zp' is uint8");
  Graph no_zp = b.g;
  no_zp.nodes[0].inputs.resize(2);
  expect_error(no_zp, "QuantizeLinear 'qdq0/Q': has no zero point");
}

TEST(Translate, MismatchedQdqScalesNameBothNodes) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", 0.1f, 0.2f)}, {"y"});
  b.output("y");
  expect_error(b.g, "QuantizeLinear 'qdq0/Q' and DequantizeLinear 'qdq0/DQ' must share one scale");
}

TEST(Translate, QuantizeMustFeedOneDequantize) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", 0.1f)}, {"y"});
  b.node("Tanh", "r2", {"qdq0/q"}, {"z"});
  b.output("y");
  b.output("z");
  expect_error(b.g,
               "QuantizeLinear 'qdq0/Q': its output must feed exactly one DequantizeLinear, but "
               "feeds 2 nodes");
}

TEST(Translate, BadScalesAndPerChannelActivations) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", -0.1f)}, {"y"});
  b.output("y");
  expect_error(b.g, "QuantizeLinear 'qdq0/Q': scale 'qdq0/qs' holds -0.1");

  GraphBuilder c;
  c.input("x");
  c.node("Tanh", "r", {c.qdq("x", 0.0f, 0.0f, 0, 1, {0.1f, 0.2f})}, {"y"});
  c.output("y");
  expect_error(c.g, "activation 'x' has 2 scales");

  GraphBuilder d;
  d.input("x");
  d.node("Tanh", "r", {"x"}, {"y"});
  d.node("Tanh", "r2", {d.qdq("y", 0.1f)}, {"z"});
  d.output("z");
  d.g.nodes[1].inputs[1] = "y";  // a scale computed at run time
  expect_error(d.g, "QuantizeLinear 'qdq0/Q': scale 'y' is not a constant");
}

TEST(Translate, DequantizeWithoutQuantizeIsRejected) {
  GraphBuilder b;
  b.input("x");
  b.g.initializers["w8"] = Tensor(DType::kInt8, {2, 1, 1, 1});
  b.g.initializers["s"] = Tensor::from_vector(std::vector<float>{0.1f}, {});
  b.node("DequantizeLinear", "dq_weight", {"w8", "s"}, {"w"});
  b.node("Conv", "conv", {"x", "w"}, {"y"});
  b.output("y");
  expect_error(b.g, "DequantizeLinear 'dq_weight': is not fed by a QuantizeLinear");
}

// ---------------------------------------------------------------------------------------
// Inference rules.

TEST(Translate, GenericOpsCarryScalesForwardThenBackward) {
  GraphBuilder b;
  b.input("x");
  b.node("MaxPool", "pool", {b.qdq("x", 0.1f)}, {"m"});
  b.node("Reshape", "reshape", {"m", "shape"}, {"r"});
  b.g.initializers["shape"] = Tensor::from_vector(std::vector<int64_t>{-1});
  b.node("Tanh", "tanh", {"r"}, {"t"});  // not in NVIDIA's op set
  b.node("Transpose", "tr", {"t"}, {"u"});
  b.node("Conv", "conv", {b.qdq("u", 0.4f), "w"}, {"y"});
  b.g.initializers["w"] = Tensor::from_vector(std::vector<float>{1}, {1, 1, 1, 1});
  b.output("y");
  const Translation t = translate_ok(b.g);
  // Forward: m and r from x. Backward: t from u. Tanh stops both ways.
  EXPECT_EQ(keys(t), (std::vector<std::string>{"x", "u", "m", "r", "t"}));
  EXPECT_FLOAT_EQ(scale(t, "r"), 0.1f);
  EXPECT_FLOAT_EQ(scale(t, "t"), 0.4f);
  EXPECT_EQ(t.inferred, 3);
  EXPECT_TRUE(t.fp16_nodes.empty());
}

TEST(Translate, ConcatTakesTheLargestInputScaleOverItsOwn) {
  GraphBuilder b;
  b.input("a");
  b.input("b");
  b.node("Tanh", "ra", {b.qdq("a", 0.1f)}, {"a1"});
  b.node("Tanh", "rb", {b.qdq("b", 0.3f)}, {"b1"});
  b.node("Tanh", "qa", {b.qdq("a1", 0.1f)}, {"a2"});
  b.node("Tanh", "qb", {b.qdq("b1", 0.3f)}, {"b2"});
  b.node("Concat", "cat", {"a1", "b1"}, {"c"});
  b.node("Tanh", "rc", {b.qdq("c", 0.2f)}, {"y"});
  for (const char* y : {"a2", "b2", "y"}) b.output(y);
  const Translation plain = translate_ok(b.g);
  EXPECT_FLOAT_EQ(scale(plain, "c"), 0.2f);
  EXPECT_EQ(plain.fp16_nodes, std::vector<std::string>{});
  const Translation t = translate_ok(b.g, nvidia_yolo_flags());
  EXPECT_EQ(keys(t), keys(plain));  // overwritten in place
  EXPECT_FLOAT_EQ(scale(t, "c"), 0.3f);
}

TEST(Translate, ConcatBackwardOnlyWhenInputZeroIsUnknown) {
  GraphBuilder b;
  b.input("a");
  b.input("b");
  b.node("Tanh", "ra", {"a"}, {"a1"});
  b.node("Tanh", "rb", {"b"}, {"b1"});
  b.node("Concat", "cat", {"a1", "b1"}, {"c"});
  b.node("Tanh", "rc", {b.qdq("c", 0.2f)}, {"y"});
  b.output("y");
  const Translation t = translate_ok(b.g, nvidia_yolo_flags());
  EXPECT_EQ(keys(t), (std::vector<std::string>{"c", "a1", "b1"}));
  EXPECT_FLOAT_EQ(scale(t, "a1"), 0.2f);
  EXPECT_FLOAT_EQ(scale(t, "b1"), 0.2f);

  // Input 0 known (through a separate Q/DQ), input 1 unknown: the forward rule overwrites
  // the output with the only known input's scale, and the backward rule does nothing.
  GraphBuilder k;
  k.input("a");
  k.input("b");
  k.node("Tanh", "ra", {"a"}, {"a1"});
  k.node("Tanh", "qa", {k.qdq("a1", 0.5f)}, {"a2"});
  k.node("Tanh", "rb", {"b"}, {"b1"});
  k.node("Concat", "cat", {"a1", "b1"}, {"c"});
  k.node("Tanh", "rc", {k.qdq("c", 0.2f)}, {"y"});
  k.output("a2");
  k.output("y");
  const Translation t2 = translate_ok(k.g, nvidia_yolo_flags());
  EXPECT_FLOAT_EQ(scale(t2, "c"), 0.5f);
  EXPECT_FALSE(has_scale(t2, "b1"));
  EXPECT_EQ(t2.fp16_nodes, (std::vector<std::string>{"ra", "rb", "cat"}));
}

TEST(Translate, MulForwardCopiesInputZeroAndBackwardDividesByInputOne) {
  GraphBuilder b;
  b.input("a");
  b.input("b");
  b.node("Mul", "mul", {b.qdq("a", 0.1f), b.qdq("b", 0.3f)}, {"m"});
  b.output("m");
  const Translation t = translate_ok(b.g, nvidia_yolo_flags());
  // Not the product 127 * 0.1 * 0.3: a copy of input 0's scale.
  EXPECT_FLOAT_EQ(scale(t, "m"), 0.1f);

  GraphBuilder k;
  k.input("a");
  k.input("b");
  k.node("Tanh", "ta", {"a"}, {"a1"});
  k.node("Mul", "mul", {"a1", k.qdq("b", 0.25f)}, {"m"});
  k.node("Tanh", "tm", {k.qdq("m", 0.5f)}, {"y"});
  k.output("y");
  const Translation t2 = translate_ok(k.g, nvidia_yolo_flags());
  EXPECT_DOUBLE_EQ(scale(t2, "a1"), 0.5 / static_cast<double>(0.25f) / 127.0);
  EXPECT_EQ(translate_ok(k.g).fp16_nodes, (std::vector<std::string>{"ta", "mul"}));

  // Input 1 unknown too: nothing to solve for.
  GraphBuilder u;
  u.input("a");
  u.input("b");
  u.node("Mul", "mul", {"a", "b"}, {"m"});
  u.node("Tanh", "tm", {u.qdq("m", 0.5f)}, {"y"});
  u.output("y");
  EXPECT_EQ(keys(translate_ok(u.g, nvidia_yolo_flags())), std::vector<std::string>{"m"});
}

// Conv -> Sigmoid -> Mul(conv, sigmoid): a SiLU whose output has a Q/DQ, as in Option 1.
GraphBuilder silu_graph() {
  GraphBuilder b;
  b.input("x");
  b.conv("conv", b.qdq("x", 0.1f), "c");
  b.node("Sigmoid", "sig", {"c"}, {"s"});
  b.node("Mul", "mul", {"c", "s"}, {"m"});
  b.conv("next", b.qdq("m", 0.05f), "y");
  b.output("y");
  return b;
}

TEST(Translate, SiluSigmoidGetsUnitScaleAndConvOutputTheMulOutputs) {
  const Translation t = translate_ok(silu_graph().g, nvidia_yolo_flags());
  EXPECT_EQ(keys(t), (std::vector<std::string>{"x", "m", "s", "c"}));
  EXPECT_DOUBLE_EQ(scale(t, "s"), 1.0 / 127.0);
  EXPECT_NEAR(scale(t, "c"), 0.05, 1e-9);
  EXPECT_EQ(static_cast<float>(scale(t, "c")), 0.05f);
  EXPECT_TRUE(t.fp16_nodes.empty());
  // Without --infer-mul-scales the SiLU stays FP16: the Conv output's and the Sigmoid's readers.
  const Translation plain = translate_ok(silu_graph().g);
  EXPECT_EQ(plain.fp16_nodes, (std::vector<std::string>{"sig", "mul", "mul"}));
}

TEST(Translate, SigmoidScaleMulOutputReproducesTheShippedCache) {
  TranslateOptions options = nvidia_yolo_flags();
  options.sigmoid_scale = SigmoidScale::kMulOutput;
  const Translation t = translate_ok(silu_graph().g, options);
  // As in yolov5s_qat2ptq.cache: Conv output, then Sigmoid output, both the Mul's scale.
  EXPECT_EQ(keys(t), (std::vector<std::string>{"x", "m", "c", "s"}));
  EXPECT_EQ(static_cast<float>(scale(t, "s")), 0.05f);
  EXPECT_EQ(static_cast<float>(scale(t, "c")), 0.05f);

  // A Concat without input scales hands its own over in the forward pass, so those lines
  // come before the backward pass's.
  GraphBuilder b;
  b.input("a");
  b.node("Tanh", "t0", {"a"}, {"a0"});
  b.node("Tanh", "t1", {"a"}, {"a1"});
  b.node("Concat", "cat", {"a0", "a1"}, {"c"});
  b.node("Tanh", "t2", {b.qdq("c", 0.2f)}, {"v"});
  b.node("Transpose", "tr", {"v"}, {"u"});
  b.node("Tanh", "t3", {b.qdq("u", 0.5f)}, {"y"});
  b.output("y");
  EXPECT_EQ(keys(translate_ok(b.g, nvidia_yolo_flags())),
            (std::vector<std::string>{"c", "u", "v", "a0", "a1"}));
  EXPECT_EQ(keys(translate_ok(b.g, options)),
            (std::vector<std::string>{"c", "u", "a0", "a1", "v"}));
}

TEST(Translate, SigmoidRuleLooksAtTheFirstConsumerOnly) {
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", 0.1f)}, {"c"});
  b.node("Sigmoid", "sig", {"c"}, {"s"});
  b.node("Tanh", "first", {"s"}, {"s1"});
  b.node("Mul", "mul", {"c", "s"}, {"m"});
  b.output("s1");
  b.output("m");
  const Translation t = translate_ok(b.g, nvidia_yolo_flags());
  EXPECT_FALSE(has_scale(t, "s"));
}

TEST(Translate, SigmoidBackwardInvertsTheOutputRange) {
  auto graph = [](float output_scale) {
    GraphBuilder b;
    b.input("x");
    b.node("Tanh", "r", {"x"}, {"t"});
    b.node("Sigmoid", "sig", {"t"}, {"s"});
    b.node("Tanh", "r2", {b.qdq("s", output_scale)}, {"y"});
    b.output("y");
    return b.g;
  };
  const Translation t = translate_ok(graph(0.75f / 127.0f));
  const double y = static_cast<double>(0.75f / 127.0f) * 127.0;
  EXPECT_DOUBLE_EQ(scale(t, "t"), std::log(y / (1.0 - y)) / 127.0);
  EXPECT_TRUE(t.warnings.empty());
  // y >= 1 divides by zero or takes the log of a negative number in NVIDIA's code, and
  // y <= 0.5 gives a scale <= 0: here a warning, and the input stays without a scale.
  for (float bad : {1.0f / 127.0f + 1e-6f, 1.5f / 127.0f, 0.3f / 127.0f, 0.5f / 127.0f}) {
    const Translation w = translate_ok(graph(bad));
    EXPECT_FALSE(has_scale(w, "t")) << bad;
    ASSERT_EQ(w.warnings.size(), 1u) << bad;
    EXPECT_NE(w.warnings[0].find("Sigmoid 'sig'"), std::string::npos) << w.warnings[0];
    EXPECT_NE(w.warnings[0].find("input 't' is left without a scale"), std::string::npos);
  }
}

TEST(Translate, AddAndResizeOnlyWhenNamed) {
  GraphBuilder b;
  b.input("a");
  b.input("b");
  b.node("Add", "add", {b.qdq("a", 0.1f), b.qdq("b", 0.2f)}, {"s"});
  b.node("Resize", "up", {"s", "", "scales"}, {"u"});
  b.g.initializers["scales"] = Tensor::from_vector(std::vector<float>{1, 1, 2, 2});
  b.output("u");
  EXPECT_FALSE(has_scale(translate_ok(b.g), "s"));
  TranslateOptions options;
  options.extra_ops = {"Add", "Resize"};
  const Translation t = translate_ok(b.g, options);
  EXPECT_FLOAT_EQ(scale(t, "s"), 0.1f);  // input 0's, whatever input 1 has
  EXPECT_FLOAT_EQ(scale(t, "u"), 0.1f);
}

TEST(Translate, AveragePoolScalesOnlyWhenAsked) {
  GraphBuilder b;
  b.input("x");
  b.node("GlobalAveragePool", "gap", {b.qdq("x", 0.1f)}, {"g"});
  b.node("ReduceMean", "mean", {"g"}, {"r"});
  b.output("r");
  EXPECT_FALSE(has_scale(translate_ok(b.g), "g"));
  TranslateOptions options;
  options.infer_average_pool_scales = true;
  const Translation t = translate_ok(b.g, options);
  EXPECT_FLOAT_EQ(scale(t, "g"), 0.1f);
  EXPECT_FLOAT_EQ(scale(t, "r"), 0.1f);
}

TEST(Translate, UnaryScalesForConvAddFusionOnTheDla) {
  GraphBuilder b;
  b.input("x");
  b.conv("conv", b.qdq("x", 0.1f), "c");
  b.node("Tanh", "other", {"x"}, {"o"});
  b.node("Add", "add", {"c", "o"}, {"y"});
  b.output("y");
  TranslateOptions options;
  options.add_unary_ew_scales_for_dla = true;
  const Translation t = translate_ok(b.g, options);
  EXPECT_DOUBLE_EQ(scale(t, "c"), 1.0);
  EXPECT_EQ(t.scales.back().source, ScaleSource::kUnaryDla);
  // o has no scale: its reader falls back; c's does not.
  EXPECT_EQ(t.fp16_nodes, std::vector<std::string>{"add"});
  EXPECT_EQ(translate_ok(b.g).fp16_nodes, (std::vector<std::string>{"add", "add"}));
}

TEST(Translate, Fp16ListKeepsRepeatsAndMissesLaterOutputs) {
  GraphBuilder b;
  b.input("x");
  b.node("Split", "split", {"x"}, {"p0", "p1"});
  b.node("Tanh", "r0", {"p0"}, {"y0"});
  b.node("Tanh", "r1", {"p1"}, {"y1"});
  b.node("Mul", "square", {"y1", "y1"}, {"sq"});
  b.output("y0");
  b.output("sq");
  const Translation t = translate_ok(b.g);
  // x -> split; p0 -> r0; p1 (a second output) missed; y0 none; y1 -> square twice; sq none.
  EXPECT_EQ(t.fp16_nodes, (std::vector<std::string>{"split", "r0", "square", "square"}));
  TranslateOptions all;
  all.infer_all = true;
  const Translation complete = translate_ok(b.g, all);
  EXPECT_EQ(complete.fp16_nodes, (std::vector<std::string>{"split", "r0", "r1", "square"}));
  // The report names every unscaled value, second outputs included.
  std::set<std::string> unscaled;
  for (const auto& u : t.unscaled) unscaled.insert(u.tensor);
  EXPECT_EQ(unscaled, (std::set<std::string>{"x", "p0", "p1", "y0", "y1", "sq"}));
  EXPECT_EQ(t.unscaled[0].reason, "graph input without a Q/DQ");
}

TEST(Translate, InferAllCarriesScalesThroughSplitAndSlice) {
  GraphBuilder b;
  b.input("x");
  b.node("Split", "split", {b.qdq("x", 0.1f)}, {"p0", "p1"});
  b.node("Slice", "slice", {"p1", "starts", "ends"}, {"s"});
  b.g.initializers["starts"] = Tensor::from_vector(std::vector<int64_t>{0});
  b.g.initializers["ends"] = Tensor::from_vector(std::vector<int64_t>{1});
  b.output("p0");
  b.output("s");
  TranslateOptions all;
  all.infer_all = true;
  const Translation t = translate_ok(b.g, all);
  EXPECT_FLOAT_EQ(scale(t, "p1"), 0.1f);
  EXPECT_FLOAT_EQ(scale(t, "s"), 0.1f);
  EXPECT_FALSE(has_scale(translate_ok(b.g), "p1"));
}

TEST(Translate, RenameNodeOutputs) {
  GraphBuilder b;
  b.input("x");
  b.node("MaxPool", "pool", {b.qdq("x", 0.1f)}, {"y"});
  b.node("Tanh", "tanh", {"y"}, {"z"});
  b.output("z");
  TranslateOptions options;
  options.rename_node_outputs = true;
  const Translation t = translate_ok(b.g, options);
  EXPECT_EQ(t.graph.nodes[0].outputs[0], "pool");
  EXPECT_EQ(t.graph.nodes[1].inputs[0], "pool");
  EXPECT_EQ(t.graph.outputs[0].name, "tanh");
  EXPECT_EQ(keys(t), (std::vector<std::string>{"x", "pool"}));
}

// ---------------------------------------------------------------------------------------
// Output files.

TEST(Translate, PythonFloatRepr) {
  EXPECT_EQ(python_float_repr(static_cast<double>(0.0078721f)), "0.007872099988162518");
  EXPECT_EQ(python_float_repr(1e-05), "1e-05");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(123.0), "123.0");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(1.5e-07), "1.5e-07");
  EXPECT_EQ(python_float_repr(1.0 / 127.0), "0.007874015748031496");
  EXPECT_EQ(python_float_repr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(python_float_repr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(python_float_repr(12345678901234567.0), "1.2345678901234568e+16");
  EXPECT_EQ(python_float_repr(-2.5e-300), "-2.5e-300");
  EXPECT_EQ(python_float_repr(5e-324), "5e-324");
}

TEST(Translate, FilesAsNvidiasPythonWritesThem) {
  Translation t;
  t.scales = {{"images", static_cast<double>(0.0078721f), ScaleSource::kQdq},
              {"a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80\x7f", 1.0, ScaleSource::kUnaryDla}};
  t.fp16_nodes = {"/model.24/m.0/Conv", "/model.24/m.0/Conv"};
  EXPECT_EQ(
      precision_config_json(t),
      "{\n    \"int8_tensor_scales\": {\n        \"images\": 0.007872099988162518,\n"
      "        \"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\\u007f\": 1.0\n    },\n"
      "    \"fp16_nodes\": [\n        \"/model.24/m.0/Conv\",\n        \"/model.24/m.0/Conv\"\n"
      "    ]\n}");
  EXPECT_EQ(layer_precisions_arg(t), "/model.24/m.0/Conv:fp16,/model.24/m.0/Conv:fp16,");
  EXPECT_EQ(precision_config_json(Translation{}),
            "{\n    \"int8_tensor_scales\": {},\n    \"fp16_nodes\": []\n}");
  t.scales.pop_back();
  auto cache = translation_cache(t, "8510");
  ASSERT_TRUE(cache);
  EXPECT_EQ(*format_calibration_cache(*cache), "TRT-8510-EntropyCalibration2\nimages: 3c00f9fb\n");
  const TranslationFiles files = translation_files("out", "yolov5n_qat");
  EXPECT_EQ(files.onnx, "out/yolov5n_qat_noqdq.onnx");
  EXPECT_EQ(files.cache, "out/yolov5n_qat_precision_config_calib.cache");
  EXPECT_EQ(files.json, "out/yolov5n_qat_precision_config.json");
  EXPECT_EQ(files.layer_arg, "out/yolov5n_qat_precision_config_layer_arg.txt");
}

// ---------------------------------------------------------------------------------------
// Q/DQ insertion on a small graph.

TEST(InsertQdq, PlacementsOnASmallGraph) {
  // x -> conv1 -> a; a -> conv2 -> b; add(a, b) -> s; concat(s, a) -> c; conv3(c); conv4(a).
  GraphBuilder b;
  b.input("x");
  for (const char* w : {"w1", "w2", "w3", "w4"}) {
    b.g.initializers[w] = Tensor::from_vector(std::vector<float>{0.5f, -1.0f}, {2, 1, 1, 1});
  }
  b.node("Conv", "conv1", {"x", "w1"}, {"a"});
  b.node("Conv", "conv2", {"a", "w2"}, {"b"});
  b.node("Add", "add", {"a", "b"}, {"s"});
  b.node("Concat", "cat", {"s", "a"}, {"c"});
  b.node("Conv", "conv3", {"c", "w3"}, {"y"});
  b.node("Conv", "conv4", {"a", "w4"}, {"z"});
  b.output("y");
  b.output("z");
  const std::map<std::string, float> ranges = {
      {"x", 1.0f}, {"a", 2.0f}, {"b", 4.0f}, {"s", 5.0f}, {"c", 6.0f}};
  EXPECT_EQ(qdq_activation_tensors(b.g, QdqPlacement::kTensorRT),
            (std::vector<std::string>{"x", "a", "b", "c"}));
  auto qat = insert_qdq(b.g, QdqPlacement::kTensorRT, ranges);
  ASSERT_TRUE(qat) << qat.status().message();
  // Shared: conv2's input quantizer and the Add's (rules.py: addop <- cv1); conv3 (reads the
  // Concat) with conv2 and conv4 (read a Concat input): all one range, max(a, b, c) = 6.
  const Translation t = translate_ok(*qat);
  EXPECT_EQ(keys(t), (std::vector<std::string>{"x", "a", "b", "c"}));
  EXPECT_FLOAT_EQ(scale(t, "x"), 1.0f / 127.0f);
  for (const char* v : {"a", "b", "c"}) EXPECT_FLOAT_EQ(scale(t, v), 6.0f / 127.0f) << v;
  EXPECT_EQ(t.weight_qdq, 4);
  EXPECT_EQ(t.activation_qdq, 6);  // conv1..4 inputs, the Add's two
  EXPECT_EQ(t.graph.nodes, b.g.nodes);

  EXPECT_EQ(qdq_activation_tensors(b.g, QdqPlacement::kAllNodes),
            (std::vector<std::string>{"x", "a", "b", "s", "c"}));
  auto all = insert_qdq(b.g, QdqPlacement::kAllNodes, ranges);
  ASSERT_TRUE(all) << all.status().message();
  const Translation t2 = translate_ok(*all);
  // Four quantizers read `a`: conv2's (2), the Add's (max(a, b) = 4), the Concat's
  // (max(s, a) = 5) and conv4's (2). conv4's comes last, so it wins.
  EXPECT_FLOAT_EQ(scale(t2, "b"), 4.0f / 127.0f);
  EXPECT_FLOAT_EQ(scale(t2, "s"), 5.0f / 127.0f);
  EXPECT_FLOAT_EQ(scale(t2, "a"), 2.0f / 127.0f);
  EXPECT_EQ(t2.graph.nodes, b.g.nodes);

  auto missing = insert_qdq(b.g, QdqPlacement::kTensorRT, {{"x", 1.0f}});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("no range for 'a'"), std::string::npos);
}

TEST(InsertQdq, UpgradesToOpset13) {
  GraphBuilder b;
  b.g.opset_imports = {{"", 12}};
  b.input("x");
  Node& split = b.node("Split", "split", {"x"}, {"p", "q"});
  split.attributes["split"] = Attribute::of_ints({1, 2});
  split.attributes["axis"] = Attribute::of_int(1);
  b.node("Squeeze", "sq", {"p"}, {"y"}).attributes["axes"] = Attribute::of_ints({1});
  b.output("y");
  b.output("q");
  auto up = upgrade_to_opset13(b.g);
  ASSERT_TRUE(up) << up.status().message();
  EXPECT_EQ(up->opset(), 13);
  EXPECT_EQ(up->nodes[0].inputs, (std::vector<std::string>{"x", "split/split"}));
  EXPECT_FALSE(up->nodes[0].has_attribute("split"));
  EXPECT_TRUE(up->nodes[0].has_attribute("axis"));
  EXPECT_EQ(up->initializers.at("split/split").to_int64(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(up->nodes[1].inputs, (std::vector<std::string>{"p", "sq/axes"}));
}

// ---------------------------------------------------------------------------------------
// yolov5n end to end.

struct Yolov5nQat {
  Graph float13;                        // yolov5n at opset 13
  std::map<std::string, float> ranges;  // max |x| over real images
};

// Letterboxed calibration images (never validation images) through the FP32 executor.
const Yolov5nQat& yolov5n_qat() {
  static const Yolov5nQat model = [] {
    Yolov5nQat m;
    auto graph = load_onnx(testing::yolov5n_path().string());
    EXPECT_TRUE(graph) << graph.status().message();
    auto up = upgrade_to_opset13(*graph);
    EXPECT_TRUE(up) << up.status().message();
    m.float13 = *up;
    std::vector<std::map<std::string, Tensor>> batches;
    const auto dir = data_path("coco/calib2017/images");
    std::vector<std::filesystem::path> images;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      images.push_back(entry.path());
    std::sort(images.begin(), images.end());
    for (size_t i = 0; i < 2 && i < images.size(); ++i) {
      auto image = read_image(images[i].string());
      EXPECT_TRUE(image) << image.status().message();
      Letterbox placement;
      Tensor batch(DType::kFloat32, {1, 3, 640, 640});
      image_to_tensor(letterbox(*image, 640, 640, &placement), batch, 0);
      batches.push_back({{"images", std::move(batch)}});
    }
    std::vector<std::string> tensors = qdq_activation_tensors(m.float13, QdqPlacement::kTensorRT);
    for (const auto& t : qdq_activation_tensors(m.float13, QdqPlacement::kAllNodes)) {
      if (std::find(tensors.begin(), tensors.end(), t) == tensors.end()) tensors.push_back(t);
    }
    auto ranges = max_abs_ranges(m.float13, batches, tensors);
    EXPECT_TRUE(ranges) << ranges.status().message();
    if (ranges) m.ranges = *ranges;
    return m;
  }();
  return model;
}

// Saves a model and checks it with onnx.checker; a QAT model also runs in onnxruntime and in
// qyolo on a COCO image, and the two must agree up to quantization-boundary flips.
void check_with_python(const Graph& graph, const std::filesystem::path& path, bool run_qat) {
  ASSERT_TRUE(save_onnx(graph, path.string()).is_ok());
  if (!testing::have_python_oracles()) GTEST_SKIP() << "no python oracles at " << QYOLO_PYTHON;
  const auto checker = run_command(std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR +
                                   "/python/check_onnx.py " + path.string());
  EXPECT_EQ(checker.exit_code, 0) << checker.output;
  if (!run_qat) return;
  const auto compare = run_command(
      std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR + "/python/compare_qat.py --qyolo " +
      QYOLO_BINARY + " --model " + path.string() + " --float " + testing::yolov5n_path().string() +
      " --images " + data_path("coco/calib2017/images").string() + " --count 1");
  EXPECT_EQ(compare.exit_code, 0) << compare.output;
}

std::set<std::string> key_set(const Translation& t) {
  std::set<std::string> out;
  for (const auto& s : t.scales) out.insert(s.tensor);
  return out;
}

// NVIDIA's yolov5s cache's tensors, its module names mapped to the ultralytics export's
// ("/model.2/concat/Concat" is "/model.2/Concat", ".../m.0/addop/Add" is ".../m.0/Add").
std::vector<std::string> nvidia_keys_in_ultralytics_names(bool /*in_order*/) {
  auto cache = read_calibration_cache(data_path("caches/yolov5s_qat2ptq.cache").string());
  EXPECT_TRUE(cache) << cache.status().message();
  std::vector<std::string> out;
  for (const auto& entry : cache->entries) {
    std::string name = entry.tensor;
    for (const std::string module : {"concat/", "addop/"}) {
      const auto at = name.find(module);
      if (at != std::string::npos) name.erase(at, module.size());
    }
    out.push_back(name);
  }
  return out;
}

std::set<std::string> nvidia_key_set() {
  const auto keys = nvidia_keys_in_ultralytics_names(false);
  return {keys.begin(), keys.end()};
}

TEST(TranslateYolov5n, Option1RoundTripsAndMatchesNvidiasCacheKeys) {
  const auto& m = yolov5n_qat();
  const auto dir = temp_dir();
  auto qat = insert_qdq(m.float13, QdqPlacement::kTensorRT, m.ranges);
  ASSERT_TRUE(qat) << qat.status().message();
  check_with_python(*qat, dir / "yolov5n_qat1.onnx", true);

  const Translation t = translate_ok(*qat, nvidia_yolo_flags());
  EXPECT_EQ(t.weight_qdq, 60);
  EXPECT_EQ(t.activation_qdq, 60 + 2 * 7);  // every Conv input; both inputs of 7 residual Adds
  // The graph without Q/DQ is the float model, node for node, weights bit for bit.
  EXPECT_EQ(t.graph.nodes, m.float13.nodes);
  EXPECT_EQ(t.graph.initializers, m.float13.initializers);
  EXPECT_EQ(t.graph.inputs, m.float13.inputs);
  EXPECT_EQ(t.graph.outputs, m.float13.outputs);
  check_with_python(t.graph, dir / "yolov5n_qat1_noqdq.onnx", false);

  // The same tensors as NVIDIA's shipped yolov5s cache (the same network, other widths).
  EXPECT_EQ(key_set(t), nvidia_key_set());
  // Its value relations: the Sigmoid of a SiLU 1/127 and the Conv output the Mul output's.
  EXPECT_DOUBLE_EQ(scale(t, "/model.23/cv3/act/Sigmoid_output_0"), 1.0 / 127.0);
  EXPECT_EQ(static_cast<float>(scale(t, "/model.23/cv3/conv/Conv_output_0")),
            static_cast<float>(scale(t, "/model.23/cv3/act/Mul_output_0")));
  // The shared quantizers: a Concat's inputs and output, a residual Add's inputs.
  EXPECT_EQ(scale(t, "/model.4/cv3/act/Mul_output_0"), scale(t, "/model.16/Concat_output_0"));
  EXPECT_EQ(scale(t, "/model.2/m/m.0/cv2/act/Mul_output_0"),
            scale(t, "/model.2/cv1/act/Mul_output_0"));
  // What stays FP16 is the decoding head after the three output convolutions.
  for (const auto& node : t.fp16_nodes) EXPECT_EQ(node.rfind("/model.24/", 0), 0u) << node;
  EXPECT_FALSE(t.fp16_nodes.empty());

  // With the shipped cache's convention every Sigmoid and Conv output of a SiLU carries its
  // Mul output's scale, and the lines come in the shipped file's order.
  TranslateOptions shipped = nvidia_yolo_flags();
  shipped.sigmoid_scale = SigmoidScale::kMulOutput;
  const Translation s = translate_ok(*qat, shipped);
  EXPECT_EQ(keys(s), nvidia_keys_in_ultralytics_names(/*in_order=*/true));
  int silus = 0;
  for (const auto& entry : s.scales) {
    const auto at = entry.tensor.find("/act/Sigmoid_output_0");
    if (at == std::string::npos) continue;
    const std::string mul = entry.tensor.substr(0, at) + "/act/Mul_output_0";
    const std::string conv = entry.tensor.substr(0, at) + "/conv/Conv_output_0";
    EXPECT_EQ(static_cast<float>(entry.scale), static_cast<float>(scale(s, mul))) << entry.tensor;
    EXPECT_EQ(static_cast<float>(scale(s, conv)), static_cast<float>(scale(t, conv))) << conv;
    ++silus;
  }
  EXPECT_EQ(silus, 57);
}

TEST(TranslateYolov5n, Option2AllNodesWithQdq) {
  const auto& m = yolov5n_qat();
  const auto dir = temp_dir();
  auto qat = insert_qdq(m.float13, QdqPlacement::kAllNodes, m.ranges);
  ASSERT_TRUE(qat) << qat.status().message();
  check_with_python(*qat, dir / "yolov5n_qat2.onnx", true);

  const Translation t = translate_ok(*qat, nvidia_yolo_flags());
  EXPECT_EQ(t.weight_qdq, 60);
  // Conv inputs, both inputs of 57 SiLU Muls, 7 residual Adds, and the inputs of the 13
  // Concats that feed a Conv (2 each, 4 in the SPPF).
  EXPECT_EQ(t.activation_qdq, 60 + 2 * 57 + 2 * 7 + 2 * 12 + 4);
  EXPECT_EQ(t.graph.nodes, m.float13.nodes);
  EXPECT_EQ(t.graph.initializers, m.float13.initializers);
  check_with_python(t.graph, dir / "yolov5n_qat2_noqdq.onnx", false);
  // Every SiLU's Conv output and Sigmoid output comes from a Q/DQ now, the Sigmoid's with its
  // calibrated range rather than 1/127.
  for (const auto& entry : t.scales) {
    if (entry.tensor.find("/act/Sigmoid_output_0") != std::string::npos ||
        entry.tensor.find("/conv/Conv_output_0") != std::string::npos) {
      EXPECT_EQ(entry.source, ScaleSource::kQdq) << entry.tensor;
    }
  }
  EXPECT_LE(scale(t, "/model.0/act/Sigmoid_output_0"), 1.0 / 127.0 + 1e-9);
  // All of Option 1's tensors are there too.
  const auto option1 = nvidia_key_set();
  const auto mine = key_set(t);
  for (const auto& key : option1) EXPECT_TRUE(mine.count(key)) << key;
}

TEST(TranslateYolov5n, CommandLine) {
  const auto& m = yolov5n_qat();
  const auto dir = temp_dir();
  auto qat = insert_qdq(m.float13, QdqPlacement::kTensorRT, m.ranges);
  ASSERT_TRUE(qat);
  const auto model = dir / "yolov5n_qat.onnx";
  ASSERT_TRUE(save_onnx(*qat, model.string()).is_ok());
  // NVIDIA's spellings.
  const auto result =
      run_qyolo("translate -i " + model.string() + " --output_dir " + (dir / "out").string() +
                " --infer_concat_scales --infer_mul_scales --trt_calib_version 8510");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("134 pairs removed"), std::string::npos) << result.output;
  const TranslationFiles files = translation_files((dir / "out").string(), "yolov5n_qat");
  for (const auto& f : {files.onnx, files.cache, files.json, files.layer_arg}) {
    EXPECT_TRUE(std::filesystem::exists(f)) << f;
  }
  auto cache = read_calibration_cache(files.cache);
  ASSERT_TRUE(cache) << cache.status().message();
  EXPECT_EQ(cache->version, "8510");
  const Translation t = translate_ok(*qat, nvidia_yolo_flags());
  ASSERT_EQ(cache->entries.size(), t.scales.size());
  for (size_t i = 0; i < t.scales.size(); ++i) {
    EXPECT_EQ(cache->entries[i].tensor, t.scales[i].tensor);
    EXPECT_EQ(cache->entries[i].scale, static_cast<float>(t.scales[i].scale));
  }
  std::ifstream json(files.json);
  std::stringstream text;
  text << json.rdbuf();
  EXPECT_EQ(text.str(), precision_config_json(t));
  std::ifstream arg(files.layer_arg);
  std::string layer_arg((std::istreambuf_iterator<char>(arg)), std::istreambuf_iterator<char>());
  EXPECT_EQ(layer_arg, layer_precisions_arg(t));
  auto noqdq = load_onnx(files.onnx);
  ASSERT_TRUE(noqdq) << noqdq.status().message();
  EXPECT_EQ(noqdq->nodes, m.float13.nodes);

  // The same with qyolo's own spellings, and the full report.
  const auto mine = run_qyolo("translate " + model.string() + " -o " + (dir / "out2").string() +
                              " --infer-concat-scales --infer-mul-scales --infer-all");
  ASSERT_EQ(mine.exit_code, 0) << mine.output;
  EXPECT_NE(mine.output.find("no scale  /model.24/"), std::string::npos) << mine.output;
}

// Any QAT model that appears among the shared models translates and round-trips.
TEST(TranslateSharedModels, EveryQatModelTranslates) {
  int translated = 0;
  for (const auto& entry : std::filesystem::directory_iterator(data_path("models"))) {
    if (entry.path().extension() != ".onnx") continue;
    auto graph = load_onnx(entry.path().string());
    ASSERT_TRUE(graph) << graph.status().message();
    const bool has_qdq = std::any_of(graph->nodes.begin(), graph->nodes.end(),
                                     [](const Node& n) { return n.op_type == "QuantizeLinear"; });
    if (!has_qdq) continue;
    TranslateOptions options = nvidia_yolo_flags();
    options.check_weight_scales = false;  // fine-tuned weights need not match max calibration
    const Translation t = translate_ok(*graph, options);
    EXPECT_FALSE(t.scales.empty()) << entry.path();
    for (const auto& node : t.graph.nodes) {
      EXPECT_NE(node.op_type, "QuantizeLinear") << entry.path();
      EXPECT_NE(node.op_type, "DequantizeLinear") << entry.path();
    }
    ++translated;
  }
  if (translated == 0) GTEST_SKIP() << "no QAT model among " << data_path("models");
}

// One line on stderr, naming the subject, exit code 1.
void expect_cli_error(const testing::CommandResult& result, const std::string& needle) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(needle), std::string::npos)
      << "expected '" << needle << "' in: " << result.output;
  EXPECT_EQ(std::count(result.output.begin(), result.output.end(), '\n'), 1) << result.output;
}

TEST(TranslateCli, BadInputs) {
  const auto dir = temp_dir();
  GraphBuilder b;
  b.input("x");
  b.node("Tanh", "r", {b.qdq("x", 0.1f, 0.0f, 5)}, {"y"});
  b.output("y");
  ASSERT_TRUE(save_onnx(b.g, (dir / "zp.onnx").string()).is_ok());
  expect_cli_error(run_qyolo("translate " + (dir / "zp.onnx").string() + " -o " + dir.string()),
                   "QuantizeLinear 'qdq0/Q': zero point 'qdq0/zp' is 5");

  GraphBuilder c;
  c.input("x");
  c.node("Tanh", "r", {c.qdq("x", 0.1f, 0.2f)}, {"y"});
  c.output("y");
  ASSERT_TRUE(save_onnx(c.g, (dir / "mismatch.onnx").string()).is_ok());
  expect_cli_error(
      run_qyolo("translate " + (dir / "mismatch.onnx").string() + " -o " + dir.string()),
      "must share one scale");
  expect_cli_error(run_qyolo("translate " + (dir / "missing.onnx").string()), "missing.onnx");
  expect_cli_error(run_qyolo("translate -o " + dir.string()), "no model given");
  const auto bad_flag =
      run_qyolo("translate " + (dir / "zp.onnx").string() + " --sigmoid-scale half");
  EXPECT_NE(bad_flag.exit_code, 0);
}

}  // namespace
}  // namespace qyolo
