// The CPU engine against the INT8 reference backend on yolov5n with a real image: every head
// output and every layer's tensor bit for bit, in configurations 1 (all int8, int8:hwc4 in,
// int8:chw32 out), 2 (head convolutions fp16, fp16:chw16 out) and 3 (also the last C3's cv3).
#include <gtest/gtest.h>

#include <cstring>

#include "qyolo/engine_builder.h"
#include "qyolo/int8.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "qyolo/runtime.h"
#include "qyolo/vision.h"
#include "runtime/backends/cpu/engine_kernels.h"
#include "test_util.h"

namespace qyolo {
namespace {

struct Fixture {
  Graph full, trimmed;
  std::map<std::string, float> scales;
  Tensor image;  // 1x3x640x640 float, /255
};

Tensor load_image(const std::string& relative) {
  auto image = read_image(testing::data_path(relative).string());
  Tensor x(DType::kFloat32, {1, 3, 640, 640});
  if (image) image_to_tensor(letterbox(*image, 640, 640, nullptr), x, 0);
  return x;
}

const Fixture* fixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    auto graph = load_onnx(testing::yolov5n_path().string());
    if (!graph) return fx;
    fx->full = *graph;
    auto trimmed = trim_at_heads(*graph);
    if (!trimmed) return fx;
    fx->trimmed = *trimmed;
    std::vector<std::map<std::string, Tensor>> batches;
    batches.push_back({{"images", load_image("coco/calib2017/images/000000012280.jpg")}});
    std::vector<std::string> probe = {"images"};
    for (const Node& n : fx->trimmed.nodes)
      if (n.op_type != "Constant") probe.push_back(n.outputs[0]);
    auto ranges = max_abs_ranges(fx->trimmed, batches, probe);
    if (ranges)
      for (const auto& [name, amax] : *ranges) fx->scales[name] = std::max(amax, 1e-6f) / 127;
    fx->image = load_image("coco/val2017-mini/images/000000000139.jpg");
    return fx;
  }();
  return f;
}

const std::set<std::string> kHeads = {"/model.24/m.0/Conv", "/model.24/m.1/Conv",
                                      "/model.24/m.2/Conv"};

std::set<std::string> config_fp16(int config) {
  std::set<std::string> fp16;
  if (config >= 2) fp16 = kHeads;
  if (config == 3)
    for (const char* n :
         {"/model.23/cv3/conv/Conv", "/model.23/cv3/act/Sigmoid", "/model.23/cv3/act/Mul"})
      fp16.insert(n);
  return fp16;
}

struct EngineRun {
  std::unique_ptr<runtime::Device> device;
  std::unique_ptr<runtime::Module> module;
  std::map<std::string, Tensor> outputs;  // float32 NCHW
};

void run_engine(const Engine& engine, const Tensor& image, EngineRun& run) {
  auto device = runtime::Device::create(EngineTarget::kCpu);
  ASSERT_TRUE(device) << device.status().message();
  auto bytes = serialize_engine(engine);
  auto module = runtime::Module::load(**device, bytes.data(), bytes.size());
  ASSERT_TRUE(module) << module.status().message();
  const runtime::Module& m = **module;
  std::vector<std::vector<uint8_t>> in(m.inputs().size()), out(m.outputs().size());
  runtime::Task task;
  task.module = module->get();
  task.batch = 1;
  std::vector<std::unique_ptr<runtime::RegisteredMemory>> registered;
  for (size_t i = 0; i < in.size(); ++i) {
    in[i].resize(m.inputs()[i].image_bytes());
    runtime::pack_input(m.inputs()[i], 1, image.data<float>(), in[i].data());
    registered.push_back(std::move((*device)->register_memory(in[i].data(), in[i].size()).value()));
    task.inputs.push_back(registered.back().get());
  }
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].resize(m.outputs()[i].image_bytes());
    registered.push_back(
        std::move((*device)->register_memory(out[i].data(), out[i].size()).value()));
    task.outputs.push_back(registered.back().get());
  }
  Status status = (*device)->run(task);
  ASSERT_TRUE(status.is_ok()) << status.message();
  for (size_t i = 0; i < out.size(); ++i) {
    const EngineIo& io = m.outputs()[i];
    Tensor t(DType::kFloat32, {1, io.channels, io.height, io.width});
    runtime::unpack_output(io, 1, out[i].data(), t.data<float>());
    run.outputs[io.name] = std::move(t);
  }
  run.device = std::move(*device);
  run.module = std::move(*module);
}

BuildOptions options_for(int config, const Fixture& f) {
  BuildOptions o;
  o.scales = f.scales;
  o.fp16_layers = config_fp16(config);
  o.input_format = IoFormat::kInt8Hwc4;
  o.output_format = config == 1 ? IoFormat::kInt8Chw32 : IoFormat::kFp16Chw16;
  return o;
}

int64_t count_differences(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return -1;
  int64_t diff = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    diff += std::memcmp(a.data<float>() + i, b.data<float>() + i, 4) != 0;
  return diff;
}

class EngineVsReference : public ::testing::TestWithParam<int> {};

TEST_P(EngineVsReference, HeadOutputsAreIdentical) {
  const Fixture& f = *fixture();
  if (f.scales.empty()) GTEST_SKIP() << "yolov5n or the calibration image is missing";
  const int config = GetParam();
  auto built = build_engine(f.full, options_for(config, f));
  ASSERT_TRUE(built) << built.status().message();
  Int8Options ref_options;
  ref_options.scales = f.scales;
  ref_options.fp16_layers = config_fp16(config);
  auto reference = Int8Executor::create(f.trimmed, ref_options);
  ASSERT_TRUE(reference) << reference.status().message();
  auto expected = (*reference)->run({{"images", f.image}});
  ASSERT_TRUE(expected) << expected.status().message();
  EngineRun run;
  run_engine(built->engine, f.image, run);
  ASSERT_EQ(run.outputs.size(), 3u);
  for (const auto& [name, tensor] : *expected) {
    ASSERT_TRUE(run.outputs.count(name)) << name;
    EXPECT_EQ(count_differences(run.outputs.at(name), tensor), 0) << name;
  }
}

// Every int8 SiLU, Add, Concat, MaxPool and Resize output of the engine equals the
// reference's (dequantized) value; the engine is built without memory reuse so all survive.
TEST_P(EngineVsReference, EveryLayerIsIdentical) {
  const Fixture& f = *fixture();
  if (f.scales.empty()) GTEST_SKIP() << "yolov5n or the calibration image is missing";
  const int config = GetParam();
  BuildOptions options = options_for(config, f);
  options.reuse_memory = false;
  auto built = build_engine(f.full, options);
  ASSERT_TRUE(built) << built.status().message();
  EngineRun run;
  run_engine(built->engine, f.image, run);
  Graph probe = f.trimmed;
  std::vector<std::string> names;
  for (const EngineTensor& t : built->engine.tensors) {
    if (t.name.find(':') != std::string::npos || t.name.find('[') != std::string::npos) continue;
    bool is_value = false;
    for (const Node& n : probe.nodes) is_value = is_value || n.outputs[0] == t.name;
    if (!is_value) continue;
    bool already = false;
    for (const auto& o : probe.outputs) already = already || o.name == t.name;
    if (!already) {
      ValueInfo v;
      v.name = t.name;
      v.dtype = DType::kFloat32;
      probe.outputs.push_back(v);
    }
    names.push_back(t.name);
  }
  ASSERT_GE(names.size(), 75u);  // 57 SiLU convolutions, 13 Concat, 3 MaxPool, 2 Resize, 3 heads
  Int8Options ref_options;
  ref_options.scales = f.scales;
  ref_options.fp16_layers = config_fp16(config);
  auto reference = Int8Executor::create(probe, ref_options);
  ASSERT_TRUE(reference) << reference.status().message();
  auto expected = (*reference)->run({{"images", f.image}});
  ASSERT_TRUE(expected) << expected.status().message();
  int compared = 0;
  for (const std::string& name : names) {
    const EngineTensor* t = nullptr;
    for (const EngineTensor& x : built->engine.tensors)
      if (x.name == name) t = &x;
    auto bytes = run.module->read_tensor(name);
    ASSERT_TRUE(bytes) << bytes.status().message();
    const Tensor& want = expected->at(name);
    const int64_t hw = int64_t(t->height) * t->width;
    // A conv output the engine writes into its Concat at the Concat's scale (remove_concat's
    // conv_scale) holds the reference's value requantized to that scale.
    const auto cached = f.scales.find(name);
    const bool requantized = t->type == ElementType::kInt8 && cached != f.scales.end() &&
                             cached->second != t->scale;
    int64_t diff = 0;
    for (int c = 0; c < t->channels; ++c)
      for (int64_t p = 0; p < hw; ++p) {
        const size_t at = size_t(p) * t->channels + c;
        const float got = t->type == ElementType::kInt8
                              ? float(int8_t((*bytes)[at])) * t->scale
                              : cpu_engine::half_to_float_bits(
                                    reinterpret_cast<const uint16_t*>(bytes->data())[at]);
        float ref = want.data<float>()[c * hw + p];
        if (requantized) ref = float(quantize_rne(ref, t->scale)) * t->scale;
        diff += std::memcmp(&got, &ref, 4) != 0;
      }
    EXPECT_EQ(diff, 0) << name;
    ++compared;
  }
  EXPECT_EQ(compared, int(names.size()));
}

INSTANTIATE_TEST_SUITE_P(Configurations, EngineVsReference, ::testing::Values(1, 2, 3));

TEST(EngineCpu, FusionAndPlanOnYolov5n) {
  const Fixture& f = *fixture();
  if (f.scales.empty()) GTEST_SKIP() << "yolov5n or the calibration image is missing";
  auto built = build_engine(f.full, options_for(2, f));
  ASSERT_TRUE(built) << built.status().message();
  const Engine& e = built->engine;
  int conv_silu = 0, conv_silu_add = 0, reformats = 0, fp16_convs = 0;
  for (const EngineLayer& l : e.layers) {
    conv_silu += l.op == "Conv+SiLU";
    conv_silu_add += l.op == "Conv+SiLU+Add";
    reformats += l.op == "Reformat";
    fp16_convs += l.kind == LayerKind::kConv && l.precision == ElementType::kFloat16;
  }
  EXPECT_EQ(conv_silu + conv_silu_add, 57);
  EXPECT_EQ(conv_silu_add, 7);  // the backbone C3s' shortcuts: 1 + 2 + 3 + 1
  EXPECT_EQ(reformats, 4);      // one input, three outputs
  EXPECT_EQ(fp16_convs, 3);
  EXPECT_EQ(e.fallbacks.size(), 3u);
  EXPECT_LT(e.arena_bytes_per_image, built->unplanned_bytes_per_image / 2);
  for (const EngineLayer& l : e.layers) EXPECT_NE(l.op, "Concat");
}

}  // namespace
}  // namespace qyolo
