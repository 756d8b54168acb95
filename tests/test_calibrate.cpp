// Post-training calibration: the |x| histogram (bins, growth, zeros, bad values), each amax
// rule on data with a known answer and against a numpy transcription of pytorch-quantization's
// functions (tests/python/calib_oracle.py), the calibrator on a small graph and on yolov5n,
// and `qyolo calibrate` end to end with its bad inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "qyolo/npy.h"
#include "qyolo/onnx.h"
#include "qyolo/quant.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::run_command;
using testing::run_qyolo;
using testing::temp_dir;

int64_t sum(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  return total;
}

TEST(AbsHistogram, FirstBatchSetsTheWidthFromItsMax) {
  AbsHistogram h(8);
  const std::vector<float> x = {-8.0f, 0.5f, 1.5f, -1.5f, 3.99f, 4.0f, 7.9f, 0.0f};
  ASSERT_TRUE(h.add(x.data(), static_cast<int64_t>(x.size())).is_ok());
  EXPECT_DOUBLE_EQ(h.bin_width(), 1.0);
  EXPECT_EQ(h.max_abs(), 8.0f);
  EXPECT_EQ(h.total(), 8);
  // |x| = 8 (the max) lands in the last bin, as torch.histc counts its upper edge.
  EXPECT_EQ(h.counts(), (std::vector<int64_t>{2, 2, 0, 1, 1, 0, 0, 2}));
}

TEST(AbsHistogram, LargerMaxAppendsBinsOfTheSameWidth) {
  AbsHistogram h(4);
  const std::vector<float> first = {0.5f, 1.5f, 4.0f};  // width 1, 4 bins
  ASSERT_TRUE(h.add(first.data(), 3).is_ok());
  const std::vector<float> second = {-6.5f, 0.25f, 2.5f};  // ceil(6.5) = 7 bins
  ASSERT_TRUE(h.add(second.data(), 3).is_ok());
  EXPECT_DOUBLE_EQ(h.bin_width(), 1.0);
  EXPECT_DOUBLE_EQ(h.range(), 7.0);
  EXPECT_EQ(h.counts(), (std::vector<int64_t>{2, 1, 1, 1, 0, 0, 1}));
  EXPECT_EQ(h.max_abs(), 6.5f);
  // A smaller batch changes nothing but the counts.
  const std::vector<float> third = {7.0f, 0.0f};  // 7.0 is the upper edge: last bin
  ASSERT_TRUE(h.add(third.data(), 2).is_ok());
  EXPECT_EQ(h.counts(), (std::vector<int64_t>{3, 1, 1, 1, 0, 0, 2}));
  EXPECT_EQ(h.total(), 8);
}

TEST(AbsHistogram, GrowthInsideOneLargeBatchMatchesOneBinning) {
  // Values beyond the range in a later chunk of the same batch: the bins grow mid-batch and
  // the result equals binning the whole batch at once.
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> first(5000), second(10000);
  for (float& v : first) v = uniform(rng);
  for (size_t i = 0; i < second.size(); ++i) second[i] = uniform(rng) * (1.0f + i / 2000.0f);
  AbsHistogram h(2048);
  ASSERT_TRUE(h.add(first.data(), 5000).is_ok());
  const double width = h.bin_width();
  ASSERT_TRUE(h.add(second.data(), 10000).is_ok());
  float max = 0.0f;
  for (float v : second) max = std::max(max, std::fabs(v));
  EXPECT_EQ(h.counts().size(), static_cast<size_t>(std::ceil(max / width)));
  // Each batch is binned with the bins it has: the first batch's max lands in its last bin.
  std::vector<int64_t> expected(h.counts().size(), 0);
  for (const auto* batch : {&first, &second}) {
    const size_t bins = batch == &first ? 2048 : expected.size();
    for (float v : *batch) {
      auto b = static_cast<size_t>(std::fabs(v) * static_cast<float>(1.0 / width));
      ++expected[std::min(b, bins - 1)];
    }
  }
  EXPECT_EQ(h.counts(), expected);
  EXPECT_EQ(sum(h.counts()), 15000);
}

TEST(AbsHistogram, ZerosBeforeTheFirstNonZeroBatchGoToBinZero) {
  AbsHistogram h(16);
  const std::vector<float> zeros(10, 0.0f);
  ASSERT_TRUE(h.add(zeros.data(), 10).is_ok());
  EXPECT_TRUE(h.counts().empty());
  EXPECT_EQ(h.total(), 10);
  EXPECT_EQ(histogram_amax_entropy(h), 0.0);
  const std::vector<float> x = {1.6f};
  ASSERT_TRUE(h.add(x.data(), 1).is_ok());
  EXPECT_EQ(h.counts()[0], 10);
  EXPECT_EQ(h.counts()[15], 1);
  EXPECT_EQ(h.total(), 11);
}

TEST(AbsHistogram, NanOrInfIsAnErrorAndChangesNothing) {
  AbsHistogram h(4);
  const std::vector<float> x = {1.0f, 2.0f};
  ASSERT_TRUE(h.add(x.data(), 2).is_ok());
  const auto before = h.counts();
  std::vector<float> bad(3000, 1.0f);
  bad[2500] = 50.0f;  // would grow the bins
  bad[2999] = std::nanf("");
  Status status = h.add(bad.data(), 3000);
  EXPECT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("value 2999 is NaN or infinite"), std::string::npos)
      << status.message();
  bad[2999] = INFINITY;
  EXPECT_FALSE(h.add(bad.data(), 3000).is_ok());
  EXPECT_EQ(h.counts(), before);
  EXPECT_EQ(h.total(), 2);
  EXPECT_EQ(h.max_abs(), 2.0f);
}

TEST(HistogramAmax, PercentileOfAUniformSet) {
  // 2048 * 100 values spread evenly over [0, 4): about 100 per bin, so percentile p is
  // p% of the range, to a bin.
  std::vector<float> x;
  for (int i = 0; i < 2048 * 100; ++i) x.push_back((i + 0.5f) / (2048 * 100) * 4.0f);
  AbsHistogram h;
  ASSERT_TRUE(h.add(x.data(), static_cast<int64_t>(x.size())).is_ok());
  for (int64_t c : h.counts()) ASSERT_NEAR(c, 100, 1);
  const double width = h.bin_width();
  for (double p : {50.0, 90.0, 99.0, 99.99}) {
    // The answer is the lower edge of the bin where the cumulative fraction reaches p%.
    EXPECT_NEAR(histogram_amax_percentile(h, p), (std::ceil(p / 100 * 2048) - 1) * width,
                1.01 * width)
        << p;
  }
  EXPECT_NEAR(histogram_amax_percentile(h, 100.0), 2047 * width, 1e-12);
  // Exact counts: a quarter of the mass in each of four bins.
  const auto quarters = AbsHistogram::from_counts({5, 5, 5, 5}, 0.5);
  EXPECT_DOUBLE_EQ(histogram_amax_percentile(quarters, 25.0), 0.0);
  EXPECT_DOUBLE_EQ(histogram_amax_percentile(quarters, 50.0), 0.5);
  EXPECT_DOUBLE_EQ(histogram_amax_percentile(quarters, 50.1), 1.0);
}

TEST(HistogramAmax, MaxIsTheExactMaximum) {
  std::vector<float> x = {0.1f, -3.25f, 2.0f, 3.0f};
  AbsHistogram h;
  ASSERT_TRUE(h.add(x.data(), 4).is_ok());
  x = {1.0f, -0.5f};
  ASSERT_TRUE(h.add(x.data(), 2).is_ok());
  EXPECT_EQ(h.max_abs(), 3.25f);
}

TEST(HistogramAmax, EntropyAndMseOnAUniformBlock) {
  // Mass spread evenly over the first 1024 of 2048 bins. Every candidate from bin 1024 on
  // requantizes it without loss (KL = 0: empty bins stay empty), and ties go to the largest
  // candidate, so entropy returns the whole range; MSE, weighing the rounding error, picks
  // the top of the data.
  std::vector<int64_t> counts(2048, 0);
  for (int i = 0; i < 1024; ++i) counts[i] = 1000;
  auto h = AbsHistogram::from_counts(counts, 0.01);
  EXPECT_DOUBLE_EQ(histogram_amax_entropy(h), 20.48);
  EXPECT_NEAR(histogram_amax_mse(h), 10.24, 0.01 * 16);
  // A lone far outlier is kept by entropy (a bin of its own, still KL = 0) but clipped by MSE.
  counts[2047] = 1;
  h = AbsHistogram::from_counts(counts, 0.01);
  EXPECT_DOUBLE_EQ(histogram_amax_entropy(h), 20.48);
  EXPECT_LT(histogram_amax_mse(h), 11.0);
  // Counts falling off over a floor of one: entropy clips the thin tail.
  for (int i = 0; i < 2048; ++i) counts[i] = static_cast<int64_t>(100000 * std::exp(-i / 40.0)) + 1;
  h = AbsHistogram::from_counts(counts, 0.01);
  EXPECT_LT(histogram_amax_entropy(h), 10.0);
}

// Histograms of the kinds activations give, for the oracle comparison.
std::vector<std::pair<std::string, AbsHistogram>> oracle_histograms() {
  std::vector<std::pair<std::string, AbsHistogram>> cases;
  std::mt19937 rng(7);
  {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(300000);
    for (float& v : x) v = normal(rng);
    AbsHistogram h;
    EXPECT_TRUE(h.add(x.data(), static_cast<int64_t>(x.size())).is_ok());
    cases.emplace_back("normal", h);
  }
  {
    // SiLU-like: a heavy tail, many values near 0, and a second batch that grows the range.
    std::exponential_distribution<float> expo(2.0f);
    std::vector<float> x(200000);
    for (float& v : x) v = expo(rng) - 0.28f;
    AbsHistogram h(1024);
    EXPECT_TRUE(h.add(x.data(), static_cast<int64_t>(x.size())).is_ok());
    for (float& v : x) v = expo(rng) * 1.3f;
    EXPECT_TRUE(h.add(x.data(), static_cast<int64_t>(x.size())).is_ok());
    cases.emplace_back("grown", h);
  }
  {
    // Pixels / 255: few distinct values, most bins empty.
    std::uniform_int_distribution<int> pixel(0, 255);
    std::vector<float> x(100000);
    for (float& v : x) v = pixel(rng) / 255.0f;
    AbsHistogram h(1024);
    EXPECT_TRUE(h.add(x.data(), static_cast<int64_t>(x.size())).is_ok());
    cases.emplace_back("pixels", h);
  }
  {
    std::vector<int64_t> counts(600, 0);
    for (int i = 0; i < 300; ++i) counts[i] = 5000 - 15 * i;
    counts[450] = 3;
    counts[599] = 1;
    cases.emplace_back("outliers", AbsHistogram::from_counts(counts, 0.125));
  }
  return cases;
}

TEST(HistogramAmax, MatchesPytorchQuantizationTranscription) {
  if (!testing::have_python_oracles()) GTEST_SKIP() << "no python oracles at " << QYOLO_PYTHON;
  const auto dir = temp_dir();
  for (const auto& [name, h] : oracle_histograms()) {
    SCOPED_TRACE(name);
    const std::string path = (dir / (name + ".npy")).string();
    ASSERT_TRUE(write_npy(Tensor::from_vector(h.counts()), path).is_ok());
    char width[64];
    std::snprintf(width, sizeof(width), "%.17g", h.bin_width());
    const auto result =
        run_command(std::string(QYOLO_PYTHON) + " " + QYOLO_TESTS_DIR + "/python/calib_oracle.py " +
                    path + " " + width + " --percentile 99.9");
    ASSERT_EQ(result.exit_code, 0) << result.output;
    const auto oracle = nlohmann::json::parse(result.output.substr(result.output.find('{')));
    const double w = h.bin_width();
    // Entropy and percentile return bin edges, MSE bin centres: compare the bin they name.
    EXPECT_EQ(std::lround(histogram_amax_entropy(h) / w),
              std::lround(oracle["entropy"].get<double>() / w));
    EXPECT_EQ(std::lround(histogram_amax_entropy(h, 128, 1, 8, true) / w),
              std::lround(oracle["entropy_unsigned"].get<double>() / w));
    EXPECT_EQ(std::lround(histogram_amax_mse(h) / w - 0.5),
              std::lround(oracle["mse"].get<double>() / w - 0.5));
    EXPECT_EQ(std::lround(histogram_amax_mse(h, 128, 1, 8, true) / w - 0.5),
              std::lround(oracle["mse_unsigned"].get<double>() / w - 0.5));
    EXPECT_EQ(std::lround(histogram_amax_percentile(h, 99.9) / w),
              std::lround(oracle["percentile"].get<double>() / w));
    EXPECT_NEAR(histogram_amax_entropy(h), oracle["entropy"].get<double>(), 1e-9 * (1 + w));
    EXPECT_NEAR(histogram_amax_mse(h), oracle["mse"].get<double>(), 1e-6 * h.range());
  }
}

TEST(CalibrationMethod, NamesAndAlgorithms) {
  EXPECT_EQ(*parse_calibration_method("max"), CalibrationMethod::kMax);
  EXPECT_EQ(*parse_calibration_method("mse"), CalibrationMethod::kMse);
  EXPECT_STREQ(calibration_algorithm(CalibrationMethod::kEntropy), "EntropyCalibration2");
  EXPECT_STREQ(calibration_algorithm(CalibrationMethod::kPercentile), "PercentileCalibration");
  auto bad = parse_calibration_method("kl");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("expected max, percentile, entropy or mse"),
            std::string::npos);
}

// x -> Relu -> Mul(by a constant 2) -> y, with a Shape branch that must not be calibrated.
Graph small_graph() {
  Graph g;
  g.opset_imports = {{"", 13}};
  ValueInfo x;
  x.name = "x";
  x.dtype = DType::kFloat32;
  x.has_shape = true;
  x.shape = {1, 4};
  g.inputs.push_back(x);
  g.initializers["two"] = Tensor::from_vector(std::vector<float>{2.0f}, {});
  auto node = [&](const std::string& op, std::vector<std::string> in, std::string out) {
    Node n;
    n.op_type = op;
    n.name = op;
    n.inputs = std::move(in);
    n.outputs = {std::move(out)};
    g.nodes.push_back(n);
  };
  node("Relu", {"x"}, "r");
  node("Mul", {"r", "two"}, "y");
  node("Shape", {"x"}, "s");
  ValueInfo y;
  y.name = "y";
  y.dtype = DType::kFloat32;
  g.outputs.push_back(y);
  ValueInfo s;
  s.name = "s";
  s.dtype = DType::kInt64;
  g.outputs.push_back(s);
  return g;
}

TEST(Calibrator, MeasuresEveryFloatActivationOfASmallGraph) {
  const Graph g = small_graph();
  auto tensors = calibration_tensors(g);
  ASSERT_TRUE(tensors) << tensors.status().message();
  EXPECT_EQ(*tensors, (std::vector<std::string>{"x", "r", "y"}));
  auto calibrator = Calibrator::create(g);
  ASSERT_TRUE(calibrator) << calibrator.status().message();
  for (const auto& values : {std::vector<float>{-5, 1, 2, 3}, std::vector<float>{0.5f, -1, 4, 0}}) {
    ASSERT_TRUE((*calibrator)->add_batch({{"x", Tensor::from_vector(values, {1, 4})}}).is_ok());
  }
  EXPECT_EQ((*calibrator)->batches(), 2);
  CalibrationOptions options;
  options.method = CalibrationMethod::kMax;
  EXPECT_EQ((*calibrator)->amax(options), (std::vector<float>{5.0f, 4.0f, 8.0f}));
  const CalibrationCache cache = (*calibrator)->cache(options);
  EXPECT_EQ(cache.algorithm, "MaxCalibration");
  ASSERT_EQ(cache.entries.size(), 3u);
  EXPECT_EQ(cache.entries[2].tensor, "y");
  EXPECT_EQ(cache.entries[2].scale, static_cast<float>(8.0 / 127.0));
  // A tensor that is always zero still gets a valid (positive) scale.
  auto zero = Calibrator::create(g);
  ASSERT_TRUE(
      (*zero)
          ->add_batch({{"x", Tensor::from_vector(std::vector<float>{-1, -2, -3, -4}, {1, 4})}})
          .is_ok());
  for (auto method : {CalibrationMethod::kMax, CalibrationMethod::kPercentile,
                      CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    options.method = method;
    for (float amax : (*zero)->amax(options)) EXPECT_GT(amax, 0.0f);
    EXPECT_TRUE(format_calibration_cache((*zero)->cache(options)));
  }
  auto bad =
      (*calibrator)
          ->add_batch({{"x", Tensor::from_vector(std::vector<float>{1, NAN, 0, 0}, {1, 4})}});
  EXPECT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("value 'x'"), std::string::npos) << bad.message();
}

TEST(Calibrator, Yolov5nTensorsAreTheFloatActivations) {
  auto graph = load_onnx(testing::yolov5n_path().string());
  ASSERT_TRUE(graph) << graph.status().message();
  auto tensors = calibration_tensors(*graph);
  ASSERT_TRUE(tensors) << tensors.status().message();
  const std::set<std::string> names(tensors->begin(), tensors->end());
  EXPECT_EQ(tensors->front(), "images");
  std::set<std::string> wanted_ops = {"Conv", "Sigmoid", "Mul",   "Concat",
                                      "Add",  "MaxPool", "Resize"};
  int conv = 0;
  for (const Node& node : graph->nodes) {
    if (!wanted_ops.count(node.op_type)) continue;
    for (const auto& input : node.inputs) {
      if (node.op_type == "Conv" && input == node.inputs[0]) {
        EXPECT_TRUE(names.count(input)) << node.name << " input " << input;
      }
    }
    if (node.op_type == "Conv") ++conv;
    if (node.op_type == "Resize" || node.op_type == "Mul" || node.op_type == "Add" ||
        node.op_type == "Conv" || node.op_type == "Concat" || node.op_type == "MaxPool" ||
        node.op_type == "Sigmoid") {
      // Every output these ops compute from activations (Mul by constants in the head too).
      if (!graph->find_initializer(node.inputs[0])) {
        EXPECT_TRUE(names.count(node.outputs[0])) << node.name;
      }
    }
  }
  EXPECT_EQ(conv, 60);
  // Nothing of the shape arithmetic.
  auto shapes = infer_shapes(*graph);
  ASSERT_TRUE(shapes);
  for (const auto& name : *tensors) {
    EXPECT_EQ(shapes->find(name)->dtype, DType::kFloat32) << name;
    EXPECT_EQ(shapes->constant(name), nullptr) << name;
  }
}

TEST(CalibrateCli, FourImagesMakeACacheTheReaderParses) {
  const auto dir = temp_dir();
  for (const char* method : {"entropy", "max", "percentile", "mse"}) {
    SCOPED_TRACE(method);
    const auto cache_path = (dir / (std::string(method) + ".cache")).string();
    const auto result = run_qyolo("calibrate --onnx " + testing::yolov5n_path().string() +
                                  " --images " + data_path("coco/calib2017").string() +
                                  " --max-images 4 --method " + method + " -o " + cache_path);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find("on 4 images"), std::string::npos) << result.output;
    auto cache = read_calibration_cache(cache_path);
    ASSERT_TRUE(cache) << cache.status().message();
    EXPECT_EQ(cache->version, "8600");
    for (const char* key : {"images", "/model.0/conv/Conv_output_0", "/model.0/act/Mul_output_0",
                            "/model.24/m.0/Conv_output_0", "/model.9/m/MaxPool_output_0"}) {
      const CacheEntry* entry = cache->find(key);
      ASSERT_NE(entry, nullptr) << key;
      EXPECT_GT(entry->scale, 0.0f) << key;
    }
    // Pixels / 255 never exceed 1: max gives at most 1/127 for the input.
    EXPECT_LE(cache->find("images")->scale, 1.0f / 127.0f + 1e-9f);
    if (std::string(method) == "max") {
      EXPECT_EQ(cache->algorithm, "MaxCalibration");
    }
    auto graph = load_onnx(testing::yolov5n_path().string());
    EXPECT_TRUE(cache_tensors_missing_from(*cache, *graph).empty());
  }
}

TEST(CalibrateCli, UnreadableImagesAreNamedAndSkipped) {
  const auto dir = temp_dir();
  std::filesystem::create_directories(dir / "images");
  std::filesystem::copy_file(data_path("coco/calib2017/images/000000012280.jpg"),
                             dir / "images" / "b.jpg");
  testing::write_file(dir / "images" / "a_broken.jpg", "not a jpeg");
  const auto result =
      run_qyolo("calibrate --onnx " + testing::yolov5n_path().string() + " --images " +
                dir.string() + " --method max -o " + (dir / "out.cache").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("a_broken.jpg"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("on 1 images (1 skipped)"), std::string::npos) << result.output;
}

TEST(CalibrateCli, BadInputsAreOneLineErrors) {
  const auto dir = temp_dir();
  const std::string model = " --onnx " + testing::yolov5n_path().string();
  const std::string out = " -o " + (dir / "out.cache").string();
  std::filesystem::create_directories(dir / "empty");
  std::filesystem::create_directories(dir / "junk");
  testing::write_file(dir / "junk" / "notes.txt", "hello");
  testing::write_file(dir / "junk" / "fake.jpg", "hello");
  testing::write_file(dir / "junk" / "fake.png", std::string(100, '\0'));
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {model + " --images " + (dir / "empty").string() + out, "no images (.jpg, .jpeg, .png) in"},
      {model + " --images " + (dir / "junk").string() + out, "no readable image in"},
      {model + " --images " + (dir / "missing").string() + out, "is not a folder"},
      {model + " --images " + data_path("coco/calib2017").string() + " --method kl" + out,
       "unknown calibration method 'kl'"},
      {model + " --images " + data_path("coco/calib2017").string() + " --percentile 0" + out,
       "--percentile 0 is not in (0, 100]"},
  };
  for (const auto& c : cases) {
    const auto result = run_qyolo("calibrate" + c.args);
    EXPECT_EQ(result.exit_code, 1) << c.args << "\n" << result.output;
    EXPECT_NE(result.output.find("qyolo calibrate: error: "), std::string::npos) << result.output;
    EXPECT_NE(result.output.find(c.message), std::string::npos) << result.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "out.cache"));
  }
}

}  // namespace
}  // namespace qyolo
