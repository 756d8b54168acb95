// The INT8 CPU reference backend against a float64 model of the same quantized arithmetic:
// integer paths (MaxPool, Resize, the int32 accumulation) exact, float epilogues within one
// quantization step, FP16 fallback, precision decisions, and yolov5n end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qyolo/executor.h"
#include "qyolo/int8.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"
#include "test_util.h"

namespace qyolo {
namespace {

ValueInfo value(const std::string& name, Shape shape) {
  ValueInfo v;
  v.name = name;
  v.dtype = DType::kFloat32;
  v.has_shape = true;
  v.shape = shape;
  v.dim_params.assign(shape.size(), "");
  return v;
}

Node node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out,
          std::map<std::string, Attribute> attributes = {}) {
  Node n;
  n.name = op + "_" + out[0];
  n.op_type = op;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  n.attributes = std::move(attributes);
  return n;
}

Tensor random_tensor(Shape shape, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(DType::kFloat32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

int8_t q8(double x, double s) {
  return static_cast<int8_t>(std::clamp(std::nearbyint(x / s), -128.0, 127.0));
}

// Conv (+SiLU) in the float64 model: integer accumulation, double epilogue.
std::vector<int8_t> expected_conv(const Tensor& x, float sx, const Tensor& w, const Tensor& b,
                                  int stride, int pad, bool silu, float sy, Shape& out_shape) {
  const Shape& xs = x.shape();
  const Shape& ws = w.shape();
  const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3], o = ws[0], k = ws[2];
  const int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
  out_shape = {n, o, oh, ow};
  std::vector<double> sw(o);
  std::vector<int8_t> qw(w.numel());
  for (int64_t oc = 0; oc < o; ++oc) {
    float amax = 0;
    for (int64_t i = 0; i < c * k * k; ++i)
      amax = std::max(amax, std::abs(w.data<float>()[oc * c * k * k + i]));
    sw[oc] = amax / 127.0f;
    for (int64_t i = 0; i < c * k * k; ++i) {
      qw[oc * c * k * k + i] = q8(w.data<float>()[oc * c * k * k + i], static_cast<float>(sw[oc]));
    }
  }
  std::vector<int8_t> qx(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) qx[i] = q8(x.data<float>()[i], sx);
  std::vector<int8_t> y(n * o * oh * ow);
  for (int64_t b0 = 0; b0 < n; ++b0)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t yy = 0; yy < oh; ++yy)
        for (int64_t xx = 0; xx < ow; ++xx) {
          int64_t acc = 0;
          for (int64_t ic = 0; ic < c; ++ic)
            for (int64_t ky = 0; ky < k; ++ky)
              for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t iy = yy * stride - pad + ky, ix = xx * stride - pad + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += int64_t{qx[((b0 * c + ic) * h + iy) * wd + ix]} *
                       qw[((oc * c + ic) * k + ky) * k + kx];
              }
          double v =
              static_cast<double>(acc) * (double(sx) * double(float(sw[oc]))) + b.data<float>()[oc];
          if (silu) v = v / (1.0 + std::exp(-v));
          y[((b0 * o + oc) * oh + yy) * ow + xx] = q8(v, sy);
        }
  return y;
}

// Runs a graph whose one output is int8-quantized inside; returns the output re-quantized.
std::vector<int8_t> run_int8(const Graph& g, const Int8Options& options, const Tensor& x,
                             float output_scale, Int8Executor** keep = nullptr) {
  auto exec = Int8Executor::create(g, options);
  EXPECT_TRUE(exec) << exec.status().message();
  if (!exec) return {};
  auto out = (*exec)->run({{g.inputs[0].name, x}});
  EXPECT_TRUE(out) << out.status().message();
  const Tensor& y = out->begin()->second;
  std::vector<int8_t> q(y.numel());
  for (int64_t i = 0; i < y.numel(); ++i) q[i] = q8(y.data<float>()[i], output_scale);
  return q;
}

struct Agreement {
  int64_t exact = 0, off_by_one = 0, worse = 0;
};
Agreement agree(const std::vector<int8_t>& a, const std::vector<int8_t>& b) {
  Agreement r;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const int d = std::abs(int(a[i]) - int(b[i]));
    (d == 0 ? r.exact : d == 1 ? r.off_by_one : r.worse)++;
  }
  return r;
}

class ConvInt8 : public ::testing::TestWithParam<std::tuple<int, int, int, bool>> {};

TEST_P(ConvInt8, MatchesTheFloat64Model) {
  const auto [k, stride, channels, silu] = GetParam();
  const int pad = k / 2;
  Graph g;
  g.inputs = {value("x", {2, channels, 13, 11})};
  g.initializers["w"] = random_tensor({17, channels, k, k}, 1);
  g.initializers["b"] = random_tensor({17}, 2, -0.5f, 0.5f);
  g.nodes.push_back(node("Conv", {"x", "w", "b"}, {"c"},
                         {{"kernel_shape", Attribute::of_ints({k, k})},
                          {"strides", Attribute::of_ints({stride, stride})},
                          {"pads", Attribute::of_ints({pad, pad, pad, pad})}}));
  std::string out = "c";
  if (silu) {
    g.nodes.push_back(node("Sigmoid", {"c"}, {"s"}));
    g.nodes.push_back(node("Mul", {"c", "s"}, {"y"}));
    out = "y";
  }
  g.outputs = {value(out, {})};
  const Tensor x = random_tensor({2, channels, 13, 11}, 3, -2.0f, 2.0f);
  Int8Options options;
  options.scales = {{"x", 2.0f / 127}, {out, 1.7f / 127}};
  Int8Executor* exec = nullptr;
  const auto got = run_int8(g, options, x, 1.7f / 127, &exec);
  Shape shape;
  const auto want = expected_conv(x, 2.0f / 127, g.initializers["w"], g.initializers["b"], stride,
                                  pad, silu, 1.7f / 127, shape);
  const Agreement a = agree(got, want);
  EXPECT_EQ(a.worse, 0);
  // float32 vs float64 epilogues may round a value lying next to .5 the other way.
  EXPECT_LE(a.off_by_one, static_cast<int64_t>(want.size() / 200 + 1)) << a.exact;
}

INSTANTIATE_TEST_SUITE_P(Shapes, ConvInt8,
                         ::testing::Values(std::make_tuple(1, 1, 5, true),
                                           std::make_tuple(3, 1, 16, true),
                                           std::make_tuple(3, 2, 33, true),
                                           std::make_tuple(6, 2, 3, true),
                                           std::make_tuple(1, 1, 8, false)));

TEST(Int8, MaxPoolAndResizeAreExactOnQuantizedValues) {
  Graph g;
  g.opset_imports = {{"", 13}};
  g.inputs = {value("x", {1, 3, 8, 8})};
  g.initializers["scales"] = Tensor::from_vector(std::vector<float>{1, 1, 2, 2});
  g.nodes.push_back(node(
      "MaxPool", {"x"}, {"p"},
      {{"kernel_shape", Attribute::of_ints({5, 5})}, {"pads", Attribute::of_ints({2, 2, 2, 2})}}));
  g.nodes.push_back(node("Resize", {"p", "", "scales"}, {"r"},
                         {{"mode", Attribute::of_string("nearest")},
                          {"coordinate_transformation_mode", Attribute::of_string("asymmetric")},
                          {"nearest_mode", Attribute::of_string("floor")}}));
  g.outputs = {value("r", {})};
  const float s = 1.0f / 127;
  Int8Options options;
  options.scales = {{"x", s}, {"p", s}, {"r", s}};
  const Tensor x = random_tensor({1, 3, 8, 8}, 5);
  const auto got = run_int8(g, options, x, s);
  // Quantization is monotonic, so max then quantize = quantize then max; the resize copies.
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 16; ++y)
      for (int64_t xx = 0; xx < 16; ++xx) {
        float best = -1e9f;
        for (int64_t dy = -2; dy <= 2; ++dy)
          for (int64_t dx = -2; dx <= 2; ++dx) {
            const int64_t iy = y / 2 + dy, ix = xx / 2 + dx;
            if (iy >= 0 && iy < 8 && ix >= 0 && ix < 8)
              best = std::max(best, x.data<float>()[(c * 8 + iy) * 8 + ix]);
          }
        ASSERT_EQ(got[(c * 16 + y) * 16 + xx], q8(best, s)) << c << " " << y << " " << xx;
      }
}

TEST(Int8, ConcatAddSigmoidRequantizeAsTheFloat64Model) {
  Graph g;
  g.inputs = {value("a", {1, 4, 3, 3}), value("b", {1, 4, 3, 3})};
  g.nodes.push_back(node("Add", {"a", "b"}, {"sum"}));
  g.nodes.push_back(node("Sigmoid", {"sum"}, {"sig"}));
  g.nodes.push_back(node("Concat", {"a", "sig"}, {"cat"}, {{"axis", Attribute::of_int(1)}}));
  g.outputs = {value("cat", {})};
  Int8Options options;
  const float sa = 1.0f / 127, sb = 0.5f / 127, ss = 2.0f / 127, sg = 1.0f / 127, sc = 1.5f / 127;
  options.scales = {{"a", sa}, {"b", sb}, {"sum", ss}, {"sig", sg}, {"cat", sc}};
  auto exec = Int8Executor::create(g, options);
  ASSERT_TRUE(exec) << exec.status().message();
  for (const auto& layer : (*exec)->layers()) EXPECT_EQ(layer.precision, "int8") << layer.name;
  const Tensor a = random_tensor({1, 4, 3, 3}, 7), b = random_tensor({1, 4, 3, 3}, 8, -0.5f, 0.5f);
  auto out = (*exec)->run({{"a", a}, {"b", b}});
  ASSERT_TRUE(out) << out.status().message();
  const Tensor& y = out->at("cat");
  for (int64_t i = 0; i < 36; ++i) {
    const int8_t qa = q8(a.data<float>()[i], sa), qb = q8(b.data<float>()[i], sb);
    const int8_t qs = q8(double(qa) * sa + double(qb) * sb, ss);
    const int8_t qg = q8(1.0 / (1.0 + std::exp(-double(qs) * ss)), sg);
    EXPECT_NEAR(y.data<float>()[i] / sc, q8(double(qa) * sa, sc), 1e-3) << i;
    EXPECT_NEAR(y.data<float>()[36 + i] / sc, q8(double(qg) * sg, sc), 1.001) << i;
  }
}

TEST(Int8, UnscaledAndNamedLayersRunFp16) {
  Graph g;
  g.inputs = {value("x", {1, 3, 6, 6})};
  g.initializers["w"] = random_tensor({4, 3, 1, 1}, 11);
  g.nodes.push_back(
      node("Conv", {"x", "w"}, {"c"}, {{"kernel_shape", Attribute::of_ints({1, 1})}}));
  g.nodes.push_back(node("Relu", {"c"}, {"r"}));
  g.outputs = {value("r", {})};
  Int8Options options;
  options.scales = {{"x", 1.0f / 127}, {"c", 3.0f / 127}, {"r", 3.0f / 127}};
  options.fp16_layers = {"Conv_c"};
  auto exec = Int8Executor::create(g, options);
  ASSERT_TRUE(exec) << exec.status().message();
  ASSERT_EQ((*exec)->layers().size(), 2u);
  EXPECT_EQ((*exec)->layers()[0].precision, "fp16");
  EXPECT_EQ((*exec)->layers()[0].reason, "--layerPrecisions");
  // After the last convolution (a detect decode, say) a layer runs FP32 even with scales.
  EXPECT_EQ((*exec)->layers()[1].precision, "fp32");
  EXPECT_EQ((*exec)->layers()[1].reason, "after the last convolution");
  const Tensor x = random_tensor({1, 3, 6, 6}, 12);
  auto out = (*exec)->run({{"x", x}});
  ASSERT_TRUE(out);
  const Tensor& w = g.initializers["w"];
  for (int64_t o = 0; o < 4; ++o)
    for (int64_t p = 0; p < 36; ++p) {
      float acc = 0;
      for (int64_t c = 0; c < 3; ++c)
        acc +=
            round_to_half(x.data<float>()[c * 36 + p]) * round_to_half(w.data<float>()[o * 3 + c]);
      const float want = std::max(round_to_half(acc), 0.0f);
      EXPECT_NEAR(out->at("r").data<float>()[o * 36 + p], want,
                  1e-3f * std::max(1.0f, std::abs(want)));
    }
}

TEST(Int8, LayerPrecisionsParseNvidiasForms) {
  auto p = parse_layer_precisions(
      "\"/model.24/m.0/Conv\":fp16,/model.24/m.1/Conv:fp16,/model.23/cv3/act/Mul:int8");
  ASSERT_TRUE(p) << p.status().message();
  EXPECT_EQ(*p, (std::set<std::string>{"/model.24/m.0/Conv", "/model.24/m.1/Conv"}));
  EXPECT_FALSE(parse_layer_precisions("/a/Conv:fp8"));
  EXPECT_FALSE(parse_layer_precisions("/a/Conv"));
  auto bad = Int8Executor::create(Graph{}, Int8Options{{{"x", -1.0f}}, {}, {}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("'x'"), std::string::npos);
}

TEST(Int8, Yolov5nKeepsItsDetections) {
  auto graph = load_onnx(testing::yolov5n_path().string());
  ASSERT_TRUE(graph);
  // Max calibration on two calibration images.
  std::vector<std::map<std::string, Tensor>> batches;
  for (const char* name : {"000000012280.jpg", "000000019221.jpg"}) {
    const auto path = testing::data_path(std::string("coco/calib2017/images/") + name);
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " missing";
    auto image = read_image(path.string());
    ASSERT_TRUE(image);
    Tensor x(DType::kFloat32, {1, 3, 640, 640});
    image_to_tensor(letterbox(*image, 640, 640, nullptr), x, 0);
    batches.push_back({{"images", x}});
  }
  std::vector<std::string> tensors = {"images"};
  for (const Node& n : graph->nodes) {
    if (n.op_type != "Constant" && n.op_type != "Shape") tensors.push_back(n.outputs[0]);
  }
  std::vector<std::string> probe;
  for (const auto& t : tensors) {
    if (t == "images" || t.rfind("/model.24/", 0) != 0 || t.find("/m.") != std::string::npos)
      probe.push_back(t);
  }
  auto ranges = max_abs_ranges(*graph, batches, probe);
  ASSERT_TRUE(ranges) << ranges.status().message();
  Int8Options options;
  for (const auto& [name, amax] : *ranges) options.scales[name] = std::max(amax, 1e-6f) / 127;
  options.fp16_layers = {"/model.24/m.0/Conv", "/model.24/m.1/Conv", "/model.24/m.2/Conv"};
  auto int8 = Int8Executor::create(*graph, options);
  ASSERT_TRUE(int8) << int8.status().message();
  int int8_convs = 0;
  for (const auto& l : (*int8)->layers())
    int8_convs += l.op == "Conv+SiLU" && l.precision == "int8";
  EXPECT_EQ(int8_convs, 57);
  auto fp32 = CpuExecutor::create(*graph);
  ASSERT_TRUE(fp32);
  auto image = read_image(testing::data_path("coco/val2017-mini/images/000000000139.jpg").string());
  ASSERT_TRUE(image);
  Tensor x(DType::kFloat32, {1, 3, 640, 640});
  image_to_tensor(letterbox(*image, 640, 640, nullptr), x, 0);
  auto a = (*fp32)->run({{"images", x}});
  auto b = (*int8)->run({{"images", x}});
  ASSERT_TRUE(a && b) << b.status().message();
  NmsOptions nms;
  nms.conf_threshold = 0.25f;
  nms.iou_threshold = 0.45f;
  const auto da = non_max_suppression(a->at("output0").data<float>(), 25200, 85, nms);
  const auto db = non_max_suppression(b->at("output0").data<float>(), 25200, 85, nms);
  ASSERT_FALSE(da.empty());
  // The strongest FP32 detections are found again in INT8 with a good overlap.
  int matched = 0;
  for (size_t i = 0; i < std::min<size_t>(da.size(), 5); ++i) {
    for (const auto& d : db) {
      const float w = std::min(da[i].x2, d.x2) - std::max(da[i].x1, d.x1);
      const float h = std::min(da[i].y2, d.y2) - std::max(da[i].y1, d.y1);
      if (w <= 0 || h <= 0 || d.class_id != da[i].class_id) continue;
      const float inter = w * h;
      const float uni =
          (da[i].x2 - da[i].x1) * (da[i].y2 - da[i].y1) + (d.x2 - d.x1) * (d.y2 - d.y1) - inter;
      if (inter / uni > 0.7f) {
        ++matched;
        break;
      }
    }
  }
  EXPECT_GE(matched, 4) << da.size() << " fp32 vs " << db.size() << " int8 detections";
}

}  // namespace
}  // namespace qyolo
