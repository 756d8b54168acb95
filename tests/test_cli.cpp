// The qyolo CLI end to end: inspect and infer on the real model, and every bad input giving
// one line that names the file, node or tensor, a non-zero exit, and no crash.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "qyolo/npy.h"
#include "qyolo/onnx.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::run_qyolo;
using testing::temp_dir;
using testing::write_file;
using testing::yolov5n_path;

// One line on stderr, naming the subject, exit code 1 (not a signal).
void expect_clean_error(const testing::CommandResult& result, const std::string& needle) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(needle), std::string::npos)
      << "expected '" << needle << "' in: " << result.output;
  int lines = 0;
  for (char c : result.output) lines += c == '\n';
  EXPECT_EQ(lines, 1) << result.output;
}

// A two-input Add model written through qyolo's own exporter.
Graph add_model(const std::string& op = "Add") {
  Graph g;
  g.name = "add";
  g.opset_imports = {{"", 13}};
  for (const char* name : {"a", "b"}) {
    ValueInfo v;
    v.name = name;
    v.dtype = DType::kFloat32;
    v.has_shape = true;
    v.shape = {2, 3};
    v.dim_params = {"", ""};
    g.inputs.push_back(v);
  }
  ValueInfo y;
  y.name = "y";
  y.dtype = DType::kFloat32;
  g.outputs.push_back(y);
  Node node;
  node.name = "the_add";
  node.op_type = op;
  node.inputs = {"a", "b"};
  node.outputs = {"y"};
  g.nodes.push_back(node);
  return g;
}

std::string npy_of(const Tensor& t, const std::filesystem::path& path) {
  EXPECT_TRUE(write_npy(t, path.string()).is_ok());
  return path.string();
}

TEST(Cli, InspectYolov5n) {
  const auto result = run_qyolo("inspect " + yolov5n_path().string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("images"), std::string::npos);
  EXPECT_NE(result.output.find("1x3x640x640"), std::string::npos);
  EXPECT_NE(result.output.find("1x25200x85"), std::string::npos);
  EXPECT_NE(result.output.find("4.47 G"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("Conv                 60"), std::string::npos);
  EXPECT_NE(result.output.find("Q/DQ      no"), std::string::npos);
}

TEST(Cli, InspectAtAnotherInputSize) {
  const auto result =
      run_qyolo("inspect " + yolov5n_path().string() + " --shapes images:1x3x320x320");
  expect_clean_error(result, "fixed shape");
}

TEST(Cli, InferWritesEveryOutput) {
  const auto dir = temp_dir();
  Graph g = add_model();
  ASSERT_TRUE(save_onnx(g, (dir / "add.onnx").string()).is_ok());
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<float>{10, 20, 30, 40, 50, 60}, {2, 3});
  const auto result = run_qyolo(
      "infer --onnx " + (dir / "add.onnx").string() + " --input a=" + npy_of(a, dir / "a.npy") +
      " --input b=" + npy_of(b, dir / "b.npy") + " --output-dir " + (dir / "out").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto y = read_npy((dir / "out" / "y.npy").string());
  ASSERT_TRUE(y) << y.status().message();
  EXPECT_EQ(y->shape(), (Shape{2, 3}));
  EXPECT_FLOAT_EQ(y->data<float>()[5], 66.0f);
}

TEST(Cli, InferOutputNamesBecomeFileNames) {
  const auto dir = temp_dir();
  Graph g = add_model();
  g.nodes[0].outputs = {"/model.24/out:0"};
  g.outputs[0].name = "/model.24/out:0";
  ASSERT_TRUE(save_onnx(g, (dir / "m.onnx").string()).is_ok());
  Tensor a(DType::kFloat32, {2, 3});
  const auto result = run_qyolo(
      "infer --onnx " + (dir / "m.onnx").string() + " --input a=" + npy_of(a, dir / "a.npy") +
      " --input b=" + (dir / "a.npy").string() + " --output-dir " + (dir / "out").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "_model.24_out_0.npy"));
}

TEST(Cli, BadModelFiles) {
  const auto dir = temp_dir();
  Tensor x(DType::kFloat32, {1, 3, 640, 640});
  const std::string input = npy_of(x, dir / "x.npy");
  auto infer = [&](const std::filesystem::path& model) {
    return run_qyolo("infer --onnx " + model.string() + " --input " + input + " --output-dir " +
                     (dir / "out").string());
  };
  write_file(dir / "empty.onnx", "");
  expect_clean_error(infer(dir / "empty.onnx"), "empty.onnx");

  std::ifstream real(yolov5n_path(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(real)), std::istreambuf_iterator<char>());
  write_file(dir / "truncated.onnx", bytes.substr(0, bytes.size() / 2));
  expect_clean_error(infer(dir / "truncated.onnx"), "truncated.onnx");

  std::string noise(4096, '\0');
  std::mt19937 rng(7);
  for (char& c : noise) c = static_cast<char>(rng());
  write_file(dir / "random.onnx", noise);
  expect_clean_error(infer(dir / "random.onnx"), "random.onnx");

  write_file(dir / "model.json", "{\"graph\": {\"node\": []}}\n");
  expect_clean_error(infer(dir / "model.json"), "JSON");

  write_file(dir / "lfs.onnx",
             "version https://git-lfs.github.com/spec/v1\n"
             "oid sha256:4d0c5f5ea6f2d5b1c8a3c8c2e5f8b1f3e8c6d0b0f0c1e2d3c4b5a69788796a5b\n"
             "size 7753023\n");
  expect_clean_error(infer(dir / "lfs.onnx"), "git-LFS");

  expect_clean_error(infer(dir / "missing.onnx"), "missing.onnx");
}

TEST(Cli, UnsupportedOpIsNamed) {
  const auto dir = temp_dir();
  ASSERT_TRUE(save_onnx(add_model("Softmax"), (dir / "m.onnx").string()).is_ok());
  Tensor a(DType::kFloat32, {2, 3});
  const auto result = run_qyolo(
      "infer --onnx " + (dir / "m.onnx").string() + " --input a=" + npy_of(a, dir / "a.npy") +
      " --input b=" + (dir / "a.npy").string() + " --output-dir " + (dir / "out").string());
  expect_clean_error(result, "Softmax 'the_add'");
}

TEST(Cli, MissingInputIsNamed) {
  const auto dir = temp_dir();
  ASSERT_TRUE(save_onnx(add_model(), (dir / "m.onnx").string()).is_ok());
  Tensor a(DType::kFloat32, {2, 3});
  const auto result = run_qyolo("infer --onnx " + (dir / "m.onnx").string() +
                                " --input a=" + npy_of(a, dir / "a.npy") + " --output-dir " +
                                (dir / "out").string());
  expect_clean_error(result, "'b'");
}

TEST(Cli, UndefinedValueInGraphIsNamed) {
  const auto dir = temp_dir();
  Graph g = add_model();
  g.nodes[0].inputs[1] = "ghost";
  ASSERT_TRUE(save_onnx(g, (dir / "m.onnx").string()).is_ok());
  Tensor a(DType::kFloat32, {2, 3});
  const auto result = run_qyolo(
      "infer --onnx " + (dir / "m.onnx").string() + " --input a=" + npy_of(a, dir / "a.npy") +
      " --input b=" + (dir / "a.npy").string() + " --output-dir " + (dir / "out").string());
  expect_clean_error(result, "ghost");
}

TEST(Cli, ShapeMismatchInsideTheGraphNamesTheNode) {
  const auto dir = temp_dir();
  Graph g = add_model();
  g.inputs[1].shape = {2, 4};
  ASSERT_TRUE(save_onnx(g, (dir / "m.onnx").string()).is_ok());
  Tensor a(DType::kFloat32, {2, 3}), b(DType::kFloat32, {2, 4});
  const auto result = run_qyolo(
      "infer --onnx " + (dir / "m.onnx").string() + " --input a=" + npy_of(a, dir / "a.npy") +
      " --input b=" + npy_of(b, dir / "b.npy") + " --output-dir " + (dir / "out").string());
  expect_clean_error(result, "Add 'the_add'");
}

TEST(Cli, NpyOfWrongDtypeOrShape) {
  const auto dir = temp_dir();
  Tensor wrong_dtype(DType::kFloat64, {1, 3, 640, 640});
  auto result =
      run_qyolo("infer --onnx " + yolov5n_path().string() + " --input " +
                npy_of(wrong_dtype, dir / "f64.npy") + " --output-dir " + (dir / "out").string());
  expect_clean_error(result, "f64.npy: dtype float64");
  EXPECT_NE(result.output.find("expects float32"), std::string::npos) << result.output;

  Tensor wrong_shape(DType::kFloat32, {1, 3, 320, 320});
  result =
      run_qyolo("infer --onnx " + yolov5n_path().string() + " --input " +
                npy_of(wrong_shape, dir / "small.npy") + " --output-dir " + (dir / "out").string());
  expect_clean_error(result, "small.npy: shape 1x3x320x320");
  EXPECT_NE(result.output.find("1x3x640x640"), std::string::npos) << result.output;

  write_file(dir / "bad.npy", "not a numpy file at all");
  result = run_qyolo("infer --onnx " + yolov5n_path().string() + " --input " +
                     (dir / "bad.npy").string() + " --output-dir " + (dir / "out").string());
  expect_clean_error(result, "bad.npy");
}

TEST(Cli, Int8FlagsAreChecked) {
  const auto dir = temp_dir();
  Tensor x(DType::kFloat32, {1, 3, 640, 640});
  const std::string base = "infer --onnx " + yolov5n_path().string() + " --input " +
                           npy_of(x, dir / "x.npy") + " --output-dir " + (dir / "out").string();
  write_file(dir / "c.cache", "TRT-8600-MaxCalibration\nimages: 3c00f9f4\nghost: 3c00f9f4\n");
  expect_clean_error(run_qyolo(base + " --calib " + (dir / "c.cache").string()), "need --int8");
  expect_clean_error(run_qyolo(base + " --int8"), "--int8 needs --calib");
  write_file(dir / "images.cache", "TRT-8600-MaxCalibration\nimages: 3c00f9f4\n");
  expect_clean_error(run_qyolo(base + " --int8 --calib " + (dir / "images.cache").string() +
                               " --layerPrecisions /nope:fp16"),
                     "'/nope'");
  write_file(dir / "bad.cache", "TRT-8600-MaxCalibration\nimages 3c00f9f4\n");
  expect_clean_error(run_qyolo(base + " --int8 --calib " + (dir / "bad.cache").string()),
                     "bad.cache:2");
  // A cache naming tensors the model lacks warns and runs.
  const auto ok = run_qyolo(base + " --int8 --calib " + (dir / "c.cache").string());
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("not in the model (ghost)"), std::string::npos) << ok.output;
}

}  // namespace
}  // namespace qyolo
