// qyolo val end to end: the stats agree with pycocotools on the saved detections, a trimmed
// model (three raw heads, decoded by qyolo) scores as the full export, and bad inputs are
// reported by name while the run goes on.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "qyolo/detector.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::run_qyolo;
using testing::temp_dir;

const std::string kImages = data_path("coco/val2017-mini/images").string();
const std::string kAnnotations =
    data_path("coco/val2017-mini/annotations/instances_val2017.json").string();

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

TEST(Val, StatsMatchPycocotoolsOnTheSavedDetections) {
  const auto dir = temp_dir();
  const auto result = run_qyolo("val --onnx " + testing::yolov5n_path().string() + " --images " +
                                kImages + " --annotations " + kAnnotations +
                                " --max-images 12 --save-json " + (dir / "preds.json").string() +
                                " --export-metrics " + (dir / "metrics.json").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all"),
            std::string::npos);
  EXPECT_NE(result.output.find("time per image: decode"), std::string::npos);
  const auto metrics = read_json(dir / "metrics.json");
  ASSERT_EQ(metrics["stats"].size(), 12u);
  EXPECT_EQ(metrics["images"], 12);
  EXPECT_GT(metrics["stats"][0].get<double>(), 0.2);
  // The evaluator on the same file must give the same numbers (qyolo's cocoeval is
  // pycocotools' to the bit, tested in test_coco).
  const auto eval =
      run_qyolo("cocoeval --gt " + kAnnotations + " --dt " + (dir / "preds.json").string() +
                " --export-metrics " + (dir / "eval.json").string());
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  if (!testing::have_python_oracles()) GTEST_SKIP() << "no Python oracles at " QYOLO_PYTHON;
  std::ofstream script(dir / "eval.py");
  script << "import json, sys\n"
            "from pycocotools.coco import COCO\nfrom pycocotools.cocoeval import COCOeval\n"
            "gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])\n"
            "ids = sorted({d['image_id'] for d in json.load(open(sys.argv[2]))})\n"
            "e = COCOeval(gt, dt, 'bbox'); e.params.imgIds = json.load(open(sys.argv[3]))\n"
            "e.evaluate(); e.accumulate(); e.summarize()\n"
            "print('STATS', json.dumps(list(e.stats)))\n";
  script.close();
  // The 12 images val evaluated: the first 12 annotated images found in the folder.
  nlohmann::json ids = nlohmann::json::array();
  const auto gt = read_json(kAnnotations);
  for (const auto& image : gt["images"]) {
    if (ids.size() == 12) break;
    if (std::filesystem::exists(std::filesystem::path(kImages) /
                                image["file_name"].get<std::string>())) {
      ids.push_back(image["id"]);
    }
  }
  std::ofstream(dir / "ids.json") << ids.dump();
  const auto py = testing::run_command(
      std::string(QYOLO_PYTHON) + " " + (dir / "eval.py").string() + " " + kAnnotations + " " +
      (dir / "preds.json").string() + " " + (dir / "ids.json").string());
  ASSERT_EQ(py.exit_code, 0) << py.output;
  const auto at = py.output.find("STATS ");
  ASSERT_NE(at, std::string::npos) << py.output;
  const auto stats = nlohmann::json::parse(py.output.substr(at + 6));
  for (int i = 0; i < 12; ++i) {
    EXPECT_DOUBLE_EQ(stats[i].get<double>(), metrics["stats"][i].get<double>()) << "stat " << i;
  }
}

TEST(Val, TrimmedModelScoresAsTheFullExport) {
  const auto dir = temp_dir();
  auto trimmed_model = trim_at_heads(*load_onnx(testing::yolov5n_path().string()));
  ASSERT_TRUE(trimmed_model) << trimmed_model.status().message();
  ASSERT_EQ(trimmed_model->outputs.size(), 3u);
  ASSERT_TRUE(save_onnx(*trimmed_model, (dir / "trimmed.onnx").string()).is_ok());
  auto run = [&](const std::string& model, const std::string& metrics) {
    return run_qyolo("val --onnx " + model + " --images " + kImages + " --annotations " +
                     kAnnotations + " --max-images 6 --export-metrics " + metrics);
  };
  auto full = run(testing::yolov5n_path().string(), (dir / "full.json").string());
  auto trimmed = run((dir / "trimmed.onnx").string(), (dir / "trimmed.json").string());
  ASSERT_EQ(full.exit_code, 0) << full.output;
  ASSERT_EQ(trimmed.exit_code, 0) << trimmed.output;
  const auto a = read_json(dir / "full.json")["stats"];
  const auto b = read_json(dir / "trimmed.json")["stats"];
  for (int i = 0; i < 12; ++i) {
    EXPECT_NEAR(a[i].get<double>(), b[i].get<double>(), 2e-3) << "stat " << i;
  }
}

TEST(Val, CorruptAndMissingImagesAreCountedAndTheRunGoesOn) {
  const auto dir = temp_dir();
  const auto images = dir / "images";
  std::filesystem::create_directories(images);
  const auto gt = read_json(kAnnotations);
  // Three real images, one corrupt file under a fourth annotated name, one left missing.
  std::vector<std::string> names;
  for (const auto& image : gt["images"]) names.push_back(image["file_name"]);
  for (int i = 0; i < 3; ++i) {
    std::filesystem::copy_file(std::filesystem::path(kImages) / names[i], images / names[i]);
  }
  testing::write_file(images / names[3], "this is not a jpeg");
  const auto result = run_qyolo("val --onnx " + testing::yolov5n_path().string() + " --images " +
                                images.string() + " --annotations " + kAnnotations +
                                " --export-metrics " + (dir / "m.json").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find(names[3]), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("of " + std::to_string(gt["images"].size()) +
                               " annotated images are not in"),
            std::string::npos)
      << result.output;
  const auto m = read_json(dir / "m.json");
  EXPECT_EQ(m["images"], 4);
  EXPECT_EQ(m["failed_images"], 1);
  EXPECT_EQ(m["missing_images"], static_cast<int>(gt["images"].size()) - 4);
}

TEST(Val, BadInputsAreOneLine) {
  const auto dir = temp_dir();
  auto result = run_qyolo("val --onnx " + testing::yolov5n_path().string() + " --images " +
                          dir.string() + " --annotations " + kAnnotations);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("none of the"), std::string::npos) << result.output;

  testing::write_file(dir / "bad.json", "{\"images\" [\n]}");
  result = run_qyolo("val --onnx " + testing::yolov5n_path().string() + " --images " + kImages +
                     " --annotations " + (dir / "bad.json").string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("line 1"), std::string::npos) << result.output;

  result = run_qyolo("val --onnx " + (dir / "nothing.onnx").string() + " --images " + kImages +
                     " --annotations " + kAnnotations);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("nothing.onnx"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace qyolo
