// The engine file: a round trip keeps every field, and each kind of damage (magic, format
// version, target, checksum, truncation, inconsistent payload) is one line naming the file.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "engine_test_graphs.h"
#include "qyolo/engine.h"
#include "qyolo/runtime.h"
#include "test_util.h"

namespace qyolo {
namespace {

Engine small_engine() {
  testing::GraphMaker m = testing::yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  o.fp16_layers = {"head/Conv"};
  o.input_format = IoFormat::kInt8Hwc4;
  o.output_format = IoFormat::kFp16Chw16;
  o.max_batch = 2;
  o.source = "yolo_like.onnx";
  return build_engine(m.graph, o).value().engine;
}

void expect_one_line_error(const std::vector<uint8_t>& bytes, const std::string& needle,
                           const EngineTarget* target = nullptr) {
  auto e = deserialize_engine(bytes.data(), bytes.size(), "model.engine", target);
  ASSERT_FALSE(e) << needle;
  const std::string m = e.status().message();
  EXPECT_NE(m.find(needle), std::string::npos) << m;
  EXPECT_EQ(m.rfind("model.engine: ", 0), 0u) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

TEST(EngineFile, RoundTripKeepsEverything) {
  const Engine e = small_engine();
  const auto bytes = serialize_engine(e);
  ASSERT_EQ(std::memcmp(bytes.data(), "QYOLOENG", 8), 0);
  auto back = deserialize_engine(bytes.data(), bytes.size(), "mem");
  ASSERT_TRUE(back) << back.status().message();
  EXPECT_EQ(serialize_engine(*back), bytes);
  EXPECT_EQ(back->source, "yolo_like.onnx");
  EXPECT_EQ(back->max_batch, 2);
  EXPECT_EQ(back->layers.size(), e.layers.size());
  EXPECT_EQ(back->weights, e.weights);
  EXPECT_EQ(back->fallbacks.size(), 1u);
  EXPECT_EQ(back->inputs[0].format, IoFormat::kInt8Hwc4);
  EXPECT_EQ(back->outputs[0].format, IoFormat::kFp16Chw16);
  const auto dir = testing::temp_dir();
  ASSERT_TRUE(save_engine(e, (dir / "a.engine").string()).is_ok());
  auto loaded = load_engine((dir / "a.engine").string());
  ASSERT_TRUE(loaded) << loaded.status().message();
  EXPECT_EQ(serialize_engine(*loaded), bytes);
}

TEST(EngineFile, DamageIsOneLineError) {
  const auto good = serialize_engine(small_engine());
  auto bytes = good;
  bytes[0] = 'X';
  expect_one_line_error(bytes, "not a qyolo engine");
  bytes = good;
  bytes[8] = 9;
  expect_one_line_error(bytes, "format version 9, this qyolo reads 2");
  bytes = good;
  const EngineTarget cuda = EngineTarget::kCuda;
  expect_one_line_error(bytes, "built for target cpu, this device is cuda", &cuda);
  bytes[12] = 7;
  expect_one_line_error(bytes, "unknown target 7");
  bytes = good;
  bytes[bytes.size() / 2] ^= 0x40;
  expect_one_line_error(bytes, "checksum mismatch");
  expect_one_line_error(std::vector<uint8_t>(good.begin(), good.begin() + 12),
                        "truncated: 12 bytes, the header alone is 64");
  expect_one_line_error(std::vector<uint8_t>(good.begin(), good.end() - 100), "truncated: payload");
  expect_one_line_error({}, "truncated: 0 bytes");
}

// A payload that passes the checksum but points outside itself is refused by validate_engine.
TEST(EngineFile, InconsistentPayloadIsRefused) {
  Engine e = small_engine();
  e.layers[3].inputs[0] = 999;
  auto bytes = serialize_engine(e);
  expect_one_line_error(bytes, "input 999 out of range");
  e = small_engine();
  e.layers[2].weights.offset = e.weights.size() + 64;
  expect_one_line_error(serialize_engine(e), "weight range out of bounds");
  e = small_engine();
  e.arena_bytes_per_image /= 2;
  expect_one_line_error(serialize_engine(e), "ends past the arena");
  // What every backend needs of a layer (each backend's supports_layer adds only its limits).
  auto layer_of = [](Engine& engine, LayerKind kind) -> EngineLayer& {
    for (EngineLayer& l : engine.layers)
      if (l.kind == kind) return l;
    ADD_FAILURE() << "no layer of kind " << uint32_t(kind);
    return engine.layers.front();
  };
  e = small_engine();
  layer_of(e, LayerKind::kConv).precision = ElementType::kFloat32;
  expect_one_line_error(serialize_engine(e), "fp32 convolution");
  // A fused Concat copy only on an int8 Conv, MaxPool or Resize, into an int8 tensor.
  e = small_engine();
  layer_of(e, LayerKind::kOutputReformat).also_output = 0;
  expect_one_line_error(serialize_engine(e), "a fused Concat copy on a Reformat layer");
  e = small_engine();
  layer_of(e, LayerKind::kMaxPool).also_output = int(e.tensors.size());
  expect_one_line_error(serialize_engine(e), "also_output out of range");
  e = small_engine();
  layer_of(e, LayerKind::kMaxPool).requant_from = -1.0f;
  expect_one_line_error(serialize_engine(e), "requant_from -1");
  e = small_engine();
  layer_of(e, LayerKind::kMaxPool).requant_from = 0.5f;
  layer_of(e, LayerKind::kMaxPool).also_output = layer_of(e, LayerKind::kMaxPool).output;
  expect_one_line_error(serialize_engine(e), "both requant_from and also_output set");
  e = small_engine();
  layer_of(e, LayerKind::kConv).precision = ElementType::kFloat16;
  layer_of(e, LayerKind::kConv).requant_from = 0.5f;
  expect_one_line_error(serialize_engine(e), "a fused Concat copy on a Conv");
  e = small_engine();
  e.layers[1].kind = static_cast<LayerKind>(77);
  expect_one_line_error(serialize_engine(e), "unknown kind 77");
}

TEST(EngineFile, FormatNames) {
  for (const char* name : {"int8:hwc4", "fp16:chw16", "int8:chw32", "fp32:chw"}) {
    auto f = parse_io_format(name);
    ASSERT_TRUE(f) << name;
    EXPECT_EQ(io_format_name(*f), name);
  }
  EXPECT_EQ(*parse_io_format("int8:dla_hwc4"), IoFormat::kInt8Hwc4);
  EXPECT_FALSE(parse_io_format("int4:chw"));
  EXPECT_FALSE(parse_target("tpu"));
  EngineIo io;
  io.channels = 255;
  io.height = 2;
  io.width = 3;
  io.format = IoFormat::kFp16Chw16;
  EXPECT_EQ(io.image_bytes(), 256 * 6 * 2);
  io.format = IoFormat::kInt8Chw32;
  EXPECT_EQ(io.image_bytes(), 256 * 6);
}

}  // namespace
}  // namespace qyolo
