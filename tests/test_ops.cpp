// Every op on the CPU executor against the float64 reference, on random inputs and several
// seeds; the executor's layout and fusion plans for the chains that exercise them; known
// answers where the reference itself could be wrong; shape folding; and error messages.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <limits>
#include <set>

#include "op_harness.h"

// The case tables use designated initializers that leave defaulted members out on purpose;
// GCC 12 warns about that under -Wextra.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace qyolo {
namespace {

using namespace ::qyolo::testing;  // NOLINT: the harness is this file's vocabulary

constexpr double kFloatTolerance = 1e-5;
constexpr double kExact = 0.0;
constexpr DType kF32 = DType::kFloat32;
constexpr DType kI64 = DType::kInt64;
constexpr DType kI32 = DType::kInt32;
constexpr DType kI8 = DType::kInt8;
constexpr DType kU8 = DType::kUInt8;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
const std::vector<uint32_t> kSeeds = {1, 2, 3};

using BuildFn = std::function<Graph(std::mt19937&)>;
using InputFn = std::function<std::map<std::string, Tensor>(const Graph&, std::mt19937&)>;

// One test case: a graph (built from a seed, so weights vary too) run on the executor and on
// the reference.
struct OpCase {
  std::string name;
  BuildFn build;
  double tolerance = kFloatTolerance;
  std::map<std::string, ValueRange> ranges;  // per graph input; default [-2, 2] / [-9, 9]
  std::string expected_steps;                // the executor's plan, where it is the point
  ExecutorOptions options;
  InputFn make_inputs;  // instead of random_inputs, where values must avoid rounding ties

  OpCase& range(const std::string& input, double lo, double hi) {
    ranges[input] = {lo, hi};
    return *this;
  }
  OpCase& steps(std::string labels) {
    expected_steps = std::move(labels);
    return *this;
  }
};

NodeInput in(std::string name, Shape shape, DType dtype = kF32) {
  return NodeInput::of(std::move(name), std::move(shape), dtype);
}
NodeInput cst(std::string name, Tensor value) {
  return NodeInput::of_constant(std::move(name), std::move(value));
}

OpCase node_case(std::string name, std::string op, std::vector<NodeInput> inputs,
                 Attributes attributes = {}, double tolerance = kFloatTolerance,
                 int num_outputs = 1, int64_t opset = 13) {
  OpCase c;
  c.name = std::move(name);
  c.tolerance = tolerance;
  c.build = [=](std::mt19937&) {
    return single_node_graph(op, inputs, attributes, num_outputs, opset);
  };
  return c;
}

struct ConvSpec {
  std::string name = "conv";
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_h = 3;
  int64_t kernel_w = 3;
  Attributes attributes;  // strides, pads, dilations, auto_pad, group
  bool bias = true;
  std::string activation;  // "", "silu", "silu_swapped", "sigmoid", "relu"
  bool kernel_shape_attribute = true;
};

// Adds a Conv reading `x` (and its activation, written as the exporter writes it) with
// weights scaled by 1/sqrt(fan_in), so chains keep unit-sized values. Returns the output.
std::string add_conv(GraphBuilder& b, std::mt19937& rng, const std::string& x,
                     const ConvSpec& spec) {
  const auto group_it = spec.attributes.find("group");
  const int64_t group = group_it == spec.attributes.end() ? 1 : group_it->second.i;
  const int64_t fan_in = spec.in_channels / group * spec.kernel_h * spec.kernel_w;
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  const std::string weight = spec.name + ".weight", bias = spec.name + ".bias";
  b.initializer(
      weight, random_tensor(
                  kF32, {spec.out_channels, spec.in_channels / group, spec.kernel_h, spec.kernel_w},
                  rng, {-bound, bound}));
  std::vector<std::string> inputs = {x, weight};
  if (spec.bias) {
    b.initializer(bias, random_tensor(kF32, {spec.out_channels}, rng, {-0.5, 0.5}));
    inputs.push_back(bias);
  }
  Attributes attributes = spec.attributes;
  if (spec.kernel_shape_attribute) {
    attributes["kernel_shape"] = attr_ints({spec.kernel_h, spec.kernel_w});
  }
  const std::string y = spec.name + "_y";
  b.node("Conv", inputs, {y}, attributes, spec.name);
  if (spec.activation.empty()) return y;
  const std::string out = spec.name + "_act";
  if (spec.activation == "sigmoid") {
    b.node("Sigmoid", {y}, {out});
  } else if (spec.activation == "relu") {
    b.node("Relu", {y}, {out});
  } else {
    const std::string s = spec.name + "_sigmoid";
    b.node("Sigmoid", {y}, {s});
    b.node("Mul",
           spec.activation == "silu_swapped" ? std::vector<std::string>{s, y}
                                             : std::vector<std::string>{y, s},
           {out});
  }
  return out;
}

// A graph of one Conv (and activation) on input "x".
OpCase conv_case(std::string name, Shape input, ConvSpec spec, std::string expected_steps) {
  OpCase c;
  c.name = std::move(name);
  c.expected_steps = std::move(expected_steps);
  c.build = [=](std::mt19937& rng) {
    GraphBuilder b;
    b.input("x", input);
    b.output(add_conv(b, rng, "x", spec));
    return b.build();
  };
  return c;
}

// Values (k + u) * scale with integer k and |u| <= 0.4: far from rounding ties, so float32
// and float64 quantize them alike; k spans past the int8/uint8 range to exercise clamping.
Tensor quantizable_tensor(const Shape& shape, const std::vector<float>& scales, int64_t axis,
                          std::mt19937& rng) {
  Tensor t(kF32, shape);
  std::uniform_int_distribution<int> k_dist(-140, 140);
  std::uniform_real_distribution<double> u_dist(-0.4, 0.4);
  int64_t inner = 1;
  for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
  for (int64_t i = 0; i < t.numel(); ++i) {
    const size_t c = scales.size() == 1 ? 0 : static_cast<size_t>((i / inner) % shape[axis]);
    t.data<float>()[i] = static_cast<float>((k_dist(rng) + u_dist(rng)) * scales[c]);
  }
  return t;
}

InputFn quantizable_inputs(std::vector<float> scales, int64_t axis = 1) {
  return [=](const Graph& graph, std::mt19937& rng) {
    std::map<std::string, Tensor> inputs;
    for (const ValueInfo& info : graph.inputs) {
      inputs[info.name] = quantizable_tensor(info.shape, scales, axis, rng);
    }
    return inputs;
  };
}

// Zero points: a scalar for one value (per-tensor), else 1-D (per-channel).
Tensor int8s(std::vector<int8_t> values) { return Tensor::from_vector(values); }
Tensor uint8s(std::vector<uint8_t> values) { return Tensor::from_vector(values); }

// ---------------------------------------------------------------------------------------------
// The case table

void add_conv_cases(std::vector<OpCase>& cases) {
  const std::string plain = "Reorder>NHWC,Conv,Reorder>NCHW";
  cases.push_back(conv_case("Conv1x1", {1, 17, 9, 11},
                            {.in_channels = 17, .out_channels = 33, .kernel_h = 1, .kernel_w = 1},
                            plain));
  cases.push_back(conv_case(
      "Conv3x3Stride1Batch3", {3, 5, 13, 11},
      {.in_channels = 5, .out_channels = 17, .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}},
      plain));
  cases.push_back(
      conv_case("Conv3x3Stride2", {1, 17, 15, 12},
                {.in_channels = 17,
                 .out_channels = 33,
                 .attributes = {{"pads", attr_ints({1, 1, 1, 1})}, {"strides", attr_ints({2, 2})}}},
                plain));
  // The YOLOv5 stem: 6x6, stride 2, pad 2 on the 3-channel image, then SiLU.
  cases.push_back(
      conv_case("ConvStem6x6Stride2Pad2", {3, 3, 33, 31},
                {.in_channels = 3,
                 .out_channels = 16,
                 .kernel_h = 6,
                 .kernel_w = 6,
                 .attributes = {{"pads", attr_ints({2, 2, 2, 2})}, {"strides", attr_ints({2, 2})}},
                 .activation = "silu"},
                "Reorder>NHWC,Conv+SiLU,Reorder>NCHW"));
  cases.push_back(
      conv_case("ConvGrouped", {1, 12, 9, 10},
                {.in_channels = 12,
                 .out_channels = 6,
                 .attributes = {{"group", attr_int(3)}, {"pads", attr_ints({1, 1, 1, 1})}}},
                plain));
  cases.push_back(conv_case("ConvDepthwise", {3, 17, 10, 7},
                            {.in_channels = 17,
                             .out_channels = 17,
                             .attributes = {{"group", attr_int(17)},
                                            {"pads", attr_ints({1, 1, 1, 1})},
                                            {"strides", attr_ints({2, 1})}}},
                            plain));
  cases.push_back(conv_case(
      "ConvDilation2", {1, 5, 14, 13},
      {.in_channels = 5,
       .out_channels = 7,
       .attributes = {{"dilations", attr_ints({2, 2})}, {"pads", attr_ints({2, 2, 2, 2})}}},
      plain));
  cases.push_back(conv_case(
      "ConvDilationMixed", {1, 5, 14, 13},
      {.in_channels = 5, .out_channels = 7, .attributes = {{"dilations", attr_ints({1, 3})}}},
      plain));
  cases.push_back(conv_case("ConvNoBias", {1, 5, 8, 8},
                            {.in_channels = 5, .out_channels = 17, .bias = false}, plain));
  cases.push_back(conv_case("ConvNoKernelShapeAttribute", {1, 5, 8, 9},
                            {.in_channels = 5, .out_channels = 9, .kernel_shape_attribute = false},
                            plain));
  cases.push_back(
      conv_case("ConvAsymmetricPads", {3, 5, 12, 11},
                {.in_channels = 5,
                 .out_channels = 17,
                 .attributes = {{"pads", attr_ints({0, 1, 2, 1})}, {"strides", attr_ints({2, 2})}}},
                plain));
  cases.push_back(conv_case(
      "ConvAutoPadSameUpper", {1, 5, 12, 11},
      {.in_channels = 5,
       .out_channels = 9,
       .attributes = {{"auto_pad", attr_string("SAME_UPPER")}, {"strides", attr_ints({2, 2})}}},
      plain));
  cases.push_back(conv_case(
      "ConvAutoPadSameLower", {1, 5, 12, 11},
      {.in_channels = 5,
       .out_channels = 9,
       .kernel_h = 4,
       .kernel_w = 2,
       .attributes = {{"auto_pad", attr_string("SAME_LOWER")}, {"strides", attr_ints({3, 2})}}},
      plain));
  cases.push_back(conv_case(
      "ConvAutoPadValid", {1, 5, 12, 11},
      {.in_channels = 5, .out_channels = 9, .attributes = {{"auto_pad", attr_string("VALID")}}},
      plain));
  cases.push_back(conv_case("ConvRectangularKernel", {1, 5, 9, 12},
                            {.in_channels = 5,
                             .out_channels = 9,
                             .kernel_h = 1,
                             .kernel_w = 3,
                             .attributes = {{"pads", attr_ints({0, 1, 0, 1})}}},
                            plain));

  // Channel counts oneDNN's blocked kernels see in real models.
  cases.push_back(conv_case("Conv3x3Channels32To64", {1, 32, 20, 20},
                            {.in_channels = 32,
                             .out_channels = 64,
                             .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                             .activation = "silu"},
                            "Reorder>NHWC,Conv+SiLU,Reorder>NCHW"));
  cases.push_back(conv_case("Conv1x1Channels64To48Batch3", {3, 64, 10, 10},
                            {.in_channels = 64, .out_channels = 48, .kernel_h = 1, .kernel_w = 1},
                            plain));
  // Fusion: SiLU and Sigmoid fold into the convolution unless fusion is off.
  cases.push_back(conv_case("ConvSiluFused", {3, 5, 9, 7},
                            {.in_channels = 5,
                             .out_channels = 17,
                             .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                             .activation = "silu"},
                            "Reorder>NHWC,Conv+SiLU,Reorder>NCHW"));
  cases.push_back(conv_case("ConvSiluSwappedMulFused", {1, 5, 9, 7},
                            {.in_channels = 5, .out_channels = 17, .activation = "silu_swapped"},
                            "Reorder>NHWC,Conv+SiLU,Reorder>NCHW"));
  {
    OpCase c = conv_case("ConvSiluUnfused", {3, 5, 9, 7},
                         {.in_channels = 5,
                          .out_channels = 17,
                          .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                          .activation = "silu"},
                         "Reorder>NHWC,Conv,Sigmoid,Mul,Reorder>NCHW");
    c.options.fuse = false;
    cases.push_back(c);
  }
  cases.push_back(conv_case("ConvSigmoidFused", {1, 5, 9, 7},
                            {.in_channels = 5, .out_channels = 33, .activation = "sigmoid"},
                            "Reorder>NHWC,Conv+Sigmoid,Reorder>NCHW"));
  cases.push_back(conv_case("ConvReluNotFused", {1, 5, 9, 7},
                            {.in_channels = 5, .out_channels = 9, .activation = "relu"},
                            "Reorder>NHWC,Conv,Relu,Reorder>NCHW"));
  {
    OpCase c = conv_case("ConvReferencePath", {3, 5, 9, 7},
                         {.in_channels = 5,
                          .out_channels = 17,
                          .attributes = {{"pads", attr_ints({0, 1, 2, 1})},
                                         {"strides", attr_ints({2, 1})},
                                         {"group", attr_int(1)}},
                          .activation = "silu"},
                         "Conv,Sigmoid,Mul");
    c.options.fast_conv = false;
    cases.push_back(c);
  }
  {
    OpCase c = conv_case("ConvReferencePathGrouped", {1, 12, 9, 7},
                         {.in_channels = 12,
                          .out_channels = 9,
                          .attributes = {{"group", attr_int(3)}, {"dilations", attr_ints({2, 1})}}},
                         "Conv");
    c.options.fast_conv = false;
    cases.push_back(c);
  }
  // The pre-activation value is also a graph output, so the SiLU must not be folded away.
  cases.push_back({.name = "ConvSiluPreActivationIsOutput",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 5, 8, 7});
                         b.output(
                             add_conv(b, rng, "x",
                                      {.in_channels = 5, .out_channels = 9, .activation = "silu"}));
                         b.output("conv_y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Sigmoid,Mul,Reorder>NCHW,Reorder>NCHW"});
  cases.push_back({.name = "ConvSiluSigmoidIsOutput",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 5, 8, 7});
                         b.output(
                             add_conv(b, rng, "x",
                                      {.in_channels = 5, .out_channels = 9, .activation = "silu"}));
                         b.output("conv_sigmoid");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Sigmoid,Mul,Reorder>NCHW,Reorder>NCHW"});
  // Weights that are not constant cannot go to oneDNN: the reference loop runs instead.
  cases.push_back(node_case("ConvWeightIsInput", "Conv",
                            {in("x", {1, 5, 7, 6}), in("w", {7, 5, 3, 3}), in("b", {7})},
                            {{"pads", attr_ints({1, 1, 1, 1})}}));
  cases.back().steps("Conv");
}

void add_layout_cases(std::vector<OpCase>& cases) {
  cases.push_back({.name = "ConvConcatChannels",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {3, 5, 9, 7});
                         const auto a = add_conv(b, rng, "x",
                                                 {.name = "a",
                                                  .in_channels = 5,
                                                  .out_channels = 17,
                                                  .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                                                  .activation = "silu"});
                         const auto c = add_conv(b, rng, "x",
                                                 {.name = "c",
                                                  .in_channels = 5,
                                                  .out_channels = 6,
                                                  .kernel_h = 1,
                                                  .kernel_w = 1,
                                                  .activation = "silu"});
                         b.node("Concat", {a, c}, {"y"}, {{"axis", attr_int(1)}});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv+SiLU,Conv+SiLU,Concat,Reorder>NCHW"});
  cases.push_back(
      {.name = "ConvConcatNegativeAxisThreeInputs",
       .build =
           [](std::mt19937& rng) {
             GraphBuilder b;
             b.input("x", {1, 5, 6, 7});
             const auto a = add_conv(
                 b, rng, "x",
                 {.name = "a", .in_channels = 5, .out_channels = 3, .kernel_h = 1, .kernel_w = 1});
             const auto c = add_conv(
                 b, rng, "x",
                 {.name = "c", .in_channels = 5, .out_channels = 5, .kernel_h = 1, .kernel_w = 1});
             b.node("Concat", {c, a, c}, {"y"}, {{"axis", attr_int(-3)}});
             b.output("y");
             return b.build();
           },
       .expected_steps = "Reorder>NHWC,Conv,Conv,Concat,Reorder>NCHW"});
  // Concat of a conv output with a graph input: the input is reordered to join NHWC.
  cases.push_back({.name = "ConvConcatGraphInput",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 5, 6, 7});
                         b.input("z", {1, 2, 6, 7});
                         const auto a =
                             add_conv(b, rng, "x",
                                      {.in_channels = 5,
                                       .out_channels = 3,
                                       .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}});
                         b.node("Concat", {"z", a}, {"y"}, {{"axis", attr_int(1)}});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Reorder>NHWC,Concat,Reorder>NCHW"});
  // YOLOv5's SPPF: three chained 5x5 max pools concatenated with their input.
  cases.push_back({.name = "ConvMaxPoolSppf",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 8, 9, 11});
                         const auto a = add_conv(b, rng, "x",
                                                 {.name = "cv1",
                                                  .in_channels = 8,
                                                  .out_channels = 5,
                                                  .kernel_h = 1,
                                                  .kernel_w = 1,
                                                  .activation = "silu"});
                         const Attributes pool = {{"kernel_shape", attr_ints({5, 5})},
                                                  {"strides", attr_ints({1, 1})},
                                                  {"pads", attr_ints({2, 2, 2, 2})}};
                         b.node("MaxPool", {a}, {"m1"}, pool);
                         b.node("MaxPool", {"m1"}, {"m2"}, pool);
                         b.node("MaxPool", {"m2"}, {"m3"}, pool);
                         b.node("Concat", {a, "m1", "m2", "m3"}, {"cat"}, {{"axis", attr_int(1)}});
                         b.output(add_conv(b, rng, "cat",
                                           {.name = "cv2",
                                            .in_channels = 20,
                                            .out_channels = 8,
                                            .kernel_h = 1,
                                            .kernel_w = 1,
                                            .activation = "silu"}));
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv+SiLU,MaxPool,MaxPool,MaxPool,Concat,"
                                     "Conv+SiLU,Reorder>NCHW"});
  auto conv_then = [](std::string name, Shape input, int64_t channels, std::string op,
                      std::vector<std::string> extra_inputs, Attributes attributes,
                      std::vector<std::pair<std::string, Tensor>> constants,
                      std::string expected_steps) {
    OpCase c;
    c.name = std::move(name);
    c.expected_steps = std::move(expected_steps);
    c.build = [=](std::mt19937& rng) {
      GraphBuilder b;
      b.input("x", input);
      for (const auto& [constant_name, value] : constants) b.initializer(constant_name, value);
      std::vector<std::string> inputs = {
          add_conv(b, rng, "x",
                   {.in_channels = input[1],
                    .out_channels = channels,
                    .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}})};
      inputs.insert(inputs.end(), extra_inputs.begin(), extra_inputs.end());
      b.node(op, inputs, {"y"}, attributes);
      b.output("y");
      return b.build();
    };
    return c;
  };
  const std::string nhwc_then = "Reorder>NHWC,Conv,";
  cases.push_back(
      conv_then("ConvMaxPoolK5S1P2", {3, 5, 9, 8}, 17, "MaxPool", {},
                {{"kernel_shape", attr_ints({5, 5})}, {"pads", attr_ints({2, 2, 2, 2})}}, {},
                nhwc_then + "MaxPool,Reorder>NCHW"));
  cases.push_back(conv_then("ConvMaxPoolK2S2", {1, 5, 11, 10}, 17, "MaxPool", {},
                            {{"kernel_shape", attr_ints({2, 2})}, {"strides", attr_ints({2, 2})}},
                            {}, nhwc_then + "MaxPool,Reorder>NCHW"));
  cases.push_back(conv_then("ConvMaxPoolCeilMode", {3, 5, 11, 10}, 9, "MaxPool", {},
                            {{"kernel_shape", attr_ints({2, 2})},
                             {"strides", attr_ints({2, 2})},
                             {"ceil_mode", attr_int(1)}},
                            {}, nhwc_then + "MaxPool,Reorder>NCHW"));
  cases.push_back(conv_then("ConvMaxPoolCeilModePadded", {1, 5, 10, 9}, 9, "MaxPool", {},
                            {{"kernel_shape", attr_ints({3, 3})},
                             {"strides", attr_ints({2, 2})},
                             {"pads", attr_ints({1, 0, 1, 1})},
                             {"ceil_mode", attr_int(1)}},
                            {}, nhwc_then + "MaxPool,Reorder>NCHW"));
  // Nearest Resize after a conv stays NHWC. Eligibility is judged on logical (NCHW) shapes:
  // comparing with the NHWC buffer's shape once sent every upsample back to NCHW. The
  // ConvResizeNhwc* cases pick C == H, where even that comparison passed.
  // YOLOv5's upsample: nearest, scales [1, 1, 2, 2], asymmetric coordinates, floor.
  cases.push_back(conv_then("ConvResizeScalesAsymmetricFloor", {1, 5, 7, 9}, 17, "Resize",
                            {"", "scales"},
                            {{"mode", attr_string("nearest")},
                             {"coordinate_transformation_mode", attr_string("asymmetric")},
                             {"nearest_mode", attr_string("floor")}},
                            {{"scales", floats({1, 1, 2, 2})}}, nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back(conv_then("ConvResizeSizes", {3, 5, 7, 9}, 6, "Resize", {"", "", "sizes"},
                            {{"mode", attr_string("nearest")},
                             {"coordinate_transformation_mode", attr_string("asymmetric")},
                             {"nearest_mode", attr_string("floor")}},
                            {{"sizes", int64s({3, 6, 17, 20})}},
                            nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back(conv_then("ConvResizeSizesHalfPixel", {1, 5, 7, 9}, 6, "Resize",
                            {"roi", "scales", "sizes"},
                            {{"mode", attr_string("nearest")},
                             {"coordinate_transformation_mode", attr_string("half_pixel")},
                             {"nearest_mode", attr_string("round_prefer_floor")}},
                            {{"roi", Tensor(kF32, {0})},
                             {"scales", Tensor(kF32, {0})},
                             {"sizes", int64s({1, 6, 11, 27})}},
                            nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back(
      conv_then("ConvResizeScalesHalfPixelFractional", {1, 5, 7, 6}, 6, "Resize", {"", "scales"},
                {{"mode", attr_string("nearest")},
                 {"coordinate_transformation_mode", attr_string("half_pixel")},
                 {"nearest_mode", attr_string("round_prefer_floor")}},
                {{"scales", floats({1, 1, 1.5f, 2.5f})}}, nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back(conv_then("ConvResizeNhwcScales", {1, 5, 7, 9}, 7, "Resize", {"", "scales"},
                            {{"mode", attr_string("nearest")},
                             {"coordinate_transformation_mode", attr_string("asymmetric")},
                             {"nearest_mode", attr_string("floor")}},
                            {{"scales", floats({1, 1, 2, 2})}}, nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back(conv_then(
      "ConvResizeNhwcScalesHalfPixelFractional", {3, 5, 6, 7}, 6, "Resize", {"", "scales"},
      {{"mode", attr_string("nearest")},
       {"coordinate_transformation_mode", attr_string("half_pixel")},
       {"nearest_mode", attr_string("round_prefer_floor")}},
      {{"scales", floats({1, 1, 2.5f, 1.5f})}}, nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back(conv_then("ConvResizeNhwcSizes", {1, 5, 9, 7}, 9, "Resize",
                            {"roi", "scales", "sizes"},
                            {{"mode", attr_string("nearest")},
                             {"coordinate_transformation_mode", attr_string("half_pixel")},
                             {"nearest_mode", attr_string("round_prefer_ceil")}},
                            {{"roi", Tensor(kF32, {0})},
                             {"scales", Tensor(kF32, {0})},
                             {"sizes", int64s({1, 9, 13, 20})}},
                            nhwc_then + "Resize,Reorder>NCHW"));
  cases.push_back({.name = "ConvAddResidual",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {3, 6, 7, 9});
                         const auto a = add_conv(b, rng, "x",
                                                 {.name = "cv1",
                                                  .in_channels = 6,
                                                  .out_channels = 6,
                                                  .kernel_h = 1,
                                                  .kernel_w = 1,
                                                  .activation = "silu"});
                         const auto c = add_conv(b, rng, a,
                                                 {.name = "cv2",
                                                  .in_channels = 6,
                                                  .out_channels = 6,
                                                  .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                                                  .activation = "silu"});
                         b.node("Add", {a, c}, {"y"});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv+SiLU,Conv+SiLU,Add,Reorder>NCHW"});
  cases.push_back(conv_then("ConvMulScalarConstant", {1, 5, 7, 9}, 17, "Mul", {"half"}, {},
                            {{"half", float_scalar(0.5f)}}, nhwc_then + "Mul,Reorder>NCHW"));
  cases.push_back(conv_then("ConvMulOneElementConstant", {1, 5, 7, 9}, 17, "Mul", {"k"}, {},
                            {{"k", floats({-1.5f}, {1, 1, 1, 1})}},
                            nhwc_then + "Mul,Reorder>NCHW"));
  // A per-channel constant is not layout-agnostic here: the data goes back to NCHW.
  cases.push_back(conv_then("ConvMulPerChannelConstant", {1, 5, 7, 9}, 3, "Mul", {"k"}, {},
                            {{"k", floats({0.5f, -2.0f, 3.0f}, {1, 3, 1, 1})}},
                            nhwc_then + "Reorder>NCHW,Mul"));
  cases.push_back({.name = "ConvScalarArithmeticChain",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {3, 5, 7, 6});
                         b.input("offset", {});
                         b.initializer("half", float_scalar(0.5f));
                         b.initializer("one", float_scalar(1.0f));
                         b.initializer("three", float_scalar(3.0f));
                         b.initializer("two", float_scalar(2.0f));
                         const auto a =
                             add_conv(b, rng, "x",
                                      {.in_channels = 5,
                                       .out_channels = 9,
                                       .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}});
                         b.node("Mul", {a, "half"}, {"m"});
                         b.node("Sub", {"one", "m"}, {"s"});
                         b.node("Div", {"s", "three"}, {"d"});
                         b.node("Pow", {"d", "two"}, {"p"});
                         b.node("Add", {"offset", "p"}, {"y"});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Mul,Sub,Div,Pow,Add,Reorder>NCHW"});
  cases.push_back({.name = "ConvReluSigmoidIdentity",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 5, 7, 6});
                         const auto a =
                             add_conv(b, rng, "x",
                                      {.in_channels = 5, .out_channels = 9, .activation = "relu"});
                         b.node("Sigmoid", {a}, {"s"});
                         b.node("Identity", {"s"}, {"y"});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Relu,Sigmoid,Identity,Reorder>NCHW"});
  // With C == H == W the NHWC and NCHW buffers of a graph input have equal shapes: the
  // element-wise op still needs the input reordered to NHWC.
  cases.push_back({.name = "ConvAddGraphInputCube",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 3, 4, 4});
                         b.input("z", {1, 4, 4, 4});
                         const auto a =
                             add_conv(b, rng, "x",
                                      {.in_channels = 3,
                                       .out_channels = 4,
                                       .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}});
                         b.node("Add", {a, "z"}, {"y"});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Reorder>NHWC,Add,Reorder>NCHW"});
  cases.push_back({.name = "ConvAddGraphInput",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {3, 5, 6, 7});
                         b.input("z", {3, 9, 6, 7});
                         const auto a =
                             add_conv(b, rng, "x",
                                      {.in_channels = 5,
                                       .out_channels = 9,
                                       .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}});
                         b.node("Sub", {"z", a}, {"y"});
                         b.output("y");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Reorder>NHWC,Sub,Reorder>NCHW"});
  cases.push_back({.name = "ConvMulBroadcastGraphInput", .build = [](std::mt19937& rng) {
                     GraphBuilder b;
                     b.input("x", {1, 5, 6, 7});
                     b.input("z", {1, 1, 6, 7});
                     const auto a = add_conv(b, rng, "x",
                                             {.in_channels = 5,
                                              .out_channels = 9,
                                              .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}});
                     b.node("Mul", {a, "z"}, {"y"});
                     b.output("y");
                     return b.build();
                   }});
  cases.push_back(conv_then("ConvReshape", {1, 5, 7, 6}, 6, "Reshape", {"shape"}, {},
                            {{"shape", int64s({1, 3, 2, -1})}},
                            nhwc_then + "Reorder>NCHW,Reshape"));
  cases.push_back(conv_then("ConvTranspose", {3, 5, 7, 6}, 9, "Transpose", {},
                            {{"perm", attr_ints({0, 2, 3, 1})}}, {},
                            nhwc_then + "Reorder>NCHW,Transpose"));
  cases.push_back(
      conv_then("ConvSlice", {1, 5, 7, 6}, 9, "Slice", {"starts", "ends", "axes"}, {},
                {{"starts", int64s({2, 1})}, {"ends", int64s({7, -1})}, {"axes", int64s({1, 3})}},
                nhwc_then + "Reorder>NCHW,Slice"));
  cases.push_back({.name = "ConvSplitChannels",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 5, 6, 7});
                         const auto a =
                             add_conv(b, rng, "x", {.in_channels = 5, .out_channels = 8});
                         b.node("Split", {a}, {"y0", "y1"}, {{"axis", attr_int(1)}});
                         b.output("y0").output("y1");
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv,Reorder>NCHW,Split"});
  {
    OpCase c = conv_then("ConvBatchNormalization", {1, 5, 7, 6}, 3, "BatchNormalization",
                         {"scale", "bias", "mean", "var"}, {{"epsilon", attr_float(1e-3f)}},
                         {{"scale", floats({0.5f, 1.5f, -1.0f})},
                          {"bias", floats({0.1f, -0.2f, 0.3f})},
                          {"mean", floats({0.05f, -0.1f, 0.2f})},
                          {"var", floats({0.8f, 1.2f, 0.3f})}},
                         nhwc_then + "Reorder>NCHW,BatchNormalization");
    cases.push_back(c);
  }
  // A conv output that is a graph output and feeds an NHWC op: both leave as NCHW.
  cases.push_back(
      {.name = "ConvOutputStaysNhwcInside",
       .build =
           [](std::mt19937& rng) {
             GraphBuilder b;
             b.input("x", {3, 5, 7, 6});
             const auto a = add_conv(b, rng, "x",
                                     {.in_channels = 5,
                                      .out_channels = 9,
                                      .attributes = {{"pads", attr_ints({1, 1, 1, 1})}}});
             b.node("MaxPool", {a}, {"p"},
                    {{"kernel_shape", attr_ints({2, 2})}, {"strides", attr_ints({2, 2})}});
             b.output(a).output("p");
             return b.build();
           },
       .expected_steps = "Reorder>NHWC,Conv,MaxPool,Reorder>NCHW,Reorder>NCHW"});
  // YOLOv5's neck: upsample, concatenate with a backbone feature, convolve.
  cases.push_back({.name = "YoloUpsampleConcat",
                   .build =
                       [](std::mt19937& rng) {
                         GraphBuilder b;
                         b.input("x", {1, 8, 6, 5});
                         b.input("x2", {1, 4, 12, 10});
                         b.initializer("scales", floats({1, 1, 2, 2}));
                         const auto a = add_conv(b, rng, "x",
                                                 {.name = "cv1",
                                                  .in_channels = 8,
                                                  .out_channels = 5,
                                                  .kernel_h = 1,
                                                  .kernel_w = 1,
                                                  .activation = "silu"});
                         b.node("Resize", {a, "", "scales"}, {"up"},
                                {{"mode", attr_string("nearest")},
                                 {"coordinate_transformation_mode", attr_string("asymmetric")},
                                 {"nearest_mode", attr_string("floor")}});
                         const auto c = add_conv(b, rng, "x2",
                                                 {.name = "cv2",
                                                  .in_channels = 4,
                                                  .out_channels = 3,
                                                  .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                                                  .activation = "silu"});
                         b.node("Concat", {"up", c}, {"cat"}, {{"axis", attr_int(1)}});
                         b.output(add_conv(b, rng, "cat",
                                           {.name = "cv3",
                                            .in_channels = 8,
                                            .out_channels = 7,
                                            .kernel_h = 1,
                                            .kernel_w = 1,
                                            .activation = "silu"}));
                         return b.build();
                       },
                   .expected_steps = "Reorder>NHWC,Conv+SiLU,Resize,Reorder>NHWC,Conv+SiLU,"
                                     "Concat,Conv+SiLU,Reorder>NCHW"});
  // YOLOv5 (v5.0) Focus: four strided slices concatenated on channels, then a conv.
  cases.push_back(
      {.name = "YoloFocus",
       .build =
           [](std::mt19937& rng) {
             GraphBuilder b;
             b.input("x", {1, 3, 8, 10});
             b.initializer("axes", int64s({2, 3}));
             b.initializer("steps", int64s({2, 2}));
             b.initializer("ends", int64s({kInt64Max, kInt64Max}));
             const std::vector<std::vector<int64_t>> starts = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
             std::vector<std::string> parts;
             for (size_t i = 0; i < starts.size(); ++i) {
               const std::string s = "starts" + std::to_string(i);
               b.initializer(s, int64s(starts[i]));
               parts.push_back("part" + std::to_string(i));
               b.node("Slice", {"x", s, "ends", "axes", "steps"}, {parts.back()});
             }
             b.node("Concat", parts, {"cat"}, {{"axis", attr_int(1)}});
             b.output(add_conv(b, rng, "cat",
                               {.in_channels = 12,
                                .out_channels = 16,
                                .attributes = {{"pads", attr_ints({1, 1, 1, 1})}},
                                .activation = "silu"}));
             return b.build();
           },
       .expected_steps = "Slice,Slice,Slice,Slice,Concat,Reorder>NHWC,Conv+SiLU,"
                         "Reorder>NCHW"});
  // YOLOv5's detect head for one level: 3 anchors, 2 classes (7 values per box).
  cases.push_back({.name = "YoloDetectHead", .build = [](std::mt19937& rng) {
                     GraphBuilder b;
                     b.input("x", {1, 5, 4, 6});
                     b.initializer("head_shape", int64s({1, 3, 7, 4, 6}));
                     b.initializer("split", int64s({2, 2, 3}));
                     b.initializer("two", float_scalar(2.0f));
                     b.initializer("half", float_scalar(0.5f));
                     b.initializer("stride", float_scalar(8.0f));
                     b.initializer("grid", random_tensor(kF32, {1, 3, 4, 6, 2}, rng, {0, 6}));
                     b.initializer("anchors", random_tensor(kF32, {1, 3, 4, 6, 2}, rng, {10, 60}));
                     b.initializer("out_shape", int64s({1, -1, 7}));
                     const auto a = add_conv(
                         b, rng, "x",
                         {.in_channels = 5, .out_channels = 21, .kernel_h = 1, .kernel_w = 1});
                     b.node("Reshape", {a, "head_shape"}, {"r"});
                     b.node("Transpose", {"r"}, {"t"}, {{"perm", attr_ints({0, 1, 3, 4, 2})}});
                     b.node("Sigmoid", {"t"}, {"s"});
                     b.node("Split", {"s", "split"}, {"xy", "wh", "conf"}, {{"axis", attr_int(4)}});
                     b.node("Mul", {"xy", "two"}, {"xy2"});
                     b.node("Sub", {"xy2", "half"}, {"xy3"});
                     b.node("Add", {"xy3", "grid"}, {"xy4"});
                     b.node("Mul", {"xy4", "stride"}, {"xy5"});
                     b.node("Mul", {"wh", "two"}, {"wh2"});
                     b.node("Pow", {"wh2", "two"}, {"wh3"});
                     b.node("Mul", {"wh3", "anchors"}, {"wh4"});
                     b.node("Concat", {"xy5", "wh4", "conf"}, {"cat"}, {{"axis", attr_int(4)}});
                     b.node("Reshape", {"cat", "out_shape"}, {"y"});
                     b.output("y");
                     return b.build();
                   }});
  // Fake-quantized activations and per-channel int8 weights (the QAT / QDQ pattern).
  OpCase qdq_conv;
  qdq_conv.name = "QdqConv";
  qdq_conv.build = [](std::mt19937& rng) {
    GraphBuilder b;
    b.input("x", {1, 5, 7, 6});
    b.initializer("x_scale", float_scalar(0.02f));
    b.initializer("x_zero", int8s({0}));
    b.initializer("w_q", random_tensor(kI8, {9, 5, 3, 3}, rng, {-127, 127}));
    b.initializer("w_scale", random_tensor(kF32, {9}, rng, {0.001, 0.004}));
    b.initializer("w_zero", Tensor(kI8, {9}));
    b.initializer("bias", random_tensor(kF32, {9}, rng, {-0.5, 0.5}));
    b.node("QuantizeLinear", {"x", "x_scale", "x_zero"}, {"xq"});
    b.node("DequantizeLinear", {"xq", "x_scale", "x_zero"}, {"xd"});
    b.node("DequantizeLinear", {"w_q", "w_scale", "w_zero"}, {"w"}, {{"axis", attr_int(0)}});
    b.node("Conv", {"xd", "w", "bias"}, {"c"},
           {{"kernel_shape", attr_ints({3, 3})}, {"pads", attr_ints({1, 1, 1, 1})}});
    b.node("Sigmoid", {"c"}, {"s"});
    b.node("Mul", {"c", "s"}, {"y"});
    b.output("y");
    return b.build();
  };
  qdq_conv.expected_steps = "QuantizeLinear,DequantizeLinear,Reorder>NHWC,Conv+SiLU,Reorder>NCHW";
  qdq_conv.make_inputs = quantizable_inputs({0.02f});
  cases.push_back(qdq_conv);
}

void add_elementwise_cases(std::vector<OpCase>& cases) {
  cases.push_back(node_case("AddBroadcast", "Add", {in("a", {2, 3, 4, 5}), in("b", {3, 1, 5})}));
  cases.push_back(
      node_case("SubBroadcastReversed", "Sub", {in("a", {3, 1, 5}), in("b", {2, 3, 4, 5})}));
  cases.push_back(node_case("MulBroadcastLastAxis", "Mul", {in("a", {2, 3, 4, 5}), in("b", {5})}));
  cases.push_back(node_case("DivBroadcast", "Div", {in("a", {2, 3, 4, 5}), in("b", {3, 1, 5})})
                      .range("b", 0.5, 2.0));
  cases.push_back(node_case("DivBothBroadcast", "Div", {in("a", {3, 1, 5}), in("b", {4, 1})})
                      .range("b", -2.0, -0.5));
  cases.push_back(node_case("AddScalarInput", "Add", {in("a", {2, 3, 4, 5}), in("b", {})}));
  cases.push_back(node_case("MulScalarConstantFirst", "Mul",
                            {cst("k", float_scalar(-0.75f)), in("x", {3, 17, 5})}));
  cases.push_back(node_case("SubSameShape", "Sub", {in("a", {3, 33}), in("b", {3, 33})}));
  cases.push_back(node_case("AddInt64ShapeMath", "Add",
                            {in("a", {4}, kI64), cst("b", int64_scalar(-3))}, {}, kExact));
  cases.push_back(
      node_case("SubInt64", "Sub", {in("a", {2, 3}, kI64), in("b", {3}, kI64)}, {}, kExact));
  cases.push_back(node_case("MulInt64ShapeMath", "Mul", {in("a", {2, 3}, kI64), in("b", {3}, kI64)},
                            {}, kExact));
  cases.push_back(
      node_case("DivInt64ShapeMath", "Div", {in("a", {5}, kI64), in("b", {5}, kI64)}, {}, kExact)
          .range("a", -50, 50)
          .range("b", 1, 9));
  cases.push_back(node_case("DivInt64ByScalar", "Div",
                            {in("a", {7}, kI64), cst("b", int64_scalar(2))}, {}, kExact)
                      .range("a", -50, 50));
  cases.push_back(
      node_case("AddInt32", "Add", {in("a", {3, 4}, kI32), in("b", {4}, kI32)}, {}, kExact));
  cases.push_back(
      node_case("PowSquare", "Pow", {in("x", {3, 5, 7}), cst("e", float_scalar(2.0f))}));
  cases.push_back(
      node_case("PowSquareRoot", "Pow", {in("x", {3, 5, 7}), cst("e", float_scalar(0.5f))})
          .range("x", 0.1, 4.0));
  cases.push_back(
      node_case("PowInt64Exponent", "Pow", {in("x", {2, 17}), cst("e", int64_scalar(3))}));
  cases.push_back(node_case("PowBroadcastExponent", "Pow", {in("x", {2, 3, 4}), in("e", {4})})
                      .range("x", 0.5, 3.0));
  cases.push_back(node_case("Sigmoid", "Sigmoid", {in("x", {3, 7, 5})}).range("x", -12, 12));
  cases.push_back(node_case("Sigmoid4d", "Sigmoid", {in("x", {1, 17, 3, 5})}));
  cases.push_back(node_case("Relu", "Relu", {in("x", {2, 17})}, {}, kExact));
  cases.push_back(node_case("Identity", "Identity", {in("x", {5, 3})}, {}, kExact));
  cases.push_back(node_case("IdentityInt64", "Identity", {in("x", {4}, kI64)}, {}, kExact));
  cases.push_back(node_case("CastFloatToInt64", "Cast", {in("x", {3, 7})},
                            {{"to", attr_int(static_cast<int64_t>(kI64))}}, kExact)
                      .range("x", -50, 50));
  cases.push_back(node_case("CastFloatToInt32", "Cast", {in("x", {5, 3})},
                            {{"to", attr_int(static_cast<int64_t>(kI32))}}, kExact)
                      .range("x", -1000, 1000));
  cases.push_back(node_case("CastInt32ToFloat", "Cast", {in("x", {3, 7}, kI32)},
                            {{"to", attr_int(static_cast<int64_t>(kF32))}}, kExact)
                      .range("x", -100000, 100000));
  cases.push_back(node_case("CastInt64ToFloat", "Cast", {in("x", {6}, kI64)},
                            {{"to", attr_int(static_cast<int64_t>(kF32))}}, kExact));
  cases.push_back(node_case("CastFloatToFloat", "Cast", {in("x", {4, 5})},
                            {{"to", attr_int(static_cast<int64_t>(kF32))}}, kExact));
  cases.push_back({.name = "BatchNormalization", .build = [](std::mt19937& rng) {
                     const int64_t c = 17;
                     return single_node_graph(
                         "BatchNormalization",
                         {in("x", {3, c, 5, 7}),
                          cst("scale", random_tensor(kF32, {c}, rng, {-2, 2})),
                          cst("bias", random_tensor(kF32, {c}, rng, {-1, 1})),
                          cst("mean", random_tensor(kF32, {c}, rng, {-1, 1})),
                          cst("var", random_tensor(kF32, {c}, rng, {0.05, 2}))},
                         {{"epsilon", attr_float(1e-3f)}});
                   }});
  cases.push_back({.name = "BatchNormalizationRank2", .build = [](std::mt19937& rng) {
                     const int64_t c = 5;
                     return single_node_graph(
                         "BatchNormalization",
                         {in("x", {4, c}), cst("scale", random_tensor(kF32, {c}, rng, {-2, 2})),
                          cst("bias", random_tensor(kF32, {c}, rng, {-1, 1})),
                          cst("mean", random_tensor(kF32, {c}, rng, {-1, 1})),
                          cst("var", random_tensor(kF32, {c}, rng, {0.05, 2}))});
                   }});
}

void add_data_movement_cases(std::vector<OpCase>& cases) {
  cases.push_back(node_case("ConcatAxis0", "Concat",
                            {in("a", {2, 3, 4}), in("b", {1, 3, 4}), in("c", {3, 3, 4})},
                            {{"axis", attr_int(0)}}, kExact));
  cases.push_back(node_case("ConcatAxisNegative1", "Concat",
                            {in("a", {2, 3, 1}), in("b", {2, 3, 5})}, {{"axis", attr_int(-1)}},
                            kExact));
  cases.push_back(node_case("ConcatAxis2", "Concat", {in("a", {2, 3, 4, 5}), in("b", {2, 3, 1, 5})},
                            {{"axis", attr_int(2)}}, kExact));
  cases.push_back(node_case("ConcatAxis1Nchw", "Concat",
                            {in("a", {3, 5, 4, 3}), in("b", {3, 17, 4, 3})},
                            {{"axis", attr_int(1)}}, kExact));
  cases.push_back(node_case("ConcatInt64", "Concat",
                            {in("a", {1}, kI64), cst("b", int64s({-1, 85}))},
                            {{"axis", attr_int(0)}}, kExact));
  cases.push_back(node_case("SplitAttributeOpset12", "Split", {in("x", {3, 8, 5})},
                            {{"axis", attr_int(1)}, {"split", attr_ints({2, 5, 1})}}, kExact, 3,
                            12));
  cases.push_back(node_case("SplitInputOpset13", "Split",
                            {in("x", {4, 7}), cst("split", int64s({3, 1, 3}))},
                            {{"axis", attr_int(-1)}}, kExact, 3));
  cases.push_back(node_case("SplitEqual", "Split", {in("x", {6, 5})}, {}, kExact, 3));
  cases.push_back(node_case("SplitInt64", "Split", {in("x", {4}, kI64)}, {}, kExact, 2));
  cases.push_back(node_case("SliceNegativeStartsEndsSteps", "Slice",
                            {in("x", {6, 7, 8}), cst("starts", int64s({-1, -2, 1})),
                             cst("ends", int64s({kInt64Min, 0, 100})),
                             cst("axes", int64s({0, 2, 1})), cst("steps", int64s({-1, -3, 2}))},
                            {}, kExact));
  cases.push_back(
      node_case("SliceAxesOmitted", "Slice",
                {in("x", {5, 9}), cst("starts", int64s({1, -4})), cst("ends", int64s({-1, 1000}))},
                {}, kExact));
  cases.push_back(node_case("SliceNegativeAxisEmptyResult", "Slice",
                            {in("x", {3, 4, 5}), cst("starts", int64s({4})),
                             cst("ends", int64s({2})), cst("axes", int64s({-1}))},
                            {}, kExact));
  cases.push_back(
      node_case("SliceInt64", "Slice",
                {in("x", {4}, kI64), cst("starts", int64s({-3})), cst("ends", int64s({kInt64Max}))},
                {}, kExact));
  cases.push_back(node_case("GatherAxis0NegativeIndex", "Gather",
                            {in("x", {5, 4}), cst("i", int64s({-1, 0, 3, -5}))},
                            {{"axis", attr_int(0)}}, kExact));
  cases.push_back(node_case("GatherAxis1MatrixIndices", "Gather",
                            {in("x", {3, 5, 4}), cst("i", int64s({0, -1, 2, 1}, {2, 2}))},
                            {{"axis", attr_int(1)}}, kExact));
  cases.push_back(node_case("GatherScalarIndex", "Gather",
                            {in("x", {4, 6}), cst("i", int64_scalar(-2))}, {{"axis", attr_int(1)}},
                            kExact));
  cases.push_back(node_case("GatherInt32Indices", "Gather",
                            {in("x", {6, 3}), cst("i", Tensor::from_vector<int32_t>({5, -6, 2}))},
                            {}, kExact));
  cases.push_back(
      node_case("GatherIndicesInput", "Gather", {in("x", {7, 3}), in("i", {4}, kI64)}, {}, kExact)
          .range("i", -7, 6));
  cases.push_back(node_case("GatherInt64Data", "Gather",
                            {in("x", {4}, kI64), cst("i", int64_scalar(0))}, {}, kExact));
  cases.push_back(node_case("Shape", "Shape", {in("x", {2, 3, 5})}, {}, kExact));
  cases.push_back(node_case("ShapeStartEndOpset15", "Shape", {in("x", {2, 3, 5, 7})},
                            {{"start", attr_int(1)}, {"end", attr_int(-1)}}, kExact, 1, 15));
  cases.push_back(node_case("ShapeNegativeStartOpset15", "Shape", {in("x", {2, 3, 5, 7})},
                            {{"start", attr_int(-2)}}, kExact, 1, 15));
  cases.push_back(node_case("UnsqueezeAttributeOpset12", "Unsqueeze", {in("x", {3, 4})},
                            {{"axes", attr_ints({0, -1})}}, kExact, 1, 12));
  cases.push_back(node_case("UnsqueezeInputOpset13", "Unsqueeze",
                            {in("x", {3, 4}), cst("axes", int64s({1}))}, {}, kExact));
  cases.push_back(node_case("UnsqueezeScalarInt64", "Unsqueeze",
                            {in("x", {}, kI64), cst("axes", int64s({0}))}, {}, kExact));
  cases.push_back(node_case("SqueezeAttributeOpset12", "Squeeze", {in("x", {3, 1, 4, 1})},
                            {{"axes", attr_ints({1, 3})}}, kExact, 1, 12));
  cases.push_back(node_case("SqueezeInputOpset13", "Squeeze",
                            {in("x", {3, 1, 4, 1}), cst("axes", int64s({-1}))}, {}, kExact));
  cases.push_back(node_case("SqueezeAllOnes", "Squeeze", {in("x", {1, 3, 1, 5})}, {}, kExact));
  cases.push_back(node_case("Reshape0AndMinus1", "Reshape",
                            {in("x", {2, 3, 4, 5}), cst("shape", int64s({0, -1, 5}))}, {}, kExact));
  cases.push_back(node_case("ReshapeInt64", "Reshape",
                            {in("x", {6}, kI64), cst("shape", int64s({3, -1}))}, {}, kExact));
  cases.push_back(node_case("TransposeDefaultPerm", "Transpose", {in("x", {2, 3, 4})}, {}, kExact));
  cases.push_back(node_case("TransposePerm", "Transpose", {in("x", {2, 3, 4, 5})},
                            {{"perm", attr_ints({0, 2, 3, 1})}}, kExact));
  cases.push_back(node_case("TransposeInt8", "Transpose", {in("x", {3, 5}, kI8)}, {}, kExact));
  cases.push_back(
      node_case("MaxPoolK5S1P2", "MaxPool", {in("x", {3, 5, 11, 9})},
                {{"kernel_shape", attr_ints({5, 5})}, {"pads", attr_ints({2, 2, 2, 2})}}, kExact));
  cases.push_back(node_case("MaxPoolK2S2", "MaxPool", {in("x", {1, 17, 10, 11})},
                            {{"kernel_shape", attr_ints({2, 2})}, {"strides", attr_ints({2, 2})}},
                            kExact));
  cases.push_back(node_case("MaxPoolCeilModeDilated", "MaxPool", {in("x", {1, 5, 10, 10})},
                            {{"kernel_shape", attr_ints({3, 2})},
                             {"strides", attr_ints({2, 2})},
                             {"dilations", attr_ints({1, 2})},
                             {"ceil_mode", attr_int(1)}},
                            kExact));
  cases.push_back(node_case("MaxPoolInt8", "MaxPool", {in("x", {1, 3, 6, 7}, kI8)},
                            {{"kernel_shape", attr_ints({2, 2})}, {"strides", attr_ints({2, 2})}},
                            kExact)
                      .range("x", -128, 127));
  const Attributes asymmetric_floor = {
      {"mode", attr_string("nearest")},
      {"coordinate_transformation_mode", attr_string("asymmetric")},
      {"nearest_mode", attr_string("floor")}};
  cases.push_back(
      node_case("ResizeScalesAsymmetricFloor", "Resize",
                {in("x", {1, 5, 7, 9}), NodeInput::omitted(), cst("scales", floats({1, 1, 2, 2}))},
                asymmetric_floor, kExact));
  cases.push_back(node_case("ResizeSizes", "Resize",
                            {in("x", {3, 2, 5, 4}), NodeInput::omitted(), NodeInput::omitted(),
                             cst("sizes", int64s({3, 2, 8, 6}))},
                            {{"mode", attr_string("nearest")}}, kExact));
  cases.push_back(node_case(
      "ResizeHalfPixelRoundPreferFloor", "Resize",
      {in("x", {1, 3, 5, 4}), NodeInput::omitted(), cst("scales", floats({1, 1, 1.5f, 2.5f}))},
      {{"mode", attr_string("nearest")},
       {"coordinate_transformation_mode", attr_string("half_pixel")},
       {"nearest_mode", attr_string("round_prefer_floor")}},
      kExact));
  cases.push_back(node_case(
      "ResizeRank3", "Resize",
      {in("x", {2, 3, 4}), cst("roi", Tensor(kF32, {0})), cst("scales", floats({1, 2, 3}))},
      asymmetric_floor, kExact));
}

void add_constant_cases(std::vector<OpCase>& cases) {
  auto constant_then = [](std::string name, Attributes value, Shape x_shape, std::string op,
                          double tolerance = kFloatTolerance) {
    OpCase c;
    c.name = std::move(name);
    c.tolerance = tolerance;
    c.build = [=](std::mt19937&) {
      GraphBuilder b;
      b.input("x", x_shape);
      b.node("Constant", {}, {"c"}, value);
      b.node(op, {"x", "c"}, {"y"});
      b.output("y");
      return b.build();
    };
    return c;
  };
  cases.push_back(constant_then(
      "ConstantTensor", {{"value", attr_tensor(floats({0.5f, -1, 2, 3.25f, 4, -5}, {2, 3}))}},
      {4, 2, 3}, "Add"));
  cases.push_back(
      constant_then("ConstantValueFloat", {{"value_float", attr_float(1.5f)}}, {3, 5}, "Mul"));
  cases.push_back(constant_then("ConstantValueFloats", {{"value_floats", attr_floats({1, 2, 3})}},
                                {2, 3}, "Sub"));
  cases.push_back(constant_then("ConstantValueInts", {{"value_ints", attr_ints({-1, 6})}},
                                {2, 3, 4}, "Reshape", kExact));
  cases.push_back({.name = "ConstantValueIntAsIndex",
                   .build =
                       [](std::mt19937&) {
                         GraphBuilder b;
                         b.input("x", {4, 5});
                         b.node("Constant", {}, {"i"}, {{"value_int", attr_int(-1)}});
                         b.node("Gather", {"x", "i"}, {"y"}, {{"axis", attr_int(1)}});
                         b.output("y");
                         return b.build();
                       },
                   .tolerance = kExact});
  cases.push_back({.name = "ConstantAsGraphOutput",
                   .build =
                       [](std::mt19937&) {
                         GraphBuilder b;
                         b.input("x", {2});
                         b.node("Constant", {}, {"c"}, {{"value", attr_tensor(int64s({7, -7}))}});
                         b.node("Identity", {"x"}, {"y"});
                         b.output("c").output("y");
                         return b.build();
                       },
                   .tolerance = kExact});
}

void add_quantize_cases(std::vector<OpCase>& cases) {
  const std::vector<float> channel_scales = {0.02f, 0.05f, 0.1f, 0.0125f, 0.03f};
  auto q_case = [](std::string name, std::vector<NodeInput> inputs, Attributes attributes,
                   InputFn make_inputs) {
    OpCase c = node_case(std::move(name), "QuantizeLinear", std::move(inputs),
                         std::move(attributes), kExact);
    c.make_inputs = std::move(make_inputs);
    return c;
  };
  cases.push_back(q_case("QuantizeLinearPerTensorInt8",
                         {in("x", {3, 5, 7}), cst("s", float_scalar(0.05f)), cst("z", int8s({-3}))},
                         {}, quantizable_inputs({0.05f})));
  cases.push_back(q_case("QuantizeLinearPerTensorUInt8",
                         {in("x", {2, 17}), cst("s", float_scalar(0.03f)), cst("z", uint8s({128}))},
                         {}, quantizable_inputs({0.03f})));
  cases.push_back(q_case("QuantizeLinearNoZeroPoint",
                         {in("x", {2, 17}), cst("s", float_scalar(0.03f))}, {},
                         quantizable_inputs({0.03f})));
  cases.push_back(q_case("QuantizeLinearScaleShape1",
                         {in("x", {4, 6}), cst("s", floats({0.1f}, {1})),
                          cst("z", Tensor::from_vector<int8_t>({0}, {1}))},
                         {}, quantizable_inputs({0.1f})));
  cases.push_back(q_case("QuantizeLinearPerChannelAxis0Int8",
                         {in("x", {5, 3, 2, 2}), cst("s", floats(channel_scales)),
                          cst("z", int8s({0, -5, 3, 10, -128}))},
                         {{"axis", attr_int(0)}}, quantizable_inputs(channel_scales, 0)));
  cases.push_back(q_case("QuantizeLinearPerChannelAxis1UInt8",
                         {in("x", {2, 5, 3, 3}), cst("s", floats(channel_scales)),
                          cst("z", uint8s({128, 0, 255, 100, 7}))},
                         {}, quantizable_inputs(channel_scales, 1)));
  auto dq_case = [](std::string name, std::vector<NodeInput> inputs, Attributes attributes,
                    double lo, double hi) {
    return node_case(std::move(name), "DequantizeLinear", std::move(inputs), std::move(attributes))
        .range("x", lo, hi);
  };
  cases.push_back(dq_case(
      "DequantizeLinearPerTensorInt8",
      {in("x", {4, 6}, kI8), cst("s", float_scalar(0.1f)), cst("z", int8s({5}))}, {}, -128, 127));
  cases.push_back(dq_case(
      "DequantizeLinearPerTensorUInt8",
      {in("x", {4, 6}, kU8), cst("s", float_scalar(0.037f)), cst("z", uint8s({128}))}, {}, 0, 255));
  cases.push_back(dq_case("DequantizeLinearNoZeroPoint",
                          {in("x", {3, 5}, kU8), cst("s", float_scalar(0.5f))}, {}, 0, 255));
  cases.push_back(dq_case("DequantizeLinearPerChannelAxis0Int8",
                          {in("x", {5, 3, 3, 3}, kI8), cst("s", floats(channel_scales)),
                           cst("z", int8s({0, 1, -1, 50, -50}))},
                          {{"axis", attr_int(0)}}, -128, 127));
  cases.push_back(dq_case("DequantizeLinearPerChannelAxis1UInt8",
                          {in("x", {2, 5, 4}, kU8), cst("s", floats(channel_scales)),
                           cst("z", uint8s({0, 1, 128, 200, 255}))},
                          {}, 0, 255));
  auto fake_quant = [](std::string name, Shape shape, Tensor scale, Tensor zero, int64_t axis,
                       std::vector<float> scales) {
    OpCase c;
    c.name = std::move(name);
    c.make_inputs = quantizable_inputs(scales, axis);
    c.build = [=](std::mt19937&) {
      GraphBuilder b;
      b.input("x", shape);
      b.initializer("s", scale);
      b.initializer("z", zero);
      const Attributes attributes = {{"axis", attr_int(axis)}};
      b.node("QuantizeLinear", {"x", "s", "z"}, {"q"}, attributes);
      b.node("DequantizeLinear", {"q", "s", "z"}, {"y"}, attributes);
      b.output("q").output("y");
      return b.build();
    };
    return c;
  };
  cases.push_back(fake_quant("QdqFakeQuantPerTensorInt8", {3, 17, 5}, float_scalar(0.04f),
                             int8s({2}), 1, {0.04f}));
  cases.push_back(fake_quant("QdqFakeQuantPerChannelAxis0UInt8", {5, 4, 3}, floats(channel_scales),
                             uint8s({128, 0, 255, 60, 130}), 0, channel_scales));
}

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = [] {
    std::vector<OpCase> all;
    add_conv_cases(all);
    add_layout_cases(all);
    add_elementwise_cases(all);
    add_data_movement_cases(all);
    add_constant_cases(all);
    add_quantize_cases(all);
    return all;
  }();
  return cases;
}

std::vector<std::string> op_case_names() {
  std::vector<std::string> names;
  for (const OpCase& c : op_cases()) names.push_back(c.name);
  return names;
}

const OpCase& find_case(const std::string& name) {
  for (const OpCase& c : op_cases()) {
    if (c.name == name) return c;
  }
  static const OpCase none;
  ADD_FAILURE() << "no case named " << name;
  return none;
}

// ---------------------------------------------------------------------------------------------
// The executor against the reference

class OpCaseTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OpCaseTest, MatchesReference) {
  const OpCase& c = find_case(GetParam());
  ASSERT_TRUE(c.build);
  for (uint32_t seed : kSeeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const Graph graph = c.build(rng);
    auto executor = CpuExecutor::create(graph, c.options);
    ASSERT_TRUE(executor) << executor.status().message();
    executor.value()->set_profiling(true);
    // Two runs on one executor: buffers are reused, so stale state would show.
    for (int run = 0; run < 2; ++run) {
      const auto inputs =
          c.make_inputs ? c.make_inputs(graph, rng) : random_inputs(graph, rng, c.ranges);
      EXPECT_TRUE(matches_reference(**executor, graph, inputs, c.tolerance)) << "run " << run;
    }
    if (!c.expected_steps.empty()) {
      EXPECT_EQ(step_labels(**executor), c.expected_steps);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpCaseTest, ::testing::ValuesIn(op_case_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// A new op without a case fails here, not silently.
TEST(OpCoverage, EveryOpHasACase) {
  std::set<std::string> covered, names;
  for (const OpCase& c : op_cases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "case name repeated: " << c.name;
    std::mt19937 rng(0);
    for (const Node& node : c.build(rng).nodes) covered.insert(node.op_type);
  }
  for (const OpDef& op : all_ops()) {
    EXPECT_TRUE(covered.count(op.name)) << "op " << op.name << " has no case in test_ops.cpp";
  }
}

TEST(OpHarness, CompareReportsNormalizedErrorAndNmse) {
  const Tensor reference = Tensor::from_vector(std::vector<double>{1.0, -4.0, 2.0});
  const Tensor actual = floats({1.0f, -4.0f, 2.5f});
  auto stats = compare_tensors(actual, reference);
  ASSERT_TRUE(stats) << stats.status().message();
  EXPECT_DOUBLE_EQ(stats->max_abs_error, 0.5);
  EXPECT_DOUBLE_EQ(stats->normalized, 0.5 / 4.0);
  EXPECT_DOUBLE_EQ(stats->nmse, 0.25 / 21.0);
  EXPECT_EQ(stats->worst_index, 2);
  EXPECT_EQ(stats->mismatches, 1);
  EXPECT_FALSE(within_tolerance("y", actual, reference, 0.1));
  EXPECT_TRUE(within_tolerance("y", actual, reference, 0.2));
  EXPECT_FALSE(within_tolerance("y", actual, reference, kExact));
  // A NaN on one side only is an infinite error, never a pass.
  const Tensor nan = floats({1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f});
  EXPECT_FALSE(within_tolerance("y", nan, reference, 1e30));
  EXPECT_FALSE(within_tolerance("y", floats({1, 2}), reference, 1.0));
  EXPECT_FALSE(within_tolerance("y", int64s({1, -4, 2}), reference, 1.0));
}

TEST(OpHarness, ReferenceRunsInFloat64) {
  GraphBuilder b;
  b.input("x", {3});
  b.node("Constant", {}, {"c"}, {{"value_float", attr_float(0.1f)}});
  b.node("Add", {"x", "c"}, {"y"});
  b.output("y");
  auto result = run_graph_reference(b.build(), {{"x", floats({1, 2, 3})}});
  ASSERT_TRUE(result) << result.status().message();
  const Tensor& y = result->at("y");
  ASSERT_EQ(y.dtype(), DType::kFloat64);
  EXPECT_EQ(y.data<double>()[0], 1.0 + static_cast<double>(0.1f));
}

// ---------------------------------------------------------------------------------------------
// Known answers: cases where the reference itself is what is being checked.

// Runs `graph` on the executor and the reference and expects both to equal `expected`.
void expect_known_answer(const Graph& graph, const std::map<std::string, Tensor>& inputs,
                         const Tensor& expected, const std::string& output = "y") {
  auto executor = CpuExecutor::create(graph);
  ASSERT_TRUE(executor) << executor.status().message();
  auto actual = executor.value()->run(inputs);
  ASSERT_TRUE(actual) << actual.status().message();
  EXPECT_TRUE(within_tolerance("executor " + output, actual->at(output), expected, kExact));
  auto reference = run_graph_reference(graph, inputs);
  ASSERT_TRUE(reference) << reference.status().message();
  EXPECT_TRUE(within_tolerance("reference " + output, reference->at(output), expected, kExact));
}

TEST(QuantizeLinear, RoundsHalfToEvenThenAddsZeroPointAndSaturates) {
  // A scale of 0.5 is exact, so x / scale lands on exact .5 ties.
  const Tensor x = floats({1.25f, 1.75f, -1.25f, -1.75f, 0.25f, 0.75f, 100.0f, -100.0f, 63.5f,
                           64.0f, -64.25f, -64.75f});
  const std::map<std::string, Tensor> inputs = {{"x", x}};
  auto graph = [](Tensor zero) {
    return single_node_graph("QuantizeLinear",
                             {in("x", {12}), cst("s", float_scalar(0.5f)), cst("z", zero)});
  };
  expect_known_answer(graph(int8s({0})), inputs,
                      int8s({2, 4, -2, -4, 0, 2, 127, -128, 127, 127, -128, -128}));
  expect_known_answer(graph(uint8s({128})), inputs,
                      uint8s({130, 132, 126, 124, 128, 130, 255, 0, 255, 255, 0, 0}));
  // Rounding comes before the zero point: 0.5 -> 0, then + 1 (not 1.5 -> 2).
  expect_known_answer(graph(int8s({1})), inputs,
                      int8s({3, 5, -1, -3, 1, 3, 127, -128, 127, 127, -127, -128}));
}

TEST(QuantizeLinear, PerChannelAxis0KnownAnswer) {
  const Graph graph = single_node_graph(
      "QuantizeLinear",
      {in("x", {2, 3}), cst("s", floats({0.5f, 2.0f})), cst("z", int8s({0, -10}))},
      {{"axis", attr_int(0)}});
  expect_known_answer(graph, {{"x", floats({1.25f, -0.75f, 300.0f, 5.0f, 3.0f, -300.0f}, {2, 3})}},
                      Tensor::from_vector<int8_t>({2, -2, 127, -8, -8, -128}, {2, 3}));
}

TEST(DequantizeLinear, PerChannelKnownAnswer) {
  const Graph graph = single_node_graph(
      "DequantizeLinear",
      {in("x", {2, 2}, kU8), cst("s", floats({0.5f, 0.25f})), cst("z", uint8s({128, 0}))},
      {{"axis", attr_int(0)}});
  expect_known_answer(graph, {{"x", Tensor::from_vector<uint8_t>({0, 255, 4, 8}, {2, 2})}},
                      floats({-64.0f, 63.5f, 1.0f, 2.0f}, {2, 2}));
}

TEST(Slice, NegativeStepsKnownAnswer) {
  const Tensor x = floats({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto graph = [](int64_t start, int64_t end, int64_t step) {
    return single_node_graph(
        "Slice", {in("x", {10}), cst("starts", int64s({start})), cst("ends", int64s({end})),
                  cst("axes", int64s({0})), cst("steps", int64s({step}))});
  };
  expect_known_answer(graph(-1, kInt64Min, -2), {{"x", x}}, floats({9, 7, 5, 3, 1}));
  expect_known_answer(graph(100, -12, -3), {{"x", x}}, floats({9, 6, 3, 0}));
  expect_known_answer(graph(-3, 1, -1), {{"x", x}}, floats({7, 6, 5, 4, 3, 2}));
  expect_known_answer(graph(-100, -7, 2), {{"x", x}}, floats({0, 2}));
}

TEST(Gather, NegativeAndScalarIndicesKnownAnswer) {
  const Tensor x = floats({10, 11, 12, 20, 21, 22}, {2, 3});
  expect_known_answer(single_node_graph("Gather", {in("x", {2, 3}), cst("i", int64s({-1, 0, -3}))},
                                        {{"axis", attr_int(1)}}),
                      {{"x", x}}, floats({12, 10, 10, 22, 20, 20}, {2, 3}));
  expect_known_answer(single_node_graph("Gather", {in("x", {2, 3}), cst("i", int64_scalar(-1))}),
                      {{"x", x}}, floats({20, 21, 22}));
}

// A 1x1 conv with identity weights passes values through exactly, so the NHWC kernels after
// it can be checked against known answers too.
Graph identity_conv_then(int64_t channels, Shape input, const std::string& op,
                         std::vector<std::pair<std::string, Tensor>> constants,
                         std::vector<std::string> extra_inputs, Attributes attributes) {
  GraphBuilder b;
  b.input("x", input);
  Tensor weight(kF32, {channels, channels, 1, 1});
  for (int64_t c = 0; c < channels; ++c) weight.data<float>()[c * channels + c] = 1.0f;
  b.initializer("w", weight);
  b.node("Conv", {"x", "w"}, {"c"}, {{"kernel_shape", attr_ints({1, 1})}});
  for (auto& [name, value] : constants) b.initializer(name, value);
  std::vector<std::string> inputs = {"c"};
  inputs.insert(inputs.end(), extra_inputs.begin(), extra_inputs.end());
  b.node(op, inputs, {"y"}, std::move(attributes));
  b.output("y");
  return b.build();
}

TEST(Resize, NearestModesKnownAnswer) {
  // One row of 4 values resized along W, once on NCHW input and once after an NHWC conv.
  const Tensor x = floats({0, 1, 2, 3}, {1, 1, 1, 4});
  auto check = [&](Attributes attributes, std::vector<std::pair<std::string, Tensor>> constants,
                   std::vector<std::string> extra, const std::vector<float>& expected) {
    const Tensor want = floats(expected, {1, 1, 1, static_cast<int64_t>(expected.size())});
    std::vector<NodeInput> node_inputs = {in("x", {1, 1, 1, 4})};
    for (const auto& name : extra) {
      bool found = false;
      for (const auto& [constant_name, value] : constants) {
        if (constant_name == name) {
          node_inputs.push_back(cst(name, value));
          found = true;
        }
      }
      if (!found) node_inputs.push_back(NodeInput::omitted());
    }
    SCOPED_TRACE("NCHW");
    expect_known_answer(single_node_graph("Resize", node_inputs, attributes), {{"x", x}}, want);
    SCOPED_TRACE("NHWC after conv");
    const Graph graph = identity_conv_then(1, {1, 1, 1, 4}, "Resize", constants, extra, attributes);
    expect_known_answer(graph, {{"x", x}}, want);
  };
  check({{"mode", attr_string("nearest")},
         {"coordinate_transformation_mode", attr_string("asymmetric")},
         {"nearest_mode", attr_string("floor")}},
        {{"scales", floats({1, 1, 1, 2})}}, {"", "scales"}, {0, 0, 1, 1, 2, 2, 3, 3});
  // half_pixel with 4 -> 6: source x = (o + 0.5) / 1.5 - 0.5 = -1/6, 0.5, 7/6, 11/6, 2.5, 19/6;
  // the ties at 0.5 and 2.5 go down.
  check({{"mode", attr_string("nearest")},
         {"coordinate_transformation_mode", attr_string("half_pixel")},
         {"nearest_mode", attr_string("round_prefer_floor")}},
        {{"sizes", int64s({1, 1, 1, 6})}}, {"", "", "sizes"}, {0, 0, 1, 2, 2, 3});
  check({{"mode", attr_string("nearest")},
         {"coordinate_transformation_mode", attr_string("half_pixel")},
         {"nearest_mode", attr_string("round_prefer_ceil")}},
        {{"sizes", int64s({1, 1, 1, 6})}}, {"", "", "sizes"}, {0, 1, 1, 2, 3, 3});
  check({{"mode", attr_string("nearest")},
         {"coordinate_transformation_mode", attr_string("align_corners")},
         {"nearest_mode", attr_string("round_prefer_floor")}},
        {{"sizes", int64s({1, 1, 1, 7})}}, {"", "", "sizes"}, {0, 0, 1, 1, 2, 2, 3});
}

TEST(MaxPool, CeilModeKnownAnswer) {
  std::vector<float> values(25);
  for (int i = 0; i < 25; ++i) values[i] = static_cast<float>(i);
  const Tensor x = floats(values, {1, 1, 5, 5});
  const Attributes attributes = {{"kernel_shape", attr_ints({2, 2})},
                                 {"strides", attr_ints({2, 2})},
                                 {"ceil_mode", attr_int(1)}};
  const Tensor want = floats({6, 8, 9, 16, 18, 19, 21, 23, 24}, {1, 1, 3, 3});
  expect_known_answer(single_node_graph("MaxPool", {in("x", {1, 1, 5, 5})}, attributes), {{"x", x}},
                      want);
  expect_known_answer(identity_conv_then(1, {1, 1, 5, 5}, "MaxPool", {}, {}, attributes),
                      {{"x", x}}, want);
}

// ---------------------------------------------------------------------------------------------
// Shape folding

Graph shape_math_graph(Shape input) {
  GraphBuilder b;
  b.input("x", input);
  b.initializer("zero", int64_scalar(0));
  b.initializer("axes", int64s({0}));
  b.initializer("minus_one", int64s({-1}));
  b.node("Shape", {"x"}, {"dims"});
  b.node("Gather", {"dims", "zero"}, {"batch"}, {{"axis", attr_int(0)}});
  b.node("Unsqueeze", {"batch", "axes"}, {"batch1"});
  b.node("Concat", {"batch1", "minus_one"}, {"target"}, {{"axis", attr_int(0)}});
  b.node("Reshape", {"x", "target"}, {"y"});
  b.output("y");
  return b.build();
}

TEST(ShapeInference, FoldsShapeGatherUnsqueezeConcatIntoReshapeTarget) {
  const Graph graph = shape_math_graph({2, 3, 4, 5});
  auto info = infer_shapes(graph);
  ASSERT_TRUE(info) << info.status().message();
  const Tensor* target = info->constant("target");
  ASSERT_NE(target, nullptr);
  EXPECT_EQ(target->to_int64(), (std::vector<int64_t>{2, -1}));
  ASSERT_NE(info->find("y"), nullptr);
  EXPECT_EQ(info->find("y")->shape, (Shape{2, 60}));
  EXPECT_EQ(info->find("y")->dtype, kF32);

  // Only the Reshape is left to run.
  auto executor = CpuExecutor::create(graph);
  ASSERT_TRUE(executor) << executor.status().message();
  EXPECT_EQ(executor.value()->num_steps(), 1u);
  std::mt19937 rng(7);
  EXPECT_TRUE(matches_reference(**executor, graph, random_inputs(graph, rng), kExact));
}

TEST(ShapeInference, FoldsWithAnOverriddenBatch) {
  const Graph graph = shape_math_graph({-1, 3, 4, 5});
  EXPECT_FALSE(infer_shapes(graph));  // unknown batch, no override
  auto info = infer_shapes(graph, {{"x", {3, 3, 4, 5}}});
  ASSERT_TRUE(info) << info.status().message();
  EXPECT_EQ(info->find("y")->shape, (Shape{3, 60}));

  ExecutorOptions options;
  options.input_shapes = {{"x", {3, 3, 4, 5}}};
  auto executor = CpuExecutor::create(graph, options);
  ASSERT_TRUE(executor) << executor.status().message();
  std::mt19937 rng(8);
  std::map<std::string, Tensor> inputs = {{"x", random_tensor(kF32, {3, 3, 4, 5}, rng)}};
  auto actual = executor.value()->run(inputs);
  ASSERT_TRUE(actual) << actual.status().message();
  EXPECT_EQ(actual->at("y").shape(), (Shape{3, 60}));
}

// ---------------------------------------------------------------------------------------------
// Errors

// Expects an error whose one-line message contains every word.
template <typename T>
void expect_error(const Expected<T>& result, const std::vector<std::string>& words) {
  ASSERT_FALSE(result.has_value()) << "expected an error mentioning " << words.front();
  const std::string message = result.status().message();
  for (const auto& word : words) EXPECT_NE(message.find(word), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
}

TEST(OpErrors, UnknownOpNamesNodeAndOp) {
  GraphBuilder b;
  b.input("x", {1, 3});
  b.node("Softmaxx", {"x"}, {"y"}, {}, "head/softmax");
  b.output("y");
  expect_error(CpuExecutor::create(b.build()), {"Softmaxx", "head/softmax"});
  Node node;
  node.op_type = "Softmaxx";
  node.name = "alone";
  const Tensor x = floats({1, 2});
  expect_error(run_reference(node, 13, {&x}), {"Softmaxx", "alone"});
}

TEST(OpErrors, ConvChannelMismatchNamesNodeAndInput) {
  std::mt19937 rng(1);
  const Graph graph = single_node_graph(
      "Conv",
      {in("images", {1, 4, 8, 8}), cst("stem.weight", random_tensor(kF32, {8, 3, 3, 3}, rng))},
      {{"kernel_shape", attr_ints({3, 3})}});
  expect_error(CpuExecutor::create(graph), {"Conv 'Conv'", "'images'", "stem.weight", "4", "3"});
}

TEST(OpErrors, ReshapeToImpossibleShapeNamesNode) {
  GraphBuilder b;
  b.input("x", {2, 3, 5});
  b.initializer("shape", int64s({4, -1}));
  b.node("Reshape", {"x", "shape"}, {"y"}, {}, "/model/reshape_bad");
  b.output("y");
  expect_error(CpuExecutor::create(b.build()), {"Reshape '/model/reshape_bad'", "2x3x5"});
  GraphBuilder b2;
  b2.input("x", {2, 3, 5});
  b2.initializer("shape", int64s({7, 5}));
  b2.node("Reshape", {"x", "shape"}, {"y"}, {}, "reshape_count");
  b2.output("y");
  expect_error(CpuExecutor::create(b2.build()), {"reshape_count", "30", "7x5"});
}

TEST(OpErrors, RunChecksInputsByName) {
  const Graph graph = single_node_graph("Relu", {in("images", {1, 3, 8, 8})});
  auto executor = CpuExecutor::create(graph);
  ASSERT_TRUE(executor) << executor.status().message();
  CpuExecutor& run = **executor;
  expect_error(run.run({}), {"'images'", "float32", "1x3x8x8", "missing"});
  expect_error(run.run({{"images", Tensor(kI64, {1, 3, 8, 8})}}),
               {"'images'", "int64 1x3x8x8", "expected float32 1x3x8x8"});
  expect_error(run.run({{"images", Tensor(kF32, {1, 3, 4, 4})}}),
               {"'images'", "float32 1x3x4x4", "expected float32 1x3x8x8"});
  expect_error(run.run({{"images", Tensor(kF32, {1, 3, 8, 8})}, {"extra", Tensor(kF32, {1})}}),
               {"'extra'", "images"});
  // A failed run leaves the executor usable.
  EXPECT_TRUE(run.run({{"images", Tensor(kF32, {1, 3, 8, 8})}}));
}

TEST(OpErrors, BadAttributesAndInputsNameTheNode) {
  expect_error(CpuExecutor::create(single_node_graph("Concat", {in("a", {2, 3}), in("b", {2, 4})},
                                                     {{"axis", attr_int(0)}})),
               {"Concat 'Concat'", "'b'"});
  expect_error(CpuExecutor::create(single_node_graph("Add", {in("a", {2, 3}), in("b", {4})})),
               {"Add 'Add'", "2x3", "4"});
  expect_error(CpuExecutor::create(single_node_graph("Split", {in("x", {7, 2})}, {}, 2)),
               {"Split 'Split'", "7"});
  expect_error(CpuExecutor::create(single_node_graph("Squeeze", {in("x", {3, 2})},
                                                     {{"axes", attr_ints({1})}}, 1, 12)),
               {"Squeeze 'Squeeze'", "axis 1"});
  expect_error(CpuExecutor::create(single_node_graph("Transpose", {in("x", {3, 2})},
                                                     {{"perm", attr_ints({0, 0})}})),
               {"Transpose 'Transpose'", "perm"});
}

TEST(Fusion, DisabledByEnvironment) {
  std::mt19937 rng(3);
  GraphBuilder b;
  b.input("x", {1, 5, 6, 7});
  b.output(add_conv(b, rng, "x", {.in_channels = 5, .out_channels = 9, .activation = "silu"}));
  const Graph graph = b.build();
  ::setenv("QYOLO_DISABLE_FUSION", "1", 1);
  auto unfused = CpuExecutor::create(graph);
  ::unsetenv("QYOLO_DISABLE_FUSION");
  auto fused = CpuExecutor::create(graph);
  ASSERT_TRUE(unfused && fused);
  EXPECT_EQ(step_labels(**unfused), "Reorder>NHWC,Conv,Sigmoid,Mul,Reorder>NCHW");
  EXPECT_EQ(step_labels(**fused), "Reorder>NHWC,Conv+SiLU,Reorder>NCHW");
  const auto inputs = random_inputs(graph, rng);
  auto a = unfused.value()->run(inputs);
  auto c = fused.value()->run(inputs);
  ASSERT_TRUE(a && c);
  EXPECT_TRUE(within_tolerance("fused vs unfused", c->at(graph.outputs[0].name),
                               a->at(graph.outputs[0].name), kFloatTolerance));
}

}  // namespace
}  // namespace qyolo
