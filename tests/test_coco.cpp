// The COCO module: JSON reading and writing with clear errors, and COCOeval (bbox) against
// pycocotools itself — the published fake-results numbers and randomized cases generated and
// evaluated by tests/python/coco_oracle.py.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "qyolo/coco.h"
#include "qyolo/npy.h"
#include "test_util.h"

namespace qyolo {
namespace {

using ::qyolo::testing::data_path;
using ::qyolo::testing::have_python_oracles;
using ::qyolo::testing::run_command;
using ::qyolo::testing::run_qyolo;
using ::qyolo::testing::temp_dir;
using ::qyolo::testing::write_file;

// pycocotools 2.0.8 on cocoapi's fake bbox results for 100 val2014 images (PROVENANCE.md).
constexpr std::array<double, 12> kFake100Stats = {
    0.5045806987249628, 0.6969727247299577, 0.5729816669904824,  0.5856257209410443,
    0.5193996948036719, 0.5013978986347466, 0.38681277964578054, 0.5936795762842003,
    0.595352982877607,  0.6398109626113442, 0.5664205978994309,  0.5642905982905982};

std::string fake100(const std::string& name) {
  return data_path("cocoeval/cocoapi-fake100/" + name).string();
}
std::string fake100_gt() { return fake100("instances_val2014_100.json"); }
std::string fake100_dt() { return fake100("instances_val2014_fakebbox100_results.json"); }

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string oracle_command(const std::string& args) {
  return std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR + "/python/coco_oracle.py " + args;
}

// Both -1 (nothing to average), or equal to 1e-12.
void expect_stat_eq(double expected, double actual, const std::string& what) {
  if (expected == -1 || actual == -1) {
    EXPECT_EQ(expected, actual) << what;
  } else {
    EXPECT_NEAR(expected, actual, 1e-12) << what;
  }
}

Expected<CocoEvalResult> evaluate_files(const std::string& gt_path, const std::string& dt_path,
                                        const CocoEvalParams& params = {}) {
  QYOLO_ASSIGN_OR_RETURN(CocoDataset gt, load_coco_annotations(gt_path));
  QYOLO_ASSIGN_OR_RETURN(std::vector<CocoAnnotation> dt, load_coco_results(dt_path, gt));
  return evaluate_coco_bbox(gt, dt, params);
}

TEST(CocoEval, Fake100MatchesPycocotools) {
  auto result = evaluate_files(fake100_gt(), fake100_dt());
  ASSERT_TRUE(result) << result.status().message();
  for (size_t i = 0; i < 12; ++i) {
    expect_stat_eq(kFake100Stats[i], result->stats[i], "stat " + std::to_string(i));
  }
  EXPECT_EQ(result->params.image_ids.size(), 100u);
  EXPECT_EQ(result->params.category_ids.size(), 80u);
}

TEST(CocoEval, SameResultOnOneThreadAndMany) {
  auto gt = load_coco_annotations(fake100_gt());
  ASSERT_TRUE(gt) << gt.status().message();
  auto dt = load_coco_results(fake100_dt(), *gt);
  ASSERT_TRUE(dt) << dt.status().message();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = evaluate_coco_bbox(*gt, *dt);
  omp_set_num_threads(3);
  auto many = evaluate_coco_bbox(*gt, *dt);
  omp_set_num_threads(threads);
  ASSERT_TRUE(one && many);
  EXPECT_EQ(one->precision, many->precision);
  EXPECT_EQ(one->recall, many->recall);
  EXPECT_EQ(one->scores, many->scores);
  EXPECT_EQ(one->stats, many->stats);
}

TEST(CocoEval, ParametersDefaultToPycocotools) {
  const CocoEvalParams params;
  ASSERT_EQ(params.iou_thresholds.size(), 10u);
  EXPECT_EQ(params.iou_thresholds[0], 0.5);
  EXPECT_EQ(params.iou_thresholds[5], 0.75);
  EXPECT_EQ(params.iou_thresholds[8], 0.8999999999999999);  // np.linspace, not 0.9
  EXPECT_EQ(params.iou_thresholds[9], 0.95);
  ASSERT_EQ(params.recall_thresholds.size(), 101u);
  EXPECT_EQ(params.recall_thresholds[100], 1.0);
  EXPECT_EQ(params.max_detections, (std::vector<int>{1, 10, 100}));
  EXPECT_EQ(params.area_ranges[2][1], 96.0 * 96.0);
}

TEST(CocoEval, PerCategoryApAveragesToTheMeanAp) {
  auto result = evaluate_files(fake100_gt(), fake100_dt());
  ASSERT_TRUE(result) << result.status().message();
  const auto categories = coco_per_category_ap(*result);
  ASSERT_EQ(categories.size(), 80u);
  double sum = 0;
  int with_gt = 0;
  for (const auto& c : categories) {
    if (c.ap < 0) {
      EXPECT_EQ(c.num_gt, 0) << c.category_id;
      EXPECT_EQ(c.ap50, -1) << c.category_id;
      continue;
    }
    EXPECT_GT(c.num_gt, 0) << c.category_id;
    EXPECT_GE(c.ap50 + 1e-12, c.ap) << c.category_id;  // equal up to summation order
    sum += c.ap;
    ++with_gt;
  }
  // Every category has all 1010 entries, so the mean of means is the mean.
  ASSERT_GT(with_gt, 0);
  EXPECT_NEAR(sum / with_gt, kFake100Stats[0], 1e-12);
}

// pycocotools' loadRes refuses an empty list. Its evaluate() and accumulate() give AP and AR 0
// to every category with ground truth when none of the detections are on evaluated
// categories, so that is what no detections at all gives here too, not -1.
TEST(CocoEval, NoDetectionsGiveZero) {
  const auto dir = temp_dir();
  write_file(dir / "empty.json", "[]");
  auto gt = load_coco_annotations(fake100_gt());
  ASSERT_TRUE(gt) << gt.status().message();
  auto dt = load_coco_results((dir / "empty.json").string(), *gt);
  ASSERT_TRUE(dt) << dt.status().message();
  EXPECT_TRUE(dt->empty());
  auto result = evaluate_coco_bbox(*gt, *dt);
  ASSERT_TRUE(result) << result.status().message();
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(result->stats[i], 0) << i;

  if (!have_python_oracles()) GTEST_SKIP() << "no Python with pycocotools at " << QYOLO_PYTHON;
  const auto unlisted = dir / "unlisted.json";
  write_file(unlisted, R"([{"image_id": )" + std::to_string(gt->images[0].id) +
                           R"(, "category_id": 999, "bbox": [1, 2, 3, 4], "score": 0.5}])");
  const auto oracle = run_command(oracle_command("eval " + fake100_gt() + " " + unlisted.string()));
  ASSERT_EQ(oracle.exit_code, 0) << oracle.output;
  std::istringstream lines(oracle.output);
  for (size_t i = 0; i < 12; ++i) {
    double expected = -2;
    ASSERT_TRUE(lines >> expected) << oracle.output;
    EXPECT_EQ(expected, result->stats[i]) << i;
  }
}

TEST(CocoEval, NoGroundTruthNoDetectionsGivesMinusOne) {
  const auto dir = temp_dir();
  write_file(dir / "gt.json",
             R"({"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]})");
  write_file(dir / "dt.json", "[]");
  auto result = evaluate_files((dir / "gt.json").string(), (dir / "dt.json").string());
  ASSERT_TRUE(result) << result.status().message();
  for (double stat : result->stats) EXPECT_EQ(stat, -1);
  EXPECT_NE(coco_summary_text(*result).find("= -1.000"), std::string::npos);
}

TEST(CocoEval, SubsetOfImagesMatchesPycocotools) {
  if (!have_python_oracles()) GTEST_SKIP() << "no Python with pycocotools at " << QYOLO_PYTHON;
  auto gt = load_coco_annotations(fake100_gt());
  ASSERT_TRUE(gt) << gt.status().message();
  CocoEvalParams params;
  std::string ids;
  for (size_t i = 0; i < gt->images.size(); i += 3) {
    params.image_ids.push_back(gt->images[i].id);
    ids += (ids.empty() ? "" : ",") + std::to_string(gt->images[i].id);
  }
  auto dt = load_coco_results(fake100_dt(), *gt);
  ASSERT_TRUE(dt) << dt.status().message();
  auto result = evaluate_coco_bbox(*gt, *dt, params);
  ASSERT_TRUE(result) << result.status().message();
  const auto oracle =
      run_command(oracle_command("eval " + fake100_gt() + " " + fake100_dt() + " " + ids));
  ASSERT_EQ(oracle.exit_code, 0) << oracle.output;
  std::istringstream lines(oracle.output);
  for (size_t i = 0; i < 12; ++i) {
    double expected = 0;
    ASSERT_TRUE(lines >> expected) << oracle.output;
    expect_stat_eq(expected, result->stats[i], "stat " + std::to_string(i));
  }
}

// Random cases from coco_oracle.py: crowds, empty images, absent categories, > 100
// detections per image, tiny and huge boxes, tied scores, ground truth with id 0 or repeated.
TEST(CocoEval, RandomCasesMatchPycocotools) {
  if (!have_python_oracles()) GTEST_SKIP() << "no Python with pycocotools at " << QYOLO_PYTHON;
  const auto dir = temp_dir();
  constexpr int kFirstSeed = 1, kCases = 60;
  const auto generated =
      run_command(oracle_command("generate " + dir.string() + " " + std::to_string(kFirstSeed) +
                                 " " + std::to_string(kCases)));
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  std::istringstream manifest(read_file(dir / "manifest.tsv"));
  std::string line;
  int cases = 0;
  while (std::getline(manifest, line)) {
    std::istringstream fields(line);
    std::string name, stats_text, categories_text;
    std::getline(fields, name, '\t');
    std::getline(fields, stats_text, '\t');
    std::getline(fields, categories_text, '\t');
    SCOPED_TRACE(name);
    auto result =
        evaluate_files((dir / (name + "_gt.json")).string(), (dir / (name + "_dt.json")).string());
    ASSERT_TRUE(result) << result.status().message();
    std::istringstream stats(stats_text);
    for (size_t i = 0; i < 12; ++i) {
      double expected = 0;
      ASSERT_TRUE(stats >> expected);
      expect_stat_eq(expected, result->stats[i], "stat " + std::to_string(i));
    }
    const auto per_category = coco_per_category_ap(*result);
    std::istringstream categories(categories_text);
    std::string entry;
    size_t k = 0;
    while (categories >> entry) {
      int64_t id = 0;
      double ap = 0, ap50 = 0;
      ASSERT_EQ(std::sscanf(entry.c_str(), "%ld:%lf:%lf", &id, &ap, &ap50), 3) << entry;
      ASSERT_LT(k, per_category.size());
      EXPECT_EQ(per_category[k].category_id, id);
      expect_stat_eq(ap, per_category[k].ap, "AP of category " + std::to_string(id));
      expect_stat_eq(ap50, per_category[k].ap50, "AP50 of category " + std::to_string(id));
      ++k;
    }
    EXPECT_EQ(k, per_category.size());
    // Not only the means: every precision, score and recall entry, bit for bit.
    for (const auto& [array, values] :
         {std::pair{"precision", &result->precision}, std::pair{"scores", &result->scores},
          std::pair{"recall", &result->recall}}) {
      auto expected = read_npy((dir / (name + "_" + array + ".npy")).string());
      ASSERT_TRUE(expected) << expected.status().message();
      ASSERT_EQ(static_cast<size_t>(expected->numel()), values->size()) << array;
      const double* e = expected->data<double>();
      size_t mismatches = 0;
      for (size_t i = 0; i < values->size(); ++i) mismatches += e[i] != (*values)[i];
      EXPECT_EQ(mismatches, 0u) << array;
    }
    if (cases == 0) {
      EXPECT_EQ(coco_summary_text(*result),
                read_file(dir / ("summary_" + std::to_string(kFirstSeed) + ".txt")));
    }
    ++cases;
  }
  EXPECT_EQ(cases, kCases);
}

TEST(CocoJson, ReadsAnInstancesFile) {
  auto gt =
      load_coco_annotations(data_path("coco/val2017-mini/annotations/instances_val2017.json"));
  ASSERT_TRUE(gt) << gt.status().message();
  EXPECT_EQ(gt->annotations.size(), 624u);
  EXPECT_EQ(gt->categories.size(), 80u);
  int crowd = 0;
  for (const auto& a : gt->annotations) crowd += a.iscrowd != 0;
  EXPECT_EQ(crowd, 5);
  const CocoImage* image = gt->find_image(397133);
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->file_name, "000000397133.jpg");
  EXPECT_EQ(image->width, 640);
  EXPECT_EQ(image->height, 427);
  EXPECT_EQ(gt->find_image(-5), nullptr);
}

TEST(CocoJson, Coco80TableMatchesTheCategories) {
  auto gt =
      load_coco_annotations(data_path("coco/val2017-mini/annotations/instances_val2017.json"));
  ASSERT_TRUE(gt) << gt.status().message();
  for (int i = 0; i < kCoco80Classes; ++i) {
    const CocoCategory* category = gt->find_category(coco80_to_91(i));
    ASSERT_NE(category, nullptr) << i;
    EXPECT_EQ(category->name, coco80_name(i)) << i;
  }
  EXPECT_EQ(coco80_to_91(0), 1);
  EXPECT_EQ(coco80_to_91(79), 90);
  EXPECT_EQ(coco80_to_91(-1), -1);
  EXPECT_EQ(coco80_to_91(80), -1);
  EXPECT_EQ(coco80_name(80), "");
}

TEST(CocoJson, SyntaxErrorNamesLineAndColumn) {
  const auto dir = temp_dir();
  const auto path = dir / "broken.json";
  write_file(path, "{\n  \"images\": [],\n  \"annotations\": [,\n]}");
  auto gt = load_coco_annotations(path.string());
  ASSERT_FALSE(gt);
  const std::string message = gt.status().message();
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  EXPECT_NE(message.find("line 3, column 19"), std::string::npos) << message;
  EXPECT_EQ(message.find("json.exception"), std::string::npos) << message;

  write_file(path,
             "[{\"image_id\": 1, \"category_id\": 1, \"bbox\": [1, 2, 3, 4], \"score\": 0.5}");
  auto empty_gt = CocoDataset{};
  auto dt = load_coco_results(path.string(), empty_gt);
  ASSERT_FALSE(dt);
  EXPECT_NE(dt.status().message().find("line 1, column 71"), std::string::npos)
      << dt.status().message();

  write_file(path, "");
  auto empty = load_coco_annotations(path.string());
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.status().message().find("line 1"), std::string::npos) << empty.status().message();
}

bool same_annotations(const std::vector<CocoAnnotation>& a, const std::vector<CocoAnnotation>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id || a[i].image_id != b[i].image_id ||
        a[i].category_id != b[i].category_id || a[i].bbox != b[i].bbox || a[i].area != b[i].area ||
        a[i].iscrowd != b[i].iscrowd || a[i].score != b[i].score) {
      return false;
    }
  }
  return true;
}

// Files are read by a fast strict reader that hands anything unusual (\u escapes, non-ASCII
// text, a byte-order mark) to nlohmann: both must read the same values.
TEST(CocoJson, FastAndGeneralReadersAgree) {
  const auto dir = temp_dir();
  const std::string gt_text = read_file(fake100_gt());
  const std::string dt_text = read_file(fake100_dt());
  auto plain_gt = load_coco_annotations(fake100_gt());
  ASSERT_TRUE(plain_gt) << plain_gt.status().message();
  auto plain_dt = load_coco_results(fake100_dt(), *plain_gt);
  ASSERT_TRUE(plain_dt) << plain_dt.status().message();
  ASSERT_EQ(gt_text.front(), '{');
  ASSERT_EQ(dt_text.front(), '[');
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"{\"note\": \"caf\\u00e9\", " + gt_text.substr(1), "[" + dt_text.substr(1)},
      {"{\"note\": \"caf\xc3\xa9\", " + gt_text.substr(1), "\xef\xbb\xbf" + dt_text},
      {"{\"big\": [18446744073709551616, -9223372036854775809, 1e300, -0.0, 1E-2], " +
           gt_text.substr(1),
       " \n\t" + dt_text + "\r\n"},
  };
  for (const auto& [gt_variant, dt_variant] : variants) {
    write_file(dir / "gt.json", gt_variant);
    write_file(dir / "dt.json", dt_variant);
    auto gt = load_coco_annotations((dir / "gt.json").string());
    ASSERT_TRUE(gt) << gt.status().message();
    EXPECT_TRUE(same_annotations(gt->annotations, plain_gt->annotations));
    EXPECT_EQ(gt->images.size(), plain_gt->images.size());
    EXPECT_EQ(gt->categories.size(), plain_gt->categories.size());
    auto dt = load_coco_results((dir / "dt.json").string(), *gt);
    ASSERT_TRUE(dt) << dt.status().message();
    EXPECT_TRUE(same_annotations(*dt, *plain_dt));
  }
  // Escapes in names are decoded by both readers alike.
  write_file(dir / "gt.json",
             R"({"images": [], "annotations": [], "categories": [)"
             R"({"id": 1, "name": "a\"b\\c\/d\te"}, {"id": 2, "name": "\u00e9"}]})");
  auto escaped = load_coco_annotations((dir / "gt.json").string());
  ASSERT_TRUE(escaped) << escaped.status().message();
  EXPECT_EQ(escaped->categories[0].name, "a\"b\\c/d\te");
  EXPECT_EQ(escaped->categories[1].name, "\xc3\xa9");
}

TEST(CocoJson, EverySyntaxErrorHasAPosition) {
  const auto dir = temp_dir();
  const auto path = (dir / "bad.json").string();
  // Unknown keys, so that only the syntax is at fault.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"([{"a": [1, 2,]}])", "line 1, column 14"},
      {R"([{"a": 01}])", "line 1, column 9"},
      {"[] x", "line 1, column 4"},
      {R"([{"a": "abc)", "line 1, column 12"},
      {"[\n  {\"a\" 1}]", "line 2, column 8"},
      {R"([{"a": tru}])", "line 1, column 11"},
      {R"([{"a": 1.}])", "line 1, column 10"},
      {R"([{"a": -}])", "line 1, column 9"},
      {"[{\"a\": \"a\tb\"}]", "line 1, column 10"},
      {R"([{"a": 1e400}])", "line 1, column 12"},  // the token's last character
      {"[{\"a\":\n\n  {\"b\": [}}]", "line 3, column 10"},
  };
  CocoDataset gt;
  for (const auto& [text, position] : cases) {
    write_file(path, text);
    auto dt = load_coco_results(path, gt);
    ASSERT_FALSE(dt) << text;
    EXPECT_NE(dt.status().message().find("invalid JSON at " + position), std::string::npos)
        << text << " -> " << dt.status().message();
  }
}

TEST(CocoJson, StructuralErrorsNameTheElementAndField) {
  const auto dir = temp_dir();
  const auto path = (dir / "gt.json").string();
  struct Case {
    std::string json;
    std::string expected;
  };
  const std::string images = R"("images": [{"id": 1}], "categories": [{"id": 1}], )";
  const std::string good =
      R"({"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0})";
  const std::vector<Case> cases = {
      {"[]", "expected a JSON object"},
      {"7", "expected a JSON object"},
      {R"({"images": [], "categories": []})", "no 'annotations' array"},
      {R"({"images": {}, "annotations": [], "categories": []})", "'images' must be an array"},
      {"{" + images + R"("annotations": [)" + good +
           R"(, {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0}]})",
       "annotations[1]: missing 'area'"},
      {"{" + images + R"("annotations": [)" + good + R"(, 5]})",
       "annotations[1]: expected an object"},
      {"{" + images +
           R"("annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "area": 1, "iscrowd": 0}]})",
       "annotations[0].bbox: expected 4 numbers"},
      {"{" + images +
           R"("annotations": [{"id": 1, "image_id": "a", "category_id": 1, "bbox": [1, 2, 3, 4], "area": 1, "iscrowd": 0}]})",
       "annotations[0].image_id: expected an integer, found a string"},
      {"{" + images +
           R"("annotations": [{"id": 1.5, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 1, "iscrowd": 0}]})",
       "annotations[0].id: expected an integer"},
      {R"({"images": [{"file_name": "a.jpg"}], "annotations": [], "categories": []})",
       "images[0]: missing 'id'"},
  };
  for (const auto& c : cases) {
    write_file(path, c.json);
    auto gt = load_coco_annotations(path);
    ASSERT_FALSE(gt) << c.json;
    EXPECT_NE(gt.status().message().find(c.expected), std::string::npos)
        << gt.status().message() << "\nexpected: " << c.expected;
    EXPECT_NE(gt.status().message().find(path), std::string::npos) << gt.status().message();
  }
  // What pycocotools accepts, so do we: a boolean iscrowd, integral floats as ids, extra keys.
  write_file(
      path,
      "{" + images +
          R"("annotations": [{"id": 1.0, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 1, "iscrowd": true, "segmentation": {"counts": [1, 2], "size": [3, 4]}}], "info": {"x": [1, {"y": null}]}})");
  auto gt = load_coco_annotations(path);
  ASSERT_TRUE(gt) << gt.status().message();
  ASSERT_EQ(gt->annotations.size(), 1u);
  EXPECT_EQ(gt->annotations[0].iscrowd, 1);
  EXPECT_EQ(gt->annotations[0].bbox[3], 4);
}

TEST(CocoJson, ResultErrors) {
  const auto dir = temp_dir();
  auto gt = load_coco_annotations(fake100_gt());
  ASSERT_TRUE(gt) << gt.status().message();
  const auto path = (dir / "dt.json").string();
  const int64_t image = gt->images[0].id;
  const std::string good = R"({"image_id": )" + std::to_string(image) +
                           R"(, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5})";
  struct Case {
    std::string json;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"[" + good + ", " + good +
           R"(, {"image_id": 999999999, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}])",
       "results[2]: image_id 999999999 is not an image of the ground truth"},
      {"[" + good + R"(, {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}])",
       "results[1]: missing 'score'"},
      {R"({"annotations": []})", "expected a JSON array of detections"},
  };
  for (const auto& c : cases) {
    write_file(path, c.json);
    auto dt = load_coco_results(path, *gt);
    ASSERT_FALSE(dt) << c.json;
    EXPECT_NE(dt.status().message().find(c.expected), std::string::npos)
        << dt.status().message() << "\nexpected: " << c.expected;
  }
  auto missing = load_coco_results((dir / "nothing.json").string(), *gt);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("cannot open"), std::string::npos);

  // loadRes numbering and areas.
  write_file(path, "[" + good + ", " + good + "]");
  auto dt = load_coco_results(path, *gt);
  ASSERT_TRUE(dt) << dt.status().message();
  ASSERT_EQ(dt->size(), 2u);
  EXPECT_EQ((*dt)[1].id, 2);
  EXPECT_EQ((*dt)[1].area, 12);
  EXPECT_EQ((*dt)[1].iscrowd, 0);
}

TEST(CocoJson, WritesResultsRoundedAsUltralytics) {
  const auto dir = temp_dir();
  std::vector<CocoAnnotation> detections(2);
  detections[0].image_id = 42;
  detections[0].category_id = 18;
  detections[0].bbox = {1.0005, 2.0015, 123.4565, 640.0};
  detections[0].score = 0.123455;
  detections[1].image_id = 7;
  detections[1].category_id = 90;
  detections[1].bbox = {0.1 + 0.2, 1e-7, 12.3456789, 5};
  detections[1].score = 1.5e-05;
  const auto path = (dir / "out.json").string();
  ASSERT_TRUE(write_coco_results(path, detections).is_ok());
  const std::string text = read_file(path);
  // Python: round(1.0005, 3) == 1.0, round(2.0015, 3) == 2.002, round(0.123455, 5) == 0.12345.
  EXPECT_NE(
      text.find(
          R"({"image_id": 42, "category_id": 18, "bbox": [1.0, 2.002, 123.457, 640.0], "score": 0.12345})"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find(R"("bbox": [0.3, 0.0, 12.346, 5.0], "score": 2e-05})"), std::string::npos)
      << text;

  CocoDataset gt;
  gt.images = {{42, "", 0, 0}, {7, "", 0, 0}};
  gt.build_index();
  auto back = load_coco_results(path, gt);
  ASSERT_TRUE(back) << back.status().message();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].bbox[2], 123.457);
  EXPECT_EQ((*back)[1].category_id, 90);
  EXPECT_EQ((*back)[1].score, 2e-05);

  write_file(dir / "empty_list.json", "");
  ASSERT_TRUE(write_coco_results((dir / "empty_list.json").string(), {}).is_ok());
  auto none = load_coco_results((dir / "empty_list.json").string(), gt);
  ASSERT_TRUE(none) << none.status().message();
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(write_coco_results((dir / "no_such_dir" / "x.json").string(), detections).is_ok());
}

TEST(CocoEvalCli, PrintsTheSummaryAndExportsMetrics) {
  const auto dir = temp_dir();
  const auto metrics_path = dir / "metrics.json";
  const auto run = run_qyolo("cocoeval --gt " + fake100_gt() + " --dt " + fake100_dt() +
                             " --export-metrics " + metrics_path.string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | "
                            "maxDets=100 ] = 0.505\n"),
            std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find(" Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | "
                            "maxDets=100 ] = 0.564\n"),
            std::string::npos)
      << run.output;
  const auto metrics = nlohmann::json::parse(read_file(metrics_path), nullptr, false);
  ASSERT_FALSE(metrics.is_discarded()) << read_file(metrics_path);
  ASSERT_EQ(metrics["stats"].size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(metrics["stats"][i].get<double>(), kFake100Stats[i]) << i;  // full precision
  }
  EXPECT_EQ(metrics["images"].get<int>(), 100);
  EXPECT_EQ(metrics["categories"].get<int>(), 80);
  EXPECT_EQ(metrics["per_category"].size(), 80u);
  EXPECT_EQ(metrics["per_category"][0]["name"].get<std::string>(), "person");
}

TEST(CocoEvalCli, EmptyResultsWarn) {
  const auto dir = temp_dir();
  write_file(dir / "gt.json",
             R"({"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]})");
  write_file(dir / "dt.json", "[]");
  const auto run = run_qyolo("cocoeval --gt " + (dir / "gt.json").string() + " --dt " +
                             (dir / "dt.json").string());
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("warning: " + (dir / "dt.json").string() + " holds no detections"),
            std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("maxDets=100 ] = -1.000"), std::string::npos) << run.output;
}

TEST(CocoEvalCli, ErrorsAreOneLine) {
  const auto dir = temp_dir();
  write_file(dir / "dt.json",
             R"([{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}])");
  const auto bad_image =
      run_qyolo("cocoeval --gt " + fake100_gt() + " --dt " + (dir / "dt.json").string());
  EXPECT_EQ(bad_image.exit_code, 1);
  EXPECT_EQ(bad_image.output.find("qyolo cocoeval: error: "), 0u) << bad_image.output;
  EXPECT_NE(bad_image.output.find("image_id 5"), std::string::npos) << bad_image.output;
  EXPECT_EQ(std::count(bad_image.output.begin(), bad_image.output.end(), '\n'), 1)
      << bad_image.output;

  const auto missing = run_qyolo("cocoeval --gt " + (dir / "none.json").string() + " --dt " +
                                 (dir / "dt.json").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("cannot open"), std::string::npos) << missing.output;
  EXPECT_EQ(std::count(missing.output.begin(), missing.output.end(), '\n'), 1) << missing.output;

  const auto no_args = run_qyolo("cocoeval");
  EXPECT_NE(no_args.exit_code, 0);
}

}  // namespace
}  // namespace qyolo
