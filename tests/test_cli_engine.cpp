// qyolo build / val --loadEngine / detect --loadEngine / bench end to end on yolov5n: the
// engine's detections equal the INT8 reference backend's, the bench report has trtexec's
// shape and its exports parse, and every mistake is one line with exit code 1.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "qyolo/vision.h"
#include "test_util.h"

namespace qyolo {
namespace {

namespace fs = std::filesystem;
using testing::run_command;
using testing::run_qyolo;

const std::string kHeads =
    "\\\"/model.24/m.0/Conv\\\":fp16,\\\"/model.24/m.1/Conv\\\":fp16,\\\"/model.24/m.2/"
    "Conv\\\":fp16";

std::string data(const std::string& relative) { return testing::data_path(relative).string(); }

// A max-calibrated cache from one calibration image, and yolov5n trimmed at its heads (the
// model the engine runs, decoded on the host), written once for the whole file.
struct Files {
  fs::path dir, cache, trimmed;
  bool ok = false;
};

const Files& files() {
  static Files f = [] {
    Files out;
    out.dir = fs::temp_directory_path() / "qyolo_cli_engine";
    fs::create_directories(out.dir);
    out.cache = out.dir / "yolov5n_max.cache";
    out.trimmed = out.dir / "yolov5n_trimmed.onnx";
    auto graph = load_onnx(testing::yolov5n_path().string());
    if (!graph) return out;
    auto trimmed = trim_at_heads(*graph);
    if (!trimmed) return out;
    const Graph& g = *trimmed;
    if (!save_onnx(g, out.trimmed.string()).is_ok()) return out;
    auto image = read_image(data("coco/calib2017/images/000000012280.jpg"));
    if (!image) return out;
    Tensor x(DType::kFloat32, {1, 3, 640, 640});
    image_to_tensor(letterbox(*image, 640, 640, nullptr), x, 0);
    std::vector<std::string> probe = {"images"};
    for (const Node& n : g.nodes)
      if (n.op_type != "Constant") probe.push_back(n.outputs[0]);
    auto ranges = max_abs_ranges(g, {{{"images", x}}}, probe);
    if (!ranges) return out;
    CalibrationCache cache;
    cache.algorithm = "MaxCalibration";
    for (const auto& [name, amax] : *ranges)
      cache.entries.push_back({name, std::max(amax, 1e-6f) / 127});
    out.ok = write_calibration_cache(cache, out.cache.string()).is_ok();
    return out;
  }();
  return f;
}

std::string build_args(const std::string& engine, const std::string& extra) {
  return "build --onnx " + testing::yolov5n_path().string() + " --int8 --calib " +
         files().cache.string() + " --saveEngine " + engine + " " + extra;
}

std::string val_args(int images) {
  return " --images " + data("coco/val2017-mini/images") + " --annotations " +
         data("coco/val2017-mini/annotations/instances_val2017.json") + " --max-images " +
         std::to_string(images);
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

class CliEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!files().ok) GTEST_SKIP() << "yolov5n or the calibration images are missing";
  }
};

TEST_F(CliEngine, BuildPrintsItsPassesAndValEqualsTheReference) {
  const fs::path engine = files().dir / "c2.engine";
  auto build = run_qyolo(build_args(engine.string(), "--fp16 --layerPrecisions \"" + kHeads +
                                                         "\" --inputIOFormats int8:hwc4 "
                                                         "--outputIOFormats fp16:chw16"));
  ASSERT_EQ(build.exit_code, 0) << build.output;
  for (const char* line : {"fold_constants", "57 Conv+SiLU", "7 Add fused", "13 Concat removed",
                           "4 by their producer requantizing as the reference's copy does), 0 copied",
                           "no reformat inside the network", "peak", "FP16 fallback: 3 nodes",
                           "/model.24/m.2/Conv (--layerPrecisions)", "int8:hwc4", "fp16:chw16"})
    EXPECT_NE(build.output.find(line), std::string::npos) << line << "\n" << build.output;

  const fs::path a = files().dir / "engine.json", b = files().dir / "reference.json";
  auto with_engine = run_qyolo("val --loadEngine " + engine.string() + val_args(3) +
                               " --export-metrics " + a.string());
  ASSERT_EQ(with_engine.exit_code, 0) << with_engine.output;
  auto reference = run_qyolo("val --onnx " + files().trimmed.string() + " --int8 --calib " +
                             files().cache.string() + " --layerPrecisions \"" + kHeads + "\"" +
                             val_args(3) + " --export-metrics " + b.string());
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  EXPECT_EQ(read_json(a)["stats"], read_json(b)["stats"]);
  EXPECT_EQ(read_json(a)["detections"], read_json(b)["detections"]);
  EXPECT_GT(read_json(a)["detections"].get<int>(), 100);
  // A cpu engine letterboxes and runs NMS on the host; val says so.
  EXPECT_NE(with_engine.output.find("pipeline: letterbox, decode and NMS on the host"),
            std::string::npos)
      << with_engine.output;
  EXPECT_EQ(read_json(a)["pipeline"], "host");
  // Sharded over two instances: the same results, merged in order.
  const fs::path c = files().dir / "two.json", ra = files().dir / "one.res.json",
                 rc = files().dir / "two.res.json";
  auto one = run_qyolo("val --loadEngine " + engine.string() + val_args(3) + " --save-json " +
                       ra.string());
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = run_qyolo("val --loadEngine " + engine.string() + val_args(3) +
                       " --devices 0,0 --export-metrics " + c.string() + " --save-json " +
                       rc.string());
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("all 2 instances:"), std::string::npos) << two.output;
  EXPECT_EQ(read_json(c)["stats"], read_json(a)["stats"]);
  EXPECT_EQ(read_json(rc), read_json(ra));

  auto detect = run_qyolo("detect --loadEngine " + engine.string() + " -o " +
                          (files().dir / "detect").string() + " " +
                          data("coco/val2017-mini/images/000000000139.jpg"));
  ASSERT_EQ(detect.exit_code, 0) << detect.output;
  EXPECT_FALSE(read_json(files().dir / "detect" / "detections.json").empty());
}

TEST_F(CliEngine, BenchReportsLikeTrtexec) {
  const fs::path engine = files().dir / "c1.engine";
  auto build = run_qyolo(build_args(engine.string(),
                                    "--inputIOFormats int8:hwc4 "
                                    "--outputIOFormats int8:chw32 --maxBatch 2"));
  ASSERT_EQ(build.exit_code, 0) << build.output;
  const fs::path times = files().dir / "times.json", profile = files().dir / "profile.json";
  auto bench = run_qyolo("bench --loadEngine " + engine.string() +
                         " --batch 1 --warmUp 0 --duration 0 --iterations 2 --dumpProfile "
                         "--exportTimes " +
                         times.string() + " --exportProfile " + profile.string());
  ASSERT_EQ(bench.exit_code, 0) << bench.output;
  for (const char* line :
       {"Throughput:", "Latency: min = ", "percentile(99%)", "H2D Latency", "Compute Time",
        "D2H Latency", "Coefficient of variation", "=== Profile", "Conv+SiLU+Add"})
    EXPECT_NE(bench.output.find(line), std::string::npos) << line << "\n" << bench.output;
  const auto t = read_json(times);
  ASSERT_GE(t.size(), 2u);
  EXPECT_GT(t[0]["computeMs"].get<double>(), 0.0);
  const auto p = read_json(profile);
  EXPECT_EQ(p[0]["count"].get<int>(), 3);
  const size_t at = build.output.find("layers: ");
  ASSERT_NE(at, std::string::npos) << build.output;
  EXPECT_EQ(p.size(), 1 + std::stoul(build.output.substr(at + 8)));  // every layer
  double share = 0;
  for (size_t i = 1; i < p.size(); ++i) share += p[i]["percentage"].get<double>();
  EXPECT_NEAR(share, 100.0, 0.01);
  std::ifstream svg(fs::path(profile).replace_extension(".svg"));
  std::string text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.rfind("<svg", 0), 0u);
  EXPECT_NE(text.find("<rect"), std::string::npos);

  // --devices: the first instance's report, then every instance at once, with the scaling.
  auto multi = run_qyolo("bench --loadEngine " + engine.string() +
                         " --batch 1 --warmUp 0 --duration 0 --iterations 2 --devices 0,0");
  ASSERT_EQ(multi.exit_code, 0) << multi.output;
  for (const char* line : {"Throughput:", "=== Devices (2 instances at once", "instance 0 (device 0",
                           "instance 1 (device 0", "scaling efficiency: "})
    EXPECT_NE(multi.output.find(line), std::string::npos) << line << "\n" << multi.output;
}

TEST_F(CliEngine, MistakesAreOneLineErrors) {
  const std::string e = (files().dir / "bad.engine").string();
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"build --onnx " + testing::yolov5n_path().string() + " --int8 --saveEngine " + e,
       "--int8 needs --calib"},
      {build_args(e, "--inputIOFormats int4:chw"), "unknown I/O format 'int4:chw'"},
      {build_args(e, "--layerPrecisions /model.24/m.0/Conv:fp16"), "add --fp16"},
      {build_args(e, "--target tpu"), "unknown target 'tpu'"},
      {"val --loadEngine " + testing::yolov5n_path().string() + val_args(1), "not a qyolo engine"},
      {"val --loadEngine " + e + " --onnx x.onnx" + val_args(1), "either --onnx"},
      {"bench --loadEngine /nonexistent.engine", "cannot open"},
  };
  for (const Case& c : cases) {
    auto r = run_qyolo(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  // A cuda engine builds anywhere, and runs only where the CUDA backend is.
  const std::string cuda = (files().dir / "cuda.engine").string();
  ASSERT_EQ(run_qyolo(build_args(cuda, "--target cuda")).exit_code, 0);
  auto r = run_qyolo("val --loadEngine " + cuda + val_args(1));
  if (r.exit_code != 0)  // no CUDA backend or no GPU here; where both are, it simply runs
    EXPECT_NE(r.output.find("target cuda: "), std::string::npos) << r.output;
  // --devices: only with an engine, indices the target has.
  r = run_qyolo("val --onnx " + testing::yolov5n_path().string() + " --devices 0" + val_args(1));
  EXPECT_NE(r.output.find("--devices needs --loadEngine"), std::string::npos) << r.output;
  r = run_qyolo("val --loadEngine " + cuda + " --devices 0,x" + val_args(1));
  EXPECT_NE(r.output.find("expected all or device indices"), std::string::npos) << r.output;
  const std::string cpu = (files().dir / "cpu.engine").string();
  ASSERT_EQ(run_qyolo(build_args(cpu, "")).exit_code, 0);
  r = run_qyolo("val --loadEngine " + cpu + " --devices 0,1" + val_args(1));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("the cpu target has one device, 0"), std::string::npos) << r.output;
  r = run_qyolo("bench --loadEngine " + cpu + " --devices 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("the cpu target has one device, 0"), std::string::npos) << r.output;
  r = run_qyolo("bench --loadEngine " + cpu + " --useCudaGraph");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--useCudaGraph needs a cuda engine"), std::string::npos) << r.output;
  // Truncated on disk.
  ASSERT_EQ(run_command("head -c 1000 " + cuda + " > " + e).exit_code, 0);
  r = run_qyolo("bench --loadEngine " + e);
  EXPECT_NE(r.output.find("truncated: payload"), std::string::npos) << r.output;
}

TEST_F(CliEngine, DisabledFusionIsReported) {
  const std::string e = (files().dir / "unfused.engine").string();
  auto r =
      run_command("QYOLO_DISABLE_FUSION=1 " + std::string(QYOLO_BINARY) + " " + build_args(e, ""));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("fusion off"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("off (QYOLO_DISABLE_FUSION=1)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("28 copied"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qyolo
