// ONNX import/export: yolov5n, round trips, onnx.checker on exported files, and clear errors
// for every kind of bad input.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "qyolo/onnx.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::have_python_oracles;
using testing::run_command;
using testing::temp_dir;
using testing::write_file;
using testing::yolov5n_path;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Runs onnx.checker (full_check) on `path` through the Python oracle.
void expect_checker_accepts(const std::filesystem::path& path) {
  auto result = run_command(std::string(QYOLO_PYTHON) +
                            " " QYOLO_TESTS_DIR "/python/check_onnx.py " + path.string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
}

// Expects `result` to be an error whose message contains every one of `words`.
template <typename T>
void expect_error(const Expected<T>& result, const std::vector<std::string>& words) {
  ASSERT_FALSE(result.has_value()) << "expected an error mentioning " << words.front();
  const std::string message = result.status().message();
  for (const auto& word : words) EXPECT_NE(message.find(word), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
}

// A minimal protobuf writer, so tests can craft ModelProto bytes (valid and broken) without
// linking protobuf: field numbers are those of onnx.proto.
class ProtoWriter {
 public:
  ProtoWriter& varint(int field, uint64_t value) {
    tag(field, 0);
    raw_varint(value);
    return *this;
  }
  ProtoWriter& bytes(int field, const std::string& value) {
    tag(field, 2);
    raw_varint(value.size());
    out_ += value;
    return *this;
  }
  ProtoWriter& message(int field, const ProtoWriter& value) { return bytes(field, value.str()); }
  // A packed repeated field of fixed-width values (floats) or varints (ints).
  ProtoWriter& packed_floats(int field, const std::vector<float>& values) {
    std::string data(values.size() * 4, '\0');
    std::memcpy(data.data(), values.data(), data.size());
    return bytes(field, data);
  }
  ProtoWriter& packed_varints(int field, const std::vector<int64_t>& values) {
    ProtoWriter data;
    for (int64_t v : values) data.raw_varint(static_cast<uint64_t>(v));
    return bytes(field, data.str());
  }
  const std::string& str() const { return out_; }

 private:
  void tag(int field, int wire_type) {
    raw_varint((static_cast<uint64_t>(field) << 3) | wire_type);
  }
  void raw_varint(uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<char>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<char>(value));
  }
  std::string out_;
};

// onnx.proto field numbers.
namespace field {
constexpr int kModelIrVersion = 1, kModelGraph = 7, kModelOpset = 8;
constexpr int kOpsetVersion = 2;
constexpr int kGraphNode = 1, kGraphName = 2, kGraphInitializer = 5, kGraphInput = 11,
              kGraphOutput = 12;
constexpr int kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5;
constexpr int kAttrName = 1, kAttrG = 6, kAttrType = 20;
constexpr int kTensorDims = 1, kTensorDataType = 2, kTensorFloatData = 4, kTensorInt32Data = 5,
              kTensorInt64Data = 7, kTensorName = 8, kTensorRawData = 9, kTensorDataLocation = 14;
constexpr int kValueInfoName = 1, kValueInfoType = 2;
constexpr int kTypeTensor = 1, kTensorTypeElem = 1, kTensorTypeShape = 2;
constexpr int kShapeDim = 1, kDimValue = 1;
}  // namespace field

ProtoWriter float_value_info(const std::string& name, const std::vector<int64_t>& dims) {
  ProtoWriter shape;
  for (int64_t d : dims) shape.message(field::kShapeDim, ProtoWriter().varint(field::kDimValue, d));
  ProtoWriter tensor_type;
  tensor_type.varint(field::kTensorTypeElem, 1).message(field::kTensorTypeShape, shape);
  return ProtoWriter()
      .bytes(field::kValueInfoName, name)
      .message(field::kValueInfoType, ProtoWriter().message(field::kTypeTensor, tensor_type));
}

// A model computing y = Add(x, <initializer>) (x: float32[2]), with `node` replacing the Add
// node when given.
std::string model_bytes(const ProtoWriter& initializer, const ProtoWriter* node = nullptr) {
  ProtoWriter add;
  add.bytes(field::kNodeInput, "x")
      .bytes(field::kNodeInput, "b")
      .bytes(field::kNodeOutput, "y")
      .bytes(field::kNodeName, "add")
      .bytes(field::kNodeOpType, "Add");
  ProtoWriter graph;
  graph.message(field::kGraphNode, node ? *node : add)
      .bytes(field::kGraphName, "handmade")
      .message(field::kGraphInitializer, initializer)
      .message(field::kGraphInput, float_value_info("x", {2}))
      .message(field::kGraphOutput, float_value_info("y", {2}));
  return ProtoWriter()
      .varint(field::kModelIrVersion, 7)
      .message(field::kModelGraph, graph)
      .message(field::kModelOpset, ProtoWriter().varint(field::kOpsetVersion, 13))
      .str();
}

ProtoWriter raw_initializer(const std::string& name, int data_type, std::vector<int64_t> dims,
                            const std::string& raw) {
  ProtoWriter tensor;
  for (int64_t d : dims) tensor.varint(field::kTensorDims, d);
  tensor.varint(field::kTensorDataType, data_type).bytes(field::kTensorName, name);
  tensor.bytes(field::kTensorRawData, raw);
  return tensor;
}

TEST(OnnxImport, Yolov5n) {
  auto graph = load_onnx(yolov5n_path());
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  EXPECT_EQ(graph->ir_version, 7);
  EXPECT_EQ(graph->opset(), 12);
  EXPECT_EQ(graph->producer_name, "pytorch");
  EXPECT_EQ(graph->name, "torch_jit");

  ASSERT_EQ(graph->inputs.size(), 1u);
  const ValueInfo& images = graph->inputs[0];
  EXPECT_EQ(images.name, "images");
  EXPECT_EQ(images.dtype, DType::kFloat32);
  EXPECT_TRUE(images.has_shape);
  EXPECT_EQ(images.shape, (Shape{1, 3, 640, 640}));
  EXPECT_EQ(images.dim_params, std::vector<std::string>(4));

  ASSERT_EQ(graph->outputs.size(), 1u);
  EXPECT_EQ(graph->outputs[0].name, "output0");
  EXPECT_EQ(graph->outputs[0].shape, (Shape{1, 25200, 85}));

  EXPECT_EQ(graph->nodes.size(), 264u);
  auto convs = std::count_if(graph->nodes.begin(), graph->nodes.end(),
                             [](const Node& n) { return n.op_type == "Conv"; });
  EXPECT_EQ(convs, 60);
  for (const Node& node : graph->nodes) EXPECT_FALSE(node.name.empty());

  EXPECT_EQ(graph->initializers.size(), 120u);
  const Tensor* weight = graph->find_initializer("model.0.conv.weight");
  ASSERT_NE(weight, nullptr);
  EXPECT_EQ(weight->dtype(), DType::kFloat32);
  EXPECT_EQ(weight->shape(), (Shape{16, 3, 6, 6}));
  double sum = 0;
  for (double v : weight->to_double()) sum += v;
  EXPECT_NEAR(sum, -40.24204, 1e-3);  // numpy's sum of the same tensor

  // Attributes of several kinds, as onnx's Python API reads them.
  auto resize = std::find_if(graph->nodes.begin(), graph->nodes.end(),
                             [](const Node& n) { return n.name == "/model.11/Resize"; });
  ASSERT_NE(resize, graph->nodes.end());
  EXPECT_EQ(resize->inputs.size(), 3u);
  EXPECT_EQ(resize->get_string("mode", ""), "nearest");
  EXPECT_EQ(resize->get_float("cubic_coeff_a", 0), -0.75f);
  auto constant = std::find_if(graph->nodes.begin(), graph->nodes.end(),
                               [](const Node& n) { return n.name == "/model.11/Constant"; });
  ASSERT_NE(constant, graph->nodes.end());
  const Attribute& value = constant->attributes.at("value");
  ASSERT_EQ(value.kind, Attribute::Kind::kTensor);
  EXPECT_EQ(value.t.to_double(), (std::vector<double>{1, 1, 2, 2}));
}

TEST(OnnxRoundTrip, Yolov5nSerializeParseIsIdentical) {
  auto graph = load_onnx(yolov5n_path());
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  auto bytes = serialize_onnx(*graph);
  ASSERT_TRUE(bytes.has_value()) << bytes.status().message();
  auto again = parse_onnx(*bytes, "round trip");
  ASSERT_TRUE(again.has_value()) << again.status().message();
  EXPECT_TRUE(*again == *graph);
  // Exporting is deterministic.
  auto bytes_again = serialize_onnx(*again);
  ASSERT_TRUE(bytes_again.has_value());
  EXPECT_EQ(*bytes_again, *bytes);
}

TEST(OnnxExport, Yolov5nPassesOnnxChecker) {
  if (!have_python_oracles()) GTEST_SKIP() << "no Python with onnx at " << QYOLO_PYTHON;
  auto graph = load_onnx(yolov5n_path());
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  const auto path = temp_dir() / "yolov5n_exported.onnx";
  ASSERT_TRUE(save_onnx(*graph, path).is_ok());
  expect_checker_accepts(path);
  auto reloaded = load_onnx(path);
  ASSERT_TRUE(reloaded.has_value()) << reloaded.status().message();
  EXPECT_TRUE(*reloaded == *graph);
}

// Every attribute kind and every dtype qyolo knows, including scalars, empty tensors,
// symbolic and unknown dims, a custom domain and an omitted optional input.
Graph every_kind_graph() {
  Graph graph;
  graph.name = "every_kind";
  graph.ir_version = 8;
  graph.opset_imports = {{"", 13}, {"com.example", 1}};
  graph.producer_name = "qyolo-test";
  graph.producer_version = "1.2.3";
  graph.inputs.push_back({"x", DType::kFloat32, true, {-1, 3, -1}, {"batch", "", ""}});
  graph.inputs.push_back({"flags", DType::kBool, true, {}, {}});  // a scalar
  graph.inputs.push_back({"anything", DType::kUndefined, false, {}, {}});
  graph.outputs.push_back({"y", DType::kFloat16, true, {-1, 3, 4}, {"batch", "", ""}});
  graph.outputs.push_back({"z", DType::kInt64, false, {}, {}});
  graph.value_infos.push_back({"t", DType::kFloat32, true, {2, 3}, {"", ""}});

  std::vector<uint16_t> halves = {float_to_half(1.5f), float_to_half(-2.0f)};
  Tensor half_tensor(DType::kFloat16, {2});
  std::memcpy(half_tensor.raw(), halves.data(), 4);
  graph.initializers["f32"] = Tensor::from_vector<float>({1.f, -0.f, 3.5f, 1e-30f}, {2, 2});
  graph.initializers["f64"] = Tensor::from_vector<double>({3.141592653589793});
  graph.initializers["f16"] = half_tensor;
  graph.initializers["i8"] = Tensor::from_vector<int8_t>({-128, 0, 127});
  graph.initializers["u8"] = Tensor::from_vector<uint8_t>({0, 255});
  graph.initializers["i32"] = Tensor::from_vector<int32_t>({-7, 1 << 30});
  graph.initializers["i64"] = Tensor::from_vector<int64_t>({int64_t{1} << 40, -1}, {1, 2});
  Tensor bools(DType::kBool, {3});
  bools.data<uint8_t>()[0] = 1;  // std::vector<bool> has no data(), so fill in place
  bools.data<uint8_t>()[2] = 1;
  graph.initializers["b"] = bools;
  graph.initializers["empty"] = Tensor(DType::kFloat32, {0});
  graph.initializers["scalar"] = Tensor(DType::kInt64, {});

  Node node;
  node.name = "custom";
  node.op_type = "Everything";
  node.domain = "com.example";
  node.inputs = {"x", "", "f32", "flags", "anything"};
  node.outputs = {"t", "z"};
  node.attributes["a_float"] = Attribute::of_float(-0.25f);
  node.attributes["a_int"] = Attribute::of_int(-(int64_t{1} << 50));
  node.attributes["a_string"] = Attribute::of_string(std::string("bytes\0here", 10));
  node.attributes["a_tensor"] = Attribute::of_tensor(Tensor::from_vector<int8_t>({1, -2}));
  node.attributes["a_floats"] = Attribute::of_floats({0.5f, -1e10f});
  node.attributes["a_ints"] = Attribute::of_ints({1, -2, 3});
  node.attributes["empty_ints"] = Attribute::of_ints({});
  Attribute strings;
  strings.kind = Attribute::Kind::kStrings;
  strings.strings = {"one", "", "three"};
  node.attributes["a_strings"] = strings;
  graph.nodes.push_back(node);

  Node cast;
  cast.name = "cast";
  cast.op_type = "Cast";
  cast.inputs = {"t"};
  cast.outputs = {"y"};
  cast.attributes["to"] = Attribute::of_int(10);
  graph.nodes.push_back(cast);
  return graph;
}

TEST(OnnxRoundTrip, EveryAttributeKindAndDtype) {
  const Graph graph = every_kind_graph();
  auto bytes = serialize_onnx(graph);
  ASSERT_TRUE(bytes.has_value()) << bytes.status().message();
  auto again = parse_onnx(*bytes, "every_kind");
  ASSERT_TRUE(again.has_value()) << again.status().message();
  EXPECT_EQ(again->inputs, graph.inputs);
  EXPECT_EQ(again->outputs, graph.outputs);
  EXPECT_EQ(again->value_infos, graph.value_infos);
  EXPECT_EQ(again->nodes, graph.nodes);
  EXPECT_EQ(again->initializers.size(), graph.initializers.size());
  for (const auto& [name, tensor] : graph.initializers) {
    const Tensor* got = again->find_initializer(name);
    ASSERT_NE(got, nullptr) << name;
    EXPECT_TRUE(*got == tensor) << name;
  }
  EXPECT_TRUE(*again == graph);
}

TEST(OnnxRoundTrip, NodesAreSortedOnImport) {
  Graph graph;
  graph.name = "unsorted";
  graph.inputs.push_back({"x", DType::kFloat32, true, {2}, {""}});
  graph.outputs.push_back({"z", DType::kFloat32, true, {2}, {""}});
  graph.nodes.push_back({"second", "Relu", "", {"y"}, {"z"}, {}});
  graph.nodes.push_back({"first", "Relu", "", {"x"}, {"y"}, {}});
  auto bytes = serialize_onnx(graph);
  ASSERT_TRUE(bytes.has_value());
  auto again = parse_onnx(*bytes, "unsorted");
  ASSERT_TRUE(again.has_value()) << again.status().message();
  ASSERT_EQ(again->nodes.size(), 2u);
  EXPECT_EQ(again->nodes[0].name, "first");
  EXPECT_EQ(again->nodes[1].name, "second");
}

TEST(OnnxExport, SmallGraphPassesOnnxChecker) {
  if (!have_python_oracles()) GTEST_SKIP() << "no Python with onnx at " << QYOLO_PYTHON;
  // Symbolic batch, a float32 weight, a Constant with an int64 tensor attribute and a Cast.
  Graph graph;
  graph.name = "small";
  graph.opset_imports = {{"", 13}};
  graph.inputs.push_back({"x", DType::kFloat32, true, {-1, 3}, {"batch", ""}});
  graph.outputs.push_back({"y", DType::kFloat16, true, {-1, 2}, {"batch", ""}});
  graph.initializers["w"] = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  graph.nodes.push_back({"matmul", "MatMul", "", {"x", "w"}, {"t"}, {}});
  graph.nodes.push_back({"shape",
                         "Constant",
                         "",
                         {},
                         {"target"},
                         {{"value", Attribute::of_tensor(Tensor::from_vector<int64_t>({-1, 2}))}}});
  graph.nodes.push_back({"reshape", "Reshape", "", {"t", "target"}, {"r"}, {}});
  graph.nodes.push_back({"cast", "Cast", "", {"r"}, {"y"}, {{"to", Attribute::of_int(10)}}});
  const auto path = temp_dir() / "small.onnx";
  Status saved = save_onnx(graph, path);
  ASSERT_TRUE(saved.is_ok()) << saved.message();
  expect_checker_accepts(path);
  auto reloaded = load_onnx(path);
  ASSERT_TRUE(reloaded.has_value()) << reloaded.status().message();
  EXPECT_TRUE(*reloaded == graph);
}

TEST(OnnxExport, UndefinedAttributeIsAnErrorNamingIt) {
  Graph graph = every_kind_graph();
  graph.nodes[0].attributes["broken"] = Attribute{};
  auto bytes = serialize_onnx(graph);
  expect_error(bytes, {"custom", "broken"});
}

TEST(OnnxExport, UnwritablePathIsAnError) {
  Status status = save_onnx(every_kind_graph(), "/nonexistent-dir/model.onnx");
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("/nonexistent-dir/model.onnx"), std::string::npos);
}

// --- bad files ---

TEST(OnnxBadInput, MissingFile) {
  const auto path = (temp_dir() / "no_such_model.onnx").string();
  expect_error(load_onnx(path), {"cannot open", path, "No such file"});
}

TEST(OnnxBadInput, Directory) {
  const auto path = temp_dir().string();
  expect_error(load_onnx(path), {path, "directory"});
}

TEST(OnnxBadInput, EmptyFile) {
  const auto path = temp_dir() / "empty.onnx";
  write_file(path, "");
  expect_error(load_onnx(path), {path.string(), "empty file"});
}

TEST(OnnxBadInput, TruncatedYolov5n) {
  const std::string bytes = read_file(yolov5n_path());
  ASSERT_GT(bytes.size(), 100000u);
  const auto dir = temp_dir();
  for (size_t length : {size_t{1000}, bytes.size() / 2, bytes.size() - 1}) {
    const auto path = dir / ("truncated_" + std::to_string(length) + ".onnx");
    write_file(path, bytes.substr(0, length));
    expect_error(load_onnx(path), {path.string(), "not a valid ONNX", "truncated or corrupt"});
  }
}

TEST(OnnxBadInput, RandomBytes) {
  const auto dir = temp_dir();
  for (uint32_t seed = 1; seed <= 50; ++seed) {
    std::mt19937 rng(seed);
    std::string bytes(1 + rng() % 5000, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    // Binary that merely starts like JSON must not be called JSON.
    if (seed % 5 == 0) bytes[0] = seed % 2 ? '{' : '[';
    const auto path = dir / ("random_" + std::to_string(seed) + ".onnx");
    write_file(path, bytes);
    expect_error(load_onnx(path), {path.string(), "not a valid ONNX"});
  }
}

TEST(OnnxBadInput, Json) {
  const auto dir = temp_dir();
  write_file(dir / "model.json", "  \n{\"graph\": {\"node\": []}}\n");
  expect_error(load_onnx(dir / "model.json"), {(dir / "model.json").string(), "looks like JSON"});
  write_file(dir / "list.onnx", "[1, 2, 3]");
  expect_error(load_onnx(dir / "list.onnx"), {(dir / "list.onnx").string(), "looks like JSON"});
}

TEST(OnnxBadInput, GitLfsPointer) {
  const auto path = temp_dir() / "yolov5n.onnx";
  write_file(path,
             "version https://git-lfs.github.com/spec/v1\n"
             "oid sha256:4f5e2d6c0d0bd0d1ab2b7a0b13f9a6b1c9d2c6c8b8e3a1f5a7d9e0c1b2a3f4e5\n"
             "size 7918418\n");
  expect_error(load_onnx(path), {path.string(), "git-LFS pointer", "git lfs pull"});
}

TEST(OnnxBadInput, ParseNamesTheSource) {
  expect_error(parse_onnx("\x01\x02\x03", "memory buffer"), {"memory buffer", "not a valid ONNX"});
  expect_error(parse_onnx("", "memory buffer"), {"memory buffer", "empty"});
}

// --- hand-made models: the writer above is right, and broken tensors are named ---

TEST(OnnxHandmade, ValidModelImportsTypedFields) {
  // The bias in float_data rather than raw_data, as older exporters write it.
  ProtoWriter bias;
  bias.varint(field::kTensorDims, 2)
      .varint(field::kTensorDataType, 1)
      .bytes(field::kTensorName, "b");
  bias.packed_floats(field::kTensorFloatData, {0.5f, -1.5f});
  auto graph = parse_onnx(model_bytes(bias), "handmade.onnx");
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  EXPECT_EQ(graph->name, "handmade");
  EXPECT_EQ(graph->opset(), 13);
  ASSERT_NE(graph->find_initializer("b"), nullptr);
  EXPECT_EQ(graph->find_initializer("b")->to_double(), (std::vector<double>{0.5, -1.5}));
}

TEST(OnnxHandmade, Int8AndInt64TypedFields) {
  ProtoWriter i8;
  i8.varint(field::kTensorDims, 3).varint(field::kTensorDataType, 3).bytes(field::kTensorName, "b");
  i8.packed_varints(field::kTensorInt32Data, {-128, 5, 127});
  auto graph = parse_onnx(model_bytes(i8), "int8.onnx");
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  const Tensor* b = graph->find_initializer("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype(), DType::kInt8);
  EXPECT_EQ(b->to_int64(), (std::vector<int64_t>{-128, 5, 127}));

  ProtoWriter i64;
  i64.varint(field::kTensorDataType, 7).bytes(field::kTensorName, "b");  // a scalar
  i64.packed_varints(field::kTensorInt64Data, {-(int64_t{1} << 40)});
  graph = parse_onnx(model_bytes(i64), "int64.onnx");
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  EXPECT_EQ(graph->find_initializer("b")->shape(), Shape{});
  EXPECT_EQ(graph->find_initializer("b")->to_int64(), (std::vector<int64_t>{-(int64_t{1} << 40)}));
}

TEST(OnnxHandmade, UnnamedNodeGetsAStableName) {
  ProtoWriter add;
  add.bytes(field::kNodeInput, "x").bytes(field::kNodeInput, "b").bytes(field::kNodeOutput, "y");
  add.bytes(field::kNodeOpType, "Add");
  const auto bias = raw_initializer("b", 1, {2}, std::string(8, '\0'));
  auto graph = parse_onnx(model_bytes(bias, &add), "unnamed.onnx");
  ASSERT_TRUE(graph.has_value()) << graph.status().message();
  EXPECT_EQ(graph->nodes[0].name, "Add_0");
}

TEST(OnnxHandmade, UnsupportedDtypeNamesTheTensor) {
  // 8 is STRING, 16 is BFLOAT16: neither is a qyolo dtype.
  for (int code : {8, 16}) {
    const auto bias = raw_initializer("odd_bias", code, {2}, std::string(4, '\0'));
    expect_error(parse_onnx(model_bytes(bias), "odd.onnx"),
                 {"odd.onnx", "odd_bias", "not supported"});
  }
}

TEST(OnnxHandmade, WrongDataSizeNamesTheTensor) {
  const auto bias = raw_initializer("short_bias", 1, {2, 3}, std::string(8, '\0'));
  expect_error(parse_onnx(model_bytes(bias), "short.onnx"),
               {"short.onnx", "short_bias", "expected 24 bytes", "got 8"});

  ProtoWriter typed;
  typed.varint(field::kTensorDims, 3).varint(field::kTensorDataType, 1);
  typed.bytes(field::kTensorName, "typed_bias").packed_floats(field::kTensorFloatData, {1.f});
  expect_error(parse_onnx(model_bytes(typed), "typed.onnx"),
               {"typed_bias", "expected 12 bytes", "got 4"});

  ProtoWriter negative = raw_initializer("negative_bias", 1, {}, "");
  negative.varint(field::kTensorDims, static_cast<uint64_t>(int64_t{-2}));
  expect_error(parse_onnx(model_bytes(negative), "negative.onnx"), {"negative_bias", "negative"});
}

TEST(OnnxHandmade, ExternalDataNamesTheTensor) {
  ProtoWriter bias = raw_initializer("far_bias", 1, {2}, "");
  bias.varint(field::kTensorDataLocation, 1);
  expect_error(parse_onnx(model_bytes(bias), "external.onnx"),
               {"external.onnx", "far_bias", "external"});
}

TEST(OnnxHandmade, GraphAttributeNamesNodeAndAttribute) {
  ProtoWriter node;
  node.bytes(field::kNodeInput, "x").bytes(field::kNodeOutput, "y");
  node.bytes(field::kNodeName, "branch").bytes(field::kNodeOpType, "If");
  node.message(field::kNodeAttribute, ProtoWriter()
                                          .bytes(field::kAttrName, "then_branch")
                                          .message(field::kAttrG, ProtoWriter())
                                          .varint(field::kAttrType, 5));
  const auto bias = raw_initializer("b", 1, {2}, std::string(8, '\0'));
  expect_error(parse_onnx(model_bytes(bias, &node), "if.onnx"),
               {"if.onnx", "branch", "then_branch", "GRAPH"});
}

TEST(OnnxHandmade, ModelWithoutGraphOrNodes) {
  const std::string no_graph =
      ProtoWriter()
          .varint(field::kModelIrVersion, 7)
          .message(field::kModelOpset, ProtoWriter().varint(field::kOpsetVersion, 13))
          .str();
  expect_error(parse_onnx(no_graph, "no_graph.onnx"), {"no_graph.onnx", "no graph"});

  const std::string no_nodes =
      ProtoWriter()
          .varint(field::kModelIrVersion, 7)
          .message(field::kModelGraph, ProtoWriter().bytes(field::kGraphName, "g"))
          .str();
  expect_error(parse_onnx(no_nodes, "no_nodes.onnx"), {"no_nodes.onnx", "no nodes"});
}

TEST(OnnxHandmade, DanglingInputIsReported) {
  ProtoWriter node;
  node.bytes(field::kNodeInput, "ghost").bytes(field::kNodeOutput, "y");
  node.bytes(field::kNodeName, "haunted").bytes(field::kNodeOpType, "Relu");
  const auto bias = raw_initializer("b", 1, {2}, std::string(8, '\0'));
  expect_error(parse_onnx(model_bytes(bias, &node), "dangling.onnx"),
               {"dangling.onnx", "haunted", "ghost"});
}

}  // namespace
}  // namespace qyolo
